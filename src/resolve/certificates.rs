//! Certificates (`[certificates.NAME]`): one certificate for several names on one edge, and
//! which certificate each route is served with (named by the route, or the one on its edge that
//! covers its hostname); E0048, `wildcard-http01`, E0045 (Caddy).

use super::*;
use crate::syntax::certificates::{CertificateDecl, covers};

impl<'a> Resolver<'a> {
    /// The certificates that resolve: names, challenge and edge checked.
    pub(super) fn certificates(
        &mut self,
        decls: &BTreeMap<String, &'a CertificateDecl>,
        services: &BTreeMap<String, Service>,
    ) -> BTreeMap<String, Certificate> {
        let mut out = BTreeMap::new();
        for (name, d) in decls {
            let errors = self.errors();
            let Some(edge) = self.pick_edge(d.edge.as_ref(), services, d.name.span, &format!("certificate `{name}`"), "traefik") else {
                continue;
            };
            if d.names.is_empty() {
                self.err(
                    Diagnostic::error("E0048", format!("certificate `{name}` has no names"))
                        .primary(d.name.span, "a certificate needs at least one name")
                        .help("list them: `names = [\"example.org\", \"*.example.org\"]`"),
                );
            }
            if !d.dns01_written
                && let Some(w) = d.names.iter().find(|n| n.value.starts_with("*."))
            {
                self.err(
                    Diagnostic::error(
                        "wildcard-http01",
                        format!("certificate `{name}` holds the wildcard `{}` but has no DNS-01 provider", w.value),
                    )
                    .primary(w.span, "a wildcard can only be validated with the DNS-01 challenge")
                    .help("add `dns01 = \"PROVIDER\"` (the DNS provider of the zone, e.g. `cloudflare`), or list the hostnames one by one"),
                );
            }
            if edge.edge.as_deref() == Some("caddy") {
                // Caddy requests one certificate per name, never one for several, and the
                // distributions' Caddy has no DNS provider module for a wildcard's DNS-01.
                self.err(
                    Diagnostic::error("E0045", format!("the Caddy edge `{}` cannot serve certificate `{name}`", edge.name))
                        .primary(
                            d.edge.as_ref().map_or(d.name.span, |e| e.span),
                            "Caddy requests one certificate per name, and has no DNS-01 provider modules",
                        )
                        .help("hold the certificate on a Traefik edge (a service of module `traefik`, then `edge = \"NAME\"`)"),
                );
            }
            if self.errors() > errors {
                continue;
            }
            let mut names: Vec<String> = Vec::new();
            for n in &d.names {
                if !names.contains(&n.value) {
                    names.push(n.value.clone());
                }
            }
            out.insert(
                name.clone(),
                Certificate {
                    name: name.clone(),
                    names,
                    dns01: d.dns01.as_ref().map(|p| p.value),
                    edge_service: edge.name.clone(),
                    edge_host: edge.host.clone(),
                    span: d.name.span,
                },
            );
        }
        out
    }

    /// The certificate a route is served with, and the TLS mode it implies; `Err(())` once
    /// reported. A route that names none and sets no `tls` takes the first certificate (by
    /// name) on its edge that covers its hostname.
    pub(super) fn route_certificate(
        &mut self,
        r: &RouteDecl,
        edge: &Service,
        decls: &BTreeMap<String, &'a CertificateDecl>,
        certs: &BTreeMap<String, Certificate>,
    ) -> Result<Option<(String, TlsMode)>, ()> {
        let hostname = &r.hostname.value;
        let mode = |c: &Certificate| if c.dns01.is_some() { TlsMode::Dns } else { TlsMode::Acme };
        let Some(named) = &r.certificate else {
            if r.tls.is_some() {
                return Ok(None);
            }
            let covering: Vec<&Certificate> =
                certs.values().filter(|c| c.edge_service == edge.name && c.names.iter().any(|n| covers(n, hostname))).collect();
            // Several cover it: the first by name serves it, which a rename would change.
            if let [first, rest @ ..] = covering.as_slice()
                && !rest.is_empty()
            {
                let others: Vec<String> = rest.iter().map(|c| format!("`{}`", c.name)).collect();
                self.err(
                    Diagnostic::warning(
                        "E0048",
                        format!(
                            "route `{hostname}` is covered by certificates `{}` and {}: it uses `{}`",
                            first.name,
                            others.join(", "),
                            first.name
                        ),
                    )
                    .primary(r.hostname.span, "several certificates on its edge cover this name")
                    .secondary(first.span, "used: the first by name")
                    .help(format!("name the one it is served with: `certificate = \"{}\"`", first.name)),
                );
            }
            return Ok(covering.first().map(|c| (c.name.clone(), mode(c))));
        };
        let Some(cert) = certs.get(&named.value) else {
            if !decls.contains_key(&named.value) {
                self.unknown("certificate", named, decls.keys(), "certificates");
            }
            return Err(());
        };
        let errors = self.errors();
        if !cert.names.iter().any(|n| covers(n, hostname)) {
            self.err(
                Diagnostic::error("E0048", format!("certificate `{}` does not cover `{hostname}`", cert.name))
                    .primary(named.span, format!("holds {}", cert.names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")))
                    .secondary(cert.span, "declared here")
                    .help(format!("add `{hostname}` (or a wildcard over it) to the certificate's `names`, or name another certificate")),
            );
        }
        if cert.edge_service != edge.name {
            self.err(
                Diagnostic::error(
                    "E0048",
                    format!(
                        "certificate `{}` is held by edge `{}`, but `{hostname}` is terminated by `{}`",
                        cert.name, cert.edge_service, edge.name
                    ),
                )
                .primary(named.span, "another edge's certificate")
                .secondary(cert.span, format!("requested and served by `{}`", cert.edge_service))
                .help(format!("set `edge = \"{}\"` on the route or on the certificate", cert.edge_service)),
            );
        }
        if let Some(t) = &r.tls {
            self.err(
                Diagnostic::error("E0048", format!("route `{hostname}` sets both `tls` and `certificate`"))
                    .primary(t.span, "the certificate decides how its names are validated")
                    .help("remove `tls` (the certificate's `dns01` chooses DNS-01, else HTTP-01)"),
            );
        }
        if self.errors() > errors {
            return Err(());
        }
        Ok(Some((cert.name.clone(), mode(cert))))
    }
}
