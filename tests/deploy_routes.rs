//! The route gate of `kiln deploy` (src/deploy/routes.rs) against the real Caddy: the boot
//! fixture (tests/fixtures/boot/web: native Caddy in front of `hello.test`, `tls = "internal"`)
//! is built, and its rendered Caddyfile run by Caddy on loopback (listeners and upstream moved
//! by tests/common/edges.rs). The gate requests `hello.test` pinned to Caddy's address, as it
//! would pin it to the host's public address before DNS is cut over: with the upstream up it
//! passes; with nothing behind Caddy it fails naming the route and the 502; with nothing
//! listening it fails naming the connection error; an upstream that comes up while it waits
//! passes. `deploy::apply` runs the gate after the health gate and fails the host at step
//! `routes`. Which routes a host's edge serves (the tunnelled ones left out) is read from real
//! compiled systems.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::edges::{free_port, run_caddy, spawn_caddy, wait_for};
use common::*;
use kiln::deploy::progress::{Mode, Progress, State};
use kiln::deploy::routes::{self, Answer, RouteProbe};
use kiln::deploy::{self as d, Step, Timeouts};
use kiln::pipeline::{Compiled, Options, Outcome, compile};
use sha2::Digest;

fn boot_web() -> PathBuf {
    repo().join("tests/fixtures/boot/web")
}

fn compiled(system: &Path, modules: Option<&Path>, identity: bool) -> Compiled {
    let opts = Options {
        module_dirs: modules.map(|m| vec![m.to_path_buf()]).unwrap_or_default(),
        identity: identity.then(|| std::fs::read_to_string(examples_identity()).unwrap()),
        ..Options::default()
    };
    match compile(system, &opts).unwrap() {
        Outcome::Ok(c) => *c,
        Outcome::Failed(f) => panic!("{:?}", f.diagnostics),
    }
}

/// The boot fixture compiled and written to a store under `t`: the compiled system and its
/// store entry.
fn boot_build(t: &Path) -> (Compiled, PathBuf) {
    let c = compiled(&boot_web(), Some(&repo().join("tests/fixtures/boot/modules")), false);
    let store = kiln::store::Store::open(&t.join("store")).unwrap();
    let entry = kiln::pipeline::write(&c, &store).unwrap();
    (c, entry)
}

/// An upstream on `port` answering 200 to everything, started now.
fn upstream_on(port: u16) {
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    common::edges::serve_http(l, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".into());
}

fn quick(health: u64) -> Timeouts {
    Timeouts {
        health: Duration::from_secs(health),
        poll: Duration::from_millis(200),
        note_every: Duration::from_secs(1),
        ..Timeouts::default()
    }
}

fn hello() -> RouteProbe {
    RouteProbe { route: "hello.test".into(), name: "hello.test".into(), acme: false }
}

/// Caddy serving the boot fixture's rendered Caddyfile on loopback in front of `upstream`,
/// once it answers `hello.test` over TLS (with any status).
fn caddy(t: &Path, entry: &Path, upstream: u16) -> (common::edges::Caddy, SocketAddr) {
    let caddy = run_caddy(&entry.join("hosts/web/Caddyfile"), upstream, t);
    let addr: SocketAddr = format!("127.0.0.1:{}", caddy.https).parse().unwrap();
    wait_for("Caddy to answer hello.test over TLS", || {
        !matches!(routes::request(&hello(), addr, Duration::from_secs(2)), Answer::Error(_))
    });
    (caddy, addr)
}

fn events(p: &Progress) -> Vec<(Step, State, String)> {
    p.log.lock().unwrap().iter().map(|e| (e.step, e.state, e.message.clone())).collect()
}

#[test]
fn the_gate_passes_through_caddy_fails_on_502_and_on_no_edge() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (c, entry) = boot_build(t);
    let plan = routes::probes(&c.system, "web");
    assert_eq!(plan.probes, [hello()], "{plan:?}");
    assert!(plan.left_out.is_empty());

    let port = free_port();
    let (_caddy, addr) = caddy(t, &entry, port);

    // Nothing behind Caddy: it answers 502, the gate fails naming the route and the status.
    let p = Progress::new(Mode::Plain, &[]);
    let f = routes::check("web", addr, &plan, &quick(2), &p).unwrap_err();
    assert_eq!(f.step, Step::Routes);
    assert!(
        f.message.contains("1 of 1 route did not answer")
            && f.message.contains("`hello.test`: status 502: the edge cannot reach the upstream"),
        "{f}"
    );
    assert!(events(&p).iter().any(|(s, st, m)| *s == Step::Routes && *st == State::Started && m.contains("certificate not verified")));

    // The upstream comes up while the gate waits: it passes, saying what answered.
    let p = Progress::new(Mode::Plain, &[]);
    let later = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        upstream_on(port);
    });
    routes::check("web", addr, &plan, &quick(30), &p).unwrap_or_else(|f| panic!("{f}"));
    later.join().unwrap();
    let ev = events(&p);
    assert!(
        ev.iter()
            .any(|(s, st, m)| *s == Step::Routes && *st == State::Done && m.contains("`hello.test` 200") && m.contains("not verified")),
        "{ev:?}"
    );
    assert!(ev.iter().any(|(s, st, _)| *s == Step::Routes && *st == State::Waiting), "it said what it waited for: {ev:?}");

    // No edge at the address: the connection error.
    let nobody: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let p = Progress::new(Mode::Plain, &[]);
    let f = routes::check("web", nobody, &plan, &quick(1), &p).unwrap_err();
    assert!(f.message.contains("`hello.test`: ") && f.message.to_lowercase().contains("connection refused"), "{f}");
}

