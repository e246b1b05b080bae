//! The cloud path of `kiln deploy`, judged by real Terraform (/usr/local/bin/terraform, or
//! KILN_TERRAFORM) with the test cloud: the stand-in hcloud provider of tests/tofu/ with
//! `KILN_TEST_CLOUD=DIR`, which boots a lab VM (qemu TCG, debian-12) for each `hcloud_server`
//! it applies, from the server's `user_data`, attaches each `hcloud_volume` as a disk and
//! powers the VM off on destroy (tests/tofu/provider/test_cloud.py says what it proves and
//! what it does not). One VM test at a time: they share two cores.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// Terraform and the stand-ins' CLI configuration (scripts/install-tofu-test-deps).
fn terraform_env(cmd: &mut Command) -> PathBuf {
    let env_file = repo().join(".venv-tofu/env");
    if !env_file.exists() {
        assert!(run(&mut Command::new(repo().join("scripts/install-tofu-test-deps"))).status.success());
    }
    let vars: std::collections::BTreeMap<String, String> =
        read(&env_file).lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    cmd.env("TF_CLI_CONFIG_FILE", &vars["TF_CLI_CONFIG_FILE"]);
    #[allow(clippy::disallowed_methods)] // the test finds Terraform as tests/tofu does
    let tf = std::env::var("KILN_TERRAFORM").unwrap_or_else(|_| vars["TERRAFORM"].clone());
    PathBuf::from(tf)
}

fn image_ready(name: &str) -> bool {
    #[allow(clippy::disallowed_methods)] // the test finds the image cache as the provider does
    let home = PathBuf::from(std::env::var_os("HOME").unwrap());
    let dir = home.join(".cache/kiln/images").join(name);
    if !dir.join("base.raw").is_file() {
        assert!(
            run(Command::new(repo().join("scripts/build-test-image")).arg(name)).status.success(),
            "scripts/build-test-image {name} failed"
        );
    }
    true
}

/// `terraform ARGS` in `dir` with the test cloud in `cloud`.
fn terraform(dir: &Path, cloud: &Path, args: &[&str]) -> Output {
    let mut probe = Command::new("true");
    let tf = terraform_env(&mut probe);
    let mut cmd = Command::new(tf);
    for (k, v) in probe.get_envs() {
        cmd.env(k, v.unwrap());
    }
    cmd.args(args)
        .current_dir(dir)
        .env("KILN_TEST_CLOUD", cloud)
        .env("TF_VAR_hcloud_token", "test-cloud-token")
        .env("TF_IN_AUTOMATION", "1");
    run(&mut cmd)
}

fn ssh(key: &Path, user: &str, address: &str, script: &str) -> Result<String, String> {
    let out = run(Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .args(["-o", "ConnectTimeout=5", "-i"])
        .arg(key)
        .arg(format!("{user}@{address}"))
        .arg(script));
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!("{}{}", text(&out.stdout), text(&out.stderr)))
    }
}

fn wait_ssh(key: &Path, user: &str, address: &str, cloud: &Path, within: Duration) -> String {
    let start = Instant::now();
    loop {
        match ssh(key, user, address, "cloud-init status --wait >/dev/null 2>&1; cloud-init status") {
            Ok(s) => return s,
            Err(e) if start.elapsed() > within => {
                panic!("{address} not reachable over SSH after {} s: {e}\nconsole:\n{}", within.as_secs(), consoles(cloud))
            }
            Err(_) => std::thread::sleep(Duration::from_secs(5)),
        }
    }
}

/// The tail of every test-cloud server's serial console (for a failure message).
fn consoles(cloud: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(cloud.join("servers")).into_iter().flatten().flatten() {
        let log = String::from_utf8_lossy(&std::fs::read(e.path().join("console.log")).unwrap_or_default()).into_owned();
        let lines: Vec<&str> = log.lines().collect();
        out.push_str(&format!("--- {}\n{}\n", e.path().display(), lines[lines.len().saturating_sub(25)..].join("\n")));
    }
    out
}

/// Stops whatever a failed test left running in the test cloud.
struct CloudGuard(PathBuf);

impl Drop for CloudGuard {
    fn drop(&mut self) {
        let _ = Command::new("python3").arg(repo().join("tests/tofu/provider/test_cloud.py")).arg("down").arg(&self.0).status();
    }
}

fn qemu_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.split(") ").nth(1).is_some_and(|r| !r.starts_with('Z')))
}

