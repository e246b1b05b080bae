//! The cloud path of `kiln deploy` under test: Terraform and the stand-in providers' CLI
//! configuration, the lab-network fixture with an edit, a deploy that boots no VM, and the
//! JSON lines of kiln's output (tests/deploy_cloud.rs, tests/deploy_cloud_plan.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{copy_tree, kiln, read, repo, run, text};

/// Terraform and the stand-ins' CLI configuration (scripts/install-tofu-test-deps).
pub fn terraform_env(cmd: &mut Command) -> PathBuf {
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

/// The lab-network fixture copied to `t/sys`, with `edit` applied to its system.toml.
pub fn fixture_with(t: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let sys = t.join("sys");
    copy_tree(&repo().join("tests/fixtures/lab-network"), &sys);
    let toml = edit(read(&sys.join("system.toml")));
    std::fs::write(sys.join("system.toml"), toml).unwrap();
    sys
}

pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// `kiln deploy` of the lab-network fixture (cloud hosts) with `envs`; no VM is booted.
pub fn deploy_without_vms(t: &Path, envs: &[(&str, &str)]) -> Output {
    let mut cmd = kiln();
    terraform_env(&mut cmd);
    cmd.env("TF_VAR_hcloud_token", "test-cloud-token").env("TMPDIR", t);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.arg("--modules").arg(repo().join("tests/fixtures/lab-network/modules"));
    cmd.arg("--identity").arg(repo().join("tests/fixtures/keys/examples.agekey"));
    cmd.arg("deploy").arg(repo().join("tests/fixtures/lab-network"));
    cmd.arg("--store").arg(t.join("store")).arg("--state").arg(t.join("state")).arg("--yes");
    run(&mut cmd)
}

/// `terraform state list` in `dir` (the addresses its state holds, one a line).
pub fn state_list(dir: &Path) -> String {
    let mut env = Command::new("true");
    let tf = terraform_env(&mut env);
    let mut cmd = Command::new(tf);
    for (k, v) in env.get_envs() {
        cmd.env(k, v.unwrap());
    }
    text(&run(cmd.args(["state", "list"]).current_dir(dir)).stdout)
}
