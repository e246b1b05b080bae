//! `host-network-shared`: several containers on one host in the host's network namespace.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;

pub const RULE: Rule = Rule {
    id: "host-network-shared",
    summary: "host networking with several containers",
    explanation: "A container with `network_mode = \"host\"` binds the host's own interfaces: kiln \
cannot publish, isolate or firewall its ports per service, and two such containers share one \
port space and one loopback, where any of them can talk to the other's admin ports. One \
host-networked agent (an exporter that must see the host's interfaces) is a known exception; \
several are a design that bridges would serve.",
    allowable: true,
    check,
};

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for h in sys.hosts.values() {
        let shared: Vec<&str> = h
            .services
            .iter()
            .filter(|n| sys.services[*n].container.as_ref().is_some_and(|c| c.network_mode.as_deref() == Some("host")))
            .map(String::as_str)
            .collect();
        if shared.len() < 2 {
            continue;
        }
        for n in &shared[1..] {
            let s = &sys.services[*n];
            out.push(
                Diagnostic::error(RULE.id, format!("`{}` and `{n}` both use host networking on host `{}`", shared[0], h.name))
                    .primary(s.span, "a second container in the host's network namespace")
                    .secondary(sys.services[shared[0]].span, "the first")
                    .help("give the containers bridges, or keep one host-networked agent per host")
                    .about("services", *n),
            );
        }
    }
    out
}
