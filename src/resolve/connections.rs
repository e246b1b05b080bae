//! Connections: `connects` bound to requirement slots, derived scrape connections, and how one service reaches another.

use super::slots::Fill;
use super::*;
use crate::syntax::connects::ConnectDecl;
use crate::syntax::module::{Protocol, RequireDecl};

impl<'a> Resolver<'a> {
    /// Binds `connects` entries to services and endpoints, and fills the module's requirement slots.
    pub(super) fn deps(&mut self, p: &Partial<'a>, all: &BTreeMap<String, Partial<'a>>, hosts: &BTreeMap<String, Host>) -> Vec<Dependency> {
        let m = &p.module.decl;
        let mut out: Vec<Dependency> = Vec::new();
        let mut filled: BTreeSet<String> = BTreeSet::new();
        let fills = self.fill_slots(p, all);
        let refused = fills.iter().any(|f| matches!(f, Fill::Refused));
        for (entry, fill) in p.decl.connects.iter().zip(fills) {
            let c = &entry.target;
            let slot = match fill {
                Fill::Slot(r) => Some(r),
                Fill::Nothing => None,
                Fill::Refused => continue,
            };
            if let Some(hostname) = entry.route() {
                // A refused entry fills its slot too: its error is the only one.
                if let Some(r) = slot {
                    filled.insert(r.slot.value.clone());
                }
                out.extend(self.route_dep(p, hostname, slot, entry, all));
                continue;
            }
            let (svc_name, ep_name) = match c.value.split_once('.') {
                Some((a, b)) => (a, Some(b)),
                None => (c.value.as_str(), None),
            };
            if !all.contains_key(svc_name) && self.managed.contains_key(svc_name) {
                let slot = slot.or_else(|| managed_slot(m));
                // The slot is filled either way: a refused connection has said why.
                if let Some(r) = slot {
                    filled.insert(r.slot.value.clone());
                }
                out.extend(self.managed_dep(p, svc_name, slot, entry));
                continue;
            }
            let Some(target) = all.get(svc_name) else {
                // A declared service that did not resolve has reported its own error.
                if !self.declared_service(svc_name) {
                    let sp = Sp::new(svc_name.to_string(), c.span);
                    self.unknown("service", &sp, all.keys(), "services");
                }
                continue;
            };
            // A target whose own options are wrong has reported them; its endpoints may be
            // missing (templated ports are not rendered), which says nothing about this one.
            if !target.ok {
                continue;
            }
            if svc_name == p.decl.name.value {
                self.err(Diagnostic::error("E0030", format!("service `{svc_name}` connects to itself")).primary(c.span, "remove this"));
                continue;
            }
            let ep_name = ep_name.map(str::to_string).or_else(|| slot.and_then(|s| s.endpoint.as_ref().map(|e| e.value.clone())));
            let endpoint = match ep_name {
                Some(n) => target.endpoints.iter().find(|e| e.name == n),
                None => {
                    let candidates: Vec<&Endpoint> = target
                        .endpoints
                        .iter()
                        .filter(|e| target.module.decl.metrics.as_ref().is_none_or(|mt| mt.endpoint.value != e.name))
                        .collect();
                    if candidates.len() == 1 { Some(candidates[0]) } else { None }
                }
            };
            let Some(endpoint) = endpoint else {
                let names: Vec<String> = target.endpoints.iter().map(|e| format!("`{svc_name}.{}`", e.name)).collect();
                let label = match slot {
                    Some(r) => format!("ambiguous or unknown endpoint (for slot `{}`)", r.slot.value),
                    None => "ambiguous or unknown endpoint".to_string(),
                };
                self.err(
                    Diagnostic::error("E0031", format!("cannot tell which endpoint of `{svc_name}` this connects to"))
                        .primary(c.span, label)
                        .help(if names.is_empty() {
                            format!("`{svc_name}` exposes no endpoints")
                        } else {
                            format!("write one of {}", names.join(", "))
                        }),
                );
                continue;
            };
            if let Some(slot) = slot {
                filled.insert(slot.slot.value.clone());
            }
            let same_host = target.host == p.host;
            let address = match reach(p, target, svc_name, hosts) {
                Ok(a) => a,
                Err(Unreachable::Bridge) => {
                    self.err(
                        Diagnostic::error("E0034", format!("`{}` and `{svc_name}` share no bridge", p.decl.name.value))
                            .primary(c.span, "this connection crosses Docker networks")
                            .help(format!(
                                "add a bridge of `{svc_name}` ({}) to `{}`'s `bridges`",
                                bridges_of(target.decl).join(", "),
                                p.decl.name.value
                            )),
                    );
                    continue;
                }
                Err(Unreachable::HostAddress) => {
                    self.err(
                        Diagnostic::error(
                            "E0032",
                            format!("container `{}` cannot reach native `{svc_name}` on host `{}`", p.decl.name.value, p.host),
                        )
                        .primary(c.span, "the host has no private address to reach it at")
                        .help(format!("put host `{}` on a private network with `[hosts.{}.networks]`", p.host, p.host)),
                    );
                    continue;
                }
                Err(Unreachable::PrivateNetwork) => {
                    self.err(
                        Diagnostic::error(
                            "E0032",
                            format!("`{}` on host `{}` cannot reach `{svc_name}` on host `{}`", p.decl.name.value, p.host, target.host),
                        )
                        .primary(c.span, "no private network between these hosts")
                        .note("services on two hosts talk over a private network both hosts are on; kiln opens the port to the other host's address there")
                        .help(match self.route_help(svc_name) {
                            Some(r) => format!("{r}; or {}", join_network_help(&p.host, &target.host, hosts)),
                            None => join_network_help(&p.host, &target.host, hosts),
                        }),
                    );
                    continue;
                }
            };
            out.push(Dependency {
                slot: slot.map(|s| s.slot.value.clone()),
                service: svc_name.to_string(),
                endpoint: endpoint.name.clone(),
                port: dial_port(p, target, endpoint, same_host),
                protocol: endpoint.protocol,
                address,
                same_host,
                usage: slot.and_then(|s| s.usage.as_ref()).map(|u| u.value.clone()),
                prepared_statements: slot.is_some_and(|s| s.prepared_statements),
                derived: false,
                no_wait: slot.is_some_and(|s| !s.wait),
                path: None,
                route: None,
                tls: endpoint.tls,
                span: c.span,
            });
        }
        if m.collect_metrics {
            out.extend(self.scrape_deps(p, all, hosts));
        }
        let unresolved = connects_unresolved(p, all, &self.managed);
        // The table form names slots, so the help does too.
        let named = p.decl.connects.iter().any(|c| c.slot.is_some());
        for r in &m.requires {
            // A connection to a service that did not resolve, or a refused entry, may be the
            // one that fills it.
            if r.optional || filled.contains(&r.slot.value) || unresolved || refused {
                continue;
            }
            let mods: Vec<String> = r.modules.iter().map(|x| format!("`{}`", x.value)).collect();
            // Prefer a service that `connects` does not name yet.
            let mut candidates: Vec<&String> =
                all.iter().filter(|(_, t)| r.modules.iter().any(|x| x.value == t.module.decl.name.value)).map(|(n, _)| n).collect();
            candidates.sort_by_key(|n| p.decl.connects.iter().any(|c| c.service() == n.as_str()));
            let help = match candidates.first() {
                Some(c) if named => format!("add `{} = \"{c}\"` to `connects`", r.slot.value),
                Some(c) => format!("add `\"{c}\"` to `connects`"),
                None => format!("declare a service of module {} and add it to `connects`", mods.join(" or ")),
            };
            self.err(
                Diagnostic::error("E0033", format!("service `{}` needs a `{}` ({})", p.decl.name.value, r.slot.value, mods.join(" or ")))
                    .primary(p.decl.name.span, format!("nothing in `connects` fills `{}`", r.slot.value))
                    .secondary(r.slot.span, "required here")
                    .help(help),
            );
        }
        // One service may fill two named slots: each is its own connection.
        out.sort_by(|a, b| (&a.service, &a.endpoint, a.derived, &a.slot).cmp(&(&b.service, &b.endpoint, b.derived, &b.slot)));
        out.dedup_by(|a, b| a.service == b.service && a.endpoint == b.endpoint && a.derived == b.derived && a.slot == b.slot);
        out
    }

