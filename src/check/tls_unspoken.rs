//! `tls-unspoken`: a service connects to an endpoint that speaks only TLS (a module's `tls`, a
//! managed database) through a module that never asks whether it does.

use std::collections::BTreeMap;

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::{Inputs, LoadedModule};
use crate::model::System;

pub const RULE: Rule = Rule {
    id: "tls-unspoken",
    summary: "a connection to a TLS-only endpoint from a module that cannot ask for TLS",
    explanation: "An endpoint that speaks TLS (a postgres service with `tls = true` admits other \
containers and hosts over TLS only; a managed database) refuses a client that connects in the \
clear, so the service would fail at its first connection. A module says how its client asks for \
TLS by reading `requires.SLOT.tls` in its templates (`sslmode=require`, `PGSSLMODE`, a driver's \
`ssl` setting). A module whose templates never read it cannot: use a module that does, add the \
setting to it from the upstream documentation, or connect to an endpoint without TLS.",
    allowable: false,
    check,
};

fn check(sys: &System, inputs: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    // (module, slot) → whether the module reads `requires.SLOT.tls`: decided once per pair, not
    // per connection (a fleet has many services of one module).
    let mut known: BTreeMap<(&str, &str), bool> = BTreeMap::new();
    for s in sys.services.values() {
        let Some(module) = inputs.modules.get(&s.module) else { continue };
        for d in &s.deps {
            let Some(slot) = &d.slot else { continue };
            let managed = sys.databases.iter().any(|m| m.name == d.service);
            if d.route.is_some() || !(d.tls || managed) {
                continue;
            }
            if *known.entry((&s.module, slot)).or_insert_with(|| reads(module, inputs, &format!("requires.{slot}.tls"))) {
                continue;
            }
            let what = if managed { "a managed database, which" } else { "its endpoint" };
            out.push(
                Diagnostic::error(
                    RULE.id,
                    format!("`{}` connects to `{}` ({what} speaks TLS), but module `{}` has no TLS setting for `{slot}`", s.name, d.service, s.module),
                )
                .primary(d.span, "this connection would be refused in the clear")
                .help(format!(
                    "module `{}` never reads `requires.{slot}.tls`: add its client's TLS setting (from the upstream documentation) to the module, or connect to an endpoint without TLS",
                    s.module
                ))
                .about("services", &s.name),
            );
        }
    }
    out
}

/// Whether any template of the module (a string in module.toml, or a template file) names
/// `needle`. Comments in module.toml do not count: only its string values are templates.
fn reads(module: &LoadedModule, inputs: &Inputs, needle: &str) -> bool {
    fn walk(v: &toml::Value, needle: &str) -> bool {
        match v {
            toml::Value::String(s) => s.contains(needle),
            toml::Value::Array(a) => a.iter().any(|v| walk(v, needle)),
            toml::Value::Table(t) => t.values().any(|v| walk(v, needle)),
            _ => false,
        }
    }
    module.templates.values().any(|(_, text)| text.contains(needle))
        || toml::from_str::<toml::Value>(inputs.sources.text(module.file)).is_ok_and(|v| walk(&v, needle))
}
