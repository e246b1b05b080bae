//! `fail2ban-behind-cdn`: fail2ban on an edge whose traffic arrives from a CDN it does not trust.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;

pub const RULE: Rule = Rule {
    id: "fail2ban-behind-cdn",
    summary: "fail2ban behind a CDN without trusted proxies",
    explanation: "Behind a proxying CDN every request reaches the edge from the CDN's addresses. \
Unless the edge trusts the CDN's ranges and logs the client address it forwards, fail2ban sees a \
handful of CDN addresses, bans them after a few failed logins, and takes the site down for \
everyone. `fail2ban_http` bans by the address in the edge's access log, so it is safe only \
where that address is the client's: routes that are not proxied, or a CDN the edge trusts \
(`[cdn] provider = \"cloudflare\"`) with an edge that logs the forwarded client address \
(Caddy 2.7 and later; Debian's Caddy 2.6 logs the CDN's).",
    allowable: true,
    check,
};

/// Whether the edges on `host` log the client address a trusted CDN forwards.
fn logs_forwarded_client(sys: &System, host: &str) -> bool {
    sys.cdn.is_some()
        && sys
            .services
            .values()
            .filter(|s| s.host == host && s.edge.is_some())
            .all(|s| s.edge.as_deref() == Some("caddy") && crate::types::major_minor(&s.module_version).is_some_and(|v| v >= (2, 7)))
}

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    sys.hosts
        .values()
        .filter(|h| h.fail2ban_http && !logs_forwarded_client(sys, &h.name))
        .filter_map(|h| {
            let r = sys.routes.iter().find(|r| r.edge_host == h.name && super::cdn_proxied_non_http::proxied(sys, &r.hostname))?;
            Some(
                Diagnostic::error(
                    RULE.id,
                    format!("host `{}` bans HTTP clients with fail2ban, but its routes arrive through a CDN and its log holds the CDN's address", h.name),
                )
                .primary(h.span, "fail2ban would ban the CDN")
                .secondary(r.span, "proxied by the CDN")
                .help("declare `[cdn] provider = \"cloudflare\"` so the edge trusts the CDN's ranges")
                .about("hosts", &h.name),
            )
        })
        .collect()
}
