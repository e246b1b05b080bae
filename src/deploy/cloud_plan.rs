//! The cloud deploy's plan, pure: the servers in OpenTofu's state, each host's part of the plan
//! (OpenTofu's action on its server and kiln's steps after), the resources each rollout wave's
//! apply targets, the bastion-order rule, the refusal of a plan that destroys data, and a pin
//! removed from a known_hosts text. No IO: the edges are in `cloud.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use serde_json::Value;

use crate::syntax::system::ProviderKind;

/// A server as OpenTofu's state has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub id: String,
    /// The public IPv4 address (`None` for a server without one).
    pub ipv4: Option<IpAddr>,
}

/// The servers in `tofu show -json` (the state), by `kiln-host` label. Pure.
pub fn servers_of_state(show: &Value) -> BTreeMap<String, Server> {
    let mut out = BTreeMap::new();
    let mut modules = vec![&show["values"]["root_module"]];
    while let Some(m) = modules.pop() {
        for r in m["resources"].as_array().map(Vec::as_slice).unwrap_or_default() {
            if r["mode"] != "managed" {
                continue;
            }
            let v = &r["values"];
            let (ip_key, host) = match r["type"].as_str() {
                Some("hcloud_server") => ("ipv4_address", v["labels"]["kiln-host"].as_str()),
                Some("digitalocean_droplet") => ("ipv4_address", v["name"].as_str()),
                Some("scaleway_instance_server") => ("public_ip", v["tags"].as_array().and_then(|_| v["name"].as_str())),
                _ => continue,
            };
            let host = host.or_else(|| r["name"].as_str()).unwrap_or_default().to_string();
            let id = match &v["id"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            let ipv4 = v[ip_key].as_str().and_then(|s| s.parse().ok());
            out.insert(host, Server { id, ipv4 });
        }
        modules.extend(m["child_modules"].as_array().into_iter().flatten());
    }
    out
}

/// `text` without the `known_hosts` lines pinning `alias`. Pure.
pub fn unpinned(text: &str, alias: &str) -> String {
    text.lines()
        .filter(|l| l.trim().split_once(' ').is_none_or(|(names, _)| names.starts_with('#') || !names.split(',').any(|n| n == alias)))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// What the cloud path's plan says of one host: OpenTofu's action on its server and the steps
/// kiln runs on it after.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CloudHostPlan {
    pub host: String,
    /// The server's resource address (`hcloud_server.edge`); none for an existing host.
    pub server: Option<String>,
    /// `create`, `replace`, `update`, `no-op`, or `existing` (not OpenTofu's).
    pub tofu: &'static str,
    /// kiln's steps on the host once its server is applied.
    pub steps: Vec<&'static str>,
    /// The data volumes attached to the host's server (resource addresses): kept when the server
    /// is replaced, detached from the old one and attached to the new one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
}

impl CloudHostPlan {
    /// Whether OpenTofu creates or replaces the server: a new machine, enrolled afresh.
    pub fn new_server(&self) -> bool {
        matches!(self.tofu, "create" | "replace")
    }

    /// Whether its old server is stopped first: a replaced server with a data volume.
    pub fn stops_old_server(&self) -> bool {
        self.tofu == "replace" && !self.volumes.is_empty()
    }
}

/// The resource types that hold a server's data volume.
const VOLUME_TYPES: &[&str] = &["digitalocean_volume", "hcloud_volume", "scaleway_block_volume"];

/// The DNS record types kiln writes (`render/tofu/dns.rs`): retargeted to a wave's new servers
/// only once they passed their health gate.
pub const DNS_RECORD_TYPES: &[&str] = &["cloudflare_dns_record", "digitalocean_record", "hcloud_zone_rrset"];

/// The resource type of an address (`module.M.TYPE.NAME` or `TYPE.NAME`).
fn type_of(addr: &str) -> &str {
    addr.rsplit('.').nth(1).unwrap_or_default()
}

/// Each host's data volumes: a volume its server refers to, or one that a resource refers to
/// together with the server (an attachment). Pure.
pub fn volumes_of_hosts(root: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let refs = references(root);
    let server_host: BTreeMap<String, String> =
        super::enrol::servers_of_root(root).into_iter().map(|(h, (ty, name, _))| (format!("{ty}.{name}"), h)).collect();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (addr, to) in &refs {
        let mut linked: Vec<&String> = to.iter().collect();
        linked.push(addr);
        let volumes: Vec<&&String> = linked.iter().filter(|a| VOLUME_TYPES.contains(&type_of(a))).collect();
        for s in linked.iter().filter_map(|a| server_host.get(*a)) {
            out.entry(s.clone()).or_default().extend(volumes.iter().map(|v| (**v).clone()));
        }
    }
    out.retain(|_, v| !v.is_empty());
    out
}

/// The DNS records among a wave's `targets` that the plan creates, updates or replaces: the
/// wave's cut-over, applied after its hosts passed their health gate. Pure.
pub fn cutover_records(targets: &BTreeSet<String>, tofu: &crate::tofu_workdir::TofuPlan) -> BTreeSet<String> {
    targets
        .iter()
        .filter(|a| DNS_RECORD_TYPES.contains(&type_of(a)))
        .filter(|a| tofu.create.contains(*a) || tofu.update.contains(*a) || tofu.replace.contains(*a))
        .cloned()
        .collect()
}

/// Each selected host's part of the plan: OpenTofu's action on its server (from `tofu`, the
/// plan of the whole root) and kiln's steps. A new server is enrolled and provisioned by its
/// first boot; a kept one is reached with its pin and gets what its closure needs. Pure.
pub fn host_plans(root: &Value, tofu: &crate::tofu_workdir::TofuPlan, selected: &[String]) -> BTreeMap<String, CloudHostPlan> {
    let servers = super::enrol::servers_of_root(root);
    let volumes = volumes_of_hosts(root);
    selected
        .iter()
        .map(|h| {
            let server = servers.get(h).map(|(ty, name, _)| format!("{ty}.{name}"));
            let tofu_action = match &server {
                None => "existing",
                Some(a) if tofu.create.contains(a) => "create",
                Some(a) if tofu.replace.contains(a) => "replace",
                Some(a) if tofu.update.contains(a) => "update",
                Some(_) => "no-op",
            };
            let volumes: Vec<String> = volumes.get(h).into_iter().flatten().cloned().collect();
            let mut steps = if matches!(tofu_action, "create" | "replace") {
                vec!["enrol", "secrets", "first-boot provision", "converge", "health"]
            } else {
                vec!["connect", "upload/secrets/provision if its closure or secrets changed", "health"]
            };
            if tofu_action == "replace" && !volumes.is_empty() {
                steps.insert(0, "stop the old server (services, volume unmounted)");
            }
            (h.clone(), CloudHostPlan { host: h.clone(), server, tofu: tofu_action, steps, volumes })
        })
        .collect()
}

/// The resource addresses of the root and, for each, the addresses it refers to (`${TYPE.NAME…}`
/// in any string, `depends_on`). Pure.
fn references(root: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut addrs = BTreeSet::new();
    for (ty, rs) in root["resource"].as_object().into_iter().flatten() {
        for name in rs.as_object().into_iter().flatten().map(|(n, _)| n) {
            addrs.insert(format!("{ty}.{name}"));
        }
    }
    let mut out = BTreeMap::new();
    for (ty, rs) in root["resource"].as_object().into_iter().flatten() {
        for (name, body) in rs.as_object().into_iter().flatten() {
            let text = body.to_string();
            let refs: BTreeSet<String> = addrs
                .iter()
                .filter(|a| {
                    text.match_indices(a.as_str()).any(|(i, _)| {
                        let before = text[..i].chars().next_back();
                        let after = text[i + a.len()..].chars().next();
                        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    })
                })
                .cloned()
                .collect();
            out.insert(format!("{ty}.{name}"), refs);
        }
    }
    out
}

/// The resources each wave's apply targets (`-target`), so that a wave's apply creates or
/// replaces only that wave's servers: a server goes with its host's wave, every other resource
/// with the last wave of the servers it depends on (directly or not) — an attachment or a
/// record waits for its server — or the first wave when it depends on none (networks, keys,
/// firewalls: what servers need). A resource that depends on a server of a host not selected
/// is in no wave (`--group`, `--hosts`: it waits for that host's deploy). Terraform adds each
/// target's own dependencies. Pure.
pub fn wave_targets(root: &Value, waves: &[(String, Vec<String>)]) -> Vec<BTreeSet<String>> {
    let refs = references(root);
    let server_host: BTreeMap<String, String> =
        super::enrol::servers_of_root(root).into_iter().map(|(h, (ty, name, _))| (format!("{ty}.{name}"), h)).collect();
    let wave_of_host: BTreeMap<&str, usize> =
        waves.iter().enumerate().flat_map(|(i, (_, hs))| hs.iter().map(move |h| (h.as_str(), i))).collect();
    let mut out = vec![BTreeSet::new(); waves.len()];
    if waves.is_empty() {
        return out;
    }
    for addr in refs.keys() {
        // Every server the resource is, or depends on.
        let mut seen = BTreeSet::new();
        let mut todo = vec![addr.clone()];
        while let Some(a) = todo.pop() {
            if seen.insert(a.clone()) {
                todo.extend(refs.get(&a).into_iter().flatten().cloned());
            }
        }
        let mut wave = Some(0);
        for a in seen.iter().filter(|a| server_host.contains_key(*a)) {
            match (wave, wave_of_host.get(server_host[a].as_str())) {
                (Some(w), Some(&i)) => wave = Some(w.max(i)),
                _ => wave = None,
            }
        }
        if let Some(w) = wave {
            out[w].insert(addr.clone());
        }
    }
    out
}

/// A private host is reached through the bastion: a bastion OpenTofu creates or replaces must
/// be in the same wave as the private hosts it serves, or an earlier one. Pure.
pub fn check_bastions(
    sys: &crate::model::System,
    waves: &[(String, Vec<String>)],
    plans: &BTreeMap<String, CloudHostPlan>,
) -> Result<(), String> {
    let wave_of: BTreeMap<&str, usize> =
        waves.iter().enumerate().flat_map(|(i, (_, hs))| hs.iter().map(move |h| (h.as_str(), i))).collect();
    for (i, (wave, hosts)) in waves.iter().enumerate() {
        for h in hosts.iter().filter(|h| !sys.hosts[*h].public && sys.hosts[*h].address.is_none()) {
            for b in sys.hosts.values().filter(|b| b.bastion && b.name != *h) {
                let late = wave_of.get(b.name.as_str()).is_some_and(|&j| j > i);
                if late && plans.get(&b.name).is_some_and(CloudHostPlan::new_server) {
                    return Err(format!(
                        "host `{h}` (wave `{wave}`) is reached through the bastion `{}`, whose server is new and comes in a later wave (`{}`): \
                         put the bastion in the same group as `{h}` or an earlier one in `[deploy] order`",
                        b.name,
                        waves[wave_of[b.name.as_str()]].0
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Why a plan that destroys data is not applied, and the operator's ways on. Pure.
pub fn data_loss_message(program: &str, losses: &[String], state: &Path) -> String {
    let dir = state.join(crate::tofu_workdir::WORKDIR);
    format!(
        "the plan destroys or replaces resources that hold data: {}; nothing was applied.\n  \
         kiln never destroys data on its own (OpenTofu's prevent_destroy holds only while the system declares the resource).\n  \
         Put the declaration back, or let go of it yourself: `{program} -chdir={} state rm ADDRESS` leaves it at the provider, \
         unmanaged (delete it there when its data is safe), then deploy again",
        losses.join(", "),
        dir.display()
    )
}

/// The names of the selected hosts a cloud provider creates.
pub fn cloud_hosts(sys: &crate::model::System, selected: &[String]) -> BTreeSet<String> {
    selected.iter().filter(|h| sys.hosts.get(*h).is_some_and(|x| x.provider_kind != ProviderKind::Existing)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINGu/19U9LmMSakf0i3kdYq7lwBm6tImdo3nSx6IH9kN";

    fn two_waves_root() -> Value {
        serde_json::json!({ "resource": {
            "hcloud_network": { "private": { "ip_range": "10.0.0.0/24" } },
            "hcloud_network_subnet": { "private": { "network_id": "${hcloud_network.private.id}" } },
            "hcloud_ssh_key": { "kiln": { "public_key": "ssh-ed25519 AAAA" } },
            "hcloud_server": {
                "edge": { "labels": { "kiln-host": "edge" }, "user_data": "#cloud-config\n", "ssh_keys": ["${hcloud_ssh_key.kiln.id}"],
                          "depends_on": ["hcloud_network_subnet.private"] },
                "db": { "labels": { "kiln-host": "db" }, "user_data": "#cloud-config\n" },
                "db_2": { "labels": { "kiln-host": "db-2" }, "user_data": "#cloud-config\n" },
            },
            "hcloud_volume": { "db_data": { "size": 10 } },
            "hcloud_volume_attachment": { "db_data": { "volume_id": "${hcloud_volume.db_data.id}", "server_id": "${hcloud_server.db.id}" } },
            "hcloud_rdns": { "edge": { "server_id": "${hcloud_server.edge.id}" } },
            "hcloud_firewall_attachment": { "all": { "server_ids": ["${hcloud_server.edge.id}", "${hcloud_server.db.id}"] } },
        }})
    }

    #[test]
    fn each_wave_targets_its_servers_and_what_depends_on_them_only() {
        let root = two_waves_root();
        let waves = vec![("canary".to_string(), vec!["edge".to_string()]), ("production".to_string(), vec!["db".to_string()])];
        let t = wave_targets(&root, &waves);
        let names = |i: usize| t[i].iter().map(String::as_str).collect::<Vec<_>>();
        // Resources that depend on no server go first; `db_2` is in no wave (not selected), and
        // `db_2`'s name does not make `db`'s references (`hcloud_server.db.id`) its.
        assert_eq!(
            names(0),
            [
                "hcloud_network.private",
                "hcloud_network_subnet.private",
                "hcloud_rdns.edge",
                "hcloud_server.edge",
                "hcloud_ssh_key.kiln",
                "hcloud_volume.db_data"
            ]
        );
        // The attachment of db's volume waits for db; one that needs both servers, for the later.
        assert_eq!(names(1), ["hcloud_firewall_attachment.all", "hcloud_server.db", "hcloud_volume_attachment.db_data"]);
        // Reversed waves: what needs edge and db both still goes with the later one.
        let rev = vec![waves[1].clone(), waves[0].clone()];
        let t = wave_targets(&root, &rev);
        assert!(t[0].contains("hcloud_volume_attachment.db_data") && !t[0].contains("hcloud_firewall_attachment.all"));
        assert!(t[1].contains("hcloud_firewall_attachment.all") && t[1].contains("hcloud_server.edge"));
        assert!(wave_targets(&root, &[]).is_empty());
    }

    #[test]
    fn the_plan_says_what_opentofu_does_to_each_server_and_what_kiln_does_after() {
        let root = two_waves_root();
        let tofu = crate::tofu_workdir::TofuPlan {
            changes: true,
            create: ["hcloud_server.edge".to_string()].into(),
            replace: ["hcloud_server.db".to_string()].into(),
            ..Default::default()
        };
        let sel = ["edge".to_string(), "db".to_string(), "db-2".to_string(), "old".to_string()];
        let p = host_plans(&root, &tofu, &sel);
        assert_eq!((p["edge"].tofu, p["edge"].server.as_deref()), ("create", Some("hcloud_server.edge")));
        assert_eq!(p["db"].tofu, "replace");
        assert!(p["db"].new_server() && p["db"].steps.contains(&"enrol"));
        // db's volume is kept: its old server is stopped first.
        assert_eq!(p["db"].volumes, ["hcloud_volume.db_data"]);
        assert!(p["db"].stops_old_server() && p["db"].steps[0].starts_with("stop the old server"));
        assert!(!p["edge"].stops_old_server() && p["edge"].volumes.is_empty());
        assert_eq!(p["db-2"].tofu, "no-op");
        assert!(!p["db-2"].new_server() && p["db-2"].steps[0] == "connect");
        assert_eq!((p["old"].tofu, p["old"].server.as_deref()), ("existing", None));
    }

    #[test]
    fn volumes_belong_to_the_server_they_are_attached_to() {
        let mut root = two_waves_root();
        assert_eq!(volumes_of_hosts(&root), BTreeMap::from([("db".to_string(), BTreeSet::from(["hcloud_volume.db_data".to_string()]))]));
        // DigitalOcean names the volume on the attachment too; a firewall naming two servers is no volume's.
        root["resource"]["digitalocean_volume"] = serde_json::json!({ "edge_data": { "size": 10 } });
        root["resource"]["digitalocean_volume_attachment"] = serde_json::json!({ "edge_data": { "volume_id": "${digitalocean_volume.edge_data.id}", "droplet_id": "${hcloud_server.edge.id}" } });
        let v = volumes_of_hosts(&root);
        assert_eq!(v["edge"], BTreeSet::from(["digitalocean_volume.edge_data".to_string()]));
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn the_cutover_is_the_dns_records_the_plan_changes_in_the_wave() {
        let targets: BTreeSet<String> =
            ["hcloud_server.edge", "hcloud_zone_rrset.www_a", "hcloud_zone_rrset.api_a", "cloudflare_dns_record.x_a", "hcloud_rdns.edge"]
                .map(String::from)
                .into();
        let tofu = crate::tofu_workdir::TofuPlan {
            changes: true,
            create: ["hcloud_zone_rrset.www_a".to_string(), "hcloud_rdns.edge".to_string()].into(),
            update: ["cloudflare_dns_record.x_a".to_string(), "digitalocean_record.elsewhere_a".to_string()].into(),
            replace: ["hcloud_server.edge".to_string()].into(),
            ..Default::default()
        };
        // The unchanged record and the reverse DNS (set with its server) are not the cut-over;
        // a record outside the wave's targets is not this wave's.
        assert_eq!(
            cutover_records(&targets, &tofu).into_iter().collect::<Vec<_>>(),
            ["cloudflare_dns_record.x_a", "hcloud_zone_rrset.www_a"]
        );
    }

    #[test]
    fn servers_and_pins_are_read() {
        let show = serde_json::json!({ "values": { "root_module": { "resources": [
            { "mode": "managed", "type": "hcloud_server", "name": "edge",
              "values": { "id": "123", "ipv4_address": "127.0.0.10", "labels": { "kiln-host": "edge" } } },
            { "mode": "managed", "type": "hcloud_server", "name": "db",
              "values": { "id": "456", "ipv4_address": "", "labels": { "kiln-host": "db" } } },
            { "mode": "managed", "type": "hcloud_volume", "name": "db", "values": { "id": "9" } },
        ]}}});
        let s = servers_of_state(&show);
        assert_eq!(s["edge"], Server { id: "123".into(), ipv4: Some("127.0.0.10".parse().unwrap()) });
        assert_eq!(s["db"], Server { id: "456".into(), ipv4: None });
        assert_eq!(s.len(), 2);
        let text = format!("edge {KEY}\ndb {KEY}\n# edge comment\nedge,other {KEY}\n");
        assert_eq!(unpinned(&text, "edge"), format!("db {KEY}\n# edge comment\n"));
    }
}
