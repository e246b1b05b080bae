//! `[endpoints.NAME]`, `[healthcheck]` and `[metrics]`: where a service listens, how its health
//! is tested and where it is scraped.

use super::{EndpointDecl, HealthDecl, IntOrTpl, MetricsDecl, Protocol};
use crate::syntax::decode::{Sink, Sp, TableReader, as_str_list, typed};
use crate::syntax::system::one_of;
use crate::syntax::tree::{Node, Value};
use crate::types::{self, Duration};

/// One `[endpoints.NAME]`.
pub(super) fn endpoint(name: Sp<String>, mut t: TableReader<'_>, sink: &Sink) -> Option<EndpointDecl> {
    let host_port = port_node(t.node("host_port"), sink);
    let Some(port) = port_node(t.node("port"), sink) else {
        if t.node("port").is_none() {
            t.missing("port", "8080");
        }
        return None;
    };
    let protocol = typed(t.str("protocol"), sink, |s| match s {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        _ => Err(one_of(s, "protocol", &["tcp", "udp"])),
    })
    .unwrap_or(Sp::new(Protocol::Tcp, port.span));
    let http = t.bool("http");
    let h2c = t.bool("h2c");
    if let Some(h) = h2c.as_ref().filter(|h| h.value && !http.as_ref().is_some_and(|b| b.value)) {
        sink.push(
            crate::diag::Diagnostic::error("E0003", "`h2c` is how the edge speaks HTTP to this endpoint, which is not `http = true`")
                .primary(h.span, "h2c on an endpoint the edge does not route")
                .help("add `http = true`, or remove `h2c`"),
        );
    }
    let tls = match t.node("tls") {
        None => None,
        Some(Node { value: Value::Bool(b), span }) => Some(Sp::new(b.to_string(), *span)),
        Some(Node { value: Value::Str(s), span }) => Some(Sp::new(s.clone(), *span)),
        Some(n) => {
            sink.expected(n, "`true`, `false` or a template such as \"{{ options.tls }}\"");
            None
        }
    };
    let d = EndpointDecl {
        tls,
        port,
        host_port,
        protocol,
        http: http.is_some_and(|b| b.value),
        h2c: h2c.is_some_and(|b| b.value),
        name: typed(Some(name), sink, types::parse_ident)?,
    };
    t.finish();
    Some(d)
}

/// `[healthcheck]`.
pub(super) fn healthcheck(mut t: TableReader<'_>, sink: &Sink) -> HealthDecl {
    let test = t.node("test");
    let test = match test {
        Some(n) => as_str_list(n, sink),
        None => {
            t.missing("test", "[\"CMD\", \"pg_isready\"]");
            Vec::new()
        }
    };
    if let Some(first) = test.first()
        && !matches!(first.value.as_str(), "CMD" | "CMD-SHELL")
    {
        sink.push(
            crate::diag::Diagnostic::error("E0003", "a healthcheck test starts with `CMD` or `CMD-SHELL`")
                .primary(first.span, "not `CMD` or `CMD-SHELL`"),
        );
    }
    let d = HealthDecl {
        span: t.span,
        test,
        interval: dur(&mut t, "interval", 10),
        timeout: dur(&mut t, "timeout", 5),
        retries: t.int("retries").map(|i| i.value.clamp(1, 1000) as u32).unwrap_or(5),
        start_period: dur(&mut t, "start_period", 30),
    };
    t.finish();
    d
}

/// `[metrics]`.
pub(super) fn metrics(mut t: TableReader<'_>) -> Option<MetricsDecl> {
    let endpoint = t.req_str("endpoint", "\"metrics\"");
    let path = t.str("path").map(|p| p.value).unwrap_or_else(|| "/metrics".into());
    t.finish();
    endpoint.map(|endpoint| MetricsDecl { endpoint, path })
}

fn dur(t: &mut TableReader<'_>, key: &'static str, default: u64) -> Duration {
    let sink = t.sink();
    typed(t.str(key), sink, Duration::parse).map(|d| d.value).unwrap_or(Duration(default))
}

fn port_node(n: Option<&Node>, sink: &Sink) -> Option<Sp<IntOrTpl>> {
    let port = match n? {
        Node { value: Value::Int(i), span } => Sp::new(IntOrTpl::Int(*i), *span),
        Node { value: Value::Str(s), span } => Sp::new(IntOrTpl::Tpl(s.clone()), *span),
        n => {
            sink.expected(n, "a port number or a template");
            return None;
        }
    };
    if let IntOrTpl::Int(i) = port.value
        && let Err(e) = types::parse_port(i)
    {
        sink.type_error(port.span, e);
    }
    Some(port)
}
