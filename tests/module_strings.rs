//! Strings a module author writes are checked where the module is loaded: `[files.NAME]` names
//! (relative, normalised, no control characters, components ≤ 255 bytes), `forward_auth`'s
//! `uri`, `paths` and `copy_headers` (they reach Caddyfile tokens and Traefik rules), and a
//! runaway template runs out of fuel. Each bad form is exit 1 with an error located in the
//! module file, never a panic (101) or a hang.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{build_with_modules, kiln, preamble, run, text};

/// A system running the module `evil` on one public host.
fn system() -> String {
    format!("{}{EVIL}", preamble("t"))
}

const EVIL: &str = r#"
[hosts.h1]
provider = "hetzner"
image = "ubuntu-24.04"
public = true

[services.evil]
module = "evil"
host = "h1"
"#;

fn module(extra: &str) -> String {
    format!(
        "[module]\nname = \"evil\"\nversion = \"1.0.0\"\nsummary = \"hostile strings\"\nkind = \"container\"\n\n[container]\nimage = \"docker.io/library/nginx:1.27.3\"\n\n[endpoints.http]\nport = 8080\nhttp = true\n{extra}"
    )
}

/// Runs `kiln check` on a system with the module `evil` made of `module_toml` (and `t.j2`).
fn check(dir: &Path, module_toml: &str, template: &str) -> std::process::Output {
    let m = dir.join("modules/evil");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("module.toml"), module_toml).unwrap();
    std::fs::write(m.join("t.j2"), template).unwrap();
    std::fs::write(dir.join("system.toml"), system()).unwrap();
    run(kiln().arg("--modules").arg(dir.join("modules")).arg("check").arg(dir.join("system.toml")))
}

fn assert_located(out: &std::process::Output, what: &str, file: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: expected exit 1\n{err}");
    let located = err.lines().any(|l| l.contains(file) && l.split(':').filter(|p| p.trim().parse::<u32>().is_ok()).count() >= 2);
    assert!(located, "{what}: no error located in {file}:\n{err}");
}

