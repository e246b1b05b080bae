//! `model.json`: the facts of a build that `kiln plan` and `kiln diff` compare (hosts and
//! their closures, services and their images, firewall rules, routes, DNS records, secret
//! references, data holdings, waivers), written into the system entry next to
//! `manifest.json`. Deterministic: every map is a `BTreeMap`, every list sorted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::diag::{Sources, Span};
use crate::model::System;
use crate::render::HostArtifacts;

/// Its path in the system entry (and the result).
pub const MODEL_JSON: &str = "model.json";

/// The model's facts, as `model.json` holds them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub system: String,
    pub hosts: BTreeMap<String, FactHost>,
    pub services: BTreeMap<String, FactService>,
    /// Every host's firewall rules, one line each: `HOST PORT/PROTO from SOURCES`.
    pub firewall: Vec<FactRule>,
    pub routes: BTreeMap<String, FactRoute>,
    /// `[streams.NAME]`: name → `PORT/PROTO to SERVICE.ENDPOINT via EDGE on HOST`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub streams: BTreeMap<String, String>,
    pub dns: Vec<FactRecord>,
    /// Secret references (name → file, key and who uses it); never a value.
    pub secrets: BTreeMap<String, FactSecret>,
    /// Waived rules: `RULE for TARGETS`.
    pub waivers: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FactHost {
    pub provider: String,
    /// `hetzner`, `digitalocean`, `scaleway`, `existing`.
    pub provider_kind: String,
    pub server_type: Option<String>,
    pub location: Option<String>,
    pub image: String,
    pub public: bool,
    pub closure: String,
    pub services: Vec<String>,
    /// What the host keeps that must survive its server (empty: stateless).
    pub holds: Vec<String>,
    /// The block volume holding that data, when it has one.
    pub volume: Option<String>,
    /// The file the host is declared in.
    pub declared: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FactService {
    pub module: String,
    pub module_version: String,
    pub host: String,
    /// The container image reference, for containers.
    pub image: Option<String>,
    pub options: BTreeMap<String, String>,
    pub connects: Vec<String>,
    /// Secret names it references.
    pub secrets: Vec<String>,
    pub declared: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FactRule {
    pub host: String,
    pub port: u16,
    pub protocol: String,
    pub sources: Vec<String>,
    pub reason: String,
    /// A container publishes the port: Docker forwards it, through ufw's route rules too.
    #[serde(default)]
    pub forwarded: bool,
}

impl FactRule {
    /// The rule without its reason: two rules differing only in why they exist are the same.
    pub fn key(&self) -> String {
        let from = if self.sources.is_empty() { "anywhere".to_string() } else { self.sources.join(", ") };
        format!("{} {}/{} from {from}", self.host, self.port, self.protocol)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FactRoute {
    pub service: String,
    pub endpoint: String,
    pub edge: String,
    pub edge_host: String,
    pub auth: Option<String>,
    pub declared: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FactRecord {
    pub name: String,
    pub zone: String,
    pub provider: String,
    /// The host whose public addresses the record carries.
    pub target: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FactSecret {
    pub file: String,
    pub key: String,
    pub used_by: Vec<String>,
}

/// The file of each declaration, relative to the directory holding every declaring file (so
/// the facts do not depend on where the system lives). Not the line: the order of tables in a
/// file means nothing, so moving one must not change a build's bytes (tests/props.rs).
struct Places<'a> {
    sources: &'a Sources,
    base: std::path::PathBuf,
}

impl Places<'_> {
    fn new<'a>(sources: &'a Sources, spans: impl Iterator<Item = Span>) -> Places<'a> {
        let mut base: Option<std::path::PathBuf> = None;
        for s in spans.filter(|s| (s.file.0 as usize) < sources.len()) {
            let dir = sources.get(s.file).path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
            base = Some(match base {
                None => dir,
                Some(b) => b.components().zip(dir.components()).take_while(|(x, y)| x == y).map(|(x, _)| x).collect(),
            });
        }
        Places { sources, base: base.unwrap_or_default() }
    }
    fn at(&self, span: Span) -> String {
        if (span.file.0 as usize) >= self.sources.len() {
            return String::new();
        }
        let path = &self.sources.get(span.file).path;
        path.strip_prefix(&self.base).unwrap_or(path).display().to_string()
    }
}

/// The facts of a compiled system.
pub fn facts(sys: &System, hosts: &BTreeMap<String, HostArtifacts>, sources: &Sources) -> Facts {
    facts_by(sys, |h| hosts.get(h).map(|a| a.closure.as_str()), sources)
}

/// The facts of a system whose hosts' closures `closure` gives (a build that kept no artifacts).
pub fn facts_by<'a>(sys: &System, closure: impl Fn(&str) -> Option<&'a str>, sources: &Sources) -> Facts {
    let places = Places::new(
        sources,
        sys.hosts.values().map(|h| h.span).chain(sys.services.values().map(|s| s.span)).chain(sys.routes.iter().map(|r| r.span)),
    );
    let mut used: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for s in sys.services.values() {
        for u in &s.secrets {
            used.entry(u.secret.as_str()).or_default().push(s.name.clone());
        }
    }
    if let Some(b) = &sys.backup {
        for r in std::iter::once(&b.password).chain(b.credential_secrets()) {
            // `{host}` names one secret per host
            let names: Vec<String> =
                if r.contains("{host}") { sys.hosts.keys().map(|h| r.replace("{host}", h)).collect() } else { vec![r.clone()] };
            for n in names {
                if let Some(s) = sys.secrets.get(&n) {
                    used.entry(s.name.as_str()).or_default().push("[backup]".into());
                }
            }
        }
    }
    let mut firewall = Vec::new();
    for h in sys.hosts.values() {
        for r in &h.firewall {
            firewall.push(FactRule {
                host: h.name.clone(),
                port: r.port,
                protocol: r.protocol.name().to_string(),
                sources: r.sources.iter().map(|s| s.to_string()).collect(),
                reason: r.reason.clone(),
                forwarded: r.forwarded,
            });
        }
    }
    firewall.sort();
    firewall.dedup();
    let mut dns = Vec::new();
    for z in &sys.dns {
        for (name, edge_host, _) in sys.edge_names().into_iter().filter(|(n, _, _)| *n == z.zone || n.ends_with(&format!(".{}", z.zone))) {
            dns.push(FactRecord {
                name: name.to_string(),
                zone: z.zone.clone(),
                provider: z.provider.clone(),
                target: edge_host.to_string(),
            });
        }
    }
    dns.sort();
    let mut waivers: Vec<String> = sys
        .allows
        .iter()
        .map(|a| {
            let targets: Vec<String> = a
                .hosts
                .iter()
                .map(|h| format!("host {h}"))
                .chain(a.services.iter().map(|s| format!("service {s}")))
                .chain(a.routes.iter().map(|r| format!("route {r}")))
                .collect();
            if targets.is_empty() { a.rule.clone() } else { format!("{} for {}", a.rule, targets.join(", ")) }
        })
        .collect();
    waivers.sort();
    Facts {
        system: sys.name.clone(),
        hosts: sys
            .hosts
            .values()
            .map(|h| {
                let kind = crate::syntax::system::ProviderKind::NAMES
                    .iter()
                    .find(|n| crate::syntax::system::ProviderKind::parse(n).ok() == Some(h.provider_kind))
                    .copied()
                    .unwrap_or("");
                (
                    h.name.clone(),
                    FactHost {
                        provider: h.provider.clone(),
                        provider_kind: kind.to_string(),
                        server_type: h.server_type.clone(),
                        location: h.location.clone(),
                        image: h.image.name.clone(),
                        public: h.public,
                        closure: closure(&h.name).unwrap_or_default().to_string(),
                        services: h.services.clone(),
                        holds: crate::render::data_volume::holdings(sys, h),
                        volume: crate::render::data_volume::has_volume(sys, h).then(|| crate::render::data_volume::volume_name(sys, h)),
                        declared: places.at(h.span),
                    },
                )
            })
            .collect(),
        services: sys
            .services
            .values()
            .map(|s| {
                let mut secrets: Vec<String> = s.secrets.iter().map(|u| u.secret.clone()).collect();
                secrets.sort();
                secrets.dedup();
                (
                    s.name.clone(),
                    FactService {
                        module: s.module.clone(),
                        module_version: s.module_version.clone(),
                        host: s.host.clone(),
                        image: s.container.as_ref().map(|c| c.image.to_string()),
                        options: s.options.clone(),
                        connects: s.deps.iter().map(|d| format!("{}.{}", d.service, d.endpoint)).collect(),
                        secrets,
                        declared: places.at(s.span),
                    },
                )
            })
            .collect(),
        firewall,
        routes: sys
            .routes
            .iter()
            .map(|r| {
                (
                    r.hostname.clone(),
                    FactRoute {
                        service: r.service.clone(),
                        endpoint: r.endpoint.clone(),
                        edge: r.edge_service.clone(),
                        edge_host: r.edge_host.clone(),
                        auth: r.auth.as_ref().map(|a| a.service.clone()),
                        declared: places.at(r.span),
                    },
                )
            })
            .collect(),
        streams: sys
            .streams
            .iter()
            .map(|st| {
                let target = format!(
                    "{}/{} to {}.{} via {} on {}",
                    st.port,
                    st.protocol.name(),
                    st.service,
                    st.endpoint,
                    st.edge_service,
                    st.edge_host
                );
                (st.name.clone(), target)
            })
            .collect(),
        dns,
        secrets: sys
            .secrets
            .values()
            .map(|s| {
                let mut users = used.remove(s.name.as_str()).unwrap_or_default();
                users.sort();
                users.dedup();
                (s.name.clone(), FactSecret { file: s.file.clone(), key: s.key.clone(), used_by: users })
            })
            .collect(),
        waivers,
    }
}

pub fn to_json(f: &Facts) -> String {
    let mut s = serde_json::to_string_pretty(f).expect("facts serialise");
    s.push('\n');
    s
}
