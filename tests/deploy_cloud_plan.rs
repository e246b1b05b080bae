//! The cloud path of `kiln deploy` without VMs, judged by real Terraform (/usr/local/bin/terraform,
//! or KILN_TERRAFORM) with the plain stand-in providers of tests/tofu/: the plan shown and
//! confirmed, waves as targeted applies, the DNS cut-over after the gates, the data-loss guard,
//! the bastion order, `--from`, `secrets push` before any deploy, stage 0's store, and the
//! enrolment part and the old server's stop script under their consumers (cloud-init, shellcheck,
//! dash, systemd-analyze). The tests that boot the test cloud's VMs are in tests/deploy_cloud.rs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::cloud::*;
use common::*;

/// No OpenTofu program: the deploy stops before anything is applied or contacted, naming the
/// step and what to install.
#[test]
fn no_opentofu_program_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = deploy_without_vms(tmp.path(), &[("PATH", "/usr/bin:/bin")]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("step apply: neither `tofu` nor `terraform` is on PATH"), "{err}");
    assert!(!tmp.path().join("state/terraform.tfstate").exists());
}

/// A deploy never destroys data on its own: a host renamed (its volume would go with the old
/// name) stops at the plan, exit 2, naming the volume, and Terraform's state still holds it.
/// No VM: the state is made by applying the first build's working copy with the plain
/// stand-in provider, and the guard acts before anything is contacted.
#[test]
fn a_plan_that_destroys_a_volume_is_not_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let sys = t.join("sys");
    copy_tree(&repo().join("tests/fixtures/lab-network"), &sys);
    let toml = read(&sys.join("system.toml")).replace("[hosts.app]", "[hosts.app]\ndisks = { data = \"10GiB\" }");
    std::fs::write(sys.join("system.toml"), &toml).unwrap();
    let kiln_with = |args: &[&str]| {
        let mut cmd = kiln();
        let tf = terraform_env(&mut cmd);
        cmd.env("TF_VAR_hcloud_token", "test-cloud-token").env("TMPDIR", t);
        cmd.arg("--modules").arg(repo().join("tests/fixtures/lab-network/modules"));
        cmd.arg("--identity").arg(repo().join("tests/fixtures/keys/examples.agekey"));
        cmd.args(args).arg(&sys).arg("--state").arg(t.join("state"));
        (cmd, tf)
    };
    // The first build's working copy, applied by Terraform with the plain stand-in.
    let (mut plan, tf) = kiln_with(&["plan"]);
    plan.arg(format!("--tofu={}", tf.display()));
    let out = run(&mut plan);
    assert_eq!(out.status.code(), Some(2), "{}{}", text(&out.stdout), text(&out.stderr));
    let mut apply = Command::new(&tf);
    let mut probe = Command::new("true");
    terraform_env(&mut probe);
    for (k, v) in probe.get_envs() {
        apply.env(k, v.unwrap());
    }
    let applied = run(apply
        .args(["apply", "-auto-approve", "-input=false", "-no-color"])
        .current_dir(t.join("state/tofu"))
        .env("TF_VAR_hcloud_token", "test-cloud-token"));
    assert!(applied.status.success(), "{}{}", text(&applied.stdout), text(&applied.stderr));
    let state_list = |label: &str| {
        let mut list = Command::new(&tf);
        for (k, v) in probe.get_envs() {
            list.env(k, v.unwrap());
        }
        let out = run(list.args(["state", "list"]).current_dir(t.join("state/tofu")));
        assert!(out.status.success(), "{label}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    assert!(state_list("applied").lines().any(|l| l == "hcloud_volume.app_data"));

    // The host renamed: its volume would be destroyed with the old name.
    std::fs::write(sys.join("system.toml"), toml.replace("[hosts.app]", "[hosts.app2]").replace("host = \"app\"", "host = \"app2\""))
        .unwrap();
    let (mut deploy, _) = kiln_with(&["deploy"]);
    deploy.arg("--store").arg(t.join("store")).arg("--yes");
    let out = run(&mut deploy);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("step plan: the plan destroys or replaces resources that hold data: hcloud_volume.app_data"), "{err}");
    assert!(err.contains("nothing was applied") && err.contains("state rm ADDRESS"), "{err}");
    assert!(!err.contains("test-cloud-token"));
    let after = state_list("after");
    assert!(after.lines().any(|l| l == "hcloud_volume.app_data"), "the volume is still managed:\n{after}");
    assert!(!after.lines().any(|l| l.starts_with("hcloud_server.app2")), "nothing was created:\n{after}");
}

