//! `kiln modules check DIR`: a user's module is rendered in a minimal system and its files go
//! to the judges they name — the real shellcheck and dash for `sh`, kiln's parsers for YAML —
//! so a module with broken shell or YAML fails the check, naming the file and the judge's
//! words, and a good one passes. A module that does not build shows the build's diagnostics.

mod common;

use std::path::Path;

use common::*;

const MODULE: &str = r#"[module]
name = "greeter"
version = "1.0.0"
summary = "a test module with a start script and a YAML config"
kind = "container"

[options.greeting]
type = "string"
default = "hello"
description = "what it says"

[container]
image = "docker.io/library/nginx:1.27.3"

[endpoints.http]
port = 8080
http = true

[files."start.sh"]
template = "start.sh.j2"
target = "/start.sh"
mode = "0755"
judge = "sh"

[files."config.yaml"]
template = "config.yaml.j2"
target = "/etc/greeter.yaml"
judge = "yaml"
"#;

const GOOD_SH: &str = "#!/bin/sh\nset -eu\nprintf '%s\\n' {{ options.greeting | sh }}\n";
const GOOD_YAML: &str = "greeting: {{ options.greeting | tojson }}\nport: 8080\n";

fn module_dir(root: &Path, sh: &str, yaml: &str) -> std::path::PathBuf {
    let dir = root.join("modules/greeter");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("module.toml"), MODULE).unwrap();
    std::fs::write(dir.join("start.sh.j2"), sh).unwrap();
    std::fs::write(dir.join("config.yaml.j2"), yaml).unwrap();
    root.join("modules")
}

/// `kiln modules check` with the test machine's judges on PATH (shellcheck, dash, and Compose
/// from the oracle virtualenv that scripts/install-test-deps makes).
fn check(dir: &Path) -> (i32, String, serde_json::Value) {
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", repo().join(".venv-oracles/bin").display());
    let out = run(kiln().env("PATH", &path).args(["modules", "check"]).arg(dir));
    let json = run(kiln().env("PATH", &path).args(["modules", "check", "--json"]).arg(dir));
    assert_eq!(out.status.code(), json.status.code());
    (out.status.code().unwrap(), text(&out.stdout), serde_json::from_slice(&json.stdout).unwrap())
}

/// The verdicts of `judge` on `path` in the JSON report.
fn verdicts(report: &serde_json::Value, path: &str) -> Vec<(String, String)> {
    report["modules"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["path"] == path)
        .flat_map(|f| f["judgements"].as_array().unwrap().iter())
        .map(|j| (j["judge"].as_str().unwrap().to_string(), j["verdict"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn a_good_module_passes_its_judges() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = module_dir(tmp.path(), GOOD_SH, GOOD_YAML);
    let (code, out, report) = check(&dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok   greeter"), "{out}");
    assert_eq!(
        verdicts(&report, "files/svc/start.sh"),
        [("shellcheck".to_string(), "pass".to_string()), ("dash -n".to_string(), "pass".to_string())]
    );
    assert_eq!(verdicts(&report, "files/svc/config.yaml"), [("yaml".to_string(), "pass".to_string())]);
    assert_eq!(verdicts(&report, "compose.yaml"), [("compose".to_string(), "pass".to_string())]);
}

#[test]
fn broken_shell_and_yaml_fail_naming_the_file_and_the_judge() {
    let tmp = tempfile::tempdir().unwrap();
    // An unterminated `if` (dash refuses it) and an unclosed flow sequence.
    let dir = module_dir(tmp.path(), "#!/bin/sh\nif true; then\n  echo {{ options.greeting | sh }}\n", "greeting: [hello\n");
    let (code, out, report) = check(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("FAIL greeter"), "{out}");
    assert!(out.contains("files/svc/start.sh: dash -n refuses it"), "{out}");
    assert!(out.contains("files/svc/config.yaml: yaml refuses it"), "{out}");
    assert!(verdicts(&report, "files/svc/start.sh").contains(&("dash -n".to_string(), "fail".to_string())));
}

#[test]
fn a_module_that_does_not_build_shows_the_diagnostics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = module_dir(tmp.path(), "#!/bin/sh\necho {{ options.no_such_option }}\n", GOOD_YAML);
    let (code, out, report) = check(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not build in a minimal system"), "{out}");
    assert!(out.contains("start.sh.j2"), "the template is named:\n{out}");
    assert!(report["modules"][0]["error"].is_string());
}

#[test]
fn a_module_named_like_a_built_in_says_it_replaces_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = module_dir(tmp.path(), GOOD_SH, GOOD_YAML);
    let renamed = dir.join("caddy");
    std::fs::rename(dir.join("greeter"), &renamed).unwrap();
    let toml = std::fs::read_to_string(renamed.join("module.toml")).unwrap().replace("name = \"greeter\"", "name = \"caddy\"");
    std::fs::write(renamed.join("module.toml"), toml).unwrap();
    let (_, out, report) = check(&dir);
    assert!(out.contains("replaces the built-in module `caddy`"), "{out}");
    assert_eq!(report["modules"][0]["overrides"], "caddy");
}
