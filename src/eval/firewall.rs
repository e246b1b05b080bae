//! The derived host firewall: a port opens only for a connection, route or admin that needs it,
//! and only to the addresses that connection comes from. Also decides which ports are published.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::model::{FirewallRule, Publish, System};
use crate::syntax::module::Protocol;
use crate::types::Cidr;

fn host_cidr(ip: IpAddr) -> Cidr {
    Cidr { addr: ip, prefix: if ip.is_ipv4() { 32 } else { 128 } }
}

/// Who may connect to one port (`None`: anyone), and why.
type Opening = (Option<Vec<Cidr>>, Vec<String>);

#[derive(Default)]
struct Rules {
    by_port: BTreeMap<(u16, Protocol), Opening>,
}

impl Rules {
    fn open(&mut self, port: u16, protocol: Protocol, sources: Option<Vec<Cidr>>, reason: String) {
        let e = self.by_port.entry((port, protocol)).or_insert_with(|| (Some(Vec::new()), Vec::new()));
        match (&mut e.0, sources) {
            (None, _) => {}
            (slot @ Some(_), None) => *slot = None,
            (Some(have), Some(more)) => have.extend(more),
        }
        if !e.1.contains(&reason) {
            e.1.push(reason);
        }
    }
    fn finish(self) -> Vec<FirewallRule> {
        self.by_port
            .into_iter()
            .map(|((port, protocol), (sources, mut reasons))| {
                let mut sources = sources.unwrap_or_default();
                sources.sort();
                sources.dedup();
                reasons.sort();
                FirewallRule { port, protocol, sources, reason: reasons.join("; "), forwarded_port: None, forwarded: false }
            })
            .collect()
    }
}

/// The port an endpoint listens on inside its container, for a connection that dials `port` on
/// the host.
fn container_port(s: &crate::model::Service, endpoint: &str, port: u16) -> u16 {
    s.endpoint(endpoint).filter(|e| e.host_port == port).map(|e| e.port).unwrap_or(port)
}

