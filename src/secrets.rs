//! Secret files at the edges: which keys the system's SOPS and age files hold (read at load,
//! no key needed), whether they authenticate under the given identities, and — only for
//! delivery to a host — the values. Values never reach the model, the store or a log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::load::ReadError;
use crate::model::System;
use crate::sops::{self, Format, Identities};

/// What load learned of one secret file, named as the system declares it.
#[derive(Debug, Clone)]
pub enum FileStatus {
    /// No such file next to the system.
    Missing,
    /// The file cannot be used: not SOPS, damaged, or it failed to authenticate.
    Refused(String),
    /// A SOPS file and its keys; `verified` when an identity opened it and its MAC matched.
    Sops { keys: Vec<String>, verified: bool },
    /// A plain age file: one secret, the whole file; `verified` when an identity opened it.
    Age { verified: bool },
}

/// Whether a secret file is a plain age file (one value) rather than a SOPS document.
pub fn is_age(path: &str) -> bool {
    path.ends_with(".age")
}

/// Reads each declared secret file (relative to the system directory `root`, canonical) and,
/// with identities, decrypts it to prove it authentic; the plaintext is dropped at once.
pub fn inspect(root: &Path, files: &BTreeSet<String>, identities: Option<&Identities>) -> BTreeMap<String, FileStatus> {
    files.iter().map(|f| (f.clone(), inspect_one(root, f, identities))).collect()
}

fn inspect_one(root: &Path, file: &str, identities: Option<&Identities>) -> FileStatus {
    let rel = Path::new(file);
    let bytes = match read(root, file) {
        Ok(b) => b,
        Err(ReadError::Missing) => return FileStatus::Missing,
        Err(ReadError::Outside) => return FileStatus::Refused("a secret file must lie inside the system directory".into()),
        Err(e) => return FileStatus::Refused(format!("cannot read it: {e}")),
    };
    if is_age(file) {
        return match identities {
            None => FileStatus::Age { verified: false },
            Some(ids) => match sops::decrypt_age(&bytes, ids) {
                Ok(_) => FileStatus::Age { verified: true },
                Err(e) => FileStatus::Refused(e.to_string()),
            },
        };
    }
    let format = match Format::from_path(rel) {
        Ok(f) => f,
        Err(e) => return FileStatus::Refused(e.to_string()),
    };
    let Ok(text) = String::from_utf8(bytes) else { return FileStatus::Refused("not UTF-8 text".into()) };
    let keys = match sops::keys(&text, format) {
        Ok(k) => k,
        Err(e) => return FileStatus::Refused(e.to_string()),
    };
    match identities {
        None => FileStatus::Sops { keys, verified: false },
        Some(ids) => match sops::decrypt(&text, format, ids) {
            Ok(_) => FileStatus::Sops { keys, verified: true },
            Err(e) => FileStatus::Refused(e.to_string()),
        },
    }
}

/// The values of `names` (secrets of `sys`), decrypted for delivery to a host. An error names
/// files and keys only, with control characters shown visibly.
pub fn values(root: &Path, sys: &System, names: &BTreeSet<String>, identities: &Identities) -> Result<BTreeMap<String, Vec<u8>>, String> {
    values_of(root, sys, names, identities).map_err(|e| crate::diag::visible(&e).into_owned())
}

fn values_of(root: &Path, sys: &System, names: &BTreeSet<String>, identities: &Identities) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut by_file: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in names {
        let s = sys.secrets.get(n).ok_or_else(|| format!("secret `{n}` is not declared"))?;
        by_file.entry(s.file.as_str()).or_default().push(n);
    }
    let root = std::fs::canonicalize(root).map_err(|e| format!("cannot read `{}`: {e}", root.display()))?;
    let mut out = BTreeMap::new();
    for (file, secrets) in by_file {
        let bytes = read(&root, file).map_err(|e| format!("cannot read `{file}`: {e}"))?;
        if is_age(file) {
            let v = sops::decrypt_age(&bytes, identities).map_err(|e| format!("`{file}`: {e}"))?;
            for n in secrets {
                out.insert(n.to_string(), v.clone());
            }
            continue;
        }
        let format = Format::from_path(Path::new(file)).map_err(|e| e.to_string())?;
        let text = String::from_utf8(bytes).map_err(|_| format!("`{file}` is not UTF-8 text"))?;
        let all = sops::decrypt(&text, format, identities).map_err(|e| format!("`{file}`: {e}"))?;
        for n in secrets {
            let key = &sys.secrets[n].key;
            let v = all.get(key).ok_or_else(|| format!("`{file}` holds no key `{key}` (secret `{n}`)"))?;
            out.insert(n.to_string(), v.clone().into_bytes());
        }
    }
    Ok(out)
}

/// A secret file's bytes: a regular file inside `root` (canonical) once every link is
/// resolved, of bounded size. A link out of the directory is refused before anything is read.
fn read(root: &Path, file: &str) -> Result<Vec<u8>, ReadError> {
    let rel = Path::new(file);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(ReadError::Outside);
    }
    crate::load::read_contained(root, &root.join(rel)).map(|(_, bytes)| bytes)
}
