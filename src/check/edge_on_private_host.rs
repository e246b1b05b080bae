//! `edge-on-private-host`: a route is only reachable if its edge runs on a host with a public
//! address.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;

pub const RULE: Rule = Rule {
    id: "edge-on-private-host",
    summary: "a public port on a host with no public address",
    explanation: "Routes open ports 80 and 443 on the host of the edge proxy that terminates them. \
A host declared without `public = true` has no public address, so those ports can never be \
reached from outside: the route would be dead on arrival.",
    check,
};

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    sys.routes
        .iter()
        .filter(|r| !sys.hosts[&r.edge_host].public)
        .map(|r| {
            Diagnostic::error(
                RULE.id,
                format!("route `{}` is terminated on host `{}`, which has no public address", r.hostname, r.edge_host),
            )
            .primary(r.span, "this route needs a public edge")
            .secondary(sys.hosts[&r.edge_host].span, "not public")
            .help(format!("set `public = true` on host `{}` or place the edge on a public host", r.edge_host))
        })
        .collect()
}
