//! `zone-crossing`: a service reached from a trust zone its own zone does not accept.

use super::Rule;
use crate::diag::{Diagnostic, Span};
use crate::load::Inputs;
use crate::model::System;

pub const RULE: Rule = Rule {
    id: "zone-crossing",
    summary: "a service reachable from outside its trust zone",
    explanation: "Zones group hosts by trust (`dmz`, `private`, `management`). A zone that lists \
`accepts = [...]` may be reached only from those zones (and `public`, the internet, only if \
listed). A connection, a route's upstream or an exposed port from anywhere else would punch a \
hole kiln's firewall derivation would otherwise open silently. Route the traffic through a \
service in an accepted zone, or add the zone to `accepts` deliberately.",
    allowable: true,
    check,
};

fn zone<'a>(sys: &'a System, host: &str) -> Option<&'a str> {
    sys.hosts.get(host).and_then(|h| h.zone.as_deref())
}

/// `Some(accepted list)` when `to` refuses traffic from `from`.
fn refused<'a>(sys: &'a System, from: Option<&str>, to: Option<&str>) -> Option<&'a [String]> {
    let to_name = to?;
    let accepts = sys.zones.get(to_name)?.accepts.as_deref()?;
    if from == Some(to_name) || from.is_some_and(|f| accepts.iter().any(|a| a == f)) {
        return None;
    }
    Some(accepts)
}

fn diag(what: String, span: Span, from: Option<&str>, to: &str, accepts: &[String]) -> Diagnostic {
    let list = if accepts.is_empty() { "nothing outside itself".to_string() } else { accepts.join(", ") };
    Diagnostic::error(RULE.id, what)
        .primary(span, format!("from {}", from.map(|f| format!("zone `{f}`")).unwrap_or_else(|| "a host in no zone".into())))
        .note(format!("zone `{to}` accepts {list}"))
        .help(format!("go through a service in an accepted zone, or add the zone to `[zones.{to}] accepts`"))
}

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for s in sys.services.values() {
        for d in &s.deps {
            let Some(t) = sys.services.get(&d.service) else { continue };
            if t.host == s.host {
                continue;
            }
            let (from, to) = (zone(sys, &s.host), zone(sys, &t.host));
            if let Some(acc) = refused(sys, from, to) {
                let what = format!("`{}` on `{}` reaches `{}` in zone `{}`", s.name, s.host, t.name, to.unwrap_or_default());
                out.push(diag(what, d.span, from, to.unwrap_or_default(), acc).about("services", &s.name));
            }
        }
        if !s.expose.is_empty()
            && let Some(acc) = refused(sys, Some("public"), zone(sys, &s.host))
        {
            let to = zone(sys, &s.host).unwrap_or_default();
            let what = format!("`{}` exposes {} to the internet from zone `{to}`", s.name, s.expose.join(", "));
            out.push(diag(what, s.span, Some("public"), to, acc).about("services", &s.name));
        }
    }
    for r in &sys.routes {
        if let Some(acc) = refused(sys, Some("public"), zone(sys, &r.edge_host)) {
            let to = zone(sys, &r.edge_host).unwrap_or_default();
            let what = format!("route `{}` is served from zone `{to}`, which does not accept the internet", r.hostname);
            out.push(diag(what, r.span, Some("public"), to, acc).about("routes", &r.hostname));
        }
        let Some(up) = sys.services.get(&r.service) else { continue };
        if up.host == r.edge_host {
            continue;
        }
        let (from, to) = (zone(sys, &r.edge_host), zone(sys, &up.host));
        if let Some(acc) = refused(sys, from, to) {
            let what = format!("route `{}` reaches `{}` in zone `{}` from the edge", r.hostname, up.name, to.unwrap_or_default());
            out.push(diag(what, r.span, from, to.unwrap_or_default(), acc).about("routes", &r.hostname));
        }
    }
    out
}
