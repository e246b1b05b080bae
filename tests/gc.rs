//! `kiln gc`: entries that no registered `result` link reaches are removed, and only those;
//! a build running at the same time is not disturbed; an unprivileged owner can collect its
//! own read-only store. The expected sets are computed here from the links themselves.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{kiln, repo, run, text};

/// Entry directories in the store (dot-directories are kiln's own: roots, staging).
fn entries(store: &Path) -> BTreeSet<String> {
    std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// What a result link keeps alive: its system entry and the host entries it links to.
fn closure_of(link: &Path) -> BTreeSet<String> {
    let system = std::fs::canonicalize(link).unwrap();
    let mut v = BTreeSet::from([system.file_name().unwrap().to_string_lossy().into_owned()]);
    for h in std::fs::read_dir(system.join("hosts")).unwrap() {
        let host = std::fs::canonicalize(h.unwrap().path()).unwrap();
        v.insert(host.file_name().unwrap().to_string_lossy().into_owned());
    }
    v
}

/// A copy of five-vps-saas with one option changed on one host: some host entries are shared
/// with the original, one is not.
fn variant(dir: &Path) -> PathBuf {
    let sys = dir.join("variant");
    common::copy_tree(&repo().join("flake-free-examples/five-vps-saas"), &sys);
    let services = sys.join("services.toml");
    let t = std::fs::read_to_string(&services).unwrap();
    let changed = t.replacen("appendonly = true", "appendonly = false", 1);
    assert_ne!(t, changed);
    std::fs::write(&services, changed).unwrap();
    sys
}

fn build(cwd: &Path, system: &Path, store: &Path, link: &str) {
    let out = run(kiln().current_dir(cwd).arg("build").arg(system).arg("--store").arg(store).arg("--out-link").arg(link));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn gc(store: &Path, extra: &[&str]) -> serde_json::Value {
    let out = run(kiln().arg("gc").arg("--store").arg(store).arg("--json").args(extra));
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn gc_removes_exactly_what_no_root_reaches() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let original = repo().join("flake-free-examples/five-vps-saas");
    build(tmp.path(), &original, &store, "a");
    build(tmp.path(), &variant(tmp.path()), &store, "b");
    let keep = closure_of(&tmp.path().join("a"));
    let dropped = closure_of(&tmp.path().join("b"));
    let before = entries(&store);
    assert_eq!(before, &keep | &dropped);
    assert!(!(&dropped - &keep).is_empty() && !(&dropped & &keep).is_empty(), "the variant shares some hosts, not all");

    // While both links exist nothing goes.
    assert_eq!(gc(&store, &[])["removed"].as_array().unwrap().len(), 0);
    assert_eq!(entries(&store), before);

    std::fs::remove_file(tmp.path().join("b")).unwrap();
    let dry = gc(&store, &["--dry-run"]);
    assert_eq!(entries(&store), before, "a dry run removes nothing");
    let r = gc(&store, &[]);
    assert_eq!(r["removed"], dry["removed"]);
    let removed: BTreeSet<String> = r["removed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(removed, &dropped - &keep, "exactly the entries only `b` reached");
    assert_eq!(entries(&store), keep);
    assert!(r["freed_bytes"].as_u64().unwrap() > 0);
    assert_eq!(r["stale_roots"].as_array().unwrap().len(), 1, "the deleted link's root is unregistered");
    // What is left is whole: the kept build checks against the store byte for byte.
    let out = run(kiln()
        .current_dir(tmp.path())
        .arg("build")
        .arg(&original)
        .arg("--store")
        .arg(&store)
        .arg("--out-link")
        .arg("a")
        .arg("--check"));
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A link pointed elsewhere releases its old entry too.
    build(tmp.path(), &variant(&tmp.path().join("v2")), &store, "a");
    let r = gc(&store, &[]);
    let removed: BTreeSet<String> = r["removed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(removed, &keep - &closure_of(&tmp.path().join("a")));
}

#[test]
fn a_build_running_during_gc_is_not_disturbed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    build(tmp.path(), &repo().join("flake-free-examples/five-vps-saas"), &store, "first");
    std::fs::remove_file(tmp.path().join("first")).unwrap();
    for round in 0..6 {
        // Each round builds entries the store has never held, with no root yet, while gc runs.
        let sys = tmp.path().join(format!("sys{round}"));
        common::copy_tree(&repo().join("flake-free-examples/five-vps-saas"), &sys);
        let services = sys.join("services.toml");
        let t = std::fs::read_to_string(&services).unwrap();
        std::fs::write(&services, t.replacen("maxmemory = \"2GiB\"", &format!("maxmemory = \"{}MiB\"", 1000 + round), 1)).unwrap();
        let link = format!("r{round}");
        let mut b =
            kiln().current_dir(tmp.path()).arg("build").arg(&sys).arg("--store").arg(&store).arg("--out-link").arg(&link).spawn().unwrap();
        let g = run(kiln().arg("gc").arg("--store").arg(&store));
        assert!(g.status.success(), "{}", text(&g.stderr));
        assert!(b.wait().unwrap().success(), "the build failed next to gc");
        // The build's closure is whole, whichever of the two went first.
        let closure = closure_of(&tmp.path().join(&link));
        for e in &closure {
            assert!(store.join(e).is_dir(), "round {round}: {e} is gone");
        }
        let out = run(kiln()
            .current_dir(tmp.path())
            .arg("build")
            .arg(&sys)
            .arg("--store")
            .arg(&store)
            .arg("--out-link")
            .arg(&link)
            .arg("--check"));
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::fs::remove_file(tmp.path().join(&link)).unwrap();
    }
}

#[test]
fn an_unprivileged_owner_collects_its_read_only_store() {
    let tmp = tempfile::tempdir().unwrap();
    let euid = unsafe_free_euid();
    let as_user = |cmd: &mut std::process::Command| -> std::process::Output {
        if euid == 0 {
            // Run kiln as `nobody` through setpriv (util-linux).
            let c = std::process::Command::new("setpriv");
            let mut c = c;
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(cmd.get_program()).args(cmd.get_args());
            c.current_dir(cmd.get_current_dir().unwrap()).env("NO_COLOR", "1").env_remove("KILN_STORE");
            run(&mut c)
        } else {
            run(cmd)
        }
    };
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    common::copy_tree(&repo().join("flake-free-examples/five-vps-saas"), &work.join("sys"));
    if euid == 0 {
        let st = std::process::Command::new("chown").args(["-R", "65534:65534"]).arg(tmp.path()).status().unwrap();
        assert!(st.success());
        std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let out = as_user(kiln().current_dir(&work).args(["build", "sys", "--store", "store"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let store = work.join("store");
    let n = entries(&store).len();
    assert!(n > 1);
    // Entries are read-only to their owner.
    let entry = store.join(entries(&store).into_iter().next().unwrap());
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&entry).unwrap().permissions()) & 0o222, 0);
    std::fs::remove_file(work.join("result")).unwrap();
    let out = as_user(kiln().current_dir(&work).args(["gc", "--store", "store"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("removed {n} entries")), "{}", text(&out.stderr));
    assert!(entries(&store).is_empty());
}

/// The effective user id, read from /proc (no unsafe, no libc in the tests).
fn unsafe_free_euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}
