//! `kiln deploy` to an existing server over SSH. The real proof: a lab VM (the debian-12 test
//! image under qemu, booted with only an admin key — nothing of kiln) stands in for a server
//! someone already runs; kiln deploys the boot fixture (native Caddy + a native service with a
//! secret) to it through an ssh config that maps its address to the forwarded port: the
//! provisioner completes, the marker holds the closure, the route answers; a second deploy
//! skips; a changed option redeploys; `kiln secrets push` re-delivers; no secret value is
//! anywhere on this side; a changed host key is refused. Fast tests run Debian's sshd on
//! loopback for host-key pinning and the bad-input errors.

mod common;
#[path = "common/vm.rs"]
mod vm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

fn modules() -> PathBuf {
    repo().join("tests/fixtures/boot/modules")
}

fn identity() -> PathBuf {
    repo().join("tests/fixtures/keys/examples.agekey")
}

/// The fixture's secret value.
fn token(sys: &Path) -> String {
    let ids = kiln::sops::load_identities(&std::fs::read_to_string(identity()).unwrap()).unwrap();
    let sops = std::fs::read_to_string(sys.join("secrets.sops.yaml")).unwrap();
    kiln::sops::decrypt(&sops, kiln::sops::Format::Yaml, &ids).unwrap().remove("hello_token").unwrap()
}

/// `kiln deploy` of `sys` with the test's store, state and ssh config; `extra` before the path.
fn deploy(t: &Path, sys: &Path, extra: &[&str]) -> Output {
    let mut cmd = kiln();
    cmd.arg("--modules").arg(modules()).arg("deploy").arg(sys);
    cmd.arg("--store").arg(t.join("store")).arg("--state").arg(t.join("state")).arg("--ssh-config").arg(t.join("ssh_config"));
    cmd.args(extra);
    cmd.env("TMPDIR", t.join("tmp"));
    run(&mut cmd)
}

