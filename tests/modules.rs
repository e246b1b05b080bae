//! Every built-in module, dropped into a minimal system (with whatever it requires), compiles,
//! and every artifact passes its real judge, including the module's own config files (each
//! file names its judge: promtool, caddy, the Traefik schemas, a YAML/JSON/TOML parser, sh).
//! `KILN_ONLY=a,b` limits the run to some modules; `KILN_MODULE_DIR=DIR` loads modules from
//! DIR at run time (over the built-in ones), so module authors need not rebuild.

#![allow(clippy::disallowed_methods)] // tests may read their own switches

mod common;

use std::collections::BTreeMap;
use std::fmt::Write;

use kiln::load::{Inputs, library};
use kiln::pipeline::{Options, Outcome, compile};
use kiln::syntax::module::ModuleKind;
use kiln::syntax::tree::{Node, Value};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKey000000000000000000000000000000 ops@laptop";

fn toml_value(n: &Node) -> String {
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
fn add_service(lib: &Inputs, module: &str, name: &str, out: &mut String, secrets: &mut Vec<String>, depth: usize) -> Result<(), String> {
    let m = &lib.modules.get(module).ok_or_else(|| format!("no module `{module}`"))?.decl;
    assert!(depth < 4, "requirement chain too deep at {module}");
    let mut connects = Vec::new();
    for r in m.requires.iter().filter(|r| !r.optional) {
        let provider = &r.modules[0].value;
        let dep_name = format!("{name}-{}", r.slot.value);
        add_service(lib, provider, &dep_name, out, secrets, depth + 1)?;
        connects.push(match &r.endpoint {
            Some(ep) => format!("\"{dep_name}.{}\"", ep.value),
            None => format!("\"{dep_name}\""),
        });
    }
    let _ = writeln!(out, "\n[services.{name}]\nmodule = \"{module}\"\nhost = \"h1\"");
    if !connects.is_empty() {
        let _ = writeln!(out, "connects = [{}]", connects.join(", "));
    }
    let mut opts = Vec::new();
    for o in m.options.iter().filter(|o| o.default.is_none()) {
        let ex = o.example.as_ref().ok_or_else(|| format!("module `{module}`: required option `{}` has no `example`", o.name.value))?;
        opts.push(format!("{} = {}", o.name.value, toml_value(ex)));
    }
    if !opts.is_empty() {
        let _ = writeln!(out, "options = {{ {} }}", opts.join(", "));
    }
    let binds: Vec<String> = m
        .secrets
        .iter()
        .filter(|s| !s.optional)
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

fn system_for(lib: &Inputs, module: &str) -> Result<String, String> {
    let m = &lib.modules[module].decl;
    let mut out = format!(
        "[system]\nname = \"t\"\ndomains = [\"example.com\"]\n\n[providers.hetzner]\nkind = \"hetzner\"\n\n[networks.private]\ncidr = \"10.0.0.0/24\"\n\n[admins.ops]\nkeys = [\"{KEY}\"]\nsources = [\"198.51.100.0/24\"]\n\n[hosts.h1]\nprovider = \"hetzner\"\nimage = \"ubuntu-24.04\"\npublic = true\nnetworks = {{ private = \"10.0.0.2\" }}\n"
    );
    let mut secrets = Vec::new();
    add_service(lib, module, "svc", &mut out, &mut secrets, 0)?;
    let http = m.endpoints.iter().find(|e| e.http);
    if let Some(ep) = http {
        if m.edge.is_none() {
            let _ = writeln!(out, "\n[services.edge]\nmodule = \"caddy\"\nhost = \"h1\"");
        }
        let _ = writeln!(out, "\n[routes.\"svc.example.com\"]\nservice = \"svc\"\nendpoint = \"{}\"", ep.name.value);
    }
    secrets.sort();
    secrets.dedup();
    for s in secrets {
        let _ = writeln!(out, "\n[secrets.{s}]\nfile = \"secrets.sops.yaml\"");
    }
    Ok(out)
}

fn judge_file(judge: &str, path: &std::path::Path) -> Result<(), String> {
    match judge {
        "yaml" => {
            common::yaml_to_json(path);
            Ok(())
        }
        "json" => serde_json::from_slice::<serde_json::Value>(&std::fs::read(path).unwrap()).map(|_| ()).map_err(|e| e.to_string()),
        "toml" => toml::from_str::<toml::Value>(&std::fs::read_to_string(path).unwrap()).map(|_| ()).map_err(|e| e.to_string()),
        other => common::oracle(other, path),
    }
}

#[test]
fn every_module_compiles_in_a_minimal_system_and_passes_the_judges() {
    let dirs: Vec<std::path::PathBuf> = std::env::var_os("KILN_MODULE_DIR").map(|d| vec![d.into()]).unwrap_or_default();
    let lib = library(&dirs).unwrap();
    assert!(lib.diags.is_empty(), "built-in modules have errors:\n{}", kiln::diag::render(&lib.sources, &lib.diags, false));
    let only: Option<Vec<String>> = std::env::var("KILN_ONLY").ok().map(|s| s.split(',').map(str::to_string).collect());
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut tested = 0;
    for (name, m) in &lib.modules {
        if only.as_ref().is_some_and(|o| !o.contains(name)) {
            continue;
        }
        tested += 1;
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let text = match system_for(&lib, name) {
            Ok(t) => t,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        std::fs::write(dir.join("system.toml"), &text).unwrap();
        let c = match compile(&dir, &Options { module_dirs: dirs.clone(), ..Options::default() }).unwrap() {
            Outcome::Ok(c) => c,
            Outcome::Failed(f) => {
                failures.push(format!("{name}:\n{text}\n{}", kiln::diag::render(&f.sources, &f.diagnostics, false)));
                continue;
            }
        };
        let judges: BTreeMap<String, String> =
            m.decl.files.iter().filter_map(|f| Some((format!("files/svc/{}", f.name.value), f.judge.as_ref()?.value.clone()))).collect();
        for a in &c.hosts["h1"].artifacts {
            let path = dir.join("out").join(&a.path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &a.bytes).unwrap();
            let judge = match a.kind.name() {
                "cloud-init" => Some("cloud-init".to_string()),
                "provisioner" => Some("sh".to_string()),
                "compose" => Some("compose".to_string()),
                "caddyfile" => Some("caddy".to_string()),
                "traefik-static" | "traefik-dynamic" => Some(a.kind.name().to_string()),
                _ => judges.get(&a.path).cloned(),
            };
            if let Some(j) = judge
                && let Err(e) = judge_file(&j, &path)
            {
                failures.push(format!("{name}: {} rejected by {j}:\n{e}", a.path));
            }
        }
        if m.decl.kind.value == ModuleKind::Container {
            assert!(c.hosts["h1"].artifacts.iter().any(|a| a.path == "compose.yaml"), "{name}: no compose file");
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n\n"));
    assert!(tested > 0, "no module tested");
}

#[test]
fn every_option_is_documented_and_every_image_pinned() {
    let dirs: Vec<std::path::PathBuf> = std::env::var_os("KILN_MODULE_DIR").map(|d| vec![d.into()]).unwrap_or_default();
    let lib = library(&dirs).unwrap();
    let mut problems = Vec::new();
    for (name, m) in &lib.modules {
        for o in &m.decl.options {
            if o.description.as_ref().is_none_or(|d| d.value.trim().is_empty()) {
                problems.push(format!("{name}: option `{}` has no description", o.name.value));
            }
        }
        if let Some(c) = &m.decl.container
            && let Some(img) = &c.image
            && !img.value.contains("{{")
        {
            match kiln::types::ImageRef::parse(&img.value) {
                Ok(i) if i.is_pinned() => {}
                _ => problems.push(format!("{name}: image `{}` is not pinned", img.value)),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
