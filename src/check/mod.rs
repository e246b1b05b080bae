//! Check: policy and compatibility rules over the resolved model, one rule per file, each with
//! a stable id and an explanation (`kiln explain ID`). A system waives a rule for named hosts,
//! services or routes with `[allow.RULE]` and a written reason; only rules marked `allowable`
//! can be waived. The language's error codes (`E0001`…) are explained in `codes.rs`.

mod alerts_without_receiver;
mod backup_without_credentials;
mod cdn_proxied_non_http;
mod codes;
mod cpus_over_server;
mod data_on_root_disk;
mod dns01_without_credentials;
mod docker_socket_web;
mod fail2ban_behind_cdn;
mod host_network_shared;
mod memory_over_limit;
mod no_egress;
mod password_ssh;
mod pgbouncer_prepared_statements;
mod port_conflict;
mod proxied_untrusted_origin;
mod public_first_run_setup;
mod public_port_private_host;
mod route_connection;
mod tls_unspoken;
mod unpinned_image;
mod valkey_evicting_queue;
mod zone_crossing;

use crate::diag::{Diagnostic, Span};
use crate::load::Inputs;
use crate::model::System;

pub struct Rule {
    pub id: &'static str,
    pub summary: &'static str,
    pub explanation: &'static str,
    /// Whether `[allow.ID]` may waive it: policy, not correctness.
    pub allowable: bool,
    pub check: fn(&System, &Inputs) -> Vec<Diagnostic>,
}

pub const RULES: &[&Rule] = &[
    &alerts_without_receiver::RULE,
    &backup_without_credentials::RULE,
    &cdn_proxied_non_http::RULE,
    &cpus_over_server::RULE,
    &data_on_root_disk::RULE,
    &dns01_without_credentials::RULE,
    &docker_socket_web::RULE,
    &fail2ban_behind_cdn::RULE,
    &host_network_shared::RULE,
    &no_egress::RULE,
    &memory_over_limit::RULE,
    &password_ssh::RULE,
    &pgbouncer_prepared_statements::RULE,
    &port_conflict::RULE,
    &public_first_run_setup::RULE,
    &proxied_untrusted_origin::RULE,
    &public_port_private_host::RULE,
    &route_connection::RULE,
    &tls_unspoken::RULE,
    &unpinned_image::RULE,
    &valkey_evicting_queue::RULE,
    &zone_crossing::RULE,
];

/// A rule's id (or an error code) and its explanation, whether it runs here or where its
/// knowledge is.
#[derive(Clone, Copy, Debug)]
pub struct Explanation {
    pub id: &'static str,
    pub summary: &'static str,
    pub explanation: &'static str,
    pub allowable: bool,
}

