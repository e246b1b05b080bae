//! The warm-build cache: a second `kiln build` of unchanged inputs answers from the store (`-v`
//! says "from cache") with the identical result; one byte changed in any input (system file,
//! imported file, `--modules` file, a module's template, secret file), another `--modules` set,
//! another `SOURCE_DATE_EPOCH` or another kiln executable builds again; a record whose entry
//! `kiln gc` removed is not trusted.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{copy_tree, kiln, repo, run, text};

/// A scratch copy of five-vps-saas (imports `services.toml`, names `secrets.sops.yaml`).
fn system(tmp: &Path) -> PathBuf {
    let sys = tmp.join("sys");
    copy_tree(&repo().join("flake-free-examples/five-vps-saas"), &sys);
    sys
}

/// Runs `kiln -v build` with `cmd` (kiln or a copy) and extra flags; returns (from cache?,
/// the result link's target).
fn build_with(mut cmd: Command, sys: &Path, tmp: &Path, flags: &[&Path]) -> (bool, PathBuf) {
    cmd.arg("-v");
    for f in flags {
        cmd.arg("--modules").arg(f);
    }
    let link = tmp.join("result");
    let out = run(cmd.arg("build").arg(sys).arg("--store").arg(tmp.join("store")).arg("--out-link").arg(&link));
    let err = text(&out.stderr);
    assert!(out.status.success(), "kiln build failed:\n{err}");
    let target = std::fs::canonicalize(&link).unwrap();
    assert_eq!(text(&out.stdout).trim(), target.display().to_string(), "the printed entry is the link's target");
    (err.contains("from cache"), target)
}

fn build(sys: &Path, tmp: &Path, modules: &[&Path]) -> (bool, PathBuf) {
    build_with(kiln(), sys, tmp, modules)
}

/// Appends one byte to a file.
fn touch_byte(p: &Path, byte: &str) {
    let mut t = std::fs::read(p).unwrap();
    t.extend_from_slice(byte.as_bytes());
    std::fs::write(p, t).unwrap();
}

/// A `--modules` directory holding one small test module.
fn module_dir(tmp: &Path, name: &str) -> PathBuf {
    let dir = tmp.join(name);
    copy_tree(&repo().join("tests/fixtures/modules/client"), &dir.join("client"));
    dir
}

#[test]
fn unchanged_inputs_hit_and_give_the_identical_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(tmp.path());
    let (hit, first) = build(&sys, tmp.path(), &[]);
    assert!(!hit, "the first build cannot come from the cache");
    let (hit, second) = build(&sys, tmp.path(), &[]);
    assert!(hit, "an unchanged rebuild answers from the cache");
    assert_eq!(first, second);
    // --no-cache builds again, to the same entry.
    let out = run(kiln()
        .args(["-v", "build", "--no-cache"])
        .arg(&sys)
        .arg("--store")
        .arg(tmp.path().join("store"))
        .arg("--out-link")
        .arg(tmp.path().join("r2")));
    assert!(out.status.success());
    assert!(!text(&out.stderr).contains("from cache"));
    assert_eq!(std::fs::canonicalize(tmp.path().join("r2")).unwrap(), first);
}

#[test]
fn one_byte_in_any_file_read_misses() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(tmp.path());
    build(&sys, tmp.path(), &[]);
    for (file, byte) in [("system.toml", "\n"), ("services.toml", "\n"), ("secrets.sops.yaml", "\n")] {
        assert!(build(&sys, tmp.path(), &[]).0, "unchanged before {file}");
        touch_byte(&sys.join(file), byte);
        assert!(!build(&sys, tmp.path(), &[]).0, "one byte more in {file} must build again");
    }
    // A change that alters the output gives another entry (the cache did not answer it).
    let (_, before) = build(&sys, tmp.path(), &[]);
    let services = sys.join("services.toml");
    let t = std::fs::read_to_string(&services).unwrap();
    let changed = t.replacen("appendonly = true", "appendonly = false", 1);
    assert_ne!(t, changed);
    std::fs::write(&services, changed).unwrap();
    let (hit, after) = build(&sys, tmp.path(), &[]);
    assert!(!hit);
    assert_ne!(before, after);
}

