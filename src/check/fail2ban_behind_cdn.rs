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
everyone. Declare `[cdn] provider = \"cloudflare\"`: kiln then makes the edge trust exactly the \
CDN's ranges, so logs (and bans) carry the real client address.",
    allowable: true,
    check,
};

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    if sys.cdn.is_some() {
        return Vec::new();
    }
    sys.hosts
        .values()
        .filter(|h| h.fail2ban_http)
        .filter_map(|h| {
            let r = sys.routes.iter().find(|r| r.edge_host == h.name && super::cdn_proxied_non_http::proxied(sys, &r.hostname))?;
            Some(
                Diagnostic::error(
                    RULE.id,
                    format!("host `{}` bans HTTP clients with fail2ban, but its routes arrive through a CDN it does not trust", h.name),
                )
                .primary(h.span, "fail2ban would ban the CDN")
                .secondary(r.span, "proxied by the CDN")
                .help("declare `[cdn] provider = \"cloudflare\"` so the edge trusts the CDN's ranges")
                .about("hosts", &h.name),
            )
        })
        .collect()
}
