//! Module documentation generated from the module declarations: `kiln modules list`,
//! `kiln modules show NAME`, and the checked-in pages under `docs/modules/`.

use std::fmt::Write;

use crate::load::{LoadedModule, Origin};
use crate::syntax::module::ModuleKind;

/// One line per module: name, version, summary.
pub fn list<'a>(modules: impl IntoIterator<Item = &'a LoadedModule>) -> String {
    let mut out = String::new();
    for m in modules {
        let d = &m.decl;
        let _ = writeln!(out, "{:<26} {:<14} {}", d.name.value, d.version.value, d.summary.value);
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Everything a user needs to place the module: options, what it exposes and needs. Markdown.
pub fn page(m: &LoadedModule) -> String {
    let d = &m.decl;
    let mut o = String::new();
    let _ = writeln!(o, "# {} {}\n\n{}", d.name.value, d.version.value, d.summary.value);
    if let Some(desc) = &d.description {
        let _ = writeln!(o, "\n{}", desc.value.trim());
    }
    let kind = match d.kind.value {
        ModuleKind::Container => match d.container.as_ref().and_then(|c| c.image.as_ref()) {
            Some(img) => format!("container `{}`", img.value),
            None => "container".to_string(),
        },
        ModuleKind::Native => match &d.native {
            Some(n) => format!("native: packages {}", n.packages.iter().map(|p| format!("`{}`", p.value)).collect::<Vec<_>>().join(", ")),
            None => "native".to_string(),
        },
    };
    let _ = writeln!(o, "\n- kind: {kind}");
    if let Some(e) = &d.edge {
        let _ = writeln!(o, "- edge: terminates routes ({})", e.value);
    }
    if let Origin::Dir(p) = &m.origin {
        let _ = writeln!(o, "- from: `{}`", p.display());
    }

    let _ = writeln!(o, "\n## Options\n");
    if d.options.is_empty() {
        let _ = writeln!(o, "None.");
    } else {
        let _ = writeln!(o, "| option | type | default | description | example |\n|---|---|---|---|---|");
        for opt in &d.options {
            let default = match (&opt.default, &opt.from_route) {
                (Some(n), _) => format!("`{}`", n.text()),
                (None, Some(f)) => format!("the route's {}", f.value.name()),
                (None, None) => "required".into(),
            };
            let mut desc = opt.description.as_ref().map(|x| one_line(&x.value)).unwrap_or_default();
            if !opt.values.is_empty() {
                let _ = write!(desc, " One of {}.", opt.values.iter().map(|v| format!("`{}`", v.value)).collect::<Vec<_>>().join(", "));
            }
            let example = opt.example.as_ref().map(|n| format!("`{}`", n.text())).unwrap_or_default();
            let _ =
                writeln!(o, "| `{}` | {} | {default} | {} | {example} |", opt.name.value, opt.ty.value.name(), desc.replace('|', "\\|"));
        }
    }

    let _ = writeln!(o, "\n## Exposes\n");
    for e in &d.endpoints {
        let port = match &e.port.value {
            crate::syntax::module::IntOrTpl::Int(i) => i.to_string(),
            crate::syntax::module::IntOrTpl::Tpl(t) => format!("`{t}`"),
        };
        let http = if e.http { ", HTTP (routes may target it)" } else { "" };
        let tls = match e.tls.as_ref().map(|t| t.value.as_str()) {
            None | Some("false") => String::new(),
            Some("true") => ", TLS".into(),
            Some(t) => format!(", TLS when `{t}`"),
        };
        let _ = writeln!(o, "- endpoint `{}`: {port}/{}{http}{tls}", e.name.value, e.protocol.value.name());
    }
    if let Some(mt) = &d.metrics {
        let _ = writeln!(o, "- metrics: endpoint `{}`, path `{}`", mt.endpoint.value, mt.path);
    }
    if let Some(fa) = &d.forward_auth {
        let _ = writeln!(o, "- forward auth for edges: endpoint `{}`, `{}`", fa.endpoint.value, fa.uri.value);
    }
    for v in &d.volumes {
        let _ = writeln!(o, "- volume `{}` at `{}`{}", v.name.value, v.target.value, if v.backup { " (backed up)" } else { "" });
    }
    if let Some(b) = &d.backup
        && let Some(dump) = &b.dump
    {
        let _ = writeln!(o, "- backup dump: `{}`", dump.iter().map(|s| s.value.as_str()).collect::<Vec<_>>().join(" "));
        if let Some(restore) = &b.restore {
            let _ =
                writeln!(o, "- restored from the dump by: `{}`", restore.iter().map(|s| s.value.as_str()).collect::<Vec<_>>().join(" "));
        }
    }
    if d.endpoints.is_empty() && d.metrics.is_none() && d.volumes.is_empty() {
        let _ = writeln!(o, "Nothing.");
    }

    let _ = writeln!(o, "\n## Needs\n");
    for r in &d.requires {
        let mods = r.modules.iter().map(|m| format!("`{}`", m.value)).collect::<Vec<_>>().join(" or ");
        let opt = if r.optional { " (optional)" } else { "" };
        let desc = r.description.as_ref().map(|x| format!(": {}", one_line(&x.value))).unwrap_or_default();
        let _ = writeln!(o, "- `{}`{opt}: a {mods} in `connects`{desc}", r.slot.value);
    }
    for s in &d.secrets {
        let opt = match s.required_when.as_ref().map(|w| &w.value) {
            Some(crate::syntax::module::RequiredWhen::Option { name, equals: Some(value) }) => {
                format!(" (required when option `{name}` is `{value}`)")
            }
            Some(crate::syntax::module::RequiredWhen::Option { name, equals: None }) => format!(" (required when option `{name}` is set)"),
            Some(crate::syntax::module::RequiredWhen::Slot(slot)) => format!(" (required when `{slot}` is connected)"),
            None if s.optional => " (optional)".to_string(),
            None => String::new(),
        };
        let desc = s.description.as_ref().map(|x| format!(": {}", one_line(&x.value))).unwrap_or_default();
        let _ = writeln!(o, "- secret `{}`{opt}{desc}", s.slot.value);
    }
    if d.requires.is_empty() && d.secrets.is_empty() {
        let _ = writeln!(o, "Nothing.");
    }
    if let Some(r) = &d.resources {
        let mem = r.memory.as_ref().map(|m| format!("memory {}", m.value.compose())).unwrap_or_default();
        let cpu = r.cpus.as_ref().map(|c| format!("cpus {}", c.value)).unwrap_or_default();
        let _ = writeln!(o, "\nDefault limits: {}.", [mem, cpu].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(", "));
    }
    o
}

/// The index page of `docs/modules/`.
pub fn index<'a>(modules: impl IntoIterator<Item = &'a LoadedModule>) -> String {
    let mut o = String::from(
        "# Built-in modules\n\nGenerated by `kiln modules docs docs/modules`: do not edit; a test compares these pages with the modules.\nHow to write one: [../modules.md](../modules.md).\n\n| module | version | summary |\n|---|---|---|\n",
    );
    for m in modules {
        let d = &m.decl;
        let _ = writeln!(o, "| [{0}]({0}.md) | {1} | {2} |", d.name.value, d.version.value, d.summary.value.replace('|', "\\|"));
    }
    o
}

/// Every generated page: (file name, contents).
pub fn pages<'a>(modules: impl IntoIterator<Item = &'a LoadedModule> + Clone) -> Vec<(String, String)> {
    let mut v = vec![("README.md".to_string(), index(modules.clone()))];
    v.extend(modules.into_iter().map(|m| (format!("{}.md", m.decl.name.value), page(m))));
    v
}

