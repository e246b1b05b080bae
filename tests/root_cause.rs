//! The root cause alone: in every example, each service's module name misspelt (and each
//! `host`, the first secret each `secrets` table binds, each route's `service`, the first of
//! each `connects` and the first option each `options` table sets) is reported as that one error,
//! never followed by errors it caused in other services (a secret they would take from it, the
//! routes of an edge that failed, an identity provider's clients, the worker applying its
//! blueprint, an `[allow]` naming its route, the other client of a shared managed database).

mod common;

use common::*;

/// Every line of every system file of every example that `edit` changes, one at a time: the
/// check must fail with exactly one error, `want`.
fn each_edit_is_its_only_error(what: &str, edit: impl Fn(&str) -> Option<String>, want: &str) {
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
            for (n, line) in text.lines().enumerate() {
                let Some(edited) = edit(line) else { continue };
                edits += 1;
                let tmp = tempfile::tempdir().unwrap();
                copy_tree(&example, tmp.path());
                let mut lines: Vec<&str> = text.lines().collect();
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
    assert!(edits > 20, "only {edits} {what} found in the examples");
    assert!(cascades.is_empty(), "{} of {edits} edits reported more than their root cause:\n{}", cascades.len(), cascades.join("\n"));
}

/// `KEY = "…"` as `KEY = "BAD"`.
fn value(key: &str, bad: &str) -> impl Fn(&str) -> Option<String> {
    let prefix = format!("{key} = \"");
    move |l: &str| (l.starts_with(&prefix) && l.ends_with('"')).then(|| format!("{prefix}{bad}\""))
}

#[test]
fn a_misspelt_module_is_the_only_error() {
    each_edit_is_its_only_error("`module` lines", value("module", "no-such-module"), "unknown module `no-such-module`");
}

#[test]
fn a_misspelt_host_is_the_only_error() {
    each_edit_is_its_only_error("`host` lines", value("host", "no-such-host"), "unknown host `no-such-host`");
}

#[test]
fn a_misspelt_secret_is_the_only_error() {
    // `secrets = { SLOT = "NAME", … }`: the first NAME misspelt.
    let edit = |l: &str| {
        let rest = l.strip_prefix("secrets = { ")?;
        let (slot, rest) = rest.split_once(" = \"")?;
        let (_, rest) = rest.split_once('"')?;
        Some(format!("secrets = {{ {slot} = \"no-such-secret\"{rest}"))
    };
    each_edit_is_its_only_error("`secrets` tables", edit, "secret `no-such-secret` is referenced but not defined");
}

#[test]
fn a_misspelt_route_service_or_connection_is_the_only_error() {
    each_edit_is_its_only_error("`service` lines", value("service", "no-such-service"), "unknown service `no-such-service`");
    // `connects = ["NAME", …]`: the first NAME misspelt.
    let edit = |l: &str| {
        let rest = l.strip_prefix("connects = [\"")?;
        let (_, rest) = rest.split_once('"')?;
        Some(format!("connects = [\"no-such-service\"{rest}"))
    };
    each_edit_is_its_only_error("`connects` lists", edit, "unknown service `no-such-service`");
}

#[test]
fn a_misspelt_option_is_the_only_error() {
    // `options = { NAME = …, … }`: the first NAME misspelt (a required one then goes missing).
    let edit = |l: &str| {
        let rest = l.strip_prefix("options = { ")?;
        let (_, rest) = rest.split_once(" = ")?;
        Some(format!("options = {{ no_such_option = {rest}"))
    };
    each_edit_is_its_only_error("`options` tables", edit, "has no option `no_such_option`");
}
