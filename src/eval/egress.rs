//! Egress: how each host reaches the internet. A host without a public address installs
//! packages, pulls images and (on stage 0) fetches its bundle through a public host on a common
//! private network that masquerades for it (`egress = "via:GATEWAY"`, or the only candidate).
//! What cannot be derived is left as [`Egress::Missing`] for the `no-egress` rule.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::{Egress, Host, System};
use crate::syntax::system::ProviderKind;
use crate::types::Cidr;

/// Whether the host has a route out of its own. DigitalOcean droplets always keep their public
/// IPv4 (kiln does not turn `public_networking` off; the cloud firewall closes it inbound);
/// an existing host's network is its owner's.
fn direct(h: &Host) -> bool {
    h.public || matches!(h.provider_kind, ProviderKind::DigitalOcean | ProviderKind::Existing)
}

/// A private Scaleway host on a private network: with no public Scaleway host on it to route
/// through, it leaves through the network's Public Gateway (`scaleway_vpc_public_gateway`,
/// masquerade and the default route pushed by the network's DHCP).
pub fn scaleway_gateway(h: &Host) -> bool {
    h.provider_kind == ProviderKind::Scaleway && !h.public && !h.addresses.is_empty()
}

/// The network's own gateway on Hetzner: the first address of the network.
fn first_address(cidr: &Cidr) -> Option<IpAddr> {
    match cidr.network() {
        IpAddr::V4(a) => Some(IpAddr::V4((u32::from(a) + 1).into())),
        IpAddr::V6(_) => None,
    }
}

pub fn derive(sys: &mut System) {
    let mut decided: BTreeMap<String, Egress> = BTreeMap::new();
    // Every host that could be a gateway, listed once (not once per host).
    let publics: Vec<&Host> = sys.hosts.values().filter(|g| g.public && g.provider_kind != ProviderKind::Existing).collect();
    for (name, h) in &sys.hosts {
        let decl = h.egress_decl.as_ref().map(|(d, _)| d.as_str());
        // Public hosts of the same provider that share a private network with this one
        // (needed only for a host without a route of its own, or one that declares egress).
        let candidates: Vec<(&Host, &str)> = if direct(h) && decl.is_none_or(|d| d == "none") {
            Vec::new()
        } else {
            publics
                .iter()
                .filter(|g| g.name != h.name && g.provider_kind == h.provider_kind)
                .filter_map(|g| h.addresses.keys().find(|n| g.addresses.contains_key(*n)).map(|n| (*g, n.as_str())))
                .collect()
        };
        let missing = |problem: String| Egress::Missing { problem, candidates: candidates.iter().map(|(g, _)| g.name.clone()).collect() };
        let egress = if direct(h) {
            match decl {
                Some(d) if d != "none" => missing(format!(
                    "host `{name}` has its own public address: `egress = \"{d}\"` would send its traffic through another host for nothing"
                )),
                _ => Egress::Direct,
            }
        } else {
            let chosen = match decl {
                Some("none") => None,
                Some(d) => match d.strip_prefix("via:") {
                    Some(g) => match candidates.iter().find(|(c, _)| c.name == g) {
                        Some(c) => Some(Ok(*c)),
                        None if sys.hosts.contains_key(g) => Some(Err(format!(
                            "`{g}` cannot be the gateway of `{name}`: it must be a public {} host on a private network `{name}` is on",
                            h.provider_kind.name()
                        ))),
                        None => Some(Err(format!("there is no host `{g}` to be the gateway of `{name}`"))),
                    },
                    None => Some(Err(format!("`egress = \"{d}\"` is neither `via:GATEWAY` nor `none`"))),
                },
                // Scaleway: the private network's Public Gateway masquerades for it and its DHCP
                // pushes the default route (`render::tofu` creates it); `egress = "via:HOST"`
                // picks a host instead.
                None if scaleway_gateway(h) => {
                    decided.insert(name.clone(), Egress::Direct);
                    continue;
                }
                None => match candidates.as_slice() {
                    [one] => Some(Ok(*one)),
                    [] => Some(Err(format!("host `{name}` has no public address and no public host shares a private network with it"))),
                    _ => Some(Err(format!("host `{name}` has no public address and several public hosts could be its gateway"))),
                },
            };
            match chosen {
                None => Egress::None,
                Some(Err(problem)) => missing(problem),
                Some(Ok((g, net))) => {
                    let cidr = sys.networks[net];
                    let gateway_address = g.addresses[net];
                    let next_hop = match h.provider_kind {
                        // Cloud networks are routed (layer 3): every packet goes to the network's
                        // gateway, which a `hcloud_network_route` sends on to the gateway host.
                        // https://docs.hetzner.com/networking/networks/technical-concepts/architecture
                        ProviderKind::Hetzner => first_address(&cidr).unwrap_or(gateway_address),
                        _ => gateway_address,
                    };
                    Egress::Via { gateway: g.name.clone(), network: net.to_string(), gateway_address, next_hop }
                }
            }
        };
        decided.insert(name.clone(), egress);
    }
    // A Hetzner network has one route to 0.0.0.0/0: every host on it leaves through one gateway.
    let mut hetzner: BTreeMap<String, String> = BTreeMap::new();
    for (name, egress) in decided {
        let mut egress = egress;
        if let Egress::Via { gateway, network, .. } = &egress
            && sys.hosts[&name].provider_kind == ProviderKind::Hetzner
        {
            let first = hetzner.entry(network.clone()).or_insert_with(|| gateway.clone());
            if first != gateway {
                egress = Egress::Missing {
                    problem: format!(
                        "`{name}` leaves network `{network}` through `{gateway}`, but another host on it through `{first}`: a Hetzner network routes 0.0.0.0/0 to one gateway"
                    ),
                    candidates: vec![first.clone()],
                };
            }
        }
        if let Egress::Via { gateway, network, .. } = &egress {
            let cidr = sys.networks[network];
            sys.hosts.get_mut(gateway).unwrap().nat_for.insert(network.clone(), cidr);
        }
        sys.hosts.get_mut(&name).unwrap().egress = egress;
    }
}

/// What on a host needs the internet, for the `no-egress` rule and `SYSTEM.md`.
pub fn needs(sys: &System, h: &Host) -> Vec<String> {
    let mut out = vec!["its packages and security updates (ufw, fail2ban, unattended-upgrades)".to_string()];
    let images: Vec<&str> = h.services.iter().filter(|s| sys.services[*s].container.is_some()).map(|s| s.as_str()).collect();
    if !images.is_empty() {
        out.push(format!("the images of {}", images.join(", ")));
    }
    if sys.store_url.is_some() {
        out.push("its bundle from the store, when it boots through stage 0".into());
    }
    out
}

/// One line for `kiln show` and `SYSTEM.md`: how the host reaches the internet.
pub fn describe(h: &Host) -> String {
    match &h.egress {
        Egress::Direct if h.public => "its own public address".into(),
        Egress::Direct if scaleway_gateway(h) => "the private network's Public Gateway (NAT; default route from its DHCP)".into(),
        Egress::Direct => match h.provider_kind {
            ProviderKind::DigitalOcean => "its own public IPv4 (closed inbound by the cloud firewall)".into(),
            _ => "its own network".into(),
        },
        Egress::Via { gateway, network, next_hop, .. } => format!("NAT through `{gateway}` on `{network}` (default route via {next_hop})"),
        Egress::None => "none (`egress = \"none\"`)".into(),
        Egress::Missing { .. } => "none (no gateway)".into(),
    }
}