#[test]
fn bad_file_names_are_located_errors() {
    let long = "x".repeat(256);
    let names = [
        "../escape",
        "a/../../b",
        "/etc/passwd",
        "a/./b",
        "a//b",
        "a/",
        "",
        ".",
        "a\u{0}b",
        "a\nb  files/forged",
        "a\rb",
        "a\\b",
        long.as_str(),
    ];
    for name in names {
        let tmp = tempfile::tempdir().unwrap();
        let key = toml::Value::String(name.to_string()).to_string();
        let toml = module(&format!("\n[files.{key}]\ntemplate = \"t.j2\"\ntarget = \"/etc/evil/x\"\n"));
        let out = check(tmp.path(), &toml, "x\n");
        assert_located(&out, &format!("file name {name:?}"), "module.toml");
    }
    // A deep but normal name is fine.
    let tmp = tempfile::tempdir().unwrap();
    let out = check(tmp.path(), &module("\n[files.\"conf.d/app.conf\"]\ntemplate = \"t.j2\"\ntarget = \"/etc/evil/x\"\n"), "x\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn forward_auth_strings_that_could_leave_a_caddyfile_token_are_located_errors() {
    let cases = [
        ("uri", "uri = \"/auth\\\\\\nheader_up X-Pwned 1\""),
        ("uri without slash", "uri = \"auth\""),
        ("uri with a placeholder", "uri = \"/{$HOME}\""),
        ("traefik_uri", "uri = \"/auth\"\ntraefik_uri = \"/a`) || Host(`evil\""),
        ("paths", "uri = \"/auth\"\npaths = [\"/x\\\\\"]"),
        ("paths with a space", "uri = \"/auth\"\npaths = [\"/x header_up\"]"),
        ("copy_headers", "uri = \"/auth\"\ncopy_headers = [\"X-A\\nheader_up X-Pwned\"]"),
        ("copy_headers with a quote", "uri = \"/auth\"\ncopy_headers = [\"X-A\\\"\"]"),
    ];
    for (what, body) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let out = check(tmp.path(), &module(&format!("\n[forward_auth]\nendpoint = \"http\"\n{body}\n")), "");
        assert_located(&out, what, "module.toml");
    }
    let tmp = tempfile::tempdir().unwrap();
    let ok = "\n[forward_auth]\nendpoint = \"http\"\nuri = \"/outpost.goauthentik.io/auth/caddy?rd=1&x=%2F\"\npaths = [\"/oauth2/*\", \"/~user/@me\"]\ncopy_headers = [\"X-Auth-Request-User\"]\n";
    let out = check(tmp.path(), &module(ok), "");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_runaway_template_runs_out_of_fuel() {
    let tmp = tempfile::tempdir().unwrap();
    let toml = module("\n[files.\"x.conf\"]\ntemplate = \"t.j2\"\ntarget = \"/etc/evil/x.conf\"\n");
    let start = Instant::now();
    let out = check(tmp.path(), &toml, "{% for a in range(100000) %}{% for b in range(100000) %}{{ b }}{% endfor %}{% endfor %}\n");
    assert!(start.elapsed() < Duration::from_secs(120), "took {:?}", start.elapsed());
    assert_located(&out, "runaway loop", "t.j2");
    assert!(text(&out.stderr).contains("fuel"), "{}", text(&out.stderr));
}

/// The other side of the checks above: forward-auth strings that are odd but legitimate (RFC
/// 3986 sub-delimiters, `@`, `~`, `%`-escapes, a query) are accepted, and the real Caddy reads
/// them back as exactly the strings the module wrote: each stays one token of the Caddyfile.
#[test]
fn odd_but_legal_forward_auth_strings_reach_caddy_verbatim() {
    let uri = "/auth(caddy);v=1/~me@x/a%2Fb?rd=$host&x=!*+,";
    let callback = "/cb;sid=1/(o)/*";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let m = dir.join("modules/gate");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(
        m.join("module.toml"),
        format!(
            "[module]\nname = \"gate\"\nversion = \"1.0.0\"\nsummary = \"an auth service with odd paths\"\nkind = \"container\"\n\n\
             [container]\nimage = \"docker.io/library/nginx:1.27.3\"\n\n[endpoints.http]\nport = 8080\nhttp = true\n\n\
             [forward_auth]\nendpoint = \"http\"\nuri = \"{uri}\"\npaths = [\"{callback}\"]\ncopy_headers = [\"X-Auth-User\", \"Remote-Email\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("system.toml"),
        preamble("t")
            + r#"
[hosts.h1]
provider = "hetzner"
image = "debian-12"
public = true

[services.caddy]
module = "caddy"
host = "h1"

[services.gate]
module = "gate"
host = "h1"

[routes."app.example.com"]
service = "gate"
auth = "gate"
"#,
    )
    .unwrap();
    let result = build_with_modules(&dir.join("modules"), &dir.join("system.toml"), &dir.join("store"), &dir.join("result"));
    let caddyfile = result.join("hosts/h1/Caddyfile");
    common::oracle("caddy", &caddyfile).unwrap();
    let adapted = std::process::Command::new(common::repo().join(".venv-oracles/bin/caddy"))
        .args(["adapt", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .output()
        .unwrap();
    assert!(adapted.status.success(), "{}", text(&adapted.stderr));
    // Every string in Caddy's JSON reading of the Caddyfile.
    fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut seen = Vec::new();
    strings(&serde_json::from_slice(&adapted.stdout).expect("caddy adapt prints JSON"), &mut seen);
    for want in [uri, callback, "X-Auth-User", "Remote-Email"] {
        assert!(seen.iter().any(|s| s == want), "`{want}` is not one string in Caddy's reading: {seen:?}");
    }
}
