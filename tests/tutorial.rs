//! docs/tutorial.md cannot rot: its files (fenced blocks marked `kiln:PATH`) are written to a
//! temporary directory, its commands (blocks marked `kiln:run`) run there with this kiln, the
//! result holds every file the tutorial points at, and every other `kiln …` line it shows
//! parses as a command line.

mod common;

use std::path::Path;

use common::*;

/// The fenced blocks with a `kiln:` marker after the language: (marker, body).
fn marked_blocks(md: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = md.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else { continue };
        let marker = info.split_whitespace().find_map(|w| w.strip_prefix("kiln:")).map(str::to_string);
        let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
        if let Some(m) = marker {
            out.push((m, body.join("\n") + "\n"));
        }
    }
    out
}

fn tutorial() -> String {
    std::fs::read_to_string(repo().join("docs/tutorial.md")).unwrap()
}

/// Writes the tutorial's files under `dir` (blocks of one file are joined in order) and
/// returns its commands.
fn materialise(dir: &Path) -> Vec<String> {
    let mut commands = Vec::new();
    let mut written = std::collections::BTreeSet::new();
    for (marker, body) in marked_blocks(&tutorial()) {
        if marker == "run" {
            commands.push(body);
            continue;
        }
        assert!(!marker.starts_with('/') && !marker.contains(".."), "kiln:{marker} must be a relative path");
        let path = dir.join(&marker);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = if written.insert(marker.clone()) { String::new() } else { std::fs::read_to_string(&path).unwrap() + "\n" };
        text.push_str(&body);
        std::fs::write(&path, text).unwrap();
    }
    commands
}

fn sh(dir: &Path, script: &str) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_kiln")).parent().unwrap().to_path_buf();
    // The test's own PATH, with the kiln under test first.
    #[allow(clippy::disallowed_methods)]
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&inherited))).unwrap();
    std::process::Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("KILN_STORE")
        .output()
        .unwrap()
}

#[test]
fn the_tutorial_system_checks_builds_and_its_commands_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hello");
    std::fs::create_dir(&dir).unwrap();
    let commands = materialise(&dir);
    assert!(dir.join("system.toml").is_file() && dir.join("modules/hello/module.toml").is_file(), "the tutorial's files are not marked");
    assert!(commands.iter().any(|c| c.contains("kiln build")), "the tutorial's commands are not marked: {commands:?}");
    for c in &commands {
        let out = sh(&dir, c);
        assert!(out.status.success(), "`{}` failed in the tutorial:\n{}{}", c.trim(), text(&out.stdout), text(&out.stderr));
    }
    // Every `result/…` path the tutorial names exists in the build.
    let md = tutorial();
    let named: Vec<&str> = md.split('`').skip(1).step_by(2).filter(|s| s.starts_with("result/")).collect();
    assert!(named.len() >= 5, "{named:?}");
    for p in named {
        assert!(dir.join(p).exists(), "the tutorial names `{p}`, which the build does not hold");
    }
    assert!(dir.join("published/manifests").is_dir(), "kiln push wrote no manifest");
    assert!(dir.join("deploy/main.tf.json").is_file());

    // The variant with the `app` module is a complete system too.
    let next = dir.join("next");
    let out = run(kiln().arg("check").arg(&next));
    assert!(out.status.success(), "next/system.toml: {}", text(&out.stderr));
    build(&next, &tmp.path().join("store"), &tmp.path().join("next-result"));

    // The typo the tutorial suggests trying gets the promised hint.
    let f = dir.join("system.toml");
    let body = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, body.replacen("module = \"caddy\"", "modul = \"caddy\"", 1)).unwrap();
    let out = run(kiln().arg("check").arg("--modules").arg(dir.join("modules")).arg(&dir));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("did you mean `module`?"), "{}", text(&out.stderr));
}

/// The commands shown but not run here (boot, install) still parse: `kiln ARGS --help`
/// succeeds only when ARGS are a valid command line.
#[test]
fn every_kiln_command_in_the_tutorial_parses() {
    let md = tutorial();
    let lines: Vec<&str> = md.lines().map(str::trim).filter(|l| l.starts_with("kiln ")).collect();
    assert!(lines.len() >= 6, "{lines:?}");
    for l in lines {
        let args: Vec<&str> = l.split_whitespace().skip(1).map(|a| a.trim_matches('"')).collect();
        let out = run(kiln().args(&args).arg("--help"));
        assert!(out.status.success(), "`{l}` does not parse:\n{}", text(&out.stderr));
    }
}
