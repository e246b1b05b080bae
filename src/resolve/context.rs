//! The context a module's templates render with: options, service, host, system, `requires`,
//! secrets, endpoints, scrape targets, probes, databases, accounts and alert receivers.

use super::*;

impl<'a> Resolver<'a> {
    /// `requires.SLOT` as templates see it.
    pub(super) fn slot_context(&self, d: &Dependency) -> J {
        // `tls`: a managed database speaks TLS (its own certificate), a service's endpoint when
        // its module says so (`tls`, e.g. postgres with `tls = true`). A public route (`route`):
        // `url` is where to send requests, over TLS.
        let tls = d.tls || self.managed.contains_key(&d.service) || d.route.is_some();
        minijinja::context! { service => d.service.clone(), address => d.address.clone(), port => d.port, same_host => d.same_host, tls, url => d.route.clone(), route => d.route.is_some() }
    }

    /// `https://HOSTNAME` of the first of `service`'s routes by hostname (wildcards aside).
    pub(super) fn public_url(&self, service: &str) -> Option<String> {
        self.first_routes.get(service).map(|h| format!("https://{h}"))
    }

    pub(super) fn context(
        &self,
        p: &Partial<'a>,
        host: &Host,
        deps: &[Dependency],
        secrets: &[SecretUse],
        // What the service makes for its clients: databases and roles, users.
        (databases, accounts): (&[super::databases::DbClient], &super::accounts::Accounts),
        sys: &SystemDecl,
    ) -> J {
        let requires: BTreeMap<String, J> = deps
            .iter()
            .filter_map(|d| {
                Some((
                    d.slot.clone()?,
                    // `public_url`: the service's own public route (its first hostname), for
                    // clients that hand it to browsers; absent when it has none.
                    match self.public_url(&d.service) {
                        Some(public_url) => minijinja::context! { public_url, ..self.slot_context(d) },
                        None => self.slot_context(d),
                    },
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
        ctx.insert("databases", jv(&databases));
        ctx.insert("accounts", jv(accounts));
        // A notifier (`[collect] alerts`) sees the receivers, each secret as the path it reads.
        let receivers: Vec<J> =
            if p.module.decl.collect_alerts { self.receivers.iter().map(receiver_context).collect() } else { Vec::new() };
        ctx.insert("receivers", jv(&receivers));
        jv(&ctx)
    }
}

fn receiver_context(r: &Receiver) -> J {
    let url_file = r.secret().map(|_| super::alerts::receiver_secret_target(&r.name));
    match &r.kind {
        ReceiverKind::Email { to } => minijinja::context! { name => r.name.clone(), kind => "email", to => to.clone() },
        ReceiverKind::Slack { channel, .. } => {
            minijinja::context! { name => r.name.clone(), kind => "slack", channel => channel.clone(), url_file => url_file }
        }
        ReceiverKind::Webhook { .. } => minijinja::context! { name => r.name.clone(), kind => "webhook", url_file => url_file },
    }
}
