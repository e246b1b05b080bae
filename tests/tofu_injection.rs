//! Terraform interpolation cannot be injected through kiln's `.tf.json`: free text reaches
//! Terraform as literal text (judged by real Terraform, through `scripts/tofu-check`), and the
//! typed fields (server types, locations, regions, engines, node types, user names, disk
//! names) refuse hostile strings at check, at their place.

mod common;

use std::path::Path;

use common::terraform::tofu_check;
use common::*;
use kiln::syntax::system::ProviderKind;
use serde_json::{Value, json};

/// Strings Terraform would evaluate, or that test the escape itself.
const HOSTILE: &[&str] = &[
    "${file(\"/etc/hostname\")}",
    "%{ if true }x%{ endif }",
    "${path.cwd}",
    "$${already}",
    "$$${x}",
    "%%{y}",
    "a $ b % c $",
    "${",
    "%{",
    "$${${}}}",
    "%{for x in [1]}${x}%{endfor}",
    "\\${x} \\%{y}",
    "end with $",
    "end with %",
];

/// `terraform show -json` of the plan of `root`, written into `dir`.
fn plan(dir: &Path, root: &Value) -> Result<Value, String> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("main.tf.json"), serde_json::to_vec_pretty(root).unwrap()).unwrap();
    let out = dir.with_extension("plan.json");
    tofu_check(dir, &["--plan-out", out.to_str().unwrap()])?;
    Ok(serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap())
}

fn outputs(strings: &[&str], escape: fn(&str) -> String) -> Value {
    let outputs: serde_json::Map<String, Value> =
        strings.iter().enumerate().map(|(i, s)| (format!("o{i}"), json!({ "value": escape(s) }))).collect();
    json!({ "terraform": { "required_version": ">= 1.4" }, "output": outputs })
}

#[test]
fn escaped_literals_are_read_back_verbatim_by_terraform() {
    let tmp = tempfile::tempdir().unwrap();
    let planned = plan(&tmp.path().join("escaped"), &outputs(HOSTILE, kiln::render::tofu::literal)).unwrap_or_else(|e| panic!("{e}"));
    for (i, s) in HOSTILE.iter().enumerate() {
        assert_eq!(planned["planned_values"]["outputs"][format!("o{i}")]["value"], json!(s), "output o{i}");
    }
    // the judge can tell: written raw, the same strings are evaluated (or refused)
    let raw = plan(&tmp.path().join("raw"), &outputs(&["%{ if true }x%{ endif }"], str::to_string)).unwrap();
    assert_eq!(raw["planned_values"]["outputs"]["o0"]["value"], json!("x"), "Terraform evaluates an unescaped template");
}

/// A system whose one Hetzner host runs a service whose option text holds every hostile
/// string: it travels in the host's user-data, which must reach the server verbatim.
fn hostile_system(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let message: String = HOSTILE.join(" | ");
    let preamble = common::preamble("inject");
    let system = format!(
        r#"{preamble}
[hosts.app]
provider = "hetzner"
image = "debian-12"
type = "cx22"
location = "fsn1"
public = true
disks = {{ data = "20GiB" }}

[services.web]
module = "web"
host = "app"
options = {{ message = {message} }}
"#,
        message = toml_string(&message)
    );
    std::fs::write(dir.join("system.toml"), system).unwrap();
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

#[test]
fn hostile_text_in_user_data_reaches_the_server_verbatim() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    hostile_system(&sys);
    let result = build_with_modules(&repo().join("tests/fixtures/modules"), &sys, &tmp.path().join("store"), &tmp.path().join("r"));
    let user_data = std::fs::read_to_string(result.join("hosts/app/user-data")).unwrap();
    assert!(user_data.contains("%{ if true }x%{ endif }"), "the hostile text is in the user-data");
    let root: Value = serde_json::from_slice(&std::fs::read(result.join("tofu/main.tf.json")).unwrap()).unwrap();
    let planned = plan(&tmp.path().join("tf"), &root).unwrap_or_else(|e| panic!("terraform rejects the root:\n{e}"));
    let server = planned["planned_values"]["root_module"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "hcloud_server.app")
        .expect("the server is planned");
    assert_eq!(server["values"]["user_data"].as_str(), Some(user_data.as_str()), "Terraform changed the user-data");
    assert_eq!(server["values"]["server_type"], "cx22");
}