    /// A metrics collector's derived connections: one to every metrics endpoint it can reach.
    pub(super) fn scrape_deps(
        &mut self,
        p: &Partial<'a>,
        all: &BTreeMap<String, Partial<'a>>,
        hosts: &BTreeMap<String, Host>,
    ) -> Vec<Dependency> {
        let mut out = Vec::new();
        for (name, t) in all.iter().filter(|(n, _)| **n != p.decl.name.value) {
            let Some(mt) = &t.module.decl.metrics else { continue };
            let Some(ep) = t.endpoints.iter().find(|e| e.name == mt.endpoint.value) else { continue };
            let same_host = t.host == p.host;
            let address = reach(p, t, name, hosts).ok();
            let Some(address) = address else {
                self.err(
                    Diagnostic::warning("unscraped-metrics", format!("`{}` cannot reach the metrics of `{name}`", p.decl.name.value))
                        .primary(t.decl.name.span, "these metrics are not collected")
                        .help(if same_host {
                            format!("give `{name}` and `{}` a common bridge", p.decl.name.value)
                        } else {
                            format!("put host `{}` on a private network", t.host)
                        })
                        .about("services", p.decl.name.value.clone()),
                );
                continue;
            };
            out.push(Dependency {
                slot: None,
                service: name.clone(),
                endpoint: ep.name.clone(),
                port: dial_port(p, t, ep, same_host),
                protocol: ep.protocol,
                address,
                same_host,
                usage: None,
                prepared_statements: false,
                derived: true,
                no_wait: false,
                path: Some(mt.path.clone()),
                route: None,
                tls: ep.tls,
                span: p.decl.name.span,
            });
        }
        out
    }
}