fn events(out: &Output) -> Vec<Value> {
    text(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn summary(out: &Output) -> Value {
    events(out).into_iter().find_map(|e| e.get("summary").cloned()).unwrap_or_else(|| panic!("no summary: {}", text(&out.stdout)))
}

// --- fast: Debian's sshd on loopback ------------------------------------------------------

/// A login without sudo on the loopback sshd: kiln must refuse to go on without root.
const NO_SUDO: &str = "deployer:x:65534:65534:no sudo:/tmp:/bin/sh\n";

fn fingerprint(public: &str) -> String {
    kiln::types::parse_ssh_host_key(public).unwrap().fingerprint()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A system with one existing host `web` at 192.0.2.10 (mapped by the ssh config), no secrets,
/// and `host_key` declared when given.
fn loopback_system(dir: &Path, host_key: Option<&str>) -> PathBuf {
    let sys = dir.join("sys");
    std::fs::create_dir_all(&sys).unwrap();
    let key_line = host_key.map(|k| format!("ssh_host_key = \"{k}\"\n")).unwrap_or_default();
    std::fs::write(
        sys.join("system.toml"),
        format!(
            "[system]\nname = \"loop\"\n\n[providers.own]\nkind = \"existing\"\n\n[admins.deployer]\nkeys = [\"{}\"]\n\n\
[hosts.web]\nprovider = \"own\"\nimage = \"debian-12\"\npublic = true\naddress = \"192.0.2.10\"\n{key_line}",
            std::fs::read_to_string(dir.join("client.pub")).unwrap().trim()
        ),
    )
    .unwrap();
    sys
}

fn ssh_config(dir: &Path, port: u16) {
    std::fs::write(
        dir.join("ssh_config"),
        format!(
            "Host 192.0.2.10\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {}\n  IdentitiesOnly yes\n",
            dir.join("client").display()
        ),
    )
    .unwrap();
}

#[test]
fn host_keys_are_pinned_never_trusted_blindly() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::create_dir_all(t.join("tmp")).unwrap();
    sshd::keygen(&t.join("client"));
    let host_pub = sshd::keygen(&t.join("hostkey"));
    let other_pub = sshd::keygen(&t.join("otherkey"));
    let port = free_port();
    ssh_config(t, port);
    let server = sshd::Loopback::start(t, port, &t.join("hostkey"), &t.join("client.pub"), "", NO_SUDO);

    // Nothing vouches for the key: refused, naming the host, the step and the key seen.
    let sys = loopback_system(t, None);
    let out = deploy(t, &sys, &["--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let s = summary(&out);
    assert_eq!(s["failed"][0]["host"], "web");
    assert_eq!(s["failed"][0]["step"], "connect");
    let msg = s["failed"][0]["message"].as_str().unwrap();
    assert!(msg.contains("unknown host key") && msg.contains(&fingerprint(&host_pub)) && msg.contains("--trust-host-key"), "{msg}");
    assert!(!t.join("state/known_hosts").exists() || std::fs::read_to_string(t.join("state/known_hosts")).unwrap().is_empty());

    // A fingerprint the server does not present: refused.
    let wrong = format!("web={}", fingerprint(&other_pub));
    let out = deploy(t, &sys, &["--trust-host-key", &wrong]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("not the key --trust-host-key vouched for"), "{}", text(&out.stderr));

    // The right fingerprint: pinned under the host's name; the login without sudo is then
    // refused at the connect step (the key was accepted: ssh got that far).
    let right = format!("web={}", fingerprint(&host_pub));
    let out = deploy(t, &sys, &["--trust-host-key", &right]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("host `web`, step connect") && err.contains("cannot run commands as root"), "{err}");
    let pinned = std::fs::read_to_string(t.join("state/known_hosts")).unwrap();
    assert_eq!(pinned, format!("web {host_pub}\n"));

    // The server now presents another key: refused, naming both fingerprints.
    drop(server);
    let _server = sshd::Loopback::start(t, port, &t.join("otherkey"), &t.join("client.pub"), "", NO_SUDO);
    let out = deploy(t, &sys, &["--trust-host-key", &format!("web={}", fingerprint(&other_pub))]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("host key changed") && err.contains(&fingerprint(&host_pub)) && err.contains(&fingerprint(&other_pub)), "{err}");

    // A declared key that differs from the pin is refused too, before connecting.
    let sys = loopback_system(t, Some(&other_pub));
    let out = deploy(t, &sys, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("but `") && text(&out.stderr).contains("pins"), "{}", text(&out.stderr));

    // A fresh state with the declared key: pinned from the system, no flag needed.
    std::fs::remove_file(t.join("state/known_hosts")).unwrap();
    let out = deploy(t, &sys, &[]);
    assert!(text(&out.stderr).contains("cannot run commands as root"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(t.join("state/known_hosts")).unwrap(), format!("web {other_pub}\n"));

    // The ssh socket directory (in TMPDIR) is gone after every run.
    assert_eq!(std::fs::read_dir(t.join("tmp")).unwrap().count(), 0, "left in the temporary directory");
}

#[test]
fn an_unreachable_host_names_host_and_step() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::create_dir_all(t.join("tmp")).unwrap();
    sshd::keygen(&t.join("client"));
    let host_pub = sshd::keygen(&t.join("hostkey"));
    ssh_config(t, free_port()); // nothing listens there
    let sys = loopback_system(t, Some(&host_pub));
    let out = deploy(t, &sys, &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("host `web`, step connect: unreachable over SSH"), "{err}");
    assert!(!t.join("state/generations").exists(), "no generation after a failure");
}

/// Bad secrets input stops the deploy before anything is contacted or written.
#[test]
fn missing_or_wrong_identity_is_refused_naming_host_and_step() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::create_dir_all(t.join("tmp")).unwrap();
    let (sys, _key) = vm::fixture(&repo().join("tests/fixtures/boot/web"), t);
    std::fs::write(t.join("ssh_config"), "").unwrap();
    let out = deploy(t, &sys, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("host `web`, step secrets: the host needs 1 secret and no identity was given"),
        "{}",
        text(&out.stderr)
    );

    let other = t.join("other.agekey");
    let id = age_identity();
    std::fs::write(&other, id).unwrap();
    let mut cmd = kiln();
    cmd.arg("--modules").arg(modules()).arg("--identity").arg(&other).arg("deploy").arg(&sys);
    cmd.arg("--store").arg(t.join("store")).arg("--state").arg(t.join("state"));
    let out = run(&mut cmd);
    // Refused where the system names the file (load authenticates every secret file with the
    // identity given), before anything is built or contacted.
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("secrets.sops.yaml") && err.contains("no identity matches"), "{err}");
    assert!(!t.join("store").exists() && !t.join("state").exists(), "nothing written");
}

/// A fresh age identity (not the fixtures' key), from age's own `age-keygen`.
fn age_identity() -> String {
    let o = run(&mut Command::new("age-keygen"));
    assert!(o.status.success(), "age-keygen: {}", text(&o.stderr));
    text(&o.stdout)
}

/// The provisioner waits for secrets that have not arrived yet (a cloud host runs it from
/// cloud-init before `kiln deploy` delivers them) instead of dying: its secrets step, cut from
/// the generated provision.sh and pointed at a temporary directory, runs under dash; the secret
/// arrives two seconds later and the step finishes, having said what it waits for.
#[test]
fn the_provisioner_waits_for_its_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let link = build_with_modules(&modules(), &repo().join("tests/fixtures/boot/web"), &t.join("store"), &t.join("result"));
    let script = std::fs::read_to_string(link.join("hosts/web/provision.sh")).unwrap();
    let start = script.find("waited=0\n").expect("the secrets wait");
    let end = script[start..].find("\ndone\n").unwrap() + start + "\ndone\n".len();
    let dir = t.join("secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let step = script[start..end].replace("/etc/kiln/secrets", dir.to_str().unwrap());
    let sh = format!("log() {{ printf 'kiln: %s\\n' \"$*\" >&2; }}\ndie() {{ log \"error: $*\"; exit 1; }}\n{step}echo arrived\n");
    let child =
        Command::new("dash").arg("-c").arg(&sh).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    std::fs::write(dir.join("hello_token"), "s3cret-value").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "arrived\n");
    assert!(text(&out.stderr).contains("waiting for secrets in") && text(&out.stderr).contains("hello_token"), "{}", text(&out.stderr));
    assert!(step.contains("-lt 1800 ] || die"), "bounded: 30 minutes\n{step}");
}

// --- fast: rollout waves, the plan, confirmation, the health gate, rollback ---------------
//
// A stand-in server per host: Debian's sshd on loopback, logged into as root, running in its
// own mount namespace where /etc, /var and /opt are overlays whose writes land in the test's
// directory (so every "server" has its own /opt/kiln, /etc/kiln/secrets, /var/lib/kiln and
// provisioner log, and nothing reaches this machine's), and `apt-get` is a stand-in whose
// `update` succeeds and `install` refuses (so a provisioner that gets that far fails at its
// packages step at once, as on a server whose mirror lacks them; a failing `update` would
// hold it in its five-minute wait for a gateway). What it proves: kiln's orchestration
// against real ssh — host keys, probes, the plan, waves, skips, failures, log tails,
// generations. What it does not: a provisioner run to completion (the VM test below does
// that).

struct Server {
    sshd: std::process::Child,
    /// Where its /etc, /var and /opt writes land (`ROOT/etc/u/…`).
    root: PathBuf,
}

impl Server {
    fn start(dir: &Path, name: &str, port: u16, client_pub: &Path) -> (Server, String) {
        let root = dir.join("servers").join(name);
        for x in ["etc", "var", "opt"] {
            std::fs::create_dir_all(root.join(x).join("u")).unwrap();
            std::fs::create_dir_all(root.join(x).join("w")).unwrap();
        }
        let host_pub = sshd::keygen(&root.join("hostkey"));
        let config = root.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nStrictModes no\nUsePAM no\n\
PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n",
                root.join("hostkey").display(),
                client_pub.display(),
                root.join("sshd.pid").display()
            ),
        )
        .unwrap();
        let mut users = std::fs::read_to_string("/etc/passwd").unwrap();
        if !users.lines().any(|l| l.starts_with("sshd:")) {
            users.push_str("sshd:x:65534:65534:sshd privilege separation:/run/sshd:/usr/sbin/nologin\n");
        }
        std::fs::write(root.join("passwd"), users).unwrap();
        let apt = root.join("apt-get");
        // Its sources answer (`update` succeeds: the provisioner's wait for a gateway ends at
        // once) but hold no package (`install` fails).
        std::fs::write(
            &apt,
            "#!/bin/sh\ncase $1 in update) exit 0 ;; esac\necho 'E: stand-in server: no package mirror here' >&2\nexit 100\n",
        )
        .unwrap();
        run(Command::new("chmod").arg("0755").arg(&apt));
        let script = "set -e; mount -t tmpfs tmpfs /run; mkdir -m 0755 /run/sshd; \
for x in etc var opt; do mount -t overlay overlay -o \"lowerdir=/$x,upperdir=$2/$x/u,workdir=$2/$x/w\" \"/$x\"; done; \
mount --bind \"$2/passwd\" /etc/passwd; mount --bind \"$2/apt-get\" /usr/bin/apt-get; exec \"$0\" -D -e -f \"$1\"";
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", script]).arg(sshd::binary()).arg(&config).arg(&root);
        cmd.stderr(std::fs::File::create(root.join("sshd.log")).unwrap());
        let server = Server { sshd: cmd.spawn().expect("start sshd"), root };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (server, host_pub);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(server.root.join("sshd.log")).unwrap_or_default();
        drop(server);
        panic!("sshd did not listen: {log}");
    }

    /// A file as the server sees it (its overlay's upper layer: what was written there).
    fn file(&self, path: &str) -> Option<String> {
        let (top, rest) = path.trim_start_matches('/').split_once('/').unwrap();
        std::fs::read_to_string(self.root.join(top).join("u").join(rest)).ok()
    }

    /// Writes a file on the server, inside its mount namespace (stands in for what an earlier
    /// deploy left there; the overlay's upper layer must not be written behind its back).
    fn put(&self, path: &str, content: &str) {
        let mut child = Command::new("nsenter")
            .args(["-t", &self.sshd.id().to_string(), "-m", "sh", "-c", "mkdir -p \"${1%/*}\" && cat >\"$1\"", "sh", path])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), content.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "writing {path} on the stand-in server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

