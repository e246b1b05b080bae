//! The cloud path of `kiln deploy`, judged by real Terraform (/usr/local/bin/terraform, or
//! KILN_TERRAFORM) with the test cloud: the stand-in hcloud provider of tests/tofu/ with
//! `KILN_TEST_CLOUD=DIR`, which boots a lab VM (qemu TCG, debian-12) for each `hcloud_server`
//! it applies, from the server's `user_data`, attaches each `hcloud_volume` as a disk and
//! powers the VM off on destroy (tests/tofu/provider/test_cloud.py says what it proves and
//! what it does not). Every server boots under TCG (minutes each, two shared cores), so the
//! scenarios that need servers run in one test on one fleet, one after another, and the
//! stand-in's own contract (a crashed qemu started again, destroy) is checked on that fleet.

mod common;
#[path = "common/vm.rs"]
mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::cloud::*;
use common::*;

/// One VM test at a time (two shared cores): the VM tests hold this.
static ONE_VM_TEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

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

/// The tail of every test-cloud server's serial console (for a failure message).
fn consoles(cloud: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(cloud.join("servers")).into_iter().flatten().flatten() {
        let log = String::from_utf8_lossy(&std::fs::read(e.path().join("console.log")).unwrap_or_default()).into_owned();
        let lines: Vec<&str> = log.lines().collect();
        out.push_str(&format!("--- {}\n{}\n", e.path().display(), lines[lines.len().saturating_sub(25)..].join("\n")));
        let err = String::from_utf8_lossy(&std::fs::read(e.path().join("qemu.err")).unwrap_or_default()).into_owned();
        if !err.trim().is_empty() {
            out.push_str(&format!("qemu.err: {}\n", err.trim()));
        }
    }
    out.push_str(&format!("crashes.log: {}\n", String::from_utf8_lossy(&std::fs::read(cloud.join("crashes.log")).unwrap_or_default())));
    out
}

/// Stops whatever a failed test left running in the test cloud.
struct CloudGuard(PathBuf);

impl Drop for CloudGuard {
    fn drop(&mut self) {
        let _ = Command::new("python3").arg(repo().join("tests/tofu/provider/test_cloud.py")).arg("down").arg(&self.0).status();
    }
}

/// The start of every test that boots the test cloud's VMs: the lock that runs them one at a
/// time, the base image checked, the cloud's directory `t/cloud` (its machines removed when the
/// guard drops) and an admin key pair at `t/key`, whose public half is returned.
fn vm_test_start(t: &Path) -> (std::sync::MutexGuard<'static, ()>, CloudGuard, String) {
    let one = ONE_VM_TEST.lock().unwrap_or_else(|e| e.into_inner());
    assert!(image_ready("debian-12"));
    let guard = CloudGuard(t.join("cloud"));
    let public = sshd::keygen(&t.join("key"));
    (one, guard, public)
}

fn qemu_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.split(") ").nth(1).is_some_and(|r| !r.starts_with('Z')))
}

/// The secret value of the lab-network fixture.
fn hello_token(sys: &Path) -> String {
    let ids = kiln::sops::load_identities(&read(&examples_identity())).unwrap();
    let sops = read(&sys.join("secrets.sops.yaml"));
    kiln::sops::decrypt(&sops, kiln::sops::Format::Yaml, &ids).unwrap().remove("hello_token").unwrap()
}

