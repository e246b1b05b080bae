//! OpenTofu emitter: one `.tf.json` root for the whole system — servers, private networks,
//! firewalls, volumes and DNS records for each provider, credentials from sensitive
//! variables, and immutable replacement: every server carries its host's closure hash and is
//! replaced when that hash changes (`replace_triggered_by` on a `terraform_data`). DNS zones
//! and records are in `tofu/dns.rs`, buckets in `tofu/buckets.rs`, Cloudflare tunnels (with
//! their ingress and CNAMEs) in `tofu/tunnel.rs`.

mod buckets;
mod dns;
mod tunnel;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use crate::model::{FirewallRule, Host, ManagedClient, System};
use crate::render::data_volume;
use crate::syntax::system::ProviderKind;
use crate::types::Cidr;

/// Provider sources and the versions kiln's resources are written (and tested) against.
pub const PROVIDERS: &[(ProviderKind, &str, &str, &str)] = &[
    (ProviderKind::Hetzner, "hcloud", "hetznercloud/hcloud", "1.66.1"),
    (ProviderKind::DigitalOcean, "digitalocean", "digitalocean/digitalocean", "2.96.0"),
    (ProviderKind::Scaleway, "scaleway", "scaleway/scaleway", "2.79.0"),
    (ProviderKind::Cloudflare, "cloudflare", "cloudflare/cloudflare", "5.22.0"),
];

/// Where a Hetzner host with a data volume is created when it names no location.
const HCLOUD_DEFAULT_LOCATION: &str = "nbg1";

fn provider_entry(kind: ProviderKind) -> Option<&'static (ProviderKind, &'static str, &'static str, &'static str)> {
    PROVIDERS.iter().find(|p| p.0 == kind)
}

/// Terraform interpolates `${…}` and `%{…}` in every JSON string (and in the property names
/// of object values): escape them in literals. Applied to the whole tree by [`finalise`].
pub fn literal(s: &str) -> String {
    s.replace("${", "$${").replace("%{", "%%{")
}

/// A Terraform expression kiln builds itself (`${hcloud_network.private.id}`,
/// `terraform_data.web_closure`): the only kind of string that reaches the root unescaped.
/// Every other string in the tree — names, types, regions, user-data — is a literal, escaped
/// when the tree is finalised, so no field can forget it.
pub struct Expr(String);

/// How an [`Expr`] sits in the tree until [`finalise`]: an object with this one property
/// (a NUL cannot occur in a name kiln writes as a key).
const EXPR_KEY: &str = "\u{0}kiln-expr";

fn expr(s: String) -> Expr {
    Expr(s)
}

impl serde::Serialize for Expr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(EXPR_KEY, &self.0)?;
        m.end()
    }
}

impl From<Expr> for Value {
    fn from(e: Expr) -> Value {
        json!(e)
    }
}

/// The tree as Terraform reads it: every string and property name escaped as a literal,
/// every [`Expr`] unwrapped as written.
fn finalise(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(literal(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(finalise).collect()),
        Value::Object(mut m) => {
            if m.len() == 1
                && let Some(Value::String(e)) = m.remove(EXPR_KEY)
            {
                return Value::String(e);
            }
            Value::Object(m.into_iter().map(|(k, v)| (literal(&k), finalise(v))).collect())
        }
        other => other,
    }
}

fn cidr_list(sources: &[Cidr]) -> Vec<String> {
    if sources.is_empty() { vec!["0.0.0.0/0".into(), "::/0".into()] } else { sources.iter().map(|c| c.to_string()).collect() }
}

/// A resource name from a kiln name (Terraform names allow letters, digits, `_` and `-`).
fn rname(s: &str) -> String {
    s.replace('.', "_")
}

