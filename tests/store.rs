//! The store after crashes and tampering: staging directories left by killed builds are removed
//! by the next build (never one a running build holds), and an entry changed after it was
//! written is found and replaced by the next build that would write it.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn example() -> PathBuf {
    examples().into_iter().next().unwrap()
}

fn build_into(store: &Path, link: &Path) -> std::process::Output {
    run(kiln().arg("build").arg(example()).arg("--store").arg(store).arg("--out-link").arg(link))
}

/// A build that compares the store with what it writes even when the warm-build cache holds a
/// record of the same inputs (a cache hit checks only that the entry is there, sealed, with
/// its manifest: a full build is what finds a tampered file).
fn full_build_into(store: &Path, link: &Path) -> std::process::Output {
    run(kiln().arg("build").arg("--no-cache").arg(example()).arg("--store").arg(store).arg("--out-link").arg(link))
}

fn staging_dirs(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    v.sort();
    v
}

/// A staging directory as a killed build leaves it: files read-only, directories sealed.
fn leftover(store: &Path, name: &str) -> PathBuf {
    let d = store.join(name);
    std::fs::create_dir_all(d.join("hosts/web")).unwrap();
    std::fs::write(d.join("hosts/web/provision.sh"), "#!/bin/sh\n").unwrap();
    for (p, mode) in [(d.join("hosts/web/provision.sh"), 0o555), (d.join("hosts/web"), 0o555), (d.join("hosts"), 0o555), (d.clone(), 0o555)]
    {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    d
}

#[test]
fn a_build_removes_what_killed_builds_left_but_not_a_running_builds_staging() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let link = tmp.path().join("result");
    assert!(build_into(&store, &link).status.success());
    leftover(&store, ".tmp-killed1");
    leftover(&store, ".tmp-killed2");

    // another build is staging: it holds the store lock shared
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(store.join(".lock")).unwrap();
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_SH) }, 0);
    let out = build_into(&store, &link);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(staging_dirs(&store), [".tmp-killed1", ".tmp-killed2"], "nothing removed while another build may own it");
    drop(lock);

    let out = build_into(&store, &link);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(staging_dirs(&store), Vec::<String>::new(), "the leftovers are gone");
}

#[test]
fn a_build_killed_while_staging_leaves_nothing_the_next_build_keeps() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut killed = 0;
    for attempt in 0..5 {
        std::fs::create_dir_all(&store).unwrap();
        let mut child = kiln()
            .arg("build")
            .arg(example())
            .arg("--store")
            .arg(&store)
            .arg("--out-link")
            .arg(tmp.path().join(format!("r{attempt}")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        loop {
            if !staging_dirs(&store).is_empty() {
                child.kill().unwrap(); // SIGKILL
                killed += 1;
                break;
            }
            if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(60) {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.wait();
        // a fresh store each time, so the build has to stage again
        if staging_dirs(&store).is_empty() {
            unseal(&store);
            std::fs::remove_dir_all(&store).unwrap();
            continue;
        }
        break;
    }
    if killed == 0 || staging_dirs(&store).is_empty() {
        eprintln!("no build was caught while staging; simulating one");
        std::fs::create_dir_all(&store).unwrap();
        leftover(&store, ".tmp-killed");
    }
    let out = build_into(&store, &tmp.path().join("result"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(staging_dirs(&store), Vec::<String>::new());
}

fn unseal(dir: &Path) {
    for e in walkdir::WalkDir::new(dir).into_iter().filter_map(|e| e.ok()) {
        if e.file_type().is_dir() {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

#[test]
fn a_tampered_entry_is_found_and_replaced_by_the_next_full_build() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let link = tmp.path().join("result");
    assert!(build_into(&store, &link).status.success());
    let before = files(&link);
    let hosts = std::fs::canonicalize(&link).unwrap().join("hosts");
    let host = std::fs::read_dir(&hosts).unwrap().next().unwrap().unwrap().path();
    let script = std::fs::canonicalize(host.join("provision.sh")).unwrap();
    let entry = script.parent().unwrap().to_path_buf();

    // same size, other bytes, mode restored: only the content tells
    let original = std::fs::read(&script).unwrap();
    let mut evil = original.clone();
    let n = evil.len();
    evil[n - 2] = b'#';
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&script, &evil).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = full_build_into(&store, &link);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("damaged") && err.contains("provision.sh: content changed"), "{err}");
    assert_eq!(std::fs::read(&script).unwrap(), original, "the entry holds the built bytes again");
    assert_eq!(files(&link), before);

    // an extra file in an entry
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(entry.join("backdoor.sh"), "x").unwrap();
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = full_build_into(&store, &link);
    let err = text(&out.stderr);
    assert!(out.status.success() && err.contains("backdoor.sh: not written by kiln"), "{err}");
    assert!(!entry.join("backdoor.sh").exists());

    // an untouched store rebuilds silently
    let out = build_into(&store, &link);
    assert!(!text(&out.stderr).contains("damaged"), "{}", text(&out.stderr));
}
