//! `route-connection`: a connection through a public route (`connects = ["route:HOST"]`) works
//! only when the client's host can leave for the internet and the route lets it in.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::{Egress, Host, System};

pub const RULE: Rule = Rule {
    id: "route-connection",
    summary: "a connection through a public route that cannot arrive",
    explanation: "A service that connects to a route (`connects = [\"route:git.example.org\"]`, or \
`\"https://git.example.org\"`) reaches it as any client on the internet does: out through its \
host's egress (its own public address, or the NAT gateway kiln derives) to the edge's 443. kiln \
opens nothing on the route's service for it. It cannot arrive when the host has no route out \
(`egress = \"none\"`), or when the route admits only its `allow` sources and the address the \
connection leaves from is not among them (kiln knows an existing host's `address`; a cloud \
server's public address is assigned at creation, so kiln cannot admit it by itself). A route \
behind forward auth answers a program without a login session with a redirect to the sign-in \
page: serve what programs use (an API, Git over HTTPS) on a route without `auth`, or waive the \
rule where the program signs in itself.",
    allowable: true,
    check,
};

/// The public address the host's connections leave from, when kiln knows it.
fn leaves_from<'a>(sys: &'a System, h: &'a Host) -> Option<std::net::IpAddr> {
    match &h.egress {
        Egress::Via { gateway, .. } => sys.hosts.get(gateway).and_then(|g| g.address),
        _ => h.address,
    }
}

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for s in sys.services.values() {
        let Some(host) = sys.hosts.get(&s.host) else { continue };
        for d in s.deps.iter().filter(|d| d.route.is_some()) {
            let url = d.route.as_deref().unwrap_or_default();
            let Some(r) = sys.routes.iter().find(|r| r.hostname == d.address) else { continue };
            if host.egress == Egress::None {
                out.push(
                    Diagnostic::error(
                        RULE.id,
                        format!("`{}` connects to {url}, but host `{}` has no route to the internet", s.name, s.host),
                    )
                    .primary(d.span, "this leaves through the host's egress")
                    .help(format!("remove `egress = \"none\"` from host `{}`, or connect over a private network both hosts are on", s.host))
                    .about("services", &s.name),
                );
                continue;
            }
            if !r.allow.is_empty() {
                let from = leaves_from(sys, host);
                let admitted = from.is_some_and(|a| r.allow.iter().any(|c| c.contains(a)));
                if !admitted {
                    let (label, help) = match from {
                        Some(a) => (
                            format!("leaves from {a}, which route `{}` does not allow", r.hostname),
                            format!("add `\"{a}/{}\"` to `allow` of route `{}`", if a.is_ipv4() { 32 } else { 128 }, r.hostname),
                        ),
                        None => (
                            format!("kiln does not know the address host `{}` leaves from", s.host),
                            format!(
                                "route `{}` admits only its `allow` sources: give host `{}` a known `address` (an existing server) and allow it, or waive with `[allow.route-connection]` once the address is in `allow`",
                                r.hostname, s.host
                            ),
                        ),
                    };
                    out.push(
                        Diagnostic::error(RULE.id, format!("`{}` on `{}` connects to {url}, which its allow-list refuses", s.name, s.host))
                            .primary(d.span, label)
                            .secondary(r.span, "the route is declared here")
                            .help(help)
                            .about("services", &s.name),
                    );
                }
            }
            if let Some(a) = &r.auth {
                out.push(
                    Diagnostic::warning(RULE.id, format!("`{}` connects to {url}, which is behind forward auth (`{}`)", s.name, a.service))
                        .primary(d.span, "a program without a login session gets the sign-in redirect")
                        .secondary(r.span, "the route is declared here")
                        .help("serve what programs use on a route without `auth`, or waive with `[allow.route-connection]` if the program signs in itself")
                        .about("services", &s.name),
                );
            }
        }
    }
    out
}
