//! The Cloudflare tunnel of maidan-cloud, as Terraform applies it with the stand-in providers
//! (tests/tofu/, the real cloudflare/cloudflare 5.22.0 schemas): one ingress rule per route the
//! tunnel carries, to the edge by name with the route's hostname as SNI, the catch-all 404 last;
//! a proxied CNAME to `<tunnel id>.cfargotunnel.com` for each of those names (Terraform
//! resolves the id); an HTTP-01 route's challenge path sent to the edge's port 80; the
//! droplet's cloud firewall, ufw and Compose without 80/443; and the
//! tunnel token only on the host: not in the root, the state or the store, and handed to
//! cloudflared as the file `TUNNEL_TOKEN_FILE` names (read back by the real `docker-compose`).

mod common;

use std::collections::BTreeSet;

use common::terraform::applied;
use common::*;
use kiln::pipeline::{Options, Outcome, compile};

fn example() -> std::path::PathBuf {
    repo().join("flake-free-examples/maidan-cloud")
}

/// The attributes of every instance of `ty` in a Terraform state, by resource name.
fn state_resources(state: &serde_json::Value, ty: &str) -> Vec<(String, serde_json::Value)> {
    state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == ty && r["mode"] == "managed")
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["instances"][0]["attributes"].clone()))
        .collect()
}

/// The routes each host terminates, from the build's model (hostname → edge host).
fn routes_by_host(result: &std::path::Path) -> Vec<(String, String)> {
    let model: serde_json::Value = serde_json::from_str(&read(&result.join("model.json"))).unwrap();
    let routes = model["routes"].as_object().unwrap();
    routes.iter().map(|(name, r)| (name.clone(), r["edge_host"].as_str().unwrap().to_string())).collect()
}

