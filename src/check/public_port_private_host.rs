//! `public-port-private-host`: a port meant for the internet (a route's 80/443, an exposed
//! endpoint) on a host with no public address.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;

pub const RULE: Rule = Rule {
    id: "public-port-private-host",
    summary: "a public port on a host with no public address",
    explanation: "Routes open ports 80 and 443 on the host of the edge proxy that terminates them, \
and `expose` opens a service's endpoint to the internet. A host declared without `public = true` \
has no public address, so those ports can never be reached from outside: the route or endpoint \
would be dead on arrival. Place the edge (or the exposed service) on a public host, or reach the \
private host through a tunnel: routes on a host that runs `cloudflared` arrive through it and \
need no public address, when the connector shares a Compose network with the route's edge \
container (the tunnel's ingress sends each hostname to `https://<edge>:443`). A stream's port \
(`[streams.NAME]`) is on its edge host's own address: no tunnel carries it.",
    allowable: true,
    check,
};

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = sys
        .routes
        .iter()
        .filter(|r| !sys.hosts[&r.edge_host].public && crate::eval::tunnel::carrier(sys, r).is_none())
        .map(|r| {
            Diagnostic::error(
                RULE.id,
                format!("route `{}` is terminated on host `{}`, which has no public address", r.hostname, r.edge_host),
            )
            .primary(r.span, "this route needs a public edge")
            .secondary(sys.hosts[&r.edge_host].span, "not public")
            .help(match crate::eval::tunnel::connector(sys, &r.edge_host) {
                Some(c) if sys.services[&r.edge_service].container.is_none() => format!(
                    "`{}` runs on this host, but the edge `{}` is not a container: a tunnel reaches its edge on a Compose network",
                    c.name, r.edge_service
                ),
                Some(c) => format!(
                    "`{}` runs on this host but cannot reach `{}` by name: put both containers on one bridge",
                    c.name, r.edge_service
                ),
                None => format!("set `public = true` on host `{}` or place the edge on a public host", r.edge_host),
            })
            .about("routes", &r.hostname)
        })
        .collect();
    for s in sys.services.values().filter(|s| !s.expose.is_empty() && !sys.hosts[&s.host].public) {
        out.push(
            Diagnostic::error(
                RULE.id,
                format!("service `{}` exposes {} on host `{}`, which has no public address", s.name, s.expose.join(", "), s.host),
            )
            .primary(s.span, "exposed to the internet")
            .secondary(sys.hosts[&s.host].span, "not public")
            .help(format!("set `public = true` on host `{}`, or drop `expose`", s.host))
            .about("services", &s.name),
        );
    }
    // A stream's port is on the edge host's public address; no tunnel carries it.
    for st in sys.streams.iter().filter(|st| !sys.hosts[&st.edge_host].public && sys.hosts[&st.edge_host].address.is_none()) {
        out.push(
            Diagnostic::error(
                RULE.id,
                format!(
                    "stream `{}` listens on {}/{} on host `{}`, which has no public address",
                    st.name,
                    st.port,
                    st.protocol.name(),
                    st.edge_host
                ),
            )
            .primary(st.span, "this stream needs a public edge")
            .secondary(sys.hosts[&st.edge_host].span, "not public")
            .help(format!("set `public = true` on host `{}` or forward the stream on an edge of a public host", st.edge_host))
            .about("services", &st.service),
        );
    }
    out
}
