//! `dns01-without-credentials`: a `tls = "dns"` route whose edge holds no credential for the
//! DNS provider of the route's zone, or a DNS-01 `[certificates.NAME]` whose edge holds none for
//! its `dns01` provider.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::{Service, System};
use crate::syntax::system::TlsMode;

pub const RULE: Rule = Rule {
    id: "dns01-without-credentials",
    summary: "a DNS-01 route whose edge has no token for the zone's DNS provider",
    explanation: "With `tls = \"dns\"` (every wildcard route needs it) the edge proves control of \
the name by writing a TXT record through the DNS provider's API, so it needs an API token for \
the provider that hosts the route's zone (`[dns.ZONE] provider`). A module declares which secret \
slot carries that token with `[secrets.SLOT] dns01 = \"PROVIDER\"` (the built-in `traefik` has \
one per provider: `cf_dns_api_token`, `hetzner_dns_token`, `digitalocean_dns_token`, \
`scaleway_dns_secret_key`, passed to lego as `*_FILE` variables). Without it the edge starts, \
asks Let's Encrypt, fails every challenge and serves its default certificate: browsers refuse \
the route. Bind the slot to a secret holding a token with DNS edit rights for the zone, or \
use `tls = \"acme\"` for a name that is not a wildcard. A `[certificates.NAME]` names its \
provider itself (`dns01 = \"PROVIDER\"`): its edge needs that provider's token.",
    allowable: false,
    check,
};

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    // A declared certificate names its provider; the routes it covers need nothing more.
    for c in sys.certificates.values() {
        let (Some(kind), Some(edge)) = (c.dns01, sys.services.get(&c.edge_service)) else { continue };
        let provider = kind.name();
        let Some((label, help)) = missing_token(edge, provider, ", or another `dns01` provider") else { continue };
        out.push(
            Diagnostic::error(
                RULE.id,
                format!("certificate `{}` is validated over DNS-01 at {provider}, but edge `{}` has no token for it", c.name, edge.name),
            )
            .primary(c.span, label)
            .secondary(edge.span, "the edge that requests the certificate")
            .help(help)
            .about("services", &edge.name),
        );
    }
    for r in sys.routes.iter().filter(|r| r.tls == TlsMode::Dns && r.certificate.is_none()) {
        let Some(edge) = sys.services.get(&r.edge_service) else { continue };
        let Some(zone) = sys.zone_of(&r.hostname) else {
            out.push(
                Diagnostic::error(RULE.id, format!("`{}` needs DNS-01, but no `[dns]` zone holds it", r.hostname))
                    .primary(r.span, "the DNS provider that must answer the challenge is unknown")
                    .help(format!("declare the zone: `[dns.\"{}\"]` with its `provider`", r.hostname.trim_start_matches("*.")))
                    .about("services", &edge.name),
            );
            continue;
        };
        let provider = zone.provider_kind.name();
        let Some((label, help)) = missing_token(edge, provider, "") else { continue };
        out.push(
            Diagnostic::error(
                RULE.id,
                format!("`{}` gets its certificate over DNS-01 at {provider}, but edge `{}` has no token for it", r.hostname, edge.name),
            )
            .primary(r.span, label)
            .secondary(edge.span, format!("the edge for zone `{}` (provider `{}`)", zone.zone, zone.provider))
            .help(help)
            .about("services", &edge.name),
        );
    }
    out
}

/// The label and help when `edge` holds no `provider` token for DNS-01 (`None` when it does):
/// an unbound slot, or a module with no slot for that provider (`alternative` ends that help).
fn missing_token(edge: &Service, provider: &str, alternative: &str) -> Option<(String, String)> {
    match edge.dns01.get(provider) {
        Some((_, Some(_))) => None,
        Some((slot, None)) => Some((
            format!("no {provider} API token is given to `{}`", edge.name),
            format!(
                "bind the slot on `{}`: `secrets = {{ {slot} = \"SECRET\" }}`, a secret holding a {provider} API token with DNS edit rights",
                edge.name
            ),
        )),
        None => Some((
            format!("module `{}` declares no DNS-01 credential for {provider}", edge.module),
            format!("use an edge whose module has a `[secrets.SLOT] dns01 = \"{provider}\"` slot{alternative}"),
        )),
    }
}
