//! Check: policy and compatibility rules over the resolved model, one rule per file, each with
//! a stable id and an explanation (`kiln explain ID`).

mod edge_on_private_host;
mod port_conflict;
mod unpinned_image;

use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;

pub struct Rule {
    pub id: &'static str,
    pub summary: &'static str,
    pub explanation: &'static str,
    pub check: fn(&System, &Inputs) -> Vec<Diagnostic>,
}

pub const RULES: &[&Rule] = &[&edge_on_private_host::RULE, &port_conflict::RULE, &unpinned_image::RULE];

/// A rule's id and its explanation, whether it runs here or where its knowledge is.
pub struct Explanation {
    pub id: &'static str,
    pub summary: &'static str,
    pub explanation: &'static str,
}

/// Rules reported by other phases, which know what they need: the resolver (wildcards and
/// TLS modes) and the pipeline (the size of rendered user-data).
const ELSEWHERE: &[Explanation] = &[
    Explanation {
        id: "user-data-too-large",
        summary: "a host's user-data over its provider's limit",
        explanation: "Providers cap user-data (Hetzner 32,768 bytes, DigitalOcean and Azure 64 KiB, \
AWS 16 KiB). A server created with more is refused, or boots without its configuration. Set \
`store = \"https://…\"` in `[system]`: a host over the limit then boots a small stage-0 \
user-data that downloads its bundle from the store by sha256, verifies it and runs it.",
    },
    Explanation {
        id: "wildcard-http01",
        summary: "a wildcard certificate requested over HTTP-01",
        explanation: "Let's Encrypt issues wildcard certificates only through the DNS-01 challenge: \
HTTP-01 proves control of one hostname at a time. A wildcard route must say `tls = \"dns\"` \
and run on an edge with DNS credentials (Traefik with the zone's provider token).",
    },
];

/// Every rule, sorted by id.
pub fn explanations() -> Vec<Explanation> {
    let mut v: Vec<Explanation> = RULES.iter().map(|r| Explanation { id: r.id, summary: r.summary, explanation: r.explanation }).collect();
    v.extend(ELSEWHERE.iter().map(|e| Explanation { id: e.id, summary: e.summary, explanation: e.explanation }));
    v.sort_by_key(|e| e.id);
    v
}

pub fn run(sys: &System, inputs: &Inputs) -> Vec<Diagnostic> {
    RULES.iter().flat_map(|r| (r.check)(sys, inputs)).collect()
}
