//! The multi-host lab (docs/lab.md): `kiln boot --all --keep` boots the two hosts of
//! tests/fixtures/lab-network, each in its own qemu (TCG), on one private network carrying the
//! addresses the system declares: `edge`, public, the Caddy edge, bastion and NAT gateway, with
//! qemu's NAT as its uplink; `app`, private (`egress = "via:edge"`), with no uplink at all,
//! serving a page on its private address. Judged by the real programs on real kernels:
//! - the route answers from the test through the edge's forwarded port: Caddy on `edge`
//!   reaches `app` over the private network at the address kiln wrote into the Caddyfile;
//! - `app` reaches the outside (an HTTP server this test runs, qemu's `10.0.2.2` from the
//!   edge's uplink) only through its gateway: with kiln's egress route (default via the
//!   network's first address, Hetzner's router, for which the lab's gateway stands in) it
//!   answers, without it nothing does (the seed link is no uplink);
//! - the lab's apt repository (`--apt-repo`, scripts/lab-apt-repo) is reached the same way:
//!   app's provisioner installs prometheus-node-exporter, which the image lacks, with a real
//!   `apt-get` through the gateway; without the route the repository does not answer;
//! - ufw holds the derived rules: the edge reaches app's page but not another port app
//!   listens on, app does not reach the edge's SSH; the gateway masquerades the network;
//! - each host holds its own secrets only; the fleet's work directory holds none;
//! - `kiln boot --down` stops both and removes the work directory.
//!
//! On failure it prints each host's serial tail, `cloud-init status --long` and provisioner
//! log (over SSH; to `app` through `edge` as the jump host).

