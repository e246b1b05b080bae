//! Every built-in module, dropped into a minimal system (with whatever it requires), compiles,
//! and every artifact passes its real judge, including the module's own config files (each
//! file names its judge: promtool, caddy, the Traefik schemas, a YAML/JSON/TOML parser, sh).
//! `KILN_ONLY=a,b` limits the run to some modules; `KILN_MODULE_DIR=DIR` loads modules from
//! DIR at run time (over the built-in ones), so module authors need not rebuild.

#![allow(clippy::disallowed_methods)] // tests may read their own switches

mod common;
mod module_system;

use std::collections::BTreeMap;

use kiln::load::library;
use kiln::pipeline::{Options, Outcome, compile};
use kiln::syntax::module::ModuleKind;
use module_system::system_for;

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
    // The schema-judged files of every module, judged together at the end (each module's
    // directory names it in a failure's paths).
    let mut batched: Vec<(String, std::path::PathBuf)> = Vec::new();
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
        // Every file first: a configuration may name another (prometheus.yml its rules/kiln.yml).
        for a in &c.hosts["h1"].artifacts {
            let path = dir.join("out").join(&a.path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &a.bytes).unwrap();
        }
        for a in &c.hosts["h1"].artifacts {
            let path = dir.join("out").join(&a.path);
            let judge = match a.kind.name() {
                "cloud-init" => Some("cloud-init".to_string()),
                "provisioner" => Some("sh".to_string()),
                "compose" => Some("compose".to_string()),
                "caddyfile" => Some("caddy".to_string()),
                "traefik-static" | "traefik-dynamic" => Some(a.kind.name().to_string()),
                // Scheduled jobs (`[jobs.NAME]`): the script and its units.
                "script" if a.path.starts_with("jobs/") => Some("sh".to_string()),
                "systemd-unit" if a.path.starts_with("jobs/") => Some("systemd".to_string()),
                _ => judges.get(&a.path).cloned(),
            };
            match judge {
                Some(j) if common::BATCHED_JUDGES.contains(&j.as_str()) => batched.push((j, path)),
                Some(j) => {
                    if let Err(e) = judge_file(&j, &path) {
                        failures.push(format!("{name}: {} rejected by {j}:\n{e}", a.path));
                    }
                }
                None => {}
            }
        }
        if m.decl.kind.value == ModuleKind::Container {
            assert!(c.hosts["h1"].artifacts.iter().any(|a| a.path == "compose.yaml"), "{name}: no compose file");
        }
    }
    failures.extend(common::oracle_all(batched.iter().map(|(j, p)| (j.as_str(), p.clone()))));
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
