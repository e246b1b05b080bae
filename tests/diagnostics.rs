//! Diagnostics fixtures: each `tests/fixtures/diagnostics/NAME/system.toml` is bad input, and
//! `expected` next to it lists every error kiln must report, as `file:line:col: error[CODE]:
//! message`, all in one run. `UPDATE_EXPECT=1` rewrites the expectations (review the diff).

#![allow(clippy::disallowed_methods)] // tests may read their own switches

mod common;

use std::path::Path;

use kiln::diag::{Located, Severity};
use kiln::pipeline::{Options, Outcome, compile};

/// The module directories a fixture is checked with: the shared test modules, and the
/// fixture's own `modules/` when it has one (a module overriding a built-in).
fn module_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = vec![common::repo().join("tests/fixtures/modules")];
    if dir.join("modules").is_dir() {
        v.push(dir.join("modules"));
    }
    v
}

fn located(dir: &Path) -> String {
    let opts = Options { module_dirs: module_dirs(dir), ..Options::default() };
    let outcome = compile(&dir.join("system.toml"), &opts).expect("fixture loads");
    let (sources, diags) = match outcome {
        Outcome::Failed(f) => (f.sources, f.diagnostics),
        Outcome::Ok(c) => (c.sources, c.warnings),
    };
    let mut out = String::new();
    for d in &diags {
        assert!(matches!(d.severity, Severity::Error | Severity::Warning | Severity::Note));
        // every label points inside its file, on character boundaries
        for l in &d.labels {
            let text = sources.text(l.span.file);
            assert!(l.span.end as usize <= text.len() && l.span.start <= l.span.end, "{d:?}");
            assert!(text.is_char_boundary(l.span.start as usize) && text.is_char_boundary(l.span.end as usize));
        }
        let line = Located { sources: &sources, diag: d }.to_string();
        let line = line.replace(&format!("{}/", dir.display()), "").replace(&format!("{}/", common::repo().display()), "");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn fixtures_report_every_error_at_its_place() {
    let root = common::repo().join("tests/fixtures/diagnostics");
    let mut dirs: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    let mut mismatches = Vec::new();
    for dir in &dirs {
        let got = located(dir);
        let expected_path = dir.join("expected");
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected.trim().is_empty() {
            mismatches.push(format!("{}: empty expectation; got\n{got}", dir.display()));
        } else if got != expected {
            mismatches.push(format!("{}:\n--- expected\n{expected}--- got\n{got}", dir.display()));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(dirs.len() >= 8);
}

#[test]
fn rendered_diagnostics_show_the_source_line_label_and_help() {
    let dir = common::repo().join("tests/fixtures/diagnostics/unknown-key");
    let out = common::run(common::kiln().arg("--modules").arg(common::repo().join("tests/fixtures/modules")).arg("check").arg(&dir));
    assert_eq!(out.status.code(), Some(1));
    let err = common::text(&out.stderr);
    assert!(out.stdout.is_empty(), "diagnostics go to stderr");
    assert!(err.contains("error[E0005]: unknown key `hots` in `services.web`"), "{err}");
    assert!(err.contains("system.toml:32:1"), "{err}");
    assert!(err.contains("hots = \"app\""), "source line shown: {err}");
    assert!(err.contains("help: did you mean `host`?"), "{err}");
    assert!(!err.contains('\u{1b}'), "NO_COLOR is honoured: {err}");
}

/// Every rule `kiln explain` lists has a fixture `rule-ID` whose expected output reports it.
#[test]
fn every_rule_has_a_fixture_that_triggers_it() {
    let root = common::repo().join("tests/fixtures/diagnostics");
    let mut missing = Vec::new();
    for e in kiln::check::explanations() {
        let expected = std::fs::read_to_string(root.join(format!("rule-{}/expected", e.id))).unwrap_or_default();
        if !expected.lines().any(|l| l.contains(&format!("[{}]: ", e.id))) {
            missing.push(e.id);
        }
        assert!(e.explanation.len() > 120, "{}: explain why, at length", e.id);
    }
    assert!(missing.is_empty(), "rules without a triggering fixture: {missing:?}");
}

/// `[allow.RULE]` with a reason waives the rule for what it names, and only that; an
/// allowance that waives nothing is a warning.
#[test]
fn an_allow_with_a_reason_waives_exactly_what_it_names() {
    let src = common::repo().join("tests/fixtures/diagnostics/rule-password-ssh/system.toml");
    let base = std::fs::read_to_string(src).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { module_dirs: vec![common::repo().join("tests/fixtures/modules")], ..Options::default() };
    let waived =
        format!("{base}\n[allow.password-ssh]\nhosts = [\"app\"]\nreason = \"the vendor appliance on this host has no key support yet\"\n");
    std::fs::write(dir.path().join("system.toml"), &waived).unwrap();
    match compile(&dir.path().join("system.toml"), &opts).unwrap() {
        Outcome::Ok(c) => {
            assert!(c.warnings.is_empty(), "{:?}", c.warnings);
            assert_eq!(c.system.allows.len(), 1);
            assert!(c.system.hosts["app"].password_ssh);
        }
        Outcome::Failed(f) => panic!("waived rule still fails: {:?}", f.diagnostics),
    }
    // Naming a host the rule does not fire for leaves a warning; the real one still fails.
    let stale = waived.replace("hosts = [\"app\"]", "hosts = [\"edge\"]");
    std::fs::write(dir.path().join("system.toml"), &stale).unwrap();
    match compile(&dir.path().join("system.toml"), &opts).unwrap() {
        Outcome::Failed(f) => {
            let codes: Vec<&str> = f.diagnostics.iter().map(|d| d.code).collect();
            assert!(codes.contains(&"password-ssh") && codes.contains(&"unused-allow"), "{codes:?}");
        }
        Outcome::Ok(_) => panic!("an allowance for another host waived the rule"),
    }
}

fn compile_fixture(name: &str) -> Vec<kiln::diag::Diagnostic> {
    let dir = common::repo().join("tests/fixtures/diagnostics").join(name);
    let opts = Options { module_dirs: vec![common::repo().join("tests/fixtures/modules")], ..Options::default() };
    match compile(&dir.join("system.toml"), &opts).expect("fixture loads") {
        Outcome::Failed(f) => f.diagnostics,
        Outcome::Ok(_) => panic!("{name} compiles"),
    }
}

/// One mistake gives one error, and nothing it caused: an unclosed table header (the host it
/// declares is then missing for every service, route and scrape), a table header written
/// twice, an unknown base image (its host would vanish with its edge and exporters), an option
/// of the wrong type (the endpoint whose port it sets is missing for every service that
/// connects to it, whose slots it would fill).
#[test]
fn one_mistake_gives_one_error() {
    for (fixture, code) in [
        ("cause-unclosed-table", "E0001"),
        ("cause-table-twice", "E0011"),
        ("cause-unknown-image", "E0010"),
        ("cause-wrong-option-type", "E0002"),
    ] {
        let diags = compile_fixture(fixture);
        let codes: Vec<String> = diags.iter().map(|d| format!("{:?} {}: {}", d.severity, d.code, d.message)).collect();
        assert_eq!(diags.len(), 1, "{fixture}: {codes:#?}");
        assert_eq!((diags[0].severity, diags[0].code), (Severity::Error, code), "{fixture}: {codes:#?}");
    }
    // A service whose module is unknown: routes it would terminate and connections to it
    // add nothing.
    let diags = compile_fixture("cause-unknown-module");
    let codes: Vec<(&str, &str)> = diags.iter().map(|d| (d.code, d.message.as_str())).collect();
    assert_eq!(codes, [("E0010", "unknown module `cadddy`"), ("E0010", "unknown module `wbe`")]);
    // A near name is suggested; otherwise the help says how to add a module, not the 60-odd
    // built-in names, and the note where kiln looked.
    assert_eq!(diags[0].help.as_deref(), Some("did you mean `caddy`?"));
    let help = diags[1].help.as_deref().unwrap_or_default();
    assert!(help.contains("--modules DIR") && help.contains("docs/modules.md") && help.contains("wbe/module.toml"), "{help}");
    assert!(!help.contains("`alertmanager`"), "{help}");
    let note = diags[1].notes.join("\n");
    assert!(note.contains("`kiln modules list`") && note.contains("tests/fixtures/modules"), "{note}");
    // The table written twice points at both headers.
    let twice = &compile_fixture("cause-table-twice")[0];
    assert_eq!(twice.labels.len(), 2, "{twice:?}");
}

/// A template error names the undefined expression, points at it in the module's file (inside
/// a long string, behind a line continuation, in a template file) and hints at the fix.
#[test]
fn template_errors_name_the_expression_and_point_at_it() {
    let dir = common::repo().join("tests/fixtures/diagnostics/template-errors");
    let opts = Options { module_dirs: vec![common::repo().join("tests/fixtures/modules")], ..Options::default() };
    let Outcome::Failed(f) = compile(&dir.join("system.toml"), &opts).expect("fixture loads") else { panic!("compiles") };
    let mut seen = Vec::new();
    for d in f.diagnostics.iter().filter(|d| d.code == "E0050") {
        let primary = d.labels.iter().find(|l| l.primary).expect("a primary label");
        let pointed = &f.sources.text(primary.span.file)[primary.span.start as usize..primary.span.end as usize];
        let file = f.sources.get(primary.span.file).name.rsplit('/').next().unwrap_or_default().to_string();
        seen.push((d.message.clone(), pointed.to_string(), file, d.help.clone().unwrap_or_default()));
    }
    seen.sort();
    let want = [
        ("`options.greting` is undefined", "options.greting", "module.toml", "did you mean `options.greeting`?"),
        ("`requires.cache` is undefined", "requires.cache", "app.conf.j2", "{% if requires.cache is defined %}"),
        ("`secrets.pasword` is undefined", "secrets.pasword", "module.toml", "did you mean `secrets.password`?"),
    ];
    assert_eq!(seen.len(), want.len(), "{seen:#?}");
    for ((message, pointed, file, help), (m, p, fname, h)) in seen.iter().zip(want) {
        assert_eq!(message, &format!("template error: {m}"));
        assert_eq!((pointed.as_str(), file.as_str()), (p, fname), "{message}");
        assert!(help.contains(h), "{message}: {help}");
    }
}

/// A `--modules` module with a built-in's name replaces it: the build succeeds with one note,
/// at the first service using it, every service runs the local module, and `kiln show` (text
/// and JSON) says which services run a local module and what it replaces.
#[test]
fn a_module_overriding_a_builtin_is_noted_and_shown() {
    let dir = common::repo().join("tests/fixtures/diagnostics/rule-module-override");
    let opts = Options { module_dirs: module_dirs(&dir), ..Options::default() };
    let Outcome::Ok(c) = compile(&dir.join("system.toml"), &opts).expect("fixture loads") else { panic!("the override builds") };
    let notes: Vec<&kiln::diag::Diagnostic> = c.warnings.iter().filter(|d| d.code == "module-override").collect();
    assert_eq!(notes.len(), 1, "{:?}", c.warnings);
    assert_eq!(notes[0].severity, Severity::Note);
    for s in ["push-a", "push-b"] {
        assert_eq!(c.system.services[s].module_version, "1.11.1-local", "{s} runs the local module");
    }
    let kiln = || {
        let mut k = common::kiln();
        k.arg("--modules").arg(common::repo().join("tests/fixtures/modules")).arg("--modules").arg(dir.join("modules"));
        k
    };
    let out = common::run(kiln().arg("check").arg(&dir));
    let err = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("note[module-override]: module `pushgateway` is the one from `--modules`"), "{err}");
    let out = common::run(kiln().arg("show").arg(&dir));
    let text = common::text(&out.stdout);
    assert!(text.contains("modules from --modules\n  push-a: pushgateway 1.11.1-local from "), "{text}");
    assert!(text.contains(", replacing the built-in pushgateway "), "{text}");
    let out = common::run(kiln().args(["show", "--json"]).arg(&dir));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("show --json");
    let src = &v["services"]["push-b"]["module_source"];
    assert!(src["dir"].as_str().is_some_and(|d| d.ends_with("modules/pushgateway")), "{v}");
    assert!(src["replaces_builtin"].as_str().is_some_and(|b| !b.is_empty() && b != "1.11.1-local"), "{v}");
}

/// The zone-crossing advice leads to a working system: done as the help says (accept the
/// edge's zone; give the host in no zone an accepted one), the system builds, and the derived
/// firewall opens each port to exactly the host the help named.
#[test]
fn zone_crossing_advice_leads_to_a_working_system() {
    let helps: Vec<String> = compile_fixture("rule-zone-crossing").iter().filter_map(|d| d.help.clone()).collect();
    assert!(
        helps.iter().any(|h| h.contains("add `\"dmz\"` to `[zones.data] accepts`") && h.contains("80/tcp on host `app`")),
        "{helps:#?}"
    );
    assert!(
        helps.iter().any(|h| h.contains("`[hosts.ops] zone = \"apps\"`") && h.contains("6379/tcp on host `app` to host `ops`")),
        "{helps:#?}"
    );
    let src = std::fs::read_to_string(common::repo().join("tests/fixtures/diagnostics/rule-zone-crossing/system.toml")).unwrap();
    let advised =
        src.replace("accepts = [\"apps\"]", "accepts = [\"apps\", \"dmz\"]").replace("[hosts.ops]\n", "[hosts.ops]\nzone = \"apps\"\n");
    assert_ne!(advised, src);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("system.toml"), advised).unwrap();
    let opts = Options { module_dirs: module_dirs(dir.path()), ..Options::default() };
    let c = match compile(&dir.path().join("system.toml"), &opts).unwrap() {
        Outcome::Ok(c) => c,
        Outcome::Failed(f) => panic!("the advice did not work: {:#?}", f.diagnostics),
    };
    let rule = |port: u16| c.system.hosts["app"].firewall.iter().find(|r| r.port == port).unwrap_or_else(|| panic!("no rule for {port}"));
    let sources = |port: u16| rule(port).sources.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(sources(80), ["10.0.0.2/32"], "the web port opens to the edge only");
    assert_eq!(sources(6379), ["10.0.0.4/32", "10.0.0.5/32"], "the store opens to the worker and ops only");
}

/// A file that is not UTF-8 is bad input (exit 1) reported at its line and column.
#[test]
fn invalid_utf8_is_located_bad_input() {
    let dir = common::repo().join("tests/fixtures/diagnostics/not-utf8");
    let out = common::run(common::kiln().arg("check").arg(&dir));
    let err = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error[E0001]: invalid TOML: the file is not UTF-8 text"), "{err}");
    assert!(err.contains("system.toml:2:10"), "{err}");
}

/// Every `E0000` code a diagnostic in `src/` uses is explained by `kiln explain CODE`.
#[test]
fn every_error_code_in_src_is_explained() {
    let code = regex::Regex::new(r#""(E[0-9]{4})""#).unwrap();
    let mut used = std::collections::BTreeSet::new();
    for entry in walkdir::WalkDir::new(common::repo().join("src")) {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "rs") {
            let src = std::fs::read_to_string(entry.path()).unwrap();
            used.extend(code.captures_iter(&src).map(|c| c[1].to_string()));
        }
    }
    assert!(used.len() >= 30, "{used:?}");
    let unexplained: Vec<&String> =
        used.iter().filter(|c| kiln::check::explain(c).is_none_or(|e| e.explanation.len() < 120 || e.summary.is_empty())).collect();
    assert!(unexplained.is_empty(), "codes used in src/ without an explanation in src/check/codes.rs: {unexplained:?}");
    let out = common::run(common::kiln().args(["explain", "E0005"]));
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    assert!(common::text(&out.stdout).starts_with("E0005: "), "{}", common::text(&out.stdout));
}

/// Escape sequences in input (ESC, BEL, an 8-bit CSI, a bidi override) reach the terminal
/// only as visible text: in messages, labels, file names and source lines.
#[test]
fn control_characters_in_input_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = r#"\u001b]0;pwned\u0007\u001b[2J\u009b31m\u202e"#;
    let system = format!(
        "imports = [\"{hostile}.toml\"]\n[system]\nname = \"x\"\ndomains = [\"example.com\"]\n\n[services.web]\nmodule = \"web\"\nhost = \"{hostile}\"\n"
    );
    std::fs::write(dir.path().join("system.toml"), system).unwrap();
    // A raw escape in a file is a syntax error whose line is shown.
    let raw = tempfile::tempdir().unwrap();
    std::fs::write(raw.path().join("system.toml"), "[system]\nname = \"x\u{1b}[2J\u{7}\"\n").unwrap();
    for d in [dir.path(), raw.path()] {
        let out = common::run(common::kiln().arg("--modules").arg(common::repo().join("tests/fixtures/modules")).arg("check").arg(d));
        assert_eq!(out.status.code(), Some(1));
        let err = common::text(&out.stderr);
        for bad in ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}'] {
            assert!(!err.contains(bad), "{bad:?} reached stderr:\n{err:?}");
        }
        assert!(err.contains("\u{241b}[2J"), "shown visibly: {err}");
    }
}
