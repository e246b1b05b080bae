//! Traefik v3 emitter: the static configuration (entry points with the HTTPS redirect, one per
//! stream, certificate resolvers for HTTP-01 and DNS-01, the file provider, access logs,
//! metrics, ping, OTLP tracing to the collector of its `tracing` slot) and one dynamic file (a
//! router, a service and middlewares per route; a TCP or UDP router and service per stream) for
//! each Traefik edge.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{ForwardAuth, Host, Route, Service, Stream, System};
use crate::render::yaml;
use crate::syntax::module::Protocol;
use crate::syntax::system::TlsMode;

/// Where the Traefik container finds its configuration.
pub const STATIC_PATH: &str = "/etc/traefik/traefik.yml";
pub const DYNAMIC_DIR: &str = "/etc/traefik/dynamic";
/// Ping and metrics listen here, inside the container only (not published).
pub const INTERNAL_PORT: u16 = 8082;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Static {
    global: Global,
    entry_points: BTreeMap<String, EntryPoint>,
    providers: Providers,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    certificates_resolvers: BTreeMap<String, Resolver>,
    log: Log,
    access_log: AccessLog,
    metrics: Metrics,
    ping: Ping,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracing: Option<Tracing>,
}

/// `tracing`: spans over OTLP/HTTP to the collector the edge connects to (its `tracing` slot).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tracing {
    service_name: String,
    otlp: Otlp,
}

#[derive(Serialize)]
struct Otlp {
    http: OtlpHttp,
}

