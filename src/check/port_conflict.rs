//! `port-conflict`: two services on one host cannot bind the same host port.

use std::collections::BTreeMap;

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::{Service, System};

pub const RULE: Rule = Rule {
    id: "port-conflict",
    summary: "two services on one host bind the same port",
    explanation: "Ports published on a host (for peers on other hosts, or for the edge on the same \
host) and the ports of native services share the host's port space. Two of them on one port and \
protocol means the second fails to start on the server, long after the build said yes.",
    allowable: false,
    check,
};

/// What frees the port: a container endpoint published on another host port (`ports`), else
/// another host.
fn help(sys: &System, host: &crate::model::Host, s: &Service, o: &Service, (port, proto): (u16, &str)) -> String {
    // The one of the two whose host port kiln can move: a container's endpoint.
    let movable = |x: &Service| {
        x.container.as_ref().filter(|c| c.network_mode.is_none() && x.edge.is_none())?;
        x.endpoints.iter().find(|e| e.host_port == port && e.protocol.name() == proto).map(|e| e.name.clone())
    };
    let Some((who, ep)) = movable(s).map(|e| (s, e)).or_else(|| movable(o).map(|e| (o, e))) else {
        return "move one of the services to another host, or give the native one another port through its options".into();
    };
    let used: std::collections::BTreeSet<u16> = host
        .services
        .iter()
        .flat_map(|n| {
            let x = &sys.services[n];
            x.published.iter().map(|p| p.port).chain(x.endpoints.iter().map(|e| e.host_port))
        })
        .chain([host.ssh_port, 80, 443])
        .collect();
    let free = (port.saturating_add(1)..=u16::MAX).find(|q| !used.contains(q)).unwrap_or(port);
    format!(
        "publish `{}`'s endpoint `{ep}` on another host port (the container keeps {port}; its peers and the firewall follow): `[services.{}] ports = {{ {ep} = {free} }}`",
        who.name, who.name
    )
}

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for host in sys.hosts.values() {
        let mut seen: BTreeMap<(u16, &'static str), &str> = BTreeMap::new();
        for name in &host.services {
            let s = &sys.services[name];
            let mut ports: Vec<(u16, &'static str)> = s.published.iter().map(|p| (p.port, p.protocol.name())).collect();
            if s.native.is_some() {
                ports.extend(s.endpoints.iter().map(|e| (e.port, e.protocol.name())));
            }
            if s.edge.is_some() {
                ports.extend([(80, "tcp"), (443, "tcp"), (443, "udp")]);
            }
            ports.sort();
            ports.dedup();
            for p in ports {
                if let Some(other) = seen.get(&p) {
                    let o = &sys.services[*other];
                    out.push(
                        Diagnostic::error(
                            RULE.id,
                            format!("services `{}` and `{}` both use port {}/{} on host `{}`", o.name, s.name, p.0, p.1, host.name),
                        )
                        .primary(s.span, format!("port {}/{} is taken", p.0, p.1))
                        .secondary(o.span, "already used here")
                        .help(help(sys, host, s, o, p)),
                    );
                } else {
                    seen.insert(p, name);
                }
            }
        }
    }
    out
}