/// A password given to a write-only argument: declares `VAR`, ephemeral (Terraform keeps it out
/// of saved plans and the state; only a write-only argument may read it), and `VAR_version`,
/// which the provider compares to send a changed password (an operator who rotates the secret
/// raises `TF_VAR_VAR_version`), and returns the resource's two arguments, `password_wo` and
/// `password_wo_version`, reading them.
fn write_only_password(variables: &mut Map<String, Value>, var: &str, what: String) -> [(&'static str, Value); 2] {
    let version = format!("{var}_version");
    variables.insert(var.to_string(), json!({ "type": "string", "sensitive": true, "ephemeral": true, "description": what }));
    variables.insert(
        version.clone(),
        json!({ "type": "number", "default": 1, "description": format!("version of `{var}`: raise it after changing that password") }),
    );
    [("password_wo", expr(format!("${{var.{var}}}")).into()), ("password_wo_version", expr(format!("${{var.{version}}}")).into())]
}

fn add(resources: &mut Map<String, Value>, ty: &str, name: &str, body: Value) {
    let slot = resources.entry(ty.to_string()).or_insert_with(|| json!({}));
    slot.as_object_mut().unwrap().insert(rname(name), body);
}

pub struct HostInput<'a> {
    pub host: &'a Host,
    pub closure: &'a str,
    pub user_data: &'a str,
}

