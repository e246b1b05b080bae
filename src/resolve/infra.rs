//! Provider-side declarations: DNS zones, buckets and managed databases, each bound to its provider.

use super::*;

impl<'a> Resolver<'a> {
    pub(super) fn dns_zones(&mut self, files: &'a [SystemFile], providers: &BTreeMap<String, &'a ProviderDecl>) -> Vec<DnsZone> {
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
            // kiln never creates a Cloudflare zone: its id is a variable, the zone exists.
            let cloudflare = kind.value == ProviderKind::Cloudflare;
            if let Some(e) = z.existing.as_ref().filter(|e| !e.value && cloudflare) {
                self.err(
                    Diagnostic::error("E0016", format!("kiln does not create Cloudflare zones: `{zone}` must exist already"))
                        .primary(e.span, "a Cloudflare zone is always looked up")
                        .help("remove `existing = false`: the root takes the zone's id as the variable `cloudflare_zone_id_…`"),
                );
            }
            let existing = cloudflare || z.existing.as_ref().is_some_and(|e| e.value);
            out.push(DnsZone { zone, provider: p.value.clone(), provider_kind: kind.value, proxied, existing });
        }
        out
    }

    /// The provider kind a resource names, if it offers `what`.
    pub(super) fn provider_for(
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

    pub(super) fn buckets(&mut self, files: &'a [SystemFile], providers: &BTreeMap<String, &'a ProviderDecl>) -> Vec<Bucket> {
        let decls = self.index("bucket", files.iter().flat_map(|f| &f.buckets), |b| &b.name);
        let mut out = Vec::new();
        for (name, b) in decls {
            let Some(p) = &b.provider else { continue };
            if let Some(kind) = self.provider_for(
                p,
                providers,
                "object storage",
                &[ProviderKind::DigitalOcean, ProviderKind::Hetzner, ProviderKind::Scaleway],
            ) {
                crate::provider_values::bucket(kind, b).into_iter().for_each(|d| self.err(d));
                out.push(Bucket { name, provider_kind: kind, region: b.region.as_ref().map(|r| r.value.clone()) });
            }
        }
        out
    }

    pub(super) fn databases(&mut self, files: &'a [SystemFile], providers: &BTreeMap<String, &'a ProviderDecl>) -> Vec<ManagedDatabase> {
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
                    network: None,
                    host: None,
                    clients: Vec::new(),
                });
            }
        }
        out
    }
}
