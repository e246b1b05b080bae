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

/// A fleet of Hetzner hosts `h00`…`h19` and `zz-fat`; with `fat`, `zz-fat` carries a config
/// file too big for Hetzner's 32 KiB user-data (it renders last: the others are staged first).
fn fleet_with_a_fat_host(dir: &Path, fat: bool) -> (PathBuf, PathBuf) {
    let mods = dir.join("mods/big");
    std::fs::create_dir_all(&mods).unwrap();
    std::fs::write(
        mods.join("module.toml"),
        "[module]\nname = \"big\"\nversion = \"1.0.0\"\nsummary = \"a big config file\"\nkind = \"container\"\n\n[container]\nimage = \"docker.io/library/nginx:1.27.3\"\n\n[files.\"big.conf\"]\ntemplate = \"big.conf.j2\"\ntarget = \"/etc/big.conf\"\n",
    )
    .unwrap();
    std::fs::write(mods.join("big.conf.j2"), incompressible_text(60_000)).unwrap();
    let mut system = String::from("[system]\nname = \"fat\"\n\n[providers.hetzner]\nkind = \"hetzner\"\n");
    for h in (0..20).map(|i| format!("h{i:02}")).chain(["zz-fat".to_string()]) {
        system.push_str(&format!("\n[hosts.{h}]\nprovider = \"hetzner\"\nimage = \"debian-12\"\npublic = true\n"));
    }
    if fat {
        system.push_str("\n[services.big]\nmodule = \"big\"\nhost = \"zz-fat\"\n");
    }
    let sys = dir.join("sys");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(sys.join("system.toml"), system).unwrap();
    (dir.join("mods"), sys)
}

/// `kiln build` stages each host's entry as soon as the host is rendered (pipeline::build): a
/// host found over its user-data limit after others were staged fails the build, and every
/// staged entry goes with it: nothing in the store but its lock, no result link. (A guard of
/// the store's promise for the streamed build; the build that kept every host in memory wrote
/// nothing before it knew every host fit.)
#[test]
fn a_build_failing_on_a_late_host_leaves_no_entry_of_the_hosts_it_staged() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let link = tmp.path().join("result");
    let (mods, sys) = fleet_with_a_fat_host(tmp.path(), true);
    let build = || run(kiln().arg("--modules").arg(&mods).arg("build").arg(&sys).arg("--store").arg(&store).arg("--out-link").arg(&link));
    let out = build();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("error[user-data-too-large]: the user-data of host `zz-fat`"), "{}", text(&out.stderr));
    let mut left: Vec<String> = std::fs::read_dir(&store).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, [".lock"], "no entry and no staging directory after the failed build");
    assert!(std::fs::symlink_metadata(&link).is_err(), "no result link");

    // the same fleet without the big file builds: every host gets its entry
    fleet_with_a_fat_host(tmp.path(), false);
    let out = build();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let entries =
        std::fs::read_dir(&store).unwrap().filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.')).count();
    assert_eq!(entries, 22, "21 host entries and the system's");
    assert_eq!(staging_dirs(&store), Vec::<String>::new());
}
