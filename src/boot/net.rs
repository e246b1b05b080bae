//! The network plan of a fleet boot, as pure data: which NICs each VM gets (an uplink, a seed
//! link, one per private network), their MACs and addresses, and the NoCloud
//! `network-config` (v2) that gives the guest those addresses, matched by MAC.
//!
//! - A host with a route of its own (`Egress::Direct`, `eval::egress`) gets an uplink: qemu's
//!   user-mode network (NAT to the machine kiln runs on), with its seed and, for a public
//!   host, SSH, HTTP and HTTPS forwarded from loopback.
//! - Any other host gets no uplink, only a seed link: a user-mode network with
//!   `restrict=on` (no packet leaves it; only the seed server answers), on a subnet of its own
//!   with no route, so that everything else leaves as kiln's egress derivation says (a
//!   `via:GATEWAY` host's default route through the gateway on the private network).
//! - Each private network with a selected host on it is one segment shared by those VMs (a
//!   qemu multicast socket on loopback), on which each host has the address the model gives it.
//! - Where the egress derivation routes through the provider's router instead of the gateway
//!   itself (Hetzner: the network's first address, which Hetzner routes to the gateway), the
//!   lab has no such router: the gateway's NIC also takes that address, standing for it.
//! - A managed database on a network with a booted host gets a stand-in VM there
//!   ([`super::stand_in`]), booted first: an uplink (its packages) and the network, at the
//!   highest address no host holds. Every host on that network resolves through it alone (its
//!   uplink's DNS unused), as hosts on the provider's network resolve the database's name.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use super::stand_in::{self, DatabaseStandIn};
use crate::model::{Egress, System};
use crate::types::Cidr;

/// A qemu user-mode network (a /24): qemu's own address is `.2`, its DNS `.3`, the guest
/// `.15` (qemu's DHCP hands that out first), the seed server `.100`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slirp(pub [u8; 3]);

impl Serialize for Slirp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.net())
    }
}

impl Slirp {
    fn at(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.0[0], self.0[1], self.0[2], last)
    }
    /// The network, as qemu's `net=` takes it.
    pub fn net(&self) -> String {
        format!("{}/24", self.at(0))
    }
    /// qemu's address on it: the machine kiln runs on (its loopback), as the guest sees it.
    pub fn host(&self) -> Ipv4Addr {
        self.at(2)
    }
    pub fn dns(&self) -> Ipv4Addr {
        self.at(3)
    }
    pub fn guest(&self) -> Ipv4Addr {
        self.at(15)
    }
    pub fn seed(&self) -> Ipv4Addr {
        self.at(100)
    }
    fn cidr(&self) -> Cidr {
        Cidr { addr: IpAddr::V4(self.at(0)), prefix: 24 }
    }
}

/// The user-mode networks tried in order, skipping any that overlaps a network of the system
/// (qemu's default first, so that a system's admin sources can name its `10.0.2.2`).
const SLIRP_CANDIDATES: [[u8; 3]; 5] = [[10, 0, 2], [10, 0, 3], [172, 31, 254], [192, 168, 254], [192, 168, 253]];

/// The multicast group of the `index`th private network's segment.
fn group(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(230, 107, 0, (index + 1).min(254) as u8)
}

/// What a NIC is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Role {
    /// qemu user-mode networking with NAT out: the host's own route to the internet.
    Uplink,
    /// qemu user-mode networking with `restrict=on`: only the seed server answers.
    Seed,
    /// A private network of the system, shared by the VMs on it.
    Lan { network: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Nic {
    /// The interface's name in the guest (`set-name`).
    pub name: String,
    pub mac: String,
    #[serde(flatten)]
    pub role: Role,
    /// Static addresses with their prefix (none: DHCP from qemu).
    pub addresses: Vec<String>,
    /// The address this NIC also holds standing for the provider's router (see the module).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_stand_in: Option<IpAddr>,
}

/// One private network's segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lan {
    pub network: String,
    pub cidr: String,
    /// The multicast group and port on loopback that carry it.
    pub group: Ipv4Addr,
    pub port: u16,
}

