//! `cdn-proxied-non-http`: a CDN-proxied name points at a host that serves a non-HTTP port.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;

pub const RULE: Rule = Rule {
    id: "cdn-proxied-non-http",
    summary: "a CDN-proxied record for a host serving a non-HTTP port",
    explanation: "A proxied record (Cloudflare's orange cloud) resolves to the CDN's addresses, and the \
CDN forwards only HTTP and HTTPS. A client that looks up the name to reach another protocol — \
Matrix federation on 8448, a TURN or Jitsi media port, SSH for git — connects to the CDN and is \
dropped. Serve such ports under a name that is not proxied (`proxied = false` on a zone of its \
own), or through a tunnel built for the protocol. A stream (`[streams.NAME]`) is such a port: \
its `hostname` must not be proxied, and without one, neither may a route's name on its edge host.",
    allowable: true,
    check,
};

/// Whether the DNS zone holding `name` is proxied.
pub fn proxied(sys: &System, name: &str) -> bool {
    sys.zone_of(name).is_some_and(|z| z.proxied)
}

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for s in sys.services.values() {
        let odd: Vec<String> = s
            .expose
            .iter()
            .filter_map(|e| s.endpoint(e))
            .filter(|e| !e.http || e.protocol != crate::syntax::module::Protocol::Tcp)
            .map(|e| format!("{}/{}", e.port, e.protocol.name()))
            .collect();
        if odd.is_empty() {
            continue;
        }
        let Some(r) = sys.routes.iter().find(|r| r.edge_host == s.host && proxied(sys, &r.hostname)) else { continue };
        out.push(
            Diagnostic::error(
                RULE.id,
                format!(
                    "service `{}` serves {} on host `{}`, whose name `{}` is proxied by the CDN",
                    s.name,
                    odd.join(", "),
                    s.host,
                    r.hostname
                ),
            )
            .primary(s.span, "not HTTP: the CDN drops it")
            .secondary(r.span, "a proxied name of this host")
            .help("put the name clients use for this port in a zone with `proxied = false`")
            .about("services", &s.name),
        );
    }
    for st in &sys.streams {
        let port = format!("{}/{}", st.port, st.protocol.name());
        let d = match &st.hostname {
            Some(h) if proxied(sys, h) => {
                Diagnostic::error(RULE.id, format!("stream `{}` forwards {port} under `{h}`, a name the CDN proxies", st.name))
                    .primary(st.span, "not HTTP: the CDN drops it")
            }
            Some(_) => continue,
            None => {
                let Some(r) = sys.routes.iter().find(|r| r.edge_host == st.edge_host && proxied(sys, &r.hostname)) else { continue };
                Diagnostic::error(
                    RULE.id,
                    format!(
                        "stream `{}` forwards {port} on host `{}`, whose name `{}` is proxied by the CDN",
                        st.name, st.edge_host, r.hostname
                    ),
                )
                .primary(st.span, "not HTTP: the CDN drops it")
                .secondary(r.span, "a proxied name of this host")
            }
        };
        out.push(
            d.help("give the stream a `hostname` in a zone with `proxied = false`: clients connect to the edge's own address there")
                .about("services", &st.service),
        );
    }
    out
}
