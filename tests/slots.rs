//! Named connection slots: `connects = { sessions = "kv-a", cache = "kv-b" }` fills each slot of
//! a module with two slots of one kind with the service named for it (one service may fill
//! both), next to list entries that fill no slot. The real `docker-compose config` reads what
//! each slot became (the template's environment) and the start order. Refusals (a list that
//! cannot say which slot, duplicates, unknown slots, a service of the wrong kind) are located in
//! tests/fixtures/diagnostics/connects-slots.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn system(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        r#"{}
[networks.private]
cidr = "10.0.0.0/24"

[hosts.app]
provider = "hetzner"
image = "debian-12"
public = true
networks = {{ private = "10.0.0.2" }}

[hosts.cache]
provider = "hetzner"
image = "debian-12"
networks = {{ private = "10.0.0.3" }}

[services.kv-a]
module = "kv"
host = "app"

[services.kv-b]
module = "kv"
host = "cache"

[services.web]
module = "web"
host = "app"

[services.named]
module = "twoslots"
host = "app"
connects = {{ sessions = "kv-a", cache = "kv-b" }}

[services.shared]
module = "twoslots"
host = "app"
connects = {{ cache = "kv-a", sessions = "kv-a" }}

[services.mixed]
module = "twoslots"
host = "app"
connects = ["web", {{ cache = "kv-a" }}, {{ sessions = "kv-b" }}]
"#,
        preamble("slots")
    );
    std::fs::write(dir.join("system.toml"), text).unwrap();
    dir.to_path_buf()
}

/// The Compose file as the real `docker-compose config` resolves it.
fn compose_config(file: &Path) -> serde_json::Value {
    oracle("compose", file).unwrap_or_else(|e| panic!("docker-compose rejects {}:\n{e}", file.display()));
    let venv = repo().join(".venv-oracles/bin/docker-compose");
    let bin: PathBuf = if venv.is_file() { venv } else { "docker-compose".into() };
    let out = run(std::process::Command::new(bin).arg("-f").arg(file).args(["config", "--format", "json"]));
    assert!(out.status.success(), "docker-compose config: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn each_named_slot_is_filled_by_the_service_named_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(&tmp.path().join("sys"));
    let r = build_with_modules(&repo().join("tests/fixtures/modules"), &sys, &tmp.path().join("store"), &tmp.path().join("r"));
    let c = compose_config(&r.join("hosts/app/compose.yaml"));
    let env =
        |svc: &str, var: &str| c["services"][svc]["environment"][var].as_str().unwrap_or_else(|| panic!("{svc} {var}: {c}")).to_string();
    // same host: the Compose service name and the container port; other host: its private address
    assert_eq!(env("named", "SESSIONS"), "kv-a=kv-a:6379");
    assert_eq!(env("named", "CACHE"), "kv-b=10.0.0.3:6379");
    assert_eq!(env("shared", "SESSIONS"), "kv-a=kv-a:6379");
    assert_eq!(env("shared", "CACHE"), "kv-a=kv-a:6379");
    assert_eq!(env("mixed", "SESSIONS"), "kv-b=10.0.0.3:6379");
    assert_eq!(env("mixed", "CACHE"), "kv-a=kv-a:6379");
    // every connection on the host orders start-up, the list entry that fills no slot too
    let after = |svc: &str| -> Vec<String> {
        let mut v: Vec<String> = c["services"][svc]["depends_on"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        v.sort();
        v
    };
    assert_eq!(after("named"), ["kv-a"]);
    assert_eq!(after("shared"), ["kv-a"]);
    assert_eq!(after("mixed"), ["kv-a", "web"]);
}

/// `kiln show` names the slot each connection fills; one service in two slots is one connection.
#[test]
fn show_names_the_slot_each_connection_fills() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(&tmp.path().join("sys"));
    let out = run(kiln().arg("--modules").arg(repo().join("tests/fixtures/modules")).args(["show", "--json"]).arg(&sys));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["services"];
    assert_eq!(s["named"]["slots"], serde_json::json!({ "sessions": "kv-a.kv", "cache": "kv-b.kv" }), "{s}");
    assert_eq!(s["shared"]["slots"], serde_json::json!({ "sessions": "kv-a.kv", "cache": "kv-a.kv" }), "{s}");
    assert_eq!(s["shared"]["connects"], serde_json::json!(["kv-a.kv"]), "{s}");
    assert_eq!(s["mixed"]["slots"], serde_json::json!({ "sessions": "kv-b.kv", "cache": "kv-a.kv" }), "{s}");
    assert_eq!(s["mixed"]["connects"], serde_json::json!(["kv-a.kv", "kv-b.kv", "web.http"]), "{s}");
}

/// The JSON Schema (`kiln schema`) takes the table form, with the slots each module declares,
/// and the mixed list; check-jsonschema judges it.
#[test]
fn the_schema_knows_the_table_form_and_each_modules_slots() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(kiln().arg("--modules").arg(repo().join("tests/fixtures/modules")).arg("schema"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let schema = tmp.path().join("system.schema.json");
    std::fs::write(&schema, &out.stdout).unwrap();
    let check = |name: &str, body: &str| {
        let f = tmp.path().join(name);
        std::fs::write(&f, body).unwrap();
        let out = run(std::process::Command::new(repo().join(".venv-oracles/bin/check-jsonschema"))
            .args(["--force-filetype", "toml", "--schemafile"])
            .arg(&schema)
            .arg(&f));
        (out.status.success(), text(&out.stdout))
    };
    let sys = system(&tmp.path().join("sys"));
    let (ok, why) = check("good.toml", &std::fs::read_to_string(sys.join("system.toml")).unwrap());
    assert!(ok, "the schema refuses named slots:\n{why}");
    let service = |connects: &str| format!("[services.x]\nmodule = \"twoslots\"\nhost = \"a\"\nconnects = {connects}\n");
    for connects in ["{ sessions = \"kv-a\" }", "[\"web\", { cache = \"kv-a\" }]", "[\"kv-a\"]"] {
        let (ok, why) = check("ok.toml", &service(connects));
        assert!(ok, "the schema refuses `connects = {connects}`:\n{why}");
    }
    for (name, connects) in [
        ("unknown-slot.toml", "{ sesions = \"kv-a\" }"),
        ("not-a-name.toml", "{ \"Sessions\" = \"kv-a\" }"),
        ("number.toml", "5"),
        ("list-of-numbers.toml", "[5]"),
        ("slot-of-list.toml", "{ sessions = [\"kv-a\"] }"),
    ] {
        let (ok, _) = check(name, &service(connects));
        assert!(!ok, "the schema accepted {name}");
    }
}
