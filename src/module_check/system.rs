//! A minimal system around one module: one public host with the module's service, whatever it
//! requires (recursively, the first module each slot names), example values for the options
//! without a default, a secret for every slot, a Caddy edge and a route when it serves HTTP
//! (whose `from_route` options the route then fills).
//! `kiln modules check` compiles it; the module tests build on it too.

use std::fmt::Write;

use crate::load::Inputs;
use crate::syntax::tree::{Node, Value};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKey000000000000000000000000000000 ops@laptop";

/// How deep a chain of requirements may go (a module requiring one requiring one …).
const MAX_DEPTH: usize = 4;

/// An example value as TOML text.
pub fn toml_value(n: &Node) -> Result<String, String> {
    Ok(match &n.value {
        Value::Str(s) => toml::Value::String(s.clone()).to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => format!("[{}]", items.iter().map(toml_value).collect::<Result<Vec<_>, _>>()?.join(", ")),
        other => return Err(format!("an example value of this kind cannot be written back: {other:?}")),
    })
}

/// What is collected while services are added.
#[derive(Default)]
struct Acc {
    out: String,
    secrets: Vec<String>,
    alerting: Vec<String>,
}

/// Adds a service of `module` (and, first, whatever it requires) to the system text; `shared`:
/// its secret slots a consumer takes (`same_secrets`), bound even when optional.
fn add_service(
    lib: &Inputs,
    module: &str,
    name: &str,
    acc: &mut Acc,
    depth: usize,
    (overrides, optional, shared): (&[(&str, String)], bool, &[&str]),
) -> Result<(), String> {
    let m = &lib.modules.get(module).ok_or_else(|| format!("no module `{module}`"))?.decl;
    if depth >= MAX_DEPTH {
        return Err(format!("module `{module}`: its requirements nest more than {MAX_DEPTH} deep"));
    }
    let mut connects = Vec::new();
    for r in m.requires.iter().filter(|r| optional || !r.optional) {
        let provider =
            &r.modules.first().ok_or_else(|| format!("module `{module}`: requirement `{}` names no module", r.slot.value))?.value;
        let dep_name = format!("{name}-{}", r.slot.value);
        let theirs: Vec<&str> = r.same_secrets.iter().map(|(_, t)| t.value.as_str()).collect();
        add_service(lib, provider, &dep_name, acc, depth + 1, (&[], false, &theirs))?;
        connects.push(match &r.endpoint {
            Some(ep) => format!("\"{dep_name}.{}\"", ep.value),
            None => format!("\"{dep_name}\""),
        });
    }
    let _ = writeln!(acc.out, "\n[services.{name}]\nmodule = \"{module}\"\nhost = \"h1\"");
    if m.collect_rules.is_some() {
        acc.alerting.push(name.to_string());
    }
    if !connects.is_empty() {
        let _ = writeln!(acc.out, "connects = [{}]", connects.join(", "));
    }
    let mut opts = Vec::new();
    // The service under test gets a route when it speaks HTTP: an option it takes from the route
    // is left to kiln, so the check renders the derived value (its dependencies have no route).
    let routed = depth == 0 && m.endpoints.iter().any(|e| e.http);
    let derived = |o: &crate::syntax::module::OptionDecl| routed && o.from_route.is_some();
    for o in m.options.iter().filter(|o| o.default.is_none() && !derived(o) && !overrides.iter().any(|(n, _)| *n == o.name.value)) {
        let ex = o.example.as_ref().ok_or_else(|| format!("module `{module}`: required option `{}` has no `example`", o.name.value))?;
        opts.push(format!("{} = {}", o.name.value, toml_value(ex)?));
    }
    for (n, v) in overrides {
        opts.push(format!("{n} = {v}"));
    }
    if !opts.is_empty() {
        let _ = writeln!(acc.out, "options = {{ {} }}", opts.join(", "));
    }
    // A slot taken from a connected service (`same_secrets`) is left to kiln.
    let taken = |slot: &str| {
        m.requires.iter().filter(|r| optional || !r.optional).any(|r| r.same_secrets.iter().any(|(mine, _)| mine.value == slot))
    };
    let binds: Vec<String> = m
        .secrets
        .iter()
        .filter(|s| (optional || !s.optional || shared.contains(&s.slot.value.as_str())) && !taken(&s.slot.value))
        .map(|s| {
            let secret = format!("{}_{}", name.replace('-', "_"), s.slot.value);
            acc.secrets.push(secret.clone());
            format!("{} = \"{secret}\"", s.slot.value)
        })
        .collect();
    if !binds.is_empty() {
        let _ = writeln!(acc.out, "secrets = {{ {} }}", binds.join(", "));
    }
    Ok(())
}

/// The system text around `module`'s service `svc`.
pub fn system_for(lib: &Inputs, module: &str) -> Result<String, String> {
    system_with(lib, module, &[], false)
}

/// [`system_for`] with `overrides` (option name, TOML value) on the module's own service `svc`,
/// and with `optional`, its optional requirements connected too.
pub fn system_with(lib: &Inputs, module: &str, overrides: &[(&str, String)], optional: bool) -> Result<String, String> {
    let m = &lib.modules.get(module).ok_or_else(|| format!("no module `{module}`"))?.decl;
    let mut acc = Acc {
        out: format!(
            "[system]\nname = \"t\"\ndomains = [\"example.com\"]\n# A module with its requirements may outgrow Hetzner's 32 KiB of user-data: it then boots\n# from the store (stage 0), as a real host would.\nstore = \"https://store.example.com/t\"\n\n[providers.hetzner]\nkind = \"hetzner\"\n\n[networks.private]\ncidr = \"10.0.0.0/24\"\n\n[admins.ops]\nkeys = [\"{KEY}\"]\nsources = [\"198.51.100.0/24\"]\n\n[hosts.h1]\nprovider = \"hetzner\"\nimage = \"ubuntu-24.04\"\npublic = true\nnetworks = {{ private = \"10.0.0.2\" }}\n"
        ),
        ..Acc::default()
    };
    add_service(lib, module, "svc", &mut acc, 0, (overrides, optional, &[]))?;
    let Acc { mut out, mut secrets, alerting } = acc;
    if let Some(ep) = m.endpoints.iter().find(|e| e.http) {
        if m.edge.is_none() {
            let _ = writeln!(out, "\n[services.edge]\nmodule = \"caddy\"\nhost = \"h1\"");
        }
        let _ = writeln!(out, "\n[routes.\"svc.example.com\"]\nservice = \"svc\"\nendpoint = \"{}\"", ep.name.value);
        if m.first_run_setup.is_some() {
            // Its first visitor would become the administrator: the route is for the admins only
            // (what public-first-run-setup asks of a system).
            let _ = writeln!(out, "allow = [\"198.51.100.0/24\"]");
        }
    }
    if !alerting.is_empty() {
        // Who is told of alerts is a system's decision, not the module's.
        let names = alerting.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            out,
            "\n[allow.alerts-without-receiver]\nservices = [{names}]\nreason = \"A module on its own: who is told of its alerts is the system's decision.\""
        );
    }
    secrets.sort();
    secrets.dedup();
    for s in secrets {
        let _ = writeln!(out, "\n[secrets.{s}]\nfile = \"secrets.sops.yaml\"");
    }
    Ok(out)
}
