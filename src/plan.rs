//! `kiln plan` and `kiln diff`: what deploying one build over another does, in kiln's terms.
//! Pure: two builds (manifest and model facts) in, a [`Plan`] out; `plan_render` prints it.
//!
//! A host is replaced exactly when its closure changes (every server's `replace_triggered_by`
//! holds that hash), created or destroyed when it appears or disappears, and updated in place
//! when only its server's attributes change or kiln does not own the machine (an existing host
//! is re-provisioned, never replaced).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::pipeline::Manifest;
use crate::plan_model::{FactHost, FactService, Facts};

/// One build as the plan sees it.
pub struct Build {
    pub manifest: Manifest,
    pub facts: Facts,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Replace,
    Update,
    Destroy,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Replace => "replace",
            Action::Update => "update",
            Action::Destroy => "destroy",
        }
    }
}

#[derive(Serialize, Debug)]
pub struct HostChange {
    pub host: String,
    pub action: Action,
    /// Artifacts of the host added, removed or changed (paths in its entry).
    pub artifacts: Vec<String>,
    /// The declarations behind the change, where kiln knows them (with the file declaring them).
    pub causes: Vec<String>,
    /// What happens to the data the host holds, when it holds any.
    pub data: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct ServiceChange {
    pub service: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    pub host: String,
    /// Image before → after (or the one added or removed).
    pub image: Option<(Option<String>, Option<String>)>,
    pub details: Vec<String>,
    pub declared: String,
}

#[derive(Serialize, Debug, Default)]
pub struct AddedRemoved {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Kept but pointing elsewhere: `NAME: before → after`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retargeted: Vec<String>,
}

impl AddedRemoved {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.retargeted.is_empty()
    }
}

#[derive(Serialize, Debug)]
pub struct Plan {
    pub system: String,
    /// System hashes: the deployed build (none for a first deployment) and the new one.
    pub old: Option<String>,
    pub new: String,
    pub kiln: Option<(String, String)>,
    pub hosts: Vec<HostChange>,
    pub unchanged: Vec<String>,
    pub services: Vec<ServiceChange>,
    pub firewall: AddedRemoved,
    pub routes: AddedRemoved,
    pub streams: AddedRemoved,
    pub dns: AddedRemoved,
    pub secrets: AddedRemoved,
    pub waivers: AddedRemoved,
}

impl Plan {
    /// Whether deploying changes anything (`kiln plan`'s exit code 2).
    pub fn has_changes(&self) -> bool {
        self.old.as_deref() != Some(self.new.as_str())
            && (!self.hosts.is_empty()
                || !self.services.is_empty()
                || !self.firewall.is_empty()
                || !self.routes.is_empty()
                || !self.streams.is_empty()
                || !self.dns.is_empty()
                || !self.secrets.is_empty()
                || !self.waivers.is_empty()
                || self.kiln.is_some())
    }
    /// Hosts by action (`replace` → names), for tests and CI.
    pub fn by_action(&self, action: Action) -> Vec<&str> {
        self.hosts.iter().filter(|h| h.action == action).map(|h| h.host.as_str()).collect()
    }
}

/// The plan of deploying `new` where `old` is deployed (`None`: nothing is).
pub fn diff(old: Option<&Build>, new: &Build) -> Plan {
    let empty = Facts {
        system: new.facts.system.clone(),
        hosts: BTreeMap::new(),
        services: BTreeMap::new(),
        firewall: Vec::new(),
        routes: BTreeMap::new(),
        streams: BTreeMap::new(),
        dns: Vec::new(),
        secrets: BTreeMap::new(),
        waivers: Vec::new(),
    };
    let (o, n) = (old.map(|b| &b.facts).unwrap_or(&empty), &new.facts);
    let services = service_changes(&o.services, &n.services);
    let firewall = sets(o.firewall.iter().map(|r| r.key()), n.firewall.iter().map(|r| r.key()));
    let routes =
        keyed(o.routes.iter().map(|(k, r)| (k.clone(), route_target(r))), n.routes.iter().map(|(k, r)| (k.clone(), route_target(r))));
    let streams = keyed(o.streams.clone().into_iter(), n.streams.clone().into_iter());
    let dns = keyed(
        o.dns.iter().map(|r| (r.name.clone(), format!("{} ({} zone {})", r.target, r.provider, r.zone))),
        n.dns.iter().map(|r| (r.name.clone(), format!("{} ({} zone {})", r.target, r.provider, r.zone))),
    );
    let referenced = |f: &Facts| f.secrets.iter().filter(|(_, s)| !s.used_by.is_empty()).map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let secrets = sets(referenced(o).into_iter(), referenced(n).into_iter());
    let waivers = sets(o.waivers.iter().cloned(), n.waivers.iter().cloned());

    let mut hosts = Vec::new();
    let mut unchanged = Vec::new();
    let names: BTreeSet<&String> = o.hosts.keys().chain(n.hosts.keys()).collect();
    for name in names {
        let (before, after) = (o.hosts.get(name), n.hosts.get(name));
        let action = match (before, after) {
            (None, Some(_)) => Action::Create,
            (Some(_), None) => Action::Destroy,
            (Some(b), Some(a)) if b.closure == a.closure && server(b) == server(a) => {
                unchanged.push(name.clone());
                continue;
            }
            (Some(_), Some(a)) if a.provider_kind == "existing" => Action::Update,
            (Some(b), Some(a)) if b.closure == a.closure => Action::Update,
            (Some(_), Some(_)) => Action::Replace,
            (None, None) => unreachable!("a name from either side"),
        };
        let artifacts = match (old, before.is_some()) {
            (Some(ob), true) => changed_artifacts(&ob.manifest, &new.manifest, name),
            _ => Vec::new(),
        };
        let causes = match (before, after) {
            (Some(b), Some(a)) => causes(name, b, a, &services, &firewall_of(o, n, name), old, new),
            _ => Vec::new(),
        };
        let data = match (action, before, after) {
            (Action::Replace, Some(_), Some(a)) => data_fate(a, false),
            (Action::Destroy, Some(b), None) => data_fate(b, true),
            _ => None,
        };
        hosts.push(HostChange { host: name.clone(), action, artifacts, causes, data });
    }
    let kiln = old.filter(|o| o.manifest.kiln != new.manifest.kiln).map(|o| (o.manifest.kiln.clone(), new.manifest.kiln.clone()));
    Plan {
        system: n.system.clone(),
        old: old.map(|b| b.manifest.hash.clone()),
        new: new.manifest.hash.clone(),
        kiln,
        hosts,
        unchanged,
        services,
        firewall,
        routes,
        streams,
        dns,
        secrets,
        waivers,
    }
}

