//! Streams (`[streams.NAME]`): a TCP or UDP port on a Traefik edge forwarded to a service's
//! endpoint, with the edge, the endpoint, the protocol and the public port checked.

use super::routes::upstream_address;
use super::*;
use crate::syntax::module::Protocol;
use crate::syntax::streams::StreamDecl;

/// Ports an edge host already uses: the HTTP entry points, Traefik's internal one and sshd.
fn taken(port: u16, protocol: Protocol, ssh_port: u16) -> Option<&'static str> {
    match (port, protocol) {
        (80, Protocol::Tcp) => Some("the edge's HTTP entry point (`web`)"),
        (443, Protocol::Tcp) => Some("the edge's HTTPS entry point (`websecure`)"),
        (443, Protocol::Udp) => Some("the edge's HTTP/3 entry point (`websecure`)"),
        (crate::render::traefik::INTERNAL_PORT, Protocol::Tcp) => Some("Traefik's ping and metrics entry point (`internal`)"),
        (p, Protocol::Tcp) if p == ssh_port => Some("sshd on the edge host (its `ssh_port`)"),
        _ => None,
    }
}

impl<'a> Resolver<'a> {
    pub(super) fn streams(
        &mut self,
        streams: &BTreeMap<String, &'a StreamDecl>,
        services: &BTreeMap<String, Service>,
        hosts: &BTreeMap<String, Host>,
        routes: &[Route],
        admins: &BTreeMap<String, &'a AdminDecl>,
    ) -> Vec<Stream> {
        let mut out: Vec<Stream> = Vec::new();
        // (edge host, port, protocol) → the stream's port span, for duplicates.
        let mut ports: BTreeMap<(String, u16, Protocol), (String, Span)> = BTreeMap::new();
        for (name, d) in streams {
            let errors = self.errors();
            let Some(svc_ref) = &d.service else { continue };
            let Some(svc) = services.get(&svc_ref.value) else {
                if !self.declared_service(&svc_ref.value) {
                    self.unknown("service", svc_ref, services.keys(), "services");
                }
                continue;
            };
            let Some(endpoint) = self.stream_endpoint(d, svc, svc_ref) else { continue };
            let protocol = d.protocol.as_ref().map_or(endpoint.protocol, |p| p.value);
            if let Some(p) = d.protocol.as_ref().filter(|p| p.value != endpoint.protocol) {
                self.err(
                    Diagnostic::error(
                        "E0047",
                        format!(
                            "stream `{name}` forwards {} to endpoint `{}` of `{}`, which is {}",
                            p.value.name(),
                            endpoint.name,
                            svc.name,
                            endpoint.protocol.name()
                        ),
                    )
                    .primary(p.span, format!("{} here", p.value.name()))
                    .secondary(svc_ref.span, format!("its module `{}` declares the endpoint {}", svc.module, endpoint.protocol.name()))
                    .help(format!(
                        "write `protocol = \"{}\"` (or leave it out: a stream takes its endpoint's protocol), or name an endpoint that speaks {}",
                        endpoint.protocol.name(),
                        p.value.name()
                    )),
                );
                continue;
            }
            let Some(edge) = self.pick_edge(d.edge.as_ref(), services, d.name.span, &format!("stream `{name}`"), "traefik") else {
                continue;
            };
            if edge.edge.as_deref() != Some("traefik") {
                self.err(
                    Diagnostic::error("E0045", format!("the Caddy edge `{}` cannot forward stream `{name}`", edge.name))
                        .primary(d.edge.as_ref().map_or(d.name.span, |e| e.span), "Caddy proxies HTTP only")
                        .help(
                            "forward TCP and UDP on a Traefik edge: a service of module `traefik` on a public host, then `edge = \"NAME\"`",
                        ),
                );
                continue;
            }
            if edge.name == svc.name {
                self.err(
                    Diagnostic::error("E0030", format!("stream `{name}` forwards to its own edge `{}`", edge.name))
                        .primary(svc_ref.span, "the edge would forward the port to itself")
                        .help("name the service that answers on this port: the edge forwards to it"),
                );
                continue;
            }
            let Some(port) = &d.port else { continue };
            // Ubuntu runs systemd-resolved, whose stub listener holds 53 on 127.0.0.53 and
            // 127.0.0.54: Docker's wildcard bind of 53 fails with "address already in use".
            let resolved = hosts.get(&edge.host).is_some_and(|h| h.image.name.starts_with("ubuntu"));
            if port.value == 53 && resolved {
                self.err(
                    Diagnostic::error("E0046", format!("stream `{name}` cannot listen on 53/{} on host `{}`", protocol.name(), edge.host))
                        .primary(port.span, "systemd-resolved's stub listener holds port 53 on this Ubuntu host")
                        .note("the edge publishes the stream on every address; binding 53 fails while 127.0.0.53:53 is taken")
                        .help("put the edge on a Debian host (no systemd-resolved stub), or give the stream another public port"),
                );
                continue;
            }
            let ssh_port = hosts.get(&edge.host).map_or(22, |h| h.ssh_port);
            if let Some(what) = taken(port.value, protocol, ssh_port) {
                self.err(
                    Diagnostic::error("E0046", format!("stream `{name}` cannot listen on {}/{}: it is taken", port.value, protocol.name()))
                        .primary(port.span, format!("used by {what}"))
                        .help(if port.value == ssh_port {
                            "give the stream another public port, like `port = 2222` (clients then use `ssh -p 2222`)".to_string()
                        } else {
                            "give the stream another public port".to_string()
                        }),
                );
                continue;
            }
            let key = (edge.host.clone(), port.value, protocol);
            if let Some((other, at)) = ports.get(&key) {
                self.err(
                    Diagnostic::error(
                        "E0046",
                        format!("streams `{other}` and `{name}` both listen on {}/{} on host `{}`", port.value, protocol.name(), edge.host),
                    )
                    .primary(port.span, "this port is taken")
                    .secondary(*at, format!("already `{other}`'s"))
                    .help("one public port and protocol on an edge host forwards to one endpoint: give one stream another port"),
                );
                continue;
            }
            ports.insert(key, (name.clone(), port.span));
            let Some(upstream) = upstream_address(svc, endpoint, edge, hosts) else {
                self.err(
                    Diagnostic::error("E0032", format!("the edge on `{}` cannot reach `{}` on `{}`", edge.host, svc.name, svc.host))
                        .primary(svc_ref.span, "no private network between these hosts")
                        .help(super::connections::join_network_help(&edge.host, &svc.host, hosts)),
                );
                continue;
            };
            if let (Some(_), Some(_)) = (&edge.container, &svc.container) {
                let (eb, ub) = (edge.networks(), svc.networks());
                if svc.host == edge.host && !eb.iter().any(|b| ub.contains(b)) {
                    self.err(
                        Diagnostic::error("E0034", format!("edge `{}` and `{}` share no bridge", edge.name, svc.name))
                            .primary(d.name.span, format!("stream `{name}` crosses Docker networks"))
                            .help(format!("add a bridge of `{}` ({}) to `{}`'s `bridges`", svc.name, ub.join(", "), edge.name)),
                    );
                    continue;
                }
            }
            if let Some(h) = &d.hostname {
                let elsewhere = routes
                    .iter()
                    .map(|r| (r.hostname.as_str(), r.edge_host.as_str(), r.span))
                    .chain(out.iter().filter_map(|s| Some((s.hostname.as_deref()?, s.edge_host.as_str(), s.span))))
                    .find(|(n, host, _)| *n == h.value && *host != edge.host);
                if let Some((_, host, at)) = elsewhere {
                    self.err(
                        Diagnostic::error("E0046", format!("`{}` already points at host `{host}`", h.value))
                            .primary(h.span, format!("stream `{name}` is on host `{}`", edge.host))
                            .secondary(at, "that name's edge is here")
                            .help("a name has one address: give the stream a name of its own, or forward it on the same edge"),
                    );
                    continue;
                }
            }
            let allow = super::allow_lists::allow_list(&d.allow, admins);
            if self.errors() > errors {
                continue;
            }
            out.push(Stream {
                name: name.clone(),
                protocol,
                port: port.value,
                service: svc.name.clone(),
                endpoint: endpoint.name.clone(),
                upstream,
                allow,
                hostname: d.hostname.as_ref().map(|h| h.value.clone()),
                edge_service: edge.name.clone(),
                edge_host: edge.host.clone(),
                span: d.name.span,
            });
        }
        out
    }

