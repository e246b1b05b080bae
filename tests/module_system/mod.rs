//! Minimal systems around one built-in module (with whatever it requires), shared by the module
//! tests; the same systems `kiln modules check` compiles (`kiln::module_check::system`).
#![allow(dead_code, unused_imports)]

pub use kiln::module_check::system::{system_for, system_with};

/// An example value as TOML text; panics on a value that cannot be written back.
pub fn toml_value(n: &kiln::syntax::tree::Node) -> String {
    kiln::module_check::system::toml_value(n).unwrap()
}