/// Every typed string field that reaches `.tf.json`, with a hostile value: `kiln check`
/// refuses it at the value's line.
#[test]
fn hostile_strings_in_typed_fields_are_refused_where_they_are_written() {
    let base = common::preamble("inject")
        + r#"
[providers.scw]
kind = "scaleway"

[providers.do]
kind = "digitalocean"

[hosts.app]
provider = "hetzner"
image = "debian-12"

[services.web]
module = "web"
host = "app"
"#;
    let fields: &[(&str, &str)] = &[
        ("[hosts.app]", "type = V"),
        ("[hosts.app]", "location = V"),
        ("[hosts.app]", "disks = { V = \"20GiB\" }"),
        ("[buckets.b]\nprovider = \"scw\"", "region = V"),
        ("[buckets.b]\nprovider = \"do\"", "region = V"),
        ("[databases.d]\nprovider = \"scw\"", "engine = V"),
        ("[databases.d]\nprovider = \"scw\"", "node_type = V"),
        ("[databases.d]\nprovider = \"scw\"", "user = V"),
        ("[databases.d]\nprovider = \"scw\"", "region = V"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (table, field) in fields {
        for hostile in ["${file(\"/etc/hostname\")}", "%{ if true }x%{ endif }", "fr-par\0", "cx22\r\n", "a b"] {
            let dir = tmp.path().join(format!("s{checked}"));
            std::fs::create_dir_all(&dir).unwrap();
            // the table is appended after the base, or re-opened for the host
            let line = field.replace('V', &toml_string(hostile));
            let toml = if *table == "[hosts.app]" {
                base.replace("image = \"debian-12\"\n", &format!("image = \"debian-12\"\n{line}\n"))
            } else {
                format!("{base}\n{table}\n{line}\n")
            };
            std::fs::write(dir.join("system.toml"), &toml).unwrap();
            let out = run(kiln().arg("--modules").arg(repo().join("tests/fixtures/modules")).arg("check").arg(&dir));
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{field} = {hostile:?} was accepted:\n{err}");
            let at = toml.lines().position(|l| l == line).unwrap() + 1;
            assert!(err.contains(&format!("system.toml:{at}:")), "{field} = {hostile:?}: not reported at line {at}:\n{err}");
            checked += 1;
        }
    }
    assert_eq!(checked, fields.len() * 5);
}

/// Every string field of the model that reaches the root, set to a hostile value behind the
/// type checks' back (as a future field that forgot to type its value would): the emitter
/// escapes it anyway, and Terraform plans it verbatim.
#[test]
fn every_model_string_in_the_root_is_literal_even_untyped() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, system) in ["tests/fixtures/tofu/clouds", "flake-free-examples/five-vps-saas"].iter().enumerate() {
        let opts = kiln::pipeline::Options { module_dirs: vec![repo().join("tests/fixtures/modules")], ..Default::default() };
        let mut c = match kiln::pipeline::compile(&repo().join(system).join("system.toml"), &opts).unwrap() {
            kiln::pipeline::Outcome::Ok(c) => c,
            kiln::pipeline::Outcome::Failed(_) => panic!("{system} does not compile"),
        };
        let payload = |field: &str| format!("{field}:${{file(\"/etc/hostname\")}}%{{ if true }}x%{{ endif }}");
        let mut placed = Vec::new();
        let mut place = |field: String| {
            let p = payload(&field);
            placed.push(p.clone());
            p
        };
        let sys = &mut c.system;
        sys.name = place("system".into());
        for h in sys.hosts.values_mut().filter(|h| h.provider_kind != ProviderKind::Existing) {
            h.server_type = Some(place(format!("{}.type", h.name)));
            h.group = Some(place(format!("{}.group", h.name)));
            // kiln writes no zone for a Scaleway server
            if h.provider_kind != ProviderKind::Scaleway {
                h.location = Some(place(format!("{}.location", h.name)));
            }
        }
        for b in &mut sys.buckets {
            b.region = Some(place(format!("{}.region", b.name)));
        }
        for d in &mut sys.databases {
            d.engine = place(format!("{}.engine", d.name));
            d.node_type = place(format!("{}.node_type", d.name));
            d.user = place(format!("{}.user", d.name));
            d.region = Some(place(format!("{}.region", d.name)));
        }
        let inputs: Vec<kiln::render::tofu::HostInput<'_>> = c
            .hosts
            .iter()
            .map(|(name, ha)| kiln::render::tofu::HostInput {
                host: &c.system.hosts[name],
                closure: &ha.closure,
                user_data: "#cloud-config\n",
            })
            .collect();
        let root: Value = serde_json::from_str(&kiln::render::tofu::emit(&c.system, &inputs).unwrap()).unwrap();
        let planned =
            plan(&tmp.path().join(format!("tf{i}")), &root).unwrap_or_else(|e| panic!("{system}: terraform rejects the root:\n{e}"));
        let mut strings = Vec::new();
        collect_strings(&planned["planned_values"], &mut strings);
        let missing: Vec<&String> = placed.iter().filter(|p| !strings.iter().any(|s| s.contains(p.as_str()))).collect();
        assert!(missing.is_empty(), "{system}: not planned verbatim: {missing:?}");
        assert!(!strings.iter().any(|s| s.contains(":x") || s.contains(":$x")), "{system}: a template was evaluated");
    }
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(m) => m.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}
