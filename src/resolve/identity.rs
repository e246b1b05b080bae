//! Identity as code: a service's `login = "IDP"` fills its module's `[oidc]` options, and every
//! identity provider service gets the objects its forward-auth routes, its OIDC clients and its
//! social logins need, as files it loads at start: authentik a blueprint (providers,
//! applications, outpost binding, OAuth sources) mounted on the workers that apply it, Keycloak a
//! realm it imports. Each client secret is delivered to the provider's container as a file.

use super::*;
use crate::syntax::system::SocialLoginDecl;

/// The module whose services kiln declares objects in (through blueprints).
pub(super) const AUTHENTIK: &str = "authentik";
/// The companion module that applies blueprints (authentik runs them as worker tasks).
const AUTHENTIK_WORKER: &str = "authentik-worker";
/// Keycloak: clients in a realm it imports at start (`--import-realm`).
const KEYCLOAK: &str = "keycloak";
/// Zitadel: applications are created through its API only (not wired).
const ZITADEL: &str = "zitadel";
/// authentik discovers `**/*.yaml` under its blueprints directory (`/blueprints`, config
/// `blueprints_dir`; authentik/blueprints/v1/tasks.py `blueprints_find`), skipping dot paths.
pub const BLUEPRINT_DIR: &str = "/blueprints/kiln";
/// Keycloak imports the `*.json` files of `data/import` with `--import-realm` (keycloak.org
/// server/importExport "Importing a Realm during Startup"; /opt/keycloak/data/import in the image).
pub const KEYCLOAK_IMPORT_DIR: &str = "/opt/keycloak/data/import";
/// Where a provider's container reads an OIDC client's secret (`!File`), per client service.
pub const CLIENT_SECRET_DIR: &str = "/run/secrets/kiln-oidc";
/// Where authentik's worker reads a social login's client secret, per kind.
pub const SOURCE_SECRET_DIR: &str = "/run/secrets/kiln-social";
/// The kinds of upstream provider authentik has a source type for (its `provider_type` enum,
/// authentik/sources/oauth/types/; `openidconnect`, `okta` and `mailcow` need URLs kiln does not
/// take, so they are left out).
pub const SOCIAL_KINDS: [&str; 13] =
    ["apple", "discord", "entraid", "facebook", "github", "gitlab", "google", "patreon", "reddit", "slack", "twitch", "twitter", "wechat"];

/// The identity provider modules kiln registers clients in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpKind {
    Authentik,
    Keycloak,
}

/// The client id (and application slug) of a service logging in: its name.
pub fn client_id(service: &str) -> String {
    service.to_string()
}

/// The issuer URL of client `id` at provider `idp` (a service of `kind` on route `host`):
/// authentik's per-application issuer, Keycloak's realm (named after its service).
pub fn issuer(kind: IdpKind, host: &str, idp: &str, id: &str) -> String {
    match kind {
        IdpKind::Authentik => format!("https://{host}/application/o/{id}/"),
        IdpKind::Keycloak => format!("https://{host}/realms/{idp}"),
    }
}

/// The authorization, token, userinfo and JWKS URLs (for applications without discovery):
/// authentik's (authentik/providers/oauth2/urls.py: `authorize/`, `token/`, `userinfo/` under
/// /application/o/, `SLUG/jwks/`), Keycloak's (`/realms/R/protocol/openid-connect/auth`,
/// `token`, `userinfo`, `certs`).
pub fn endpoints(kind: IdpKind, host: &str, idp: &str, id: &str) -> [String; 4] {
    match kind {
        IdpKind::Authentik => {
            let base = format!("https://{host}/application/o");
            [format!("{base}/authorize/"), format!("{base}/token/"), format!("{base}/userinfo/"), format!("{base}/{id}/jwks/")]
        }
        IdpKind::Keycloak => {
            let base = format!("https://{host}/realms/{idp}/protocol/openid-connect");
            [format!("{base}/auth"), format!("{base}/token"), format!("{base}/userinfo"), format!("{base}/certs")]
        }
    }
}

