//! `proxied-untrusted-origin`: a route in a Cloudflare-proxied zone whose edge serves a
//! certificate Cloudflare's "strict" SSL mode rejects.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;
use crate::syntax::system::{ProviderKind, TlsMode};

pub const RULE: Rule = Rule {
    id: "proxied-untrusted-origin",
    summary: "a route in a Cloudflare-proxied zone served with a certificate Cloudflare cannot verify",
    explanation: "kiln sets every Cloudflare zone with a proxied record to SSL mode \"strict\" \
(`cloudflare_zone_setting` `ssl`): Cloudflare then connects to the origin over HTTPS and verifies \
its certificate. The weaker modes fail in other ways: \"flexible\" speaks plain HTTP to an edge that \
redirects every HTTP request to HTTPS, so visitors loop on redirects, and \"full\" accepts any \
certificate, so the leg between Cloudflare and the edge can be intercepted. \"Strict\" accepts only a \
publicly trusted certificate (or a Cloudflare Origin CA one); a route with `tls = \"internal\"` is served \
with the edge's own local CA, which Cloudflare rejects with error 526 on every request. Use \
`tls = \"acme\"` (HTTP-01 passes through the proxy) or `tls = \"dns\"`, or put the name in a zone that \
is not proxied.",
    allowable: false,
    check,
};

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for r in sys.routes.iter().filter(|r| r.tls == TlsMode::Internal) {
        let Some(z) = sys.zone_of(&r.hostname).filter(|z| z.proxied && z.provider_kind == ProviderKind::Cloudflare) else {
            continue;
        };
        out.push(
            Diagnostic::error(
                RULE.id,
                format!(
                    "route `{}` is served with `{}`'s local CA, but zone `{}` is proxied by Cloudflare in strict SSL mode",
                    r.hostname, r.edge_service, z.zone
                ),
            )
            .primary(r.span, "tls = \"internal\": Cloudflare rejects this certificate (error 526)")
            .help("use `tls = \"acme\"` or `tls = \"dns\"`, or serve the name from a zone with `proxied = false`")
            .about("routes", &r.hostname),
        );
    }
    out
}