mod common;
#[path = "common/vm.rs"]
mod vm;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// "The internet": an HTTP server on the test machine's loopback, which qemu's user network
/// shows the edge as 10.0.2.2. Answers every request with `body`.
fn outside(body: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(s, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    port
}

/// The one secret of the fixture, decrypted with the test key.
fn token(sys: &Path) -> String {
    let ids = kiln::sops::load_identities(&read(&repo().join("tests/fixtures/keys/examples.agekey"))).unwrap();
    let sops = read(&sys.join("secrets.sops.yaml"));
    kiln::sops::decrypt(&sops, kiln::sops::Format::Yaml, &ids).unwrap().remove("hello_token").unwrap()
}

/// A TCP connect from `host` to `address:port`, with a short timeout: whether it succeeded.
fn connects(fleet: &vm::Fleet, host: &str, address: &str, port: u16) -> bool {
    let probe = format!("timeout 8 bash -c 'exec 3<>/dev/tcp/{address}/{port}' && echo open || echo closed");
    fleet.sh(host, &probe).trim() == "open"
}

/// Python's urllib on `host` (python3 is on every image; curl is not): the body, or the error.
fn fetch(fleet: &vm::Fleet, host: &str, url: &str) -> String {
    let script = format!(
        "import urllib.request\ntry:\n    print(urllib.request.urlopen({url:?}, timeout=10).read().decode())\nexcept Exception as e:\n    print('refused:', e)\n"
    );
    fleet.sh(host, &format!("python3 -c {}", kiln::render::quote::sh(&script)))
}

/// [`fetch`] on `app` with its default route (kiln's, through the gateway) removed for the
/// moment, then put back; kiln's timer that restores the route is held meanwhile.
fn fetch_without_route(fleet: &vm::Fleet, url: &str) -> String {
    let script = format!(
        "import urllib.request\ntry:\n    urllib.request.urlopen({url:?}, timeout=8); print('reached')\nexcept Exception as e:\n    print('refused:', e)\n"
    );
    fleet.sh(
        "app",
        &format!(
            "sudo systemctl stop kiln-egress.timer; sudo ip route del default; python3 -c {} ; sudo ip route replace default via 10.0.0.1; sudo systemctl start kiln-egress.timer",
            kiln::render::quote::sh(&script)
        ),
    )
}

#[test]
fn a_private_host_routes_through_its_gateway_and_serves_the_edge_over_the_private_network() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (sys, key) = vm::fixture(&repo().join("tests/fixtures/lab-network"), tmp.path());
    // A native service whose package is not in the lab's image: app's provisioner installs it
    // with a real apt-get from the lab's apt repository, which it reaches through edge. (Here,
    // not in the fixture: the test cloud, tests/deploy_cloud.rs, boots the same fixture without
    // a repository.)
    let system = sys.join("system.toml");
    let toml = std::fs::read_to_string(&system).unwrap();
    std::fs::write(&system, format!("{toml}\n[services.node-exporter]\nmodule = \"node-exporter\"\nhost = \"app\"\n")).unwrap();
    let modules = sys.join("modules");
    let result = build_with_modules(&modules, &sys, &tmp.path().join("store"), &tmp.path().join("result"));
    let caddyfile = read(&result.join("hosts/edge/Caddyfile"));
    assert!(caddyfile.contains("reverse_proxy 10.0.0.3:8081"), "kiln wrote app's private address into the edge: {caddyfile}");
    let port = outside("hello from outside");

    let state = tmp.path().join("state");
    let apt = vm::lab_apt_repo("bookworm");
    let out = kiln()
        .arg("--modules")
        .arg(&modules)
        .arg("--identity")
        .arg(repo().join("tests/fixtures/keys/examples.agekey"))
        .args(["boot", "--all"])
        .arg(&sys)
        .args(["--keep", "--json", "--state"])
        .arg(&state)
        .arg("--apt-repo")
        .arg(&apt)
        // app's first qemu crashes (a stand-in aborts it): the fleet starts it again
        .env("PATH", vm::path_with_crashing_qemu(tmp.path(), "kiln-boot-app", 0))
        .output()
        .unwrap();
    // The guard first: whatever kiln printed, what it kept running is stopped at the end.
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let fleet = vm::Fleet::new(report, &state, &key, "edge");
    assert!(!fleet.report.is_null(), "kiln boot printed no report: {}", text(&out.stderr));
    let booted = started.elapsed();
    eprintln!("both hosts booted after {:.0} s", booted.as_secs_f64());
    assert!(out.status.success(), "kiln boot reported problems: {:#}", fleet.report);

    // every host: NoCloud, no warning, provisioner completed at the closure
    for host in ["edge", "app"] {
        let h = fleet.host(host);
        assert!(h["datasource"].as_str().is_some_and(|d| d.starts_with("DataSourceNoCloud")), "{h:#}");
        assert_eq!(h["warnings"], serde_json::json!([]), "{host}: warnings on the serial console");
        let crashes = h["crashes"].as_array().unwrap().len();
        assert_eq!(crashes, usize::from(host == "app"), "{host}: app's first qemu crashed on purpose, once: {h:#}");
        assert_eq!(h["provisioner"], "completed", "{h:#}");
        assert_eq!(h["marker"], h["closure"], "{h:#}");
        assert_eq!(fleet.sh(host, "sudo cat /var/lib/kiln/closure").trim(), h["closure"].as_str().unwrap());
        let status = fleet.sh(host, "cloud-init status --long");
        assert!(status.contains("status: done"), "{host}: {status}");
    }
    // the plan: an uplink with forwarded ports for the edge only; app has a seed link
    assert_eq!(fleet.host("edge")["network"]["nics"][0]["kind"], "uplink");
    assert_eq!(fleet.host("app")["network"]["nics"][0]["kind"], "seed");
    assert!(fleet.host("app")["ports"].as_object().unwrap().is_empty(), "no forwarded port to a private host");
    assert_eq!(fleet.address("app", "private"), "10.0.0.3");
    assert_eq!(fleet.address("edge", "private"), "10.0.0.2");
    assert!(fleet.sh("app", "ip -4 -o addr show").contains("inet 10.0.0.3/24"), "app holds the address kiln gave it");

    // the route, from the test through the edge's forwarded HTTPS port: edge → app over the
    // private network
    let https = fleet.port("edge", "https");
    let page = Command::new("curl")
        .args(["-sk", "--max-time", "30", "--resolve", &format!("hello.test:{https}:127.0.0.1")])
        .arg(format!("https://hello.test:{https}/"))
        .output()
        .unwrap();
    let page = text(&page.stdout);
    assert!(page.contains("hello from kiln") && page.contains("on app"), "the route answers from app: {page}");

    // egress: app's default route is kiln's (through the network's first address, for which
    // the gateway stands in), and the outside answers through the gateway's NAT
    let route = fleet.sh("app", "ip route show default");
    assert!(route.contains("default via 10.0.0.1 dev lan0"), "{route}");
    let url = format!("http://10.0.2.2:{port}/");
    assert_eq!(fetch(&fleet, "app", &url).trim(), "hello from outside", "app reaches the outside through edge");
    let nat = fleet.sh("edge", "sudo iptables -t nat -S POSTROUTING");
    assert!(nat.contains("-A POSTROUTING -s 10.0.0.0/24 -o wan0 -j MASQUERADE"), "{nat}");
    // without kiln's route app reaches nothing: its seed link is no uplink
    let without = fetch_without_route(&fleet, &url);
    assert!(without.starts_with("refused:"), "no route out without the gateway: {without}");
    assert_eq!(fetch(&fleet, "app", &url).trim(), "hello from outside", "the route is back");
    // a route dropped behind kiln's back (systemd-networkd removes the routes it did not make
    // when it restarts) comes back within a minute, from kiln-egress.timer
    let back = fleet.sh(
        "app",
        "sudo ip route del default; for i in $(seq 1 90); do ip route show default | grep -q 'via 10.0.0.1' && { echo \"back after $i s\"; exit 0; }; sleep 1; done; echo gone",
    );
    assert!(back.trim().starts_with("back after"), "kiln-egress.timer puts the route back: {back}");

    // the lab's apt repository, reached like the internet: app's provisioner installed
    // prometheus-node-exporter (not in the image) with a real apt-get through the gateway, and
    // the exporter runs; without the route the repository is unreachable
    let repo = "http://10.0.2.100:8080/Release";
    let installed = fleet.sh("app", "dpkg-query -W -f '${Status} ${Version}' prometheus-node-exporter");
    assert!(installed.starts_with("install ok installed"), "{installed}");
    let log = fleet.sh("app", "sudo cat /var/log/apt/history.log");
    assert!(log.contains("Install: prometheus-node-exporter"), "apt-get installed it at boot: {log}");
    assert!(fleet.sh("app", "systemctl is-active prometheus-node-exporter").trim() == "active");
    assert!(fetch(&fleet, "app", repo).contains("Origin: kiln-lab"), "app reaches the lab's repository through edge");
    let refused = fetch_without_route(&fleet, repo);
    assert!(refused.starts_with("refused:"), "no repository without the way out: {refused}");

    // ufw holds the derived rules, and they are all that is open on the private network
    let app_ufw = fleet.sh("app", "sudo ufw status");
    assert!(app_ufw.contains("22/tcp") && app_ufw.contains("8081/tcp") && app_ufw.contains("10.0.0.2"), "{app_ufw}");
    let edge_ufw = fleet.sh("edge", "sudo ufw status verbose");
    assert!(edge_ufw.contains("ALLOW FWD") && edge_ufw.contains("10.0.0.0/24"), "the NAT route rule: {edge_ufw}");
    fleet.sh("app", "nohup python3 -m http.server --bind 10.0.0.3 9999 >/dev/null 2>&1 & sleep 2");
    assert!(connects(&fleet, "app", "10.0.0.3", 9999), "app listens on 9999 (from itself)");
    assert!(connects(&fleet, "edge", "10.0.0.3", 8081), "edge reaches app's page: the route's rule");
    assert!(!connects(&fleet, "edge", "10.0.0.3", 9999), "edge does not reach a port no rule allows");
    assert!(!connects(&fleet, "app", "10.0.0.2", 22), "app does not reach the edge's SSH (admin sources only)");

    // secrets: each host its own, and none left in the fleet's work directory
    let token = token(&sys);
    assert_eq!(fleet.sh("app", "sudo cat /etc/hello/token"), token);
    assert_eq!(fleet.sh("edge", "sudo ls /etc/kiln/secrets 2>/dev/null | wc -l").trim(), "0", "the edge holds no secret of app's");
    let workdir = std::path::PathBuf::from(fleet.report["workdir"].as_str().unwrap());
    for e in walkdir::WalkDir::new(&workdir).into_iter().filter_map(|e| e.ok()) {
        let meta = e.path().symlink_metadata().unwrap();
        let name = e.file_name().to_string_lossy();
        if meta.is_dir() {
            assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{}", e.path().display());
        }
        if meta.is_file() && !["overlay.qcow2", "data.qcow2"].contains(&name.as_ref()) {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "{} holds a secret", e.path().display());
        }
    }
    assert!(!workdir.join("app/seed/user-data.with-secrets").exists(), "the secrets were served once and removed");

    // kiln boot --down stops both and removes the work directory and the state
    let down = fleet.down();
    assert!(down.contains("lab-network/edge: stopped") && down.contains("lab-network/app: stopped"), "{down}");
    assert!(!workdir.exists(), "the work directory is removed");
    assert!(std::fs::read_dir(&state).unwrap().next().is_none(), "the state file is removed");
    eprintln!("lab_network: {:.0} s in all ({:.0} s booting)", started.elapsed().as_secs_f64(), booted.as_secs_f64());
}

