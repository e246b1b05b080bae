//! Parse: TOML text to spanned trees, and trees to typed declarations (system and module files).

pub mod certificates;
pub mod connects;
pub mod decode;
pub mod deploy;
pub mod expand;
pub mod memory_fit;
pub mod module;
pub mod route_defaults;
pub mod services;
pub mod streams;
pub mod system;
pub mod tree;
