//! Provider firewalls carry only the rules they enforce: Hetzner Cloud firewalls (and Scaleway
//! security groups) filter the public interfaces only, so no rule for private traffic goes
//! there; DigitalOcean cloud firewalls filter the VPC too and keep those rules. Judged by
//! Terraform's plan with the stand-in providers. SYSTEM.md and `kiln show` name the layer that
//! enforces each rule.

mod common;

use common::terraform::plan;
use common::*;

/// An IPv4 CIDR inside RFC 1918, or an IPv6 one inside fc00::/7.
fn private_cidr(c: &str) -> bool {
    let addr = c.split('/').next().unwrap();
    if let Ok(std::net::IpAddr::V4(a)) = addr.parse::<std::net::IpAddr>() {
        let o = a.octets();
        return o[0] == 10 || (o[0] == 172 && (16..32).contains(&o[1])) || (o[0] == 192 && o[1] == 168);
    }
    addr.to_ascii_lowercase().starts_with("fc") || addr.to_ascii_lowercase().starts_with("fd")
}

/// `(address, planned values)` of every resource of one type the plan creates.
fn planned<'a>(plan: &'a serde_json::Value, ty: &str) -> Vec<(&'a str, &'a serde_json::Value)> {
    plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == ty)
        .map(|c| (c["address"].as_str().unwrap(), &c["change"]["after"]))
        .collect()
}

#[test]
fn hetzner_firewalls_carry_no_rule_for_private_traffic() {
    let tmp = tempfile::tempdir().unwrap();
    let r = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("r"));
    let plan = plan(&r, tmp.path());
    let firewalls = planned(&plan, "hcloud_firewall");
    assert_eq!(firewalls.len(), 5, "one firewall per server");
    let mut public_rules = 0;
    for (addr, fw) in &firewalls {
        for rule in fw["rule"].as_array().unwrap() {
            for src in rule["source_ips"].as_array().unwrap() {
                let src = src.as_str().unwrap();
                assert!(!private_cidr(src), "{addr} has a rule for private traffic, which it never sees: {rule}");
            }
            public_rules += 1;
        }
        // a server without a public interface: its firewall filters nothing, so it has no rule
        if *addr != "hcloud_firewall.edge" {
            assert_eq!(fw["rule"].as_array().unwrap().len(), 0, "{addr}: {fw}");
        }
    }
    // the edge keeps what comes from the internet: ssh from the admins, http(s) from the CDN
    let edge = firewalls.iter().find(|(a, _)| *a == "hcloud_firewall.edge").unwrap().1;
    let ports: Vec<(&str, &str)> =
        edge["rule"].as_array().unwrap().iter().map(|r| (r["port"].as_str().unwrap(), r["protocol"].as_str().unwrap())).collect();
    assert_eq!(ports, [("22", "tcp"), ("80", "tcp"), ("443", "tcp"), ("443", "udp")], "{edge}");
    assert_eq!(public_rules, 4);

    // SYSTEM.md says which layer enforces each rule
    let doc = read(&r.join("SYSTEM.md"));
    assert!(doc.contains("| host | port | from | because | enforced by |"), "{doc}");
    for row in [
        "| `edge` | 22/tcp | 198.51.100.0/24, 2001:db8:100::/48 | ssh from the admin sources | Hetzner Cloud firewall, ufw |",
        "| `edge` | 2020/tcp | 10.0.0.6/32 | `prometheus` on `identity` scrapes `caddy` | ufw |",
        "| `cache` | 6379/tcp | 10.0.0.3/32 | `app` on `app` connects to `valkey` | `DOCKER-USER` (ufw route rule) |",
        "| `identity` | 9100/tcp | 172.16.0.0/12, 192.168.0.0/16 | container `prometheus` connects to `node-exporter-identity` on the host | ufw |",
        "| `db` | 5432/tcp to `postgres` | `pgbouncer` | `pgbouncer` connects to `postgres` | Compose network `default` |",
    ] {
        assert!(doc.contains(row), "no row {row} in\n{doc}");
    }
    // every rule row names at least one layer
    let table = &doc[doc.find("## Firewall").unwrap()..doc.find("## Egress").unwrap()];
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let last = line.trim_end_matches('|').rsplit('|').next().unwrap().trim();
        assert!(!last.is_empty(), "a rule without a layer: {line}");
    }

    // `kiln show` too, as text and JSON
    let show = text(&run(kiln().args(["show", "flake-free-examples/five-vps-saas"]).current_dir(repo())).stdout);
    assert!(show.contains("(ssh from the admin sources)  [Hetzner Cloud firewall, ufw]"), "{show}");
    let json = run(kiln().args(["show", "--json", "flake-free-examples/five-vps-saas"]).current_dir(repo()));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let rule = &json["hosts"]["db"]["firewall"][0];
    assert_eq!(rule["port"], 22);
    assert_eq!(rule["enforced_by"], "ufw");
}

