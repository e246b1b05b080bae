//! DNS in the OpenTofu root: each declared zone — created by kiln (`prevent_destroy`), or
//! looked up with the provider's data source when it exists already — and an A (and AAAA)
//! record for every route hostname inside it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::{add, expr, rname};
use crate::model::{DnsZone, System};
use crate::syntax::system::ProviderKind;

/// Where the root's records find one zone: a resource kiln creates, a data source reading a
/// zone that exists, or (Cloudflare) a variable holding its id.
fn zone_ref(z: &DnsZone) -> String {
    let zname = rname(&z.zone);
    let data = if z.existing { "data." } else { "" };
    match z.provider_kind {
        ProviderKind::Cloudflare => format!("${{var.cloudflare_zone_id_{zname}}}"),
        ProviderKind::Hetzner => format!("${{{data}hcloud_zone.{zname}.name}}"),
        ProviderKind::DigitalOcean if z.existing => format!("${{data.digitalocean_domain.{zname}.name}}"),
        ProviderKind::DigitalOcean => format!("${{digitalocean_domain.{zname}.id}}"),
        _ => String::new(),
    }
}

/// The zone itself. An existing one is read, never owned: no `apply` creates it, no
/// `destroy` deletes it (with the records kiln does not manage, mail among them). A zone
/// kiln creates refuses to be destroyed: removing it from the system is a plan error, not a
/// silent deletion of every record in it.
fn zone(z: &DnsZone, resources: &mut Map<String, Value>, data: &mut Map<String, Value>, variables: &mut Map<String, Value>) {
    let zname = rname(&z.zone);
    let keep = json!({ "prevent_destroy": true });
    match (z.provider_kind, z.existing) {
        (ProviderKind::Cloudflare, _) => {
            variables.insert(
                format!("cloudflare_zone_id_{zname}"),
                json!({ "type": "string", "description": format!("Cloudflare zone id of {}", z.zone) }),
            );
        }
        (ProviderKind::Hetzner, true) => add(data, "hcloud_zone", &zname, json!({ "name": z.zone })),
        (ProviderKind::Hetzner, false) => {
            add(resources, "hcloud_zone", &zname, json!({ "name": z.zone, "mode": "primary", "ttl": 3600, "lifecycle": keep }))
        }
        (ProviderKind::DigitalOcean, true) => add(data, "digitalocean_domain", &zname, json!({ "name": z.zone })),
        (ProviderKind::DigitalOcean, false) => add(resources, "digitalocean_domain", &zname, json!({ "name": z.zone, "lifecycle": keep })),
        _ => {}
    }
}

/// Every zone, and an A (and AAAA) record for every route hostname inside it, pointing at
/// the public addresses of the host that terminates it.
pub(super) fn dns_records(
    sys: &System,
    resources: &mut Map<String, Value>,
    data: &mut Map<String, Value>,
    variables: &mut Map<String, Value>,
    public_ip: &BTreeMap<&str, (Option<Value>, Option<Value>)>,
) {
    // A name a tunnel carries is a CNAME to the tunnel (`tofu/tunnel.rs`), never an address.
    let tunnelled: BTreeSet<&str> =
        sys.routes.iter().filter(|r| crate::eval::tunnel::carrier(sys, r).is_some()).map(|r| r.hostname.as_str()).collect();
    for z in &sys.dns {
        let zname = rname(&z.zone);
        zone(z, resources, data, variables);
        let zref = zone_ref(z);
        // Routes' hostnames and streams' names (`System::edge_names`), each at its edge host.
        let names: Vec<_> = sys.edge_names().into_iter().filter(|(n, _, _)| *n == z.zone || n.ends_with(&format!(".{}", z.zone))).collect();
        let mut proxied_records = 0;
        for (hostname, edge_host, edge_service) in names {
            let Some((v4, v6)) = public_ip.get(edge_host).filter(|_| !tunnelled.contains(hostname)) else { continue };
            // AAAA only where the edge answers on IPv6: a native edge listens on every address;
            // Docker publishes a containerised edge's ports on 0.0.0.0, IPv4 only.
            let v6 = if sys.services[edge_service].container.is_none() { v6 } else { &None };
            let label = hostname.strip_suffix(&format!(".{}", z.zone)).unwrap_or("@");
            for (ty, value) in [("A", v4.clone()), ("AAAA", v6.clone())] {
                let Some(value) = value else { continue };
                let rn = format!("{}_{}", rname(&hostname.replace('*', "wildcard")), ty.to_lowercase());
                match z.provider_kind {
                    ProviderKind::Cloudflare => {
                        proxied_records += usize::from(z.proxied);
                        add(
                            resources,
                            "cloudflare_dns_record",
                            &rn,
                            json!({ "zone_id": expr(zref.clone()), "name": hostname, "type": ty, "content": value, "ttl": 1, "proxied": z.proxied }),
                        )
                    }
                    ProviderKind::Hetzner => add(
                        resources,
                        "hcloud_zone_rrset",
                        &rn,
                        json!({ "zone": expr(zref.clone()), "name": label, "type": ty, "ttl": 300, "records": [{ "value": value }] }),
                    ),
                    ProviderKind::DigitalOcean => add(
                        resources,
                        "digitalocean_record",
                        &rn,
                        json!({ "domain": expr(zref.clone()), "name": label, "type": ty, "value": value, "ttl": 300 }),
                    ),
                    _ => {}
                }
            }
        }
        // A proxied zone's edge-to-origin leg: "strict" makes Cloudflare verify the origin's
        // certificate (every route's edge holds a publicly trusted one: `cdn-origin-untrusted`);
        // the "flexible" default speaks plain HTTP to an origin that redirects to HTTPS, a loop.
        if z.provider_kind == ProviderKind::Cloudflare && proxied_records > 0 {
            add(
                resources,
                "cloudflare_zone_setting",
                &format!("{zname}_ssl"),
                json!({ "zone_id": expr(zref.clone()), "setting_id": "ssl", "value": "strict" }),
            );
        }
        // Browsers reach the names Cloudflare proxies (a proxied zone's, a tunnel's) at Cloudflare's
        // edge: when every edge behind them accepts TLS 1.3 only, the zone's minimum says the same.
        if z.provider_kind == ProviderKind::Cloudflare {
            let behind: Vec<&str> = sys
                .routes
                .iter()
                .filter(|r| {
                    (z.proxied || tunnelled.contains(r.hostname.as_str())) && sys.zone_of(&r.hostname).is_some_and(|o| o.zone == z.zone)
                })
                .map(|r| r.edge_service.as_str())
                .collect();
            let tls13 = |e: &&str| sys.services[*e].options.get("tls_min_version").map(String::as_str) == Some("1.3");
            if !behind.is_empty() && behind.iter().all(tls13) {
                add(
                    resources,
                    "cloudflare_zone_setting",
                    &format!("{zname}_min_tls_version"),
                    json!({ "zone_id": expr(zref.clone()), "setting_id": "min_tls_version", "value": "1.3" }),
                );
            }
        }
    }
}
