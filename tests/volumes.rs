//! Stateful hosts: every example's hosts with data get a block volume in the OpenTofu root
//! (provider resource, `prevent_destroy`, attached to the host's server, which is replaced
//! destroy-first), judged by Terraform against the stand-in providers; and after applying a
//! root, changing a module option on a stateful host replaces its server and leaves its volume.

mod common;

use common::terraform::{applied, root_of, tofu_check};
use common::*;

/// (server type, volume type, how the server names its volume) per provider.
const KINDS: &[(&str, &str, &str)] = &[
    ("hcloud_server", "hcloud_volume", "hcloud_volume_attachment"),
    ("digitalocean_droplet", "digitalocean_volume", "digitalocean_volume_attachment"),
    ("scaleway_instance_server", "scaleway_block_volume", "additional_volume_ids"),
];

#[test]
fn every_example_host_with_data_gets_a_volume_terraform_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut volumes = 0;
    for ex in examples() {
        let name = ex.file_name().unwrap().to_string_lossy().into_owned();
        let show = run(kiln().arg("show").arg("--json").arg(&ex));
        assert!(show.status.success(), "{name}: {}", text(&show.stderr));
        let model: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
        let result = build(&ex, &tmp.path().join("store"), &tmp.path().join(&name));
        if !result.join("tofu/main.tf.json").exists() {
            continue;
        }
        let root: serde_json::Value = serde_json::from_slice(&std::fs::read(result.join("tofu/main.tf.json")).unwrap()).unwrap();
        let res = &root["resource"];
        for (host, h) in model["hosts"].as_object().unwrap() {
            let key = host.replace('.', "_");
            let Some(&(server_ty, volume_ty, attach)) = KINDS.iter().find(|(s, _, _)| res[s].get(&key).is_some()) else { continue };
            let server = &res[server_ty][&key];
            let stateful = h["data"].as_str().unwrap().starts_with("volume");
            let volume = &res[volume_ty][format!("{key}_data")];
            if !stateful {
                assert!(volume.is_null(), "{name}: stateless host {host} got a volume");
                continue;
            }
            volumes += 1;
            assert_eq!(volume["lifecycle"]["prevent_destroy"], true, "{name}: {host}'s volume can be destroyed");
            assert_eq!(server["lifecycle"]["create_before_destroy"], false, "{name}: {host} would need its volume twice");
            if attach == "additional_volume_ids" {
                assert_eq!(server[attach][0], format!("${{{volume_ty}.{key}_data.id}}"), "{name}: {host}");
            } else {
                let a = &res[attach][format!("{key}_data")];
                assert!(
                    a.to_string().contains(&format!("{server_ty}.{key}.id")),
                    "{name}: {host}'s volume is not attached to its server: {a}"
                );
            }
            // the provisioner mounts it before anything is installed
            let prov = std::fs::read_to_string(result.join(format!("hosts/{host}/provision.sh"))).unwrap();
            let (mount, packages) = (prov.find("data_volume kiln-data").unwrap(), prov.find("step: packages").unwrap());
            assert!(mount < packages, "{name}: {host} installs packages before mounting its data");
        }
        let dir = root_of(&result, &tmp.path().join(format!("{name}-tf")));
        if let Err(e) = tofu_check(&dir, &[]) {
            panic!("{name}: terraform rejects the root:\n{e}");
        }
    }
    assert!(volumes >= 8, "only {volumes} volumes across the examples");
}

#[test]
fn changing_a_stateful_host_replaces_its_server_and_keeps_its_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let applied = applied(&repo().join("flake-free-examples/five-vps-saas"), tmp.path());

    // valkey on `cache` keeps data: one of its options changes
    let second = applied.rebuild_with("services.toml", "maxmemory = \"2GiB\"", "maxmemory = \"1GiB\"");
    let v = applied.plan(&root_of(&second, &tmp.path().join("tf2")), "plan");
    let actions = |addr: &str| {
        v["resource_changes"].as_array().unwrap().iter().find(|c| c["address"] == addr).map(|c| c["change"]["actions"].to_string())
    };
    assert_eq!(actions("hcloud_server.cache").as_deref(), Some("[\"delete\",\"create\"]"), "the server is replaced, old one first");
    assert_eq!(actions("hcloud_volume.cache_data").as_deref(), Some("[\"no-op\"]"), "the volume stays");
    assert_eq!(actions("hcloud_volume_attachment.cache_data").as_deref(), Some("[\"delete\",\"create\"]"), "and moves to the new server");
    for c in v["resource_changes"].as_array().unwrap() {
        let addr = c["address"].as_str().unwrap();
        if addr.starts_with("hcloud_volume.") {
            assert_eq!(c["change"]["actions"].to_string(), "[\"no-op\"]", "{addr} changes");
        }
    }
}