/// The command line of a fleet boot, without booting: what it refuses and says, before any
/// machine or work directory exists.
#[test]
fn fleet_boot_usage_is_checked_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = repo().join("tests/fixtures/lab-network");
    let modules = sys.join("modules");
    let state = tmp.path().join("state");
    let boot = |args: &[&str]| {
        let mut c = kiln();
        c.env("TMPDIR", tmp.path()).arg("--modules").arg(&modules).arg("boot").args(args).arg("--state").arg(&state);
        c.output().unwrap()
    };
    let sys_arg = sys.to_str().unwrap();
    // a host that is not there, with a suggestion
    let out = boot(&["--hosts", "edge,ap", sys_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no host `ap` in system `lab-network` (did you mean `app`?)"), "{}", text(&out.stderr));
    // one-host flags are not fleet flags; a fleet takes only the path
    let out = boot(&["--all", sys_arg, "--data-disk", "x.qcow2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--data-disk boots one host"), "{}", text(&out.stderr));
    // a fleet's stand-in images are a directory of HOST.tar, and an apt repository has its index
    let out = boot(&["--all", sys_arg, "--lab-images", tmp.path().join("images.tar").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("names a directory of HOST.tar archives"), "{}", text(&out.stderr));
    let out = boot(&["--all", sys_arg, "--apt-repo", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no Packages index"), "{}", text(&out.stderr));
    let out = boot(&["--all", "edge", sys_arg]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("takes only the system's PATH"), "{}", text(&out.stderr));
    // an image directory without the image: refused before a work directory exists
    let out = boot(&["--all", sys_arg, "--image", tmp.path().join("none").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no base.raw in"), "{}", text(&out.stderr));
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.iter().all(|n| !n.to_string_lossy().starts_with("kiln-boot-")), "{left:?}");
    // --down with nothing kept
    let out = boot(&["--down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no kept machines recorded"), "{}", text(&out.stderr));
}
