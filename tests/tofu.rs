//! The OpenTofu roots are type-checked by Terraform itself against providers that serve the
//! real providers' schemas (tests/tofu/, scripts/tofu-check): `init`, `validate` and `plan`
//! succeed for every example, and changing one host replaces exactly that host's server.

mod common;

use common::terraform::{applied, root_of, tofu_check};
use common::*;

#[test]
fn every_example_root_validates_and_plans() {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for ex in examples() {
        let name = ex.file_name().unwrap().to_string_lossy().into_owned();
        let result = build(&ex, &tmp.path().join("store"), &tmp.path().join(&name));
        if !result.join("tofu/main.tf.json").exists() {
            continue;
        }
        let dir = root_of(&result, &tmp.path().join(format!("{name}-tf")));
        if let Err(e) = tofu_check(&dir, &[]) {
            panic!("{name}: terraform rejects the root:\n{e}");
        }
        checked += 1;
    }
    assert!(checked >= 1);
}

#[test]
fn every_provider_kiln_writes_for_validates_and_plans() {
    // DigitalOcean (droplets, VPC, firewall, Spaces), Scaleway (server, security group, managed
    // PostgreSQL, bucket), an existing host, Cloudflare records (proxied: SSL strict) and a tunnel
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&repo().join("tests/fixtures/tofu/clouds"), &tmp.path().join("store"), &tmp.path().join("r"));
    let dir = root_of(&result, &tmp.path().join("tf"));
    let root = std::fs::read_to_string(dir.join("main.tf.json")).unwrap();
    for ty in [
        "digitalocean_droplet",
        "digitalocean_vpc",
        "digitalocean_firewall",
        "digitalocean_spaces_bucket",
        "scaleway_instance_server",
        "scaleway_instance_security_group",
        "scaleway_rdb_instance",
        "scaleway_object_bucket",
        "cloudflare_dns_record",
        "cloudflare_zone_setting",
        "cloudflare_zero_trust_tunnel_cloudflared",
    ] {
        assert!(root.contains(&format!("\"{ty}\"")), "no {ty} in the root");
    }
    let v: serde_json::Value = serde_json::from_str(&root).unwrap();
    for (ty, resources) in v["resource"].as_object().unwrap() {
        assert!(resources.get("legacy").is_none(), "the existing host got a {ty}");
    }
    assert_eq!(v["output"]["legacy_ipv4"]["value"], "203.0.113.10", "its address is an output");
    if let Err(e) = tofu_check(&dir, &[]) {
        panic!("terraform rejects the root:\n{e}");
    }
}

#[test]
fn terraform_rejects_a_root_with_a_wrong_attribute() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("r"));
    let dir = root_of(&result, &tmp.path().join("tf"));
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("main.tf.json")).unwrap()).unwrap();
    v["resource"]["hcloud_server"]["edge"]["server_typo"] = serde_json::json!("cx22");
    std::fs::write(dir.join("main.tf.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(tofu_check(&dir, &["--validate-only"]).is_err(), "the schema-serving provider accepted an unknown attribute");
}

#[test]
fn changing_one_host_replaces_exactly_its_server() {
    let tmp = tempfile::tempdir().unwrap();
    let applied = applied(&repo().join("flake-free-examples/five-vps-saas"), tmp.path());

    // the same system again: nothing to do
    let changes0 = changes(&applied.plan(&applied.root, "plan0"));
    assert!(changes0.is_empty(), "an unchanged system has no diff: {changes0:?}");

    // one option of the service on `cache` changes
    let second = applied.rebuild_with("services.toml", "maxmemory = \"2GiB\"", "maxmemory = \"1GiB\"");
    let m1 = manifest(&applied.first);
    let m2 = manifest(&second);
    for h in ["app", "db", "edge", "identity"] {
        assert_eq!(m1["hosts"][h]["closure"], m2["hosts"][h]["closure"], "{h} did not change");
    }
    assert_ne!(m1["hosts"]["cache"]["closure"], m2["hosts"]["cache"]["closure"]);
    let dir2 = root_of(&second, &tmp.path().join("tf2"));
    let changes = changes(&applied.plan(&dir2, "plan"));
    let replaced_servers: Vec<&String> =
        changes.iter().filter(|(a, actions)| a.starts_with("hcloud_server.") && actions.contains("delete")).map(|(a, _)| a).collect();
    assert_eq!(replaced_servers, vec!["hcloud_server.cache"], "{changes:?}");
    for (addr, actions) in &changes {
        assert!(
            addr == "hcloud_server.cache" || addr == "terraform_data.cache_closure" || addr == "hcloud_volume_attachment.cache_data",
            "only the cache server, its trigger and its volume's attachment change, not {addr} ({actions})"
        );
    }
}

/// (address, actions) of every resource the plan changes.
fn changes(plan: &serde_json::Value) -> Vec<(String, String)> {
    plan["resource_changes"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| (c["address"].as_str().unwrap().to_string(), c["change"]["actions"].to_string()))
        .filter(|(_, actions)| actions != "[\"no-op\"]" && actions != "[\"read\"]")
        .collect()
}
