//! Connections to public routes: `connects = ["route:HOST"]` or `["https://HOST/PATH"]`. A
//! host without a private network shared with the service (an existing server, CI runners
//! reaching a forge) reaches it the way everyone else does: through its egress to the edge's
//! 443. The connection orders start-up and, written in the table form, fills the named slot,
//! whose `requires.SLOT.url` is the route's URL (`address` its hostname, `port` 443, `tls`).
//! The firewall opens nothing for it on the service's host; `check::route_connection` says
//! what the client's host and the route must allow for it to work.

use super::*;
use crate::syntax::connects::ConnectDecl;
use crate::syntax::module::{Protocol, RequireDecl};

impl<'a> Resolver<'a> {
    /// The connection a `route:HOST` / `https://HOST` entry makes, or its error.
    pub(super) fn route_dep(
        &mut self,
        p: &Partial<'a>,
        hostname: &str,
        slot: Option<&RequireDecl>,
        c: &ConnectDecl,
        all: &BTreeMap<String, Partial<'a>>,
    ) -> Option<Dependency> {
        let span = c.target.span;
        let Some((service, endpoint)) = self.route_targets.get(hostname).cloned() else {
            let known: Vec<String> = self.route_targets.keys().filter(|h| !h.starts_with("*.")).cloned().collect();
            let mut d = Diagnostic::error("E0010", format!("unknown route `{hostname}`"))
                .primary(span, "no `[routes]` entry of this hostname")
                .note("a connection through a public route names one of the system's routes by its hostname");
            d = match did_you_mean(hostname, known.iter().map(String::as_str)) {
                Some(m) => d.help(format!("did you mean `route:{m}`?")),
                None if known.is_empty() => d.help(format!("declare the route: `[routes.\"{hostname}\"] service = \"SERVICE\"`")),
                None => d.help(format!("the routes are {}", known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))),
            };
            self.err(d);
            return None;
        };
        // The path an `https://` entry adds, kept when it is plain URL path characters.
        let path = c.target.value.strip_prefix("https://").and_then(|r| r.find('/').map(|i| &r[i..])).unwrap_or("");
        if !path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b)) {
            self.err(
                Diagnostic::error("E0003", format!("`{}` is not a plain route URL", c.target.value))
                    .primary(span, "only letters, digits and `/-._~` may follow the hostname")
                    .help(format!("write `route:{hostname}`, or `https://{hostname}/PATH`")),
            );
            return None;
        }
        if service == p.decl.name.value {
            self.err(Diagnostic::error("E0030", format!("service `{service}` connects to its own route")).primary(span, "remove this"));
            return None;
        }
        // The route's service reports its own errors; its endpoint names the connection.
        let target = all.get(&service)?;
        let endpoint =
            endpoint.or_else(|| target.endpoints.iter().find(|e| e.http).map(|e| e.name.clone())).unwrap_or_else(|| "http".to_string());
        Some(Dependency {
            slot: slot.map(|s| s.slot.value.clone()),
            service,
            endpoint,
            port: 443,
            protocol: Protocol::Tcp,
            address: hostname.to_string(),
            same_host: false,
            usage: slot.and_then(|s| s.usage.as_ref()).map(|u| u.value.clone()),
            prepared_statements: false,
            derived: false,
            no_wait: slot.is_some_and(|s| !s.wait),
            path: None,
            route: Some(format!("https://{hostname}{path}")),
            // HTTPS through the route (the templates' `tls` says so); not the endpoint's own TLS.
            tls: false,
            span,
        })
    }

    /// The route form of a connection to `service`, when it has a public route.
    pub(super) fn route_help(&self, service: &str) -> Option<String> {
        let host = self.first_routes.get(service)?;
        Some(format!(
            "connect through its public route instead (out through the host's egress to the edge's 443): `connects = [\"route:{host}\"]`"
        ))
    }
}