/// Five existing hosts `a`…`e` at 192.0.2.1…5 in groups canary (a), production (b, c) and
/// late (d, e), each with a stand-in server and its key declared; `extra` is appended.
fn five_hosts(t: &Path, extra: &str) -> (PathBuf, Vec<Server>) {
    sshd::keygen(&t.join("client"));
    let mut servers = Vec::new();
    let mut hosts = String::new();
    let mut config = String::new();
    for (i, (name, group)) in [("a", "canary"), ("b", "production"), ("c", "production"), ("d", "late"), ("e", "late")].iter().enumerate() {
        let port = free_port();
        let (server, key) = Server::start(t, name, port, &t.join("client.pub"));
        servers.push(server);
        hosts.push_str(&format!(
            "[hosts.{name}]\nprovider = \"own\"\nimage = \"debian-12\"\npublic = true\naddress = \"192.0.2.{}\"\ngroup = \"{group}\"\nssh_host_key = \"{key}\"\n\n",
            i + 1
        ));
        config.push_str(&format!(
            "Host 192.0.2.{}\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {}\n  IdentitiesOnly yes\n",
            i + 1,
            t.join("client").display()
        ));
    }
    std::fs::write(t.join("ssh_config"), config).unwrap();
    let sys = t.join("sys");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(
        sys.join("system.toml"),
        format!(
            "[system]\nname = \"five\"\n\n[providers.own]\nkind = \"existing\"\n\n[deploy]\norder = [\"canary\", \"production\", \"late\"]\n\n{hosts}{extra}"
        ),
    )
    .unwrap();
    (sys, servers)
}

