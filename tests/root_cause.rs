//! The root cause alone: in every example, each service's module name misspelt (and each
//! `host` misspelt) is reported as that one error, never followed by errors it caused in other
//! services (a secret they would take from it, the routes of an edge that failed, an identity
//! provider's clients, the worker applying its blueprint, an `[allow]` naming its route).

mod common;

use common::*;

/// Every `^KEY = "VALUE"$` line of every system file of every example, edited to `KEY = "BAD"`:
/// the check must fail with exactly one error, `want`.
fn each_edit_is_its_only_error(key: &str, bad: &str, want: &str) {
    let mut edits = 0;
    let mut cascades = Vec::new();
    for example in examples() {
        let mut files: Vec<_> = std::fs::read_dir(&example)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let prefix = format!("{key} = \"");
            for (n, line) in text.lines().enumerate().filter(|(_, l)| l.starts_with(&prefix) && l.ends_with('"')) {
                edits += 1;
                let tmp = tempfile::tempdir().unwrap();
                copy_tree(&example, tmp.path());
                let mut lines: Vec<&str> = text.lines().collect();
                let edited = format!("{key} = \"{bad}\"");
                lines[n] = &edited;
                std::fs::write(tmp.path().join(file.file_name().unwrap()), lines.join("\n") + "\n").unwrap();
                let out = run(kiln().arg("check").arg(tmp.path()));
                let err = common::text(&out.stderr);
                let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error[")).collect();
                if errors.len() != 1 || !errors[0].contains(want) {
                    cascades.push(format!(
                        "{}:{} ({line}):\n  {}",
                        file.strip_prefix(repo()).unwrap().display(),
                        n + 1,
                        errors.join("\n  ")
                    ));
                }
            }
        }
    }
    assert!(edits > 50, "only {edits} `{key}` lines found in the examples");
    assert!(cascades.is_empty(), "{} of {edits} edits reported more than their root cause:\n{}", cascades.len(), cascades.join("\n"));
}

#[test]
fn a_misspelt_module_is_the_only_error() {
    each_edit_is_its_only_error("module", "no-such-module", "unknown module `no-such-module`");
}

#[test]
fn a_misspelt_host_is_the_only_error() {
    each_edit_is_its_only_error("host", "no-such-host", "unknown host `no-such-host`");
}