/// `deploy::apply` runs the route gate after the health gate: a host already at its closure
/// (nothing to upload or provision) whose edge answers 502 fails at step `routes`; once the
/// upstream is there, it is done. The host is this machine (`host::Local`, a temporary layout)
/// and its services' health is not asked (the plan's containers and units are emptied: the
/// health gate has its own tests), so the gate is the only thing that can fail it.
#[test]
fn apply_fails_a_host_whose_route_does_not_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (c, entry) = boot_build(t);
    let value = b"stand-in value".to_vec();
    let values: BTreeMap<String, Vec<u8>> = [("hello_token".to_string(), value.clone())].into();
    let mut plan = d::host_plan(&c.system, &entry, &c.manifest, "web", values).unwrap();
    assert_eq!(plan.route_address, Some("10.0.2.15:443".parse().unwrap()), "the host's declared address, port 443");
    assert_eq!(plan.routes.probes, [hello()]);
    plan.containers.clear();
    plan.units.clear();

    let port = free_port();
    let (_caddy, addr) = caddy(t, &entry, port);
    plan.route_address = Some(addr);
    let probe = d::Probe {
        marker: Some(plan.closure.clone()),
        digests: [("hello_token".to_string(), kiln::render::hex(&sha2::Sha256::digest(&value)))].into(),
    };
    let action = d::decide(&plan, &probe);
    assert!(action.skip(), "{action:?}");
    let layout = d::Layout::under(t.join("host").to_str().unwrap());

    // `apply` then the wave's end (`finish_wave`), as deploy runs them.
    let deploy = |plan: &d::HostPlan, wait: u64, p: &Progress| {
        let mut results = BTreeMap::new();
        results.insert(plan.name.clone(), d::apply(&d::host::Local, plan, &probe, &action, &layout, &quick(wait), p));
        d::finish_wave(&[plan], &mut results, &quick(wait), p);
        results.remove("web").unwrap()
    };
    let p = Progress::new(Mode::Plain, &[]);
    let f = deploy(&plan, 2, &p).unwrap_err();
    assert_eq!((f.host.as_str(), f.step), ("web", Step::Routes), "{f}");
    assert!(f.to_string().contains("host `web`, step routes: ") && f.message.contains("status 502"), "{f}");
    assert!(!events(&p).iter().any(|(s, _, _)| *s == Step::Done), "not done");

    upstream_on(port);
    let p = Progress::new(Mode::Plain, &[]);
    let out = deploy(&plan, 10, &p).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(out, d::Outcome::Skipped);
    let steps: Vec<(Step, State)> = events(&p).iter().map(|(s, st, _)| (*s, *st)).collect();
    let routes_done = steps.iter().position(|x| *x == (Step::Routes, State::Done)).expect("the route gate ran");
    let done = steps.iter().position(|x| *x == (Step::Done, State::Done)).unwrap();
    assert!(routes_done < done, "{steps:?}");

    // Without an address (`--no-route-check`), the gate is skipped and says so.
    plan.route_address = None;
    let p = Progress::new(Mode::Plain, &[]);
    deploy(&plan, 2, &p).unwrap();
    assert!(events(&p).iter().any(|(s, st, m)| *s == Step::Routes && *st == State::Skipped && m.contains("--no-route-check")));
}

/// maidan-cloud: the droplet `maidan` is private and its routes arrive through its Cloudflare
/// tunnel, so its edge serves none on an address (each left out, saying so); `legacy`'s edge
/// serves its routes on its public address.
#[test]
fn tunnelled_routes_are_left_out_with_their_reason() {
    let c = compiled(&repo().join("flake-free-examples/maidan-cloud"), None, true);
    let maidan = routes::probes(&c.system, "maidan");
    assert!(maidan.probes.is_empty(), "{maidan:?}");
    assert!(maidan.left_out.len() >= 18, "{maidan:?}");
    for l in &maidan.left_out {
        assert!(l.reason.starts_with("carried by the Cloudflare tunnel of `"), "{l:?}");
    }
    let legacy = routes::probes(&c.system, "legacy");
    assert!(!legacy.probes.is_empty() && legacy.left_out.is_empty(), "{legacy:?}");
    let declared: Vec<&str> = c.system.routes.iter().filter(|r| r.edge_host == "legacy").map(|r| r.hostname.as_str()).collect();
    for p in &legacy.probes {
        assert!(declared.contains(&p.route.as_str()));
        assert_eq!(p.name, p.route.replace("*.", &format!("{}.", routes::WILDCARD_LABEL)));
    }
    assert_eq!(legacy.probes.len(), declared.len());
}

