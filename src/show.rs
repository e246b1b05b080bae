//! `kiln show`: the resolved system as a person (text) or a program (JSON) reads it.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::model::FirewallRule;
use crate::pipeline::Compiled;

#[derive(Serialize)]
struct ShowHost<'a> {
    provider: &'a str,
    image: &'a str,
    public: bool,
    /// Rollout group (`canary`), if any.
    group: Option<&'a str>,
    addresses: BTreeMap<&'a str, String>,
    closure: &'a str,
    user_data: &'a crate::pipeline::UserDataSize,
    services: &'a [String],
    firewall: Vec<ShowRule<'a>>,
    /// How the host reaches the internet (its own address, or NAT through a gateway host).
    egress: String,
    /// Private networks this host is the NAT gateway of.
    nat_for: Vec<&'a str>,
    /// Where its data lives: a volume that outlives the server, its own disk, or none.
    data: String,
    /// Connections its services make through public routes: out through its egress to the
    /// edge's 443 (`connects = ["route:HOST"]`); nothing is opened for them on the way in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    outbound: Vec<String>,
}

/// A firewall rule and the layers that enforce it (`eval::firewall_layers`).
#[derive(Serialize)]
struct ShowRule<'a> {
    #[serde(flatten)]
    rule: &'a FirewallRule,
    enforced_by: String,
}

#[derive(Serialize)]
struct ShowService<'a> {
    module: &'a str,
    version: &'a str,
    host: &'a str,
    /// The image it runs (containers), and who chose it: the module, or the service's own
    /// `version`/`image` (a canary running another release than its peers).
    image: Option<String>,
    image_from: Option<crate::model::ImageFrom>,
    /// A module from `--modules`: its directory, and the built-in version it replaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    module_source: Option<&'a crate::model::ModuleSource>,
    connects: Vec<String>,
    /// The requirement slot each connection fills: slot → `service.endpoint`.
    slots: BTreeMap<&'a str, String>,
}

#[derive(Serialize)]
struct ShowRoute<'a> {
    hostname: &'a str,
    service: &'a str,
    upstream: &'a str,
    edge: &'a str,
    auth: Option<&'a str>,
}

/// `[streams.NAME]`: a TCP/UDP port an edge forwards.
#[derive(Serialize)]
struct ShowStream<'a> {
    name: &'a str,
    /// `PORT/PROTOCOL` on the edge host.
    port: String,
    service: &'a str,
    endpoint: &'a str,
    upstream: &'a str,
    edge: &'a str,
    hostname: Option<&'a str>,
    /// Who may connect; empty: anyone.
    allow: Vec<String>,
}

#[derive(Serialize)]
struct Show<'a> {
    system: &'a str,
    hosts: BTreeMap<&'a str, ShowHost<'a>>,
    services: BTreeMap<&'a str, ShowService<'a>>,
    routes: Vec<ShowRoute<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    streams: Vec<ShowStream<'a>>,
    start_order: &'a [String],
    /// Secret references (name → file and key); never a value.
    secrets: &'a std::collections::BTreeMap<String, crate::model::Secret>,
}

fn view(c: &Compiled) -> Show<'_> {
    let sys = &c.system;
    Show {
        system: &sys.name,
        hosts: sys
            .hosts
            .values()
            .map(|h| {
                let m = &c.manifest.hosts[&h.name];
                (
                    h.name.as_str(),
                    ShowHost {
                        provider: &h.provider,
                        image: &h.image.name,
                        public: h.public,
                        group: h.group.as_deref(),
                        addresses: h.addresses.iter().map(|(k, v)| (k.as_str(), v.to_string())).collect(),
                        closure: &m.closure,
                        user_data: &m.user_data,
                        services: &h.services,
                        firewall: h
                            .firewall
                            .iter()
                            .map(|r| ShowRule { rule: r, enforced_by: crate::eval::firewall_layers::describe(sys, h, r) })
                            .collect(),
                        egress: crate::eval::egress::describe(h),
                        nat_for: h.nat_for.keys().map(String::as_str).collect(),
                        data: crate::render::data_volume::describe(sys, h),
                        outbound: h
                            .services
                            .iter()
                            .flat_map(|s| sys.services[s].deps.iter().map(move |d| (s, d)))
                            .filter_map(|(s, d)| Some(format!("443/tcp to {} for `{s}` ({})", d.address, d.route.as_deref()?)))
                            .collect(),
                    },
                )
            })
            .collect(),
        services: sys
            .services
            .values()
            .map(|s| {
                (
                    s.name.as_str(),
                    ShowService {
                        module: &s.module,
                        version: &s.module_version,
                        host: &s.host,
                        image: s.container.as_ref().map(|c| c.image.to_string()),
                        image_from: s.container.as_ref().map(|c| c.image_from),
                        module_source: s.module_source.as_ref(),
                        connects: {
                            // one service filling two named slots is one connection
                            let mut v: Vec<String> = s
                                .deps
                                .iter()
                                .map(|d| match &d.route {
                                    Some(url) => format!("{url} (route to {}.{}, 443/tcp out)", d.service, d.endpoint),
                                    None => format!("{}.{}", d.service, d.endpoint),
                                })
                                .collect();
                            v.dedup();
                            v
                        },
                        slots: s.deps.iter().filter_map(|d| Some((d.slot.as_deref()?, format!("{}.{}", d.service, d.endpoint)))).collect(),
                    },
                )
            })
            .collect(),
        routes: sys
            .routes
            .iter()
            .map(|r| ShowRoute {
                hostname: &r.hostname,
                service: &r.service,
                upstream: &r.upstream,
                edge: &r.edge_service,
                auth: r.auth.as_ref().map(|a| a.service.as_str()),
            })
            .collect(),
        streams: sys
            .streams
            .iter()
            .map(|st| ShowStream {
                name: &st.name,
                port: format!("{}/{}", st.port, st.protocol.name()),
                service: &st.service,
                endpoint: &st.endpoint,
                upstream: &st.upstream,
                edge: &st.edge_service,
                hostname: st.hostname.as_deref(),
                allow: st.allow.iter().map(|c| c.to_string()).collect(),
            })
            .collect(),
        start_order: &sys.start_order,
        secrets: &sys.secrets,
    }
}

