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

/// Every file under `dir` that holds `needle`.
fn holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter(|e| std::fs::read(e.path()).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
        .map(|e| e.path().display().to_string())
        .collect()
}

// --- fast: Debian's sshd on loopback ------------------------------------------------------

fn sshd_binary() -> PathBuf {
    let p = repo().join(".test-tools/openssh/usr/sbin/sshd");
    assert!(p.is_file(), "sshd is not unpacked (run scripts/install-test-deps): {}", p.display());
    p
}

fn keygen(path: &Path) -> String {
    let o = run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"]).arg(path));
    assert!(o.status.success(), "{}", text(&o.stderr));
    std::fs::read_to_string(path.with_extension("pub")).unwrap().split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn fingerprint(public: &str) -> String {
    kiln::types::parse_ssh_host_key(public).unwrap().fingerprint()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// sshd on 127.0.0.1:`port` with `host_key`, accepting `client_pub` for any user. As root it
/// runs in its own mount namespace with a private /run (its privilege-separation directory)
/// and an `sshd` user in a copy of /etc/passwd, as in tests/backup_auth.rs.
struct Sshd(std::process::Child);

impl Sshd {
    fn start(dir: &Path, port: u16, host_key: &Path, client_pub: &Path) -> Sshd {
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nStrictModes no\nUsePAM no\n\
PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n",
                host_key.display(),
                client_pub.display(),
                dir.join("sshd.pid").display()
            ),
        )
        .unwrap();
        let passwd = dir.join("passwd");
        let mut users = std::fs::read_to_string("/etc/passwd").unwrap();
        if !users.lines().any(|l| l.starts_with("sshd:")) {
            users.push_str("sshd:x:65534:65534:sshd privilege separation:/run/sshd:/usr/sbin/nologin\n");
        }
        // A login without sudo: kiln must refuse to go on without root.
        users.push_str("deployer:x:65534:65534:no sudo:/tmp:/bin/sh\n");
        std::fs::write(&passwd, users).unwrap();
        let mut cmd = Command::new("unshare");
        cmd.args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs tmpfs /run && mkdir -m 0755 /run/sshd && mount --bind \"$2\" /etc/passwd && exec \"$0\" -D -e -f \"$1\"",
        ])
        .arg(sshd_binary())
        .arg(&config)
        .arg(&passwd);
        cmd.stderr(std::fs::File::create(dir.join(format!("sshd-{port}.log"))).unwrap());
        let server = Sshd(cmd.spawn().expect("start sshd"));
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("sshd did not listen: {}", std::fs::read_to_string(dir.join(format!("sshd-{port}.log"))).unwrap_or_default());
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    keygen(&t.join("client"));
    let host_pub = keygen(&t.join("hostkey"));
    let other_pub = keygen(&t.join("otherkey"));
    let port = free_port();
    ssh_config(t, port);
    let server = Sshd::start(t, port, &t.join("hostkey"), &t.join("client.pub"));

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
    let _server = Sshd::start(t, port, &t.join("otherkey"), &t.join("client.pub"));
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
    keygen(&t.join("client"));
    let host_pub = keygen(&t.join("hostkey"));
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

    // Cloud hosts are not deployed by this path yet: said so, nothing done.
    let cloud = t.join("cloud");
    std::fs::create_dir_all(&cloud).unwrap();
    std::fs::write(
        cloud.join("system.toml"),
        "[system]\nname = \"c\"\n\n[providers.h]\nkind = \"hetzner\"\n\n[hosts.a]\nprovider = \"h\"\nimage = \"debian-12\"\npublic = true\n",
    )
    .unwrap();
    let out = deploy(t, &cloud, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("reaches only existing hosts"), "{}", text(&out.stderr));
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

    // First deploy, the key vouched for by its fingerprint.
    let trust = format!("web={}", fingerprint(&host_pub));
    let out = deploy(t, &sys, &["--identity", id, "--trust-host-key", &trust, "--json"]);
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
    for want in ["\"upload\" \"done\"", "\"secrets\" \"done\"", "\"converge\" \"done\"", "\"health\" \"done\""] {
        assert!(steps.iter().any(|s| s == want), "{want} in {steps:?}");
    }
    outputs.push(out);

    // Again: nothing to do, exit 0, no new generation.
    let t0 = std::time::Instant::now();
    let out = deploy(t, &sys, &["--identity", id, "--json"]);
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
    let out = deploy(t, &sys, &["--identity", id, "--json"]);
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
    let other = keygen(&t.join("impostor"));
    std::fs::write(t.join("state/known_hosts"), format!("web {other}\n")).unwrap();
    let out = deploy(t, &sys, &["--identity", id]);
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
    assert_eq!(vm::ssh(&key, machine.ssh, "sudo cat /var/lib/kiln/closure").trim(), closure2);
    eprintln!("the VM deploy test took {:.0} s", started.elapsed().as_secs_f64());
    drop(machine);
}
