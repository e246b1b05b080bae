//! `[hosts.X] server_backups`: Terraform, with the hcloud provider's real schema
//! (tests/tofu/), plans postx-hetzner's client servers with Hetzner's automated backups on
//! (seed §4, layer 1) and its monitoring server without; a provider without such backups is an
//! error at the key.

mod common;

use common::terraform::plan;
use common::*;

#[test]
fn terraform_plans_backups_on_the_client_servers() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&repo().join("flake-free-examples/postx-hetzner"), &tmp.path().join("store"), &tmp.path().join("r"));
    let plan = plan(&result, tmp.path());
    let servers: Vec<(String, Option<bool>)> = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "hcloud_server")
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["change"]["after"]["backups"].as_bool()))
        .collect();
    assert!(servers.iter().filter(|(n, _)| n.starts_with("client")).count() >= 2, "{servers:?}");
    for (name, backups) in &servers {
        let want = name.starts_with("client");
        assert_eq!(backups.unwrap_or(false), want, "{name}: backups in Terraform's plan");
    }
}

#[test]
fn a_provider_without_server_backups_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    copy_tree(&repo().join("flake-free-examples/civic-scaleway"), &sys);
    let hosts = std::fs::read_dir(&sys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("\n[hosts.")))
        .expect("a file with hosts");
    let toml = read(&hosts);
    let at = toml.find("\n[hosts.").unwrap();
    let end = at + 1 + toml[at + 1..].find('\n').unwrap();
    std::fs::write(&hosts, format!("{}\nserver_backups = true{}", &toml[..end], &toml[end..])).unwrap();
    let o = run(kiln().arg("check").arg(&sys));
    assert!(!o.status.success(), "kiln accepted server_backups on Scaleway");
    let err = text(&o.stderr);
    assert!(err.contains("E0015") && err.contains("has no automated server backups"), "{err}");
}
