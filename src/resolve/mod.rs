//! Resolve: merge the system files, instantiate modules, bind every reference, render module
//! templates. The result is the model the evaluator and emitters work on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use minijinja::Value as J;

use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::load::{ImageDef, Inputs, LoadedModule};
use crate::model::*;
use crate::syntax::decode::Sp;
use crate::syntax::module::{IntOrTpl, ModuleDecl, ModuleKind, OptType, OptionDecl};
use crate::syntax::system::*;
use crate::syntax::tree::{Node, Value};
use crate::template::Templates;
use crate::types::{self, ImageRef};

mod accounts;
mod alerts;
mod allow_lists;
mod allows;
mod backup;
mod certificates;
mod connections;
mod context;
mod databases;
mod declared;
mod environment;
mod hosts;
mod identity;
mod infra;
mod instances;
mod options;
mod public_routes;
mod routes;
mod secret_slots;
mod secrets;
mod services;
mod shared_secrets;
mod slots;
mod streams;

use services::*;

/// Resolves the loaded inputs; `None` when errors leave nothing coherent to evaluate.
pub fn resolve(inputs: &Inputs) -> (Option<System>, Vec<Diagnostic>) {
    // Templates are compiled once per module, and only for modules some service uses.
    let used: std::collections::BTreeSet<&str> =
        inputs.files.iter().flat_map(|f| &f.services).filter_map(|s| s.module.as_ref()).map(|m| m.value.as_str()).collect();
    let tpls: BTreeMap<String, Templates> =
        inputs.modules.iter().filter(|(k, _)| used.contains(k.as_str())).map(|(k, m)| (k.clone(), Templates::for_module(m))).collect();
    let mut r = Resolver {
        inputs,
        tpls: &tpls,
        diags: Vec::new(),
        probes: J::UNDEFINED,
        missing_files: BTreeSet::new(),
        receivers: Arc::default(),
        managed: Arc::default(),
        route_targets: Arc::default(),
        first_routes: Arc::default(),
        declared: Arc::default(),
        deferred: 0,
    };
    let sys = r.run();
    (sys, r.diags)
}

struct Resolver<'a> {
    inputs: &'a Inputs,
    tpls: &'a BTreeMap<String, Templates>,
    diags: Vec<Diagnostic>,
    /// Every public route's URL, for monitors (`probes.open`, `probes.restricted` for routes
    /// with an allow list and `probes.signin` for routes behind sign-in, in templates), built once: a
    /// template value is shared, not copied, by every context.
    probes: J,
    /// Secret files already reported missing (one warning per file).
    missing_files: BTreeSet<String>,
    /// `[alerts.receivers]`, resolved before the services that deliver to them (shared with the
    /// workers that render services).
    receivers: Arc<Vec<Receiver>>,
    /// `[databases]`, resolved before the services that connect to them (which add themselves
    /// as clients).
    managed: Arc<BTreeMap<String, ManagedDatabase>>,
    /// Every route's hostname → its service and endpoint as written, for `connects` entries
    /// naming a public route (`route:HOST`).
    route_targets: Arc<BTreeMap<String, (String, Option<String>)>>,
    /// Each routed service → its first route's hostname (wildcards aside), built once: the
    /// templates' `requires.SLOT.public_url` (the workers share it) and `route_help`.
    first_routes: Arc<BTreeMap<String, String>>,
    /// What the files declare, by name ([`declared::Declared`]), built on first use.
    declared: Arc<std::sync::OnceLock<declared::Declared>>,
    /// Errors not reported because their root cause is, later (an option taken from a route
    /// when a route names no service, maybe this one misspelt): counted as errors, so that
    /// nothing renders without the value.
    deferred: usize,
}

/// A service between phases: module bound, options typed, endpoints known.
struct Partial<'a> {
    decl: &'a ServiceDecl,
    module: &'a LoadedModule,
    host: String,
    options: BTreeMap<String, J>,
    endpoints: Vec<Endpoint>,
    /// False when the service's own declaration had errors: its templates are not rendered,
    /// so one mistake gives one error.
    ok: bool,
    /// The services whose `connects` name this one, in name order (filled once all are known,
    /// so that a server finds its clients without scanning every service).
    clients: Vec<String>,
}