#[test]
fn digitalocean_firewalls_keep_rules_for_vpc_traffic() {
    let tmp = tempfile::tempdir().unwrap();
    let r = build(&repo().join("tests/fixtures/tofu/clouds"), &tmp.path().join("store"), &tmp.path().join("r"));
    let plan = plan(&r, tmp.path());
    let worker = planned(&plan, "digitalocean_firewall").into_iter().find(|(a, _)| *a == "digitalocean_firewall.worker").unwrap().1;
    let from_web = worker["inbound_rule"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["port_range"] == "8080" && r["source_addresses"].as_array().unwrap().iter().any(|s| s == "10.20.0.2/32"));
    assert!(from_web, "the VPC rule is gone from the DigitalOcean firewall, which filters the VPC: {worker}");
    let doc = read(&r.join("SYSTEM.md"));
    assert!(
        doc.contains("| `worker` | 8080/tcp | 10.20.0.2/32 | route `www.example.net` from `web` | DigitalOcean cloud firewall, `DOCKER-USER` (ufw route rule) |"),
        "{doc}"
    );
}

/// ufw's route rules (what Docker forwards, through `DOCKER-USER`) exist only for the ports a
/// container publishes: a native service's port is the host's own and takes the input rule
/// alone. five-vps-saas's edge runs Caddy and node-exporter natively and Alloy in a container.
#[test]
fn only_container_ports_take_route_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let r = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("r"));
    let provision = r.join("hosts/edge/provision.sh");
    oracle("sh", &provision).unwrap();
    let p = read(&provision);
    let rules = |verb: &str, port: u16| p.lines().filter(|l| l.contains(verb) && l.contains(&format!(" to any port {port} "))).count();
    for (port, what) in [(80, "caddy"), (443, "caddy"), (2020, "caddy's metrics"), (9100, "node-exporter")] {
        assert!(rules("\"$@\" allow ", port) > 0, "{what}: the input rule for {port}");
        assert_eq!(rules("\"$@\" route allow ", port), 0, "{what} is native: no route rule for {port}");
    }
    assert_eq!((rules("\"$@\" allow ", 12345), rules("\"$@\" route allow ", 12345)), (1, 1), "alloy's container: both rules");
    let app = read(&r.join("hosts/app/provision.sh"));
    assert!(app.contains("\"$@\" route allow proto tcp from 10.0.0.2/32 to any port 3000 "), "the app's container port is forwarded");
    let model: serde_json::Value = serde_json::from_slice(&std::fs::read(r.join("model.json")).unwrap()).unwrap();
    let forwarded = |host: &str, port: u64| {
        model["firewall"].as_array().unwrap().iter().find(|f| f["host"] == host && f["port"] == port).map(|f| f["forwarded"].clone())
    };
    assert_eq!(forwarded("edge", 443), Some(serde_json::json!(false)));
    assert_eq!(forwarded("app", 3000), Some(serde_json::json!(true)));
}
