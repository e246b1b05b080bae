//! The command line people expect: `--json` where a command prints data, `-q`/`-v`, flags only
//! where they mean something, shell completions judged by bash, man pages judged by groff.

mod common;

use common::{kiln, repo, run, text};
use std::process::{Command, Stdio};

fn fixture_modules() -> std::path::PathBuf {
    repo().join("tests/fixtures/modules")
}

#[test]
fn check_json_locates_every_diagnostic_as_the_text_does() {
    let sys = repo().join("tests/fixtures/diagnostics/cycle");
    let out = run(kiln().arg("check").arg(&sys).arg("--modules").arg(fixture_modules()).arg("--json"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"], 1);
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "dependency-cycle");
    assert_eq!(d["severity"], "error");
    // The same place the rendered diagnostic names.
    let plain = run(kiln().arg("--modules").arg(fixture_modules()).arg("check").arg(&sys));
    let at = format!("{}:{}:{}", d["file"].as_str().unwrap(), d["line"], d["column"]);
    assert!(text(&plain.stderr).contains(&at), "`{at}` not in:\n{}", text(&plain.stderr));
    assert!(d["labels"].as_array().unwrap().len() >= 2);
}

#[test]
fn check_json_of_a_good_system_is_ok_and_exit_0() {
    let out = run(kiln().arg("check").arg("--json").arg(repo().join("flake-free-examples/five-vps-saas")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["ok"], true);
    assert_eq!(v["errors"], 0);
}

#[test]
fn explain_and_modules_print_json() {
    let one = run(kiln().args(["explain", "zone-crossing", "--json"]));
    assert!(one.status.success());
    let v: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(v["id"], "zone-crossing");
    assert!(v["explanation"].as_str().unwrap().len() > 40);
    let all: serde_json::Value = serde_json::from_slice(&run(kiln().args(["explain", "--json"])).stdout).unwrap();
    assert!(all.as_array().unwrap().iter().any(|e| e["id"] == "zone-crossing"));

    let list: serde_json::Value = serde_json::from_slice(&run(kiln().args(["modules", "list", "--json"])).stdout).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"valkey") && names.contains(&"caddy"), "{names:?}");
    let show: serde_json::Value = serde_json::from_slice(&run(kiln().args(["modules", "show", "valkey", "--json"])).stdout).unwrap();
    assert_eq!(show["name"], "valkey");
    assert!(show["image"].as_str().unwrap().contains("valkey"));
    assert!(show["endpoints"].as_array().unwrap().iter().any(|e| e["port"] == 6379));
}

#[test]
fn quiet_keeps_errors_only_and_verbose_says_more() {
    // The cycle fixture has one error and one warning (its secret file is missing).
    let sys = repo().join("tests/fixtures/diagnostics/cycle");
    let loud = text(&run(kiln().arg("check").arg(&sys).arg("--modules").arg(fixture_modules())).stderr);
    assert!(loud.contains("warning[secret-file-missing]"), "{loud}");
    let quiet = run(kiln().arg("-q").arg("check").arg(&sys).arg("--modules").arg(fixture_modules()));
    assert_eq!(quiet.status.code(), Some(1));
    let q = text(&quiet.stderr);
    assert!(q.contains("error[dependency-cycle]") && !q.contains("warning["), "{q}");

    let ok = repo().join("flake-free-examples/five-vps-saas");
    let out = run(kiln().arg("check").arg(&ok).arg("-q"));
    assert!(out.status.success() && out.stderr.is_empty(), "{}", text(&out.stderr));
    let out = run(kiln().arg("check").arg(&ok).arg("-v"));
    let v = text(&out.stderr);
    assert!(v.contains("files") && v.contains("ok: system"), "{v}");
    let both = run(kiln().args(["-q", "-v", "check"]).arg(&ok));
    assert_eq!(both.status.code(), Some(2), "-q and -v together is a usage error");
}

#[test]
fn input_flags_are_accepted_only_by_commands_that_read_them() {
    let sys = repo().join("tests/fixtures/diagnostics/cycle");
    // Before and after the command name alike.
    let before = run(kiln().arg("--modules").arg(fixture_modules()).arg("check").arg(&sys));
    let after = run(kiln().arg("check").arg(&sys).arg("--modules").arg(fixture_modules()));
    assert_eq!(before.status.code(), Some(1));
    assert_eq!(text(&before.stderr), text(&after.stderr));
    // Meaningless before `explain`, unknown after it.
    let out = run(kiln().args(["--identity", "key.txt", "explain"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`--identity` means nothing to `kiln explain`"), "{}", text(&out.stderr));
    let out = run(kiln().args(["explain", "--modules", "x"]));
    assert_eq!(out.status.code(), Some(2));
    // `explain --help` does not offer them.
    let help = text(&run(kiln().args(["explain", "--help"])).stdout);
    assert!(!help.contains("--modules") && !help.contains("--identity"), "{help}");
    let help = text(&run(kiln().args(["build", "--help"])).stdout);
    assert!(help.contains("--modules") && help.contains("--identity"), "{help}");
}

#[test]
fn top_level_help_has_examples_and_exit_codes() {
    let help = text(&run(kiln().arg("--help")).stdout);
    assert!(help.contains("Examples:") && help.contains("kiln build ") && help.contains("Exit codes:"), "{help}");
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let mut child = kiln().args(["modules", "list"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take()); // the reader goes away before kiln writes
    let out = child.wait_with_output().unwrap();
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
    assert_ne!(out.status.code(), Some(101));
}

#[test]
fn bash_completion_completes_commands_and_flags() {
    let script = run(kiln().args(["completions", "bash"]));
    assert!(script.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiln.bash");
    std::fs::write(&path, &script.stdout).unwrap();
    // Real bash loads the script and runs the completion function as readline would.
    let probe = |words: &str, cword: usize| {
        let cmd = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _kiln kiln; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            path.display()
        );
        let out = Command::new("bash").arg("-c").arg(cmd).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let commands = probe("kiln ''", 1);
    for c in ["check", "build", "show", "explain", "push", "pull", "completions"] {
        assert!(commands.lines().any(|l| l == c), "`{c}` not offered:\n{commands}");
    }
    let flags = probe("kiln build --", 2);
    assert!(flags.lines().any(|l| l == "--store") && flags.lines().any(|l| l == "--identity"), "{flags}");
}

#[test]
fn man_pages_render_cleanly_with_groff() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(kiln().arg("man").arg(dir.path()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    for page in ["kiln.1", "kiln-build.1", "kiln-check.1", "kiln-push.1", "kiln-explain.1"] {
        let p = dir.path().join(page);
        assert!(p.is_file(), "{page} missing");
        // groff with every warning on: a malformed page prints warnings on stderr.
        let g = Command::new("groff").args(["-k", "-man", "-Tutf8", "-ww", "-z"]).arg(&p).output().expect("groff (groff-base)");
        assert!(g.status.success() && g.stderr.is_empty(), "{page}: {}", text(&g.stderr));
        let rendered = Command::new("groff").args(["-k", "-man", "-Tutf8", "-P-cbou"]).arg(&p).output().unwrap();
        let t = text(&rendered.stdout);
        assert!(t.contains("NAME") && t.contains("OPTIONS") || page == "kiln.1", "{page}:\n{t}");
    }
}