/// A `tls = "acme"` route before DNS points at the edge: the boot fixture with `tls = "acme"`,
/// its rendered Caddyfile run by Caddy with only its global options changed (loopback ports,
/// an ACME directory nobody answers, state under the test's directory) and the upstream moved.
/// Caddy has no certificate for the name and fails the TLS handshake; the gate then finds the
/// name redirected to HTTPS on the edge's HTTP port and passes, saying "no certificate yet"
/// (weak: Caddy redirects every name there, so this proves the edge answers on both ports, not
/// that it serves the name).
/// Without the HTTP port (a `--route-address` elsewhere) the handshake failure fails the gate.
#[test]
fn an_acme_route_without_its_certificate_yet_passes_over_http_only() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let sys = t.join("web");
    copy_tree(&boot_web(), &sys);
    let toml = std::fs::read_to_string(sys.join("system.toml")).unwrap();
    std::fs::write(sys.join("system.toml"), toml.replace("tls = \"internal\"", "tls = \"acme\"")).unwrap();
    let c = compiled(&sys, Some(&repo().join("tests/fixtures/boot/modules")), false);
    let plan = routes::probes(&c.system, "web");
    assert_eq!(plan.probes, [RouteProbe { acme: true, ..hello() }]);
    let store = kiln::store::Store::open(&t.join("store")).unwrap();
    let entry = kiln::pipeline::write(&c, &store).unwrap();
    let rendered = std::fs::read_to_string(entry.join("hosts/web/Caddyfile")).unwrap();
    assert!(!rendered.contains("tls internal"), "{rendered}");

    let (http, https, up) = (free_port(), free_port(), free_port());
    upstream_on(up);
    let global = format!(
        "admin off\n\thttp_port {http}\n\thttps_port {https}\n\tdefault_bind 127.0.0.1\n\tacme_ca https://127.0.0.1:1/directory\n\tstorage file_system {}",
        t.join("caddy-data").display()
    );
    let caddyfile = rendered.replace("admin localhost:2019", &global).replace("127.0.0.1:8081", &format!("127.0.0.1:{up}"));
    assert_ne!(caddyfile, rendered);
    let file = t.join("Caddyfile");
    std::fs::write(&file, &caddyfile).unwrap();
    let _caddy = spawn_caddy(&file, &["--adapter", "caddyfile"], &t.join("xdg"), t);
    let addr: SocketAddr = format!("127.0.0.1:{https}").parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    wait_for("Caddy to listen", || std::net::TcpStream::connect(addr).is_ok() && std::net::TcpStream::connect(http).is_ok());

    // No fallback: the handshake fails (no certificate for the name).
    let p = Progress::new(Mode::Plain, &[]);
    let f = routes::check_at("web", addr, None, &plan, &quick(2), &p).unwrap_err();
    assert!(f.message.contains("`hello.test`: ") && !f.message.contains("status"), "a TLS error, no HTTP status: {f}");

    // The edge's HTTP port redirects the name to HTTPS: passes, saying so.
    let p = Progress::new(Mode::Plain, &[]);
    routes::check_at("web", addr, Some(http), &plan, &quick(10), &p).unwrap_or_else(|f| panic!("{f}"));
    let ev = events(&p);
    assert!(
        ev.iter()
            .any(|(s, st, m)| *s == Step::Routes && *st == State::Done && m.contains("`hello.test` 308 over HTTP, no certificate yet")),
        "{ev:?}"
    );

    // An HTTP port that answers without redirecting the name to HTTPS (here the upstream's):
    // still failing, saying what it got.
    let not_an_edge: SocketAddr = format!("127.0.0.1:{up}").parse().unwrap();
    let p = Progress::new(Mode::Plain, &[]);
    let f = routes::check_at("web", addr, Some(not_an_edge), &plan, &quick(2), &p).unwrap_err();
    assert!(f.message.contains("over HTTP the edge answered 200 without a redirect to https://hello.test"), "{f}");
}

/// `--route-address` is checked before any host is reached: a host the system does not have and
/// an address without a port are usage errors (exit 2) naming the flag.
#[test]
fn route_address_mistakes_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    for (arg, want) in [
        ("nohost=127.0.0.1:443", "--route-address names `nohost`, which is not a host of system `boot-web`"),
        ("web=127.0.0.1", "--route-address `web=127.0.0.1`: `127.0.0.1` is not ADDRESS:PORT"),
        ("web", "--route-address `web`: expected HOST=ADDRESS:PORT"),
    ] {
        let mut cmd = kiln();
        cmd.arg("--modules").arg(repo().join("tests/fixtures/boot/modules")).arg("--identity").arg(examples_identity());
        cmd.arg("deploy").arg(boot_web()).arg("--store").arg(t.join("store")).arg("--state").arg(t.join("state"));
        cmd.args(["--yes", "--route-address", arg]);
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(2), "{arg}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(want), "{arg}: {}", text(&out.stderr));
        assert!(!t.join("state").exists(), "nothing written to the state before the check");
    }
}