pub fn show_json(c: &Compiled) -> String {
    let mut s = serde_json::to_string_pretty(&view(c)).expect("serialises");
    s.push('\n');
    s
}

pub fn show_text(c: &Compiled) -> String {
    let v = view(c);
    let mut o = String::new();
    let _ = writeln!(o, "system {}", v.system);
    for (name, h) in &v.hosts {
        let addrs: Vec<String> = h.addresses.iter().map(|(n, a)| format!("{n}={a}")).collect();
        let limit = h.user_data.limit.map(|l| format!(" of {l}")).unwrap_or_default();
        let _ = writeln!(
            o,
            "\nhost {name} ({}, {}{}) {}\n  closure   {}\n  user-data {} bytes{limit}",
            h.provider,
            h.image,
            if h.public { ", public" } else { "" },
            addrs.join(" "),
            h.closure,
            h.user_data.size
        );
        if let Some(g) = h.group {
            let _ = writeln!(o, "  group     {g}");
        }
        let _ = writeln!(o, "  services  {}", if h.services.is_empty() { "-".into() } else { h.services.join(" → ") });
        let _ = writeln!(o, "  egress    {}", h.egress);
        let _ = writeln!(o, "  data      {}", h.data);
        for out in &h.outbound {
            let _ = writeln!(o, "  outbound  {out}, through its egress");
        }
        if !h.nat_for.is_empty() {
            let _ = writeln!(o, "  gateway   NAT for {}", h.nat_for.join(", "));
        }
        let _ = writeln!(o, "  firewall");
        for ShowRule { rule: r, enforced_by } in &h.firewall {
            let from = if r.sources.is_empty() {
                "anywhere".to_string()
            } else {
                r.sources.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
            };
            let _ = writeln!(o, "    {:>5}/{:<3} from {from}  ({})  [{enforced_by}]", r.port, r.protocol.name(), r.reason);
        }
    }
    if !v.routes.is_empty() {
        let _ = writeln!(o, "\nroutes");
        for r in &v.routes {
            let auth = r.auth.map(|a| format!(" (auth: {a})")).unwrap_or_default();
            let _ = writeln!(o, "  {} → {} at {} via {}{auth}", r.hostname, r.service, r.upstream, r.edge);
        }
    }
    if !v.streams.is_empty() {
        let _ = writeln!(o, "\nstreams");
        for st in &v.streams {
            let name = st.hostname.map(|h| format!(" ({h})")).unwrap_or_default();
            let from = if st.allow.is_empty() { "anywhere".to_string() } else { st.allow.join(", ") };
            let _ = writeln!(
                o,
                "  {} {}{name} → {}.{} at {} via {}, from {from}",
                st.name, st.port, st.service, st.endpoint, st.upstream, st.edge
            );
        }
    }
    // The images services run where the system chose them (`version`/`image`): a canary shows.
    let chosen: Vec<_> = v.services.iter().filter(|(_, s)| s.image_from.is_some_and(|f| f != crate::model::ImageFrom::Module)).collect();
    if !chosen.is_empty() {
        let _ = writeln!(o, "\nimages set by the system");
        for (name, s) in chosen {
            let _ = writeln!(o, "  {name} on {}: {} (module {} {})", s.host, s.image.as_deref().unwrap_or("-"), s.module, s.version);
        }
    }
    // Modules from `--modules`, above all those replacing a built-in: a fork should not be forgotten.
    let local: Vec<_> = v.services.iter().filter_map(|(name, s)| Some((name, s, s.module_source?))).collect();
    if !local.is_empty() {
        let _ = writeln!(o, "\nmodules from --modules");
        for (name, s, src) in local {
            let replaces = src.replaces_builtin.as_ref().map(|b| format!(", replacing the built-in {} {b}", s.module)).unwrap_or_default();
            let _ = writeln!(o, "  {name}: {} {} from {}{replaces}", s.module, s.version, src.dir);
        }
    }
    let _ = writeln!(o, "\nstart order\n  {}", v.start_order.join(" → "));
    o
}