fn kind_name(d: &crate::syntax::module::ModuleDecl) -> &'static str {
    match d.kind.value {
        ModuleKind::Container => "container",
        ModuleKind::Native => "native",
    }
}

/// `kiln modules list --json`: name, version, summary and kind of every module.
pub fn list_json<'a>(modules: impl IntoIterator<Item = &'a LoadedModule>) -> serde_json::Value {
    modules
        .into_iter()
        .map(|m| {
            let d = &m.decl;
            serde_json::json!({ "name": d.name.value, "version": d.version.value, "summary": d.summary.value, "kind": kind_name(d) })
        })
        .collect()
}

/// `kiln modules show NAME --json`: what `page` says, as data.
pub fn page_json(m: &LoadedModule) -> serde_json::Value {
    let d = &m.decl;
    let options: Vec<_> = d
        .options
        .iter()
        .map(|o| {
            serde_json::json!({
                "name": o.name.value,
                "type": o.ty.value.name(),
                "required": o.default.is_none() && o.from_route.is_none(),
                "from_route": o.from_route.as_ref().map(|f| f.value.name()),
                "default": o.default.as_ref().map(|n| n.text()),
                "values": o.values.iter().map(|v| v.value.clone()).collect::<Vec<_>>(),
                "description": o.description.as_ref().map(|x| one_line(&x.value)),
                "example": o.example.as_ref().map(|n| n.text()),
            })
        })
        .collect();
    let endpoints: Vec<_> = d
        .endpoints
        .iter()
        .map(|e| {
            let port = match &e.port.value {
                crate::syntax::module::IntOrTpl::Int(i) => serde_json::json!(i),
                crate::syntax::module::IntOrTpl::Tpl(t) => serde_json::json!(t),
            };
            let mut j = serde_json::json!({ "name": e.name.value, "port": port, "protocol": e.protocol.value.name(), "http": e.http });
            // `tls`: `true` or the template that says whether the endpoint speaks TLS.
            if let Some(t) = &e.tls {
                j["tls"] = serde_json::json!(t.value);
            }
            j
        })
        .collect();
    let requires: Vec<_> = d
        .requires
        .iter()
        .map(|r| {
            serde_json::json!({
                "slot": r.slot.value,
                "modules": r.modules.iter().map(|x| x.value.clone()).collect::<Vec<_>>(),
                "optional": r.optional,
            })
        })
        .collect();
    let secrets: Vec<_> = d.secrets.iter().map(|s| serde_json::json!({ "slot": s.slot.value, "optional": s.optional })).collect();
    let volumes: Vec<_> =
        d.volumes.iter().map(|v| serde_json::json!({ "name": v.name.value, "target": v.target.value, "backup": v.backup })).collect();
    serde_json::json!({
        "name": d.name.value,
        "version": d.version.value,
        "summary": d.summary.value,
        "description": d.description.as_ref().map(|x| x.value.trim().to_string()),
        "kind": kind_name(d),
        "image": d.container.as_ref().and_then(|c| c.image.as_ref()).map(|i| i.value.to_string()),
        "options": options,
        "endpoints": endpoints,
        "requires": requires,
        "secrets": secrets,
        "volumes": volumes,
    })
}
