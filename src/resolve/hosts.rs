//! Hosts: provider, image, addresses, networks, bridges and admins, typed and checked.

use super::*;

impl<'a> Resolver<'a> {
    pub(super) fn host(
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
        if let Some(b) = h.server_backups.as_ref().filter(|b| b.value)
            && !matches!(pkind, ProviderKind::Hetzner | ProviderKind::DigitalOcean)
        {
            self.err(
                Diagnostic::error(
                    "E0015",
                    format!("host `{}` on provider `{}` has no automated server backups", h.name.value, provider.value),
                )
                .primary(b.span, format!("{} servers have no such setting in kiln", pkind.name()))
                .help("server backups are Hetzner's and DigitalOcean's (`backups` on the server); elsewhere back up data with `[backup]`"),
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
            ssh_host_key: h.ssh_host_key.as_ref().map(|k| k.value.clone()),
            ssh_port: h.ssh_port.as_ref().map_or(22, |p| p.value),
            server_backups: h.server_backups.as_ref().is_some_and(|b| b.value),
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
            egress_decl: h.egress.as_ref().map(|e| (e.value.clone(), e.span)),
            egress: crate::model::Egress::Direct,
            nat_for: BTreeMap::new(),
            backup_notify: Vec::new(),
            span: h.name.span,
        })
    }
}