#[derive(Serialize)]
struct OtlpHttp {
    /// The collector's full URL; `http://` is plain HTTP (Traefik's default is https).
    endpoint: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Global {
    check_new_version: bool,
    send_anonymous_usage: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryPoint {
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<EntryHttp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http3: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    forwarded_headers: Option<TrustedIps>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TrustedIps {
    #[serde(rename = "trustedIPs")]
    trusted_ips: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryHttp {
    #[serde(skip_serializing_if = "Option::is_none")]
    redirections: Option<Redirections>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Redirections {
    entry_point: RedirectTo,
}

#[derive(Serialize)]
struct RedirectTo {
    to: &'static str,
    scheme: &'static str,
    permanent: bool,
}

#[derive(Serialize)]
struct Providers {
    file: FileProvider,
}

#[derive(Serialize)]
struct FileProvider {
    directory: &'static str,
    watch: bool,
}

#[derive(Serialize)]
struct Resolver {
    acme: Acme,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Acme {
    storage: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_challenge: Option<HttpChallenge>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_challenge: Option<DnsChallenge>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpChallenge {
    entry_point: &'static str,
}

#[derive(Serialize)]
struct DnsChallenge {
    provider: String,
}

#[derive(Serialize)]
struct Log {
    level: &'static str,
}

#[derive(Serialize)]
struct AccessLog {
    format: &'static str,
}

#[derive(Serialize)]
struct Metrics {
    prometheus: Prometheus,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Prometheus {
    entry_point: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ping {
    entry_point: &'static str,
}

/// The routes a Traefik edge on this host terminates, and that edge. `here` holds the routes
/// whose edge runs on this host ([`crate::render::Index`]).
fn edge_routes<'a>(sys: &'a System, host: &Host, here: &[&'a Route]) -> Option<(&'a Service, Vec<&'a Route>)> {
    let edge = host.services.iter().map(|s| &sys.services[s]).find(|s| s.edge.as_deref() == Some("traefik"))?;
    Some((edge, here.iter().copied().filter(|r| r.edge_service == edge.name).collect()))
}

/// The streams an edge forwards, in name order.
fn edge_streams<'a>(sys: &'a System, edge: &'a Service) -> impl Iterator<Item = &'a Stream> {
    sys.streams.iter().filter(move |s| s.edge_service == edge.name)
}

/// A stream's entry point (and router, service) name: stream names are unique in the system.
pub fn entry_point(st: &Stream) -> String {
    format!("stream-{}", st.name)
}

/// The static configuration for a host running a Traefik edge.
pub fn emit_static(sys: &System, host: &Host, here: &[&Route]) -> Option<String> {
    let (edge, routes) = edge_routes(sys, host, here)?;
    let trusted =
        sys.cdn.as_deref().map(|c| TrustedIps { trusted_ips: crate::eval::cdn::ranges(c).iter().map(|r| r.to_string()).collect() });
    let mut entry_points = BTreeMap::new();
    entry_points.insert(
        "web".to_string(),
        EntryPoint {
            address: ":80".into(),
            http: Some(EntryHttp {
                redirections: Some(Redirections { entry_point: RedirectTo { to: "websecure", scheme: "https", permanent: true } }),
            }),
            http3: None,
            forwarded_headers: None,
        },
    );
    entry_points.insert(
        "websecure".to_string(),
        EntryPoint { address: ":443".into(), http: None, http3: Some(Empty {}), forwarded_headers: trusted },
    );
    entry_points.insert(
        "internal".to_string(),
        EntryPoint { address: format!(":{INTERNAL_PORT}"), http: None, http3: None, forwarded_headers: None },
    );
    // A stream's own entry point: `:PORT/tcp` or `:PORT/udp` (Traefik's address syntax).
    for st in edge_streams(sys, edge) {
        entry_points.insert(
            entry_point(st),
            EntryPoint { address: format!(":{}/{}", st.port, st.protocol.name()), http: None, http3: None, forwarded_headers: None },
        );
    }
    let mut resolvers = BTreeMap::new();
    if routes.iter().any(|r| r.tls == TlsMode::Acme) {
        resolvers.insert(
            "letsencrypt".to_string(),
            Resolver {
                acme: Acme {
                    storage: "/data/acme-http.json".to_string(),
                    http_challenge: Some(HttpChallenge { entry_point: "web" }),
                    dns_challenge: None,
                },
            },
        );
    }
    if routes.iter().any(|r| r.tls == TlsMode::Dns && r.certificate.is_none()) {
        // The provider of the zone that holds the DNS-01 routes (lego's provider names are kiln's
        // provider kinds); `dns01-without-credentials` makes sure the edge holds its token.
        let provider = routes
            .iter()
            .filter(|r| r.tls == TlsMode::Dns && r.certificate.is_none())
            .find_map(|r| sys.zone_of(&r.hostname))
            .or(sys.dns.first())
            .map_or("cloudflare", |z| z.provider_kind.name())
            .to_string();
        resolvers.insert(
            "dns".to_string(),
            Resolver {
                acme: Acme {
                    storage: "/data/acme-dns.json".to_string(),
                    http_challenge: None,
                    dns_challenge: Some(DnsChallenge { provider }),
                },
            },
        );
    }
    // A DNS-01 `[certificates.NAME]` names its provider: one resolver per provider this edge's
    // certificates use (lego's provider names are kiln's provider kinds).
    for kind in sys.certificates.values().filter(|c| c.edge_service == edge.name).filter_map(|c| c.dns01) {
        let provider = kind.name().to_string();
        resolvers.insert(
            certificate_resolver(kind),
            Resolver {
                acme: Acme {
                    storage: format!("/data/acme-dns-{provider}.json"),
                    http_challenge: None,
                    dns_challenge: Some(DnsChallenge { provider }),
                },
            },
        );
    }
    let cfg = Static {
        global: Global { check_new_version: false, send_anonymous_usage: false },
        entry_points,
        providers: Providers { file: FileProvider { directory: DYNAMIC_DIR, watch: true } },
        certificates_resolvers: resolvers,
        log: Log { level: "INFO" },
        access_log: AccessLog { format: "json" },
        metrics: Metrics { prometheus: Prometheus { entry_point: "internal" } },
        ping: Ping { entry_point: "internal" },
        tracing: tracing(edge),
    };
    Some(yaml(&cfg))
}

#[derive(Serialize)]
struct Dynamic {
    http: Http,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp: Option<Tcp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    udp: Option<Udp>,
    /// The `default` TLS option (every router's): only where the edge raises the minimum version.
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<serde_json::Value>,
}

/// Plain TCP routers: without TLS there is no name to route by, so each matches every
/// connection (`HostSNI(`*`)`) on its own entry point.
#[derive(Serialize, Default)]
struct Tcp {
    routers: BTreeMap<String, TcpRouter>,
    services: BTreeMap<String, StreamService>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    middlewares: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcpRouter {
    entry_points: Vec<String>,
    rule: &'static str,
    service: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    middlewares: Vec<String>,
}

#[derive(Serialize, Default)]
struct Udp {
    routers: BTreeMap<String, UdpRouter>,
    services: BTreeMap<String, StreamService>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UdpRouter {
    entry_points: Vec<String>,
    service: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StreamService {
    load_balancer: StreamBalancer,
}

#[derive(Serialize)]
struct StreamBalancer {
    servers: Vec<StreamServer>,
}

#[derive(Serialize)]
struct StreamServer {
    address: String,
}

#[derive(Serialize)]
struct Http {
    routers: BTreeMap<String, Router>,
    services: BTreeMap<String, LbService>,
    middlewares: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Router {
    rule: String,
    /// Set for wildcard routes only, below every exact host (Traefik's default priority is the
    /// rule's length, which would let a long wildcard pattern win over an exact host).
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
    entry_points: Vec<&'static str>,
    service: String,
    middlewares: Vec<String>,
    tls: RouterTls,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct RouterTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_resolver: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    domains: Vec<TlsDomain>,
}

#[derive(Serialize, Clone)]
struct TlsDomain {
    main: String,
    /// The certificate's other names (subject alternative names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sans: Vec<String>,
}

/// The edge's `tracing` connection as Traefik's OTLP/HTTP exporter: the collector's address
/// (its Compose name on this host, else its private address) and port, OTLP's `/v1/traces`.
fn tracing(edge: &Service) -> Option<Tracing> {
    let d = edge.deps.iter().find(|d| d.slot.as_deref() == Some("tracing"))?;
    let host = if d.address.contains(':') { format!("[{}]", d.address) } else { d.address.clone() };
    Some(Tracing {
        service_name: edge.name.clone(),
        otlp: Otlp { http: OtlpHttp { endpoint: format!("http://{host}:{}/v1/traces", d.port) } },
    })
}

/// The resolver of the DNS-01 certificates validated at one provider.
fn certificate_resolver(kind: crate::syntax::system::ProviderKind) -> String {
    format!("dns-{}", kind.name())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LbService {
    load_balancer: LoadBalancer,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadBalancer {
    servers: Vec<Server>,
    pass_host_header: bool,
}

#[derive(Serialize)]
struct Server {
    url: String,
}

/// A router name from a hostname: `app.example.com` → `app-example-com`.
pub fn router_name(hostname: &str) -> String {
    hostname.replace("*.", "wildcard.").replace('.', "-")
}

fn rule(hostname: &str) -> String {
    match hostname.strip_prefix("*.") {
        Some(base) => format!("HostRegexp(`^[a-z0-9-]+\\.{}$`)", base.replace('.', "\\.")),
        None => format!("Host(`{hostname}`)"),
    }
}

/// `/outpost.goauthentik.io/*` → PathPrefix, `/oauth2/callback` → Path; paths Traefik's rule
/// syntax cannot quote (a backtick) are left out.
fn path_rule(paths: &[String]) -> Option<String> {
    let parts: Vec<String> = paths
        .iter()
        .filter(|p| !p.contains('`'))
        .map(|p| match p.strip_suffix('*') {
            Some(prefix) => format!("PathPrefix(`{prefix}`)"),
            None => format!("Path(`{p}`)"),
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(" || "))
}

fn forward_auth(fa: &ForwardAuth) -> serde_json::Value {
    serde_json::json!({ "forwardAuth": {
        "address": format!("http://{}{}", fa.upstream, fa.traefik_uri),
        "trustForwardHeader": true,
        "authResponseHeaders": fa.copy_headers,
    }})
}

/// The headers every route answers with; with a policy (`csp`) the route's CSP too, and for a
/// route others may frame (`framed`) that CSP's `frame-ancestors` replaces `X-Frame-Options` (an
/// empty custom header is Traefik's way to remove the upstream's).
fn security_headers(csp: Option<&str>, framed: bool) -> serde_json::Value {
    let mut h = serde_json::json!({
        "stsSeconds": 31536000, "stsIncludeSubdomains": true, "contentTypeNosniff": true,
        "referrerPolicy": "strict-origin-when-cross-origin", "customFrameOptionsValue": "SAMEORIGIN",
        "customResponseHeaders": { "Server": "" },
    });
    if framed {
        h.as_object_mut().map(|o| o.remove("customFrameOptionsValue"));
        h["customResponseHeaders"]["X-Frame-Options"] = "".into();
    }
    if let Some(csp) = csp {
        h["customResponseHeaders"]["Content-Security-Policy"] = csp.into();
    }
    serde_json::json!({ "headers": h })
}

/// The dynamic configuration (file provider) for a host running a Traefik edge.
pub fn emit_dynamic(sys: &System, host: &Host, here: &[&Route]) -> Option<String> {
    let (edge, routes) = edge_routes(sys, host, here)?;
    let mut http = Http { routers: BTreeMap::new(), services: BTreeMap::new(), middlewares: BTreeMap::new() };
    http.middlewares.insert("security-headers".into(), security_headers(None, false));
    http.middlewares.insert("compress".into(), serde_json::json!({ "compress": {} }));
    for r in routes {
        let name = router_name(&r.hostname);
        let mut middlewares = Vec::new();
        // A route with a policy (its own `csp`, or others may frame it) answers with its own
        // headers middleware, on its auth paths too (as in the Caddyfile's site block).
        let headers = match crate::render::frame::policy(r) {
            Some(csp) => {
                let m = format!("{name}-security-headers");
                http.middlewares.insert(m.clone(), security_headers(Some(&csp), crate::render::frame::framed(r)));
                m
            }
            None => "security-headers".to_string(),
        };
        if !r.allow.is_empty() {
            let m = format!("{name}-allow");
            let ranges: Vec<String> = r.allow.iter().map(|c| c.to_string()).collect();
            http.middlewares.insert(m.clone(), serde_json::json!({ "ipAllowList": { "sourceRange": ranges } }));
            middlewares.push(m);
        }
        if let Some(cs) = &r.crowdsec {
            let m = format!("crowdsec-{}", cs.service);
            http.middlewares.insert(m.clone(), forward_auth(cs));
            middlewares.push(m);
        }
        if let Some((average, burst)) = r.rate_limit {
            let m = format!("{name}-ratelimit");
            http.middlewares.insert(m.clone(), serde_json::json!({ "rateLimit": { "average": average, "burst": burst } }));
            middlewares.push(m);
        }
        // The route's allow-list, CrowdSec and rate limit hold for its auth paths too: those
        // paths skip only the sign-in check itself.
        let allow = middlewares.clone();
        if !r.cors.is_empty() {
            let m = format!("{name}-cors");
            http.middlewares.insert(
                m.clone(),
                serde_json::json!({ "headers": {
                    "accessControlAllowOriginList": r.cors,
                    "accessControlAllowMethods": ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                    "accessControlAllowHeaders": ["Authorization", "Content-Type"],
                    "accessControlMaxAge": 600,
                    "addVaryHeader": true,
                }}),
            );
            middlewares.push(m);
        }
        if let Some(a) = &r.auth {
            let m = format!("auth-{}", a.service);
            http.middlewares.insert(m.clone(), forward_auth(a));
            middlewares.push(m);
        }
        middlewares.push(headers.clone());
        middlewares.push("compress".into());
        let tls = match (r.certificate.as_ref().and_then(|c| sys.certificates.get(c)), r.tls) {
            // Every router a certificate covers asks for the same domains: Traefik requests it
            // once and serves it to each.
            (Some(c), _) => RouterTls {
                cert_resolver: Some(c.dns01.map_or("letsencrypt".to_string(), certificate_resolver)),
                domains: vec![TlsDomain { main: c.names[0].clone(), sans: c.names[1..].to_vec() }],
            },
            (None, TlsMode::Acme) => RouterTls { cert_resolver: Some("letsencrypt".to_string()), domains: Vec::new() },
            (None, TlsMode::Dns) => RouterTls {
                cert_resolver: Some("dns".to_string()),
                domains: vec![TlsDomain { main: r.hostname.clone(), sans: Vec::new() }],
            },
            (None, TlsMode::Internal) => RouterTls { cert_resolver: None, domains: Vec::new() },
        };
        let priority = r.hostname.starts_with("*.").then_some(1);
        // The auth service's own paths (its sign-in callbacks) go to it unchecked, as in the
        // Caddyfile: a router for them, its rule longer and so of higher priority.
        if let Some(a) = r.auth.as_ref().filter(|a| !a.paths.is_empty())
            && let Some(paths) = path_rule(&a.paths)
        {
            let auth_name = format!("{name}-auth-paths");
            http.routers.insert(
                auth_name.clone(),
                Router {
                    rule: format!("{} && ({paths})", rule(&r.hostname)),
                    priority: None,
                    entry_points: vec!["websecure"],
                    service: auth_name.clone(),
                    middlewares: allow.into_iter().chain([headers]).collect(),
                    tls: tls.clone(),
                },
            );
            http.services.insert(
                auth_name,
                LbService {
                    load_balancer: LoadBalancer { servers: vec![Server { url: format!("http://{}", a.upstream) }], pass_host_header: true },
                },
            );
        }
        http.routers.insert(
            name.clone(),
            Router { rule: rule(&r.hostname), priority, entry_points: vec!["websecure"], service: name.clone(), middlewares, tls },
        );
        http.services.insert(
            name,
            LbService { load_balancer: LoadBalancer { servers: vec![Server { url: upstream_url(r) }], pass_host_header: true } },
        );
    }
    let (tcp, udp) = streams(sys, edge);
    let tls = (edge.options.get("tls_min_version").map(String::as_str) == Some("1.3"))
        .then(|| serde_json::json!({ "options": { "default": { "minVersion": "VersionTLS13" } } }));
    Some(yaml(&Dynamic { http, tcp, udp, tls }))
}

/// The TCP and UDP sections for an edge's streams (`None` where it has none). A TCP stream's
/// `allow` is also Traefik's TCP `ipAllowList` (behind the firewall's rule); UDP routers take no
/// middlewares, so there the firewall alone keeps other sources out.
fn streams(sys: &System, edge: &Service) -> (Option<Tcp>, Option<Udp>) {
    let (mut tcp, mut udp) = (Tcp::default(), Udp::default());
    for st in edge_streams(sys, edge) {
        let name = entry_point(st);
        let service = StreamService { load_balancer: StreamBalancer { servers: vec![StreamServer { address: st.upstream.clone() }] } };
        match st.protocol {
            Protocol::Tcp => {
                let mut middlewares = Vec::new();
                if !st.allow.is_empty() {
                    let m = format!("{name}-allow");
                    let ranges: Vec<String> = st.allow.iter().map(|c| c.to_string()).collect();
                    tcp.middlewares.insert(m.clone(), serde_json::json!({ "ipAllowList": { "sourceRange": ranges } }));
                    middlewares.push(m);
                }
                tcp.routers.insert(
                    name.clone(),
                    TcpRouter { entry_points: vec![name.clone()], rule: "HostSNI(`*`)", service: name.clone(), middlewares },
                );
                tcp.services.insert(name, service);
            }
            Protocol::Udp => {
                udp.routers.insert(name.clone(), UdpRouter { entry_points: vec![name.clone()], service: name.clone() });
                udp.services.insert(name, service);
            }
        }
    }
    ((!tcp.routers.is_empty()).then_some(tcp), (!udp.routers.is_empty()).then_some(udp))
}

/// The URL Traefik proxies a route to: `h2c://` when the endpoint speaks HTTP/2 without TLS
/// (Traefik's scheme for it), else `http://`.
fn upstream_url(r: &crate::model::Route) -> String {
    format!("{}://{}", if r.h2c { "h2c" } else { "http" }, r.upstream)
}
