//! The content-addressed store: `<store>/<hash>-<name>` directories, written atomically (a
//! temporary directory renamed into place) and read-only once written.
//!
//! Builds that are killed leave their `.tmp-*` staging directories behind. Every writer holds
//! `<store>/.lock` shared while it stages; the next writer that can take it exclusively
//! (nobody else is staging) removes every staging directory first. An entry that already
//! exists is compared with what would be written and replaced if it differs.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use crate::render::hex;

/// A file or link inside a store entry.
pub enum Node<'a> {
    File {
        path: &'a str,
        mode: u32,
        bytes: &'a [u8],
        /// The bytes' sha256 in hex when the caller has it already (the manifest lists every
        /// artifact's): [`entry_hash`] then does not hash the bytes again.
        sha256: Option<&'a str>,
    },
    /// A relative symbolic link (to a sibling store entry).
    Link { path: &'a str, target: String },
}

pub struct Store {
    pub root: PathBuf,
}

/// The digest that names an entry: its nodes in path order, each with mode and content hash.
pub fn entry_hash(nodes: &[Node<'_>]) -> String {
    let mut lines: Vec<String> = nodes
        .iter()
        .map(|n| match n {
            Node::File { path, mode, sha256: Some(sha), .. } => format!("file {path} {:o} {sha}\n", mode & 0o111),
            Node::File { path, mode, bytes, sha256: None } => format!("file {path} {:o} {}\n", mode & 0o111, hex(&Sha256::digest(bytes))),
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
    ///
    /// An entry that exists already is checked against `entries` (every file's bytes and mode,
    /// every link, nothing more): one that differs was damaged or tampered with after it was
    /// written, and is replaced in one atomic exchange, with a warning on stderr.
    pub fn add_all(&self, entries: &[Entry<'_>]) -> std::io::Result<Vec<PathBuf>> {
        let staging = self.staging()?;
        let paths: Vec<PathBuf> = entries.iter().map(|e| self.entry_path(e)).collect();
        // Each distinct entry once (the first of equal ones), checked or staged on its own:
        // entries are independent, so the work is spread over the machine's cores.
        let mut seen = BTreeSet::new();
        let distinct: Vec<&Entry<'_>> = entries.iter().zip(&paths).filter(|(_, p)| seen.insert(*p)).map(|(e, _)| e).collect();
        let prepared = parallel(&distinct, |e| staging.prepare(e));
        // On an error, every staging directory made is dropped (removed) before returning.
        let pending: Vec<Pending> = prepared.into_iter().collect::<std::io::Result<Vec<_>>>()?.into_iter().flatten().collect();
        staging.commit(pending)?;
        Ok(paths)
    }

    /// Where an entry is (or goes) in the store.
    pub fn entry_path(&self, e: &Entry<'_>) -> PathBuf {
        self.root.join(Store::entry_name(&e.hash, &e.name))
    }

    /// Starts writing entries one by one ([`Staging::prepare`] as each is made, from any
    /// thread), to be renamed into place together by [`Staging::commit`]. Holds the store as a
    /// writer until dropped.
    pub fn staging(&self) -> std::io::Result<Staging<'_>> {
        Ok(Staging { store: self, _lock: self.lock_for_staging()? })
    }

    /// Holds the store for a writer until dropped: `kiln build` and `kiln pull` keep it from
    /// before they write an entry until its root is registered, so `kiln gc` (which takes the
    /// lock exclusively) never sees a new entry without its root.
    pub fn writer(&self) -> std::io::Result<WriterLock> {
        self.lock_for_staging().map(WriterLock)
    }

    /// Registers `link` (a `result` link) as a garbage-collector root: the entry it points at,
    /// and every entry that entry links to, stay until the link is deleted or points elsewhere.
    /// Roots are links in `<store>/.roots/`, named by a hash of the link's absolute path.
    pub fn add_root(&self, link: &Path) -> std::io::Result<()> {
        let link = std::path::absolute(link)?;
        let dir = self.root.join(ROOTS);
        fs::create_dir_all(&dir)?;
        let name = hex(&Sha256::digest(link.as_os_str().as_encoded_bytes()));
        let tmp = dir.join(format!(".{}.tmp-{}", &name[..16], std::process::id()));
        let _ = fs::remove_file(&tmp);
        symlink(&link, &tmp)?;
        fs::rename(&tmp, dir.join(&name[..32]))
    }

    /// Takes `<store>/.lock` shared for the time the returned file is open. A writer that gets
    /// it exclusively first is alone, so every staging directory in the store was left by a
    /// writer that died: it removes them, then holds the lock shared like the others.
    fn lock_for_staging(&self) -> std::io::Result<fs::File> {
        let lock = fs::OpenOptions::new().create(true).truncate(false).write(true).open(self.root.join(".lock"))?;
        if flock(&lock, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
            self.remove_stale_staging()?;
        }
        flock(&lock, libc::LOCK_SH)?;
        Ok(lock)
    }

    /// Removes every `.tmp-*` staging directory (call only with the store lock held exclusively).
    fn remove_stale_staging(&self) -> std::io::Result<()> {
        for e in fs::read_dir(&self.root)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with(STAGING_PREFIX) && e.file_type()?.is_dir() {
                unseal_and_remove(&e.path())?;
            }
        }
        Ok(())
    }

    /// Writes one entry's nodes into a fresh temporary directory inside the store.
    fn stage(&self, nodes: &[Node<'_>]) -> std::io::Result<Staged> {
        let tmp = tempfile::Builder::new().prefix(STAGING_PREFIX).tempdir_in(&self.root)?;
        let mut made: BTreeSet<PathBuf> = BTreeSet::new();
        for n in nodes {
            let (Node::File { path, .. } | Node::Link { path, .. }) = n;
            let p = tmp.path().join(path);
            make_parents(tmp.path(), &p, &mut made)?;
            match n {
                Node::File { mode, bytes, .. } => {
                    let mut f = fs::File::create(&p)?;
                    f.write_all(bytes)?;
                    f.set_permissions(fs::Permissions::from_mode(sealed_mode(*mode)))?;
                }
                Node::Link { target, .. } => symlink(target, &p)?,
            }
        }
        Ok((tmp, made))
    }
}

/// A writer's hold on the store (see [`Store::writer`]); released when dropped.
pub struct WriterLock(#[allow(dead_code)] fs::File);

/// Entries on their way into the store (see [`Store::staging`]): each staged in its own
/// temporary directory as it is prepared, none visible until [`Staging::commit`] renames them
/// into place. Whatever is not committed is removed when dropped (on an error); a build killed
/// meanwhile leaves staging directories that the next writer removes.
pub struct Staging<'s> {
    store: &'s Store,
    _lock: fs::File,
}

/// An entry staged by [`Staging::prepare`], waiting for [`Staging::commit`]: its staged
/// contents (removed if dropped), where they go, and what was wrong with the entry there if
/// anything (then it is replaced).
pub struct Pending {
    staged: Staged,
    final_path: PathBuf,
    damage: Option<String>,
}

impl Staging<'_> {
    /// Checks `e` against the entry of its name if there is one, else stages it: `None` when
    /// the entry is in the store intact (nothing to do), else what [`Staging::commit`] must
    /// put in place. `e`'s bytes are not needed after this returns.
    pub fn prepare(&self, e: &Entry<'_>) -> std::io::Result<Option<Pending>> {
        let final_path = self.store.entry_path(e);
        let damage = match fs::symlink_metadata(&final_path) {
            Ok(_) => differs(&final_path, &e.nodes)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Some(String::new()),
            Err(err) => return Err(err),
        };
        match damage {
            Some(damage) => {
                Ok(Some(Pending { staged: self.store.stage(&e.nodes)?, final_path, damage: Some(damage).filter(|d| !d.is_empty()) }))
            }
            None => Ok(None),
        }
    }

    /// Syncs the file system once, then seals each pending entry and renames it into place, in
    /// order (an entry that links to others goes after them). On an error the entries not yet
    /// in place are removed.
    pub fn commit(self, pending: Vec<Pending>) -> std::io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        sync_filesystem(&self.store.root)?;
        for Pending { staged: (tmp, dirs), final_path, damage } in pending {
            for d in dirs.iter().rev().chain([&tmp.path().to_path_buf()]) {
                fs::set_permissions(d, fs::Permissions::from_mode(0o555))?;
            }
            let tmp_path = tmp.keep();
            if let Some(damage) = damage {
                let replaced = exchange(&tmp_path, &final_path).and_then(|()| unseal_and_remove(&tmp_path));
                if let Err(e) = replaced {
                    let _ = unseal_and_remove(&tmp_path);
                    return Err(std::io::Error::other(format!(
                        "{} is damaged ({damage}) and cannot be replaced: {e}",
                        final_path.display()
                    )));
                }
                eprintln!("warning: store entry {} was damaged ({damage}); replaced it", final_path.display());
                continue;
            }
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
        Ok(())
    }
}

/// Takes `<store>/.lock` exclusively, waiting for every writer to finish: `kiln gc` works alone.
pub fn lock_exclusive(store: &Store) -> std::io::Result<fs::File> {
    let lock = fs::OpenOptions::new().create(true).truncate(false).write(true).open(store.root.join(".lock"))?;
    flock(&lock, libc::LOCK_EX)?;
    Ok(lock)
}

/// The directory of garbage-collector roots inside the store.
pub const ROOTS: &str = ".roots";

/// A staging directory and the directories made inside it.
type Staged = (tempfile::TempDir, BTreeSet<PathBuf>);

/// Names of staging directories inside the store.
const STAGING_PREFIX: &str = ".tmp-";

fn flock(f: &fs::File, op: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: `flock` takes a file descriptor that `f` keeps open for the call.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Swaps two paths in one step (`renameat2(RENAME_EXCHANGE)`): readers see the old entry or
/// the new one, never none.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// How an existing entry differs from `nodes`, if it does: a file missing, of another type,
/// size, mode or content, a link pointing elsewhere, or anything extra. Reads every file: the
/// bytes are in memory already and the files in the page cache, so this costs a comparison.
fn differs(entry: &Path, nodes: &[Node<'_>]) -> std::io::Result<Option<String>> {
    if !fs::symlink_metadata(entry)?.is_dir() {
        return Ok(Some("not a directory".into()));
    }
    let mut expected = BTreeSet::new();
    for n in nodes {
        let (Node::File { path, .. } | Node::Link { path, .. }) = n;
        let p = entry.join(path);
        if let Some(why) = node_differs(&p, n)? {
            return Ok(Some(format!("{path}: {why}")));
        }
        expected.insert(p.clone());
        expected.extend(p.ancestors().skip(1).take_while(|a| *a != entry).map(Path::to_path_buf));
    }
    for e in walkdir::WalkDir::new(entry).min_depth(1) {
        let e = e.map_err(std::io::Error::other)?;
        if !expected.contains(e.path()) {
            return Ok(Some(format!("{}: not written by kiln", e.path().strip_prefix(entry).unwrap_or(e.path()).display())));
        }
    }
    Ok(None)
}

fn node_differs(p: &Path, n: &Node<'_>) -> std::io::Result<Option<&'static str>> {
    let meta = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some("missing")),
        Err(e) => return Err(e),
    };
    Ok(match n {
        Node::Link { target, .. } => match fs::read_link(p) {
            Ok(t) if meta.file_type().is_symlink() && t == Path::new(target) => None,
            _ => Some("link changed"),
        },
        Node::File { .. } if !meta.file_type().is_file() => Some("not a regular file"),
        Node::File { bytes, .. } if meta.len() != bytes.len() as u64 => Some("size changed"),
        Node::File { mode, .. } if meta.permissions().mode() & 0o7777 != sealed_mode(*mode) => Some("mode changed"),
        Node::File { bytes, .. } => (fs::read(p)? != *bytes).then_some("content changed"),
    })
}

/// `f` applied to every item, spread over up to the machine's cores; results in item order.
/// Threads take small batches from a shared counter rather than fixed shares, so a thread the
/// scheduler holds back (other processes on a shared machine) does not hold up the rest.
pub(crate) fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    const BATCH: usize = 4;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    if threads < 2 || items.len() < 16 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let start = next.fetch_add(BATCH, Ordering::Relaxed);
            if start >= items.len() {
                return done;
            }
            done.extend((start..(start + BATCH).min(items.len())).map(|i| (i, f(&items[i]))));
        }
    };
    let parts: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mine = work();
        helpers.into_iter().map(|h| h.join().expect("parallel work does not panic")).chain([mine]).collect()
    });
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for (i, r) in parts.into_iter().flatten() {
        slots[i] = Some(r);
    }
    slots.into_iter().map(|r| r.expect("every item is done once")).collect()
}

/// A file's mode in the store: read-only, executable when it was.
fn sealed_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 { 0o555 } else { 0o444 }
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

/// Removes a sealed (read-only) directory tree: directories are made writable first, so an
/// unprivileged owner can remove what it wrote.
pub fn unseal_and_remove(dir: &Path) -> std::io::Result<()> {
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
