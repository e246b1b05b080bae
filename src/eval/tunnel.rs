//! Cloudflare tunnels: which routes arrive through a host's `cloudflared` instead of on the
//! host's own address, and where the tunnel hands them to the edge. A route is carried when its
//! edge host has no public address and runs a `cloudflared` container sharing a Compose network
//! with the route's edge container: the tunnel then holds one ingress rule per such route
//! (`render::tofu`), its name is a proxied CNAME to the tunnel, and the edge host opens no
//! 80/443 for it (`eval::firewall`).

use crate::model::{Route, Service, System};
use crate::syntax::system::TlsMode;

/// The module whose services are tunnel connectors.
pub const MODULE: &str = "cloudflared";

/// The connector on `host` whose tunnel carries the host's routes: the first `cloudflared`
/// service on it by name (a second one on the same host would be a replica of nothing).
pub fn connector<'a>(sys: &'a System, host: &str) -> Option<&'a Service> {
    sys.services.values().find(|s| s.host == host && s.module == MODULE)
}

/// The connector that carries `r`, if the route arrives through a tunnel: a private edge host,
/// a connector there, and a network on which the connector reaches the edge by name.
pub fn carrier<'a>(sys: &'a System, r: &Route) -> Option<&'a Service> {
    if sys.hosts.get(&r.edge_host).is_none_or(|h| h.public) {
        return None;
    }
    let c = connector(sys, &r.edge_host)?;
    let edge = sys.services.get(&r.edge_service)?;
    crate::eval::firewall_layers::shared_network(c, edge)?;
    Some(c)
}

/// One ingress rule of a tunnel: the public hostname and the origin URL cloudflared dials.
pub struct Ingress<'a> {
    pub hostname: &'a str,
    /// `https://<edge service>:443`: the edge terminates TLS as for a direct request.
    pub service: String,
    /// The name cloudflared sends as SNI and expects in the edge's certificate: the route's
    /// own hostname (the edge holds a certificate per hostname, none for its service name).
    pub origin_server_name: &'a str,
    /// The edge's certificate comes from its own local CA (`tls = "internal"`), which
    /// cloudflared cannot verify; the hop stays on the host's Docker network.
    pub no_tls_verify: bool,
    /// The route's certificate comes over HTTP-01 (`tls = "acme"`): its challenge path goes to
    /// the edge's port 80 (`http://<edge>:80`), where the edge answers Let's Encrypt, in a rule
    /// before the hostname's.
    pub acme_challenge: Option<String>,
}

/// The ingress `path` (cloudflared matches it as a regular expression) of the HTTP-01 challenge.
pub const ACME_CHALLENGE_PATH: &str = r"^/\.well-known/acme-challenge/";

/// The routes `connector` carries, in hostname order with wildcards last (cloudflared takes the
/// first rule that matches).
pub fn ingress<'a>(sys: &'a System, connector: &Service) -> Vec<Ingress<'a>> {
    let mut out: Vec<Ingress<'a>> = sys
        .routes
        .iter()
        .filter(|r| carrier(sys, r).is_some_and(|c| c.name == connector.name))
        .map(|r| Ingress {
            hostname: &r.hostname,
            service: format!("https://{}:443", r.edge_service),
            origin_server_name: &r.hostname,
            no_tls_verify: r.tls == TlsMode::Internal,
            acme_challenge: (r.tls == TlsMode::Acme).then(|| format!("http://{}:80", r.edge_service)),
        })
        .collect();
    out.sort_by_key(|i| (i.hostname.starts_with('*'), i.hostname));
    out
}