/// ssh to `host` with the keys kiln pinned in the state directory (strictly), a private host
/// through `edge` as the jump host.
fn pinned_ssh(t: &Path, edge: &str, host: &str, destination: &str, script: &str) -> Result<String, String> {
    let kh = t.join("state/known_hosts");
    let key = t.join("key");
    let common = |alias: &str| -> Vec<String> {
        [
            "-o".to_string(),
            "BatchMode=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", kh.display()),
            "-o".into(),
            format!("HostKeyAlias={alias}"),
            "-o".into(),
            "ConnectTimeout=10".into(),
            "-i".into(),
            key.display().to_string(),
        ]
        .to_vec()
    };
    let mut cmd = Command::new("ssh");
    cmd.args(common(host));
    if host != "edge" {
        let jump = format!("ssh {} -W %h:%p kiln@{edge}", common("edge").join(" "));
        cmd.arg("-o").arg(format!("ProxyCommand={jump}"));
    }
    let out = run(cmd.arg(format!("kiln@{destination}")).arg(script));
    if out.status.success() { Ok(text(&out.stdout)) } else { Err(format!("{}{}", text(&out.stdout), text(&out.stderr))) }
}

/// `https://hello.test/` through the edge at `edge` (`--resolve`), asked every 5 s until it
/// answers 200 or `within` passes: (body, curl's last error and status).
fn route_through(edge: &str, within: Duration) -> (String, String) {
    let start = Instant::now();
    loop {
        let c = run(Command::new("curl")
            .args(["-sSk", "--max-time", "20", "-w", "\n%{http_code}", "--resolve"])
            .arg(format!("hello.test:443:{edge}"))
            .arg("https://hello.test/"));
        let out = text(&c.stdout);
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
        if code == "200" || start.elapsed() >= within {
            return (body.to_string(), format!("{} (HTTP {code})", text(&c.stderr)));
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// `kiln plan SYS` with the test's store and state directory (exit 0: nothing to do).
fn kiln_plan(modules: &Path, sys: &Path, t: &Path) -> Output {
    run(kiln().arg("--modules").arg(modules).arg("plan").arg(sys).arg("--store").arg(t.join("store")).arg("--state").arg(t.join("state")))
}

/// The DNS records in a `show -json` state: `"NAME TYPE"` (the zone's apex is the zone's name)
/// → the first value.
fn rrsets(state: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    let resources = state["values"]["root_module"]["resources"].as_array().cloned().unwrap_or_default();
    let zone = resources.iter().find(|r| r["type"] == "hcloud_zone").map(|r| r["values"]["name"].as_str().unwrap_or("").to_string());
    let zone = zone.unwrap_or_default();
    resources
        .iter()
        .filter(|r| r["type"] == "hcloud_zone_rrset")
        .map(|r| {
            let v = &r["values"];
            let label = v["name"].as_str().unwrap_or("");
            let name = if label == "@" { zone.clone() } else { format!("{label}.{zone}") };
            (format!("{name} {}", v["type"].as_str().unwrap_or("")), v["records"][0]["value"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

/// `https://NAME/` through the edge at `edge` (`--resolve`): a GET, or a POST of `data`;
/// (status, body).
fn https_through(edge: &str, name: &str, data: Option<&str>) -> (String, String) {
    let mut c = Command::new("curl");
    c.args(["-sSk", "--max-time", "30", "-w", "\n%{http_code}", "--resolve"]).arg(format!("{name}:443:{edge}"));
    if let Some(d) = data {
        c.arg("--data-binary").arg(d);
    }
    let out = text(&run(c.arg(format!("https://{name}/"))).stdout);
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    (code.to_string(), body.to_string())
}

/// From nothing to a deployed two-host system on the test cloud, with real Terraform, and then
/// a failing canary and a rollback on the same servers (one fleet for every scenario: each
/// server boots under TCG, so the scenarios share them).
///
/// 1. A public edge (Caddy, bastion) and a private stateful host `db` (its data volume, a
///    service with a secret, a notes application keeping what it is sent on the volume) behind
///    it. `kiln deploy` applies the root, enrols both servers' host keys (the private one
///    through the edge), delivers the secret over SSH through the bastion, runs the provisioners
///    to the build's closure and the health gate, then retargets DNS; the route answers through
///    the edge; `kiln plan` then reports no changes; deploying again skips both; `kiln secrets
///    push` re-delivers. db's first qemu crashes 25 s in, after its volume was hot-plugged (a
///    stand-in qemu aborts it, as TCG's own assertions have): the test cloud starts it again
///    from a fresh disk, with the volume.
/// 2. Waves: the hosts get groups, `[deploy] order = ["canary", "production"]` with db the
///    canary, and db's service a deliberately broken option (an argument its program refuses;
///    the test's copy of the fixture's module takes `extra_args`). The deploy replaces db (its
///    volume kept: the old server's services stopped and the volume unmounted before OpenTofu
///    moves it), exits 3 naming db and the step that failed (the health gate, or the
///    provisioner's converge if it waits for the unit itself) with what the host says about
///    the service, lists the edge as not touched, records no generation; the edge still
///    answers.
/// 3. `kiln rollback 1`: generation 1's stored build gives db its good user-data back (its
///    server replaced again, the volume moved again), the edge skipped; the note written in 1 is
///    there, the page answers through the edge; the source reverted, `kiln plan` finds nothing.
/// 4. No secret value is in the state directory (the Terraform state included), the store,
///    kiln's output, the test cloud or the temporary directory. `terraform destroy` of the
///    servers powers them off and removes them, their volumes kept: the test cloud's own
///    contract.
#[test]
fn a_two_host_system_deploys_from_nothing_and_a_failing_canary_stops_the_rollout() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (_one, _guard, public) = vm_test_start(t);
    let clock = Instant::now();
    let cloud = t.join("cloud");
    // The lab-network fixture with the test's admin key; its private host becomes `db`, a
    // stateful host (a data volume).
    let sys = t.join("sys");
    copy_tree(&repo().join("tests/fixtures/lab-network"), &sys);
    let toml = read(&sys.join("system.toml"));
    let start = toml.find("\"ssh-ed25519 ").unwrap();
    let end = toml[start..].find("kiln-boot-placeholder\"").unwrap() + start + "kiln-boot-placeholder\"".len();
    let toml = format!("{}\"{public}\"{}", &toml[..start], &toml[end..])
        .replace("[hosts.app]", "[hosts.db]\ndisks = { data = \"10GiB\" }")
        .replace("host = \"app\"", "host = \"db\"")
        .replace("[networks.private]", "[dns.\"hello.test\"]\nprovider = \"hetzner\"\n\n[networks.private]");
    // The notes application keeps what it is sent on db's data volume.
    let toml = format!(
        "{toml}\n[services.notes]\nmodule = \"lan-notes\"\nhost = \"db\"\n\n[routes.\"notes.hello.test\"]\nservice = \"notes\"\ntls = \"internal\"\n"
    );
    std::fs::write(sys.join("system.toml"), &toml).unwrap();
    // The fixture's modules, `lan-hello` with one more option appended to its command line
    // (empty by default; scenario 2 breaks the service with it).
    let modules = t.join("modules");
    copy_tree(&repo().join("tests/fixtures/lab-network/modules"), &modules);
    let m = modules.join("lan-hello/module.toml");
    let with_option = read(&m).replace(
        "[native]",
        "[options.extra_args]\ntype = \"string\"\ndefault = \"\"\ndescription = \"More arguments for http.server (the test breaks the service with one).\"\n\n[native]",
    );
    std::fs::write(&m, with_option).unwrap();
    let unit = modules.join("lan-hello/hello.service.j2");
    std::fs::write(&unit, read(&unit).replace("{{ endpoints.http }}", "{{ endpoints.http }} {{ options.extra_args }}")).unwrap();
    std::fs::create_dir_all(t.join("tmp")).unwrap();
    let secret = hello_token(&sys);
    // kiln logs in with the admin's key (the ssh config names it), never the test's agent.
    std::fs::write(t.join("ssh_config"), format!("Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n", t.join("key").display())).unwrap();
    // `kiln ARGS… SYS` with the test cloud, the test's store, state and ssh config (`--system`
    // before SYS when `system_flag`); no terminal.
    let kiln_on = |args: &[&str], system_flag: bool, path: Option<&std::ffi::OsStr>| {
        let mut c = kiln();
        terraform_env(&mut c);
        c.env("KILN_TEST_CLOUD", &cloud).env("TF_VAR_hcloud_token", "test-cloud-token").env("TMPDIR", t.join("tmp"));
        if let Some(p) = path {
            c.env("PATH", p);
        }
        c.stdin(std::process::Stdio::null());
        c.arg("--modules").arg(&modules).arg("--identity").arg(examples_identity());
        c.args(args);
        if system_flag {
            c.arg("--system");
        }
        c.arg(&sys).arg("--store").arg(t.join("store")).arg("--state").arg(t.join("state"));
        c.arg("--ssh-config").arg(t.join("ssh_config"));
        let started = Instant::now();
        let out = run(&mut c);
        eprintln!("kiln {args:?}: {} s, exit {:?}\n{}", started.elapsed().as_secs(), out.status.code(), text(&out.stderr));
        out
    };
    let summary_of = |out: &Output| json_lines(out).into_iter().find_map(|v| v.get("summary").cloned()).unwrap_or_default();
    let servers_now = || {
        kiln::deploy::cloud::servers_of_state(
            &serde_json::from_slice(&terraform(&t.join("state/tofu"), &cloud, &["show", "-json"]).stdout).unwrap(),
        )
    };

    // --- 1. from nothing ---------------------------------------------------------------------
    let crashing = vm::path_with_crashing_qemu(t, "kiln-test-cloud-db", 25);
    let out = kiln_on(&["deploy", "--json", "--yes"], false, Some(&crashing));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "deploy failed:\n{stdout}\n{stderr}\n{}", consoles(&cloud));
    let summary = summary_of(&out);
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["deployed"], serde_json::json!(["db", "edge"]), "{summary}");
    assert_eq!(summary["generation"], 1, "{summary}");
    let crashes = read(&cloud.join("crashes.log"));
    assert_eq!(crashes.lines().count(), 1, "the stand-in qemu crashed once: {crashes}");
    assert!(crashes.starts_with("server `db`: qemu crashed (SIGABRT) "), "{crashes}");
    assert!(crashes.contains("stand-in qemu: Assertion failed"), "qemu's last words: {crashes}");
    assert!(crashes.trim_end().ends_with("started again from a fresh disk"), "{crashes}");

    // The addresses Terraform recorded.
    let show = terraform(&t.join("state/tofu"), &cloud, &["show", "-json"]);
    let state: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let servers = kiln::deploy::cloud::servers_of_state(&state);
    let edge = servers["edge"].ipv4.expect("the edge has a public address").to_string();
    assert_eq!(servers["db"].ipv4, None, "db is private");
    // The DNS cut-over: the routes' records point at the edge, applied once both hosts passed
    // their health gate (the cut-over events come after every health event).
    let records = rrsets(&state);
    assert_eq!(records.get("hello.test A").map(String::as_str), Some(edge.as_str()), "{records:?}");
    assert_eq!(records.get("notes.hello.test A").map(String::as_str), Some(edge.as_str()), "{records:?}");
    let events: Vec<serde_json::Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let last_health = events.iter().rposition(|e| e["step"] == "health" && e["state"] == "done").expect("health events");
    let first_cut = events.iter().position(|e| e["step"] == "cutover").expect("cut-over events");
    assert!(first_cut > last_health, "DNS retargeted only after the health gates");

    // The keys kiln pinned are the ones the servers present (strict checking), the enrolment
    // banner is gone, db sits at the network block's address with its volume mounted.
    let db_token = pinned_ssh(t, &edge, "db", "10.0.0.3", "sudo -n cat /etc/hello/token; sudo -n findmnt -n -o SOURCE /var/lib/kiln/data")
        .unwrap_or_else(|e| panic!("db through the edge with the pinned keys: {e}"));
    assert!(db_token.starts_with(&secret), "the secret arrived over SSH through the bastion: {db_token}");
    assert!(db_token.contains("/dev/vd"), "db's data volume is mounted: {db_token}");
    let banner = pinned_ssh(t, &edge, "edge", &edge, "true").map(|_| ()).err();
    assert!(banner.is_none(), "{banner:?}");

    // The route answers through the edge, pinned to its address. Caddy may still be making its
    // internal certificate under TCG, so the test asks for up to two minutes.
    let route = route_through(&edge, Duration::from_secs(120));
    assert!(route.0.contains("hello from kiln"), "route: {}{}", route.0, route.1);

    // `kiln plan` afterwards: nothing to do.
    let plan = kiln_plan(&modules, &sys, t);
    assert_eq!(plan.status.code(), Some(0), "kiln plan after deploy:\n{}{}", text(&plan.stdout), text(&plan.stderr));

    // Deploying again changes nothing: OpenTofu has nothing to apply (the servers keep their
    // ids, so their pins stand), both hosts are at their closure with their secrets.
    let again = kiln_on(&["deploy", "--json", "--yes"], false, None);
    let again_out = text(&again.stdout);
    assert!(again.status.success(), "second deploy:\n{again_out}\n{}", text(&again.stderr));
    let summary2 = summary_of(&again);
    assert_eq!(summary2["skipped"], serde_json::json!(["db", "edge"]), "{summary2}");
    assert_eq!(summary2["generation"], 1, "{summary2}");
    assert_eq!(servers_now(), servers, "no server was replaced");

    // Without `--yes` and without a terminal: a plan that changes nothing (OpenTofu has nothing
    // to do, the build is the last generation's) needs no confirmation.
    let third = kiln_on(&["deploy"], false, None);
    let third_out = text(&third.stdout);
    assert_eq!(third.status.code(), Some(0), "{third_out}\n{}", text(&third.stderr));
    assert!(third_out.contains("OpenTofu: no changes"), "{third_out}");
    // `kiln secrets push db`: the server found in OpenTofu's state, reached through the bastion
    // with the enrolled pins, the secret re-delivered, the health gate passed.
    let push = kiln_on(&["secrets", "push", "db"], false, None);
    let push_err = text(&push.stderr);
    assert_eq!(push.status.code(), Some(0), "secrets push db:\n{}\n{push_err}", text(&push.stdout));
    assert!(push_err.contains("secrets delivered"), "{push_err}");
    assert!(!push_err.contains(&secret) && !text(&push.stdout).contains(&secret), "the secret in kiln's output");
    let (code, _) = https_through(&edge, "notes.hello.test", Some("row-1 written before the replacements"));
    assert_eq!(code, "201", "a note written through the edge");

    // --- 2. a failing canary ------------------------------------------------------------------
    let broken = toml
        .replace("[hosts.edge]\n", "[hosts.edge]\ngroup = \"production\"\n")
        .replace("[hosts.db]\n", "[hosts.db]\ngroup = \"canary\"\n")
        .replace("[networks.private]", "[deploy]\norder = [\"canary\", \"production\"]\n\n[networks.private]")
        .replace("module = \"lan-hello\"\n", "module = \"lan-hello\"\noptions = { extra_args = \"--no-such-flag\" }\n");
    assert!(
        broken.contains("group = \"canary\"") && broken.contains("group = \"production\"") && broken.contains("--no-such-flag"),
        "{broken}"
    );
    std::fs::write(sys.join("system.toml"), &broken).unwrap();
    let out = kiln_on(&["deploy", "--json", "--yes", "--health-timeout", "30"], false, None);
    let (b_out, b_err) = (text(&out.stdout), text(&out.stderr));
    let s = summary_of(&out);
    assert_eq!(out.status.code(), Some(3), "{s}\n{b_err}\n{}", consoles(&cloud));
    assert_eq!(s["ok"], false);
    assert_eq!(s["stopped_at"], "canary", "{s}");
    assert_eq!(s["failed"][0]["host"], "db", "{s}");
    // The health gate (the unit never becomes active), or the provisioner if it waits for the
    // unit itself; either way the failure carries what the host says about it.
    let step = s["failed"][0]["step"].as_str().unwrap_or_default().to_string();
    eprintln!("the canary failed at step {step}");
    assert!(step == "health" || step == "converge", "{s}\n{}", consoles(&cloud));
    let said = format!("{}{}{}", s["failed"][0]["message"], s["failed"][0]["details"], s["failed"][0]["log_tail"]);
    assert!(said.contains("hello"), "the failure names the service: {s}");
    assert_eq!(s["untouched"], serde_json::json!(["edge"]), "{s}");
    assert_eq!(s["generation"], serde_json::Value::Null, "{s}");
    assert!(b_err.contains("not touched (the rollout stopped at wave `canary`): `edge`"), "{b_err}");
    assert!(!t.join("state/generations/2.json").exists(), "no generation 2");
    // db's server replaced with its volume kept, the old one stopped first; the edge kept.
    let lines = json_lines(&out);
    let plan = lines.iter().find_map(|v| v.get("plan")).unwrap();
    let hosts: Vec<&serde_json::Value> = plan["waves"].as_array().unwrap().iter().flat_map(|w| w["hosts"].as_array().unwrap()).collect();
    let db_plan = hosts.iter().find(|h| h["host"] == "db").unwrap();
    assert_eq!(db_plan["tofu"], "replace", "{plan}");
    assert_eq!(db_plan["volumes"], serde_json::json!(["hcloud_volume.db_data"]), "{plan}");
    assert!(!plan["tofu"]["replace"].as_array().unwrap().contains(&serde_json::json!("hcloud_volume.db_data")), "{plan}");
    let stopped = lines.iter().any(|e| e["host"] == "db" && e["step"] == "stop" && e["state"] == "done");
    assert!(stopped, "db's old server was stopped before the apply: {b_out}");
    let servers2 = servers_now();
    assert_ne!(servers2["db"].id, servers["db"].id, "db's server was replaced");
    assert_eq!(servers2["edge"], servers["edge"], "the production server was not replaced");
    // The edge still serves: its Caddy answers for the route (the upstream is the broken canary).
    let after = route_through(&edge, Duration::ZERO);
    assert!(after.1.contains("HTTP 502") || after.1.contains("HTTP 200"), "the edge answers: {after:?}");

    // --- 3. `kiln rollback 1` ----------------------------------------------------------------
    // Generation 1 was the last recorded, so nothing new is recorded.
    let out = kiln_on(&["rollback", "1", "--yes", "--json"], true, None);
    let (r_out, r_err) = (text(&out.stdout), text(&out.stderr));
    let r = json_lines(&out);
    let plan = r.iter().find_map(|v| v.get("plan").cloned()).unwrap_or_default();
    assert_eq!(plan["rollback_of"], 1, "{plan}");
    let s = summary_of(&out);
    assert_eq!(out.status.code(), Some(0), "{s}\n{}", consoles(&cloud));
    assert_eq!(s["deployed"], serde_json::json!(["db"]), "{s}");
    assert_eq!(s["skipped"], serde_json::json!(["edge"]), "{s}");
    assert_eq!(s["generation"], 1, "{s}");
    let servers3 = servers_now();
    assert_ne!(servers3["db"].id, servers2["db"].id, "db's server was replaced again");
    assert_eq!(servers3["edge"], servers["edge"], "the edge was kept");
    let (code, notes) = https_through(&edge, "notes.hello.test", None);
    assert_eq!((code.as_str(), notes.as_str()), ("200", "row-1 written before the replacements\n"), "the data survived");
    let back = route_through(&edge, Duration::from_secs(120));
    assert!(back.0.contains("hello from kiln"), "route after the rollback: {back:?}");
    // The third db was enrolled: its key pinned, strictly checked, its secret delivered.
    let db_token = pinned_ssh(t, &edge, "db", "10.0.0.3", "sudo -n cat /etc/hello/token")
        .unwrap_or_else(|e| panic!("the rolled-back db through the edge with the pinned keys: {e}"));
    assert!(db_token.starts_with(&secret), "the secret reached the third db: {db_token}");
    // The source reverted as its operator would: `kiln plan` finds nothing to do.
    std::fs::write(sys.join("system.toml"), &toml).unwrap();
    let plan = kiln_plan(&modules, &sys, t);
    assert_eq!(plan.status.code(), Some(0), "kiln plan after the rollback:\n{}{}", text(&plan.stdout), text(&plan.stderr));

    // --- 4. no secret on this side; destroy -----------------------------------------------------
    for dir in ["state", "store", "tmp", "cloud"] {
        // The servers' own disks (`disk.qcow2`, the volumes) are the far side: the secret is
        // meant to be there. Their seeds (the user-data Terraform passed) are searched.
        let found: Vec<String> = holding(&t.join(dir), secret.as_bytes())
            .into_iter()
            .filter(|f| !f.ends_with("/disk.qcow2") && !f.contains("/cloud/volumes/"))
            .collect();
        assert_eq!(found, Vec::<String>::new(), "the secret in {dir}");
    }
    for said in [&stdout, &stderr, &again_out, &text(&again.stderr), &third_out, &text(&third.stderr), &b_out, &b_err, &r_out, &r_err] {
        assert!(!said.contains(&secret), "the secret in kiln's output");
    }
    let pids: Vec<i32> = std::fs::read_dir(cloud.join("servers"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("qemu.pid")).ok()?.trim().parse().ok())
        .filter(|pid| qemu_alive(*pid))
        .collect();
    assert_eq!(pids.len(), 2, "two servers run");
    // The servers only: kiln's root keeps its volumes and the zone from a destroy
    // (`prevent_destroy`), so a whole-root destroy is refused.
    let destroy = terraform(
        &t.join("state/tofu"),
        &cloud,
        &["destroy", "-auto-approve", "-input=false", "-no-color", "-target=hcloud_server.edge", "-target=hcloud_server.db"],
    );
    assert!(destroy.status.success(), "destroy:\n{}{}", text(&destroy.stdout), text(&destroy.stderr));
    assert!(pids.iter().all(|p| !qemu_alive(*p)), "destroy powered the machines off");
    assert_eq!(std::fs::read_dir(cloud.join("servers")).unwrap().count(), 0, "and removed them");
    assert_eq!(std::fs::read_dir(cloud.join("volumes")).unwrap().count(), 2, "the volumes (edge's and db's) are kept");
    eprintln!("whole test {} s", clock.elapsed().as_secs());
}

/// Terraform failing (here the test cloud's provider refuses to create a server whose image
/// it has not got): the error is Terraform's own, under the step that failed, and names the
/// resource; the provider token never appears.
#[test]
fn a_failing_apply_names_the_step_and_shows_terraforms_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = tmp.path().join("cloud");
    let _guard = CloudGuard(cloud.clone());
    let out = deploy_without_vms(
        tmp.path(),
        &[("KILN_TEST_CLOUD", cloud.to_str().unwrap()), ("KILN_TEST_CLOUD_IMAGES", tmp.path().join("no-images").to_str().unwrap())],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("step apply: `terraform apply` failed"), "{err}");
    assert!(err.contains("no lab image for `image = 'debian-12'`") && err.contains("hcloud_server"), "{err}");
    assert!(!err.contains("test-cloud-token") && !text(&out.stdout).contains("test-cloud-token"));
    assert!(tmp.path().join("state/tofu/kiln_enrol_override.tf.json").is_file(), "the working copy is in place");
}