    /// The endpoint a stream forwards to: the one named, else the service's only endpoint of
    /// the stream's protocol (TCP unless written) that is not HTTP.
    fn stream_endpoint<'s>(&mut self, d: &StreamDecl, svc: &'s Service, svc_ref: &Sp<String>) -> Option<&'s Endpoint> {
        if let Some(e) = &d.endpoint {
            let ep = svc.endpoint(&e.value);
            if ep.is_none() {
                let names: Vec<&String> = svc.endpoints.iter().map(|e| &e.name).collect();
                self.unknown("endpoint", e, names, "endpoints");
            }
            return ep;
        }
        let protocol = d.protocol.as_ref().map_or(Protocol::Tcp, |p| p.value);
        let fits: Vec<&Endpoint> = svc.endpoints.iter().filter(|e| e.protocol == protocol && !e.http).collect();
        if let [one] = fits.as_slice() {
            return Some(one);
        }
        let all: Vec<String> = svc.endpoints.iter().map(|e| format!("`{}` ({})", e.name, e.protocol.name())).collect();
        self.err(
            Diagnostic::error(
                "E0041",
                match fits.len() {
                    0 => format!("service `{}` has no {} endpoint a stream forwards to by default", svc.name, protocol.name()),
                    n => format!("service `{}` has {n} {} endpoints", svc.name, protocol.name()),
                },
            )
            .primary(svc_ref.span, "say which endpoint this stream forwards to")
            .help(match fits.first() {
                Some(e) => format!("add `endpoint = \"{}\"`", e.name),
                None if all.is_empty() => format!("module `{}` declares no endpoints", svc.module),
                None => format!(
                    "name one with `endpoint = \"NAME\"` (a stream forwards to an HTTP endpoint only when named); its endpoints are {}",
                    all.join(", ")
                ),
            }),
        );
        None
    }
}