impl<'a> Resolver<'a> {
    /// A resolver for one service's rendering on another thread: what every service reads,
    /// no diagnostics of its own yet.
    fn worker(&self) -> Resolver<'a> {
        Resolver {
            inputs: self.inputs,
            tpls: self.tpls,
            diags: Vec::new(),
            probes: self.probes.clone(),
            missing_files: BTreeSet::new(),
            receivers: Arc::clone(&self.receivers),
            managed: Arc::clone(&self.managed),
            route_targets: Arc::clone(&self.route_targets),
            first_routes: Arc::clone(&self.first_routes),
            declared: Arc::clone(&self.declared),
            deferred: 0,
        }
    }

    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// How many errors so far (warnings do not stop a service from resolving).
    fn errors(&self) -> usize {
        self.diags.iter().filter(|d| d.severity == crate::diag::Severity::Error).count() + self.deferred
    }

    fn unknown<'b>(&mut self, what: &str, r: &Sp<String>, known: impl IntoIterator<Item = &'b String>, define: &str) {
        let known: Vec<&String> = known.into_iter().collect();
        let mut d = Diagnostic::error("E0010", format!("unknown {what} `{}`", r.value)).primary(r.span, format!("no {what} of this name"));
        d = match did_you_mean(&r.value, known.iter().map(|s| s.as_str())) {
            Some(m) => d.help(format!("did you mean `{m}`?")),
            None if known.is_empty() => d.help(format!("declare it in a `[{define}.{}]` table", r.value)),
            None => d.help(format!("the {what}s are {}", known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))),
        };
        self.err(d);
    }

    /// Named declarations from every file, reporting names declared twice.
    fn index<T>(&mut self, what: &str, items: impl Iterator<Item = &'a T>, name: impl Fn(&T) -> &Sp<String>) -> BTreeMap<String, &'a T> {
        let mut out: BTreeMap<String, &'a T> = BTreeMap::new();
        for item in items {
            let n = name(item);
            if let Some(prev) = out.get(&n.value) {
                let prev = name(prev).span;
                let code = if what == "route" { "duplicate-route" } else { "E0011" };
                let mut d = Diagnostic::error(code, format!("{what} `{}` is declared twice", n.value))
                    .primary(n.span, "declared again here")
                    .secondary(prev, "first declared here");
                if what == "route" {
                    d = d.help("one hostname has one route: merge them, or give one a different hostname");
                }
                self.err(d);
                continue;
            }
            out.insert(n.value.clone(), item);
        }
        out
    }

    fn run(&mut self) -> Option<System> {
        let files = &self.inputs.files;
        let decls: Vec<&SystemDecl> = files.iter().filter_map(|f| f.system.as_ref()).collect();
        let Some(sysdecl) = decls.first() else {
            if !files.is_empty() {
                self.err(
                    Diagnostic::error("E0012", "no `[system]` table")
                        .primary(crate::load::file_span(crate::diag::FileId(self.main_file())), "this file declares no system")
                        .help("add `[system]` with `name = \"…\"`"),
                );
            }
            return None;
        };
        for extra in &decls[1..] {
            self.err(
                Diagnostic::error("E0011", "`[system]` is declared twice")
                    .primary(extra.span, "declared again here")
                    .secondary(sysdecl.span, "first declared here"),
            );
        }
        let providers = self.index("provider", files.iter().flat_map(|f| &f.providers), |p| &p.name);
        let networks = self.index("network", files.iter().flat_map(|f| &f.networks), |n| &n.name);
        let zones = self.index("zone", files.iter().flat_map(|f| &f.zones), |z| &z.name);
        let admins = self.index("admin", files.iter().flat_map(|f| &f.admins), |a| &a.name);
        let hosts = self.index("host", files.iter().flat_map(|f| &f.hosts), |h| &h.name);
        let services = self.index("service", files.iter().flat_map(|f| &f.services), |s| &s.name);
        let routes = self.index("route", files.iter().flat_map(|f| &f.routes), |r| &r.hostname);
        // `[route_defaults]` filled in: every later step sees the effective route.
        let defaults = self.route_defaults(files);
        // Admins' names in allow-lists, checked once each as written (not for every route that
        // inherits the defaults' list).
        for list in routes.values().map(|r| &r.allow).chain(defaults.and_then(|d| d.allow.as_ref())) {
            self.check_allow_list(list, &admins);
        }
        let merged: BTreeMap<String, RouteDecl> =
            routes.iter().map(|(k, r)| (k.clone(), crate::syntax::route_defaults::apply(r, defaults))).collect();
        let routes: BTreeMap<String, &RouteDecl> = merged.iter().map(|(k, r)| (k.clone(), r)).collect();
        let secrets = self.index("secret", files.iter().flat_map(|f| &f.secrets), |s| &s.name);
        let streams = self.index("stream", files.iter().flat_map(|f| &f.streams), |s| &s.name);
        for s in streams.values() {
            self.check_allow_list(&s.allow, &admins);
        }
        let certificates = self.index("certificate", files.iter().flat_map(|f| &f.certificates), |c| &c.name);
        let cdns: Vec<&CdnDecl> = files.iter().filter_map(|f| f.cdn.as_ref()).collect();

        let networks: BTreeMap<String, types::Cidr> =
            networks.iter().filter_map(|(k, n)| Some((k.clone(), n.cidr.as_ref()?.value))).collect();

        let mut model_hosts = BTreeMap::new();
        let mut used_addresses: BTreeMap<IpAddr, Span> = BTreeMap::new();
        for (name, h) in &hosts {
            if let Some(host) = self.host(h, &providers, &networks, &zones, &mut used_addresses) {
                model_hosts.insert(name.clone(), host);
            }
        }

        // Before the options: an option `from_route` is its service's first route.
        self.route_targets = Arc::new(
            routes
                .iter()
                .filter_map(|(h, r)| Some((h.clone(), (r.service.as_ref()?.value.clone(), r.endpoint.as_ref().map(|e| e.value.clone())))))
                .collect(),
        );
        let mut first_routes = BTreeMap::new();
        for (host, (service, _)) in self.route_targets.iter().filter(|(h, _)| !h.starts_with("*.")) {
            first_routes.entry(service.clone()).or_insert_with(|| host.clone());
        }
        self.first_routes = Arc::new(first_routes);

        // Phase 1: modules, placement, options and endpoints.
        let mut partials: BTreeMap<String, Partial<'a>> = BTreeMap::new();
        for (name, s) in &services {
            if let Some(p) = self.partial(s, &hosts) {
                partials.insert(name.clone(), p);
            }
        }
        link_clients(&mut partials);
        // What each route and stream reaches, and the edge it names.
        let edged: Vec<(&str, Option<&str>)> = routes
            .values()
            .flat_map(|r| {
                [&r.service, &r.auth, &r.crowdsec]
                    .into_iter()
                    .flatten()
                    .map(|s| (s.value.as_str(), r.edge.as_ref().map(|e| e.value.as_str())))
            })
            .chain(streams.values().filter_map(|s| Some((s.service.as_ref()?.value.as_str(), s.edge.as_ref().map(|e| e.value.as_str())))))
            .collect();
        self.assign_ports(&mut partials, &edged);
        // A route behind sign-in (`auth`) answers a prober without a session with a redirect to
        // the identity provider or a 401: those are probed without following it (else the probe
        // would judge the provider, and report its certificate instead of the edge's). A route
        // with an allow list answers a prober outside it with 403 (the edge refuses it): those
        // are probed for a 403 or a 2xx (the edge is up, its certificate valid), the rest for a 2xx.
        let probed = routes.iter().filter(|(h, _)| !h.starts_with("*."));
        let (signin, unsigned): (Vec<_>, Vec<_>) = probed.partition(|(_, r)| r.auth.is_some());
        let (restricted, open): (Vec<_>, Vec<_>) = unsigned.into_iter().partition(|(_, r)| !r.allow.is_empty());
        let urls = |rs: Vec<(&String, _)>| rs.into_iter().map(|(h, _)| format!("https://{h}/")).collect::<Vec<_>>();
        self.probes = minijinja::context! { open => urls(open), restricted => urls(restricted), signin => urls(signin) };
        self.receivers = Arc::new(self.alert_receivers(&secrets));
        let system_name = sysdecl.name.as_ref().map(|n| n.value.as_str()).unwrap_or_default();
        let managed: BTreeMap<String, ManagedDatabase> = self
            .databases(files, &providers)
            .into_iter()
            .map(|mut d| {
                d.network = networks
                    .keys()
                    .find(|n| model_hosts.values().any(|h: &Host| h.provider_kind == d.provider_kind && h.addresses.contains_key(*n)))
                    .cloned();
                // Scaleway's VPC DNS: `<resource name>.<private network name>.internal`
                // (https://www.scaleway.com/en/docs/vpc/reference-content/dns/), the names
                // `render::tofu` gives the instance and the network.
                d.host = d.network.as_ref().map(|n| format!("{system_name}-{}.{system_name}-{n}.internal", d.name));
                (d.name.clone(), d)
            })
            .collect();
        self.managed = Arc::new(managed);
        // Phase 2: connections, secrets, rendering.
        let mut prepared = Vec::new();
        for (name, p) in &partials {
            if let Some(pre) = self.prepare_service(p, &partials, &model_hosts, &secrets) {
                prepared.push((name, p, std::sync::Mutex::new(Some(pre))));
            }
        }
        // Rendering, the larger half, on every core: each service with its own worker, whose
        // diagnostics join these (they are sorted before anyone sees them).
        let rendered = crate::store::parallel(&prepared, |(_, p, pre)| {
            let pre = pre.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take().expect("each service renders once");
            let mut worker = self.worker();
            let svc = worker.render_service(p, pre, &model_hosts, sysdecl);
            (svc, worker.diags)
        });
        let mut model_services = BTreeMap::new();
        for ((name, _, _), (svc, diags)) in prepared.iter().zip(rendered) {
            self.diags.extend(diags);
            if let Some(svc) = svc {
                model_services.insert((*name).clone(), svc);
            }
        }
        let model_certificates = self.certificates(&certificates, &model_services);
        let model_routes = self.routes(&routes, &model_services, &model_hosts, (&certificates, &model_certificates), &admins);
        let model_streams = self.streams(&streams, &model_services, &model_hosts, &model_routes, &admins);
        let model_admins = admins
            .values()
            .map(|a| Admin {
                name: a.name.value.clone(),
                keys: a.keys.iter().map(|k| k.value.clone()).collect(),
                sources: a.sources.iter().map(|s| s.value).collect(),
            })
            .collect();
        for s in secrets.values() {
            self.secret_file(s);
        }
        let model_secrets = secrets
            .iter()
            .filter_map(|(k, s)| {
                Some((
                    k.clone(),
                    Secret {
                        name: k.clone(),
                        file: s.file.as_ref()?.value.clone(),
                        key: s.key.as_ref().map(|k| k.value.clone()).unwrap_or_else(|| k.clone()),
                    },
                ))
            })
            .collect();
        let mut sys = System {
            name: sysdecl.name.as_ref().map(|n| n.value.clone()).unwrap_or_default(),
            domains: sysdecl.domains.iter().map(|d| d.value.clone()).collect(),
            cdn: cdns.first().and_then(|c| c.provider.as_ref()).map(|p| p.value.clone()),
            networks,
            admins: model_admins,
            hosts: model_hosts,
            services: model_services,
            routes: model_routes,
            streams: model_streams,
            certificates: model_certificates,
            secrets: model_secrets,
            start_order: Vec::new(),
            providers: providers.iter().filter_map(|(k, p)| Some((k.clone(), p.kind.as_ref()?.value))).collect(),
            dns: self.dns_zones(files, &providers),
            store_url: sysdecl.store.as_ref().map(|s| s.value.clone()),
            buckets: self.buckets(files, &providers),
            databases: Arc::unwrap_or_clone(std::mem::take(&mut self.managed)).into_values().collect(),
            zones: zones
                .iter()
                .map(|(k, z)| {
                    (
                        k.clone(),
                        Zone {
                            description: z.description.as_ref().map(|d| d.value.clone()),
                            accepts: z.accepts.as_ref().map(|a| a.iter().map(|x| x.value.clone()).collect()),
                        },
                    )
                })
                .collect(),
            allows: Vec::new(),
            backup: None,
            receivers: Arc::unwrap_or_clone(std::mem::take(&mut self.receivers)),
            deploy_state: crate::syntax::deploy::state(files, &mut self.diags),
            deploy_order: crate::syntax::deploy::order(files, &mut self.diags),
        };
        for z in zones.values() {
            for a in z.accepts.iter().flatten() {
                if a.value != "public" && !zones.contains_key(&a.value) {
                    let known: Vec<String> = zones.keys().cloned().chain(["public".to_string()]).collect();
                    self.unknown("zone", a, known.iter(), "zones");
                }
            }
        }
        sys.allows = self.allows(files);
        sys.backup = self.backup(files, &secrets, &sys);
        self.identity(&mut sys);
        sysdecl.name.as_ref()?;
        let is_error = |d: &Diagnostic| d.severity == crate::diag::Severity::Error;
        if self.diags.iter().any(is_error) || self.inputs.diags.iter().any(is_error) {
            // Evaluation assumes a coherent model; the errors so far are the report.
            return Some(sys);
        }
        // Without an error every declaration resolved: nothing is dropped silently (the lookups
        // in `declared.rs` stay quiet about a failed declaration only because it said why).
        debug_assert!(
            files.iter().flat_map(|f| &f.services).all(|s| sys.services.contains_key(&s.name.value)),
            "a service was dropped without an error"
        );
        debug_assert!(
            {
                let routed: BTreeSet<&str> = sys.routes.iter().map(|r| r.hostname.as_str()).collect();
                files.iter().flat_map(|f| &f.routes).all(|r| routed.contains(r.hostname.value.as_str()))
            },
            "a route was dropped without an error"
        );
        if let Err(d) = crate::eval::order::start_order(&mut sys) {
            self.err(*d);
        }
        crate::eval::firewall::derive(&mut sys);
        crate::eval::egress::derive(&mut sys);
        crate::eval::backup_notice::derive(&mut sys);
        // An edge container reaches a container upstream on its host over a common bridge only.
        for r in &sys.routes {
            let edge = &sys.services[&r.edge_service];
            let upstreams = std::iter::once(r.service.as_str()).chain(r.auth.iter().chain(&r.crowdsec).map(|a| a.service.as_str()));
            for up in upstreams.filter_map(|u| sys.services.get(u)) {
                let (Some(_), Some(_)) = (&edge.container, &up.container) else { continue };
                let (eb, ub) = (edge.networks(), up.networks());
                if up.host == r.edge_host && !eb.iter().any(|b| ub.contains(b)) {
                    self.err(
                        Diagnostic::error("E0034", format!("edge `{}` and `{}` share no bridge", edge.name, up.name))
                            .primary(r.span, format!("route `{}` crosses Docker networks", r.hostname))
                            .help(format!("add a bridge of `{}` ({}) to `{}`'s `bridges`", up.name, ub.join(", "), edge.name)),
                    );
                }
            }
        }
        for h in sys.hosts.values().filter(|h| h.fail2ban_http) {
            let watchable = h.services.iter().map(|s| &sys.services[s]).any(|s| match s.edge.as_deref() {
                Some("caddy") => s.native.is_some(),
                Some("traefik") => s.container.is_some(),
                _ => false,
            });
            if !watchable {
                self.err(
                    Diagnostic::error("E0045", format!("host `{}` has `fail2ban_http` but no edge whose log it can watch", h.name))
                        .primary(h.span, "nothing to watch")
                        .help("fail2ban reads the access log of a native `caddy` or a `traefik` edge on the same host; remove `fail2ban_http` here"),
                );
            }
        }
        Some(sys)
    }

    /// The system's `[route_defaults]` (one, in any file).
    fn route_defaults(
        &mut self,
        files: &'a [crate::syntax::system::SystemFile],
    ) -> Option<&'a crate::syntax::route_defaults::RouteDefaultsDecl> {
        let mut all = files.iter().filter_map(|f| f.route_defaults.as_ref());
        let first = all.next()?;
        for again in all {
            self.err(
                Diagnostic::error("E0011", "`[route_defaults]` is declared twice")
                    .primary(again.span, "declared again here")
                    .secondary(first.span, "first declared here")
                    .help("one table of defaults serves every route: merge them"),
            );
        }
        Some(first)
    }

    fn main_file(&self) -> u32 {
        // The system's main file is the last one added to the sources (after modules and images).
        (0..self.inputs.sources.len() as u32)
            .rev()
            .find(|i| !self.inputs.sources.get(crate::diag::FileId(*i)).name.starts_with("modules/"))
            .unwrap_or(0)
    }
}

fn jv<T: serde::Serialize>(v: &T) -> J {
    J::from(minijinja::value::Serde(v))
}

/// Fills each service's `clients`: who names it in `connects` (once per client, name order).
fn link_clients(partials: &mut BTreeMap<String, Partial<'_>>) {
    let mut clients: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, p) in partials.iter() {
        for c in &p.decl.connects {
            let v = clients.entry(c.service().to_string()).or_default();
            if v.last() != Some(name) {
                v.push(name.clone());
            }
        }
    }
    for (target, v) in clients {
        if let Some(p) = partials.get_mut(&target) {
            p.clients = v;
        }
    }
}
