//! Identity as code: a service's `login = "IDP"` fills its module's `[oidc]` options, and every
//! authentik service gets the blueprint declaring the providers, applications and outpost
//! binding that its forward-auth routes and its OIDC clients need, mounted on the workers that
//! apply it, with each client secret delivered to them as a file.

use super::*;

/// The module whose services kiln declares objects in (through blueprints).
pub(super) const AUTHENTIK: &str = "authentik";
/// The companion module that applies blueprints (authentik runs them as worker tasks).
const AUTHENTIK_WORKER: &str = "authentik-worker";
/// authentik discovers `**/*.yaml` under its blueprints directory (`/blueprints`, config
/// `blueprints_dir`; authentik/blueprints/v1/tasks.py `blueprints_find`), skipping dot paths.
pub const BLUEPRINT_DIR: &str = "/blueprints/kiln";
/// Where a worker reads an OIDC client's secret (`!File`), per client service.
pub const CLIENT_SECRET_DIR: &str = "/run/secrets/kiln-oidc";

/// The client id (and application slug) of a service logging in: its name.
pub fn client_id(service: &str) -> String {
    service.to_string()
}

/// The slug of the forward-auth application of a route: `kiln-` and the hostname, dots as
/// dashes (authentik slugs are `[-a-zA-Z0-9_]`).
pub fn proxy_slug(hostname: &str) -> String {
    let host: String = hostname.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    format!("kiln-{host}")
}

impl<'a> Resolver<'a> {
    /// `login = "IDP"`: the module's issuer and client-id options, set from the provider's
    /// route and the service's name. Reported at `login` when the module speaks no OIDC or the
    /// provider cannot be wired; a given value of either option is reported as a conflict.
    pub(super) fn oidc_options(&mut self, s: &ServiceDecl, m: &ModuleDecl, out: &mut BTreeMap<String, J>) {
        let Some(login) = &s.login else { return };
        let Some(oidc) = &m.oidc else {
            self.err(
                Diagnostic::error("E0060", format!("module `{}` does not sign in over OpenID Connect", m.name.value))
                    .primary(login.span, "kiln cannot register this service with a provider")
                    .help("remove `login`, or use a module that declares `[oidc]` (`kiln modules show NAME`)"),
            );
            return;
        };
        let Some(host) = self.idp_route(login) else { return };
        let id = client_id(&s.name.value);
        for (option, value) in
            [(&oidc.issuer_option.value, format!("https://{host}/application/o/{id}/")), (&oidc.client_id_option.value, id.clone())]
        {
            if let Some((name, _)) = s.options.iter().find(|(n, _)| n.value == *option) {
                self.err(
                    Diagnostic::error("E0060", format!("option `{option}` of `{}` is set by `login`", s.name.value))
                        .primary(name.span, "given here as well")
                        .secondary(login.span, "the provider's setting comes from here")
                        .help(format!("remove `options.{option}`")),
                );
            }
            out.insert(option.clone(), J::from(value));
        }
    }

    /// The public hostname of the provider `login` names (its first route by name), after
    /// checking that it is an authentik service; `None` when reported.
    fn idp_route(&mut self, login: &Sp<String>) -> Option<String> {
        let inputs = self.inputs;
        let files = &inputs.files;
        let Some(idp) = files.iter().flat_map(|f| &f.services).find(|d| d.name.value == login.value) else {
            let names: Vec<String> = files.iter().flat_map(|f| &f.services).map(|d| d.name.value.clone()).collect();
            self.unknown("service", login, names.iter(), "services");
            return None;
        };
        let module = idp.module.as_ref()?;
        if module.value != AUTHENTIK {
            self.err(
                Diagnostic::error("E0060", format!("`{}` is not an authentik service", login.value))
                    .primary(login.span, format!("a service of module `{}`", module.value))
                    .secondary(module.span, "its module")
                    .help("kiln registers OpenID Connect clients in authentik (blueprints); name a service of module `authentik`, or configure the client by hand through the module's options"),
            );
            return None;
        }
        let route = files
            .iter()
            .flat_map(|f| &f.routes)
            .filter(|r| r.service.as_ref().is_some_and(|s| s.value == login.value))
            .map(|r| &r.hostname.value)
            .min();
        if route.is_none() {
            self.err(
                Diagnostic::error("E0060", format!("the identity provider `{}` has no route", login.value))
                    .primary(login.span, "its issuer URL is on its public route")
                    .secondary(idp.name.span, "declared here")
                    .help(format!("add a route: `[routes.\"auth.example.com\"]` with `service = \"{}\"`", login.value)),
            );
        }
        route.cloned()
    }

