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
service in an accepted zone, or add the zone to `accepts` deliberately (a host in no zone is \
first given one). The connection itself is already routable when this rule runs — two hosts \
with no private network in common are refused earlier (E0032) — so accepting the zone is all \
it takes: kiln then opens exactly that port to exactly that host.",
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

/// Where the refused traffic comes from: a zone (`public`: the internet), or a host in none.
#[derive(Clone, Copy)]
enum Source<'a> {
    Zone(&'a str),
    Unzoned(&'a str),
}

impl<'a> Source<'a> {
    fn of(sys: &'a System, host: &'a str) -> Source<'a> {
        zone(sys, host).map_or(Source::Unzoned(host), Source::Zone)
    }
    fn zone(self) -> Option<&'a str> {
        match self {
            Source::Zone(z) => Some(z),
            Source::Unzoned(_) => None,
        }
    }
}

/// `opens`: what accepting the traffic makes kiln open (`5432/tcp on host `db` to host `app``).
fn diag(what: String, span: Span, from: Source<'_>, to: &str, accepts: &[String], opens: &str) -> Diagnostic {
    let list = if accepts.is_empty() {
        "nothing outside itself".to_string()
    } else {
        accepts.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
    };
    let (label, help) = match from {
        Source::Zone(f) => (
            format!("from zone `{f}`"),
            format!(
                "if `{f}` may reach `{to}`, add `\"{f}\"` to `[zones.{to}] accepts`: kiln then opens {opens} only; otherwise go through a service in an accepted zone"
            ),
        ),
        Source::Unzoned(h) if accepts.is_empty() => (
            format!("from host `{h}`, in no zone"),
            format!(
                "put host `{h}` in a zone (`[hosts.{h}] zone = \"…\"`) and add that zone to `[zones.{to}] accepts`: kiln then opens {opens} only"
            ),
        ),
        Source::Unzoned(h) => (
            format!("from host `{h}`, in no zone"),
            format!(
                "put host `{h}` in an accepted zone (`[hosts.{h}] zone = \"{}\"`): kiln then opens {opens} only",
                accepts.iter().find(|a| *a != "public").map_or("…", String::as_str)
            ),
        ),
    };
    Diagnostic::error(RULE.id, what).primary(span, label).note(format!("zone `{to}` accepts {list}")).help(help)
}

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for s in sys.services.values() {
        // A connection through a public route comes in from the internet, as the route's zone
        // accepts (checked with the routes below).
        for d in s.deps.iter().filter(|d| d.route.is_none()) {
            let Some(t) = sys.services.get(&d.service) else { continue };
            if t.host == s.host {
                continue;
            }
            let (from, to) = (Source::of(sys, &s.host), zone(sys, &t.host));
            if let Some(acc) = refused(sys, from.zone(), to) {
                let what = format!("`{}` on `{}` reaches `{}` in zone `{}`", s.name, s.host, t.name, to.unwrap_or_default());
                let opens = format!("{}/{} on host `{}` to host `{}`", d.port, d.protocol.name(), t.host, s.host);
                out.push(diag(what, d.span, from, to.unwrap_or_default(), acc, &opens).about("services", &s.name));
            }
        }
        if !s.expose.is_empty()
            && let Some(acc) = refused(sys, Some("public"), zone(sys, &s.host))
        {
            let to = zone(sys, &s.host).unwrap_or_default();
            let what = format!("`{}` exposes {} to the internet from zone `{to}`", s.name, s.expose.join(", "));
            let opens = format!("{} on host `{}` to the internet", s.expose.join(", "), s.host);
            out.push(diag(what, s.span, Source::Zone("public"), to, acc, &opens).about("services", &s.name));
        }
    }
    for r in &sys.routes {
        if let Some(acc) = refused(sys, Some("public"), zone(sys, &r.edge_host)) {
            let to = zone(sys, &r.edge_host).unwrap_or_default();
            let what = format!("route `{}` is served from zone `{to}`, which does not accept the internet", r.hostname);
            let opens = format!("the edge's HTTP(S) ports on host `{}` to the internet", r.edge_host);
            out.push(diag(what, r.span, Source::Zone("public"), to, acc, &opens).about("routes", &r.hostname));
        }
        let Some(up) = sys.services.get(&r.service) else { continue };
        if up.host == r.edge_host {
            continue;
        }
        let (from, to) = (Source::of(sys, &r.edge_host), zone(sys, &up.host));
        if let Some(acc) = refused(sys, from.zone(), to) {
            let what = format!("route `{}` reaches `{}` in zone `{}` from the edge", r.hostname, up.name, to.unwrap_or_default());
            let port = r.upstream.rsplit(':').next().unwrap_or_default();
            let opens = format!("{port}/tcp on host `{}` to the edge's host `{}`", up.host, r.edge_host);
            out.push(diag(what, r.span, from, to.unwrap_or_default(), acc, &opens).about("routes", &r.hostname));
        }
    }
    // A stream: its port on the edge from the internet, its endpoint from the edge.
    for st in &sys.streams {
        let port = format!("{}/{}", st.port, st.protocol.name());
        if let Some(acc) = refused(sys, Some("public"), zone(sys, &st.edge_host)) {
            let to = zone(sys, &st.edge_host).unwrap_or_default();
            let what = format!("stream `{}` is served from zone `{to}`, which does not accept the internet", st.name);
            let opens = format!("{port} on host `{}` to the internet", st.edge_host);
            out.push(diag(what, st.span, Source::Zone("public"), to, acc, &opens).about("services", &st.service));
        }
        let Some(up) = sys.services.get(&st.service) else { continue };
        if up.host == st.edge_host {
            continue;
        }
        let (from, to) = (Source::of(sys, &st.edge_host), zone(sys, &up.host));
        if let Some(acc) = refused(sys, from.zone(), to) {
            let what = format!("stream `{}` reaches `{}` in zone `{}` from the edge", st.name, up.name, to.unwrap_or_default());
            let upstream = st.upstream.rsplit(':').next().unwrap_or_default();
            let opens = format!("{upstream}/{} on host `{}` to the edge's host `{}`", st.protocol.name(), up.host, st.edge_host);
            out.push(diag(what, st.span, from, to.unwrap_or_default(), acc, &opens).about("services", &st.service));
        }
    }
    out
}