/// The enrolment part as its consumers read it: cloud-init's own multipart splitter (Debian's
/// cloud-init 22.4 from .test-tools) finds the host's part and the enrolment part, and its
/// merger appends the enrolment `bootcmd` to the host's; each cloud-config part passes the
/// cloud-init oracle (22.4's schema and upstream's strict one); the boot command and the
/// publisher script pass shellcheck and `dash -n`; the publisher unit passes
/// `systemd-analyze verify`. No VM.
#[test]
fn the_enrolment_part_passes_cloud_init_shellcheck_dash_and_systemd() {
    use kiln::deploy::enrol;
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let token = "ab".repeat(32);
    let host = "#cloud-config\nbootcmd:\n  - [sh, -c, echo host]\nruncmd:\n  - [sh, -c, echo provisioner]\n";
    let ud = enrol::with_part(host, &enrol::enrol_part("db", &token)).unwrap();
    std::fs::write(t.join("user-data"), &ud).unwrap();
    let py = r#"
import json, sys
from cloudinit import user_data, util, helpers
from cloudinit.handlers.cloud_config import CloudConfigPartHandler
msg = user_data.UserDataProcessor({}).process(util.load_file(sys.argv[1]))
parts, handler = [], CloudConfigPartHandler(helpers.Paths({"cloud_dir": sys.argv[2]}))
handler.file_names = ["-"]
handler.cloud_buf = {}
for i, p in enumerate(msg.walk()):
    if p.get_content_maintype() == "multipart":
        continue
    body = p.get_payload(decode=True).decode()
    parts.append([p.get_content_type(), p.get_filename()])
    with open(sys.argv[2] + "/part-%d" % i, "w") as f:
        f.write(body)
    handler._merge_part(body, p)
merged = handler.cloud_buf
print(json.dumps({"parts": parts, "bootcmd": merged.get("bootcmd"), "runcmd": merged.get("runcmd")}))
"#;
    let out = run(Command::new("/usr/bin/python3")
        .env("PYTHONPATH", repo().join(".test-tools/cloud-init/usr/lib/python3/dist-packages"))
        .arg("-c")
        .arg(py)
        .arg(t.join("user-data"))
        .arg(t));
    assert!(out.status.success(), "cloud-init's UserDataProcessor: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["parts"], serde_json::json!([["text/cloud-config", "host"], ["text/cloud-config", "kiln-enrol.cfg"]]), "{v}");
    let bootcmd = v["bootcmd"].as_array().unwrap();
    assert_eq!(bootcmd.len(), 2, "the host's bootcmd and the enrolment's, appended: {v}");
    assert_eq!(bootcmd[0], serde_json::json!(["sh", "-c", "echo host"]));
    assert_eq!(v["runcmd"], serde_json::json!([["sh", "-c", "echo provisioner"]]), "the host's runcmd kept");
    let enrol_cmd: Vec<String> = bootcmd[1].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    assert_eq!(enrol_cmd[..2], ["sh", "-c"]);
    assert_eq!(enrol_cmd[2], enrol::boot_command());
    assert_eq!(enrol_cmd[4], enrol::publish_script("db", &token));
    assert_eq!(enrol_cmd[5], enrol::publish_unit());
    for i in [1, 2] {
        let f = t.join(format!("part-{i}"));
        let named = t.join(format!("cloud-init-part-{i}.yaml"));
        std::fs::rename(&f, &named).unwrap();
        oracle("cloud-init", &named).unwrap_or_else(|e| panic!("part {i}: {e}"));
    }
    for (name, body) in [("boot", &enrol_cmd[2]), ("publish", &enrol_cmd[4])] {
        let f = t.join(format!("sh-{name}.sh"));
        std::fs::write(&f, format!("#!/bin/sh\n{body}")).unwrap();
        oracle("sh", &f).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let unit = t.join(enrol::UNIT_NAME);
    std::fs::write(&unit, &enrol_cmd[5]).unwrap();
    oracle("systemd", &unit).unwrap_or_else(|e| panic!("the publisher unit: {e}"));
}

/// A system whose one host carries a config file too big for Hetzner's 32 KiB user-data, so it
/// boots through stage 0 from `store`: (system directory, modules directory).
fn stage0_system(t: &Path, store: &str) -> (PathBuf, PathBuf) {
    let mods = t.join("mods");
    std::fs::create_dir_all(mods.join("big")).unwrap();
    std::fs::write(
        mods.join("big/module.toml"),
        "[module]\nname = \"big\"\nversion = \"1.0.0\"\nsummary = \"a big config file\"\nkind = \"container\"\n\n[container]\nimage = \"docker.io/library/nginx:1.27.3\"\n\n[files.\"big.conf\"]\ntemplate = \"big.conf.j2\"\ntarget = \"/etc/big.conf\"\n",
    )
    .unwrap();
    std::fs::write(
        mods.join("big/big.conf.j2"),
        "# a long configuration line that takes space in the user-data of this host\n".repeat(600),
    )
    .unwrap();
    let sys = t.join("sys");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(
        sys.join("system.toml"),
        format!("[system]\nname = \"big\"\nstore = \"{store}\"\n\n[providers.hetzner]\nkind = \"hetzner\"\n\n[hosts.fat]\nprovider = \"hetzner\"\nimage = \"debian-12\"\npublic = true\n\n[services.big]\nmodule = \"big\"\nhost = \"fat\"\n"),
    )
    .unwrap();
    (sys, mods)
}

/// A new server that boots through stage 0 fetches its bundle from `[system] store`: deploy
/// pushes the build there before OpenTofu creates the server and fetches the bundle back as the
/// host's loader will (the URL in its user-data, no credentials, checked by sha256). The store is
/// scripts/test-servers' nginx WebDAV store: `/store/` takes writes with basic auth and serves
/// anyone. A store that serves other bytes under the bundle's name, and one that does not
/// answer, stop the deploy before any apply (exit 2). Real Terraform, the plain stand-in
/// provider, no VM (the server then never proves its key: `--boot-timeout 1`, exit 3).
#[test]
fn a_stage_zero_hosts_bundle_is_published_before_its_server_is_created() {
    let srv = common::servers::Servers::start();
    let deploy = |store: &str, env: &[(&str, String)]| {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let (sys, mods) = stage0_system(t, store);
        for (k, v) in env {
            // SAFETY: set before kiln is spawned; this test reads them back through the child only.
            unsafe { std::env::set_var(k, v) };
        }
        let (out, logged) = deploy_logged_with(t, &sys, &mods, &["--yes", "--boot-timeout", "1"]);
        for (k, _) in env {
            unsafe { std::env::remove_var(k) };
        }
        let entry = std::fs::read_dir(t.join("store")).ok().into_iter().flatten().filter_map(Result::ok).map(|e| e.path());
        let bundle = entry
            .into_iter()
            .find(|p| p.join("hosts/fat").is_dir())
            .map(|e| (read(&e.join("hosts/fat/user-data")), std::fs::read(e.join("hosts/fat/bundle.tar.gz")).unwrap()));
        (out, logged, bundle, tmp)
    };
    let url = srv.s("http", "url");
    let basic = [("KILN_STORE_USER", srv.s("http", "user")), ("KILN_STORE_PASSWORD", srv.s("http", "password"))];
    let (out, logged, bundle, _t) = deploy(&url, &basic);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "the server (no VM behind it) never proves its key:\n{stderr}");
    assert!(stderr.contains(&format!("publishing the build to {url} (stage 0 of fat)")), "{stderr}");
    assert!(logged.iter().any(|l| l.starts_with("apply")), "{logged:?}");
    let (ud, bytes) = bundle.expect("the build's store entry");
    use sha2::Digest;
    let sum = kiln::render::hex(&sha2::Sha256::digest(&bytes));
    assert!(ud.contains(&format!("{url}/objects/{sum}")), "the loader fetches the pushed bundle:\n{ud}");
    let served = run(Command::new("curl").args(["-sSf", "-o", "-"]).arg(format!("{url}/objects/{sum}")));
    assert!(served.status.success() && served.stdout == bytes, "the store serves the bundle to anyone");

    // A store whose object under the bundle's name holds other bytes of the same size (a damaged
    // copy: the push finds it there and skips it): the host would fetch a bundle its loader refuses.
    std::fs::write(std::path::Path::new(&srv.s("http", "root")).join("objects").join(&sum), vec![b'x'; bytes.len()]).unwrap();
    let (out, logged, _, _t) = deploy(&url, &basic);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("host `fat` boots through stage 0 from") && stderr.contains("serves other bytes"), "{stderr}");
    assert!(stderr.contains("nothing was applied") && !logged.iter().any(|l| l.starts_with("apply")), "{stderr}\n{logged:?}");

    // A store that does not answer.
    let (out, logged, _, _t) = deploy("http://127.0.0.1:9/kiln", &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("could not be pushed to the store http://127.0.0.1:9/kiln"), "{stderr}");
    assert!(!logged.iter().any(|l| l.starts_with("apply")), "{logged:?}");
}

