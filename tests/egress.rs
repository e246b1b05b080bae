//! Egress for private hosts: a public host on the same private network becomes the NAT gateway
//! (forwarding and masquerade in its provisioner, a ufw route rule), Hetzner gets the network
//! route, and the private host its default route on every boot. Judged by Terraform with the
//! stand-in providers, shellcheck and dash, and cloud-init's schema; `kiln show` and SYSTEM.md
//! say who is whose gateway; `egress = "none"` stands only with an `[allow.no-egress]`.

mod common;

use common::*;

#[test]
fn the_public_host_on_the_network_is_the_private_hosts_gateway() {
    let tmp = tempfile::tempdir().unwrap();
    let r = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("r"));

    // the gateway: forwarding, masquerade for the network out of the public interface, and a
    // ufw route rule; judged by shellcheck and dash
    let edge = r.join("hosts/edge/provision.sh");
    let gw = read(&edge);
    assert!(gw.contains("net.ipv4.ip_forward = 1"), "no forwarding on the gateway");
    assert!(gw.contains("POSTROUTING -s 10.0.0.0/24 -o @IF@ -j MASQUERADE"), "no masquerade for the network");
    assert!(gw.contains("\"$@\" route allow out on \"$pub_if\" from 10.0.0.0/24"), "ufw does not forward from the network");
    oracle("sh", &edge).unwrap();

    // a private host: its default route through the network's gateway, before any package,
    // on every boot too
    let app = r.join("hosts/app/provision.sh");
    let client = read(&app);
    let route = client.find("ip route replace default via 10.0.0.1").expect("no default route on the private host");
    assert!(route < client.find("step: packages").unwrap(), "the route comes after the packages");
    assert!(!client.contains("MASQUERADE"), "a private host masquerades");
    oracle("sh", &app).unwrap();
    let ud = r.join("hosts/app/user-data");
    assert!(read(&ud).contains("bootcmd:"), "the route is not set on every boot");
    oracle("cloud-init", &ud).unwrap();

    // the provider routes 0.0.0.0/0 to the gateway; Terraform plans it
    let root: serde_json::Value = serde_json::from_str(&read(&r.join("tofu/main.tf.json"))).unwrap();
    let route = &root["resource"]["hcloud_network_route"]["private_egress"];
    assert_eq!(route["destination"], "0.0.0.0/0");
    assert_eq!(route["gateway"], "10.0.0.2");
    let plan = terraform::plan(&r, tmp.path());
    let planned = plan["resource_changes"].as_array().unwrap().iter().any(|c| c["address"] == "hcloud_network_route.private_egress");
    assert!(planned, "the route is not in the plan");

    // SYSTEM.md and `kiln show` say who is whose gateway
    let doc = read(&r.join("SYSTEM.md"));
    assert!(doc.contains("| `app` | NAT through `edge` on `private` (default route via 10.0.0.1) | — |"), "{doc}");
    assert!(doc.contains("| `edge` | its own public address | `private` (10.0.0.0/24) |"), "{doc}");
    let show = run(kiln().args(["show", "flake-free-examples/five-vps-saas"]).current_dir(repo()));
    let show = text(&show.stdout);
    assert!(show.contains("egress    NAT through `edge` on `private`"), "{show}");
    assert!(show.contains("gateway   NAT for private"), "{show}");
}

/// A public host and a private one without egress, on one network.
fn system() -> String {
    format!("{}{HOSTS}", preamble("egress"))
}

const HOSTS: &str = r#"
[networks.private]
cidr = "10.0.0.0/24"

[hosts.edge]
provider = "hetzner"
image = "debian-12"
public = true
networks = { private = "10.0.0.2" }

[hosts.vault]
provider = "hetzner"
image = "debian-12"
networks = { private = "10.0.0.3" }
egress = "none"
"#;

#[test]
fn no_egress_stands_only_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(sys.join("system.toml"), system()).unwrap();
    let out = run(kiln().args(["check", sys.to_str().unwrap()]));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("error[no-egress]") && err.contains("its packages and security updates"), "{err}");

    let allowed = format!(
        "{}\n[allow.no-egress]\nhosts = [\"vault\"]\nreason = \"An apt mirror on the private network serves its packages; it needs nothing else.\"\n",
        system()
    );
    std::fs::write(sys.join("system.toml"), allowed).unwrap();
    let r = build(&sys, &tmp.path().join("store"), &tmp.path().join("r"));
    let vault = read(&r.join("hosts/vault/provision.sh"));
    assert!(!vault.contains("ip route replace default"), "a host without egress got a route");
    let edge = read(&r.join("hosts/edge/provision.sh"));
    assert!(!edge.contains("MASQUERADE"), "a gateway for nobody");
    let root = read(&r.join("tofu/main.tf.json"));
    assert!(!root.contains("hcloud_network_route"), "a route for nobody");
}

#[test]
fn aaaa_records_only_for_edges_that_answer_on_ipv6() {
    // jacker's Traefik runs in a container: Docker publishes its ports on 0.0.0.0 (IPv4 only);
    // five-vps-saas's Caddy is native and listens on every address of a host with IPv6
    let tmp = tempfile::tempdir().unwrap();
    let records = |ex: &str, ty: &str| {
        let r = build(&repo().join("flake-free-examples").join(ex), &tmp.path().join("store"), &tmp.path().join(ex));
        read(&r.join("tofu/main.tf.json")).matches(&format!("\"type\": \"{ty}\"")).count()
    };
    assert!(records("jacker", "A") > 0);
    assert_eq!(records("jacker", "AAAA"), 0, "AAAA records for a containerised edge published on IPv4 only");
    assert_eq!(records("five-vps-saas", "AAAA"), records("five-vps-saas", "A"), "a native edge on an IPv6 host has its AAAA");
}