/// One VM's network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VmNet {
    pub host: String,
    /// The uplink (`Role::Uplink`) or the seed link (`Role::Seed`) first, then one NIC per
    /// private network.
    pub nics: Vec<Nic>,
    /// SSH, HTTP and HTTPS forwarded from loopback (public hosts).
    pub forwards: bool,
    /// The resolver a host without an uplink is given: qemu's DNS, reached through its gateway.
    pub nameserver: Option<Ipv4Addr>,
    /// What the lab cannot give this host (a gateway that is not booted, …).
    pub notes: Vec<String>,
    /// A stand-in, not a host of the system: what it stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stand_in: Option<String>,
}

impl VmNet {
    pub fn uplink(&self) -> bool {
        self.nics.first().is_some_and(|n| n.role == Role::Uplink)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The uplinks' user-mode network.
    pub uplink: Slirp,
    /// The seed links' user-mode network (never the uplinks': a private host must not find
    /// qemu's host address on a link of its own).
    pub seed: Slirp,
    pub lans: Vec<Lan>,
    /// The managed databases' stand-ins, whose VMs come first in `vms`.
    pub databases: Vec<DatabaseStandIn>,
    pub vms: Vec<VmNet>,
    /// What the lab cannot stand in for (a managed database on an IPv6 network, …).
    pub notes: Vec<String>,
}

/// A locally administered MAC, stable per host (its place among all the system's hosts) and NIC.
fn mac(host_index: usize, nic: usize) -> String {
    format!("52:54:00:6b:{:02x}:{:02x}", host_index % 256, nic % 256)
}

/// The plan for booting `hosts` of `sys` together; `port` is the first UDP port of the
/// private networks' segments (one per network, in order).
pub fn plan(sys: &System, hosts: &[String], port: u16) -> Result<Plan, String> {
    for h in hosts {
        if !sys.hosts.contains_key(h) {
            return Err(format!("no host `{h}` in system `{}`", sys.name));
        }
    }
    let free: Vec<Slirp> =
        SLIRP_CANDIDATES.iter().map(|p| Slirp(*p)).filter(|s| sys.networks.values().all(|c| !c.overlaps(&s.cidr()))).collect();
    let (uplink, seed) = match free.as_slice() {
        [a, b, ..] => (*a, *b),
        _ => return Err("the system's private networks overlap every user-mode network the lab could use".into()),
    };
    // The networks a selected host is on, in order.
    let mut lans: Vec<Lan> = Vec::new();
    for (name, cidr) in &sys.networks {
        if hosts.iter().any(|h| sys.hosts[h].addresses.contains_key(name)) {
            let index = lans.len();
            let port = port.checked_add(index as u16).ok_or("no UDP port left for the private networks")?;
            lans.push(Lan { network: name.clone(), cidr: cidr.to_string(), group: group(index), port });
        }
    }
    // Router stand-ins: (network, gateway) → the address the clients route through.
    let mut routers: BTreeMap<(String, String), IpAddr> = BTreeMap::new();
    for h in hosts {
        if let Egress::Via { gateway, network, gateway_address, next_hop } = &sys.hosts[h].egress
            && next_hop != gateway_address
        {
            routers.insert((network.clone(), gateway.clone()), *next_hop);
        }
    }
    let index: BTreeMap<&str, usize> = sys.hosts.keys().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut vms = Vec::new();
    // The managed databases on a segment: a stand-in each, first (their clients wait for them).
    let mut databases = Vec::new();
    let mut db_notes = Vec::new();
    for db in sys.databases.iter().filter(|d| d.network.as_ref().is_some_and(|n| lans.iter().any(|l| &l.network == n))) {
        match stand_in::plan(sys, db) {
            Ok(Some(s)) => databases.push(s),
            Ok(None) => {}
            Err(e) => db_notes.push(e),
        }
    }
    for (k, s) in databases.iter().enumerate() {
        let i = sys.hosts.len() + k;
        let n = lans.iter().position(|l| l.network == s.network).expect("on a planned segment");
        vms.push(VmNet {
            host: s.machine.clone(),
            nics: vec![
                Nic { name: "wan0".into(), mac: mac(i, 0), role: Role::Uplink, addresses: Vec::new(), router_stand_in: None },
                Nic {
                    name: format!("lan{n}"),
                    mac: mac(i, n + 1),
                    role: Role::Lan { network: s.network.clone() },
                    addresses: vec![format!("{}/{}", s.address, s.prefix)],
                    router_stand_in: None,
                },
            ],
            forwards: false,
            nameserver: None,
            notes: Vec::new(),
            stand_in: Some(format!("managed database `{}` (Debian's PostgreSQL, answering `{}` at {})", s.database, s.dns_name, s.address)),
        });
    }
    for h in hosts {
        let host = &sys.hosts[h];
        let i = index[h.as_str()];
        let direct = matches!(host.egress, Egress::Direct);
        let mut nics = vec![Nic {
            name: if direct { "wan0" } else { "seed0" }.into(),
            mac: mac(i, 0),
            role: if direct { Role::Uplink } else { Role::Seed },
            addresses: if direct { Vec::new() } else { vec![format!("{}/24", seed.guest())] },
            router_stand_in: None,
        }];
        for (n, lan) in lans.iter().enumerate() {
            let Some(addr) = host.addresses.get(&lan.network) else { continue };
            let prefix = sys.networks[&lan.network].prefix;
            let mut addresses = vec![format!("{addr}/{prefix}")];
            let router = routers.get(&(lan.network.clone(), h.clone())).copied();
            if let Some(r) = router {
                // A host route (/32, /128): the host's own address stays the one its
                // connections leave from, which the peers' firewalls admit.
                addresses.push(format!("{r}/{}", if r.is_ipv4() { 32 } else { 128 }));
            }
            nics.push(Nic {
                name: format!("lan{n}"),
                mac: mac(i, n + 1),
                role: Role::Lan { network: lan.network.clone() },
                addresses,
                router_stand_in: router,
            });
        }
        let mut notes = Vec::new();
        // A stand-in on one of its networks is its resolver (which forwards the rest).
        let resolver = databases.iter().find(|d| host.addresses.contains_key(&d.network)).map(|d| d.address);
        let nameserver = match &host.egress {
            Egress::Via { gateway, .. } => {
                if !hosts.contains(gateway) {
                    notes.push(format!("its gateway `{gateway}` is not booted: it has no route out"));
                }
                Some(resolver.unwrap_or(uplink.dns()))
            }
            Egress::Direct => resolver,
            Egress::None => {
                notes.push("`egress = \"none\"`: no route out".into());
                None
            }
            Egress::Missing { problem, .. } => {
                notes.push(format!("no egress ({problem})"));
                None
            }
        };
        vms.push(VmNet { host: h.clone(), nics, forwards: host.public && direct, nameserver, notes, stand_in: None });
    }
    Ok(Plan { uplink, seed, lans, databases, vms, notes: db_notes })
}

/// The NoCloud `network-config` (version 2) of one VM: every NIC matched by its MAC and
/// renamed, the uplink by DHCP from qemu, every other address static, no default route but
/// the uplink's (a `via:GATEWAY` host's comes from kiln's own egress step). A VM given a
/// resolver on its private networks does not take the uplink's from DHCP.
pub fn network_config(vm: &VmNet) -> String {
    let mut ethernets = serde_json::Map::new();
    for nic in &vm.nics {
        let mut e = serde_json::json!({ "match": { "macaddress": nic.mac }, "set-name": nic.name });
        if nic.role == Role::Uplink {
            e["dhcp4"] = true.into();
            if vm.nameserver.is_some() {
                e["dhcp4-overrides"] = serde_json::json!({ "use-dns": false });
            }
        } else {
            e["dhcp4"] = false.into();
            e["addresses"] = nic.addresses.clone().into();
        }
        if matches!(nic.role, Role::Lan { .. })
            && let Some(ns) = vm.nameserver
        {
            e["nameservers"] = serde_json::json!({ "addresses": [ns.to_string()] });
        }
        ethernets.insert(nic.name.clone(), e);
    }
    crate::render::yaml(&serde_json::json!({ "version": 2, "ethernets": ethernets }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(toml: &str) -> System {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("system.toml"), toml).unwrap();
        let opts = crate::pipeline::Options::default();
        match crate::pipeline::compile(dir.path(), &opts) {
            Ok(crate::pipeline::Outcome::Ok(c)) => c.system,
            Ok(crate::pipeline::Outcome::Failed(f)) => {
                panic!("{:?}", f.diagnostics.iter().map(|d| d.message.clone()).collect::<Vec<_>>())
            }
            Err(e) => panic!("{}", e.0),
        }
    }

    const FLEET: &str = r#"
[system]
name = "lab"
[providers.hetzner]
kind = "hetzner"
[networks.private]
cidr = "10.0.0.0/24"
[networks.back]
cidr = "10.1.0.0/16"
[hosts.edge]
provider = "hetzner"
image = "debian-12"
public = true
networks = { private = "10.0.0.2", back = "10.1.0.2" }
[hosts.app]
provider = "hetzner"
image = "debian-12"
egress = "via:edge"
networks = { private = "10.0.0.3" }
[hosts.vault]
provider = "hetzner"
image = "debian-12"
egress = "none"
networks = { back = "10.1.0.9" }
[allow.no-egress]
hosts = ["vault"]
reason = "A test of the lab's network plan: this host has no route out on purpose."
"#;

    #[test]
    fn public_hosts_get_an_uplink_and_private_ones_only_a_seed_link() {
        let sys = system(FLEET);
        let hosts: Vec<String> = ["app", "edge", "vault"].map(String::from).to_vec();
        let p = plan(&sys, &hosts, 40000).unwrap();
        assert_eq!(p.uplink, Slirp([10, 0, 2]));
        assert_eq!(p.seed, Slirp([10, 0, 3]));
        assert_eq!(
            p.lans,
            vec![
                Lan { network: "back".into(), cidr: "10.1.0.0/16".into(), group: Ipv4Addr::new(230, 107, 0, 1), port: 40000 },
                Lan { network: "private".into(), cidr: "10.0.0.0/24".into(), group: Ipv4Addr::new(230, 107, 0, 2), port: 40001 },
            ]
        );
        let vm = |h: &str| p.vms.iter().find(|v| v.host == h).unwrap().clone();
        // hosts are app, edge, vault in the system: MACs by that place
        let edge = vm("edge");
        assert!(edge.uplink() && edge.forwards);
        assert_eq!(
            edge.nics.iter().map(|n| n.mac.as_str()).collect::<Vec<_>>(),
            ["52:54:00:6b:01:00", "52:54:00:6b:01:01", "52:54:00:6b:01:02"]
        );
        assert_eq!(edge.nics[1].addresses, ["10.1.0.2/16"]);
        // app routes through 10.0.0.1 (Hetzner's router): the gateway stands in for it
        assert_eq!(edge.nics[2].addresses, ["10.0.0.2/24", "10.0.0.1/32"]);
        assert_eq!(edge.nics[2].router_stand_in, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(edge.nameserver, None);
        let app = vm("app");
        assert!(!app.uplink() && !app.forwards);
        assert_eq!(app.nics[0].role, Role::Seed);
        assert_eq!(app.nics[0].addresses, ["10.0.3.15/24"]);
        assert_eq!(app.nics[1].name, "lan1");
        assert_eq!(app.nics[1].addresses, ["10.0.0.3/24"]);
        assert_eq!(app.nameserver, Some(Ipv4Addr::new(10, 0, 2, 3)));
        assert!(app.notes.is_empty());
        let vault = vm("vault");
        assert!(!vault.uplink());
        assert_eq!(vault.nics.len(), 2);
        assert_eq!(vault.notes, ["`egress = \"none\"`: no route out"]);
    }

    #[test]
    fn a_host_whose_gateway_is_not_booted_is_told_so() {
        let sys = system(FLEET);
        let p = plan(&sys, &["app".to_string()], 40000).unwrap();
        assert_eq!(p.lans.len(), 1, "only the networks of the booted hosts");
        assert_eq!(p.vms[0].notes, ["its gateway `edge` is not booted: it has no route out"]);
        assert!(p.vms[0].nics[1].router_stand_in.is_none());
        assert!(plan(&sys, &["nope".to_string()], 40000).unwrap_err().contains("no host `nope`"));
    }

    #[test]
    fn user_mode_networks_avoid_the_systems_networks() {
        let sys = system(&FLEET.replace("10.1.0.0/16", "10.0.0.0/16").replace("10.1.0.", "10.0.1."));
        let p = plan(&sys, &["edge".to_string()], 40000).unwrap();
        assert_eq!((p.uplink, p.seed), (Slirp([172, 31, 254]), Slirp([192, 168, 254])));
    }

    /// civic-scaleway's managed PostgreSQL gets a stand-in on the VPC, first, at the highest
    /// free address; the hosts on the VPC resolve through it alone.
    #[test]
    fn a_managed_database_gets_a_stand_in_that_its_network_resolves_through() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("flake-free-examples/civic-scaleway");
        let sys = match crate::pipeline::compile(&dir, &crate::pipeline::Options::default()) {
            Ok(crate::pipeline::Outcome::Ok(c)) => c.system,
            _ => panic!("civic-scaleway compiles"),
        };
        let p = plan(&sys, &["tools-prod".to_string()], 40000).unwrap();
        assert_eq!(p.databases.len(), 1);
        let db = &p.databases[0];
        assert_eq!((db.machine.as_str(), db.address), ("main.database", Ipv4Addr::new(10, 0, 0, 254)));
        assert_eq!(db.dns_name, "civic-scaleway-main.civic-scaleway-vpc.internal");
        assert_eq!(p.vms.iter().map(|v| v.host.as_str()).collect::<Vec<_>>(), ["main.database", "tools-prod"]);
        let (standin, tools) = (&p.vms[0], &p.vms[1]);
        assert!(standin.uplink() && !standin.forwards && standin.stand_in.is_some());
        assert_eq!(standin.nics[1].addresses, ["10.0.0.254/24"]);
        assert_eq!(standin.nics[1].role, tools.nics[1].role, "on the same segment");
        assert_ne!(standin.nics[0].mac, tools.nics[0].mac);
        assert_eq!(tools.nameserver, Some(Ipv4Addr::new(10, 0, 0, 254)));
        let cfg: serde_json::Value = serde_saphyr::from_str(&network_config(tools)).unwrap();
        assert_eq!(cfg["ethernets"]["wan0"]["dhcp4-overrides"], serde_json::json!({ "use-dns": false }));
        assert_eq!(cfg["ethernets"]["lan0"]["nameservers"]["addresses"], serde_json::json!(["10.0.0.254"]));
        // the stand-in itself resolves through its uplink
        let own: serde_json::Value = serde_saphyr::from_str(&network_config(standin)).unwrap();
        assert!(own["ethernets"]["wan0"].get("dhcp4-overrides").is_none());
        // a fleet without a host on the VPC has no stand-in
        let none = plan(&system(FLEET), &["edge".to_string()], 40000).unwrap();
        assert!(none.databases.is_empty() && none.vms.iter().all(|v| v.stand_in.is_none()));
    }

    #[test]
    fn network_config_matches_each_nic_by_mac() {
        let sys = system(FLEET);
        let hosts: Vec<String> = ["app", "edge"].map(String::from).to_vec();
        let p = plan(&sys, &hosts, 40000).unwrap();
        let app: serde_json::Value = serde_saphyr::from_str(&network_config(&p.vms[0])).unwrap();
        assert_eq!(
            app,
            serde_json::json!({
                "version": 2,
                "ethernets": {
                    "seed0": { "match": { "macaddress": "52:54:00:6b:00:00" }, "set-name": "seed0", "dhcp4": false, "addresses": ["10.0.3.15/24"] },
                    // `back` is segment 0 (edge is on it), `private` segment 1
                    "lan1": {
                        "match": { "macaddress": "52:54:00:6b:00:02" }, "set-name": "lan1", "dhcp4": false,
                        "addresses": ["10.0.0.3/24"], "nameservers": { "addresses": ["10.0.2.3"] }
                    },
                }
            })
        );
        let edge: serde_json::Value = serde_saphyr::from_str(&network_config(&p.vms[1])).unwrap();
        assert_eq!(edge["ethernets"]["wan0"]["dhcp4"], true);
        assert!(edge["ethernets"]["wan0"].get("addresses").is_none());
    }
}
