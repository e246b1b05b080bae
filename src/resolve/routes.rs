//! Routes: edge, upstream address, forward auth and TLS for each public name.

use super::*;
use crate::syntax::certificates::CertificateDecl;

impl<'a> Resolver<'a> {
    /// A service that answers an edge's forward-auth requests (an authenticator or a bouncer).
    pub(super) fn forward_auth(
        &mut self,
        r: &Sp<String>,
        services: &BTreeMap<String, Service>,
        edge: &Service,
        hosts: &BTreeMap<String, Host>,
        what: &str,
        modules: &str,
    ) -> Option<ForwardAuth> {
        let Some(asvc) = services.get(&r.value) else {
            // A declared service that failed to resolve has said why already.
            if !self.declared_service(&r.value) {
                self.unknown("service", r, services.keys(), "services");
            }
            return None;
        };
        let fa = self.inputs.modules.get(&asvc.module).and_then(|m| m.decl.forward_auth.as_ref());
        let Some(fa) = fa else {
            self.err(
                Diagnostic::error("E0044", format!("service `{}` cannot {what}", r.value))
                    .primary(r.span, format!("module `{}` offers no forward auth", asvc.module))
                    .help(format!("use a service of module `{modules}`")),
            );
            return None;
        };
        // Never `None` without an error: the route would then be served without the check.
        let Some(ep) = asvc.endpoint(&fa.endpoint.value) else {
            self.err(
                Diagnostic::error("E0044", format!("service `{}` cannot {what}", r.value))
                    .primary(r.span, format!("module `{}` has no endpoint `{}` for forward auth", asvc.module, fa.endpoint.value))
                    .help(format!("use a service of module `{modules}`")),
            );
            return None;
        };
        let Some(upstream) = upstream_address(asvc, ep, edge, hosts) else {
            self.err(
                Diagnostic::error("E0032", format!("the edge on `{}` cannot reach `{}` on `{}`", edge.host, asvc.name, asvc.host))
                    .primary(r.span, format!("no private network between these hosts, so the edge could not {what}"))
                    .help(super::connections::join_network_help(&edge.host, &asvc.host, hosts)),
            );
            return None;
        };
        Some(ForwardAuth {
            service: asvc.name.clone(),
            endpoint: ep.name.clone(),
            upstream,
            uri: fa.uri.value.clone(),
            traefik_uri: fa.traefik_uri.as_ref().unwrap_or(&fa.uri).value.clone(),
            copy_headers: fa.copy_headers.iter().map(|h| h.value.clone()).collect(),
            paths: fa.paths.iter().map(|h| h.value.clone()).collect(),
        })
    }