/// The server's own attributes (a change to one is an in-place update, or the provider's).
fn server(h: &FactHost) -> (&str, &Option<String>, &Option<String>, &str, bool) {
    (&h.provider, &h.server_type, &h.location, &h.image, h.public)
}

fn route_target(r: &crate::plan_model::FactRoute) -> String {
    let auth = r.auth.as_deref().map(|a| format!(" behind {a}")).unwrap_or_default();
    format!("{}.{} via {} on {}{auth}", r.service, r.endpoint, r.edge, r.edge_host)
}

fn sets(old: impl Iterator<Item = String>, new: impl Iterator<Item = String>) -> AddedRemoved {
    let (o, n): (BTreeSet<String>, BTreeSet<String>) = (old.collect(), new.collect());
    AddedRemoved { added: n.difference(&o).cloned().collect(), removed: o.difference(&n).cloned().collect(), retargeted: Vec::new() }
}

fn keyed(old: impl Iterator<Item = (String, String)>, new: impl Iterator<Item = (String, String)>) -> AddedRemoved {
    let (o, n): (BTreeMap<String, String>, BTreeMap<String, String>) = (old.collect(), new.collect());
    let mut out = AddedRemoved::default();
    for (k, v) in &n {
        match o.get(k) {
            None => out.added.push(format!("{k} → {v}")),
            Some(w) if w != v => out.retargeted.push(format!("{k}: {w} → {v}")),
            Some(_) => {}
        }
    }
    out.removed = o.iter().filter(|(k, _)| !n.contains_key(*k)).map(|(k, v)| format!("{k} → {v}")).collect();
    out
}

fn service_changes(old: &BTreeMap<String, FactService>, new: &BTreeMap<String, FactService>) -> Vec<ServiceChange> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for name in names {
        match (old.get(name), new.get(name)) {
            (None, Some(a)) => out.push(ServiceChange {
                service: name.clone(),
                change: "added",
                host: a.host.clone(),
                image: a.image.clone().map(|i| (None, Some(i))),
                details: vec![format!("module {} {}", a.module, a.module_version)],
                declared: a.declared.clone(),
            }),
            (Some(b), None) => out.push(ServiceChange {
                service: name.clone(),
                change: "removed",
                host: b.host.clone(),
                image: b.image.clone().map(|i| (Some(i), None)),
                details: vec![format!("module {} {}", b.module, b.module_version)],
                declared: b.declared.clone(),
            }),
            (Some(b), Some(a)) => {
                let mut details = Vec::new();
                if b.module != a.module || b.module_version != a.module_version {
                    details.push(format!("module {} {} → {} {}", b.module, b.module_version, a.module, a.module_version));
                }
                if b.host != a.host {
                    details.push(format!("moved from host {} to {}", b.host, a.host));
                }
                let keys: BTreeSet<&String> = b.options.keys().chain(a.options.keys()).collect();
                for k in keys {
                    if b.options.get(k) != a.options.get(k) {
                        details.push(format!("option {k}"));
                    }
                }
                if b.connects != a.connects {
                    details.push(format!("connects {} → {}", list(&b.connects), list(&a.connects)));
                }
                if b.secrets != a.secrets {
                    details.push(format!("secrets {} → {}", list(&b.secrets), list(&a.secrets)));
                }
                let image = (b.image != a.image).then(|| (b.image.clone(), a.image.clone()));
                if details.is_empty() && image.is_none() {
                    continue;
                }
                out.push(ServiceChange {
                    service: name.clone(),
                    change: "changed",
                    host: a.host.clone(),
                    image,
                    details,
                    declared: a.declared.clone(),
                });
            }
            (None, None) => {}
        }
    }
    out
}