/// The OpenTofu root for the system, or `None` when no host or zone needs a provider.
pub fn emit(sys: &System, hosts: &[HostInput<'_>]) -> Option<String> {
    let mut kinds: Vec<ProviderKind> = hosts.iter().map(|h| h.host.provider_kind).filter(|k| *k != ProviderKind::Existing).collect();
    kinds.extend(sys.dns.iter().map(|z| z.provider_kind));
    // Hetzner buckets are made through the S3 API (`buckets::MINIO`), not the hcloud provider.
    kinds.extend(sys.buckets.iter().map(|b| b.provider_kind).filter(|k| *k != ProviderKind::Hetzner));
    kinds.extend(sys.databases.iter().map(|d| d.provider_kind));
    let tunnels: Vec<&str> = sys.services.values().filter(|s| s.module == "cloudflared").map(|s| s.name.as_str()).collect();
    if !tunnels.is_empty() && sys.providers.values().any(|k| *k == ProviderKind::Cloudflare) {
        kinds.push(ProviderKind::Cloudflare);
    }
    kinds.sort();
    kinds.dedup();
    if kinds.is_empty() && hosts.is_empty() && !buckets::any_hetzner(sys) {
        return None;
    }
    let mut required = Map::new();
    let mut variables = Map::new();
    let mut providers = Map::new();
    for k in &kinds {
        let Some((_, local, source, version)) = provider_entry(*k) else { continue };
        required.insert(local.to_string(), json!({ "source": source, "version": version }));
        match k {
            ProviderKind::Scaleway => {
                for v in ["scaleway_access_key", "scaleway_secret_key", "scaleway_project_id"] {
                    variables.insert(
                        v.into(),
                        json!({ "type": "string", "sensitive": true, "description": format!("Scaleway credentials ({v})") }),
                    );
                }
                providers.insert(
                    local.to_string(),
                    json!({ "access_key": expr("${var.scaleway_access_key}".into()), "secret_key": expr("${var.scaleway_secret_key}".into()), "project_id": expr("${var.scaleway_project_id}".into()) }),
                );
            }
            ProviderKind::Cloudflare => {
                variables.insert(
                    "cloudflare_api_token".into(),
                    json!({ "type": "string", "sensitive": true, "description": "Cloudflare API token (DNS edit)" }),
                );
                providers.insert(local.to_string(), json!({ "api_token": expr("${var.cloudflare_api_token}".into()) }));
            }
            _ => {
                let var = format!("{local}_token");
                variables.insert(var.clone(), json!({ "type": "string", "sensitive": true, "description": format!("{local} API token") }));
                providers.insert(local.to_string(), json!({ "token": expr(format!("${{var.{var}}}")) }));
            }
        }
    }
    let mut resources = Map::new();
    let mut outputs = Map::new();
    // (IPv4, IPv6) of every public host: references to the server, or an existing host's address
    let mut public_ip: BTreeMap<&str, (Option<Value>, Option<Value>)> = BTreeMap::new();

    // Networks, once per provider that has hosts on them.
    for (net, cidr) in &sys.networks {
        let on = |k: ProviderKind| hosts.iter().any(|h| h.host.provider_kind == k && h.host.addresses.contains_key(net));
        if on(ProviderKind::Hetzner) {
            add(
                &mut resources,
                "hcloud_network",
                net,
                json!({ "name": format!("{}-{net}", sys.name), "ip_range": cidr.to_string(), "labels": { "kiln-system": sys.name } }),
            );
            add(
                &mut resources,
                "hcloud_network_subnet",
                net,
                json!({ "network_id": expr(format!("${{hcloud_network.{}.id}}", rname(net))), "type": "cloud", "network_zone": "eu-central", "ip_range": cidr.to_string() }),
            );
            // Egress of the private hosts: the network's gateway sends everything that leaves
            // the network to the host that masquerades for it (`eval::egress`).
            if let Some(gw) = hosts.iter().find(|h| h.host.provider_kind == ProviderKind::Hetzner && h.host.nat_for.contains_key(net)) {
                add(
                    &mut resources,
                    "hcloud_network_route",
                    &format!("{net}_egress"),
                    json!({
                        "network_id": expr(format!("${{hcloud_network.{}.id}}", rname(net))),
                        "destination": "0.0.0.0/0",
                        "gateway": gw.host.addresses[net].to_string(),
                        "depends_on": [expr(format!("hcloud_network_subnet.{}", rname(net)))],
                    }),
                );
            }
        }
        if on(ProviderKind::DigitalOcean) {
            let region = hosts
                .iter()
                .find(|h| h.host.provider_kind == ProviderKind::DigitalOcean)
                .and_then(|h| h.host.location.clone())
                .unwrap_or_else(|| "fra1".into());
            add(
                &mut resources,
                "digitalocean_vpc",
                net,
                json!({ "name": format!("{}-{net}", sys.name), "region": region, "ip_range": cidr.to_string() }),
            );
        }
        if on(ProviderKind::Scaleway) {
            let mut pn = json!({ "name": format!("{}-{net}", sys.name), "ipv4_subnet": [{ "subnet": cidr.to_string() }] });
            // Regional, like the addresses reserved in it: the region of its servers' zone.
            let region = hosts
                .iter()
                .filter(|h| h.host.provider_kind == ProviderKind::Scaleway && h.host.addresses.contains_key(net))
                .find_map(|h| h.host.location.as_deref().and_then(scaleway_region));
            if let Some(r) = region {
                pn["region"] = json!(r);
            }
            add(&mut resources, "scaleway_vpc_private_network", net, pn);
            // Egress of its private hosts (`eval::egress::scaleway_gateway`): a Public Gateway
            // with its own IP, masquerading for the network, whose DHCP pushes the default route
            // (provider docs, vpc_gateway_network.md).
            let private = hosts
                .iter()
                .filter(|h| h.host.addresses.contains_key(net))
                .map(|h| h.host)
                .find(|h| crate::eval::egress::scaleway_gateway(h) && matches!(h.egress, crate::model::Egress::Direct));
            if let Some(h) = private {
                let gw = format!("{net}_gateway");
                let zone = h.location.clone();
                let mut ip = json!({ "tags": [format!("kiln-system={}", sys.name)] });
                let mut pgw = json!({
                    "name": format!("{}-{net}", sys.name),
                    "type": "VPC-GW-S",
                    "ip_id": expr(format!("${{scaleway_vpc_public_gateway_ip.{}.id}}", rname(&gw))),
                    "tags": [format!("kiln-system={}", sys.name)],
                });
                let mut link = json!({
                    "gateway_id": expr(format!("${{scaleway_vpc_public_gateway.{}.id}}", rname(&gw))),
                    "private_network_id": expr(format!("${{scaleway_vpc_private_network.{}.id}}", rname(net))),
                    "enable_masquerade": true,
                    "ipam_config": [{ "push_default_route": true }],
                });
                if let Some(z) = zone {
                    for v in [&mut ip, &mut pgw, &mut link] {
                        v["zone"] = json!(z);
                    }
                }
                add(&mut resources, "scaleway_vpc_public_gateway_ip", &gw, ip);
                add(&mut resources, "scaleway_vpc_public_gateway", &gw, pgw);
                add(&mut resources, "scaleway_vpc_gateway_network", &gw, link);
            }
        }
    }

    for h in hosts {
        let host = h.host;
        let name = rname(&host.name);
        let trigger = format!("{name}_closure");
        let short = &h.closure[..32];
        if host.provider_kind != ProviderKind::Existing {
            add(&mut resources, "terraform_data", &trigger, json!({ "input": h.closure }));
        }
        // A server with a fixed private address cannot overlap with its replacement, and a
        // stateful host's volume is attached to one server at a time: those are replaced
        // destroy-first (the old server stops, the volume moves to the new one).
        let data = data_volume::has_volume(sys, host);
        let before_destroy = host.addresses.is_empty() && !data;
        let volume = data_volume::volume_name(sys, host);
        let gib = data_volume::size_gib(host);
        let lifecycle =
            json!({ "create_before_destroy": before_destroy, "replace_triggered_by": [expr(format!("terraform_data.{trigger}"))] });
        match host.provider_kind {
            ProviderKind::Hetzner => {
                let networks: Vec<Value> = host
                    .addresses
                    .iter()
                    .map(|(net, ip)| json!({ "network_id": expr(format!("${{hcloud_network.{}.id}}", rname(net))), "ip": ip.to_string() }))
                    .collect();
                let mut server = json!({
                    "name": if before_destroy { format!("{}-{}", host.name, &h.closure[..8]) } else { host.name.clone() },
                    "server_type": host.server_type.clone().unwrap_or_else(|| "cx22".into()),
                    "image": host.image.provider_image.clone().unwrap_or_default(),
                    "user_data": h.user_data,
                    "labels": { "kiln-system": sys.name, "kiln-host": host.name, "kiln-closure": short },
                    "public_net": [{ "ipv4_enabled": host.public, "ipv6_enabled": host.public }],
                    "firewall_ids": [expr(format!("${{hcloud_firewall.{name}.id}}"))],
                    "lifecycle": lifecycle,
                });
                if let Some(g) = &host.group {
                    server["labels"]["kiln-group"] = json!(g);
                }
                if host.server_backups {
                    // Hetzner's automated backups: daily, seven kept, 20 % of the server's price
                    // of the server's disk, not its volumes (https://docs.hetzner.com/cloud/general/faq/).
                    server["backups"] = json!(true);
                }
                if let Some(l) = &host.location {
                    server["location"] = json!(l);
                } else if data {
                    // the volume lives in one location: the server must be created there
                    server["location"] = json!(HCLOUD_DEFAULT_LOCATION);
                }
                if !networks.is_empty() {
                    server["network"] = json!(networks);
                    let subnets: Vec<Expr> = host.addresses.keys().map(|n| expr(format!("hcloud_network_subnet.{}", rname(n)))).collect();
                    server["depends_on"] = json!(subnets);
                }
                add(&mut resources, "hcloud_server", &name, server);
                // Hetzner Cloud firewalls filter the public interfaces only: a rule for private
                // traffic would do nothing there (`eval::firewall_layers`).
                let rules: Vec<Value> = provider_rules(sys, host).map(|(r, sources)| hcloud_rule(r, &sources)).collect();
                add(
                    &mut resources,
                    "hcloud_firewall",
                    &name,
                    json!({ "name": format!("{}-{}", sys.name, host.name), "rule": rules, "labels": { "kiln-system": sys.name } }),
                );
                if data {
                    // Hetzner volumes are at least 10 GB; kiln formats the volume itself.
                    add(
                        &mut resources,
                        "hcloud_volume",
                        &format!("{name}_data"),
                        json!({
                            "name": volume,
                            "size": gib.max(10),
                            "location": host.location.clone().unwrap_or_else(|| HCLOUD_DEFAULT_LOCATION.into()),
                            "delete_protection": true,
                            "labels": { "kiln-system": sys.name, "kiln-host": host.name },
                            "lifecycle": { "prevent_destroy": true },
                        }),
                    );
                    add(
                        &mut resources,
                        "hcloud_volume_attachment",
                        &format!("{name}_data"),
                        json!({ "volume_id": expr(format!("${{hcloud_volume.{name}_data.id}}")), "server_id": expr(format!("${{hcloud_server.{name}.id}}")), "automount": false }),
                    );
                }
                if host.public {
                    public_ip.insert(
                        &host.name,
                        (
                            Some(expr(format!("${{hcloud_server.{name}.ipv4_address}}")).into()),
                            Some(expr(format!("${{hcloud_server.{name}.ipv6_address}}")).into()),
                        ),
                    );
                }
                outputs.insert(format!("{name}_ipv4"), json!({ "value": expr(format!("${{hcloud_server.{name}.ipv4_address}}")) }));
            }
            ProviderKind::DigitalOcean => {
                let vpc = host.addresses.keys().next().map(|n| expr(format!("${{digitalocean_vpc.{}.id}}", rname(n))));
                let mut droplet = json!({
                    "name": host.name,
                    "size": host.server_type.clone().unwrap_or_else(|| "s-1vcpu-2gb".into()),
                    "image": host.image.provider_image.clone().unwrap_or_default(),
                    "region": host.location.clone().unwrap_or_else(|| "fra1".into()),
                    "user_data": h.user_data,
                    "ipv6": host.public,
                    "tags": tags(&[("kiln-system-", &sys.name), ("kiln-closure-", short)], host.group.as_deref(), "kiln-group-"),
                    "lifecycle": lifecycle,
                });
                if let Some(v) = vpc {
                    droplet["vpc_uuid"] = json!(v);
                }
                if host.server_backups {
                    // DigitalOcean's droplet backups (the provider's `backups`, at DigitalOcean's default policy).
                    droplet["backups"] = json!(true);
                }
                add(&mut resources, "digitalocean_droplet", &name, droplet);
                if data {
                    add(
                        &mut resources,
                        "digitalocean_volume",
                        &format!("{name}_data"),
                        json!({
                            "name": volume,
                            "region": host.location.clone().unwrap_or_else(|| "fra1".into()),
                            "size": gib,
                            "description": format!("kiln data of {} ({})", host.name, sys.name),
                            "tags": tags(&[("kiln-system-", &sys.name)], None, ""),
                            "lifecycle": { "prevent_destroy": true },
                        }),
                    );
                    add(
                        &mut resources,
                        "digitalocean_volume_attachment",
                        &format!("{name}_data"),
                        json!({ "droplet_id": expr(format!("${{digitalocean_droplet.{name}.id}}")), "volume_id": expr(format!("${{digitalocean_volume.{name}_data.id}}")) }),
                    );
                }
                // DigitalOcean cloud firewalls filter every interface, the VPC's included.
                let inbound: Vec<Value> = provider_rules(sys, host)
                    .map(|(r, sources)| json!({ "protocol": r.protocol.name(), "port_range": r.port.to_string(), "source_addresses": cidr_list(&sources) }))
                    .collect();
                let outbound: Vec<Value> = ["tcp", "udp"]
                    .iter()
                    .map(|p| json!({ "protocol": p, "port_range": "1-65535", "destination_addresses": ["0.0.0.0/0", "::/0"] }))
                    .chain([json!({ "protocol": "icmp", "destination_addresses": ["0.0.0.0/0", "::/0"] })])
                    .collect();
                add(
                    &mut resources,
                    "digitalocean_firewall",
                    &name,
                    json!({ "name": format!("{}-{}", sys.name, host.name), "droplet_ids": [expr(format!("${{digitalocean_droplet.{name}.id}}"))], "inbound_rule": inbound, "outbound_rule": outbound }),
                );
                if host.public {
                    public_ip.insert(
                        &host.name,
                        (
                            Some(expr(format!("${{digitalocean_droplet.{name}.ipv4_address}}")).into()),
                            Some(expr(format!("${{digitalocean_droplet.{name}.ipv6_address}}")).into()),
                        ),
                    );
                }
                outputs.insert(format!("{name}_ipv4"), json!({ "value": expr(format!("${{digitalocean_droplet.{name}.ipv4_address}}")) }));
            }
            ProviderKind::Scaleway => {
                let sg = expr(format!("${{scaleway_instance_security_group.{name}.id}}"));
                let mut server = json!({
                    "name": host.name,
                    "type": host.server_type.clone().unwrap_or_else(|| "DEV1-S".into()),
                    "image": host.image.provider_image.clone().unwrap_or_default(),
                    "user_data": { "cloud-init": h.user_data },
                    "tags": tags(&[("kiln-system=", &sys.name), ("kiln-closure=", short)], host.group.as_deref(), "kiln-group="),
                    "security_group_id": sg,
                    "lifecycle": lifecycle,
                });
                if let Some(z) = &host.location {
                    server["zone"] = json!(z);
                }
                // The host's address on each private network, pinned: reserved in the network's
                // IPAM (`scaleway_ipam_ip` with that address) and given to the NIC that attaches
                // the server (`ipam_ip_ids`), so the address kiln binds ports to is the one the
                // server gets. The server's inline `private_network` takes no reserved address
                // in provider 2.79.0, hence a separate NIC.
                for (net, ip) in &host.addresses {
                    scaleway_private_nic(&mut resources, sys, host, net, *ip);
                }
                // A Scaleway instance has no public address unless it is given one.
                if host.public {
                    add(
                        &mut resources,
                        "scaleway_instance_ip",
                        &name,
                        json!({ "type": "routed_ipv4", "tags": [format!("kiln-system={}", sys.name)] }),
                    );
                    server["ip_id"] = json!(expr(format!("${{scaleway_instance_ip.{name}.id}}")));
                    public_ip.insert(&host.name, (Some(expr(format!("${{scaleway_instance_ip.{name}.address}}")).into()), None));
                }
                if data {
                    // Block Storage (SBS) outlives the instance; the server lists it among its
                    // volumes, so the replacement server takes it over.
                    add(
                        &mut resources,
                        "scaleway_block_volume",
                        &format!("{name}_data"),
                        json!({
                            "name": volume,
                            "size_in_gb": gib,
                            "iops": 5000,
                            "tags": [format!("kiln-system={}", sys.name), format!("kiln-host={}", host.name)],
                            "lifecycle": { "prevent_destroy": true },
                        }),
                    );
                    server["additional_volume_ids"] = json!([expr(format!("${{scaleway_block_volume.{name}_data.id}}"))]);
                }
                add(&mut resources, "scaleway_instance_server", &name, server);
                // Security groups filter public traffic only.
                let rules: Vec<Value> = provider_rules(sys, host)
                    .flat_map(|(r, sources)| {
                        cidr_list(&sources)
                            .into_iter()
                            .filter(|c| !c.contains(':'))
                            .map(move |c| json!({ "action": "accept", "protocol": r.protocol.name().to_uppercase(), "port": r.port, "ip_range": c }))
                    })
                    .collect();
                add(
                    &mut resources,
                    "scaleway_instance_security_group",
                    &name,
                    json!({ "name": format!("{}-{}", sys.name, host.name), "inbound_default_policy": "drop", "outbound_default_policy": "accept", "inbound_rule": rules }),
                );
                outputs
                    .insert(format!("{name}_ipv4"), json!({ "value": expr(format!("${{scaleway_instance_server.{name}.public_ips}}")) }));
            }
            ProviderKind::Existing | ProviderKind::Cloudflare => {
                if let Some(a) = host.address {
                    let (v4, v6) = match a {
                        IpAddr::V4(_) => (a.to_string(), None),
                        IpAddr::V6(_) => (String::new(), Some(json!(a.to_string()))),
                    };
                    public_ip.insert(&host.name, ((!v4.is_empty()).then(|| json!(v4)), v6));
                    outputs.insert(format!("{name}_ipv4"), json!({ "value": v4 }));
                }
            }
        }
        for (net, ip) in &host.addresses {
            outputs.insert(format!("{name}_{}_address", rname(net)), json!({ "value": ip.to_string() }));
        }
    }

    let mut data = Map::new();
    dns::dns_records(sys, &mut resources, &mut data, &mut variables, &public_ip);
    buckets::buckets(
        sys,
        buckets::Sections {
            required: &mut required,
            variables: &mut variables,
            providers: &mut providers,
            resources: &mut resources,
            outputs: &mut outputs,
        },
    );
    for d in &sys.databases {
        if d.provider_kind != ProviderKind::Scaleway {
            continue;
        }
        // The password is an ephemeral variable given to the write-only `password_wo`: it never
        // appears in this file, in a saved plan or in the state (provider docs, rdb_instance.md:
        // "`password_wo` will not be set in the Terraform state"; Terraform >= 1.11).
        let var = format!("{}_password", rname(&d.name));
        let password = write_only_password(&mut variables, &var, format!("password of the managed database `{}`", d.name));
        let mut body = json!({
            "name": format!("{}-{}", sys.name, d.name),
            "engine": d.engine,
            "node_type": d.node_type,
            "is_ha_cluster": false,
            "disable_backup": false,
            "user_name": d.user,
            "tags": [format!("kiln-system={}", sys.name)],
        });
        for (k, v) in password {
            body[k] = v;
        }
        if let Some(r) = &d.region {
            body["region"] = json!(r);
        }
        // Automated backups, scheduled: daily, kept a week, stored in another region than the
        // instance (provider docs, rdb_instance.md "Backups"; `backup_same_region` false).
        body["backup_schedule_frequency"] = json!(24);
        body["backup_schedule_retention"] = json!(7);
        body["backup_same_region"] = json!(false);
        // On the private network of the system's Scaleway servers (`ManagedDatabase::network`),
        // its address and DNS name from IPAM (a static `ip_net` is not routed nor named in the
        // VPC: provider docs); with a private endpoint and no `load_balancer`, the instance has
        // no public endpoint.
        let db = rname(&d.name);
        if let Some(net) = &d.network {
            body["private_network"] =
                json!([{ "pn_id": expr(format!("${{scaleway_vpc_private_network.{}.id}}", rname(net))), "enable_ipam": true }]);
            for (out, attr) in [("host", "hostname"), ("ip", "ip"), ("port", "port")] {
                outputs.insert(
                    format!("{db}_database_{out}"),
                    json!({ "value": expr(format!("${{scaleway_rdb_instance.{db}.private_network[0].{attr}}}")) }),
                );
            }
        }
        // Each client's database, its role (not an administrator) and the role's rights on
        // that database only (provider docs: rdb_database, rdb_user, rdb_privilege). The role's
        // password is an ephemeral variable holding the client's secret, given to the
        // write-only `password_wo` (rdb_user.md): never in this file, a saved plan or the state.
        for c in &d.clients {
            let name = format!("{db}_{}", rname(&c.service));
            let var = format!("{name}_password");
            let what = format!("password of role `{}` on `{}`{}: the value of secret `{}`", c.role, d.name, shared_by(c), c.secret);
            let password = write_only_password(&mut variables, &var, what);
            let instance = expr(format!("${{scaleway_rdb_instance.{db}.id}}"));
            add(&mut resources, "scaleway_rdb_database", &name, json!({ "instance_id": instance, "name": c.database }));
            let instance = expr(format!("${{scaleway_rdb_instance.{db}.id}}"));
            add(&mut resources, "scaleway_rdb_user", &name, {
                let mut user = json!({ "instance_id": instance, "name": c.role, "is_admin": false });
                for (k, v) in password {
                    user[k] = v;
                }
                user
            });
            add(
                &mut resources,
                "scaleway_rdb_privilege",
                &name,
                json!({
                    "instance_id": expr(format!("${{scaleway_rdb_instance.{db}.id}}")),
                    "user_name": expr(format!("${{scaleway_rdb_user.{name}.name}}")),
                    "database_name": expr(format!("${{scaleway_rdb_database.{name}.name}}")),
                    "permission": "all",
                }),
            );
        }
        add(&mut resources, "scaleway_rdb_instance", &d.name, body);
        outputs.insert(
            format!("{}_database_id", rname(&d.name)),
            json!({ "value": expr(format!("${{scaleway_rdb_instance.{}.id}}", rname(&d.name))) }),
        );
    }
    tunnel::tunnels(sys, &mut variables, &mut resources, &mut outputs);

    let mut root = Map::new();
    // Ephemeral variables and write-only arguments (the managed databases' passwords) came with
    // Terraform 1.10 and 1.11.
    let version = if sys.databases.iter().any(|d| d.provider_kind == ProviderKind::Scaleway) { ">= 1.11" } else { ">= 1.4" };
    root.insert("terraform".into(), json!({ "required_version": version, "required_providers": required }));
    if !variables.is_empty() {
        root.insert("variable".into(), Value::Object(variables));
    }
    if !providers.is_empty() {
        root.insert("provider".into(), Value::Object(providers));
    }
    if !data.is_empty() {
        root.insert("data".into(), Value::Object(data));
    }
    if !resources.is_empty() {
        root.insert("resource".into(), Value::Object(resources));
    }
    if !outputs.is_empty() {
        root.insert("output".into(), Value::Object(outputs));
    }
    let mut s = serde_json::to_string_pretty(&finalise(Value::Object(root))).expect("serialises");
    s.push('\n');
    Some(s)
}

/// A Scaleway server's pinned address on `net`: the IPAM reservation and the private NIC that
/// takes it (provider docs, `instance_private_nic.md`, "With IPAM IP IDs"). The NIC is attached
/// after the server has started (the provider creates it after `reachState`), so the
/// provisioner waits for the address (`render::egress::provision`). A replaced server's new
/// NIC takes the same reservation, which outlives both.
fn scaleway_private_nic(resources: &mut Map<String, Value>, sys: &System, host: &Host, net: &str, ip: IpAddr) {
    let name = format!("{}_{}", rname(&host.name), rname(net));
    let pn = expr(format!("${{scaleway_vpc_private_network.{}.id}}", rname(net)));
    let mut reserved = json!({
        "address": ip.to_string(),
        "source": [{ "private_network_id": pn }],
        "tags": [format!("kiln-system={}", sys.name), format!("kiln-host={}", host.name)],
    });
    if let Some(r) = host.location.as_deref().and_then(scaleway_region) {
        reserved["region"] = json!(r);
    }
    add(resources, "scaleway_ipam_ip", &name, reserved);
    let mut nic = json!({
        "server_id": expr(format!("${{scaleway_instance_server.{}.id}}", rname(&host.name))),
        "private_network_id": expr(format!("${{scaleway_vpc_private_network.{}.id}}", rname(net))),
        "ipam_ip_ids": [expr(format!("${{scaleway_ipam_ip.{name}.id}}"))],
    });
    if let Some(z) = &host.location {
        nic["zone"] = json!(z);
    }
    add(resources, "scaleway_instance_private_nic", &name, nic);
}

/// The region of a Scaleway zone (`fr-par-1` → `fr-par`): private networks and IPAM addresses
/// are regional, servers zonal.
fn scaleway_region(zone: &str) -> Option<&str> {
    let (region, n) = zone.rsplit_once('-')?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && region.contains('-')).then_some(region)
}