    /// The edge that terminates a route or stream (`what`): the one `named`, else the system's
    /// only edge; `None` once reported (or, when the edge may be a service that failed to
    /// resolve, with its own error the report). `module` is the edge module the help suggests (its
    /// first edge, when there are several).
    pub(super) fn pick_edge<'s>(
        &mut self,
        named: Option<&Sp<String>>,
        services: &'s BTreeMap<String, Service>,
        at: Span,
        what: &str,
        module: &str,
    ) -> Option<&'s Service> {
        // Listed only when no edge is named or the named one is unknown: a scan per route was
        // quadratic in a fleet of edges.
        let all_edges = || -> Vec<&Service> { services.values().filter(|s| s.edge.is_some()).collect() };
        if let Some(e) = named {
            return match services.get(&e.value) {
                Some(s) if s.edge.is_some() => Some(s),
                Some(_) => {
                    self.err(
                        Diagnostic::error("E0042", format!("service `{}` is not an edge proxy", e.value))
                            .primary(e.span, "cannot terminate routes"),
                    );
                    None
                }
                None => {
                    if !self.declared_service(&e.value) {
                        self.unknown("service", e, all_edges().iter().map(|s| &s.name), "services");
                    }
                    None
                }
            };
        }
        let edges = all_edges();
        match named {
            Some(_) => None,
            None if edges.len() == 1 => Some(edges[0]),
            // A service that did not resolve (its error is reported) may be the edge.
            None if self.inputs.files.iter().flat_map(|f| &f.services).any(|s| !services.contains_key(&s.name.value)) => None,
            None => {
                self.err(
                    Diagnostic::error("E0043", format!("{what} has no edge to terminate it"))
                        .primary(at, if edges.is_empty() { "no edge proxy in the system" } else { "several edge proxies" })
                        .help(if edges.is_empty() {
                            format!("add a service of module `{module}` on a public host")
                        } else {
                            // the first edge of the module asked for, else the first
                            let e = edges.iter().find(|s| s.edge.as_deref() == Some(module)).unwrap_or(&edges[0]);
                            format!("add `edge = \"{}\"`", e.name)
                        }),
                );
                None
            }
        }
    }

    pub(super) fn routes(
        &mut self,
        routes: &BTreeMap<String, &RouteDecl>,
        services: &BTreeMap<String, Service>,
        hosts: &BTreeMap<String, Host>,
        (cert_decls, certs): (&BTreeMap<String, &'a CertificateDecl>, &BTreeMap<String, Certificate>),
        admins: &BTreeMap<String, &'a AdminDecl>,
    ) -> Vec<Route> {
        let mut out = Vec::new();
        for (hostname, r) in routes {
            let Some(svc_ref) = &r.service else { continue };
            let Some(svc) = services.get(&svc_ref.value) else {
                if !self.declared_service(&svc_ref.value) {
                    self.unknown("service", svc_ref, services.keys(), "services");
                }
                continue;
            };
            let http: Vec<&Endpoint> = svc.endpoints.iter().filter(|e| e.http).collect();
            let endpoint = match &r.endpoint {
                Some(e) => match svc.endpoint(&e.value) {
                    Some(ep) if ep.http => ep,
                    Some(_) => {
                        self.err(
                            Diagnostic::error("E0040", format!("endpoint `{}` of `{}` does not speak HTTP", e.value, svc.name))
                                .primary(e.span, "not an HTTP endpoint")
                                .help("routes reach HTTP endpoints; raw TCP needs its own record outside the edge proxy"),
                        );
                        continue;
                    }
                    None => {
                        let names: Vec<&String> = svc.endpoints.iter().map(|e| &e.name).collect();
                        self.unknown("endpoint", e, names, "endpoints");
                        continue;
                    }
                },
                None if http.len() == 1 => http[0],
                None => {
                    self.err(
                        Diagnostic::error("E0041", format!("service `{}` has {} HTTP endpoints", svc.name, http.len()))
                            .primary(svc_ref.span, "say which endpoint this route reaches")
                            .help(if http.is_empty() {
                                format!("module `{}` exposes no HTTP endpoint", svc.module)
                            } else {
                                format!("add `endpoint = \"{}\"`", http[0].name)
                            }),
                    );
                    continue;
                }
            };
            let Some(edge) = self.pick_edge(r.edge.as_ref(), services, r.hostname.span, &format!("route `{hostname}`"), "caddy") else {
                continue;
            };
            let Some(upstream) = upstream_address(svc, endpoint, edge, hosts) else {
                self.err(
                    Diagnostic::error("E0032", format!("the edge on `{}` cannot reach `{}` on `{}`", edge.host, svc.name, svc.host))
                        .primary(svc_ref.span, "no private network between these hosts")
                        .help(super::connections::join_network_help(&edge.host, &svc.host, hosts)),
                );
                continue;
            };
            let errors = self.errors();
            let auth = r
                .auth
                .as_ref()
                .and_then(|a| self.forward_auth(a, services, edge, hosts, "authenticate requests", "authentik` or `oauth2-proxy"));
            let crowdsec =
                r.crowdsec.as_ref().and_then(|a| self.forward_auth(a, services, edge, hosts, "vet requests", "crowdsec-bouncer-traefik"));
            let Ok(certificate) = self.route_certificate(r, edge, cert_decls, certs) else {
                continue;
            };
            let tls = match &certificate {
                Some((_, mode)) => *mode,
                None => r.tls.as_ref().map(|t| t.value).unwrap_or(TlsMode::Acme),
            };
            let edge_kind = edge.edge.as_deref().unwrap_or("caddy");
            if hostname.starts_with("*.") && tls == TlsMode::Acme {
                self.err(
                    Diagnostic::error("wildcard-http01", format!("wildcard route `{hostname}` cannot get a certificate over HTTP-01"))
                        .primary(r.hostname.span, "a wildcard needs the DNS-01 challenge")
                        .help("set `tls = \"dns\"` (and run the edge with DNS credentials), or list the hostnames one by one"),
                );
            }
            if edge_kind == "caddy" {
                let unsupported: [(bool, Span, &str, &str); 3] = [
                    (
                        r.rate_limit.is_some(),
                        r.rate_limit.as_ref().map(|x| x.2).unwrap_or(r.span),
                        "rate limiting",
                        "Caddy has no built-in rate limiter",
                    ),
                    (
                        r.crowdsec.is_some(),
                        r.crowdsec.as_ref().map(|x| x.span).unwrap_or(r.span),
                        "a CrowdSec bouncer",
                        "the distributions' Caddy has no CrowdSec module",
                    ),
                    (
                        tls == TlsMode::Dns,
                        r.tls.as_ref().map(|x| x.span).unwrap_or(r.span),
                        "DNS-01 certificates",
                        "the distributions' Caddy has no DNS provider modules",
                    ),
                ];
                for (used, span, what, why) in unsupported {
                    if used {
                        self.err(
                            Diagnostic::error("E0045", format!("the Caddy edge `{}` cannot do {what} for `{hostname}`", edge.name))
                                .primary(span, why.to_string())
                                .help("terminate this route on a Traefik edge (a service of module `traefik`, then `edge = \"NAME\"`)"),
                        );
                    }
                }
            }
            let allow = super::allow_lists::allow_list(&r.allow, admins);
            if self.errors() > errors {
                continue;
            }
            out.push(Route {
                hostname: hostname.clone(),
                service: svc.name.clone(),
                endpoint: endpoint.name.clone(),
                upstream,
                h2c: endpoint.h2c,
                tls,
                auth,
                crowdsec,
                rate_limit: r.rate_limit.as_ref().map(|(a, b, _)| {
                    let avg = a.value.clamp(1, u32::MAX as i64) as u32;
                    (avg, b.as_ref().map(|b| b.value.clamp(1, u32::MAX as i64) as u32).unwrap_or(avg))
                }),
                cors: r.cors.iter().map(|c| c.value.clone()).collect(),
                allow,
                frame_ancestors: r.frame_ancestors.iter().map(|o| o.value.clone()).collect(),
                csp: r.csp.as_ref().map(|c| c.value.clone()),
                edge_service: edge.name.clone(),
                edge_host: edge.host.clone(),
                certificate: certificate.map(|(name, _)| name),
                span: r.hostname.span,
            });
        }
        self.derive_frame_ancestors(&mut out, services);
        out
    }

    /// An embeddable module's routes (`[module] embeddable`: an editor, a conference) may be
    /// framed by the public routes of every service that connects to it: their origins join
    /// the route's `frame_ancestors`.
    fn derive_frame_ancestors(&self, routes: &mut [Route], services: &BTreeMap<String, Service>) {
        let embeddable = |svc: &str| services.get(svc).and_then(|s| self.inputs.modules.get(&s.module)).is_some_and(|m| m.decl.embeddable);
        let embedders: Vec<(String, String)> = routes
            .iter()
            .flat_map(|r| {
                let deps = services.get(&r.service).map(|s| s.deps.as_slice()).unwrap_or_default();
                deps.iter()
                    .filter(|d| !d.derived && d.service != r.service && embeddable(&d.service))
                    .map(|d| (d.service.clone(), format!("https://{}", r.hostname)))
            })
            .collect();
        for r in routes.iter_mut() {
            r.frame_ancestors.extend(embedders.iter().filter(|(svc, _)| *svc == r.service).map(|(_, o)| o.clone()));
            r.frame_ancestors.sort();
            r.frame_ancestors.dedup();
        }
    }
}

/// `ep` is the endpoint's container port and `port` its host port: only a containerised edge on
/// the same Compose network dials the container's own.
pub(super) fn upstream_address(svc: &Service, ep: &Endpoint, edge: &Service, hosts: &BTreeMap<String, Host>) -> Option<String> {
    let port = ep.host_port;
    if svc.host == edge.host {
        return Some(match (edge.container.is_some(), svc.container.is_some()) {
            (true, true) => format!("{}:{}", svc.name, ep.port),
            (true, false) => hosts.get(&svc.host)?.private_address().map(|a| socket(a, port))?,
            (false, _) => format!("127.0.0.1:{port}"),
        });
    }
    Some(socket(super::connections::shared_address(hosts, &edge.host, &svc.host)?, port))
}

pub(super) fn socket(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}
