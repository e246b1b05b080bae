//! Resolve: merge the system files, instantiate modules, bind every reference, render module
//! templates. The result is the model the evaluator and emitters work on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

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

/// Resolves the loaded inputs; `None` when errors leave nothing coherent to evaluate.
pub fn resolve(inputs: &Inputs) -> (Option<System>, Vec<Diagnostic>) {
    // Templates are compiled once per module, and only for modules some service uses.
    let used: std::collections::BTreeSet<&str> =
        inputs.files.iter().flat_map(|f| &f.services).filter_map(|s| s.module.as_ref()).map(|m| m.value.as_str()).collect();
    let tpls: BTreeMap<String, Templates> =
        inputs.modules.iter().filter(|(k, _)| used.contains(k.as_str())).map(|(k, m)| (k.clone(), Templates::for_module(m))).collect();
    let mut r = Resolver { inputs, tpls: &tpls, diags: Vec::new(), probes: J::UNDEFINED, missing_files: BTreeSet::new() };
    let sys = r.run();
    (sys, r.diags)
}

struct Resolver<'a> {
    inputs: &'a Inputs,
    tpls: &'a BTreeMap<String, Templates>,
    diags: Vec<Diagnostic>,
    /// Every public route's URL, for monitors (`probes` in templates), built once: a
    /// template value is shared, not copied, by every context.
    probes: J,
    /// Secret files already reported missing (one warning per file).
    missing_files: BTreeSet<String>,
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
}

impl<'a> Resolver<'a> {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// How many errors so far (warnings do not stop a service from resolving).
    fn errors(&self) -> usize {
        self.diags.iter().filter(|d| d.severity == crate::diag::Severity::Error).count()
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
        let secrets = self.index("secret", files.iter().flat_map(|f| &f.secrets), |s| &s.name);
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

        // Phase 1: modules, placement, options and endpoints.
        let mut partials: BTreeMap<String, Partial<'a>> = BTreeMap::new();
        for (name, s) in &services {
            if let Some(p) = self.partial(s, &hosts) {
                partials.insert(name.clone(), p);
            }
        }
        let probes: Vec<String> = routes.keys().filter(|h| !h.starts_with("*.")).map(|h| format!("https://{h}/")).collect();
        self.probes = jv(&probes);
        // Phase 2: connections, secrets, rendering.
        let mut model_services = BTreeMap::new();
        for (name, p) in &partials {
            if let Some(svc) = self.service(p, &partials, &model_hosts, &secrets, sysdecl) {
                model_services.insert(name.clone(), svc);
            }
        }
        let model_routes = self.routes(&routes, &model_services, &model_hosts);
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
            secrets: model_secrets,
            start_order: Vec::new(),
            providers: providers.iter().filter_map(|(k, p)| Some((k.clone(), p.kind.as_ref()?.value))).collect(),
            dns: self.dns_zones(files, &providers),
            store_url: sysdecl.store.as_ref().map(|s| s.value.clone()),
            buckets: self.buckets(files, &providers),
            databases: self.databases(files, &providers),
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
        };
        for z in zones.values() {
            for a in z.accepts.iter().flatten() {
                if a.value != "public" && !zones.contains_key(&a.value) {
                    let known: Vec<String> = zones.keys().cloned().chain(["public".to_string()]).collect();
                    self.unknown("zone", a, known.iter(), "zones");
                }
            }
        }
        sys.allows = self.allows(files, &sys);
        sys.backup = self.backup(files, &secrets, &sys);
        sysdecl.name.as_ref()?;
        let is_error = |d: &Diagnostic| d.severity == crate::diag::Severity::Error;
        if self.diags.iter().any(is_error) || self.inputs.diags.iter().any(is_error) {
            // Evaluation assumes a coherent model; the errors so far are the report.
            return Some(sys);
        }
        if let Err(d) = crate::eval::order::start_order(&mut sys) {
            self.err(*d);
        }
        crate::eval::firewall::derive(&mut sys);
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

    /// A declared secret against what load found in its file.
    fn secret_file(&mut self, s: &SecretDecl) {
        use crate::secrets::FileStatus;
        let Some(file) = &s.file else { return };
        let key = s.key.as_ref().unwrap_or(&s.name);
        match self.inputs.secret_files.get(&file.value) {
            None => {}
            Some(FileStatus::Missing) if !self.missing_files.insert(file.value.clone()) => {}
            Some(FileStatus::Missing) => self.err(
                Diagnostic::warning("secret-file-missing", format!("secret file `{}` does not exist", file.value))
                    .primary(file.span, "no such file next to the system")
                    .help("create it with `sops` or `kiln encrypt-secrets`; until then no value can be delivered"),
            ),
            Some(FileStatus::Refused(why)) => self.err(
                Diagnostic::error("unauthenticated-secrets", format!("secret file `{}` is refused: {why}", file.value))
                    .primary(file.span, "this file cannot be trusted"),
            ),
            Some(FileStatus::Sops { keys, .. }) if !keys.contains(&key.value) => {
                let mut d = Diagnostic::error("undefined-secret", format!("`{}` holds no key `{}`", file.value, key.value))
                    .primary(key.span, format!("not in {}", file.value));
                d = match did_you_mean(&key.value, keys.iter().map(String::as_str)) {
                    Some(m) => d.help(format!("did you mean `{m}`?")),
                    None => d.help(format!("add it with `sops {}`", file.value)),
                };
                self.err(d);
            }
            Some(FileStatus::Age { .. }) if s.key.is_some() => {
                self.err(Diagnostic::error("E0003", "a plain age file holds one secret: it has no keys").primary(key.span, "remove `key`"));
            }
            Some(_) => {}
        }
    }

    /// `[backup]`: one per system; its secrets must be declared.
    fn backup(&mut self, files: &'a [SystemFile], secrets: &BTreeMap<String, &'a SecretDecl>, sys: &System) -> Option<BackupPlan> {
        let decls: Vec<&BackupDecl> = files.iter().filter_map(|f| f.backup.as_ref()).collect();
        if let [first, second, ..] = decls[..] {
            self.err(
                Diagnostic::error("E0011", "`[backup]` is declared twice")
                    .primary(second.span, "declared again here")
                    .secondary(first.span, "first declared here"),
            );
        }
        let b = decls.first()?;
        // `{host}` in a secret name gives every host its own (one repository password per client).
        let backed_up: Vec<&str> = sys
            .hosts
            .values()
            .filter(|h| h.services.iter().any(|s| sys.services.get(s).is_some_and(Service::has_data)))
            .map(|h| h.name.as_str())
            .collect();
        for s in b.password.iter().chain(&b.environment) {
            let names: BTreeSet<String> = if s.value.contains("{host}") {
                backed_up.iter().map(|h| s.value.replace("{host}", h)).collect()
            } else {
                BTreeSet::from([s.value.clone()])
            };
            for name in names.iter().filter(|n| !secrets.contains_key(*n)) {
                self.err(
                    Diagnostic::error("undefined-secret", format!("secret `{name}` is referenced but not defined"))
                        .primary(s.span, "not declared in `[secrets]`")
                        .help(format!("declare it: `[secrets.{name}]` with `file = \"secrets.sops.yaml\"`")),
                );
            }
        }
        if b.keep.is_empty() {
            self.err(
                Diagnostic::error("E0004", "`[backup]` keeps nothing")
                    .primary(b.span, "no retention")
                    .help("add `keep = { daily = 7, weekly = 4, monthly = 6 }`"),
            );
        }
        for (k, n) in &b.keep {
            if n.value < 1 {
                self.err(
                    Diagnostic::error("E0003", format!("keep {} must be at least 1", k.value)).primary(n.span, "expected a positive count"),
                );
            }
        }
        Some(BackupPlan {
            repository: b.repository.as_ref()?.value.clone(),
            password: b.password.as_ref()?.value.clone(),
            environment: b.environment.as_ref().map(|e| e.value.clone()),
            schedule: b.schedule.as_ref().map_or_else(crate::types::Calendar::default_backup, |c| c.value.clone()),
            check: b.check.as_ref().map_or_else(crate::types::Calendar::default_check, |c| c.value.clone()),
            keep: b.keep.iter().map(|(k, n)| (k.value.clone(), n.value)).collect(),
        })
    }

