//! The warm-build cache: a `kiln build` whose inputs hash to a build already in the store
//! answers from the store without loading or evaluating anything.
//!
//! A record in `<store>/.cache/<key>` is named by the *probe key*: kiln's identity (version
//! and a hash of its own executable, built-in modules included), the working directory, the
//! system path as given, every `--modules` directory with a digest of everything in it, the
//! render options and whether an identity was given (its hash, never its text). The record
//! lists every other file the build read (system file, imports, secret files) with what was
//! found there (resolved path and content hash, or why it could not be read), the system entry
//! it produced (with its `manifest.json`'s hash) and what the build printed. A lookup re-reads
//! every listed file: any byte changed, a link pointed elsewhere, a file appearing or
//! vanishing, and the record does not apply. A record that does not parse, names another key,
//! or whose entry is gone or altered is ignored and the system is built again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::load::ReadError;
use crate::pipeline::{KILN_VERSION, Options, Stored};
use crate::render::hex;
use crate::store::Store;

/// The cache's directory in the store (a dot directory: `kiln gc` never takes it for an entry).
pub const DIR: &str = ".cache";
const FORMAT: u32 = 1;

/// A file the build read: the path it was read by and what was found there.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Observed {
    pub path: PathBuf,
    pub found: String,
}

impl Observed {
    /// A file read by `path` (made absolute), resolved to `real`, holding `bytes`.
    pub fn file(path: &Path, real: &Path, bytes: &[u8]) -> Observed {
        Observed { path: absolute(path), found: found(real, bytes) }
    }

    /// A secret file as kiln reads it (inside `root`, canonical): its content hash, or why it
    /// could not be read. The hash is of the file as it is on disk (encrypted).
    pub fn secret_file(root: &Path, file: &str) -> Observed {
        let path = root.join(file);
        let found = observe(&path);
        Observed { path, found }
    }

    fn still_holds(&self) -> bool {
        observe(&self.path) == self.found
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn found(real: &Path, bytes: &[u8]) -> String {
    format!("{} sha256:{}", real.display(), hex(&Sha256::digest(bytes)))
}

/// What is at `path` now, in the form [`Observed::found`] takes.
fn observe(path: &Path) -> String {
    let real = match std::fs::canonicalize(path) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return "missing".into(),
        Err(e) => return format!("unreadable: {e}"),
    };
    match crate::load::read_regular(&real) {
        Ok(bytes) => found(&real, &bytes),
        Err(ReadError::Missing) => "missing".into(),
        Err(e) => format!("{} unreadable: {e}", real.display()),
    }
}

include!(concat!(env!("OUT_DIR"), "/source_id.rs"));

/// kiln's identity: its version and [`SOURCE_ID`], the sha256 build.rs takes of everything the
/// binary is built from (sources, built-in modules and images, Cargo.toml and Cargo.lock, the
/// compiler's version). Hashing the executable itself cost seconds per build for a debug binary.
fn kiln_identity() -> Option<&'static str> {
    static ID: OnceLock<String> = OnceLock::new();
    Some(ID.get_or_init(|| format!("{KILN_VERSION} {SOURCE_ID}")).as_str())
}

/// A digest of everything a `--modules` directory holds, walked as the loader walks it: every
/// path under it (files with their content, links with their target), in name order.
fn module_dir_digest(dir: &Path) -> Option<String> {
    let mut h = Sha256::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name().follow_links(false) {
        let entry = entry.ok()?;
        let rel = entry.path().strip_prefix(dir).ok()?;
        let t = entry.file_type();
        h.update(rel.as_os_str().as_encoded_bytes());
        if t.is_file() {
            let bytes = std::fs::read(entry.path()).ok()?;
            h.update(format!("\0file {} {}\n", bytes.len(), hex(&Sha256::digest(&bytes))));
        } else if t.is_symlink() {
            let target = std::fs::read_link(entry.path()).ok()?;
            h.update(b"\0link ");
            h.update(target.as_os_str().as_encoded_bytes());
            h.update(format!(" {}\n", observe(entry.path())));
        } else if t.is_dir() {
            h.update(b"\0dir\n");
        } else {
            h.update(b"\0other\n");
        }
    }
    Some(hex(&h.finalize()))
}

/// The key of a build before anything is loaded; `None` when one cannot be made (the build
/// then runs without the cache).
pub struct Probe {
    key: String,
}

impl Probe {
    pub fn new(path: &Path, opts: &Options) -> Option<Probe> {
        Probe::for_kiln(kiln_identity()?, path, opts)
    }

    /// The key as the kiln with `identity` would make it.
    fn for_kiln(identity: &str, path: &Path, opts: &Options) -> Option<Probe> {
        let mut lines = vec![format!("kiln-cache {FORMAT}"), identity.to_string()];
        lines.push(format!("cwd {}", std::env::current_dir().ok()?.display()));
        lines.push(format!("path {}", path.display()));
        for dir in &opts.module_dirs {
            lines.push(format!("modules {} {}", absolute(dir).display(), module_dir_digest(dir)?));
        }
        lines.push(format!("render {:?}", opts.render));
        lines.push(match &opts.identity {
            Some(text) => format!("identity sha256:{}", hex(&Sha256::digest(text.as_bytes()))),
            None => "identity none".into(),
        });
        let mut h = Sha256::new();
        for l in &lines {
            h.update(l.as_bytes());
            h.update(b"\0");
        }
        Some(Probe { key: hex(&h.finalize()) })
    }
}

