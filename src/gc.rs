//! `kiln gc`: removes the store entries nothing refers to. Roots are the `result` links that
//! builds and pulls registered (`<store>/.roots/`) and, from the caller, entries to keep (the
//! deployed generations); an entry stays when a root reaches it, directly or through the links
//! between entries (a system entry links to its hosts' entries).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::store::{self, ROOTS, Store};

/// What a collection removed and kept.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Entry names removed, sorted.
    pub removed: Vec<String>,
    /// Bytes of regular files in the removed entries.
    pub freed_bytes: u64,
    /// Entries kept because a root reaches them.
    pub kept: usize,
    /// Roots whose link was deleted or no longer points into the store; they are unregistered.
    pub stale_roots: Vec<PathBuf>,
}

/// Collects `store`, keeping what the registered roots and `keep` (entry names) reach. Waits
/// for running builds and pulls (they hold the store lock shared) and blocks new ones until
/// done. With `dry_run`, reports what it would remove and removes nothing.
pub fn collect(store: &Store, keep: &[String], dry_run: bool) -> std::io::Result<Report> {
    let _alone = store::lock_exclusive(store)?;
    let root = fs::canonicalize(&store.root)?;
    let mut report = Report::default();
    let mut live: Vec<String> = keep.to_vec();
    for (file, link) in roots(&root)? {
        match entry_of_link(&root, &link) {
            Some(name) => live.push(name),
            None => {
                if !dry_run {
                    fs::remove_file(&file)?;
                }
                report.stale_roots.push(link);
            }
        }
    }
    let reached = reach(&root, live);
    for name in entries(&root)? {
        if reached.contains(&name) {
            report.kept += 1;
            continue;
        }
        let dir = root.join(&name);
        report.freed_bytes += size(&dir);
        if !dry_run {
            store::unseal_and_remove(&dir)?;
        }
        report.removed.push(name);
    }
    if !dry_run {
        // Warm-build records whose entry just went: they could never be used again.
        crate::cache::drop_stale(store);
    }
    Ok(report)
}

/// Every registered root: (its file in `.roots/`, the link it names).
fn roots(root: &Path) -> std::io::Result<Vec<(PathBuf, PathBuf)>> {
    let dir = root.join(ROOTS);
    let mut v = Vec::new();
    let Ok(read) = fs::read_dir(&dir) else { return Ok(v) };
    for e in read {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with('.') {
            continue; // a root being registered
        }
        if let Ok(link) = fs::read_link(e.path()) {
            v.push((e.path(), link));
        }
    }
    v.sort();
    Ok(v)
}

/// The store entry a `result` link points at, if it is still a link into this store.
fn entry_of_link(root: &Path, link: &Path) -> Option<String> {
    let meta = fs::symlink_metadata(link).ok()?;
    if !meta.file_type().is_symlink() {
        return None;
    }
    let target = fs::canonicalize(link).ok()?;
    (target.parent()? == root).then(|| target.file_name()?.to_str().map(str::to_string)).flatten()
}

/// Entry directories: every directory in the store but the dot-directories (roots, staging).
fn entries(root: &Path) -> std::io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(root)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && e.file_type()?.is_dir() {
            v.push(name);
        }
    }
    v.sort();
    Ok(v)
}

/// The entries reachable from `live` through the links inside entries.
fn reach(root: &Path, live: Vec<String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = live;
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        for e in walkdir::WalkDir::new(root.join(&name)).into_iter().filter_map(Result::ok) {
            if !e.path_is_symlink() {
                continue;
            }
            let Ok(target) = fs::read_link(e.path()) else { continue };
            let at = e.path().parent().unwrap_or(root).join(target);
            if let Some(other) = entry_in(root, &at) {
                todo.push(other);
            }
        }
    }
    seen
}

/// The entry name of `path` (a path inside the store, normalised without following links).
fn entry_in(root: &Path, path: &Path) -> Option<String> {
    let mut parts: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                parts.pop();
            }
            Component::CurDir => {}
            c => parts.push(c),
        }
    }
    let normal: PathBuf = parts.iter().collect();
    let rel = normal.strip_prefix(root).ok()?;
    rel.components().next().and_then(|c| c.as_os_str().to_str()).map(str::to_string)
}

/// Bytes of the regular files under `dir`.
fn size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
