//! Several instances of one module on a host: each container endpoint gets a host port of its
//! own. A container endpoint whose host port is neither the module's `host_port` nor the
//! system's `ports` nor exposed to the internet moves, when an earlier service (by name) on the
//! host holds that port, to the next free port above it; the container keeps its own port.
//! Connections, routes and the firewall then use the moved port. A note says where each moved
//! port went and how to pin it (`ports = { ENDPOINT = N }`), so adding a service never moves a
//! port silently.

use super::*;

use crate::syntax::module::Protocol;

/// Ports no container endpoint is moved onto: the host's sshd (`ssh_port`, 22 by default), and
/// an edge's HTTP(S).
const EDGE: [(u16, Protocol); 3] = [(80, Protocol::Tcp), (443, Protocol::Tcp), (443, Protocol::Udp)];

impl Resolver<'_> {
    /// Moves colliding container endpoints to free host ports (see the module comment).
    /// `edged`: the services routes and streams reach, each with the edge it names.
    pub(super) fn assign_ports(&mut self, partials: &mut BTreeMap<String, Partial<'_>>, edged: &[(&str, Option<&str>)]) {
        // Only a port the host publishes can collide: one a client on another host, a native
        // client, an edge (unless a container edge beside it) or a metrics collector reaches.
        let collectors: Vec<&Partial<'_>> = partials.values().filter(|p| p.module.decl.collect_metrics).collect();
        let edges: Vec<&Partial<'_>> = partials.values().filter(|p| p.module.decl.edge.is_some()).collect();
        let container = |p: &Partial<'_>| p.module.decl.kind.value == ModuleKind::Container;
        // The edge a route takes: the one it names, else the only one (else unknown: `None`).
        let edge_of = |named: Option<&str>| match named {
            Some(n) => partials.get(n),
            None if edges.len() == 1 => Some(edges[0]),
            None => None,
        };
        // The edges each service is reached through, by service: a scan of `edged` per service
        // was quadratic in the fleet (a fifth of `kiln check` at 10,000 hosts).
        let mut edged_by_service: BTreeMap<&str, Vec<Option<&str>>> = BTreeMap::new();
        for (s, e) in edged {
            edged_by_service.entry(s).or_default().push(*e);
        }
        let mut published: BTreeSet<(String, String)> = BTreeSet::new();
        for (name, p) in partials.iter() {
            let native_or_remote = p.clients.iter().filter_map(|c| partials.get(c)).any(|c| c.host != p.host || !container(c));
            let by_edge = edged_by_service
                .get(name.as_str())
                .into_iter()
                .flatten()
                .any(|e| edge_of(*e).is_none_or(|e| e.host != p.host || !container(e) || !container(p)));
            let metrics = p.module.decl.metrics.as_ref().map(|m| m.endpoint.value.as_str());
            for e in &p.endpoints {
                let scraped = metrics == Some(e.name.as_str())
                    && collectors.iter().any(|c| c.decl.name.value != *name && (c.host != p.host || !container(c) || !container(p)));
                if native_or_remote || by_edge || scraped {
                    published.insert((name.clone(), e.name.clone()));
                }
            }
        }
        let mut by_host: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, p) in partials.iter() {
            by_host.entry(p.host.clone()).or_default().push(name.clone());
        }
        // Each host's sshd port as its first declaration gives it (looked up per host, not
        // scanned for: that was quadratic in the fleet).
        let mut ssh_ports: BTreeMap<&str, Option<u16>> = BTreeMap::new();
        let inputs = self.inputs;
        for h in inputs.files.iter().flat_map(|f| &f.hosts) {
            ssh_ports.entry(h.name.value.as_str()).or_insert(h.ssh_port.as_ref().map(|p| p.value));
        }
        for (host, names) in &by_host {
            // Ports that cannot move: sshd's, native endpoints, module and system choices,
            // exposed endpoints, an edge's.
            let ssh_port = ssh_ports.get(host.as_str()).copied().flatten();
            let mut taken: BTreeSet<(u16, Protocol)> = [(ssh_port.unwrap_or(22), Protocol::Tcp)].into();
            for n in names {
                let p = &partials[n];
                if p.module.decl.edge.is_some() {
                    taken.extend(EDGE);
                }
                for e in &p.endpoints {
                    if !movable(p, e) {
                        taken.insert((e.host_port, e.protocol));
                    }
                }
            }
            for n in names {
                let p = partials.get_mut(n).unwrap();
                let mut moved = Vec::new();
                for e in p.endpoints.iter_mut() {
                    if !movable_decl(p.decl, p.module, e) || !published.contains(&(n.clone(), e.name.clone())) {
                        continue;
                    }
                    let key = (e.host_port, e.protocol);
                    if taken.insert(key) {
                        continue;
                    }
                    let Some(free) = (e.host_port.saturating_add(1)..=u16::MAX).find(|q| !taken.contains(&(*q, e.protocol))) else {
                        continue; // nothing free: `port-conflict` says so
                    };
                    taken.insert((free, e.protocol));
                    moved.push((e.name.clone(), e.host_port, free));
                    e.host_port = free;
                }
                for (ep, from, to) in moved {
                    self.err(
                        Diagnostic::info(
                            "port-assigned",
                            format!("`{n}` publishes endpoint `{ep}` on host port {to} ({from} is taken on host `{}`)", p.host),
                        )
                        .primary(p.decl.name.span, format!("`{ep}` gets host port {to}; the container keeps {from}"))
                        .help(format!("to keep this port when services are added, pin it: `ports = {{ {ep} = {to} }}`")),
                    );
                }
            }
        }
    }
}

/// Whether kiln may move this endpoint's host port: a container's, not chosen by the module
/// (`host_port`) or the system (`ports`), not exposed to the internet.
fn movable(p: &Partial<'_>, e: &Endpoint) -> bool {
    movable_decl(p.decl, p.module, e)
}

fn movable_decl(s: &ServiceDecl, m: &LoadedModule, e: &Endpoint) -> bool {
    m.decl.kind.value == ModuleKind::Container
        && m.decl.edge.is_none()
        && !m.decl.endpoints.iter().any(|d| d.name.value == e.name && d.host_port.is_some())
        && !s.ports.iter().any(|(n, _)| n.value == e.name)
        && !s.expose.iter().any(|x| x.value == e.name)
        && m.decl.container.as_ref().is_none_or(|c| c.network_mode.is_none())
}
