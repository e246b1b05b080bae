//! Two instances of one module on a host (issue 16): two Valkeys on one host and two
//! redis_exporters on another. kiln publishes the second Valkey on the next free host port (the
//! container keeps 6379), says so in a note with the line that pins it, and its client on the
//! other host dials that port; the firewall opens it to that client. The real `docker-compose
//! config` reads the published ports and the client's address, `dash -n` the provisioner with
//! its ufw rules. Pinning the port (`ports`) builds the same artifacts; two services pinning one
//! port is `port-conflict`, whose help names a free one.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn system(dir: &Path, valkey_a: &str, valkey_b: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        r#"{}
[networks.lan]
cidr = "10.0.0.0/24"

[hosts.cache]
provider = "hetzner"
image = "debian-12"
public = true
networks = {{ lan = "10.0.0.2" }}

[hosts.app]
provider = "hetzner"
image = "debian-12"
public = true
networks = {{ lan = "10.0.0.3" }}

[secrets.va]
file = "secrets.sops.yaml"
[secrets.vb]
file = "secrets.sops.yaml"

[services.valkey-a]
module = "valkey"
host = "cache"
secrets = {{ password = "va" }}
{valkey_a}

[services.valkey-b]
module = "valkey"
host = "cache"
secrets = {{ password = "vb" }}
{valkey_b}

[services.exp-a]
module = "redis-exporter"
host = "app"
secrets = {{ password = "va" }}
connects = ["valkey-a"]

[services.exp-b]
module = "redis-exporter"
host = "app"
secrets = {{ password = "vb" }}
connects = ["valkey-b"]
"#,
        preamble("instances")
    );
    std::fs::write(dir.join("system.toml"), text).unwrap();
    dir.to_path_buf()
}

/// `(published, target)` of every port a Compose service publishes, as docker-compose reads it.
fn ports(compose: &serde_json::Value, service: &str) -> Vec<(String, u64)> {
    compose["services"][service]["ports"]
        .as_array()
        .map(|v| v.iter().map(|p| (p["published"].as_str().unwrap().to_string(), p["target"].as_u64().unwrap())).collect())
        .unwrap_or_default()
}

#[test]
fn a_second_instance_gets_its_own_host_port_and_its_client_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(&tmp.path().join("sys"), "", "");
    let out = run(kiln().arg("check").arg(&sys));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("note[port-assigned]: `valkey-b` publishes endpoint `valkey` on host port 6380 (6379 is taken on host `cache`)"),
        "{err}"
    );
    assert!(err.contains("pin it: `ports = { valkey = 6380 }`"), "{err}");
    // Only published ports can collide: the exporters' metrics are scraped by nobody.
    assert!(!err.contains("`exp-b` publishes"), "{err}");

    let result = build(&sys, &tmp.path().join("store"), &tmp.path().join("result"));
    let cache = compose_config(&result.join("hosts/cache/compose.yaml"));
    assert_eq!(ports(&cache, "valkey-a"), vec![("6379".to_string(), 6379)]);
    assert_eq!(ports(&cache, "valkey-b"), vec![("6380".to_string(), 6379)]);
    let app = compose_config(&result.join("hosts/app/compose.yaml"));
    assert_eq!(app["services"]["exp-a"]["environment"]["REDIS_ADDR"], "redis://10.0.0.2:6379");
    assert_eq!(app["services"]["exp-b"]["environment"]["REDIS_ADDR"], "redis://10.0.0.2:6380");

    let provision = result.join("hosts/cache/provision.sh");
    oracle("sh", &provision).unwrap();
    let p = read(&provision);
    assert!(p.contains("\"$@\" allow proto tcp from 10.0.0.3/32 to any port 6380 comment 'exp-b on app connects to valkey-b'"), "{p}");
    // forwarded packets are matched after Docker's DNAT, on the container's port
    assert!(
        p.contains("\"$@\" route allow proto tcp from 10.0.0.3/32 to any port 6379 comment 'exp-b on app connects to valkey-b'"),
        "{p}"
    );

    // Pinning the assigned port changes nothing but the note.
    let pinned = system(&tmp.path().join("pinned"), "", "ports = { valkey = 6380 }");
    let out = run(kiln().arg("check").arg(&pinned));
    assert!(!text(&out.stderr).contains("port-assigned"), "{}", text(&out.stderr));
    let again = build(&pinned, &tmp.path().join("store"), &tmp.path().join("pinned-result"));
    for f in ["hosts/cache/compose.yaml", "hosts/app/compose.yaml", "hosts/cache/provision.sh"] {
        assert_eq!(read(&result.join(f)), read(&again.join(f)), "{f}");
    }
}

/// The host's sshd port is never a moved endpoint's: with `ssh_port = 6380` on `cache`, the
/// second Valkey goes to 6381.
#[test]
fn a_moved_endpoint_skips_the_hosts_ssh_port() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(&tmp.path().join("sys"), "", "");
    let toml = read(&sys.join("system.toml"));
    let cache = "[hosts.cache]\nprovider = \"hetzner\"\n";
    assert!(toml.contains(cache));
    std::fs::write(sys.join("system.toml"), toml.replace(cache, &format!("{cache}ssh_port = 6380\n"))).unwrap();
    let out = run(kiln().arg("check").arg(&sys));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("`valkey-b` publishes endpoint `valkey` on host port 6381"), "{err}");
}

#[test]
fn two_services_pinning_one_port_is_an_error_naming_a_free_port() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(&tmp.path().join("sys"), "ports = { valkey = 6379 }", "ports = { valkey = 6379 }");
    let out = run(kiln().arg("check").arg(&sys));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error[port-conflict]: services `valkey-a` and `valkey-b` both use port 6379/tcp on host `cache`"), "{err}");
    assert!(err.contains("system.toml:"), "{err}");
    assert!(err.contains("`[services.valkey-b] ports = { valkey = 6380 }`"), "{err}");

    // The help, applied, builds.
    let fixed = system(&tmp.path().join("fixed"), "ports = { valkey = 6379 }", "ports = { valkey = 6380 }");
    let out = run(kiln().arg("check").arg(&fixed));
    assert!(out.status.success(), "{}", text(&out.stderr));
}
