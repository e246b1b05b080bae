//! The content-addressed store: `<store>/<hash>-<name>` directories, written atomically (a
//! temporary directory renamed into place) and read-only once written.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::render::hex;

/// A file or link inside a store entry.
pub enum Node<'a> {
    File {
        path: &'a str,
        mode: u32,
        bytes: &'a [u8],
    },
    /// A relative symbolic link (to a sibling store entry).
    Link {
        path: &'a str,
        target: String,
    },
}

pub struct Store {
    pub root: PathBuf,
}

/// The digest that names an entry: its nodes in path order, each with mode and content hash.
pub fn entry_hash(nodes: &[Node<'_>]) -> String {
    let mut lines: Vec<String> = nodes
        .iter()
        .map(|n| match n {
            Node::File { path, mode, bytes } => format!("file {path} {:o} {}\n", mode & 0o111, hex(&Sha256::digest(bytes))),
            Node::Link { path, target } => format!("link {path} {target}\n"),
        })
        .collect();
    lines.sort();
    hex(&Sha256::digest(lines.concat().as_bytes()))
}

impl Store {
    pub fn open(root: &Path) -> std::io::Result<Store> {
        fs::create_dir_all(root)?;
        Ok(Store { root: root.to_path_buf() })
    }

    /// The entry's directory name for a hash and a name.
    pub fn entry_name(hash: &str, name: &str) -> String {
        format!("{}-{name}", &hash[..32])
    }

    /// Writes an entry unless it exists; returns its path. Never leaves a partial entry.
    pub fn add(&self, hash: &str, name: &str, nodes: &[Node<'_>]) -> std::io::Result<PathBuf> {
        let final_path = self.root.join(Store::entry_name(hash, name));
        if final_path.exists() {
            return Ok(final_path);
        }
        let tmp = tempfile::Builder::new().prefix(".tmp-").tempdir_in(&self.root)?;
        for n in nodes {
            match n {
                Node::File { path, mode, bytes } => {
                    let p = tmp.path().join(path);
                    fs::create_dir_all(p.parent().unwrap())?;
                    let mut f = fs::File::create(&p)?;
                    f.write_all(bytes)?;
                    f.sync_all()?;
                    let ro = if mode & 0o111 != 0 { 0o555 } else { 0o444 };
                    fs::set_permissions(&p, fs::Permissions::from_mode(ro))?;
                }
                Node::Link { path, target } => {
                    let p = tmp.path().join(path);
                    fs::create_dir_all(p.parent().unwrap())?;
                    symlink(target, &p)?;
                }
            }
        }
        seal_dirs(tmp.path())?;
        let tmp_path = tmp.keep();
        match fs::rename(&tmp_path, &final_path) {
            Ok(()) => Ok(final_path),
            Err(_) if final_path.exists() => {
                // Another build wrote the same entry first: identical by construction.
                let _ = unseal_and_remove(&tmp_path);
                Ok(final_path)
            }
            Err(e) => {
                let _ = unseal_and_remove(&tmp_path);
                Err(e)
            }
        }
    }
}

fn seal_dirs(dir: &Path) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(dir).contents_first(true) {
        let entry = entry.map_err(std::io::Error::other)?;
        if entry.file_type().is_dir() {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o555))?;
        }
    }
    Ok(())
}

fn unseal_and_remove(dir: &Path) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(std::io::Error::other)?;
        if entry.file_type().is_dir() {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o755))?;
        }
    }
    fs::remove_dir_all(dir)
}

/// Points `link` at `target`, replacing an old link atomically.
pub fn set_link(link: &Path, target: &Path) -> std::io::Result<()> {
    if let Ok(meta) = fs::symlink_metadata(link)
        && !meta.file_type().is_symlink()
    {
        return Err(std::io::Error::other(format!("`{}` exists and is not a symbolic link", link.display())));
    }
    let dir = link.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp-{}", link.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp)?;
    fs::rename(&tmp, link)
}
