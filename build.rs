//! Embeds the built-in `modules/` and `images/` trees into the binary, walked in sorted order,
//! and `SOURCE_ID`: a sha256 of everything the binary is built from (sources, modules, images,
//! manifest and lock file, the compiler's version), the identity the build cache keys on.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

// Cargo passes its paths in the environment.
#[allow(clippy::disallowed_methods)]
fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut files = Vec::new();
    for top in ["modules", "images"] {
        println!("cargo:rerun-if-changed={top}");
        walk(&root.join(top), &mut files);
    }
    let mut code =
        String::from("/// Built-in files: (path relative to the repository, contents).\npub static EMBEDDED: &[(&str, &str)] = &[\n");
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
        code.push_str(&format!("    ({rel:?}, include_str!({:?})),\n", f.to_string_lossy()));
    }
    code.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    fs::write(out_dir.join("embedded.rs"), code).unwrap();
    fs::write(out_dir.join("source_id.rs"), format!("pub const SOURCE_ID: &str = {:?};\n", source_id(&root))).unwrap();
}

/// The sha256 of every file the binary is built from, by path, and of the compiler's version:
/// two kilns with the same id compile the same sources with the same compiler.
#[allow(clippy::disallowed_methods)] // Cargo names the compiler in the environment
fn source_id(root: &Path) -> String {
    let mut files = Vec::new();
    for top in ["src", "modules", "images"] {
        walk(&root.join(top), &mut files);
    }
    for f in ["build.rs", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={f}");
        files.push(root.join(f));
    }
    println!("cargo:rerun-if-changed=src");
    let mut h = Sha256::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let bytes = fs::read(f).unwrap_or_default();
        h.update(format!("{rel}\0{}\0", bytes.len()));
        h.update(&bytes);
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc).arg("-vV").output().map(|o| o.stdout).unwrap_or_default();
    h.update(&version);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