/// The script that stops a stateful host's old server before its replacement passes shellcheck
/// and `dash -n` (it runs for real in the end-to-end test's replacement of `db`). No VM.
#[test]
fn the_old_server_stop_script_passes_shellcheck_and_dash() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("stop.sh");
    let units = ["hello.service".to_string(), "notes.service".to_string()];
    std::fs::write(&f, format!("#!/bin/sh\n{}", kiln::deploy::replace::stop_script(&units))).unwrap();
    oracle("sh", &f).unwrap_or_else(|e| panic!("the stop script: {e}"));
}

/// `kiln deploy SYS ARGS` with the plain stand-in provider (no VM), stdin not a terminal, and
/// `--tofu` a wrapper that logs each Terraform command line to `t/tofu.log` before running it.
fn deploy_logged(t: &Path, sys: &Path, args: &[&str]) -> (Output, Vec<String>) {
    deploy_logged_with(t, sys, &repo().join("tests/fixtures/lab-network/modules"), args)
}

/// [`deploy_logged`] with the modules of `modules`.
fn deploy_logged_with(t: &Path, sys: &Path, modules: &Path, args: &[&str]) -> (Output, Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    let mut cmd = kiln();
    let tf = terraform_env(&mut cmd);
    let wrapper = t.join("tofu-logged");
    let log = t.join("tofu.log");
    std::fs::write(&wrapper, format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >>'{}'\nexec '{}' \"$@\"\n", log.display(), tf.display())).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    cmd.env("TF_VAR_hcloud_token", "test-cloud-token").env("TMPDIR", t).stdin(std::process::Stdio::null());
    cmd.arg("--modules").arg(modules);
    cmd.arg("--identity").arg(repo().join("tests/fixtures/keys/examples.agekey"));
    cmd.arg("deploy").arg(sys).arg("--store").arg(t.join("store")).arg("--state").arg(t.join("state"));
    cmd.arg("--tofu").arg(&wrapper).args(args);
    let out = run(&mut cmd);
    let logged = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect();
    (out, logged)
}

