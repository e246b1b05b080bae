//! `[module]`, `[options.NAME]` and `[collect]`: what a module is, what it takes, what it gathers.

use super::strings::{absolute, bad};
use super::{ModuleKind, OptType, OptionDecl};
use crate::syntax::decode::{Sink, Sp, TableReader, typed};
use crate::syntax::system::one_of;
use crate::types;

/// The `[module]` table.
pub(super) struct Header {
    pub name: Option<Sp<String>>,
    pub version: Option<Sp<String>>,
    pub summary: Option<Sp<String>>,
    pub description: Option<Sp<String>>,
    pub kind: Option<Sp<ModuleKind>>,
    pub edge: Option<Sp<String>>,
    pub first_run_setup: Option<Sp<String>>,
    pub first_run_bootstrap: Option<Sp<(String, String)>>,
    pub embeddable: bool,
}

pub(super) fn header(mut t: TableReader<'_>, sink: &Sink) -> Header {
    let name = typed(t.req_str("name", "\"postgres\""), sink, types::parse_ident);
    let version = t.req_str("version", "\"1.0.0\"");
    let summary = t.req_str("summary", "\"what it is, in one line\"");
    let description = t.str("description");
    let kind = typed(t.req_str("kind", "\"container\""), sink, |s| match s {
        "container" => Ok(ModuleKind::Container),
        "native" => Ok(ModuleKind::Native),
        _ => Err(one_of(s, "module kind", &["container", "native"])),
    });
    let edge = typed(t.str("edge"), sink, |s| match s {
        "caddy" | "traefik" => Ok(s.to_string()),
        _ => Err(one_of(s, "edge server", &["caddy", "traefik"])),
    });
    let first_run_setup = t.str("first_run_setup");
    let first_run_bootstrap = typed(t.str("first_run_bootstrap"), sink, |s| match s.split_once('.') {
        Some((m, slot)) if types::parse_ident(m).is_ok() && types::parse_ident(slot).is_ok() => Ok((m.to_string(), slot.to_string())),
        _ => Err(bad(
            format!("`{s}` is not MODULE.SLOT"),
            "name a module and one of its secret slots: \"authentik-worker.bootstrap_password\"",
        )),
    });
    let embeddable = t.bool("embeddable").is_some_and(|b| b.value);
    t.finish();
    Header { name, version, summary, description, kind, edge, first_run_setup, first_run_bootstrap, embeddable }
}

/// One `[options.NAME]`.
pub(super) fn option(name: Sp<String>, mut t: TableReader<'_>, sink: &Sink) -> Option<OptionDecl> {
    let ty = typed(t.req_str("type", "\"string\""), sink, OptType::parse)?;
    let d = OptionDecl {
        ty,
        default: t.node("default").cloned(),
        values: t.str_list("values"),
        description: t.str("description"),
        example: t.node("example").cloned(),
        name: typed(Some(name), sink, types::parse_ident)?,
    };
    t.finish();
    Some(d)
}

/// `[collect]`: (scrapes metrics, rules path, delivers alerts).
pub(super) fn collect(mut t: TableReader<'_>, sink: &Sink) -> (bool, Option<Sp<String>>, bool) {
    let m = t.bool("metrics").is_some_and(|b| b.value);
    let rules = absolute(t.str("rules"), sink);
    let alerts = t.bool("alerts").is_some_and(|b| b.value);
    t.finish();
    (m, rules, alerts)
}