/// The stand-in itself, judged by real Terraform: applying a root with a network, a server
/// with user_data and a volume attached boots a machine that ran exactly that user_data
/// (its admin key is the only way in), sits on the network with the address of its
/// `network` block, sees the volume as a disk, and answers on the address Terraform
/// recorded; a second plan shows no changes; destroy powers it off and removes it.
#[test]
fn the_test_cloud_boots_a_server_from_its_user_data_and_destroy_removes_it() {
    assert!(image_ready("debian-12"));
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let cloud = t.join("cloud");
    let _guard = CloudGuard(cloud.clone());
    let st =
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "test-cloud", "-f"]).arg(t.join("key")).status().unwrap();
    assert!(st.success());
    let public = read(&t.join("key.pub")).trim().to_string();
    let user_data = format!(
        "#cloud-config\nusers:\n  - name: ops\n    sudo: ALL=(ALL) NOPASSWD:ALL\n    shell: /bin/sh\n    ssh_authorized_keys:\n      - {public}\nwrite_files:\n  - path: /etc/from-user-data\n    content: test-cloud-user-data\n"
    );
    let root = serde_json::json!({
        "terraform": { "required_providers": { "hcloud": { "source": "hetznercloud/hcloud", "version": "1.66.1" } } },
        "variable": { "hcloud_token": { "type": "string", "sensitive": true } },
        "provider": { "hcloud": { "token": "${var.hcloud_token}" } },
        "resource": {
            "hcloud_network": { "lan": { "name": "lan", "ip_range": "10.7.0.0/16" } },
            "hcloud_server": { "one": {
                "name": "one", "image": "debian-12", "server_type": "cx22", "user_data": user_data,
                "network": [{ "network_id": "${hcloud_network.lan.id}", "ip": "10.7.0.9" }],
            }},
            "hcloud_volume": { "data": { "name": "data", "size": 1, "location": "nbg1" } },
            "hcloud_volume_attachment": { "data": {
                "server_id": "${hcloud_server.one.id}", "volume_id": "${hcloud_volume.data.id}", "automount": false,
            }},
        },
        "output": { "ipv4": { "value": "${hcloud_server.one.ipv4_address}" } },
    });
    let dir = t.join("root");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.tf.json"), serde_json::to_vec_pretty(&root).unwrap()).unwrap();
    let init = terraform(&dir, &cloud, &["init", "-input=false", "-no-color"]);
    assert!(init.status.success(), "{}", text(&init.stderr));
    let start = Instant::now();
    let apply = terraform(&dir, &cloud, &["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert!(apply.status.success(), "apply:\n{}{}", text(&apply.stdout), text(&apply.stderr));
    let out = terraform(&dir, &cloud, &["output", "-raw", "ipv4"]);
    let address = text(&out.stdout).trim().to_string();
    assert!(address.starts_with("127.0.0."), "a loopback address of its own: {address:?}");
    let status = wait_ssh(&t.join("key"), "ops", &address, &cloud, Duration::from_secs(420));
    eprintln!("server up after {} s: {}", start.elapsed().as_secs(), status.trim());
    assert!(status.contains("done"), "cloud-init finished cleanly: {status}\n{}", consoles(&cloud));
    let facts = ssh(
        &t.join("key"),
        "ops",
        &address,
        "cat /etc/from-user-data; echo; ip -4 -o addr show | awk '{print $4}'; ls /dev/disk/by-id/; sudo -n cloud-init query v1.instance_id",
    )
    .unwrap();
    assert!(facts.contains("test-cloud-user-data"), "the user_data ran: {facts}");
    assert!(facts.contains("10.7.0.9/16"), "the network block's address, the network's prefix: {facts}");
    assert!(facts.contains("virtio-kiln-data"), "the attached volume: {facts}");
    let state: serde_json::Value = serde_json::from_slice(&terraform(&dir, &cloud, &["show", "-json"]).stdout).unwrap();
    let id = state["values"]["root_module"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "hcloud_server.one")
        .map(|r| r["values"]["id"].as_str().unwrap().to_string())
        .unwrap();
    assert!(facts.contains(&id), "the instance id is the server's id {id}: {facts}");

    let plan = terraform(&dir, &cloud, &["plan", "-detailed-exitcode", "-input=false", "-no-color"]);
    assert_eq!(plan.status.code(), Some(0), "no changes after apply:\n{}", text(&plan.stdout));

    let pid: i32 = read(&cloud.join("servers").join(&id).join("qemu.pid")).trim().parse().unwrap();
    assert!(qemu_alive(pid), "the machine outlived the provider process");
    let destroy = terraform(&dir, &cloud, &["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(destroy.status.success(), "destroy:\n{}{}", text(&destroy.stdout), text(&destroy.stderr));
    assert!(!qemu_alive(pid), "destroy powered the machine off");
    assert!(!cloud.join("servers").join(&id).exists(), "and removed it");
    assert_eq!(std::fs::read_dir(cloud.join("volumes")).unwrap().count(), 0, "the volume's image is gone");
    assert!(ssh(&t.join("key"), "ops", &address, "true").is_err(), "nothing answers on {address} any more");
    eprintln!("whole test {} s", start.elapsed().as_secs());
}