/// The port `from` dials to reach `ep` of `to`: the container's own over a shared Compose
/// network, else the port published on the host.
pub(super) fn dial_port(from: &Partial<'_>, to: &Partial<'_>, ep: &Endpoint, same_host: bool) -> u16 {
    let container = |p: &Partial<'_>| p.module.decl.kind.value == ModuleKind::Container;
    if same_host && container(from) && container(to) { ep.port } else { ep.host_port }
}

/// What is missing for one service to reach another.
pub(super) enum Unreachable {
    /// A common bridge between two containers on one host.
    Bridge,
    /// A private address of the host, for a container reaching a native service on it.
    HostAddress,
    /// A private network between two hosts.
    PrivateNetwork,
}

/// How `from` reaches `to` (named `name`): the Compose service name over a common bridge, the
/// loopback for a native service, else the target host's address on a private network both
/// hosts are on.
pub(super) fn reach(from: &Partial<'_>, to: &Partial<'_>, name: &str, hosts: &BTreeMap<String, Host>) -> Result<String, Unreachable> {
    let native = |m: &LoadedModule| m.decl.kind.value == ModuleKind::Native;
    let private = || hosts.get(&to.host).and_then(|h| h.private_address()).map(|a| a.to_string());
    if to.host != from.host {
        return shared_address(hosts, &from.host, &to.host).map(|a| a.to_string()).ok_or(Unreachable::PrivateNetwork);
    }
    match (native(from.module), native(to.module)) {
        (false, false) if shares_bridge(from.decl, to.decl) => Ok(name.to_string()),
        (false, false) => Err(Unreachable::Bridge),
        // a native service reaches a container through a port published on loopback, and a
        // native service on the host itself
        (true, _) => Ok("127.0.0.1".to_string()),
        // a container reaches a native service at the host's own address
        (false, true) => private().ok_or(Unreachable::HostAddress),
    }
}

/// Host `to`'s address on the first private network (by name) host `from` is also on.
pub(super) fn shared_address(hosts: &BTreeMap<String, Host>, from: &str, to: &str) -> Option<IpAddr> {
    let (f, t) = (hosts.get(from)?, hosts.get(to)?);
    t.addresses.iter().find(|(net, _)| f.addresses.contains_key(*net)).map(|(_, a)| *a)
}