#[test]
fn module_directories_are_part_of_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(tmp.path());
    let a = module_dir(tmp.path(), "mods-a");
    let b = module_dir(tmp.path(), "mods-b");
    build(&sys, tmp.path(), &[]);
    assert!(!build(&sys, tmp.path(), &[&a]).0, "another --modules set");
    assert!(build(&sys, tmp.path(), &[&a]).0);
    touch_byte(&a.join("client/module.toml"), "\n");
    assert!(!build(&sys, tmp.path(), &[&a]).0, "one byte more in a module file");
    std::fs::write(a.join("client/extra.txt"), "x").unwrap();
    assert!(!build(&sys, tmp.path(), &[&a]).0, "a new file in a module directory");
    assert!(build(&sys, tmp.path(), &[&a]).0);
    assert!(!build(&sys, tmp.path(), &[&a, &b]).0, "another --modules set");
}

#[test]
fn a_record_whose_entry_gc_removed_builds_again() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(tmp.path());
    let store = tmp.path().join("store");
    let (_, first) = build(&sys, tmp.path(), &[]);
    assert!(build(&sys, tmp.path(), &[]).0);
    std::fs::remove_file(tmp.path().join("result")).unwrap();
    let out = run(kiln().arg("gc").arg("--store").arg(&store));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!first.exists(), "gc removed the unrooted entry");
    assert_eq!(std::fs::read_dir(store.join(".cache")).unwrap().count(), 0, "gc dropped the record of the removed entry");
    let (hit, again) = build(&sys, tmp.path(), &[]);
    assert!(!hit);
    assert_eq!(again, first, "rebuilt to the same entry");
    assert!(again.join("manifest.json").is_file());
}

#[test]
fn a_damaged_record_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(tmp.path());
    let (_, first) = build(&sys, tmp.path(), &[]);
    let cache = tmp.path().join("store/.cache");
    for e in std::fs::read_dir(&cache).unwrap() {
        let p = e.unwrap().path();
        let t = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, &t[..t.len() / 2]).unwrap();
    }
    let (hit, again) = build(&sys, tmp.path(), &[]);
    assert!(!hit);
    assert_eq!(again, first);
    assert!(build(&sys, tmp.path(), &[]).0, "the record is written anew");
}

/// A built-in module overridden from `--modules` (valkey, which five-vps-saas runs): one byte of
/// its template changed is a miss, and the build that follows renders the changed template.
#[test]
fn a_byte_in_a_module_template_misses_and_the_rebuild_renders_it() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(tmp.path());
    let mods = tmp.path().join("mods");
    copy_tree(&repo().join("modules/valkey"), &mods.join("valkey"));
    let (hit, before) = build(&sys, tmp.path(), &[&mods]);
    assert!(!hit);
    assert!(build(&sys, tmp.path(), &[&mods]).0, "unchanged: from the cache");
    let conf = mods.join("valkey/valkey.conf.j2");
    let t = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{t}# one more line\n")).unwrap();
    let (hit, after) = build(&sys, tmp.path(), &[&mods]);
    assert!(!hit, "one line more in a module template must build again");
    assert_ne!(before, after, "the changed template gives another entry");
    let rendered: Vec<_> = walkdir::WalkDir::new(after.join("hosts"))
        .follow_links(true)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file() && e.path().ends_with("valkey/valkey.conf"))
        .collect();
    assert!(!rendered.is_empty(), "five-vps-saas renders valkey.conf");
    for f in rendered {
        assert!(std::fs::read_to_string(f.path()).unwrap().contains("# one more line"), "{} is the changed template's", f.path().display());
    }
}

/// The render options are part of the key: a bundle's mtimes come from `SOURCE_DATE_EPOCH`, so a
/// build under another epoch is no hit and gives other bundles.
#[test]
fn another_source_date_epoch_misses() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(tmp.path());
    let epoch = |e: &str| {
        let mut k = kiln();
        k.env("SOURCE_DATE_EPOCH", e);
        build_with(k, &sys, tmp.path(), &[])
    };
    let (hit, one) = epoch("1");
    assert!(!hit);
    assert!(epoch("1").0, "same epoch: from the cache");
    let (hit, two) = epoch("2");
    assert!(!hit, "another SOURCE_DATE_EPOCH must build again");
    assert_ne!(one, two, "bundles made under another epoch differ");
    let (hit, again) = epoch("1");
    assert!(hit, "the first epoch's record still answers");
    assert_eq!(again, one);
}