pub fn derive(sys: &mut System) {
    let mut rules: BTreeMap<String, Rules> = sys.hosts.keys().map(|h| (h.clone(), Rules::default())).collect();
    let mut publish: BTreeMap<String, Vec<Publish>> = BTreeMap::new();
    let private = |h: &str| sys.hosts.get(h).and_then(|h| h.private_address());

    // SSH: public hosts from the admins' sources, private hosts through the bastions.
    let admin_sources: Vec<Cidr> = sys.admins.iter().flat_map(|a| a.sources.iter().copied()).collect();
    let bastions: Vec<Cidr> = sys.hosts.values().filter(|h| h.bastion).filter_map(|h| h.private_address()).map(host_cidr).collect();
    for (name, h) in &sys.hosts {
        let (sources, reason) = if !h.public && !bastions.is_empty() {
            (Some(bastions.clone()), "ssh from the bastion hosts".to_string())
        } else if admin_sources.is_empty() {
            (None, "ssh for admins (no admin sources declared)".to_string())
        } else {
            (Some(admin_sources.clone()), "ssh from the admin sources".to_string())
        };
        rules.get_mut(name).unwrap().open(h.ssh_port, Protocol::Tcp, sources, reason);
    }

    // Routes: 80/443 on the edge host, unless the route arrives through a tunnel (its
    // connector dials out and reaches the edge on their Compose network); the upstream port
    // from the edge's private address.
    let cdn = sys.cdn.as_deref().map(crate::eval::cdn::ranges);
    for r in &sys.routes {
        let tunnelled = super::tunnel::carrier(sys, r).is_some();
        let edge = rules.get_mut(&r.edge_host).unwrap();
        let reason = |p: &str| format!("{p} for routes terminated by `{}`", r.edge_service);
        if !tunnelled {
            edge.open(80, Protocol::Tcp, cdn.clone(), reason("http"));
            edge.open(443, Protocol::Tcp, cdn.clone(), reason("https"));
            edge.open(443, Protocol::Udp, cdn.clone(), reason("http/3"));
        }
        let mut upstreams = vec![(r.service.as_str(), r.endpoint.as_str(), format!("route `{}`", r.hostname))];
        for (fa, what) in [(&r.auth, "forward auth"), (&r.crowdsec, "crowdsec bouncer")] {
            if let Some(a) = fa {
                upstreams.push((a.service.as_str(), a.endpoint.as_str(), format!("{what} for `{}`", r.hostname)));
            }
        }
        let edge_svc = &sys.services[&r.edge_service];
        if edge_svc.container.is_some() && !tunnelled {
            // A containerised edge listens through published ports, on every address.
            for (port, protocol) in [(80, Protocol::Tcp), (443, Protocol::Tcp), (443, Protocol::Udp)] {
                publish.entry(r.edge_service.clone()).or_default().push(Publish {
                    bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    port,
                    protocol,
                    target: port,
                });
            }
        }
        for (svc_name, ep_name, why) in upstreams {
            let svc = &sys.services[svc_name];
            let Some(ep) = svc.endpoint(ep_name) else {
                continue;
            };
            if svc.host == r.edge_host {
                if edge_svc.container.is_some() && svc.container.is_some() {
                    continue; // the Compose network connects them
                }
                publish.entry(svc_name.to_string()).or_default().push(Publish {
                    bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    port: ep.host_port,
                    protocol: ep.protocol,
                    target: ep.port,
                });
                continue;
            }
            let (Some(from), Some(bind)) = (private(&r.edge_host), private(&svc.host)) else {
                continue;
            };
            rules.get_mut(&svc.host).unwrap().open(
                ep.host_port,
                ep.protocol,
                Some(vec![host_cidr(from)]),
                format!("{why} from `{}`", r.edge_host),
            );
            publish.entry(svc_name.to_string()).or_default().push(Publish {
                bind,
                port: ep.host_port,
                protocol: ep.protocol,
                target: ep.port,
            });
        }
    }

    // Streams: the public port on the edge host, from the stream's sources only; the edge
    // reaches the endpoint as it reaches a route's.
    for st in &sys.streams {
        let sources = (!st.allow.is_empty()).then(|| st.allow.clone());
        let why = format!("stream `{}`", st.name);
        rules.get_mut(&st.edge_host).unwrap().open(st.port, st.protocol, sources, format!("{why} forwarded by `{}`", st.edge_service));
        let edge_svc = &sys.services[&st.edge_service];
        if edge_svc.container.is_some() {
            publish.entry(st.edge_service.clone()).or_default().push(Publish {
                bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port: st.port,
                protocol: st.protocol,
                target: st.port,
            });
        }
        let svc = &sys.services[&st.service];
        let Some(ep) = svc.endpoint(&st.endpoint) else { continue };
        if svc.host == st.edge_host {
            if edge_svc.container.is_some() && svc.container.is_some() {
                continue; // the Compose network connects them
            }
            publish.entry(st.service.clone()).or_default().push(Publish {
                bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: ep.host_port,
                protocol: ep.protocol,
                target: ep.port,
            });
            continue;
        }
        let (Some(from), Some(bind)) = (private(&st.edge_host), private(&svc.host)) else {
            continue;
        };
        rules.get_mut(&svc.host).unwrap().open(
            ep.host_port,
            ep.protocol,
            Some(vec![host_cidr(from)]),
            format!("{why} from `{}`", st.edge_host),
        );
        publish.entry(st.service.clone()).or_default().push(Publish { bind, port: ep.host_port, protocol: ep.protocol, target: ep.port });
    }

    // Exposed endpoints: open to everyone on the host's addresses, without an edge.
    for (name, s) in &sys.services {
        for e in &s.expose {
            let Some(ep) = s.endpoint(e) else { continue };
            rules.get_mut(&s.host).unwrap().open(ep.host_port, ep.protocol, None, format!("`{name}` exposes `{e}`"));
            if s.container.is_some() {
                publish.entry(name.clone()).or_default().push(Publish {
                    bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    port: ep.host_port,
                    protocol: ep.protocol,
                    target: ep.port,
                });
            }
        }
    }

    // Connections on one host that cross between the host and its containers.
    for (name, s) in &sys.services {
        for d in s.deps.iter().filter(|d| d.same_host) {
            let Some(target) = sys.services.get(&d.service) else { continue };
            match (s.container.is_some(), target.container.is_some()) {
                (false, true) => publish.entry(d.service.clone()).or_default().push(Publish {
                    bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    port: d.port,
                    protocol: d.protocol,
                    target: container_port(target, &d.endpoint, d.port),
                }),
                (true, false) => {
                    // Containers come from Docker's default address pools.
                    let pools = super::firewall_layers::DOCKER_POOLS.iter().filter_map(|c| Cidr::parse(c).ok()).collect();
                    rules.get_mut(&s.host).unwrap().open(
                        d.port,
                        d.protocol,
                        Some(pools),
                        format!("container `{name}` connects to `{}` on the host", d.service),
                    );
                }
                _ => {}
            }
        }
    }

    // Connections between hosts.
    for (name, s) in &sys.services {
        // (a connection through a public route arrives at the edge's 443, open already)
        for d in s.deps.iter().filter(|d| !d.same_host && d.route.is_none()) {
            // A peer that failed to resolve has already been reported.
            let Some(target) = sys.services.get(&d.service) else { continue };
            let (Some(from), Some(bind)) = (private(&s.host), private(&target.host)) else {
                continue;
            };
            rules.get_mut(&target.host).unwrap().open(
                d.port,
                d.protocol,
                Some(vec![host_cidr(from)]),
                format!("`{name}` on `{}` {} `{}`", s.host, if d.derived { "scrapes" } else { "connects to" }, d.service),
            );
            // `d.port` is the host port the peer dials; the container listens on its own.
            let target_port = container_port(target, &d.endpoint, d.port);
            publish.entry(d.service.clone()).or_default().push(Publish { bind, port: d.port, protocol: d.protocol, target: target_port });
        }
    }

    for (name, r) in rules {
        sys.hosts.get_mut(&name).unwrap().firewall = r.finish();
    }
    // A port a container publishes takes forwarded traffic too (a native service's is the
    // host's own). Published on another host port, forwarded packets are matched after
    // Docker's DNAT, on the container's port. Two services cannot publish one host port
    // (`port-conflict`), so it is one container's.
    for (name, p) in &publish {
        let Some(host) = sys.services.get(name).filter(|s| s.native.is_none()).map(|s| s.host.clone()) else { continue };
        let Some(h) = sys.hosts.get_mut(&host) else { continue };
        for p in p {
            if let Some(r) = h.firewall.iter_mut().find(|r| r.port == p.port && r.protocol == p.protocol) {
                r.forwarded = true;
                if p.port != p.target {
                    r.forwarded_port = Some(p.target);
                }
            }
        }
    }
    for (name, mut p) in publish {
        p.sort();
        p.dedup();
        if let Some(s) = sys.services.get_mut(&name) {
            s.published = p;
        }
    }
}