/// What a build printed, besides its result line, to replay on a hit.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Printed {
    /// The warnings, rendered without and with colour.
    pub warnings: String,
    pub warnings_color: String,
    pub files_read: usize,
    pub modules_in_use: usize,
    pub artifacts: usize,
}

/// A cached build: what it read and what it produced.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Record {
    format: u32,
    key: String,
    read: Vec<Observed>,
    /// The system entry's directory name in the store and its `manifest.json`'s sha256.
    pub entry: String,
    manifest_sha256: String,
    pub system: String,
    pub hash: String,
    /// Host → closure hash, in host order.
    pub hosts: BTreeMap<String, String>,
    pub printed: Printed,
}

fn record_path(store: &Store, probe: &Probe) -> PathBuf {
    store.root.join(DIR).join(&probe.key)
}

/// The record for `probe`, if there is one, it is kiln's, every file it lists is as it was, and
/// its entry is in the store, sealed, with the manifest it had.
pub fn lookup(store: &Store, probe: &Probe) -> Option<Record> {
    let text = std::fs::read(record_path(store, probe)).ok()?;
    let r: Record = serde_json::from_slice(&text).ok()?;
    if r.format != FORMAT || r.key != probe.key || !plain_name(&r.entry) || r.read.is_empty() {
        return None;
    }
    if !r.read.iter().all(Observed::still_holds) {
        return None;
    }
    entry_intact(store, &r).then_some(r)
}

/// Whether the record's entry is in the store, sealed (read-only, as the store leaves every
/// entry) and holds the manifest the build wrote.
pub fn entry_intact(store: &Store, r: &Record) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let entry = store.root.join(&r.entry);
    let Ok(meta) = std::fs::symlink_metadata(&entry) else { return false };
    if !meta.is_dir() || meta.permissions().mode() & 0o222 != 0 {
        return false;
    }
    std::fs::read(entry.join("manifest.json")).is_ok_and(|m| hex(&Sha256::digest(&m)) == r.manifest_sha256)
}

fn plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains('/') && !name.chars().any(char::is_control)
}

/// Records a finished build: `entry` is its system entry in `store`. Module directories are
/// keyed again first: one that changed while the build ran leaves no record.
pub fn save(store: &Store, probe: &Probe, path: &Path, opts: &Options, c: &Stored, entry: &Path, printed: Printed) -> std::io::Result<()> {
    let again = Probe::new(path, opts);
    if again.as_ref().map(|p| &p.key) != Some(&probe.key) || c.read.is_empty() {
        return Ok(());
    }
    let Some(name) = entry.file_name().and_then(|n| n.to_str()).filter(|n| plain_name(n)) else { return Ok(()) };
    let manifest = std::fs::read(entry.join("manifest.json"))?;
    let record = Record {
        format: FORMAT,
        key: probe.key.clone(),
        read: c.read.clone(),
        entry: name.to_string(),
        manifest_sha256: hex(&Sha256::digest(&manifest)),
        system: c.system.name.clone(),
        hash: c.manifest.hash.clone(),
        hosts: c.manifest.hosts.iter().map(|(k, v)| (k.clone(), v.closure.clone())).collect(),
        printed,
    };
    let dir = store.root.join(DIR);
    std::fs::create_dir_all(&dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(&dir)?;
    tmp.write_all(&serde_json::to_vec(&record).map_err(std::io::Error::other)?)?;
    tmp.persist(record_path(store, probe)).map_err(|e| e.error)?;
    Ok(())
}

/// Removes records whose entry is no longer in the store (run by `kiln gc` under its lock).
/// Returns how many were removed.
pub fn drop_stale(store: &Store) -> usize {
    let Ok(read) = std::fs::read_dir(store.root.join(DIR)) else { return 0 };
    let mut removed = 0;
    for e in read.flatten() {
        let keep = std::fs::read(e.path())
            .ok()
            .and_then(|t| serde_json::from_slice::<Record>(&t).ok())
            .is_some_and(|r| plain_name(&r.entry) && store.root.join(&r.entry).is_dir());
        if !keep && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another kiln (other sources, compiler or version) keys the same build elsewhere, so it
    /// never reads this kiln's records; the identity is fixed when kiln is compiled.
    #[test]
    fn another_kiln_makes_another_key() {
        let opts = Options::default();
        let path = Path::new("system.toml");
        let this = Probe::new(path, &opts).unwrap().key;
        assert_eq!(this, Probe::for_kiln(kiln_identity().unwrap(), path, &opts).unwrap().key);
        let other = Probe::for_kiln(&format!("{KILN_VERSION} {}", "0".repeat(64)), path, &opts).unwrap().key;
        assert_ne!(this, other);
        assert_eq!(SOURCE_ID.len(), 64, "a sha256 in hex: {SOURCE_ID}");
    }
}