/// The slug of the forward-auth application of a route: `kiln-` and the hostname, dots as
/// dashes (authentik slugs are `[-a-zA-Z0-9_]`).
pub fn proxy_slug(hostname: &str) -> String {
    let host: String = hostname.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    format!("kiln-{host}")
}

impl<'a> Resolver<'a> {
    /// `login = "IDP"`: the module's issuer and client-id options (and endpoint options, where
    /// it declares them), set from the provider's route and the service's name. Reported at
    /// `login` when the module speaks no OIDC or the provider cannot be wired; a given value of
    /// any of these options is reported as a conflict.
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
        let Some((host, kind)) = self.idp_route(login) else { return };
        let id = client_id(&s.name.value);
        let mut set = vec![(&oidc.client_id_option.value, id.clone())];
        if let Some(o) = &oidc.issuer_option {
            set.push((&o.value, issuer(kind, &host, &login.value, &id)));
        }
        let urls = endpoints(kind, &host, &login.value, &id);
        for (option, url) in oidc.endpoint_options.iter().zip(urls) {
            if let Some(o) = option {
                set.push((&o.value, url));
            }
        }
        for (option, value) in set {
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

    /// The public hostname of the provider `login` names (its first route by name) and its kind,
    /// after checking that it is an authentik or Keycloak service; `None` when reported.
    fn idp_route(&mut self, login: &Sp<String>) -> Option<(String, IdpKind)> {
        let inputs = self.inputs;
        let files = &inputs.files;
        let Some(idp) = files.iter().flat_map(|f| &f.services).find(|d| d.name.value == login.value) else {
            let names: Vec<String> = files.iter().flat_map(|f| &f.services).map(|d| d.name.value.clone()).collect();
            self.unknown("service", login, names.iter(), "services");
            return None;
        };
        let module = idp.module.as_ref()?;
        // An unknown module is reported with the service itself.
        if !inputs.modules.contains_key(&module.value) {
            return None;
        }
        let kind = match module.value.as_str() {
            AUTHENTIK => IdpKind::Authentik,
            KEYCLOAK => IdpKind::Keycloak,
            ZITADEL => {
                self.err(
                    Diagnostic::error("E0060", format!("kiln cannot register clients in the Zitadel service `{}`", login.value))
                        .primary(login.span, "Zitadel creates projects and applications through its API only")
                        .secondary(module.span, "its module")
                        .help("create the application in Zitadel (console or API), then set the module's issuer, client id and client-secret slot by hand"),
                );
                return None;
            }
            other => {
                self.err(
                    Diagnostic::error("E0060", format!("`{}` is not an identity provider kiln registers clients in", login.value))
                        .primary(login.span, format!("a service of module `{other}`"))
                        .secondary(module.span, "its module")
                        .help("kiln registers OpenID Connect clients in authentik (blueprints) and Keycloak (realm import); name a service of module `authentik` or `keycloak`, or configure the client by hand through the module's options"),
                );
                return None;
            }
        };
        let route = files
            .iter()
            .flat_map(|f| &f.routes)
            .filter(|r| r.service.as_ref().is_some_and(|s| s.value == login.value))
            .map(|r| &r.hostname.value)
            .min();
        // A route naming a service that does not exist may be this one's: its error says so.
        if route.is_none() && !self.route_misnamed() {
            self.err(
                Diagnostic::error("E0060", format!("the identity provider `{}` has no route", login.value))
                    .primary(login.span, "its issuer URL is on its public route")
                    .secondary(idp.name.span, "declared here")
                    .help(format!("add a route: `[routes.\"auth.example.com\"]` with `service = \"{}\"`", login.value)),
            );
        }
        Some((route.cloned()?, kind))
    }

    /// The social logins of an authentik service: each kind known, each secret declared; the
    /// others reported (and skipped).
    fn social_sources(&mut self, decls: &[SocialLoginDecl], module: &str, sys: &System) -> Vec<(SocialSource, String)> {
        let mut out = Vec::new();
        for d in decls {
            if module != AUTHENTIK {
                self.err(
                    Diagnostic::error("E0060", "social logins are declared on an authentik service")
                        .primary(d.kind.span, format!("on a service of module `{module}`"))
                        .help("kiln writes social logins as authentik OAuth sources; move `social_logins` to the authentik service"),
                );
                continue;
            }
            if !SOCIAL_KINDS.contains(&d.kind.value.as_str()) {
                let mut diag = Diagnostic::error("E0060", format!("authentik has no social login of kind `{}`", d.kind.value))
                    .primary(d.kind.span, "unknown kind");
                diag = match crate::diag::did_you_mean(&d.kind.value, SOCIAL_KINDS.iter().copied()) {
                    Some(k) => diag.help(format!("did you mean `{k}`?")),
                    None => diag.help(format!("the kinds are {}", SOCIAL_KINDS.map(|k| format!("`{k}`")).join(", "))),
                };
                self.err(diag);
                continue;
            }
            let (Some(id), Some(secret)) = (&d.client_id, &d.client_secret) else { continue };
            if !sys.secrets.contains_key(&secret.value) {
                self.unknown("secret", secret, sys.secrets.keys(), "secrets");
                continue;
            }
            let kind = d.kind.value.clone();
            let secret_file = format!("{SOURCE_SECRET_DIR}/{kind}");
            out.push((SocialSource { kind, client_id: id.value.clone(), secret_file }, secret.value.clone()));
        }
        out
    }

    /// Every identity provider's objects: authentik's blueprint as a file on each worker sharing
    /// its database, Keycloak's realm as a file it imports; each OIDC client's secret (and each
    /// social login's) delivered to the containers that read it.
    pub(super) fn identity(&mut self, sys: &mut System) {
        let inputs = self.inputs;
        let logins: Vec<(&Sp<String>, &ServiceDecl)> =
            inputs.files.iter().flat_map(|f| &f.services).filter_map(|s| Some((s.login.as_ref()?, s))).collect();
        let socials: BTreeMap<&str, &[SocialLoginDecl]> = inputs
            .files
            .iter()
            .flat_map(|f| &f.services)
            .filter(|s| !s.social_logins.is_empty())
            .map(|s| (s.name.value.as_str(), s.social_logins.as_slice()))
            .collect();
        let idps: Vec<(String, String)> = sys
            .services
            .values()
            .filter(|s| s.module == AUTHENTIK || s.module == KEYCLOAK || socials.contains_key(s.name.as_str()))
            .map(|s| (s.name.clone(), s.module.clone()))
            .collect();
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
        for (idp, module) in idps {
            let sources = self.social_sources(socials.get(idp.as_str()).copied().unwrap_or_default(), &module, sys);
            let mut first: Option<Span> = socials.get(idp.as_str()).and_then(|d| d.first()).map(|d| d.kind.span);
            let mut proxies = Vec::new();
            if module == AUTHENTIK {
                for r in routes_of(&routes_by_auth, &idp).into_iter().map(|i| &sys.routes[i]) {
                    first.get_or_insert(r.span);
                    proxies.push(ProxyApp { slug: proxy_slug(&r.hostname), external_host: format!("https://{}", r.hostname) });
                }
            }
            // Each client: its provider entry, and (secret name, file, slot id) to deliver.
            let mut clients = Vec::new();
            let mut secrets = Vec::new();
            for (login, decl) in logins_by_idp.get(idp.as_str()).map_or(&[][..], Vec::as_slice) {
                let Some(app) = sys.services.get(&decl.name.value) else { continue };
                let Some(oidc) = inputs.modules.get(&app.module).and_then(|m| m.decl.oidc.as_ref()) else { continue };
                first.get_or_insert(login.span);
                let redirect_uris: Vec<String> = routes_of(&routes_by_service, &app.name)
                    .into_iter()
                    .map(|i| format!("https://{}{}", sys.routes[i].hostname, oidc.redirect_path.value))
                    .collect();
                if redirect_uris.is_empty() {
                    // Routes declared for it but dropped (their edge failed to resolve), or one
                    // naming a service that does not exist, have their own error.
                    let declared_route = self.route_misnamed()
                        || inputs.files.iter().flat_map(|f| &f.routes).any(|r| r.service.as_ref().is_some_and(|s| s.value == app.name));
                    if !declared_route {
                        self.err(
                            Diagnostic::error("E0060", format!("`{}` logs in through `{idp}` but has no route", app.name))
                                .primary(login.span, "the provider redirects users back to the service's public route")
                                .help(format!("add a route with `service = \"{}\"`", app.name)),
                        );
                    }
                    continue;
                }
                // An unbound client-secret slot is reported with the service (`required_when`, or unbound).
                let Some(secret) = app.secrets.iter().find(|u| u.slot == oidc.client_secret.value) else { continue };
                let id = client_id(&app.name);
                let secret_file = format!("{CLIENT_SECRET_DIR}/{id}");
                secrets.push((secret.secret.clone(), secret_file.clone(), format!("kiln_oidc_{id}")));
                clients.push(OidcClient { slug: id.clone(), client_id: id, redirect_uris, secret_file });
            }
            for (s, secret) in &sources {
                secrets.push((secret.clone(), s.secret_file.clone(), format!("kiln_social_{}", s.kind)));
            }
            let Some(span) = first else { continue };
            let (readers, file) = if module == KEYCLOAK {
                let realm = Realm { name: idp.clone(), clients };
                let file = ConfigFile {
                    name: format!("keycloak-realm-{idp}.json"),
                    target: format!("{KEYCLOAK_IMPORT_DIR}/kiln-{idp}.json"),
                    mode: 0o644,
                    content: crate::render::keycloak::realm(&realm),
                };
                (vec![idp.clone()], file)
            } else if module == AUTHENTIK {
                let database: BTreeSet<&str> = sys.services[&idp].deps.iter().filter(|d| !d.derived).map(|d| d.service.as_str()).collect();
                let workers: Vec<String> = database
                    .iter()
                    .filter_map(|d| workers_by_dep.get(*d))
                    .flatten()
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if workers.is_empty() {
                    // A worker that failed to resolve, or a service on the same database that did (a
                    // worker whose module name is misspelt), has its own error.
                    let failed_worker = inputs.files.iter().flat_map(|f| &f.services).any(|d| {
                        !sys.services.contains_key(&d.name.value)
                            && (d.module.as_ref().is_some_and(|m| m.value == AUTHENTIK_WORKER)
                                || d.connects.iter().any(|c| database.contains(c.service())))
                    });
                    if !failed_worker {
                        self.err(
                        Diagnostic::error("E0060", format!("no `{AUTHENTIK_WORKER}` applies the blueprint of `{idp}`"))
                            .primary(span, format!("needs objects in `{idp}`"))
                            .help(format!("authentik applies blueprints in its worker: add a service of module `{AUTHENTIK_WORKER}` connected to the same database as `{idp}`")),
                    );
                    }
                    continue;
                }
                let bp = Blueprint { idp: idp.clone(), proxies, clients, sources: sources.into_iter().map(|(s, _)| s).collect() };
                let file = ConfigFile {
                    name: format!("authentik-blueprint-{idp}.yaml"),
                    target: format!("{BLUEPRINT_DIR}/{idp}.yaml"),
                    mode: 0o644,
                    content: crate::render::authentik::blueprint(&bp),
                };
                (workers, file)
            } else {
                continue;
            };
            for w in readers {
                let svc = sys.services.get_mut(&w).expect("listed above");
                let uid = svc.container.as_ref().and_then(|c| c.user.as_deref()).and_then(|u| u.split(':').next()?.parse().ok());
                for (secret, target, slot) in &secrets {
                    svc.secrets.push(SecretUse { slot: slot.clone(), secret: secret.clone(), target: target.clone(), uid });
                }
                svc.secrets.sort_by(|a, b| a.slot.cmp(&b.slot));
                svc.files.push(ConfigFile {
                    name: file.name.clone(),
                    target: file.target.clone(),
                    mode: file.mode,
                    content: file.content.clone(),
                });
            }
        }
    }
}
