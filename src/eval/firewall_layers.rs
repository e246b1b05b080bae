//! Which layer enforces each derived firewall rule, and what the provider's firewall carries.
//!
//! A rule is enforced where the packets it admits pass:
//! - the provider's firewall, for the traffic it sees. Hetzner Cloud firewalls filter the public
//!   interfaces only ("Can Firewalls secure traffic to my private Hetzner Cloud Networks? No",
//!   docs.hetzner.com/cloud/firewalls/faq, quoted in vitobotta/hetzner-k3s#779); Scaleway
//!   security groups filter public traffic only (scaleway.com/en/docs/vpc/faq: "Security groups
//!   filter public traffic on your Instances, whereas NACLs filter …" traffic between Private
//!   Networks); DigitalOcean cloud firewalls filter every interface, the VPC's included, deny by
//!   default. A rule for traffic a provider firewall never sees is not emitted there.
//! - ufw on the host (INPUT), for what a host process (sshd, a native service) answers;
//! - ufw's route rules through `DOCKER-USER`, for a port Docker publishes: its DNAT sends the
//!   packets through FORWARD, past INPUT (`render::provision`'s `DOCKER_USER_RULES`);
//! - the Compose network, for containers on one host that reach each other with no port
//!   published (bridge isolation).

use crate::model::{FirewallRule, Host, System};
use crate::syntax::system::ProviderKind;
use crate::types::Cidr;

/// Docker's default address pools: the sources of a rule for containers on the same host that
/// connect to a service on the host itself.
pub const DOCKER_POOLS: [&str; 2] = ["172.16.0.0/12", "192.168.0.0/16"];

/// Address blocks that never arrive from the internet (RFC 1918, shared address space,
/// loopback, link-local, unique local).
const NOT_ROUTED: [&str; 8] =
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "fc00::/7", "fe80::/10"];

/// What a provider's firewall filters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sees {
    /// Only the public interfaces.
    Public,
    /// Every interface, the private network's included.
    Everything,
}

/// The provider's firewall kiln writes for a host, and what it filters.
fn provider_firewall(kind: ProviderKind) -> Option<(&'static str, Sees)> {
    match kind {
        ProviderKind::Hetzner => Some(("Hetzner Cloud firewall", Sees::Public)),
        ProviderKind::DigitalOcean => Some(("DigitalOcean cloud firewall", Sees::Everything)),
        ProviderKind::Scaleway => Some(("Scaleway security group", Sees::Public)),
        ProviderKind::Existing | ProviderKind::Cloudflare => None,
    }
}

/// Where the packets from one source come from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Origin {
    /// Containers on the host itself, through a Docker bridge.
    Containers,
    /// A private network (the system's, or any address the internet does not route).
    Private,
    /// The internet.
    Internet,
}

fn within(block: &Cidr, c: &Cidr) -> bool {
    block.prefix <= c.prefix && block.contains(c.addr)
}