/// What would let host `from` reach host `to`: a network of `to`'s to join, or one for both.
pub(super) fn join_network_help(from: &str, to: &str, hosts: &BTreeMap<String, Host>) -> String {
    let nets = |h: &str| hosts.get(h).map(|h| h.addresses.keys().map(|n| format!("`{n}`")).collect::<Vec<_>>()).unwrap_or_default();
    let (from_nets, to_nets) = (nets(from), nets(to));
    match (from_nets.is_empty(), to_nets.is_empty()) {
        (_, true) => format!(
            "put both hosts on a private network: `[hosts.{to}] networks = {{ NET = \"ADDRESS\" }}`, and the same network for `{from}`"
        ),
        (true, false) => format!(
            "put host `{from}` on {} (as `{to}` is): `[hosts.{from}] networks = {{ {} = \"ADDRESS\" }}`",
            to_nets.join(" or "),
            to_nets[0].trim_matches('`')
        ),
        (false, false) => format!(
            "host `{from}` is on {} and `{to}` on {}: put one of them on a network of the other's",
            from_nets.join(", "),
            to_nets.join(", ")
        ),
    }
}

/// The Docker networks a service joins: its `bridges`, or the host's default network.
pub(super) fn bridges_of(s: &ServiceDecl) -> Vec<String> {
    if s.bridges.is_empty() { vec!["default".to_string()] } else { s.bridges.iter().map(|b| b.value.clone()).collect() }
}

pub(super) fn shares_bridge(a: &ServiceDecl, b: &ServiceDecl) -> bool {
    let bb = bridges_of(b);
    bridges_of(a).iter().any(|x| bb.contains(x))
}

/// The slot a `connects` entry naming a managed database fills in the list form: the module's
/// one slot a `postgres` service would fill.
fn managed_slot(m: &ModuleDecl) -> Option<&RequireDecl> {
    let mut pg = m.requires.iter().filter(|r| r.modules.iter().any(|x| x.value == "postgres"));
    match (pg.next(), pg.next()) {
        (Some(r), None) => Some(r),
        _ => None,
    }
}

/// The PostgreSQL port of a managed database's private endpoint (provider docs,
/// rdb_instance.md: `private_network.port`, 5432 unless set).
const MANAGED_PG_PORT: u16 = 5432;

