//! `[certificates.NAME]`: one TLS certificate (its names, wildcards included, and how it is
//! validated) that the routes it covers share, instead of one certificate per route.

use crate::diag::Span;
use crate::syntax::decode::{Sink, Sp, TableReader, typed};
use crate::syntax::system::{ProviderKind, one_of};
use crate::types;

/// One `[certificates.NAME]` as written.
#[derive(Debug)]
pub struct CertificateDecl {
    pub name: Sp<String>,
    pub span: Span,
    /// The names the certificate holds, the first its subject (`main`), in order.
    pub names: Vec<Sp<String>>,
    /// The DNS provider that answers the DNS-01 challenge; absent, HTTP-01 (no wildcard then).
    pub dns01: Option<Sp<ProviderKind>>,
    /// `dns01` is written (though maybe not a DNS provider: that type error is the only one).
    pub dns01_written: bool,
    /// The edge service that requests and serves it (optional with one edge in the system).
    pub edge: Option<Sp<String>>,
}

/// The DNS providers that can answer a DNS-01 challenge (every provider kind that hosts zones).
pub const DNS_PROVIDERS: [&str; 4] = ["hetzner", "digitalocean", "scaleway", "cloudflare"];

fn parse_dns_provider(s: &str) -> Result<ProviderKind, types::TypeError> {
    match ProviderKind::parse(s) {
        Ok(k) if DNS_PROVIDERS.contains(&k.name()) => Ok(k),
        _ => Err(one_of(s, "DNS provider", &DNS_PROVIDERS)),
    }
}

/// Reads every `[certificates.NAME]` of a file's root table.
pub fn read(root: &mut TableReader<'_>, sink: &Sink) -> Vec<CertificateDecl> {
    root.named("certificates", |name, mut t| {
        if t.table.get("names").is_none() {
            t.missing("names", "[\"example.org\", \"*.example.org\"]");
        }
        let names = t.str_list("names").into_iter().filter_map(|s| typed(Some(s), sink, |s| types::parse_domain(s, true))).collect();
        let dns01 = t.str("dns01");
        let d = CertificateDecl {
            span: t.span,
            names,
            dns01_written: dns01.is_some(),
            dns01: typed(dns01, sink, parse_dns_provider),
            edge: t.str("edge"),
            name: typed(Some(name), sink, types::parse_ident)?,
        };
        t.finish();
        Some(d)
    })
}

/// Whether a certificate name covers a hostname: the same name, or a wildcard `*.Z` and a
/// hostname one label under Z (a wildcard covers one label only, RFC 6125 §6.4.3).
pub fn covers(name: &str, hostname: &str) -> bool {
    if name.eq_ignore_ascii_case(hostname) {
        return true;
    }
    match (name.strip_prefix("*."), hostname.split_once('.')) {
        (Some(zone), Some((label, rest))) => label != "*" && !label.is_empty() && rest.eq_ignore_ascii_case(zone),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn a_wildcard_covers_one_label() {
        assert!(covers("example.org", "example.org"));
        assert!(covers("*.example.org", "git.example.org"));
        assert!(covers("*.example.org", "*.example.org"));
        assert!(!covers("*.example.org", "example.org"));
        assert!(!covers("*.example.org", "a.b.example.org"));
        assert!(!covers("example.org", "git.example.org"));
        assert!(!covers("*.example.org", "*.b.example.org"));
    }
}
