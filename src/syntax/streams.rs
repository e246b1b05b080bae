//! `[streams.NAME]`: a TCP or UDP port the edge forwards to a service's endpoint as it is
//! (Git over SSH, a game server, an SMTP relay): routes are HTTP only.

use crate::diag::Span;
use crate::syntax::decode::{Sink, Sp, TableReader, typed};
use crate::syntax::module::Protocol;
use crate::syntax::system::one_of;
use crate::types;

/// One `[streams.NAME]` as written.
#[derive(Debug)]
pub struct StreamDecl {
    pub name: Sp<String>,
    pub span: Span,
    /// The service the edge forwards to, and which of its endpoints.
    pub service: Option<Sp<String>>,
    pub endpoint: Option<Sp<String>>,
    /// The edge service that listens (optional with one edge in the system).
    pub edge: Option<Sp<String>>,
    /// `tcp` or `udp`; absent, the endpoint's.
    pub protocol: Option<Sp<Protocol>>,
    /// The public port on the edge host.
    pub port: Option<Sp<u16>>,
    /// A DNS name for the edge host (an A record, as routes get).
    pub hostname: Option<Sp<String>>,
    /// Only these sources may connect (the firewall, and Traefik's TCP allow-list).
    pub allow: Vec<Sp<types::AllowEntry>>,
}

pub fn parse_protocol(s: &str) -> Result<Protocol, types::TypeError> {
    match s {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        _ => Err(one_of(s, "protocol", &["tcp", "udp"])),
    }
}

/// Reads every `[streams.NAME]` of a file's root table.
pub fn read(root: &mut TableReader<'_>, sink: &Sink) -> Vec<StreamDecl> {
    root.named("streams", |name, mut t| {
        if t.table.get("port").is_none() {
            t.missing("port", "2222");
        }
        let port = t.int("port");
        let port = port.and_then(|p| match types::parse_port(p.value) {
            Ok(v) => Some(Sp::new(v, p.span)),
            Err(e) => {
                sink.type_error(p.span, e);
                None
            }
        });
        let d = StreamDecl {
            span: t.span,
            service: t.req_str("service", "\"forge\""),
            endpoint: t.str("endpoint"),
            edge: t.str("edge"),
            protocol: typed(t.str("protocol"), sink, parse_protocol),
            port,
            hostname: typed(t.str("hostname"), sink, |s| types::parse_domain(s, false)),
            allow: t.str_list("allow").into_iter().filter_map(|s| typed(Some(s), sink, types::parse_allow_entry)).collect(),
            name: typed(Some(name), sink, types::parse_ident)?,
        };
        t.finish();
        Some(d)
    })
}