#[test]
fn the_tunnel_carries_its_hosts_routes_and_the_host_opens_no_web_ports() {
    let tmp = tempfile::tempdir().unwrap();
    let applied = applied(&example(), tmp.path());
    let state: serde_json::Value = serde_json::from_str(&read(&tmp.path().join("terraform.tfstate"))).unwrap();

    let tunnels = state_resources(&state, "cloudflare_zero_trust_tunnel_cloudflared");
    assert_eq!(tunnels.len(), 1, "one tunnel: {tunnels:?}");
    let tunnel_id = tunnels[0].1["id"].as_str().unwrap().to_string();
    assert_eq!(tunnels[0].1["config_src"], "cloudflare", "remotely managed: the configuration below is the tunnel's");

    let routes = routes_by_host(&applied.first);
    let tunnelled: BTreeSet<&str> = routes.iter().filter(|(_, h)| h == "maidan").map(|(n, _)| n.as_str()).collect();
    let direct: BTreeSet<&str> = routes.iter().filter(|(_, h)| h == "legacy").map(|(n, _)| n.as_str()).collect();
    assert!(tunnelled.len() >= 18 && !direct.is_empty(), "{tunnelled:?} {direct:?}");

    // The configuration: one rule per route on the droplet, to Traefik over the edge bridge,
    // verified against the route's own certificate; the catch-all last.
    let configs = state_resources(&state, "cloudflare_zero_trust_tunnel_cloudflared_config");
    assert_eq!(configs.len(), 1);
    let config = &configs[0].1;
    assert_eq!(config["tunnel_id"], tunnel_id.as_str(), "the configuration is the tunnel's");
    let ingress = config["config"]["ingress"].as_array().unwrap();
    let (last, rules) = ingress.split_last().unwrap();
    assert_eq!(last["service"], "http_status:404");
    assert!(last["hostname"].is_null(), "the catch-all matches every name: {last}");
    let hostnames: BTreeSet<&str> = rules.iter().map(|r| r["hostname"].as_str().unwrap()).collect();
    assert_eq!(hostnames, tunnelled, "one rule per route the tunnel carries, none for the direct host's");
    for r in rules {
        assert_eq!(r["service"], "https://traefik:443", "{r}");
        assert_eq!(r["origin_request"]["origin_server_name"], r["hostname"], "SNI and certificate name: {r}");
    }

    // DNS: a proxied CNAME to the tunnel for each of them, an A record for the direct host's.
    let records = state_resources(&state, "cloudflare_dns_record");
    let cnames: BTreeSet<&str> = records.iter().filter(|(_, r)| r["type"] == "CNAME").map(|(_, r)| r["name"].as_str().unwrap()).collect();
    assert_eq!(cnames, tunnelled);
    for (name, r) in records.iter().filter(|(_, r)| r["type"] == "CNAME") {
        assert_eq!(r["content"], format!("{tunnel_id}.cfargotunnel.com"), "{name}");
        assert_eq!(r["proxied"], true, "{name}: only a proxied name reaches a tunnel");
    }
    let a: BTreeSet<&str> = records.iter().filter(|(_, r)| r["type"] == "A").map(|(_, r)| r["name"].as_str().unwrap()).collect();
    assert_eq!(a, direct, "A records only where the host is reached on its address");
    // Browsers meet Cloudflare's edge for the tunnel's names: TLS 1.3 there too, as Traefik's.
    let settings = state_resources(&state, "cloudflare_zone_setting");
    // (`value` is a dynamic attribute: the state holds it with its type)
    let min_tls: Vec<&serde_json::Value> =
        settings.iter().filter(|(_, s)| s["setting_id"] == "min_tls_version").map(|(_, s)| &s["value"]["value"]).collect();
    assert_eq!(min_tls, [&serde_json::json!("1.3")], "{settings:?}");

    // Firewalls: the droplet's cloud firewall, its ufw rules and Traefik's published ports
    // hold no 80/443; the direct host keeps them.
    let firewall = state_resources(&state, "digitalocean_firewall");
    let ports: Vec<&str> = firewall[0].1["inbound_rule"].as_array().unwrap().iter().map(|r| r["port_range"].as_str().unwrap()).collect();
    assert_eq!(ports, ["2222"], "the tunnel host opens only SSH (its ssh_port): {ports:?}");
    let provision = read(&applied.first.join("hosts/maidan/provision.sh"));
    for port in ["port 80 ", "port 443 "] {
        assert!(!provision.contains(port), "maidan's ufw opens {port}");
        assert!(read(&applied.first.join("hosts/legacy/provision.sh")).contains(port), "legacy's ufw keeps {port}");
    }
    let compose = compose_config(&applied.first.join("hosts/maidan/compose.yaml"));
    assert!(compose["services"]["traefik"]["ports"].is_null(), "Traefik publishes nothing: {}", compose["services"]["traefik"]["ports"]);
    let edge_nets = compose["services"]["traefik"]["networks"].as_object().unwrap();
    let tunnel_nets = compose["services"]["cloudflared"]["networks"].as_object().unwrap();
    assert!(tunnel_nets.keys().any(|n| edge_nets.contains_key(n)), "cloudflared reaches `traefik` by name on a shared network");
}

#[test]
fn the_tunnel_token_reaches_cloudflared_on_the_host_only() {
    let identity = repo().join("tests/fixtures/keys/examples.agekey");
    let key = std::fs::read_to_string(&identity).unwrap();
    let c = match compile(&example(), &Options { identity: Some(key.clone()), ..Options::default() }).unwrap() {
        Outcome::Ok(c) => c,
        Outcome::Failed(f) => panic!("{:?}", f.diagnostics),
    };
    let ids = kiln::sops::load_identities(&key).unwrap();
    let names: BTreeSet<String> = ["cloudflared_token".to_string()].into();
    let token = kiln::secrets::values(&example(), &c.system, &names, &ids).unwrap().remove("cloudflared_token").unwrap();
    assert!(token.len() > 8);

    let tmp = tempfile::tempdir().unwrap();
    let applied = applied(&example(), tmp.path());
    let contains = |hay: &[u8]| hay.windows(token.len()).any(|w| w == token.as_slice());
    for (path, bytes, _) in files(&applied.first) {
        assert!(!contains(&bytes), "the token is in the store: {path}");
    }
    for f in ["terraform.tfstate", "tf1/main.tf.json"] {
        assert!(!contains(&std::fs::read(tmp.path().join(f)).unwrap()), "the token is in {f}");
    }

    // On the host: the delivered secret's per-service copy, mounted where TUNNEL_TOKEN_FILE
    // points (cloudflared >= 2025.4 reads the token from that file).
    let compose = compose_config(&applied.first.join("hosts/maidan/compose.yaml"));
    let svc = &compose["services"]["cloudflared"];
    let target = svc["secrets"][0]["target"].as_str().unwrap();
    assert_eq!(svc["environment"]["TUNNEL_TOKEN_FILE"], target);
    let source = svc["secrets"][0]["source"].as_str().unwrap();
    assert_eq!(compose["secrets"][source]["file"], "/etc/kiln/service-secrets/cloudflared/cloudflared_token");
    assert!(svc["environment"].get("TUNNEL_TOKEN").is_none(), "no token value in the environment");
}

