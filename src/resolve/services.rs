//! Services: module bound, options typed, templates rendered with their context.

use super::*;

/// What [`Resolver::prepare_service`] found, for [`Resolver::render_service`].
pub(super) struct Prepared {
    deps: Vec<Dependency>,
    secret_uses: Vec<SecretUse>,
    databases: Vec<super::databases::DbClient>,
    accounts: super::accounts::Accounts,
}

impl<'a> Resolver<'a> {
    pub(super) fn partial(&mut self, s: &'a ServiceDecl, hosts: &BTreeMap<String, &'a HostDecl>) -> Option<Partial<'a>> {
        let module_name = s.module.as_ref()?;
        let module = match self.inputs.modules.get(&module_name.value) {
            Some(m) => m,
            None => {
                self.unknown_module(module_name);
                return None;
            }
        };
        if let Some(builtin) = &module.overrides {
            self.module_override(module, builtin, module_name);
        }
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
            let port = self.endpoint_port(tpl, &ctx, ok, e, &e.port, s);
            let host_port = match &e.host_port {
                Some(hp) => self.endpoint_port(tpl, &ctx, ok, e, hp, s),
                None => port,
            };
            if let (Some(hp), Some(port)) = (&e.host_port, port)
                && module.decl.kind.value == ModuleKind::Native
                && host_port != Some(port)
            {
                self.err(
                    Diagnostic::error("E0003", format!("native endpoint `{}` cannot publish a different host port", e.name.value))
                        .primary(hp.span, "a native service listens on the host itself")
                        .help("drop `host_port`, or make the port an option"),
                );
            }
            // The system's `ports = { ENDPOINT = N }` moves a container's published port.
            let host_port = match s.ports.iter().find(|(n, _)| n.value == e.name.value) {
                Some((_, p)) => types::parse_port(p.value).ok(),
                None => host_port,
            };
            if let (Some(port), Some(host_port)) = (port, host_port) {
                endpoints.push(Endpoint {
                    name: e.name.value.clone(),
                    port,
                    host_port,
                    protocol: e.protocol.value,
                    http: e.http,
                    h2c: e.h2c,
                    tls: self.endpoint_tls(tpl, &ctx, ok, e, s),
                });
            }
        }
        for (name, p) in &s.ports {
            if !module.decl.endpoints.iter().any(|e| e.name.value == name.value) {
                let mut d = Diagnostic::error("E0028", format!("module `{}` has no endpoint `{}`", module.decl.name.value, name.value))
                    .primary(name.span, "unknown endpoint");
                if let Some(x) = did_you_mean(&name.value, module.decl.endpoints.iter().map(|x| x.name.value.as_str())) {
                    d = d.help(format!("did you mean `{x}`?"));
                }
                self.err(d);
            } else if module.decl.kind.value == ModuleKind::Native {
                self.err(
                    Diagnostic::error(
                        "E0003",
                        format!("native service `{}` cannot publish `{}` on another port", s.name.value, name.value),
                    )
                    .primary(p.span, "a native service listens on the host itself"),
                );
            } else if let Err(e) = types::parse_port(p.value) {
                self.err(Diagnostic::error("E0003", e.message).primary(p.span, "not a port").with_help(e.help));
            }
        }
        Some(Partial { decl: s, module, host: host.value.clone(), options, endpoints, ok, clients: Vec::new() })
    }

    /// A note, at the first service using it, that a `--modules` module replaces the built-in
    /// one of the same name: every service of that module in the system runs the local one.
    fn module_override(&mut self, module: &LoadedModule, builtin: &str, used: &Sp<String>) {
        let m = &module.decl;
        let message = format!("module `{}` is the one from `--modules`, not the built-in `{}` {builtin}", m.name.value, m.name.value);
        if self.diags.iter().any(|d| d.code == "module-override" && d.message == message) {
            return;
        }
        let dir = match &module.origin {
            crate::load::Origin::Dir(d) => d.display().to_string(),
            crate::load::Origin::Builtin => String::new(),
        };
        self.err(
            Diagnostic::info("module-override", message)
                .primary(used.span, "every service of this module runs the local one")
                .secondary(m.name.span, format!("version {} from `{dir}`", m.version.value))
                .note(format!("`kiln show` lists the services that use it; `kiln modules show {}` shows the built-in one when run without `--modules`", m.name.value))
                .help(format!("to keep both, give the local module another name than `{}`", m.name.value)),
        );
    }

    /// A module that is neither built in nor in a `--modules` directory: the closest name, or
    /// how to write and pass one (the built-in list is `kiln modules list`, not the help line).
    fn unknown_module(&mut self, name: &Sp<String>) {
        let modules = &self.inputs.modules;
        let builtin = modules.values().filter(|m| m.origin == crate::load::Origin::Builtin).count();
        let dirs: BTreeSet<String> = modules
            .values()
            .filter_map(|m| match &m.origin {
                crate::load::Origin::Dir(d) => Some(d.parent().unwrap_or(d).display().to_string()),
                crate::load::Origin::Builtin => None,
            })
            .collect();
        let from = if dirs.is_empty() {
            "; no `--modules` directory was given".to_string()
        } else {
            format!(
                " and {} from `--modules` ({})",
                modules.len() - builtin,
                dirs.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", ")
            )
        };
        let mut d = Diagnostic::error("E0010", format!("unknown module `{}`", name.value))
            .primary(name.span, "no module of this name")
            .note(format!("kiln knows {builtin} built-in modules (`kiln modules list`){from}"));
        d = match did_you_mean(&name.value, modules.keys().map(String::as_str)) {
            Some(m) => d.help(format!("did you mean `{m}`?")),
            None => {
                d.help(format!("to write your own, put it in `DIR/{}/module.toml` (docs/modules.md) and pass `--modules DIR`", name.value))
            }
        };
        self.err(d);
    }

    /// An endpoint's port (or host port): an integer, or a template rendered with the options.
    fn endpoint_port(
        &mut self,
        tpl: &crate::template::Templates,
        ctx: &J,
        ok: bool,
        e: &crate::syntax::module::EndpointDecl,
        p: &Sp<IntOrTpl>,
        s: &ServiceDecl,
    ) -> Option<u16> {
        {
            match &p.value {
                IntOrTpl::Int(i) => types::parse_port(*i).ok(),
                IntOrTpl::Tpl(_) if !ok => None,
                IntOrTpl::Tpl(t) => match tpl.render_str(t, ctx) {
                    Ok(v) => match v.trim().parse::<i64>().map_err(|_| ()).and_then(|i| types::parse_port(i).map_err(|_| ())) {
                        Ok(p) => Some(p),
                        Err(()) => {
                            self.err(
                                Diagnostic::error(
                                    "E0020",
                                    format!("endpoint `{}` of `{}` renders to `{v}`, not a port", e.name.value, s.name.value),
                                )
                                .primary(p.span, "this template")
                                .secondary(s.name.span, "in this service"),
                            );
                            None
                        }
                    },
                    Err(err) => {
                        let span = crate::template::expression_span(p.span, self.inputs.sources.text(p.span.file), t, &err);
                        self.err(err.at(span).secondary(s.name.span, "while instantiating this service"));
                        None
                    }
                },
            }
        }
    }

    /// Whether an endpoint speaks TLS: its `tls`, `true`/`false` or a template rendered with
    /// the options to one of them.
    fn endpoint_tls(
        &mut self,
        tpl: &crate::template::Templates,
        ctx: &J,
        ok: bool,
        e: &crate::syntax::module::EndpointDecl,
        s: &ServiceDecl,
    ) -> bool {
        let Some(t) = &e.tls else { return false };
        if !ok {
            return false;
        }
        match tpl.render_str(&t.value, ctx) {
            Ok(v) => match v.trim() {
                "true" => true,
                "false" | "" => false,
                other => {
                    self.err(
                        Diagnostic::error(
                            "E0020",
                            format!(
                                "`tls` of endpoint `{}` of `{}` renders to `{other}`, not `true` or `false`",
                                e.name.value, s.name.value
                            ),
                        )
                        .primary(t.span, "this template")
                        .secondary(s.name.span, "in this service"),
                    );
                    false
                }
            },
            Err(err) => {
                let span = crate::template::expression_span(t.span, self.inputs.sources.text(t.span.file), &t.value, &err);
                self.err(err.at(span).secondary(s.name.span, "while instantiating this service"));
                false
            }
        }
    }

    /// A service's first half, in name order (a service joins the managed databases' client
    /// lists here): connections, secrets, database and account clients. `None` on an error.
    pub(super) fn prepare_service(
        &mut self,
        p: &Partial<'a>,
        all: &BTreeMap<String, Partial<'a>>,
        hosts: &BTreeMap<String, Host>,
        secrets: &BTreeMap<String, &'a SecretDecl>,
    ) -> Option<Prepared> {
        let m = &p.module.decl;
        let s = p.decl;
        let errors_before = self.errors();
        let deps = self.deps(p, all, hosts);
        let taken = self.same_secrets(p, all, &deps);
        // `instead_of_docker_socket`: the proxy must speak for this host's Docker.
        for r in m.requires.iter().filter(|r| r.instead_of_docker_socket.is_some()) {
            for d in deps.iter().filter(|d| d.slot.as_deref() == Some(r.slot.value.as_str()) && !d.same_host) {
                self.err(
                    Diagnostic::error("E0037", format!("`{}` is a socket proxy on another host than `{}`", d.service, s.name.value))
                        .primary(d.span, format!("would hand `{}` the containers of `{}`'s host", s.name.value, d.service))
                        .help(format!("connect the socket proxy on host `{}`, or none (the service then mounts the socket)", p.host)),
                );
            }
        }
        let mut secret_uses = self.bound_secrets(p, &taken, secrets);
        self.own_environment(p, secrets);
        // `[requires.SLOT] public = true`: browsers load the filled service from its route.
        for d in &deps {
            if let Some(r) = m.requires.iter().find(|r| r.public && d.slot.as_deref() == Some(r.slot.value.as_str()))
                && d.route.is_none()
                && self.public_url(&d.service).is_none()
            {
                self.err(
                    Diagnostic::warning("public-slot-unrouted", format!("`{}` has no public route", d.service))
                        .primary(d.span, format!("`{}` hands its URL to browsers (slot `{}`)", s.name.value, r.slot.value))
                        .help(format!("add a route: `[routes.\"HOSTNAME\"]` with `service = \"{}\"`", d.service))
                        .about("services", s.name.value.clone()),
                );
            }
        }
        self.unbound_secrets(p, all, &deps, &taken);
        let databases = self.database_clients(p, all, hosts);
        secret_uses.extend(databases.iter().map(super::databases::DbClient::secret_use));
        let accounts = self.account_clients(p, all);
        secret_uses.extend(accounts.users.iter().map(super::accounts::AccountClient::secret_use));
        secret_uses.sort_by(|a, b| a.slot.cmp(&b.slot));
        if !p.ok || self.errors() > errors_before || connects_unresolved(p, all, &self.managed) {
            return None;
        }
        Some(Prepared { deps, secret_uses, databases, accounts })
    }

    /// A service's second half: its templates rendered with its context, its container or
    /// native unit, files, health and jobs. Reads only what every service shares, so services
    /// render on several threads (each with its own [`Resolver::worker`]).
    pub(super) fn render_service(
        &mut self,
        p: &Partial<'a>,
        prepared: Prepared,
        hosts: &BTreeMap<String, Host>,
        sys: &SystemDecl,
    ) -> Option<Service> {
        let m = &p.module.decl;
        let s = p.decl;
        let errors_before = self.errors();
        let Prepared { deps, mut secret_uses, databases, accounts } = prepared;
        let host = hosts.get(&p.host)?;
        let ctx = self.context(p, host, &deps, &secret_uses, (&databases, &accounts), sys);
        let tpl = &self.tpls[&m.name.value];
        let render = |me: &mut Self, v: &Sp<String>| -> Option<String> {
            match tpl.render_str(&v.value, &ctx) {
                Ok(s) => Some(s),
                Err(e) => {
                    let span = crate::template::expression_span(v.span, me.inputs.sources.text(v.span.file), &v.value, &e);
                    me.err(e.at(span).secondary(s.name.span, "while instantiating this service"));
                    None
                }
            }
        };
        // `version`/`image` on the service replace the module's image: only a container has one.
        if m.kind.value != ModuleKind::Container
            && let Some(k) = s.version.as_ref().or(s.image.as_ref())
        {
            let key = if s.version.is_some() { "version" } else { "image" };
            self.err(
                Diagnostic::error("E0029", format!("service `{}` runs no image: `{key}` cannot apply", s.name.value))
                    .primary(k.span, format!("module `{}` is a native module", m.name.value))
                    .secondary(m.kind.span, "declared here")
                    .help("a native module's version is its distribution package's; remove the key"),
            );
            return None;
        }
        if let (Some(v), Some(i)) = (&s.version, &s.image) {
            self.err(
                Diagnostic::error("E0029", format!("service `{}` sets both `version` and `image`", s.name.value))
                    .primary(v.span, "replaces the module image's tag")
                    .secondary(i.span, "replaces the whole image")
                    .help("keep one: `image` with the tag you want, or `version` alone"),
            );
            return None;
        }
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
                let (image, image_from, image_span) = self.image_override(s, image)?;
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
                let mut env_secrets: BTreeMap<String, String> = c
                    .env_secrets
                    .iter()
                    .filter_map(|(var, slot)| {
                        // A slot the system leaves unbound (an optional one) feeds no variable.
                        secret_uses.iter().find(|u| u.slot == slot.value).map(|u| (var.value.clone(), u.secret.clone()))
                    })
                    .collect();
                // `secret_paths`: the file's path, for a bound slot only.
                for (var, slot) in &c.secret_paths {
                    if let Some(u) = secret_uses.iter().find(|u| u.slot == slot.value) {
                        environment.insert(var.value.clone(), u.target.clone());
                    }
                }
                super::environment::merge_own(p, &mut environment, &mut env_secrets);
                let user = c.user.as_ref().and_then(|u| render(self, u));
                Some(Container {
                    image,
                    image_from,
                    image_span,
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
                    // `[requires.SLOT] instead_of_docker_socket`: a filled proxy replaces the socket.
                    docker_socket: c.docker_socket.as_ref().is_some_and(|b| b.value)
                        && !m.requires.iter().any(|r| {
                            r.instead_of_docker_socket.is_some() && deps.iter().any(|d| d.slot.as_deref() == Some(r.slot.value.as_str()))
                        }),
                    shm_size: c.shm_size.as_ref().map(|s| s.value),
                    init: c.init.as_ref().is_some_and(|b| b.value),
                    ulimits: c.ulimits.iter().map(|(n, soft, hard)| (n.value.clone(), (*soft, *hard))).collect(),
                    devices: c.devices.iter().map(|d| d.value.clone()).collect(),
                    host_mounts: c.host_mounts.iter().map(|m| m.value.clone()).collect(),
                    env_secrets,
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
        if m.collect_alerts {
            // Each receiver's URL, owned by the user the container runs as.
            let uid = container.as_ref().and_then(|c| c.user.as_ref()?.split(':').next()?.parse().ok());
            for r in self.receivers.iter() {
                if let Some(secret) = r.secret() {
                    secret_uses.push(SecretUse {
                        slot: format!("alert-receiver-{}", r.name),
                        secret: secret.to_string(),
                        target: super::alerts::receiver_secret_target(&r.name),
                        uid,
                    });
                }
            }
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
                    let span = self.template_span(p.module, &f.template.value, &e).unwrap_or(f.template.span);
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
        let jobs = m
            .jobs
            .iter()
            .map(|j| crate::model::Job {
                name: j.name.value.clone(),
                schedule: j.schedule.value.clone(),
                command: j.command.iter().filter_map(|w| render(self, w)).collect(),
                user: j.user.as_ref().map(|u| u.value.clone()),
                container: j.container.value,
            })
            .collect();
        let backup = m.backup.as_ref().map(|b| Backup {
            dump: b.dump.as_ref().map(|d| d.iter().filter_map(|x| render(self, x)).collect()),
            restore: b.restore.as_ref().map(|d| d.iter().filter_map(|x| render(self, x)).collect()),
            restore_stopped: b.restore_stopped,
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
        // The edge's DNS-01 credentials, by provider (`[secrets.SLOT] dns01`).
        let dns01 = m
            .secrets
            .iter()
            .filter_map(|d| {
                let provider = d.dns01.as_ref()?;
                let bound = secret_uses.iter().find(|u| u.slot == d.slot.value).map(|u| u.secret.clone());
                Some((provider.value.clone(), (d.slot.value.clone(), bound)))
            })
            .collect();
        Some(Service {
            name: s.name.value.clone(),
            module: m.name.value.clone(),
            module_version: m.version.value.clone(),
            module_source: match &p.module.origin {
                crate::load::Origin::Dir(d) => {
                    Some(ModuleSource { dir: d.display().to_string(), replaces_builtin: p.module.overrides.clone() })
                }
                crate::load::Origin::Builtin => None,
            },
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
                    owner: v.owner.as_ref().map(|o| o.value),
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
            dns01,
            jobs,
            rules: m.collect_rules.as_ref().map(|r| r.value.clone()),
            notifies: m.collect_alerts,
            span: s.name.span,
        })
    }

    /// Where in a module's template file an error is: the failing expression, else its line.
    pub(super) fn template_span(&self, m: &LoadedModule, name: &str, e: &crate::template::TemplateError) -> Option<Span> {
        let (id, text) = m.templates.get(name)?;
        if let Some(r) = e.focus(text) {
            return Some(Span::new(*id, r));
        }
        let line = e.line?;
        let start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
        let len = text[start.min(text.len())..].lines().next().map(str::len).unwrap_or(0);
        Some(Span::new(*id, start..start + len))
    }
}

/// How an edge reaches a service's port: a containerised edge uses the Compose network on its
/// own host; a native edge uses loopback there (the port is published on it); from another
/// host it is the service host's private address.
/// Whether a service connects to one that did not resolve, or whose own declaration had errors
/// (a wrong option type): its requirements and templates cannot be judged (the other service's
/// error is the report).
/// A managed database (`[databases]`) is resolved before any service.
pub(super) fn connects_unresolved(
    p: &Partial<'_>,
    all: &BTreeMap<String, Partial<'_>>,
    managed: &BTreeMap<String, ManagedDatabase>,
) -> bool {
    p.decl
        .connects
        .iter()
        .filter(|c| c.route().is_none())
        .any(|c| all.get(c.service()).is_none_or(|t| !t.ok) && !managed.contains_key(c.service()))
}

/// A receiver as templates see it: `name`, `kind` (`email`, `slack`, `webhook`), `to`,
/// `channel`, and `url_file`, the path of the secret holding its URL.
impl Resolver<'_> {
    /// The image a service runs: the module's, its tag replaced by the service's `version`
    /// (the digest dropped: it pins the module's tag, and one for another tag cannot be
    /// derived), or the service's own `image`. An empty `version` leaves no tag, which
    /// `unpinned-image` refuses at that line.
    fn image_override(
        &mut self,
        s: &crate::syntax::system::ServiceDecl,
        module: ImageRef,
    ) -> Option<(ImageRef, crate::model::ImageFrom, Option<Span>)> {
        use crate::model::ImageFrom;
        if let Some(v) = &s.version {
            if v.value.is_empty() {
                return Some((ImageRef { tag: None, digest: None, ..module }, ImageFrom::Version, Some(v.span)));
            }
            return match ImageRef::parse(&format!("{}:{}", module.name, v.value)) {
                Ok(i) if i.tag.as_deref() == Some(v.value.as_str()) && i.digest.is_none() && i.name == module.name => {
                    Some((i, ImageFrom::Version, Some(v.span)))
                }
                _ => {
                    self.err(
                        Diagnostic::error("E0003", format!("`{}` is not an image tag", v.value))
                            .primary(v.span, format!("would replace the tag of `{module}`"))
                            .help(
                                "a tag is up to 128 letters, digits, `.`, `_` and `-`, like `9.2.0`; \
                                 to change the registry or add a digest, set `image` instead",
                            ),
                    );
                    None
                }
            };
        }
        if let Some(img) = &s.image {
            return match ImageRef::parse(&img.value) {
                Ok(i) => Some((i, ImageFrom::Image, Some(img.span))),
                Err(e) => {
                    self.err(Diagnostic::error("E0003", e.message).primary(img.span, "invalid image").with_help(e.help));
                    None
                }
            };
        }
        Some((module, ImageFrom::Module, None))
    }
}
