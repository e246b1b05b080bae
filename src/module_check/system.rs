//! Minimal systems around one built-in module (with whatever it requires), shared by the module
//! tests: `system_for` writes the system text, `add_service_with` lets a test set options.
#![allow(dead_code)]

use std::fmt::Write;

use kiln::load::Inputs;
use kiln::syntax::tree::{Node, Value};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKey000000000000000000000000000000 ops@laptop";

pub fn toml_value(n: &Node) -> String {
    match &n.value {
        Value::Str(s) => toml::Value::String(s.clone()).to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => format!("[{}]", items.iter().map(toml_value).collect::<Vec<_>>().join(", ")),
        other => panic!("unsupported example value {other:?}"),
    }
}

/// Adds a service of `module` (and, first, whatever it requires) to the system text.
#[allow(clippy::too_many_arguments)]
fn add_service(
    lib: &Inputs,
    module: &str,
    name: &str,
    out: &mut String,
    secrets: &mut Vec<String>,
    alerting: &mut Vec<String>,
    depth: usize,
    (overrides, optional): (&[(&str, String)], bool),
) -> Result<(), String> {
    let m = &lib.modules.get(module).ok_or_else(|| format!("no module `{module}`"))?.decl;
    assert!(depth < 4, "requirement chain too deep at {module}");
    let mut connects = Vec::new();
    for r in m.requires.iter().filter(|r| optional || !r.optional) {
        let provider = &r.modules[0].value;
        let dep_name = format!("{name}-{}", r.slot.value);
        add_service(lib, provider, &dep_name, out, secrets, alerting, depth + 1, (&[], false))?;
        connects.push(match &r.endpoint {
            Some(ep) => format!("\"{dep_name}.{}\"", ep.value),
            None => format!("\"{dep_name}\""),
        });
    }
    let _ = writeln!(out, "\n[services.{name}]\nmodule = \"{module}\"\nhost = \"h1\"");
    if m.collect_rules.is_some() {
        alerting.push(name.to_string());
    }
    if !connects.is_empty() {
        let _ = writeln!(out, "connects = [{}]", connects.join(", "));
    }
    let mut opts = Vec::new();
    for o in m.options.iter().filter(|o| o.default.is_none() && !overrides.iter().any(|(n, _)| *n == o.name.value)) {
        let ex = o.example.as_ref().ok_or_else(|| format!("module `{module}`: required option `{}` has no `example`", o.name.value))?;
        opts.push(format!("{} = {}", o.name.value, toml_value(ex)));
    }
    for (n, v) in overrides {
        opts.push(format!("{n} = {v}"));
    }
    if !opts.is_empty() {
        let _ = writeln!(out, "options = {{ {} }}", opts.join(", "));
    }
    let binds: Vec<String> = m
        .secrets
        .iter()
        .filter(|s| optional || !s.optional)
        .map(|s| {
            let secret = format!("{}_{}", name.replace('-', "_"), s.slot.value);
            secrets.push(secret.clone());
            format!("{} = \"{secret}\"", s.slot.value)
        })
        .collect();
    if !binds.is_empty() {
        let _ = writeln!(out, "secrets = {{ {} }}", binds.join(", "));
    }
    Ok(())
}

pub fn system_for(lib: &Inputs, module: &str) -> Result<String, String> {
    system_with(lib, module, &[], false)
}

/// [`system_for`] with `overrides` (option name, TOML value) on the module's own service `svc`,
/// and with `optional`, its optional requirements connected too.
pub fn system_with(lib: &Inputs, module: &str, overrides: &[(&str, String)], optional: bool) -> Result<String, String> {
    let m = &lib.modules[module].decl;
    let mut out = format!(
        "[system]\nname = \"t\"\ndomains = [\"example.com\"]\n\n[providers.hetzner]\nkind = \"hetzner\"\n\n[networks.private]\ncidr = \"10.0.0.0/24\"\n\n[admins.ops]\nkeys = [\"{KEY}\"]\nsources = [\"198.51.100.0/24\"]\n\n[hosts.h1]\nprovider = \"hetzner\"\nimage = \"ubuntu-24.04\"\npublic = true\nnetworks = {{ private = \"10.0.0.2\" }}\n"
    );
    let mut secrets = Vec::new();
    let mut alerting = Vec::new();
    add_service(lib, module, "svc", &mut out, &mut secrets, &mut alerting, 0, (overrides, optional))?;
    let http = m.endpoints.iter().find(|e| e.http);
    if let Some(ep) = http {
        if m.edge.is_none() {
            let _ = writeln!(out, "\n[services.edge]\nmodule = \"caddy\"\nhost = \"h1\"");
        }
        let _ = writeln!(out, "\n[routes.\"svc.example.com\"]\nservice = \"svc\"\nendpoint = \"{}\"", ep.name.value);
        if m.first_run_setup.is_some() {
            // Its first visitor would become the administrator: the route is for the admins only
            // (what public-first-run-setup asks of a system; tested in tests/diagnostics.rs).
            let _ = writeln!(out, "allow = [\"198.51.100.0/24\"]");
        }
    }
    if !alerting.is_empty() {
        // Who is told of alerts is a system's decision (tests/alerting.rs), not the module's.
        let names = alerting.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            out,
            "\n[allow.alerts-without-receiver]\nservices = [{names}]\nreason = \"A module on its own: who is told of its alerts is the system's decision, tested in tests/alerting.rs.\""
        );
    }
    secrets.sort();
    secrets.dedup();
    for s in secrets {
        let _ = writeln!(out, "\n[secrets.{s}]\nfile = \"secrets.sops.yaml\"");
    }
    Ok(out)
}