#[test]
fn an_http01_route_through_the_tunnel_gets_its_challenge_path_on_port_80() {
    // vault.<domain> takes its certificate over HTTP-01: Let's Encrypt's request arrives through
    // Cloudflare and the tunnel like any other, so a rule before the hostname's sends the
    // challenge path to Traefik's port 80, where Traefik answers it.
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    copy_tree(&example(), &sys);
    let f = sys.join("community.toml");
    let from = "service = \"{instance}-vaultwarden\"\nedge = \"traefik\"\ntls = \"dns\"";
    let text = read(&f);
    assert!(text.contains(from));
    std::fs::write(&f, text.replace(from, &from.replace("\"dns\"", "\"acme\""))).unwrap();
    let result = build(&sys, &tmp.path().join("store"), &tmp.path().join("r"));
    let dir = common::terraform::root_of(&result, &tmp.path().join("tf"));
    common::terraform::tofu_check(&dir, &[]).unwrap_or_else(|e| panic!("terraform rejects the root:\n{e}"));
    let root: serde_json::Value = serde_json::from_str(&read(&dir.join("main.tf.json"))).unwrap();
    let ingress =
        root["resource"]["cloudflare_zero_trust_tunnel_cloudflared_config"]["cloudflared"]["config"]["ingress"].as_array().unwrap();
    let at = ingress.iter().position(|r| r["hostname"] == "vault.maidan.example").unwrap();
    assert_eq!(ingress[at]["path"], r"^/\.well-known/acme-challenge/", "the challenge rule comes first: {}", ingress[at]);
    assert_eq!(ingress[at]["service"], "http://traefik:80");
    assert_eq!(ingress[at + 1]["hostname"], "vault.maidan.example");
    assert!(ingress[at + 1]["path"].is_null(), "then the whole name: {}", ingress[at + 1]);
    assert_eq!(ingress[at + 1]["service"], "https://traefik:443");
    let challenges = ingress.iter().filter(|r| !r["path"].is_null()).count();
    assert_eq!(challenges, 1, "only the HTTP-01 route has one");
}

#[test]
fn a_tunnel_hosts_own_address_gets_no_record_beside_the_cname() {
    // The droplet as an existing server with an address of its own (not `public`): its names
    // still arrive through the tunnel, and Cloudflare refuses an A record beside a CNAME.
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    copy_tree(&example(), &sys);
    let f = sys.join("hosts.toml");
    let from = "provider = \"digitalocean\"\ntype = \"g-16vcpu-64gb\"\nlocation = \"fra1\"\n";
    let text = read(&f);
    assert!(text.contains(from));
    std::fs::write(&f, text.replace(from, "provider = \"byo\"\naddress = \"203.0.113.30\"\n")).unwrap();
    let result = build(&sys, &tmp.path().join("store"), &tmp.path().join("r"));
    let dir = common::terraform::root_of(&result, &tmp.path().join("tf"));
    common::terraform::tofu_check(&dir, &[]).unwrap_or_else(|e| panic!("terraform rejects the root:\n{e}"));
    let root: serde_json::Value = serde_json::from_str(&read(&dir.join("main.tf.json"))).unwrap();
    let records = root["resource"]["cloudflare_dns_record"].as_object().unwrap();
    let tunnelled: BTreeSet<String> = routes_by_host(&result).into_iter().filter(|(_, h)| h == "maidan").map(|(n, _)| n).collect();
    for r in records.values() {
        let name = r["name"].as_str().unwrap();
        if tunnelled.contains(name) {
            assert_eq!(r["type"], "CNAME", "{name} is the tunnel's: {r}");
        }
    }
    let cnames = records.values().filter(|r| r["type"] == "CNAME").count();
    assert_eq!(cnames, tunnelled.len());
}
