//! What the system files declare, by name, whether or not it resolved: the lookups that keep a
//! failed declaration's error the only one ("unknown service" for a service that failed to
//! resolve would be a second). Built once, on first use, and shared with the workers.

use super::*;

/// Names as declared, before resolution.
pub(super) struct Declared {
    services: BTreeSet<String>,
    hosts: BTreeSet<String>,
    secrets: BTreeSet<String>,
    /// Services whose `host` names no declared host (they failed with that error).
    unhosted: BTreeSet<String>,
    /// Some route names a service that is not declared (reported as unknown).
    route_misnamed: bool,
}

impl Declared {
    fn of(files: &[SystemFile]) -> Declared {
        let hosts: BTreeSet<String> = files.iter().flat_map(|f| &f.hosts).map(|h| h.name.value.clone()).collect();
        let mut d = Declared {
            services: files.iter().flat_map(|f| &f.services).map(|s| s.name.value.clone()).collect(),
            unhosted: files
                .iter()
                .flat_map(|f| &f.services)
                .filter(|s| !s.host.as_ref().is_some_and(|h| hosts.contains(&h.value)))
                .map(|s| s.name.value.clone())
                .collect(),
            secrets: files.iter().flat_map(|f| &f.secrets).map(|s| s.name.value.clone()).collect(),
            hosts,
            route_misnamed: false,
        };
        d.route_misnamed = files.iter().flat_map(|f| &f.routes).filter_map(|r| r.service.as_ref()).any(|s| !d.service(&s.value));
        d
    }

    /// Whether a service of this name is declared: as such, or as `NAME-HOST`, a copy of a
    /// service meant for every host (`host = "*"`) that never came to be because its `host`
    /// names no host (with its own error).
    fn service(&self, name: &str) -> bool {
        self.services.contains(name)
            || name.match_indices('-').any(|(i, _)| self.unhosted.contains(&name[..i]) && self.hosts.contains(&name[i + 1..]))
    }
}

impl Resolver<'_> {
    fn declared(&self) -> &Declared {
        self.declared.get_or_init(|| Declared::of(&self.inputs.files))
    }

    /// Whether a service is declared, though it may not have resolved (then its own error is
    /// reported, and nothing that refers to it adds another).
    pub(super) fn declared_service(&self, name: &str) -> bool {
        self.declared().service(name)
    }

    /// Whether some route names a service that is not declared (reported as unknown): a check
    /// that a service has a route says nothing more while one may have been meant for it.
    pub(super) fn route_misnamed(&self) -> bool {
        self.declared().route_misnamed
    }

    /// Whether `[secrets]` declares a secret of this name (else `undefined-secret` says so).
    pub(super) fn secret_declared(&self, name: &str) -> bool {
        self.declared().secrets.contains(name)
    }
}
