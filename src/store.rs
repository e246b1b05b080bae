//! The content-addressed store: `<store>/<hash>-<name>` directories, written atomically (a
//! temporary directory renamed into place) and read-only once written.

use std::collections::BTreeSet;
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

    /// Writes entries that do not exist yet; returns every entry's path, in order. Each entry
    /// is written into a temporary directory, the file system is synced once, then each is
    /// renamed into place: there is never a partial entry, even after a crash.
    pub fn add_all(&self, entries: &[Entry<'_>]) -> std::io::Result<Vec<PathBuf>> {
        let mut paths = Vec::new();
        let mut staged: Vec<((tempfile::TempDir, BTreeSet<PathBuf>), PathBuf)> = Vec::new();
        for e in entries {
            let final_path = self.root.join(Store::entry_name(&e.hash, &e.name));
            if !final_path.exists() && !staged.iter().any(|(_, p)| *p == final_path) {
                staged.push((self.stage(&e.nodes)?, final_path.clone()));
            }
            paths.push(final_path);
        }
        if staged.is_empty() {
            return Ok(paths);
        }
        sync_filesystem(&self.root)?;
        for ((tmp, dirs), final_path) in staged {
            for d in dirs.iter().rev().chain([&tmp.path().to_path_buf()]) {
                fs::set_permissions(d, fs::Permissions::from_mode(0o555))?;
            }
            let tmp_path = tmp.keep();
            match fs::rename(&tmp_path, &final_path) {
                Ok(()) => {}
                // Another build wrote the same entry first: identical by construction.
                Err(_) if final_path.exists() => unseal_and_remove(&tmp_path)?,
                Err(e) => {
                    let _ = unseal_and_remove(&tmp_path);
                    return Err(e);
                }
            }
        }
        Ok(paths)
    }

    /// Writes one entry's nodes into a fresh temporary directory inside the store.
    fn stage(&self, nodes: &[Node<'_>]) -> std::io::Result<(tempfile::TempDir, BTreeSet<PathBuf>)> {
        let tmp = tempfile::Builder::new().prefix(".tmp-").tempdir_in(&self.root)?;
        let mut made: BTreeSet<PathBuf> = BTreeSet::new();
        for n in nodes {
            let (Node::File { path, .. } | Node::Link { path, .. }) = n;
            let p = tmp.path().join(path);
            make_parents(tmp.path(), &p, &mut made)?;
            match n {
                Node::File { mode, bytes, .. } => {
                    let mut f = fs::File::create(&p)?;
                    f.write_all(bytes)?;
                    f.set_permissions(fs::Permissions::from_mode(if mode & 0o111 != 0 { 0o555 } else { 0o444 }))?;
                }
                Node::Link { target, .. } => symlink(target, &p)?,
            }
        }
        Ok((tmp, made))
    }
}

/// Creates the directories between `root` and `path`, each once.
fn make_parents(root: &Path, path: &Path, made: &mut BTreeSet<PathBuf>) -> std::io::Result<()> {
    let Some(parent) = path.parent() else { return Ok(()) };
    if parent == root || made.contains(parent) {
        return Ok(());
    }
    make_parents(root, parent, made)?;
    fs::create_dir(parent)?;
    made.insert(parent.to_path_buf());
    Ok(())
}

/// One entry to add: its hash, its name and its contents.
pub struct Entry<'a> {
    pub hash: String,
    pub name: String,
    pub nodes: Vec<Node<'a>>,
}

/// Flushes everything written to the store's file system (one `syncfs` instead of an fsync
/// per file).
fn sync_filesystem(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let d = fs::File::open(dir)?;
    // SAFETY: `syncfs` takes a file descriptor that `d` keeps open for the call.
    if unsafe { libc::syncfs(d.as_raw_fd()) } == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
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
