//! Same inputs, same bytes: builds in different directories, under different TZ, locale and
//! umask, with the system's files listed in a different order, give identical results; a build
//! answered by the warm-build cache is the entry a build from scratch writes, byte for byte.

mod common;

use std::process::Command;

use common::*;

fn build_under(system: &std::path::Path, workdir: &std::path::Path, tz: &str, lang: &str, umask: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(workdir).unwrap();
    let cmd = format!("umask {umask} && exec {} build {} --store store --out-link result", env!("CARGO_BIN_EXE_kiln"), system.display());
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(workdir)
        .env("TZ", tz)
        .env("LANG", lang)
        .env("LC_ALL", lang)
        .env_remove("KILN_STORE")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    workdir.join("result")
}

#[test]
fn two_builds_under_different_conditions_are_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    for ex in examples() {
        let name = ex.file_name().unwrap().to_string_lossy().into_owned();
        // The second copy lives elsewhere, under another name, with its files in another order
        // on disk (copied in reverse).
        let copy = tmp.path().join("elsewhere/deeper").join(format!("{name}-copy"));
        let mut entries: Vec<_> = walkdir::WalkDir::new(&ex).into_iter().map(|e| e.unwrap()).collect();
        entries.reverse();
        for e in entries.iter().rev().filter(|e| e.file_type().is_dir()) {
            std::fs::create_dir_all(copy.join(e.path().strip_prefix(&ex).unwrap())).unwrap();
        }
        for e in entries.iter().filter(|e| e.file_type().is_file()) {
            std::fs::copy(e.path(), copy.join(e.path().strip_prefix(&ex).unwrap())).unwrap();
        }
        let a = build_under(&ex, &tmp.path().join("a"), "UTC", "C", "022");
        let b = build_under(&copy, &tmp.path().join("b/c"), "Pacific/Kiritimati", "de_DE.UTF-8", "077");
        let fa = files(&a);
        let fb = files(&b);
        assert_eq!(fa.len(), fb.len(), "{name}: different file sets");
        for (x, y) in fa.iter().zip(&fb) {
            assert_eq!(x.0, y.0, "{name}: different paths");
            assert!(x.1 == y.1, "{name}: {} differs between the two builds", x.0);
            assert_eq!(x.2, y.2, "{name}: {} has a different mode", x.0);
        }
        assert_eq!(
            std::fs::read_link(&a).unwrap().file_name(),
            std::fs::read_link(&b).unwrap().file_name(),
            "{name}: different store entries"
        );
    }
}

#[test]
fn build_check_passes_on_a_deterministic_build() {
    let tmp = tempfile::tempdir().unwrap();
    for ex in examples() {
        let out = run(kiln().current_dir(tmp.path()).arg("build").arg(&ex).arg("--check"));
        assert!(out.status.success(), "{}", text(&out.stderr));
        // and again against the store entry written the first time
        let out = run(kiln().current_dir(tmp.path()).arg("build").arg(&ex).arg("--check"));
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

/// A cache hit gives the entry a fresh build (`--no-cache`, into another store) writes: same
/// entry name, same files, same bytes and modes.
#[test]
fn a_cache_hit_is_the_entry_a_fresh_build_writes() {
    let tmp = tempfile::tempdir().unwrap();
    for ex in examples() {
        let name = ex.file_name().unwrap().to_string_lossy().into_owned();
        let build = |store: &str, link: &str, extra: &[&str]| {
            let out = run(kiln()
                .current_dir(tmp.path())
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .arg("-v")
                .arg("build")
                .args(extra)
                .arg(&ex)
                .args(["--store", store, "--out-link", link]));
            assert!(out.status.success(), "{name}: {}", text(&out.stderr));
            (text(&out.stderr).contains("from cache"), tmp.path().join(link))
        };
        let (hit, _) = build("cached", &format!("{name}-first"), &[]);
        assert!(!hit, "{name}: a first build cannot come from the cache");
        let (hit, cached) = build("cached", &format!("{name}-hit"), &[]);
        assert!(hit, "{name}: the unchanged rebuild answers from the cache");
        let (_, fresh) = build("fresh", &format!("{name}-fresh"), &["--no-cache"]);
        assert_eq!(
            std::fs::read_link(&cached).unwrap().file_name(),
            std::fs::read_link(&fresh).unwrap().file_name(),
            "{name}: the hit names another entry than a fresh build"
        );
        let (fc, ff) = (files(&cached), files(&fresh));
        assert_eq!(fc.len(), ff.len(), "{name}: different file sets");
        for (x, y) in fc.iter().zip(&ff) {
            assert_eq!(x.0, y.0, "{name}: different paths");
            assert!(x.1 == y.1, "{name}: {} differs between the hit and a fresh build", x.0);
            assert_eq!(x.2, y.2, "{name}: {} has a different mode", x.0);
        }
    }
}