/// Rules reported by the phases that know what they need: the resolver (references, addresses,
/// wildcards), the evaluator (start order) and the pipeline (the size of rendered user-data).
const ELSEWHERE: &[Explanation] = &[
    Explanation {
        id: "address-outside-network",
        summary: "a host address outside its network, or its network or broadcast address",
        explanation: "A host's address on a private network must lie inside the network's CIDR and \
may not be the network's own address or its broadcast address. The provider refuses such an \
attachment, or the host boots unreachable. (resolve)",
        allowable: false,
    },
    Explanation {
        id: "address-reused",
        summary: "one address given to two hosts",
        explanation: "Two hosts with the same private address make the network's routing ambiguous: \
the provider refuses the second attachment, or connections reach the wrong server. Every address \
in the system is used once. (resolve)",
        allowable: false,
    },
    Explanation {
        id: "dependency-cycle",
        summary: "services that connect to each other in a circle",
        explanation: "Each service starts after the services it connects to, so connections must form \
no cycle: a → b → a could never start. The error names every service on the cycle; one of those \
connections must go (often the reverse direction is a callback that needs no start order). (evaluate)",
        allowable: false,
    },
    Explanation {
        id: "duplicate-route",
        summary: "two routes for one hostname",
        explanation: "An edge answers each hostname with one route. Two declarations of the same \
hostname (in two files, or stamped out twice by a template) would make one silently win. \
(resolve)",
        allowable: false,
    },
    Explanation {
        id: "module-override",
        summary: "a `--modules` module replaces a built-in one (a note)",
        explanation: "A module in a `--modules` directory with the name of a built-in module \
replaces it for the whole system: every service naming that module runs the local copy, with \
its options, image and templates, and none gets the built-in one's fixes. That is how a fork \
adds an option, and it is allowed; kiln says so at build and check, and `kiln show` lists the \
services running a local module, so a stale fork is not forgotten. To keep both, give the local \
module another name. (resolve)",
        allowable: false,
    },
    Explanation {
        id: "port-assigned",
        summary: "kiln published a container endpoint on another host port (a note)",
        explanation: "Two instances of one module on a host (two Valkeys, two exporters) listen on the \
same container port. A container keeps its own port; what must differ is the port it is published \
on. When a published container endpoint's host port is already taken on the host (by an earlier \
service by name, a native service, an edge's 80/443 or ssh), kiln publishes it on the next free \
port above and everything that reaches it follows: clients on other hosts dial that port \
(`requires.SLOT.port`), an edge's upstream uses it, and the firewall opens it. Ports chosen by the \
module (`host_port`), by the system (`ports = { ENDPOINT = N }`) or exposed to the internet never \
move; two of those on one port are a `port-conflict`. The note names the line that pins the \
assigned port, so adding a service later does not move it. (resolve)",
        allowable: false,
    },
    Explanation {
        id: "phase-order",
        summary: "a service connects to one in a later start phase",
        explanation: "Services start phase by phase (`phase = N`, 0 first), each phase up and healthy \
before the next. A service that connects to one in a later phase would wait for something that \
has not started yet. Move one of them. (evaluate)",
        allowable: false,
    },
    Explanation {
        id: "public-slot-unrouted",
        summary: "a slot whose service browsers load from, filled by a service without a route",
        explanation: "Some connections hand the connected service's public URL to browsers: \
Nextcloud's ONLYOFFICE app loads the document server's editors in the user's browser. The \
module says so with `[requires.SLOT] public = true`, and its templates read \
`requires.SLOT.public_url`, the service's first route. Filled by a service with no route, the \
client is configured without it and the feature cannot work: add a `[routes]` entry for the \
service. (resolve)",
        allowable: true,
    },
    Explanation {
        id: "secret-file-missing",
        summary: "a secret file that does not exist",
        explanation: "A `[secrets.NAME]` names a file next to the system that is not there. The \
build can still run — artifacts hold only references — but nothing could deliver the value, \
and a typo in the path would only show at deploy time. Create the file (sops, or `kiln \
encrypt-secrets`) and commit it: it is encrypted. (load)",
        allowable: false,
    },
    Explanation {
        id: "unauthenticated-secrets",
        summary: "a secret file that cannot be read or authenticated",
        explanation: "kiln reads SOPS files (YAML, JSON, dotenv) and plain age files. With \
`--identity`, it decrypts each one and verifies the SOPS MAC over every value: a file that was \
edited without sops, truncated, or encrypted for other keys is refused rather than half-used, \
since a tampered secrets file could swap one value for another. Re-encrypt it with sops. (load)",
        allowable: false,
    },
    Explanation {
        id: "undefined-secret",
        summary: "a secret referenced but not defined",
        explanation: "A service names a secret that no `[secrets.NAME]` declares, or that its file \
does not contain. The host would boot without the value, and the service would fail at its \
first start, far from the build that could have said so. (resolve)",
        allowable: false,
    },
    Explanation {
        id: "unscraped-metrics",
        summary: "a metrics endpoint the collector cannot reach",
        explanation: "A Prometheus-like collector (`[collect] metrics = true`) scrapes every metrics \
endpoint in the system over the private network, or over a common bridge on its own host. A \
service it cannot reach is reported so the coverage is never silently incomplete. (resolve)",
        allowable: true,
    },
    Explanation {
        id: "unused-allow",
        summary: "an `[allow.RULE]` that waives nothing",
        explanation: "An allowance names the hosts, services or routes a rule is waived for. When the \
rule no longer fires for one of them — the problem was fixed, or the name changed — the \
exception is stale: left in place it would silently waive the rule again the day someone \
reintroduces the problem. Remove the name from the allowance. (check)",
        allowable: false,
    },
    Explanation {
        id: "user-data-too-large",
        summary: "a host's user-data over its provider's limit",
        explanation: "Providers cap user-data (Hetzner 32,768 bytes, DigitalOcean and Azure 64 KiB, \
AWS 16 KiB). A server created with more is refused, or boots without its configuration. Set \
`store = \"https://…\"` in `[system]`: a host over the limit then boots a small stage-0 \
user-data that downloads its bundle from the store by sha256, verifies it and runs it. (pipeline)",
        allowable: false,
    },
    Explanation {
        id: "wildcard-http01",
        summary: "a wildcard certificate requested over HTTP-01",
        explanation: "Let's Encrypt issues wildcard certificates only through the DNS-01 challenge: \
HTTP-01 proves control of one hostname at a time. A wildcard route must say `tls = \"dns\"` \
and run on an edge with DNS credentials (Traefik with the zone's provider token). (resolve)",
        allowable: false,
    },
];

