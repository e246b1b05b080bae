//! `[module]`, `[options.NAME]` and `[collect]`: what a module is, what it takes, what it gathers.

use super::strings::{absolute, bad};
use super::{FromRoute, ModuleKind, OptType, OptionDecl};
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
    // A part kiln does not know drops the option, as a type it does not know does: a service
    // is not told to write a value the module meant to derive.
    let from_route = match t.str("from_route") {
        Some(part) => Some(typed(Some(part), sink, |s| match s {
            "url" => Ok(FromRoute::Url),
            "hostname" => Ok(FromRoute::Hostname),
            _ => Err(one_of(s, "route part", &["url", "hostname"])),
        })?),
        None => None,
    };
    let d = OptionDecl {
        ty,
        default: t.node("default").cloned(),
        from_route,
        values: t.str_list("values"),
        description: t.str("description"),
        example: t.node("example").cloned(),
        name: typed(Some(name), sink, types::parse_ident)?,
    };
    t.finish();
    // One that cannot take the route's part is dropped, as one of an unknown type is: no value
    // of the wrong type reaches a template, and the one mistake is reported once.
    if let Some(f) = &d.from_route
        && !from_route_fits(&d, f, sink)
    {
        return None;
    }
    Some(d)
}

/// A route's URL is a `string`, its hostname a `domain` or a `string`; and an option that comes
/// from the route has no default of its own (which of the two would win is not for a reader to
/// guess). Whether it fits; each reason it does not is reported.
fn from_route_fits(d: &OptionDecl, f: &Sp<FromRoute>, sink: &Sink) -> bool {
    let fits = match f.value {
        FromRoute::Url => d.ty.value == OptType::String,
        FromRoute::Hostname => matches!(d.ty.value, OptType::String | OptType::Domain),
    };
    if !fits {
        sink.push(
            crate::diag::Diagnostic::error(
                "E0003",
                format!("option `{}` of type `{}` cannot take the route's {}", d.name.value, d.ty.value.name(), f.value.name()),
            )
            .primary(f.span, "the route's part")
            .secondary(d.ty.span, "type declared here")
            .help("a route's `url` fits a `string` option, its `hostname` a `domain` or a `string` one"),
        );
    }
    if let Some(default) = &d.default {
        sink.push(
            crate::diag::Diagnostic::error("E0003", format!("option `{}` has both a default and `from_route`", d.name.value))
                .primary(default.span, "a default")
                .secondary(f.span, "and the route's part")
                .help("keep one: a service without a route then needs the option written"),
        );
    }
    fits && d.default.is_none()
}

/// `[collect]`: (scrapes metrics, rules path, delivers alerts).
pub(super) fn collect(mut t: TableReader<'_>, sink: &Sink) -> (bool, Option<Sp<String>>, bool) {
    let m = t.bool("metrics").is_some_and(|b| b.value);
    let rules = absolute(t.str("rules"), sink);
    let alerts = t.bool("alerts").is_some_and(|b| b.value);
    t.finish();
    (m, rules, alerts)
}