fn list(v: &[String]) -> String {
    if v.is_empty() { "(none)".into() } else { v.join(", ") }
}

/// Firewall rules of one host added or removed.
fn firewall_of(o: &Facts, n: &Facts, host: &str) -> AddedRemoved {
    sets(o.firewall.iter().filter(|r| r.host == host).map(|r| r.key()), n.firewall.iter().filter(|r| r.host == host).map(|r| r.key()))
}

/// Paths of a host's artifacts that were added, removed or changed.
fn changed_artifacts(old: &Manifest, new: &Manifest, host: &str) -> Vec<String> {
    let of = |m: &Manifest| -> BTreeMap<String, String> {
        m.artifacts
            .iter()
            .filter(|a| a.host.as_deref() == Some(host))
            .map(|a| (a.path.strip_prefix(&format!("hosts/{host}/")).unwrap_or(&a.path).to_string(), a.sha256.clone()))
            .collect()
    };
    let (o, n) = (of(old), of(new));
    let paths: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    paths
        .into_iter()
        .filter_map(|p| match (o.get(p), n.get(p)) {
            (Some(a), Some(b)) if a == b => None,
            (None, Some(_)) => Some(format!("{p} (new)")),
            (Some(_), None) => Some(format!("{p} (gone)")),
            _ => Some(p.clone()),
        })
        .collect()
}

/// What kiln knows caused a host's change: its services' changes, its firewall, routes it
/// terminates, its own attributes, kiln's version.
fn causes(
    host: &str,
    b: &FactHost,
    a: &FactHost,
    services: &[ServiceChange],
    fw: &AddedRemoved,
    old: Option<&Build>,
    new: &Build,
) -> Vec<String> {
    let mut out = Vec::new();
    for s in services.iter().filter(|s| s.host == host || b.services.contains(&s.service)) {
        let mut what = s.details.clone();
        if let Some((x, y)) = &s.image {
            what.push(format!("image {} → {}", x.as_deref().unwrap_or("-"), y.as_deref().unwrap_or("-")));
        }
        let at = if s.declared.is_empty() { String::new() } else { format!(" ({})", s.declared) };
        out.push(format!("service {} {}{at}: {}", s.service, s.change, what.join("; ")));
    }
    for r in &fw.added {
        out.push(format!("firewall rule added: {r}"));
    }
    for r in &fw.removed {
        out.push(format!("firewall rule removed: {r}"));
    }
    if let Some(ob) = old {
        let routes = |f: &Facts| -> BTreeMap<String, String> {
            f.routes.iter().filter(|(_, r)| r.edge_host == host).map(|(k, r)| (k.clone(), route_target(r))).collect()
        };
        let (ro, rn) = (routes(&ob.facts), routes(&new.facts));
        let names: BTreeSet<&String> = ro.keys().chain(rn.keys()).collect();
        for k in names {
            let at = new.facts.routes.get(k).or(ob.facts.routes.get(k)).map(|r| r.declared.as_str()).unwrap_or("");
            let at = if at.is_empty() { String::new() } else { format!(" ({at})") };
            match (ro.get(k), rn.get(k)) {
                (None, Some(_)) => out.push(format!("route {k} added{at}")),
                (Some(_), None) => out.push(format!("route {k} removed{at}")),
                (Some(x), Some(y)) if x != y => out.push(format!("route {k} changed{at}: {x} → {y}")),
                _ => {}
            }
        }
        if ob.manifest.kiln != new.manifest.kiln {
            out.push(format!("kiln {} → {}", ob.manifest.kiln, new.manifest.kiln));
        }
    }
    for (what, x, y) in [
        ("image", Some(b.image.clone()), Some(a.image.clone())),
        ("server type", b.server_type.clone(), a.server_type.clone()),
        ("location", b.location.clone(), a.location.clone()),
        ("provider", Some(b.provider.clone()), Some(a.provider.clone())),
    ] {
        if x != y {
            out.push(format!("{what} {} → {}", x.as_deref().unwrap_or("-"), y.as_deref().unwrap_or("-")));
        }
    }
    if b.public != a.public {
        out.push(format!("public {} → {}", b.public, a.public));
    }
    if out.is_empty() && b.closure != a.closure {
        out.push(format!("derived from other declarations (declared at {}); see the artifacts", a.declared));
    }
    out
}

/// What replacing (or destroying) a host does to the data it holds.
fn data_fate(h: &FactHost, destroyed: bool) -> Option<String> {
    if h.holds.is_empty() {
        return None;
    }
    let holds = h.holds.join("; ");
    Some(match (&h.volume, destroyed) {
        (Some(v), false) => format!(
            "volume {v} kept and re-attached to the new server; the old server is destroyed first, so the host is down while it moves ({holds})"
        ),
        (Some(v), true) => format!(
            "volume {v} leaves the configuration with its host and is destroyed with it (prevent_destroy holds only while the resource is declared): its data is lost unless backed up ({holds})"
        ),
        (None, _) => format!("data on the root disk is lost: {holds}"),
    })
}