/// The cloud path shows its plan — OpenTofu's action on each host's server beside kiln's steps
/// after it, per wave — and, with no terminal to confirm on and no `--yes`, applies nothing:
/// exit 4, no server in Terraform's state (Terraform ran `init`, `plan` and `show` only), no
/// working copy put in place. Real Terraform, the plain stand-in provider, no VM.
#[test]
fn the_cloud_plan_is_shown_and_without_a_terminal_or_yes_nothing_is_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let sys = fixture_with(t, |s| s);
    let (out, logged) = deploy_logged(t, &sys, &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(stdout.contains("wave 1 `the rest`:"), "{stdout}");
    let edge = stdout.lines().find(|l| l.trim_start().starts_with("edge ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(edge.contains("create hcloud_server.edge") && edge.contains("then enrol, secrets"), "{edge}");
    assert!(stdout.contains("OpenTofu creates ") && stdout.contains("hcloud_network.private"), "{stdout}");
    assert!(stderr.contains("no terminal to confirm it on; pass --yes"), "{stderr}");
    let verbs: Vec<&str> = logged.iter().map(|l| l.split(' ').next().unwrap_or("")).collect();
    assert_eq!(verbs, ["init", "plan", "show"], "{logged:?}");
    assert!(!t.join("state/tofu").exists(), "no working copy put in place");
    assert!(!t.join("state/terraform.tfstate").exists() && !t.join("state/tofu/terraform.tfstate").exists());

    // The same as JSON: the plan line, and a summary that says it was not confirmed.
    let (out, _) = deploy_logged(t, &sys, &["--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    let plan = lines.iter().find_map(|v| v.get("plan")).unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(plan["rollback_of"], serde_json::Value::Null, "{plan}");
    assert!(plan.get("rollback_of").is_some(), "{plan}");
    assert_eq!(plan["waves"][0]["hosts"][0]["host"], "app", "{plan}");
    assert_eq!(plan["waves"][0]["hosts"][0]["tofu"], "create", "{plan}");
    assert_eq!(plan["waves"][0]["hosts"][1]["server"], "hcloud_server.edge", "{plan}");
    assert!(plan["tofu"]["create"].as_array().unwrap().contains(&serde_json::json!("hcloud_server.app")), "{plan}");
    let summary = lines.iter().find_map(|v| v.get("summary")).unwrap();
    assert_eq!((summary["ok"].clone(), summary["confirmed"].clone()), (serde_json::json!(false), serde_json::json!(false)));
    assert_eq!(summary["untouched"], serde_json::json!(["app", "edge"]));
}

/// `[deploy] order` waves on the cloud path: one apply per wave, each targeting that wave's
/// servers (and what depends on them only), in the declared order; the canary's failure
/// (here: a server with no VM behind it never proves its host key, `--boot-timeout 1`) stops
/// the rollout before the next wave's apply, so the production server is never created.
/// Real Terraform, the plain stand-in provider, no VM.
#[test]
fn waves_apply_in_order_and_a_failed_canary_stops_before_the_next_waves_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let sys = fixture_with(t, |s| {
        s.replace("[hosts.edge]\n", "[hosts.edge]\ngroup = \"canary\"\n")
            .replace("[hosts.app]\n", "[hosts.app]\ngroup = \"production\"\n")
            .replace("[networks.private]", "[deploy]\norder = [\"canary\", \"production\"]\n\n[networks.private]")
    });
    let (out, logged) = deploy_logged(t, &sys, &["--yes", "--json", "--boot-timeout", "1"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{}\n{stderr}", text(&out.stdout));
    let applies: Vec<&String> = logged.iter().filter(|l| l.starts_with("apply")).collect();
    assert_eq!(applies.len(), 1, "one wave applied: {logged:?}");
    assert!(applies[0].contains("-target=hcloud_server.edge") && !applies[0].contains("hcloud_server.app"), "{}", applies[0]);
    let lines = json_lines(&out);
    let waves: Vec<&serde_json::Value> = lines.iter().filter(|v| v.get("wave").is_some() && v.get("targets").is_some()).collect();
    assert_eq!(waves.len(), 1, "{lines:?}");
    assert_eq!(waves[0]["wave"], "canary");
    let summary = lines.iter().find_map(|v| v.get("summary")).unwrap();
    assert_eq!(summary["stopped_at"], "canary", "{summary}");
    assert_eq!(summary["untouched"], serde_json::json!(["app"]), "{summary}");
    assert_eq!(summary["failed"][0]["host"], "edge", "{summary}");
    assert_eq!(summary["failed"][0]["step"], "connect", "{summary}");
    assert!(stderr.contains("not touched (the rollout stopped at wave `canary`): `app`"), "{stderr}");
    let state = state_list(&t.join("state/tofu"));
    assert!(state.lines().any(|l| l == "hcloud_server.edge"), "{state}");
    assert!(!state.lines().any(|l| l == "hcloud_server.app"), "production's server was never created:\n{state}");
    assert!(!t.join("state/generations").exists() || std::fs::read_dir(t.join("state/generations")).unwrap().next().is_none());
}

/// The DNS cut-over waits for the health gate: with a zone kiln manages, the records pointing
/// at the canary's new server are left out of the wave's first apply and applied only once its
/// hosts are healthy — so a canary that never passes (no VM behind its server, `--boot-timeout
/// 1`) leaves DNS as it was: Terraform never targeted the records and the state has none, while
/// the zone itself (it depends on no server) was created. The plan names them. Real Terraform,
/// the plain stand-in provider, no VM.
#[test]
fn dns_records_wait_for_the_health_gate_and_a_failed_canary_leaves_dns_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let sys = fixture_with(t, |s| {
        s.replace("[hosts.edge]\n", "[hosts.edge]\ngroup = \"canary\"\n")
            .replace("[hosts.app]\n", "[hosts.app]\ngroup = \"production\"\n")
            .replace(
                "[networks.private]",
                "[deploy]\norder = [\"canary\", \"production\"]\n\n[dns.\"hello.test\"]\nprovider = \"hetzner\"\n\n[networks.private]",
            )
    });
    let (out, logged) = deploy_logged(t, &sys, &["--yes", "--json", "--boot-timeout", "1"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{}\n{stderr}", text(&out.stdout));
    let lines = json_lines(&out);
    let plan = lines.iter().find_map(|v| v.get("plan")).unwrap_or_else(|| panic!("{lines:?}"));
    let records: Vec<String> = plan["tofu"]["create"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .filter(|a| a.starts_with("hcloud_zone_rrset."))
        .map(str::to_string)
        .collect();
    assert!(!records.is_empty(), "the plan creates the route's records: {plan}");
    let applies: Vec<&String> = logged.iter().filter(|l| l.starts_with("apply")).collect();
    assert_eq!(applies.len(), 1, "the canary's first apply only: {logged:?}");
    assert!(applies[0].contains("-target=hcloud_server.edge") && applies[0].contains("-target=hcloud_zone.hello_test"), "{}", applies[0]);
    assert!(!applies[0].contains("hcloud_zone_rrset"), "records wait for the health gate: {}", applies[0]);
    let cut: Vec<&serde_json::Value> = lines.iter().filter(|v| v["step"] == "cutover").collect();
    assert!(cut.is_empty(), "no cut-over after a failed gate: {cut:?}");
    let state = state_list(&t.join("state/tofu"));
    assert!(state.lines().any(|l| l == "hcloud_zone.hello_test"), "{state}");
    assert!(!state.lines().any(|l| l.starts_with("hcloud_zone_rrset.")), "no record retargeted:\n{state}");
}

/// A private host reached through a bastion whose server is new and comes in a later wave
/// cannot be deployed in that order: refused at the plan (exit 2), nothing applied.
#[test]
fn a_private_host_in_a_wave_before_its_new_bastion_is_refused_at_the_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let sys = fixture_with(t, |s| {
        s.replace("[hosts.edge]\n", "[hosts.edge]\ngroup = \"production\"\n")
            .replace("[hosts.app]\n", "[hosts.app]\ngroup = \"canary\"\n")
            .replace("[networks.private]", "[deploy]\norder = [\"canary\", \"production\"]\n\n[networks.private]")
    });
    let (out, logged) = deploy_logged(t, &sys, &["--yes"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("step plan: host `app` (wave `canary`) is reached through the bastion `edge`, whose server is new and comes in a later wave (`production`)"),
        "{stderr}"
    );
    assert!(!logged.iter().any(|l| l.starts_with("apply")), "{logged:?}");
}

/// `--from RESULT` takes the cloud path too (it used to refuse cloud hosts): the OpenTofu root
/// Terraform plans is the stored build's (`tofu/` of the entry), shown as that build, and
/// without `--yes` or a terminal nothing is applied (exit 4). No VM.
#[test]
fn deploy_from_a_stored_build_plans_that_builds_root() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let sys = fixture_with(t, |s| s);
    let link = build_with_modules(&repo().join("tests/fixtures/lab-network/modules"), &sys, &t.join("store"), &t.join("result"));
    let hash = manifest(&link)["hash"].as_str().unwrap().to_string();
    let (out, logged) = deploy_logged(t, &sys, &["--json", "--from", link.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let plan = json_lines(&out).into_iter().find_map(|v| v.get("plan").cloned()).unwrap();
    assert_eq!(plan["hash"], hash.as_str(), "{plan}");
    assert!(plan["tofu"]["create"].as_array().unwrap().contains(&serde_json::json!("hcloud_server.edge")), "{plan}");
    assert_eq!(logged.iter().map(|l| l.split(' ').next().unwrap_or("")).collect::<Vec<_>>(), ["init", "plan", "show"]);
}

/// `kiln secrets push` of a cloud host takes the cloud path (it used to refuse cloud hosts):
/// before the system was ever deployed there is no OpenTofu state to find the server in, and
/// the error says so (exit 2) without contacting anything.
#[test]
fn secrets_push_to_a_cloud_host_before_any_deploy_says_to_deploy_first() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mut cmd = kiln();
    terraform_env(&mut cmd);
    cmd.env("TMPDIR", t).stdin(std::process::Stdio::null());
    cmd.arg("--modules").arg(repo().join("tests/fixtures/lab-network/modules"));
    cmd.arg("--identity").arg(repo().join("tests/fixtures/keys/examples.agekey"));
    cmd.args(["secrets", "push", "app"]).arg(repo().join("tests/fixtures/lab-network"));
    cmd.arg("--store").arg(t.join("store")).arg("--state").arg(t.join("state"));
    let out = run(&mut cmd);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("step address: no OpenTofu working copy in") && err.contains("deploy the system first"), "{err}");
}