    /// Every authentik service's blueprint, as a file on each worker sharing its database, and
    /// each OIDC client's secret delivered to those workers.
    pub(super) fn identity(&mut self, sys: &mut System) {
        let logins: Vec<(&Sp<String>, &ServiceDecl)> =
            self.inputs.files.iter().flat_map(|f| &f.services).filter_map(|s| Some((s.login.as_ref()?, s))).collect();
        let idps: Vec<String> = sys.services.values().filter(|s| s.module == AUTHENTIK).map(|s| s.name.clone()).collect();
        // Looked up once per provider: routes by the service behind them and by their forward
        // auth, workers by the services they connect to (scans per provider were quadratic).
        let mut routes_by_service: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut routes_by_auth: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, r) in sys.routes.iter().enumerate() {
            routes_by_service.entry(r.service.as_str()).or_default().push(i);
            if let Some(a) = &r.auth {
                routes_by_auth.entry(a.service.as_str()).or_default().push(i);
            }
        }
        let mut workers_by_dep: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in sys.services.values().filter(|s| s.module == AUTHENTIK_WORKER) {
            let deps: BTreeSet<&str> = s.deps.iter().map(|d| d.service.as_str()).collect();
            for d in deps {
                workers_by_dep.entry(d.to_string()).or_default().push(s.name.clone());
            }
        }
        let mut logins_by_idp: BTreeMap<&str, Vec<(&Sp<String>, &ServiceDecl)>> = BTreeMap::new();
        for (l, d) in &logins {
            logins_by_idp.entry(l.value.as_str()).or_default().push((l, d));
        }
        let routes_of = |index: &BTreeMap<&str, Vec<usize>>, service: &str| index.get(service).map_or(&[][..], Vec::as_slice).to_vec();
        for idp in idps {
            let mut bp = Blueprint { idp: idp.clone(), ..Blueprint::default() };
            let mut first: Option<Span> = None;
            for r in routes_of(&routes_by_auth, &idp).into_iter().map(|i| &sys.routes[i]) {
                first.get_or_insert(r.span);
                bp.proxies.push(ProxyApp { slug: proxy_slug(&r.hostname), external_host: format!("https://{}", r.hostname) });
            }
            let mut secrets = Vec::new();
            for (login, decl) in logins_by_idp.get(idp.as_str()).map_or(&[][..], Vec::as_slice) {
                let Some(app) = sys.services.get(&decl.name.value) else { continue };
                let Some(oidc) = self.inputs.modules.get(&app.module).and_then(|m| m.decl.oidc.as_ref()) else { continue };
                first.get_or_insert(login.span);
                let redirect_uris: Vec<String> = routes_of(&routes_by_service, &app.name)
                    .into_iter()
                    .map(|i| format!("https://{}{}", sys.routes[i].hostname, oidc.redirect_path.value))
                    .collect();
                if redirect_uris.is_empty() {
                    self.err(
                        Diagnostic::error("E0060", format!("`{}` logs in through `{idp}` but has no route", app.name))
                            .primary(login.span, "the provider redirects users back to the service's public route")
                            .help(format!("add a route with `service = \"{}\"`", app.name)),
                    );
                    continue;
                }
                // An unbound client-secret slot is reported with the service (`required_when`, or unbound).
                let Some(secret) = app.secrets.iter().find(|u| u.slot == oidc.client_secret.value) else { continue };
                let id = client_id(&app.name);
                let secret_file = format!("{CLIENT_SECRET_DIR}/{id}");
                secrets.push((secret.secret.clone(), secret_file.clone(), id.clone()));
                bp.clients.push(OidcClient { slug: id.clone(), client_id: id, redirect_uris, secret_file });
            }
            let Some(span) = first else { continue };
            let database: BTreeSet<&str> = sys.services[&idp].deps.iter().filter(|d| !d.derived).map(|d| d.service.as_str()).collect();
            let workers: BTreeSet<&String> = database.iter().filter_map(|d| workers_by_dep.get(*d)).flatten().collect();
            if workers.is_empty() {
                self.err(
                    Diagnostic::error("E0060", format!("no `{AUTHENTIK_WORKER}` applies the blueprint of `{idp}`"))
                        .primary(span, format!("needs a provider and application in `{idp}`"))
                        .help(format!("authentik applies blueprints in its worker: add a service of module `{AUTHENTIK_WORKER}` connected to the same database as `{idp}`")),
                );
                continue;
            }
            let content = crate::render::authentik::blueprint(&bp);
            for w in workers {
                let svc = sys.services.get_mut(w).expect("listed above");
                let uid = svc.container.as_ref().and_then(|c| c.user.as_deref()).and_then(|u| u.split(':').next()?.parse().ok());
                for (secret, target, id) in &secrets {
                    svc.secrets.push(SecretUse { slot: format!("kiln_oidc_{id}"), secret: secret.clone(), target: target.clone(), uid });
                }
                svc.secrets.sort_by(|a, b| a.slot.cmp(&b.slot));
                svc.files.push(ConfigFile {
                    name: format!("authentik-blueprint-{idp}.yaml"),
                    target: format!("{BLUEPRINT_DIR}/{idp}.yaml"),
                    mode: 0o644,
                    content: content.clone(),
                });
            }
        }
    }
}