/// The hosts' closures in the build of `sys` (built into the test's store).
fn closures(t: &Path, sys: &Path, link: &str) -> (PathBuf, BTreeMap<String, String>) {
    let link = build_with_modules(&modules(), sys, &t.join("store"), &t.join(link));
    let m = manifest(&link);
    let c = m["hosts"].as_object().unwrap().iter().map(|(h, e)| (h.clone(), e["closure"].as_str().unwrap().to_string())).collect();
    (link, c)
}

fn root_deploy(t: &Path, sys: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--ssh-user", "root"];
    args.extend_from_slice(extra);
    deploy(t, sys, &args)
}

#[test]
fn waves_follow_the_order_the_plan_is_confirmed_and_a_failing_canary_stops_the_rollout() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::create_dir_all(t.join("tmp")).unwrap();
    let (sys, mut servers) = five_hosts(t, "");
    let (_, closure) = closures(t, &sys, "result");
    // b…e were deployed before (their markers hold the build's closures); a never was.
    for s in &servers[1..] {
        let name = s.root.file_name().unwrap().to_str().unwrap().to_string();
        s.put("/var/lib/kiln/closure", &format!("{}\n", closure[&name]));
    }

    // No terminal and no --yes: the plan is shown, nothing is done, exit 4.
    let out = root_deploy(t, &sys, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(plan.contains("wave 1 `canary`:") && plan.contains("wave 2 `production`:") && plan.contains("wave 3 `late`:"), "{plan}");
    assert!(
        plan.find("canary").unwrap() < plan.find("production").unwrap() && plan.find("production").unwrap() < plan.find("late").unwrap()
    );
    let line_a = plan.lines().find(|l| l.trim_start().starts_with("a ")).unwrap();
    assert!(line_a.contains("upload") && line_a.contains("first deploy") && line_a.contains("provision"), "{line_a}");
    let line_b = plan.lines().find(|l| l.trim_start().starts_with("b ")).unwrap();
    assert!(line_b.contains("skip"), "{line_b}");
    assert!(text(&out.stderr).contains("no terminal to confirm it on; pass --yes"), "{}", text(&out.stderr));
    assert!(servers[0].file("/opt/kiln/provision.sh").is_none(), "nothing uploaded without confirmation");

    // On a terminal (util-linux `script` gives kiln a pseudo-terminal) kiln asks; "n" is
    // exit 4 with nothing done.
    let q = |p: &Path| kiln::render::quote::sh(p.to_str().unwrap());
    let line = format!(
        "{} --modules {} deploy {} --store {} --state {} --ssh-config {} --ssh-user root",
        q(Path::new(env!("CARGO_BIN_EXE_kiln"))),
        q(&modules()),
        q(&sys),
        q(&t.join("store")),
        q(&t.join("state")),
        q(&t.join("ssh_config"))
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("NO_COLOR", "1")
        .env("TMPDIR", t.join("tmp"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{said}");
    assert!(said.contains("wave 1 `canary`:") && said.contains("Deploy this plan? [y/N]") && said.contains("not confirmed"), "{said}");
    assert!(servers[0].file("/opt/kiln/provision.sh").is_none(), "nothing uploaded after a no");

    let out = root_deploy(t, &sys, &["--json"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(summary(&out)["confirmed"], false);
    assert_eq!(summary(&out)["untouched"], serde_json::json!(["a", "b", "c", "d", "e"]));

    // --yes: the canary fails at its provisioner (the stand-in's apt-get refuses), its log's
    // tail is printed, the later waves are untouched, no generation.
    let out = root_deploy(t, &sys, &["--yes", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let s = summary(&out);
    assert_eq!(s["failed"][0]["host"], "a");
    assert_eq!(s["failed"][0]["step"], "converge");
    assert!(s["failed"][0]["log_tail"].as_str().unwrap().contains("no package mirror here"), "{s}");
    assert_eq!(s["untouched"], serde_json::json!(["b", "c", "d", "e"]));
    assert_eq!(s["stopped_at"], "canary");
    assert!(servers[0].file("/opt/kiln/provision.sh").is_some(), "the canary got its bundle");
    for srv in &servers[1..] {
        assert!(srv.file("/opt/kiln/provision.sh").is_none(), "a later wave's host was touched");
    }
    assert!(!t.join("state/generations").exists(), "no generation after a failure");
    let err = text(&out.stderr);
    assert!(err.contains("host `a`, step converge") && err.contains("the provisioner's log ends:"), "{err}");
    assert!(err.contains("not touched (the rollout stopped at wave `canary`): `b`, `c`, `d`, `e`"), "{err}");

    // The canary reaches its closure (its marker set, standing in for a provisioner run): now
    // nothing changes, so no confirmation is needed; every wave runs in order, a generation
    // is recorded, and it is quick.
    servers[0].put("/var/lib/kiln/closure", &format!("{}\n", closure["a"]));
    let t0 = std::time::Instant::now();
    let out = root_deploy(t, &sys, &["--json"]);
    let took = t0.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stderr), text(&out.stdout));
    let waves: Vec<String> = events(&out).iter().filter_map(|e| e.get("wave").and_then(|w| w.as_str()).map(str::to_string)).collect();
    assert_eq!(waves, ["canary", "production", "late"]);
    let s = summary(&out);
    assert_eq!(s["skipped"], serde_json::json!(["a", "b", "c", "d", "e"]));
    assert_eq!(s["generation"], 1);
    eprintln!("an unchanged deploy of five hosts took {took:.2} s");
    for e in events(&out) {
        eprintln!("{e}");
    }
    assert!(took < 10.0, "an unchanged deploy of five hosts took {took:.1} s");

    // --group: one group only, no generation recorded.
    let out = root_deploy(t, &sys, &["--group", "production", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["skipped"], serde_json::json!(["b", "c"]));
    assert_eq!(summary(&out)["generation"], Value::Null);
    let out = root_deploy(t, &sys, &["--group", "prod"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no host of system `five` is in rollout group `prod` (did you mean `production`?)"),
        "{}",
        text(&out.stderr)
    );

    // An unreachable host in the last wave: nothing is changed anywhere, even in earlier waves.
    servers[0].put("/var/lib/kiln/closure", "old\n");
    drop(servers.pop());
    let out = root_deploy(t, &sys, &["--yes"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("host `e`, step connect: unreachable over SSH"), "{err}");
    assert!(err.contains("every host is read before any is changed"), "{err}");
    assert_eq!(servers[0].file("/var/lib/kiln/closure").as_deref(), Some("old\n"), "the canary was not touched");
    assert_eq!(kiln::generations::list(&t.join("state")).unwrap().len(), 1);
    assert_eq!(std::fs::read_dir(t.join("tmp")).unwrap().count(), 0, "left in the temporary directory");
}

/// `[deploy] order` is checked against the hosts' groups, at file:line:col with a hint.
#[test]
fn deploy_order_names_real_groups_and_every_group() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path();
    let host = |name: &str, group: &str| {
        format!(
            "[hosts.{name}]\nprovider = \"own\"\nimage = \"debian-12\"\npublic = true\naddress = \"192.0.2.9\"\ngroup = \"{group}\"\n\n"
        )
    };
    std::fs::write(
        sys.join("system.toml"),
        format!(
            "[system]\nname = \"o\"\n\n[providers.own]\nkind = \"existing\"\n\n[deploy]\norder = [\"canary\", \"prodution\", \"canary\"]\n\n{}{}{}",
            host("a", "canary"),
            host("b", "production"),
            host("c", "staging")
        ),
    )
    .unwrap();
    let out = run(kiln().arg("check").arg(sys));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("no host is in rollout group `prodution`") && err.contains("did you mean `production`?"), "{err}");
    assert!(err.contains("system.toml:8:20") && err.contains("system.toml:22:9"), "the places: {err}");
    assert!(err.contains("rollout group `canary` is listed twice"), "{err}");
    assert!(err.contains("host `b` is in rollout group `production`, which `[deploy] order` does not list"), "{err}");
    assert!(err.contains("host `c` is in rollout group `staging`") && err.contains("add `\"staging\"` to `[deploy] order`"), "{err}");
}

/// The health gate fails: its error names the host and step, the unhealthy units, the tail of
/// the provisioner's log and what the units say, fetched over SSH.
#[test]
fn a_failed_health_gate_shows_the_log_and_the_unhealthy_units() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::create_dir_all(t.join("tmp")).unwrap();
    let (sys, _key) = vm::fixture(&repo().join("tests/fixtures/boot/web"), t);
    sshd::keygen(&t.join("client"));
    let port = free_port();
    let (server, host_pub) = Server::start(t, "web", port, &t.join("client.pub"));
    std::fs::write(
        t.join("ssh_config"),
        format!(
            "Host 10.0.2.15\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {}\n  IdentitiesOnly yes\n",
            t.join("client").display()
        ),
    )
    .unwrap();
    let (_, closure) = closures(t, &sys, "result");
    // Deployed before: at the closure, with its secret, and a provisioner log; but the units
    // are not running (no systemd in the stand-in).
    server.put("/var/lib/kiln/closure", &format!("{}\n", closure["web"]));
    server.put("/etc/kiln/secrets/hello_token", &token(&sys));
    server.put("/var/log/kiln/provision.log", "kiln: step: services\nkiln: started hello.service (stand-in log line)\n");
    let id = identity();
    let trust = format!("web={}", fingerprint(&host_pub));
    let out = root_deploy(t, &sys, &["--identity", id.to_str().unwrap(), "--trust-host-key", &trust, "--health-timeout", "2", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let s = summary(&out);
    let f = &s["failed"][0];
    assert_eq!(f["step"], "health", "{s}");
    let msg = f["message"].as_str().unwrap();
    assert!(msg.contains("not healthy after 2 s") && msg.contains("unit caddy.service"), "{msg}");
    assert!(f["log_tail"].as_str().unwrap().contains("stand-in log line"), "{s}");
    assert!(f["details"].as_str().unwrap().contains("--- unit caddy.service"), "{s}");
    let err = text(&out.stderr);
    assert!(
        err.contains("host `web`, step health")
            && err.contains("the provisioner's log ends:")
            && err.contains("the unhealthy services say:"),
        "{err}"
    );
    assert!(!t.join("state/generations").exists());
    let secret = token(&sys);
    assert!(!out.stdout.windows(secret.len()).any(|w| w == secret.as_bytes()) && !err.contains(&secret));
}

/// `kiln rollback` and `--from` go through the same path: the plan names the generation, a
/// rollback that does not reach its closures exits non-zero and records nothing, one that
/// does is recorded as a new generation marked `rollback_of`.
#[test]
fn rollback_and_from_deploy_recorded_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::create_dir_all(t.join("tmp")).unwrap();
    let (sys, servers) = five_hosts(t, "");
    let set_all = |c: &BTreeMap<String, String>| {
        for s in &servers {
            let name = s.root.file_name().unwrap().to_str().unwrap().to_string();
            s.put("/var/lib/kiln/closure", &format!("{}\n", c[&name]));
        }
    };
    // Generation 1: build A, every host at it.
    let (result_a, a) = closures(t, &sys, "result-a");
    set_all(&a);
    assert_eq!(root_deploy(t, &sys, &[]).status.code(), Some(0));
    // Generation 2: build B (another admin changes every closure), every host at it.
    std::fs::write(
        sys.join("admins.toml"),
        format!("[admins.ops]\nkeys = [\"{}\"]\n", std::fs::read_to_string(t.join("client.pub")).unwrap().trim()),
    )
    .unwrap();
    let f = sys.join("system.toml");
    std::fs::write(&f, format!("imports = [\"admins.toml\"]\n{}", std::fs::read_to_string(&f).unwrap())).unwrap();
    let (_, b) = closures(t, &sys, "result-b");
    assert_ne!(a["a"], b["a"]);
    set_all(&b);
    let out = root_deploy(t, &sys, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["generation"], 2);

    let rollback = |extra: &[&str]| {
        let mut cmd = kiln();
        cmd.arg("--modules").arg(modules()).arg("rollback").args(extra).arg("--system").arg(&sys);
        cmd.arg("--store").arg(t.join("store")).arg("--state").arg(t.join("state")).arg("--ssh-config").arg(t.join("ssh_config"));
        cmd.args(["--ssh-user", "root"]).env("TMPDIR", t.join("tmp"));
        run(&mut cmd)
    };
    // Back to generation 1: the plan uploads generation 1's closures; the canary's provisioner
    // fails (stand-in): exit 3, nothing recorded.
    let out = rollback(&["--yes", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let plan = events(&out).into_iter().find_map(|e| e.get("plan").cloned()).unwrap();
    assert_eq!(plan["rollback_of"], 1);
    assert_eq!(plan["waves"][0]["hosts"][0]["closure"], a["a"].as_str());
    assert_eq!(plan["waves"][0]["hosts"][0]["upload"], true);
    assert_eq!(summary(&out)["untouched"], serde_json::json!(["b", "c", "d", "e"]));
    assert_eq!(kiln::generations::list(&t.join("state")).unwrap().len(), 2);
    // Every host at generation 1's closures (standing in for the provisioner): the rollback
    // completes, exit 0, recorded as generation 3 marked as a rollback of 1.
    set_all(&a);
    let out = rollback(&["1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["generation"], 3);
    let gens = kiln::generations::list(&t.join("state")).unwrap();
    assert_eq!(gens[2].rollback_of, Some(1));
    assert_eq!(gens[2].hash, gens[0].hash);
    assert_eq!(gens[2].hosts, a);
    let recorded = std::fs::read_to_string(t.join("state/generations/3.json")).unwrap();
    assert!(recorded.contains("\"rollback_of\": 1"), "{recorded}");
    assert!(rollback(&["7"]).status.code() == Some(2) && text(&rollback(&["7"]).stderr).contains("no generation 7"));

    // --from a result: build B deployed without building; the source is now A's plus the
    // admin, so it matches B.
    set_all(&b);
    let out = root_deploy(t, &sys, &["--from", result_a.to_str().unwrap(), "--json"]);
    // A's build lacks the admin but has the same hosts and services: deployable; the hosts
    // are at B, so it would change them: here with --json and no --yes, refused (exit 4).
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let out = root_deploy(t, &sys, &["--from", t.join("result-b").to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["generation"], 4);
    assert_eq!(kiln::generations::list(&t.join("state")).unwrap()[3].hosts, b);
    // A build of another system is refused, naming both.
    let other = t.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("system.toml"), "[system]\nname = \"other\"\n\n[providers.own]\nkind = \"existing\"\n\n[hosts.x]\nprovider = \"own\"\nimage = \"debian-12\"\npublic = true\naddress = \"192.0.2.99\"\n").unwrap();
    let link = build_with_modules(&modules(), &other, &t.join("store"), &t.join("result-other"));
    let out = root_deploy(t, &sys, &["--from", link.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is a build of system `other`, not of `five`"), "{}", text(&out.stderr));
}

// --- the real thing: a lab VM as an existing server ----------------------------------------

/// The bare server: the base image with an admin (`kiln`, passwordless sudo, the test's key)
/// and nothing of kiln, kept running.
fn bare_server(t: &Path, public_key: &str) -> vm::Machine {
    let user_data = format!(
        "#cloud-config\nhostname: web\nssh_pwauth: false\nusers:\n  - name: kiln\n    groups: sudo\n    shell: /bin/bash\n    sudo: ALL=(ALL) NOPASSWD:ALL\n    lock_passwd: true\n    ssh_authorized_keys:\n      - {public_key}\n"
    );
    #[allow(clippy::disallowed_methods)] // the test finds the image cache as the command line does
    let cache = std::env::var_os("KILN_IMAGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/kiln/images"));
    let opts = kiln::boot::BootOptions {
        image_dir: cache.join("debian-12"),
        keep: true,
        memory_mb: 1024,
        timeout: std::time::Duration::from_secs(900),
        kiln_exe: PathBuf::from(env!("CARGO_BIN_EXE_kiln")),
        secrets: Default::default(),
        data_disk: None,
        lab_images: None,
        apt_repo: None,
        ssh_port: 22,
        cpus: 2,
    };
    let _ = t;
    let report =
        kiln::boot::boot("web", &"0".repeat(64), user_data.as_bytes(), &opts).unwrap_or_else(|e| panic!("booting the bare server: {e}"));
    let report = serde_json::to_value(&report).unwrap();
    eprintln!("bare server up after {:.0} s", report["boot_seconds"].as_f64().unwrap_or(0.0));
    vm::Machine::from_report(&report)
}

#[test]
fn an_existing_server_deploys_skips_redeploys_and_refuses_a_changed_key() {
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::create_dir_all(t.join("tmp")).unwrap();
    let (sys, key) = vm::fixture(&repo().join("tests/fixtures/boot/web"), t);
    let public = std::fs::read_to_string(t.join("key.pub")).unwrap().trim().to_string();
    let machine = bare_server(t, &public);
    assert!(vm::ssh(&key, machine.ssh, "test -e /opt/kiln || echo none").contains("none"), "nothing of kiln on the server");
    // The operator reads the server's key on its console; here the serial console's stand-in
    // is the key file read over the admin's first login.
    // (sshd reloaded first: the test image's sshd may still serve the keys it started with
    // before cloud-init wrote new ones; a server in service serves its key files.)
    let host_pub = vm::ssh(&key, machine.ssh, "sudo systemctl reload ssh && sleep 1 && cat /etc/ssh/ssh_host_ed25519_key.pub");
    let host_pub: String = host_pub.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    eprintln!("the server's ed25519 key: {}", fingerprint(&host_pub));
    std::fs::write(
        t.join("ssh_config"),
        format!("Host 10.0.2.15\n  HostName 127.0.0.1\n  Port {}\n  IdentityFile {}\n  IdentitiesOnly yes\n", machine.ssh, key.display()),
    )
    .unwrap();
    let id = identity();
    let id = id.to_str().unwrap();
    let secret = token(&sys);
    let mut outputs: Vec<Output> = Vec::new();
    // The route gate requests `hello.test` at the server's HTTPS port as forwarded to this
    // machine (its declared address, 10.0.2.15, is the guest's own).
    let via = format!("web=127.0.0.1:{}", machine.https);

    // First deploy, the key vouched for by its fingerprint.
    let trust = format!("web={}", fingerprint(&host_pub));
    let out = deploy(t, &sys, &["--identity", id, "--trust-host-key", &trust, "--route-address", &via, "--json", "--yes"]);
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(0), "first deploy: {s}\n{}", text(&out.stderr));
    assert_eq!(s["deployed"], serde_json::json!(["web"]));
    assert_eq!(s["generation"], 1);
    let closure = manifest(&t.join("store").join(s["entry"].as_str().unwrap()))["hosts"]["web"]["closure"].as_str().unwrap().to_string();
    assert_eq!(vm::ssh(&key, machine.ssh, "sudo cat /var/lib/kiln/closure").trim(), closure);
    assert_eq!(vm::ssh(&key, machine.ssh, "sudo cat /etc/hello/token"), secret, "the secret reached the service");
    assert_eq!(
        vm::ssh(&key, machine.ssh, "sudo stat -c '%a %U' /etc/kiln/secrets /etc/kiln/secrets/hello_token").trim(),
        "700 root\n400 root"
    );
    let page = || {
        let o = Command::new("curl")
            .args(["-sk", "--max-time", "20", "--resolve", &format!("hello.test:{}:127.0.0.1", machine.https)])
            .arg(format!("https://hello.test:{}/", machine.https))
            .output()
            .unwrap();
        text(&o.stdout)
    };
    assert!(page().contains("hello from kiln"), "the route answers: {}", page());
    let steps: Vec<String> = events(&out).iter().filter(|e| e["host"] == "web").map(|e| format!("{} {}", e["step"], e["state"])).collect();
    for want in ["\"upload\" \"done\"", "\"secrets\" \"done\"", "\"converge\" \"done\"", "\"health\" \"done\"", "\"routes\" \"done\""] {
        assert!(steps.iter().any(|s| s == want), "{want} in {steps:?}");
    }
    outputs.push(out);

    // Again: nothing to do, exit 0, no new generation.
    let t0 = std::time::Instant::now();
    let out = deploy(t, &sys, &["--identity", id, "--route-address", &via, "--json"]);
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(0), "second deploy: {s}\n{}", text(&out.stderr));
    assert_eq!(s["skipped"], serde_json::json!(["web"]), "{s}");
    assert_eq!(s["generation"], 1);
    eprintln!("an unchanged deploy took {:.1} s", t0.elapsed().as_secs_f64());
    outputs.push(out);

    // A changed option: redeployed to the new closure.
    let f = sys.join("system.toml");
    let text0 = std::fs::read_to_string(&f).unwrap();
    std::fs::write(
        &f,
        text0.replace(
            "secrets = { token = \"hello_token\" }",
            "secrets = { token = \"hello_token\" }\noptions = { message = \"deployed again\" }",
        ),
    )
    .unwrap();
    let out = deploy(t, &sys, &["--identity", id, "--route-address", &via, "--json", "--yes"]);
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(0), "third deploy: {s}\n{}", text(&out.stderr));
    assert_eq!(s["deployed"], serde_json::json!(["web"]));
    assert_eq!(s["generation"], 2);
    let closure2 = manifest(&t.join("store").join(s["entry"].as_str().unwrap()))["hosts"]["web"]["closure"].as_str().unwrap().to_string();
    assert_ne!(closure2, closure);
    assert_eq!(vm::ssh(&key, machine.ssh, "sudo cat /var/lib/kiln/closure").trim(), closure2);
    assert!(page().contains("deployed again"), "the route answers with the new page: {}", page());
    outputs.push(out);

    // Secret rotation alone: `kiln secrets push` re-delivers (the value on the host is replaced
    // by a wrong one first, so the push has something to do) and restarts the service.
    vm::ssh(&key, machine.ssh, "printf stale | sudo tee /etc/kiln/secrets/hello_token >/dev/null");
    let mut cmd = kiln();
    cmd.arg("--modules").arg(modules()).args(["--identity", id, "secrets", "push", "web"]).arg(&sys);
    cmd.arg("--store").arg(t.join("store")).arg("--state").arg(t.join("state")).arg("--ssh-config").arg(t.join("ssh_config"));
    cmd.env("TMPDIR", t.join("tmp"));
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "secrets push: {}", text(&out.stderr));
    assert_eq!(vm::ssh(&key, machine.ssh, "sudo cat /etc/kiln/secrets/hello_token"), secret);
    assert_eq!(vm::ssh(&key, machine.ssh, "sudo cat /etc/hello/token"), secret);
    outputs.push(out);

    // `kiln rollback`: back to generation 1 through the same path, the provisioner run for
    // real; exit 0 only at generation 1's closure, recorded as generation 3 marked as such.
    let mut cmd = kiln();
    cmd.arg("--modules")
        .arg(modules())
        .args(["--identity", id, "rollback", "--yes", "--json", "--route-address", &via, "--system"])
        .arg(&sys);
    cmd.arg("--store").arg(t.join("store")).arg("--state").arg(t.join("state")).arg("--ssh-config").arg(t.join("ssh_config"));
    cmd.env("TMPDIR", t.join("tmp"));
    let out = run(&mut cmd);
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(0), "rollback: {s}\n{}", text(&out.stderr));
    assert_eq!(s["generation"], 3);
    assert_eq!(s["rollback_of"], 1);
    assert_eq!(vm::ssh(&key, machine.ssh, "sudo cat /var/lib/kiln/closure").trim(), closure);
    assert!(page().contains("hello from kiln") && !page().contains("deployed again"), "the old page again: {}", page());
    outputs.push(out);

    // No secret value on this side: state, store, temp directory, kiln's output.
    let needle = secret.as_bytes();
    for dir in [t.join("state"), t.join("store"), t.join("tmp")] {
        assert_eq!(holding(&dir, needle), Vec::<String>::new(), "secret found under {}", dir.display());
    }
    for o in &outputs {
        assert!(!o.stdout.windows(needle.len()).any(|w| w == needle) && !o.stderr.windows(needle.len()).any(|w| w == needle));
    }

    // The server's key changes (a pin of another key stands in for a rebuilt or impostor
    // server): refused, the host and step named, the server untouched.
    let other = sshd::keygen(&t.join("impostor"));
    std::fs::write(t.join("state/known_hosts"), format!("web {other}\n")).unwrap();
    let out = deploy(t, &sys, &["--identity", id, "--yes"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    let now = vm::ssh(&key, machine.ssh, "for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf \"$f\"; done");
    assert!(
        err.contains("host `web`, step connect: host key changed")
            && err.contains(&fingerprint(&other))
            && err.contains(&fingerprint(&host_pub)),
        "{err}\nthe server's keys now:\n{now}\nthe key read before the first deploy: {}",
        fingerprint(&host_pub)
    );
    assert_eq!(vm::ssh(&key, machine.ssh, "sudo cat /var/lib/kiln/closure").trim(), closure);
    eprintln!("the VM deploy test took {:.0} s", started.elapsed().as_secs_f64());
    drop(machine);
}