/// Every rule, sorted by id.
pub fn explanations() -> Vec<Explanation> {
    let mut v: Vec<Explanation> =
        RULES.iter().map(|r| Explanation { id: r.id, summary: r.summary, explanation: r.explanation, allowable: r.allowable }).collect();
    v.extend(ELSEWHERE.iter().map(|e| Explanation { id: e.id, summary: e.summary, explanation: e.explanation, allowable: e.allowable }));
    v.sort_by_key(|e| e.id);
    v
}

/// Every rule, sorted by id, then every error code: what `kiln explain` lists and explains.
pub fn everything() -> Vec<Explanation> {
    let mut v = explanations();
    v.extend(codes::CODES.iter().copied());
    v
}

/// The explanation of one rule or error code (`e0005` is `E0005`).
pub fn explain(id: &str) -> Option<Explanation> {
    everything().into_iter().find(|e| e.id.eq_ignore_ascii_case(id))
}

pub fn run(sys: &System, inputs: &Inputs) -> Vec<Diagnostic> {
    RULES.iter().flat_map(|r| (r.check)(sys, inputs)).collect()
}

/// Drops the diagnostics an `[allow.RULE]` waives; an allowance that waives nothing is a
/// warning, so stale exceptions do not accumulate.
pub fn apply_allows(sys: &System, diags: Vec<Diagnostic>, report_unused: bool) -> Vec<Diagnostic> {
    let mut used: Vec<(usize, &'static str, String)> = Vec::new();
    let mut out: Vec<Diagnostic> = diags
        .into_iter()
        .filter(|d| {
            let Some((kind, name)) = &d.subject else { return true };
            let hit = sys.allows.iter().position(|a| a.rule == d.code && a.names(kind).contains(name));
            match hit {
                Some(i) => {
                    used.push((i, kind, name.clone()));
                    false
                }
                None => true,
            }
        })
        .collect();
    if !report_unused {
        return out;
    }
    for (i, a) in sys.allows.iter().enumerate() {
        for kind in ["hosts", "services", "routes"] {
            for n in a.names(kind) {
                if !used.iter().any(|(j, k, m)| *j == i && *k == kind && m == n) {
                    out.push(unused(a.span, &a.rule, kind, n));
                }
            }
        }
    }
    out
}

fn unused(span: Span, rule: &str, kind: &str, name: &str) -> Diagnostic {
    Diagnostic::warning(
        "unused-allow",
        format!("`[allow.{rule}]` names {} `{name}`, but the rule does not fire for it", kind.trim_end_matches('s')),
    )
    .primary(span, "nothing to allow")
    .help(format!("remove `{name}` from the allowance"))
}

/// The service names routed to from an edge (the ones the internet reaches through it).
pub fn routed(sys: &System) -> std::collections::BTreeSet<&str> {
    sys.routes.iter().map(|r| r.service.as_str()).collect()
}