fn parse_all<'a>(list: &'a [&'a str]) -> impl Iterator<Item = Cidr> + 'a {
    list.iter().filter_map(|c| Cidr::parse(c).ok())
}

pub fn origin(sys: &System, c: &Cidr) -> Origin {
    if parse_all(&DOCKER_POOLS).any(|p| p == *c) {
        Origin::Containers
    } else if sys.networks.values().any(|n| within(n, c)) || parse_all(&NOT_ROUTED).any(|b| within(&b, c)) {
        Origin::Private
    } else {
        Origin::Internet
    }
}

/// Whether a host has an interface on the internet (an existing host is reached at its address).
fn has_public_interface(host: &Host) -> bool {
    host.public || host.address.is_some()
}

/// The sources the provider's firewall carries for a rule: `None` when the provider's firewall
/// never sees the rule's traffic (or kiln writes none for the host), `Some(empty)` for anyone.
pub fn provider_sources(sys: &System, host: &Host, rule: &FirewallRule) -> Option<Vec<Cidr>> {
    let (_, sees) = provider_firewall(host.provider_kind)?;
    // A DigitalOcean droplet always has a public IPv4 address; the others only when public.
    if sees == Sees::Public && !has_public_interface(host) {
        return None;
    }
    if rule.sources.is_empty() {
        return Some(Vec::new());
    }
    let kept: Vec<Cidr> = rule
        .sources
        .iter()
        .copied()
        .filter(|c| match origin(sys, c) {
            Origin::Containers => false,
            Origin::Private => sees == Sees::Everything,
            Origin::Internet => true,
        })
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// A layer that enforces a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// The provider's firewall; `partial` when it carries only some of the rule's sources.
    Provider { name: &'static str, partial: bool },
    /// ufw's INPUT rules on the host.
    Ufw,
    /// `DOCKER-USER` sending forwarded packets through ufw's route rules.
    DockerUser,
    /// A Compose network on the host (no port published).
    Compose(String),
}

impl Layer {
    pub fn describe(&self) -> String {
        match self {
            Layer::Provider { name, partial: false } => name.to_string(),
            Layer::Provider { name, partial: true } => format!("{name} (its public sources)"),
            Layer::Ufw => "ufw".into(),
            Layer::DockerUser => "`DOCKER-USER` (ufw route rule)".into(),
            Layer::Compose(n) => format!("Compose network `{n}`"),
        }
    }
}

/// Whether a container publishes the rule's port on one of the host's non-loopback addresses.
fn published_by_container(sys: &System, host: &Host, rule: &FirewallRule) -> bool {
    host.services
        .iter()
        .filter_map(|s| sys.services.get(s))
        .filter(|s| s.container.is_some())
        .any(|s| s.published.iter().any(|p| p.port == rule.port && p.protocol == rule.protocol && !p.bind.is_loopback()))
}

/// The layers that enforce one of a host's rules, outermost first.
pub fn enforced_by(sys: &System, host: &Host, rule: &FirewallRule) -> Vec<Layer> {
    let mut layers = Vec::new();
    if let (Some((name, _)), Some(kept)) = (provider_firewall(host.provider_kind), provider_sources(sys, host, rule)) {
        layers.push(Layer::Provider { name, partial: kept.len() != rule.sources.len() });
    }
    let from_containers = !rule.sources.is_empty() && rule.sources.iter().all(|c| origin(sys, c) == Origin::Containers);
    if !from_containers && published_by_container(sys, host, rule) {
        layers.push(Layer::DockerUser);
    } else {
        layers.push(Layer::Ufw);
    }
    layers
}

/// `enforced_by` as one phrase.
pub fn describe(sys: &System, host: &Host, rule: &FirewallRule) -> String {
    enforced_by(sys, host, rule).iter().map(Layer::describe).collect::<Vec<_>>().join(", ")
}

/// A connection between containers on one host: no port is published and no firewall rule
/// opens it; the Compose network they share keeps everything else out.
pub struct ComposeLink<'a> {
    pub host: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub port: u16,
    pub protocol: &'static str,
    pub network: String,
    pub why: String,
}

/// The Compose network two containers on one host share (`default` when neither names one).
pub(crate) fn shared_network(a: &crate::model::Service, b: &crate::model::Service) -> Option<String> {
    let host_net = |s: &crate::model::Service| s.container.as_ref().is_some_and(|c| c.network_mode.as_deref() == Some("host"));
    if host_net(a) || host_net(b) {
        return None;
    }
    if a.bridges.is_empty() && b.bridges.is_empty() {
        return Some("default".into());
    }
    a.bridges.iter().find(|n| b.bridges.contains(n)).cloned()
}

/// Every same-host connection between containers (declared, derived and routes' upstreams).
pub fn compose_links(sys: &System) -> Vec<ComposeLink<'_>> {
    let mut out = Vec::new();
    for s in sys.services.values().filter(|s| s.container.is_some()) {
        for d in s.deps.iter().filter(|d| d.same_host) {
            let Some(t) = sys.services.get(&d.service).filter(|t| t.container.is_some()) else { continue };
            let Some(network) = shared_network(s, t) else { continue };
            let verb = if d.derived { "scrapes" } else { "connects to" };
            out.push(ComposeLink {
                host: &s.host,
                from: &s.name,
                to: &t.name,
                port: d.port,
                protocol: d.protocol.name(),
                network,
                why: format!("`{}` {verb} `{}`", s.name, t.name),
            });
        }
    }
    // A route's or a stream's edge reaching its service beside it on one host.
    let mut edge_link = |edge_service: &str, service: &str, endpoint: &str, why: String| {
        let (Some(edge), Some(t)) = (sys.services.get(edge_service), sys.services.get(service)) else { return };
        if edge.host != t.host || edge.container.is_none() || t.container.is_none() {
            return;
        }
        let Some(ep) = t.endpoint(endpoint) else { return };
        let Some(network) = shared_network(edge, t) else { return };
        out.push(ComposeLink { host: &t.host, from: &edge.name, to: &t.name, port: ep.port, protocol: ep.protocol.name(), network, why });
    };
    for r in &sys.routes {
        edge_link(&r.edge_service, &r.service, &r.endpoint, format!("route `{}`", r.hostname));
    }
    for st in &sys.streams {
        edge_link(&st.edge_service, &st.service, &st.endpoint, format!("stream `{}`", st.name));
    }
    out.sort_by(|a, b| (a.host, a.to, a.port, a.from, &a.why).cmp(&(b.host, b.to, b.port, b.from, &b.why)));
    out.dedup_by(|a, b| (a.host, a.from, a.to, a.port, &a.why) == (b.host, b.from, b.to, b.port, &b.why));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn within_is_containment() {
        assert!(within(&c("10.0.0.0/8"), &c("10.0.0.2/32")));
        assert!(!within(&c("10.0.0.0/24"), &c("10.0.0.0/8")));
        assert!(!within(&c("10.0.0.0/8"), &c("198.51.100.0/24")));
        assert!(within(&c("fc00::/7"), &c("fd00::1/128")));
    }
}