    /// `[allow.RULE]` tables: the rule must exist and be one a system may waive, the names must
    /// exist, and the reason must say something.
    fn allows(&mut self, files: &'a [SystemFile], sys: &System) -> Vec<Allow> {
        let mut out = Vec::new();
        let explained = crate::check::explanations();
        for a in files.iter().flat_map(|f| &f.allows) {
            match explained.iter().find(|e| e.id == a.rule.value) {
                None => {
                    let mut d =
                        Diagnostic::error("E0010", format!("unknown rule `{}`", a.rule.value)).primary(a.rule.span, "no rule of this id");
                    d = match did_you_mean(&a.rule.value, explained.iter().map(|e| e.id)) {
                        Some(m) => d.help(format!("did you mean `{m}`?")),
                        None => d.help("`kiln explain` lists every rule"),
                    };
                    self.err(d);
                    continue;
                }
                Some(e) if !e.allowable => {
                    self.err(
                        Diagnostic::error("E0035", format!("rule `{}` cannot be allowed", a.rule.value))
                            .primary(a.rule.span, "this rule guards against output that cannot work")
                            .help(format!("fix the input instead; `kiln explain {}` says why", a.rule.value)),
                    );
                    continue;
                }
                Some(_) => {}
            }
            let reason = a.reason.as_ref().map(|r| r.value.trim().to_string()).unwrap_or_default();
            if let Some(r) = &a.reason
                && reason.split_whitespace().count() < 3
            {
                self.err(
                    Diagnostic::error("E0035", format!("the reason for allowing `{}` is too short", a.rule.value))
                        .primary(r.span, "say why this exception is safe here")
                        .help("write a sentence a reviewer can check, e.g. \"the vendor image is only published as latest; mirrored by digest\""),
                );
            }
            for (list, kind, known) in [
                (&a.hosts, "host", sys.hosts.keys().cloned().collect::<Vec<_>>()),
                (&a.services, "service", sys.services.keys().cloned().collect()),
                (&a.routes, "route", sys.routes.iter().map(|r| r.hostname.clone()).collect()),
            ] {
                for n in list {
                    if !known.contains(&n.value) {
                        self.unknown(kind, n, known.iter(), &format!("{kind}s"));
                    }
                }
            }
            if a.hosts.is_empty() && a.services.is_empty() && a.routes.is_empty() {
                self.err(
                    Diagnostic::error("E0004", format!("`[allow.{}]` names nothing", a.rule.value))
                        .primary(a.span, "no `hosts`, `services` or `routes`")
                        .help("name what the exception is for: `services = [\"legacy\"]`"),
                );
            }
            let names = |l: &Vec<Sp<String>>| l.iter().map(|x| x.value.clone()).collect();
            out.push(Allow {
                rule: a.rule.value.clone(),
                hosts: names(&a.hosts),
                services: names(&a.services),
                routes: names(&a.routes),
                reason,
                span: a.rule.span,
            });
        }
        out
    }

    fn dns_zones(&mut self, files: &'a [SystemFile], providers: &BTreeMap<String, &'a ProviderDecl>) -> Vec<DnsZone> {
        let zones = self.index("DNS zone", files.iter().flat_map(|f| &f.dns), |z| &z.zone);
        let mut out = Vec::new();
        for (zone, z) in zones {
            let Some(p) = &z.provider else { continue };
            let Some(kind) = providers.get(&p.value).and_then(|d| d.kind.as_ref()) else {
                self.unknown("provider", p, providers.keys(), "providers");
                continue;
            };
            if !matches!(kind.value, ProviderKind::Cloudflare | ProviderKind::Hetzner | ProviderKind::DigitalOcean) {
                self.err(
                    Diagnostic::error("E0016", format!("provider `{}` ({}) does not host DNS zones", p.value, kind.value.name()))
                        .primary(p.span, "no DNS here")
                        .help("use a provider of kind `cloudflare`, `hetzner` or `digitalocean`"),
                );
                continue;
            }
            let proxied = z.proxied.as_ref().is_some_and(|b| b.value);
            if proxied && kind.value != ProviderKind::Cloudflare {
                self.err(
                    Diagnostic::error("E0016", format!("zone `{zone}` cannot be proxied by {}", kind.value.name()))
                        .primary(z.proxied.as_ref().unwrap().span, "only Cloudflare proxies records"),
                );
            }
            out.push(DnsZone { zone, provider: p.value.clone(), provider_kind: kind.value, proxied });
        }
        out
    }