/// A host's rules as its provider's firewall carries them: only those whose traffic that
/// firewall sees, with the sources it sees (empty: anyone).
fn provider_rules<'a>(sys: &'a System, host: &'a Host) -> impl Iterator<Item = (&'a FirewallRule, Vec<Cidr>)> + 'a {
    host.firewall.iter().filter_map(move |r| crate::eval::firewall_layers::provider_sources(sys, host, r).map(|s| (r, s)))
}

fn hcloud_rule(r: &FirewallRule, sources: &[Cidr]) -> Value {
    json!({
        "direction": "in",
        "protocol": r.protocol.name(),
        "port": r.port.to_string(),
        "source_ips": cidr_list(sources),
        "description": r.reason.chars().take(255).collect::<String>(),
    })
}

/// Server tags: fixed `prefix+value` pairs, then the rollout group when there is one.
fn tags(fixed: &[(&str, &str)], group: Option<&str>, group_prefix: &str) -> Vec<String> {
    fixed.iter().map(|(p, v)| format!("{p}{v}")).chain(group.map(|g| format!("{group_prefix}{g}"))).collect()
}

/// How a managed database client's variable names the services of one application that share
/// its role (nothing for a client of its own).
fn shared_by(c: &ManagedClient) -> String {
    if c.shared_with.is_empty() {
        return String::new();
    }
    let names: Vec<String> = std::iter::once(&c.service).chain(&c.shared_with).map(|n| format!("`{n}`")).collect();
    format!(" (shared by {})", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finalise_escapes_every_literal_and_keeps_expressions() {
        let tree = json!({
            "a": "${file(\"/etc/hostname\")}",
            "b": ["%{ if true }x%{ endif }", { "${k}": "v" }],
            "c": expr("${var.token}".into()),
            "d": [expr("terraform_data.x".into())],
            "e": { EXPR_KEY: "${not}", "other": 1 },
        });
        let out = finalise(tree);
        assert_eq!(out["a"], "$${file(\"/etc/hostname\")}");
        assert_eq!(out["b"][0], "%%{ if true }x%%{ endif }");
        assert_eq!(out["b"][1]["$${k}"], "v");
        assert_eq!(out["c"], "${var.token}");
        assert_eq!(out["d"][0], "terraform_data.x");
        // only a lone marker is an expression
        assert_eq!(out["e"][literal(EXPR_KEY)], "$${not}");
    }
}