impl Resolver<'_> {
    /// A connection to a managed database (`[databases.NAME]`): the slot it fills gets the
    /// database's DNS name on the private network, its port and TLS; the client's database and
    /// role, from the slot's `provision`, are made by OpenTofu (`render::tofu`), its password the
    /// client's own secret.
    fn managed_dep(&mut self, p: &Partial<'_>, db: &str, slot: Option<&RequireDecl>, c: &ConnectDecl) -> Option<Dependency> {
        let name = &p.decl.name.value;
        let span = c.target.span;
        let d = &self.managed[db];
        let refuse = |why: String, help: String| {
            Diagnostic::error("E0031", format!("`{name}` cannot use managed database `{db}`")).primary(span, why).help(help)
        };
        let Some(r) = slot.filter(|r| r.modules.iter().any(|x| x.value == "postgres")) else {
            self.err(refuse(
                "no PostgreSQL requirement of its module takes it".into(),
                format!(
                    "a managed database fills a module's `postgres` slot; `{}` has none (or several: name the slot)",
                    p.module.decl.name.value
                ),
            ));
            return None;
        };
        if !d.engine.starts_with("PostgreSQL") {
            self.err(refuse(format!("`{db}` runs {}", d.engine), "connect it to a PostgreSQL database".into()));
            return None;
        }
        let Some(host) = d.host.clone() else {
            self.err(refuse(
                format!("`{db}` is on no private network"),
                format!("put a {} host on a private network: the database is attached to it", d.provider_kind.name()),
            ));
            return None;
        };
        if !self.managed[db].network.as_ref().is_some_and(|n| self.host_on(&p.host, n)) {
            self.err(refuse(
                format!("host `{}` is not on `{db}`'s private network", p.host),
                format!("add `{}` to the host's `networks`", self.managed[db].network.clone().unwrap_or_default()),
            ));
            return None;
        }
        if r.provision.as_ref().is_some_and(|x| x.monitor) {
            // The provider's API makes users with database privileges only (rdb_privilege.md:
            // readonly, readwrite, all, custom), never a member of pg_monitor.
            self.err(refuse(
                format!("slot `{}` of `{}` wants a monitoring role (pg_monitor)", r.slot.value, p.module.decl.name.value),
                format!(
                    "kiln makes a managed database's roles through {}'s API, which grants database privileges only, \
                     never pg_monitor: watch `{db}` with the provider's own metrics instead",
                    d.provider_kind.name()
                ),
            ));
            return None;
        }
        let Some(prov) = r.provision.as_ref().filter(|x| !x.role_only()) else {
            self.err(refuse(
                format!("slot `{}` of `{}` provisions no database and role", r.slot.value, p.module.decl.name.value),
                "only a slot with `provision` says which database and role the service wants".into(),
            ));
            return None;
        };
        let opt = |o: &Sp<String>| p.options.get(&o.value).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let database = prov.database.as_ref().map(opt).unwrap_or_default();
        let role = opt(&prov.role);
        let Some((_, secret)) = p.decl.secrets.iter().find(|(s, _)| s.value == prov.password.value) else {
            self.err(
                Diagnostic::error("E0025", format!("service `{name}` needs secret `{}`", prov.password.value))
                    .primary(span, format!("role `{role}` on `{db}` gets this password"))
                    .help(format!("add `secrets.{} = \"NAME\"` naming a secret from `[secrets]`", prov.password.value)),
            );
            return None;
        };
        // A password secret that is not declared has its own error (`undefined-secret`), which
        // stops this service: it becomes no client, so no other client conflicts with it.
        if !self.secret_declared(&secret.value) {
            return None;
        }
        // Only the sequential half writes here; the workers share the map once it is done.
        let clients = &mut std::sync::Arc::make_mut(&mut self.managed).get_mut(db).unwrap().clients;
        match clients.iter_mut().find(|x| x.database == database || x.role == role) {
            // One application's services (a web process and its worker) share its database
            // and role: the same names and the same password secret are one client.
            Some(other) if other.database == database && other.role == role && other.secret == secret.value => {
                other.shared_with.push(name.clone());
            }
            Some(other) => {
                let (other, other_secret) = (other.service.clone(), other.secret.clone());
                self.err(
                    Diagnostic::error(
                        "E0003",
                        format!("`{name}` and `{other}` both want database `{database}` or role `{role}` on `{db}`"),
                    )
                    .primary(span, "already another client's")
                    .help(format!(
                        "each client of one database has its own database and role: change one of the names; services of one \
                             application share both only with the same password secret (`{other}`'s is `{other_secret}`)"
                    )),
                );
                return None;
            }
            None => {
                clients.push(ManagedClient { service: name.clone(), database, role, secret: secret.value.clone(), shared_with: Vec::new() })
            }
        }
        Some(Dependency {
            slot: Some(r.slot.value.clone()),
            service: db.to_string(),
            endpoint: "postgres".into(),
            port: MANAGED_PG_PORT,
            protocol: Protocol::Tcp,
            address: host,
            same_host: false,
            usage: r.usage.as_ref().map(|u| u.value.clone()),
            prepared_statements: r.prepared_statements,
            derived: false,
            no_wait: !r.wait,
            path: None,
            route: None,
            // A managed database's TLS is its own (the templates' `tls` says so); not a module's.
            tls: false,
            span,
        })
    }

    /// Whether host `h` has an address on network `net`.
    fn host_on(&self, h: &str, net: &str) -> bool {
        self.inputs
            .files
            .iter()
            .flat_map(|f| &f.hosts)
            .filter(|x| x.name.value == h)
            .any(|x| x.networks.iter().any(|(n, _)| n.value == net))
    }
}