    /// The provider kind a resource names, if it offers `what`.
    fn provider_for(
        &mut self,
        p: &Sp<String>,
        providers: &BTreeMap<String, &'a ProviderDecl>,
        what: &str,
        allowed: &[ProviderKind],
    ) -> Option<ProviderKind> {
        let Some(kind) = providers.get(&p.value).and_then(|d| d.kind.as_ref()) else {
            self.unknown("provider", p, providers.keys(), "providers");
            return None;
        };
        if allowed.contains(&kind.value) {
            return Some(kind.value);
        }
        let names: Vec<&str> = allowed.iter().map(|k| k.name()).collect();
        self.err(
            Diagnostic::error("E0017", format!("provider `{}` ({}) offers no {what} kiln can create", p.value, kind.value.name()))
                .primary(p.span, format!("no {what} here"))
                .help(format!("use a provider of kind {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" or "))),
        );
        None
    }

    fn buckets(&mut self, files: &'a [SystemFile], providers: &BTreeMap<String, &'a ProviderDecl>) -> Vec<Bucket> {
        let decls = self.index("bucket", files.iter().flat_map(|f| &f.buckets), |b| &b.name);
        let mut out = Vec::new();
        for (name, b) in decls {
            let Some(p) = &b.provider else { continue };
            if let Some(kind) = self.provider_for(p, providers, "object storage", &[ProviderKind::DigitalOcean, ProviderKind::Scaleway]) {
                crate::provider_values::bucket(kind, b).into_iter().for_each(|d| self.err(d));
                out.push(Bucket { name, provider_kind: kind, region: b.region.as_ref().map(|r| r.value.clone()) });
            }
        }
        out
    }

    fn databases(&mut self, files: &'a [SystemFile], providers: &BTreeMap<String, &'a ProviderDecl>) -> Vec<ManagedDatabase> {
        let decls = self.index("database", files.iter().flat_map(|f| &f.databases), |d| &d.name);
        let mut out = Vec::new();
        for (name, d) in decls {
            let Some(p) = &d.provider else { continue };
            if let Some(kind) = self.provider_for(p, providers, "managed databases", &[ProviderKind::Scaleway]) {
                crate::provider_values::database(kind, d).into_iter().for_each(|d| self.err(d));
                out.push(ManagedDatabase {
                    name,
                    provider_kind: kind,
                    engine: d.engine.as_ref().map(|e| e.value.clone()).unwrap_or_else(|| "PostgreSQL-16".into()),
                    node_type: d.node_type.as_ref().map(|e| e.value.clone()).unwrap_or_else(|| "DB-DEV-S".into()),
                    user: d.user.as_ref().map(|e| e.value.clone()).unwrap_or_else(|| "app".into()),
                    region: d.region.as_ref().map(|r| r.value.clone()),
                });
            }
        }
        out
    }

    fn main_file(&self) -> u32 {
        // The system's main file is the last one added to the sources (after modules and images).
        (0..self.inputs.sources.len() as u32)
            .rev()
            .find(|i| !self.inputs.sources.get(crate::diag::FileId(*i)).name.starts_with("modules/"))
            .unwrap_or(0)
    }

    fn host(
        &mut self,
        h: &HostDecl,
        providers: &BTreeMap<String, &'a ProviderDecl>,
        networks: &BTreeMap<String, types::Cidr>,
        zones: &BTreeMap<String, &'a ZoneDecl>,
        used: &mut BTreeMap<IpAddr, Span>,
    ) -> Option<Host> {
        // A wrong provider or image is reported here, and the host stays in the model with a
        // stand-in (`existing`, an empty image): one mistake gives one error, not one more for
        // every service, route and scrape on the host. The build fails, so nothing renders it.
        let provider = h.provider.as_ref()?;
        let pkind = match providers.get(&provider.value) {
            Some(p) => p.kind.as_ref().map(|k| k.value),
            None => {
                self.unknown("provider", provider, providers.keys(), "providers");
                None
            }
        };
        let image_ref = h.image.as_ref()?;
        let image: Option<&ImageDef> = self.inputs.images.get(&image_ref.value);
        if image.is_none() {
            self.unknown("base image", image_ref, self.inputs.images.keys(), "images");
        }
        if let Some(z) = &h.zone
            && !zones.contains_key(&z.value)
        {
            self.unknown("zone", z, zones.keys(), "zones");
        }
        let mut addresses = BTreeMap::new();
        for (net, addr) in &h.networks {
            let Some(cidr) = networks.get(&net.value) else {
                self.unknown("network", net, networks.keys(), "networks");
                continue;
            };
            if !cidr.contains(addr.value) {
                self.err(
                    Diagnostic::error(
                        "address-outside-network",
                        format!("address {} is outside network `{}` ({cidr})", addr.value, net.value),
                    )
                    .primary(addr.span, format!("not in {cidr}"))
                    .help(format!("pick an address inside {cidr}")),
                );
            } else if cidr.is_reserved(addr.value) {
                self.err(
                    Diagnostic::error(
                        "address-outside-network",
                        format!("address {} is the network or broadcast address of `{}`", addr.value, net.value),
                    )
                    .primary(addr.span, "reserved address"),
                );
            }
            if let Some(prev) = used.get(&addr.value) {
                self.err(
                    Diagnostic::error("address-reused", format!("address {} is used twice", addr.value))
                        .primary(addr.span, "used again here")
                        .secondary(*prev, "first used here"),
                );
            } else {
                used.insert(addr.value, addr.span);
            }
            addresses.insert(net.value.clone(), addr.value);
        }
        if pkind == Some(ProviderKind::Cloudflare) {
            self.err(
                Diagnostic::error("E0015", format!("host `{}` cannot run on provider `{}`", h.name.value, provider.value))
                    .primary(provider.span, "a cloudflare provider manages DNS and tunnels, not servers")
                    .help("use a provider of kind `hetzner`, `digitalocean`, `scaleway` or `existing`"),
            );
        }
        let pkind = pkind.filter(|k| *k != ProviderKind::Cloudflare);
        crate::provider_values::host(pkind, h).into_iter().for_each(|d| self.err(d));
        let provider_image = image.zip(pkind).and_then(|(i, k)| i.providers.get(k.name()).cloned());
        let unnamed = image.is_some() && pkind.is_some() && provider_image.is_none();
        let stand_in = ImageDef { name: image_ref.value.clone(), ..ImageDef::default() };
        let (image, pkind) = (image.unwrap_or(&stand_in), pkind.unwrap_or(ProviderKind::Existing));
        if unnamed && pkind != ProviderKind::Existing {
            self.err(
                Diagnostic::error("E0015", format!("image `{}` has no {} image name", image.name, pkind.name()))
                    .primary(image_ref.span, format!("not available on {}", pkind.name()))
                    .help("pick an image that lists this provider in `images/`"),
            );
        }
        Some(Host {
            name: h.name.value.clone(),
            provider: provider.value.clone(),
            provider_kind: pkind,
            server_type: h.server_type.as_ref().map(|s| s.value.clone()),
            location: h.location.as_ref().map(|s| s.value.clone()),
            image: crate::model::BaseImage {
                name: image.name.clone(),
                family: image.family.clone(),
                codename: image.codename.clone(),
                provider_image,
                docker_method: image.docker_method.clone(),
                docker_packages: image.docker_packages.clone(),
            },
            zone: h.zone.as_ref().map(|z| z.value.clone()),
            public: h.public.as_ref().is_some_and(|p| p.value),
            bastion: h.bastion.as_ref().is_some_and(|p| p.value),
            addresses,
            services: Vec::new(),
            firewall: Vec::new(),
            disks: h.disks.iter().map(|(n, s)| (n.value.clone(), s.value)).collect(),
            address: h.address.as_ref().map(|a| a.value),
            group: h.group.as_ref().map(|g| g.value.clone()),
            password_ssh: h.password_ssh.as_ref().is_some_and(|b| b.value),
            fail2ban_http: h.fail2ban_http.as_ref().is_some_and(|b| b.value),
            bridges: h
                .bridges
                .iter()
                .map(|b| {
                    (
                        b.name.value.clone(),
                        Bridge { subnet: b.subnet.as_ref().map(|c| c.value), internal: b.internal.as_ref().is_some_and(|i| i.value) },
                    )
                })
                .collect(),
            span: h.name.span,
        })
    }

    fn partial(&mut self, s: &'a ServiceDecl, hosts: &BTreeMap<String, &'a HostDecl>) -> Option<Partial<'a>> {
        let module_name = s.module.as_ref()?;
        let module = match self.inputs.modules.get(&module_name.value) {
            Some(m) => m,
            None => {
                self.unknown("module", module_name, self.inputs.modules.keys(), "modules");
                return None;
            }
        };
        let host = s.host.as_ref()?;
        if !hosts.contains_key(&host.value) {
            self.unknown("host", host, hosts.keys(), "hosts");
            return None;
        }
        let before = self.errors();
        let options = self.options(s, &module.decl);
        let ok = self.errors() == before;
        let mut ctx = BTreeMap::new();
        ctx.insert("options", jv(&options));
        ctx.insert("service", minijinja::context! { name => s.name.value.clone(), host => host.value.clone() });
        let ctx = jv(&ctx);
        let tpl = &self.tpls[&module.decl.name.value];
        let mut endpoints = Vec::new();
        for e in &module.decl.endpoints {
            let port = match &e.port.value {
                IntOrTpl::Int(i) => types::parse_port(*i).ok(),
                IntOrTpl::Tpl(_) if !ok => None,
                IntOrTpl::Tpl(t) => match tpl.render_str(t, &ctx) {
                    Ok(v) => match v.trim().parse::<i64>().map_err(|_| ()).and_then(|i| types::parse_port(i).map_err(|_| ())) {
                        Ok(p) => Some(p),
                        Err(()) => {
                            self.err(
                                Diagnostic::error(
                                    "E0020",
                                    format!("endpoint `{}` of `{}` renders to `{v}`, not a port", e.name.value, s.name.value),
                                )
                                .primary(e.port.span, "this template")
                                .secondary(s.name.span, "in this service"),
                            );
                            None
                        }
                    },
                    Err(err) => {
                        self.err(err.at(e.port.span).secondary(s.name.span, "while instantiating this service"));
                        None
                    }
                },
            };
            if let Some(port) = port {
                endpoints.push(Endpoint { name: e.name.value.clone(), port, protocol: e.protocol.value, http: e.http });
            }
        }
        Some(Partial { decl: s, module, host: host.value.clone(), options, endpoints, ok })
    }

    /// Options typed against the module's declarations; unknown and missing ones reported.
    fn options(&mut self, s: &ServiceDecl, m: &ModuleDecl) -> BTreeMap<String, J> {
        let mut out = BTreeMap::new();
        for (name, _) in &s.options {
            if !m.options.iter().any(|o| o.name.value == name.value) {
                let mut d = Diagnostic::error("E0021", format!("module `{}` has no option `{}`", m.name.value, name.value))
                    .primary(name.span, "unknown option");
                d = match did_you_mean(&name.value, m.options.iter().map(|o| o.name.value.as_str())) {
                    Some(x) => d.help(format!("did you mean `{x}`?")),
                    None => d.help(format!("`kiln modules show {}` lists its options", m.name.value)),
                };
                self.err(d);
            }
        }
        for o in &m.options {
            let given = s.options.iter().find(|(n, _)| n.value == o.name.value).map(|(_, v)| v);
            let value = match (given, &o.default) {
                (Some(v), _) | (None, Some(v)) => self.option_value(o, v),
                (None, None) => {
                    let example = o.example.as_ref().map(Node::text).unwrap_or_else(|| "…".into());
                    self.err(
                        Diagnostic::error("E0022", format!("service `{}` needs option `{}`", s.name.value, o.name.value))
                            .primary(s.name.span, format!("`{}` is required by module `{}`", o.name.value, m.name.value))
                            .secondary(o.name.span, "declared here")
                            .help(format!("add `options.{} = {example}`", o.name.value)),
                    );
                    None
                }
            };
            if let Some(v) = value {
                out.insert(o.name.value.clone(), v);
            }
        }
        out
    }

    fn option_value(&mut self, o: &OptionDecl, n: &Node) -> Option<J> {
        let expected = |me: &mut Self, what: &str| {
            me.err(
                Diagnostic::error("E0002", format!("option `{}` expects {what}, found {}", o.name.value, n.value.type_name()))
                    .primary(n.span, format!("expected {what}"))
                    .secondary(o.ty.span, "type declared here"),
            );
            None
        };
        let parse_str = |me: &mut Self, f: &dyn Fn(&str) -> Result<String, types::TypeError>| match &n.value {
            Value::Str(s) => match f(s) {
                Ok(v) => Some(J::from(v)),
                Err(e) => {
                    me.err(
                        Diagnostic::error("E0003", e.message).primary(n.span, format!("invalid {}", o.ty.value.name())).with_help(e.help),
                    );
                    None
                }
            },
            _ => None,
        };
        let v = match (o.ty.value, &n.value) {
            (OptType::String, Value::Str(_)) => parse_str(self, &crate::syntax::module::parse_option_string),
            (OptType::Int, Value::Int(i)) => Some(J::from(*i)),
            (OptType::Bool, Value::Bool(b)) => Some(J::from(*b)),
            (OptType::Port, Value::Int(i)) => match types::parse_port(*i) {
                Ok(p) => Some(J::from(p)),
                Err(e) => {
                    self.err(Diagnostic::error("E0003", e.message).primary(n.span, "invalid port").with_help(e.help));
                    None
                }
            },
            (OptType::Duration, Value::Str(_)) => parse_str(self, &|s| types::Duration::parse(s).map(|d| d.to_string())),
            (OptType::Size, Value::Str(_)) => parse_str(self, &|s| types::Size::parse(s).map(|d| d.compose())),
            (OptType::Domain, Value::Str(_)) => parse_str(self, &|s| types::parse_domain(s, true)),
            (OptType::Image, Value::Str(_)) => parse_str(self, &|s| ImageRef::parse(s).map(|i| i.to_string())),
            (OptType::Ip, Value::Str(_)) => parse_str(self, &|s| types::parse_ip(s).map(|i| i.to_string())),
            (OptType::Cidr, Value::Str(_)) => parse_str(self, &|s| types::Cidr::parse(s).map(|i| i.to_string())),
            (OptType::List, Value::Array(items)) => {
                let strs: Option<Vec<String>> =
                    items.iter().map(|i| if let Value::Str(s) = &i.value { Some(s.clone()) } else { None }).collect();
                match strs {
                    Some(v) => {
                        let bad: Vec<_> = items
                            .iter()
                            .zip(&v)
                            .filter_map(|(i, s)| Some((i.span, crate::syntax::module::parse_option_string(s).err()?)))
                            .collect();
                        for (span, e) in bad {
                            self.err(Diagnostic::error("E0003", e.message).primary(span, "invalid list item").with_help(e.help));
                        }
                        Some(jv(&v))
                    }
                    None => return expected(self, "a list of strings"),
                }
            }
            (t, _) => {
                let what = match t {
                    OptType::Int | OptType::Port => "an integer",
                    OptType::Bool => "a boolean",
                    OptType::List => "a list of strings",
                    _ => "a string",
                };
                return expected(self, what);
            }
        };
        if let (Some(v), false) = (&v, o.values.is_empty())
            && let Some(s) = v.as_str()
            && !o.values.iter().any(|x| x.value == s)
        {
            let names: Vec<&str> = o.values.iter().map(|x| x.value.as_str()).collect();
            self.err(
                Diagnostic::error("E0003", format!("`{s}` is not a value of option `{}`", o.name.value))
                    .primary(n.span, "not allowed")
                    .help(match did_you_mean(s, names.iter().copied()) {
                        Some(m) => format!("did you mean `{m}`?"),
                        None => format!("expected one of {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
                    }),
            );
            return None;
        }
        v
    }

    fn service(
        &mut self,
        p: &Partial<'a>,
        all: &BTreeMap<String, Partial<'a>>,
        hosts: &BTreeMap<String, Host>,
        secrets: &BTreeMap<String, &'a SecretDecl>,
        sys: &SystemDecl,
    ) -> Option<Service> {
        let m = &p.module.decl;
        let s = p.decl;
        let errors_before = self.errors();
        let deps = self.deps(p, all, hosts);
        // Secrets: every slot bound to a declared secret.
        let mut secret_uses = Vec::new();
        for (slot, secret) in &s.secrets {
            let Some(decl) = m.secrets.iter().find(|x| x.slot.value == slot.value) else {
                let mut d = Diagnostic::error("E0023", format!("module `{}` takes no secret `{}`", m.name.value, slot.value))
                    .primary(slot.span, "unknown secret slot");
                if let Some(x) = did_you_mean(&slot.value, m.secrets.iter().map(|x| x.slot.value.as_str())) {
                    d = d.help(format!("did you mean `{x}`?"));
                }
                self.err(d);
                continue;
            };
            if !secrets.contains_key(&secret.value) {
                self.err(
                    Diagnostic::error("undefined-secret", format!("secret `{}` is referenced but not defined", secret.value))
                        .primary(secret.span, "not declared in `[secrets]`")
                        .help(match did_you_mean(&secret.value, secrets.keys().map(String::as_str)) {
                            Some(x) => format!("did you mean `{x}`?"),
                            None => format!("declare it: `[secrets.{}]` with `file = \"secrets.sops.yaml\"`", secret.value),
                        }),
                );
                continue;
            }
            let target = decl.target.as_ref().map(|t| t.value.clone()).unwrap_or_else(|| format!("/run/secrets/{}", slot.value));
            secret_uses.push(SecretUse { slot: slot.value.clone(), secret: secret.value.clone(), target, uid: decl.uid });
        }
        for decl in &m.secrets {
            if !decl.optional && !s.secrets.iter().any(|(slot, _)| slot.value == decl.slot.value) {
                self.err(
                    Diagnostic::error("E0025", format!("service `{}` needs secret `{}`", s.name.value, decl.slot.value))
                        .primary(s.name.span, format!("module `{}` requires it", m.name.value))
                        .help(format!("add `secrets.{} = \"NAME\"` naming a secret from `[secrets]`", decl.slot.value)),
                );
            }
        }
        secret_uses.sort_by(|a, b| a.slot.cmp(&b.slot));
        if !p.ok || self.errors() > errors_before || connects_unresolved(p, all) {
            return None;
        }

        let host = hosts.get(&p.host)?;
        let ctx = self.context(p, host, &deps, &secret_uses, sys);
        let tpl = &self.tpls[&m.name.value];
        let render = |me: &mut Self, v: &Sp<String>| -> Option<String> {
            match tpl.render_str(&v.value, &ctx) {
                Ok(s) => Some(s),
                Err(e) => {
                    me.err(e.at(v.span).secondary(s.name.span, "while instantiating this service"));
                    None
                }
            }
        };
        let container = match &m.container {
            Some(c) if m.kind.value == ModuleKind::Container => {
                let image_sp = c.image.as_ref()?;
                let image_s = render(self, image_sp)?;
                let image = match ImageRef::parse(&image_s) {
                    Ok(i) => i,
                    Err(e) => {
                        self.err(Diagnostic::error("E0003", e.message).primary(image_sp.span, "invalid image").with_help(e.help));
                        return None;
                    }
                };
                let list = |me: &mut Self, l: &Option<Vec<Sp<String>>>| -> Option<Vec<String>> {
                    l.as_ref().map(|l| l.iter().filter_map(|x| render(me, x)).collect())
                };
                let command = list(self, &c.command);
                let entrypoint = list(self, &c.entrypoint);
                let mut environment = BTreeMap::new();
                for (k, v) in &c.environment {
                    if let Some(r) = render(self, v) {
                        environment.insert(k.value.clone(), r);
                    }
                }
                let user = c.user.as_ref().and_then(|u| render(self, u));
                Some(Container {
                    image,
                    user,
                    read_only: c.read_only.as_ref().is_some_and(|b| b.value),
                    tmpfs: c.tmpfs.iter().map(|t| t.value.clone()).collect(),
                    command,
                    entrypoint,
                    environment,
                    cap_drop: c.cap_drop.iter().map(|t| t.value.clone()).collect(),
                    cap_add: c.cap_add.iter().map(|t| t.value.clone()).collect(),
                    stop_grace_period: c.stop_grace_period.as_ref().map(|d| d.value),
                    network_mode: c.network_mode.as_ref().map(|d| d.value.clone()),
                    docker_socket: c.docker_socket.as_ref().is_some_and(|b| b.value),
                    shm_size: c.shm_size.as_ref().map(|s| s.value),
                    init: c.init.as_ref().is_some_and(|b| b.value),
                })
            }
            _ => None,
        };
        if m.kind.value == ModuleKind::Container && m.container.is_none() {
            self.err(
                Diagnostic::error("E0026", format!("container module `{}` has no `[container]` table", m.name.value))
                    .primary(m.kind.span, "declared a container here"),
            );
        }
        let native = m.native.as_ref().map(|n| Native {
            packages: n.packages.iter().map(|p| p.value.clone()).collect(),
            unit: n.unit.as_ref().map(|u| u.value.clone()),
        });
        let mut files = Vec::new();
        for f in &m.files {
            match tpl.render_file(&f.template.value, &ctx) {
                Ok(content) => files.push(ConfigFile { name: f.name.value.clone(), target: f.target.value.clone(), mode: f.mode, content }),
                Err(e) => {
                    let span = self.template_line_span(p.module, &f.template.value, e.line).unwrap_or(f.template.span);
                    self.err(e.at(span).secondary(s.name.span, "while instantiating this service"));
                }
            }
        }
        let health = m.healthcheck.as_ref().map(|h| crate::model::Health {
            test: h.test.iter().filter_map(|t| render(self, t)).collect(),
            interval: h.interval,
            timeout: h.timeout,
            retries: h.retries,
            start_period: h.start_period,
        });
        let metrics = m.metrics.as_ref().and_then(|mt| {
            let port = p.endpoints.iter().find(|e| e.name == mt.endpoint.value).map(|e| e.port);
            if port.is_none() {
                self.err(
                    Diagnostic::error(
                        "E0027",
                        format!("metrics endpoint `{}` is not an endpoint of `{}`", mt.endpoint.value, m.name.value),
                    )
                    .primary(mt.endpoint.span, "no such endpoint"),
                );
            }
            Some(Metrics { endpoint: mt.endpoint.value.clone(), port: port?, path: mt.path.clone() })
        });
        let backup = m.backup.as_ref().map(|b| Backup {
            dump: b.dump.as_ref().map(|d| d.iter().filter_map(|x| render(self, x)).collect()),
            volumes: b.volumes.iter().map(|v| v.value.clone()).collect(),
        });
        for e in &s.expose {
            if !p.endpoints.iter().any(|x| x.name == e.value) {
                let mut d = Diagnostic::error("E0028", format!("module `{}` has no endpoint `{}`", m.name.value, e.value))
                    .primary(e.span, "unknown endpoint");
                if let Some(x) = did_you_mean(&e.value, p.endpoints.iter().map(|x| x.name.as_str())) {
                    d = d.help(format!("did you mean `{x}`?"));
                }
                self.err(d);
            }
        }
        if let Some(h) = hosts.get(&p.host) {
            for b in &s.bridges {
                if !h.bridges.contains_key(&b.value) {
                    let mut d = Diagnostic::error("E0010", format!("host `{}` has no bridge `{}`", p.host, b.value))
                        .primary(b.span, "unknown bridge");
                    d = match did_you_mean(&b.value, h.bridges.keys().map(String::as_str)) {
                        Some(x) => d.help(format!("did you mean `{x}`?")),
                        None => d.help(format!("declare it as `[hosts.{}.bridges.{}]`", p.host, b.value)),
                    };
                    self.err(d);
                }
            }
        }
        if let Some(ph) = &s.phase
            && !(0..=99).contains(&ph.value)
        {
            self.err(Diagnostic::error("E0003", format!("phase {} is out of range", ph.value)).primary(ph.span, "expected 0 to 99"));
        }
        for (vol, _) in &s.volumes {
            if !m.volumes.iter().any(|v| v.name.value == vol.value) {
                let mut d = Diagnostic::error("E0028", format!("module `{}` has no volume `{}`", m.name.value, vol.value))
                    .primary(vol.span, "unknown volume");
                if let Some(x) = did_you_mean(&vol.value, m.volumes.iter().map(|v| v.name.value.as_str())) {
                    d = d.help(format!("did you mean `{x}`?"));
                }
                self.err(d);
            }
        }
        if self.errors() > errors_before {
            return None;
        }
        let volume_source = |v: &str| {
            s.volumes.iter().find(|(k, _)| k.value == v).map(|(_, n)| n.value.clone()).unwrap_or_else(|| format!("{}-{v}", s.name.value))
        };
        let module_resources = m.resources.as_ref();
        let resources = Resources {
            memory: s.memory.as_ref().map(|m| m.value).or_else(|| module_resources.and_then(|r| r.memory.as_ref()).map(|m| m.value)),
            cpus: s.cpus.as_ref().map(|c| c.value).or_else(|| module_resources.and_then(|r| r.cpus.as_ref()).map(|c| c.value)),
        };
        Some(Service {
            name: s.name.value.clone(),
            module: m.name.value.clone(),
            module_version: m.version.value.clone(),
            host: p.host.clone(),
            kind: m.kind.value,
            edge: m.edge.as_ref().map(|e| e.value.clone()),
            container,
            native,
            endpoints: p.endpoints.clone(),
            volumes: m
                .volumes
                .iter()
                .map(|v| Volume {
                    name: v.name.value.clone(),
                    source: volume_source(&v.name.value),
                    target: v.target.value.clone(),
                    backup: v.backup,
                })
                .collect(),
            health,
            deps,
            secrets: secret_uses,
            files,
            metrics,
            backup,
            resources,
            published: Vec::new(),
            bridges: s.bridges.iter().map(|b| b.value.clone()).collect(),
            phase: s.phase.as_ref().and_then(|p| u32::try_from(p.value).ok()).unwrap_or(0),
            expose: s.expose.iter().map(|e| e.value.clone()).collect(),
            options: p.options.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
            span: s.name.span,
        })
    }

    fn template_line_span(&self, m: &LoadedModule, name: &str, line: Option<usize>) -> Option<Span> {
        let (id, text) = m.templates.get(name)?;
        let line = line?;
        let start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
        let len = text[start.min(text.len())..].lines().next().map(str::len).unwrap_or(0);
        Some(Span::new(*id, start..start + len))
    }

    fn context(&self, p: &Partial<'a>, host: &Host, deps: &[Dependency], secrets: &[SecretUse], sys: &SystemDecl) -> J {
        let requires: BTreeMap<String, J> = deps
            .iter()
            .filter_map(|d| {
                Some((
                    d.slot.clone()?,
                    minijinja::context! { service => d.service.clone(), address => d.address.clone(), port => d.port, same_host => d.same_host },
                ))
            })
            .collect();
        let secret_paths: BTreeMap<String, String> = secrets.iter().map(|s| (s.slot.clone(), s.target.clone())).collect();
        let endpoints: BTreeMap<String, u16> = p.endpoints.iter().map(|e| (e.name.clone(), e.port)).collect();
        let mut ctx: BTreeMap<&str, J> = BTreeMap::new();
        ctx.insert("options", jv(&p.options));
        ctx.insert("service", minijinja::context! { name => p.decl.name.value.clone(), host => p.host.clone() });
        ctx.insert(
            "host",
            minijinja::context! { name => host.name.clone(), address => host.private_address().map(|a| a.to_string()), public => host.public },
        );
        ctx.insert(
            "system",
            minijinja::context! { name => sys.name.as_ref().map(|n| n.value.clone()), domains => sys.domains.iter().map(|d| d.value.clone()).collect::<Vec<_>>() },
        );
        ctx.insert("requires", jv(&requires));
        ctx.insert("secrets", jv(&secret_paths));
        ctx.insert("endpoints", jv(&endpoints));
        let scrape: Vec<J> = deps
            .iter()
            .filter(|d| d.derived)
            .map(|d| minijinja::context! { service => d.service.clone(), address => d.address.clone(), port => d.port, path => d.path.clone() })
            .collect();
        ctx.insert("scrape", jv(&scrape));
        ctx.insert("probes", self.probes.clone());
        jv(&ctx)
    }

    /// Binds `connects` entries to services and endpoints, and fills the module's requirement slots.
    fn deps(&mut self, p: &Partial<'a>, all: &BTreeMap<String, Partial<'a>>, hosts: &BTreeMap<String, Host>) -> Vec<Dependency> {
        let m = &p.module.decl;
        let mut out: Vec<Dependency> = Vec::new();
        let mut filled: BTreeSet<String> = BTreeSet::new();
        for c in &p.decl.connects {
            let (svc_name, ep_name) = match c.value.split_once('.') {
                Some((a, b)) => (a, Some(b)),
                None => (c.value.as_str(), None),
            };
            let Some(target) = all.get(svc_name) else {
                // A declared service that did not resolve has reported its own error.
                if !self.declared_service(svc_name) {
                    let sp = Sp::new(svc_name.to_string(), c.span);
                    self.unknown("service", &sp, all.keys(), "services");
                }
                continue;
            };
            if svc_name == p.decl.name.value {
                self.err(Diagnostic::error("E0030", format!("service `{svc_name}` connects to itself")).primary(c.span, "remove this"));
                continue;
            }
            let tmod = &target.module.decl.name.value;
            let slot = m.requires.iter().find(|r| !filled.contains(&r.slot.value) && r.modules.iter().any(|x| &x.value == tmod));
            let ep_name = ep_name.map(str::to_string).or_else(|| slot.and_then(|s| s.endpoint.as_ref().map(|e| e.value.clone())));
            let endpoint = match ep_name {
                Some(n) => target.endpoints.iter().find(|e| e.name == n),
                None => {
                    let candidates: Vec<&Endpoint> = target
                        .endpoints
                        .iter()
                        .filter(|e| target.module.decl.metrics.as_ref().is_none_or(|mt| mt.endpoint.value != e.name))
                        .collect();
                    if candidates.len() == 1 { Some(candidates[0]) } else { None }
                }
            };
            let Some(endpoint) = endpoint else {
                let names: Vec<String> = target.endpoints.iter().map(|e| format!("`{svc_name}.{}`", e.name)).collect();
                self.err(
                    Diagnostic::error("E0031", format!("cannot tell which endpoint of `{svc_name}` this connects to"))
                        .primary(c.span, "ambiguous or unknown endpoint")
                        .help(if names.is_empty() {
                            format!("`{svc_name}` exposes no endpoints")
                        } else {
                            format!("write one of {}", names.join(", "))
                        }),
                );
                continue;
            };
            if let Some(slot) = slot {
                filled.insert(slot.slot.value.clone());
            }
            let same_host = target.host == p.host;
            let address = match reach(p, target, svc_name, hosts) {
                Ok(a) => a,
                Err(Unreachable::Bridge) => {
                    self.err(
                        Diagnostic::error("E0034", format!("`{}` and `{svc_name}` share no bridge", p.decl.name.value))
                            .primary(c.span, "this connection crosses Docker networks")
                            .help(format!(
                                "add a bridge of `{svc_name}` ({}) to `{}`'s `bridges`",
                                bridges_of(target.decl).join(", "),
                                p.decl.name.value
                            )),
                    );
                    continue;
                }
                Err(Unreachable::HostAddress) => {
                    self.err(
                        Diagnostic::error(
                            "E0032",
                            format!("container `{}` cannot reach native `{svc_name}` on host `{}`", p.decl.name.value, p.host),
                        )
                        .primary(c.span, "the host has no private address to reach it at")
                        .help(format!("put host `{}` on a private network with `[hosts.{}.networks]`", p.host, p.host)),
                    );
                    continue;
                }
                Err(Unreachable::PrivateNetwork) => {
                    self.err(
                        Diagnostic::error(
                            "E0032",
                            format!("`{}` on host `{}` cannot reach `{svc_name}` on host `{}`", p.decl.name.value, p.host, target.host),
                        )
                        .primary(c.span, "no private network between these hosts")
                        .help(format!("put host `{}` on a private network with `[hosts.{}.networks]`", target.host, target.host)),
                    );
                    continue;
                }
            };
            out.push(Dependency {
                slot: slot.map(|s| s.slot.value.clone()),
                service: svc_name.to_string(),
                endpoint: endpoint.name.clone(),
                port: endpoint.port,
                protocol: endpoint.protocol,
                address,
                same_host,
                usage: slot.and_then(|s| s.usage.as_ref()).map(|u| u.value.clone()),
                prepared_statements: slot.is_some_and(|s| s.prepared_statements),
                derived: false,
                path: None,
                span: c.span,
            });
        }
        if m.collect_metrics {
            out.extend(self.scrape_deps(p, all, hosts));
        }
        let unresolved = connects_unresolved(p, all);
        for r in &m.requires {
            // A connection to a service that did not resolve may be the one that fills it.
            if r.optional || filled.contains(&r.slot.value) || unresolved {
                continue;
            }
            let mods: Vec<String> = r.modules.iter().map(|x| format!("`{}`", x.value)).collect();
            let candidates: Vec<&String> =
                all.iter().filter(|(_, t)| r.modules.iter().any(|x| x.value == t.module.decl.name.value)).map(|(n, _)| n).collect();
            let help = match candidates.first() {
                Some(c) => format!("add `\"{c}\"` to `connects`"),
                None => format!("declare a service of module {} and add it to `connects`", mods.join(" or ")),
            };
            self.err(
                Diagnostic::error("E0033", format!("service `{}` needs a `{}` ({})", p.decl.name.value, r.slot.value, mods.join(" or ")))
                    .primary(p.decl.name.span, format!("nothing in `connects` fills `{}`", r.slot.value))
                    .secondary(r.slot.span, "required here")
                    .help(help),
            );
        }
        out.sort_by(|a, b| (&a.service, &a.endpoint, a.derived).cmp(&(&b.service, &b.endpoint, b.derived)));
        out.dedup_by(|a, b| a.service == b.service && a.endpoint == b.endpoint && a.derived == b.derived);
        out
    }

    /// A metrics collector's derived connections: one to every metrics endpoint it can reach.
    fn scrape_deps(&mut self, p: &Partial<'a>, all: &BTreeMap<String, Partial<'a>>, hosts: &BTreeMap<String, Host>) -> Vec<Dependency> {
        let mut out = Vec::new();
        for (name, t) in all.iter().filter(|(n, _)| **n != p.decl.name.value) {
            let Some(mt) = &t.module.decl.metrics else { continue };
            let Some(ep) = t.endpoints.iter().find(|e| e.name == mt.endpoint.value) else { continue };
            let same_host = t.host == p.host;
            let address = reach(p, t, name, hosts).ok();
            let Some(address) = address else {
                self.err(
                    Diagnostic::warning("unscraped-metrics", format!("`{}` cannot reach the metrics of `{name}`", p.decl.name.value))
                        .primary(t.decl.name.span, "these metrics are not collected")
                        .help(if same_host {
                            format!("give `{name}` and `{}` a common bridge", p.decl.name.value)
                        } else {
                            format!("put host `{}` on a private network", t.host)
                        })
                        .about("services", p.decl.name.value.clone()),
                );
                continue;
            };
            out.push(Dependency {
                slot: None,
                service: name.clone(),
                endpoint: ep.name.clone(),
                port: ep.port,
                protocol: ep.protocol,
                address,
                same_host,
                usage: None,
                prepared_statements: false,
                derived: true,
                path: Some(mt.path.clone()),
                span: p.decl.name.span,
            });
        }
        out
    }

    /// A service that answers an edge's forward-auth requests (an authenticator or a bouncer).
    fn forward_auth(
        &mut self,
        r: &Sp<String>,
        services: &BTreeMap<String, Service>,
        edge: &Service,
        hosts: &BTreeMap<String, Host>,
        what: &str,
        modules: &str,
    ) -> Option<ForwardAuth> {
        let Some(asvc) = services.get(&r.value) else {
            self.unknown("service", r, services.keys(), "services");
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
        let ep = asvc.endpoint(&fa.endpoint.value)?;
        let upstream = upstream_address(asvc, ep.port, edge, hosts)?;
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

    /// Whether a service is declared, though it may not have resolved (then its own error is
    /// reported, and nothing that refers to it adds another).
    fn declared_service(&self, name: &str) -> bool {
        self.inputs.files.iter().flat_map(|f| &f.services).any(|s| s.name.value == name)
    }

    fn routes(
        &mut self,
        routes: &BTreeMap<String, &'a RouteDecl>,
        services: &BTreeMap<String, Service>,
        hosts: &BTreeMap<String, Host>,
    ) -> Vec<Route> {
        let edges: Vec<&Service> = services.values().filter(|s| s.edge.is_some()).collect();
        let mut out = Vec::new();
        for (hostname, r) in routes {
            let Some(svc_ref) = &r.service else { continue };
            let Some(svc) = services.get(&svc_ref.value) else {
                if !self.inputs.files.iter().flat_map(|f| &f.services).any(|s| s.name.value == svc_ref.value) {
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
            let edge = match &r.edge {
                Some(e) => match services.get(&e.value) {
                    Some(s) if s.edge.is_some() => s,
                    Some(_) => {
                        self.err(
                            Diagnostic::error("E0042", format!("service `{}` is not an edge proxy", e.value))
                                .primary(e.span, "cannot terminate routes"),
                        );
                        continue;
                    }
                    None => {
                        if !self.declared_service(&e.value) {
                            self.unknown("service", e, edges.iter().map(|s| &s.name), "services");
                        }
                        continue;
                    }
                },
                None if edges.len() == 1 => edges[0],
                // A service that did not resolve (its error is reported) may be the edge.
                None if self.inputs.files.iter().flat_map(|f| &f.services).any(|s| !services.contains_key(&s.name.value)) => continue,
                None => {
                    self.err(
                        Diagnostic::error("E0043", format!("route `{hostname}` has no edge to terminate it"))
                            .primary(r.hostname.span, if edges.is_empty() { "no edge proxy in the system" } else { "several edge proxies" })
                            .help(if edges.is_empty() {
                                "add a service of module `caddy` on a public host".to_string()
                            } else {
                                format!("add `edge = \"{}\"`", edges[0].name)
                            }),
                    );
                    continue;
                }
            };
            let Some(upstream) = upstream_address(svc, endpoint.port, edge, hosts) else {
                self.err(
                    Diagnostic::error("E0032", format!("the edge on `{}` cannot reach `{}` on `{}`", edge.host, svc.name, svc.host))
                        .primary(svc_ref.span, "no private network between these hosts"),
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
            let tls = r.tls.as_ref().map(|t| t.value).unwrap_or(TlsMode::Acme);
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
            if self.errors() > errors {
                continue;
            }
            out.push(Route {
                hostname: hostname.clone(),
                service: svc.name.clone(),
                endpoint: endpoint.name.clone(),
                upstream,
                tls,
                auth,
                crowdsec,
                rate_limit: r.rate_limit.as_ref().map(|(a, b, _)| {
                    let avg = a.value.clamp(1, u32::MAX as i64) as u32;
                    (avg, b.as_ref().map(|b| b.value.clamp(1, u32::MAX as i64) as u32).unwrap_or(avg))
                }),
                cors: r.cors.iter().map(|c| c.value.clone()).collect(),
                allow: r.allow.iter().map(|c| c.value).collect(),
                edge_service: edge.name.clone(),
                edge_host: edge.host.clone(),
                span: r.hostname.span,
            });
        }
        out
    }
}

/// How an edge reaches a service's port: a containerised edge uses the Compose network on its
/// own host; a native edge uses loopback there (the port is published on it); from another
/// host it is the service host's private address.
/// Whether a service connects to one that did not resolve: its requirements and templates
/// cannot be judged (the other service's error is the report).
fn connects_unresolved(p: &Partial<'_>, all: &BTreeMap<String, Partial<'_>>) -> bool {
    p.decl.connects.iter().any(|c| !all.contains_key(c.value.split('.').next().unwrap_or_default()))
}

fn upstream_address(svc: &Service, port: u16, edge: &Service, hosts: &BTreeMap<String, Host>) -> Option<String> {
    if svc.host == edge.host {
        return Some(match (edge.container.is_some(), svc.container.is_some()) {
            (true, true) => format!("{}:{port}", svc.name),
            (true, false) => hosts.get(&svc.host)?.private_address().map(|a| socket(a, port))?,
            (false, _) => format!("127.0.0.1:{port}"),
        });
    }
    Some(socket(hosts.get(&svc.host)?.private_address()?, port))
}

fn socket(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn jv<T: serde::Serialize>(v: &T) -> J {
    J::from(minijinja::value::Serde(v))
}

/// What is missing for one service to reach another.
enum Unreachable {
    /// A common bridge between two containers on one host.
    Bridge,
    /// A private address of the host, for a container reaching a native service on it.
    HostAddress,
    /// A private network between two hosts.
    PrivateNetwork,
}

/// How `from` reaches `to` (named `name`): the Compose service name over a common bridge, the
/// loopback for a native service, else the target host's private address.
fn reach(from: &Partial<'_>, to: &Partial<'_>, name: &str, hosts: &BTreeMap<String, Host>) -> Result<String, Unreachable> {
    let native = |m: &LoadedModule| m.decl.kind.value == ModuleKind::Native;
    let private = || hosts.get(&to.host).and_then(|h| h.private_address()).map(|a| a.to_string());
    if to.host != from.host {
        return private().ok_or(Unreachable::PrivateNetwork);
    }
    match (native(from.module), native(to.module)) {
        (false, false) if shares_bridge(from.decl, to.decl) => Ok(name.to_string()),
        (false, false) => Err(Unreachable::Bridge),
        // a native service reaches a container through a port published on loopback, and a
        // native service on the host itself
        (true, _) => Ok("127.0.0.1".to_string()),
        // a container reaches a native service at the host's own address
        (false, true) => private().ok_or(Unreachable::HostAddress),
    }
}

/// The Docker networks a service joins: its `bridges`, or the host's default network.
fn bridges_of(s: &ServiceDecl) -> Vec<String> {
    if s.bridges.is_empty() { vec!["default".to_string()] } else { s.bridges.iter().map(|b| b.value.clone()).collect() }
}

fn shares_bridge(a: &ServiceDecl, b: &ServiceDecl) -> bool {
    let bb = bridges_of(b);
    bridges_of(a).iter().any(|x| bb.contains(x))
}
