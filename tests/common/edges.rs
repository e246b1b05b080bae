//! The real edges on loopback: Caddy from a generated Caddyfile (adapted by Caddy itself) and
//! Traefik from its generated static and dynamic configuration, with only ports, paths and
//! upstream addresses rewritten, as data, so that every route reaches a test upstream on
//! 127.0.0.1; Traefik's streams (TCP and UDP entry points) likewise, to loopback echo servers.
//! What the edges then answer is the tests' to judge.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{oracle, repo};

/// A test upstream: every request on `l` (its head read) is answered with `response` (a whole
/// HTTP/1.1 response), each connection on its own thread, for as long as the test runs.
pub fn serve_http(l: TcpListener, response: String) {
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let response = response.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = s.write_all(response.as_bytes());
            });
        }
    });
}

/// A port free on loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A UDP port free on loopback right now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running process, killed when dropped.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tool installed by scripts/test-tools.sh into the oracles' virtualenv (caddy, traefik).
pub fn venv(bin: &str) -> PathBuf {
    repo().join(".venv-oracles/bin").join(bin)
}

/// Polls `f` every 200 ms until it holds; panics after 30 s naming `what`.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Builds `system` with the fixture modules (tests/fixtures/modules) into `out/store`; the
/// result is `out/result`.
pub fn build_fixture(system: &Path, out: &Path) -> PathBuf {
    super::build_with_modules(&repo().join("tests/fixtures/modules"), system, &out.join("store"), &out.join("result"))
}

/// A YAML file read as JSON values.
pub fn yaml(path: &Path) -> Value {
    serde_saphyr::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Caddy serving a Caddyfile on loopback, stopped when dropped.
pub struct Caddy {
    /// Where it serves plain HTTP (redirects).
    pub http: u16,
    /// Where it serves HTTPS, with certificates from its internal CA.
    pub https: u16,
    /// Each other port the Caddyfile listens on (its metrics site's), and the free loopback
    /// port that server listens on instead (all of its addresses on one).
    pub others: BTreeMap<u16, u16>,
    _process: Proc,
}

/// Starts Caddy on `caddyfile` (after the `caddy` oracle accepts it): Caddy's own adaptation to
/// JSON, its listeners moved to free loopback ports (80, 443 and each other port to a port of
/// its own, [`Caddy::others`]), every `dial` to `127.0.0.1:upstream`,
/// certificates from its internal CA, state under `tmp`. Returns once started, not once serving.
pub fn run_caddy(caddyfile: &Path, upstream: u16, tmp: &Path) -> Caddy {
    oracle("caddy", caddyfile).unwrap();
    let xdg = tmp.join("xdg");
    let adapted = Command::new(venv("caddy"))
        .args(["adapt", "--adapter", "caddyfile", "--config"])
        .arg(caddyfile)
        .env("XDG_DATA_HOME", &xdg)
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .unwrap();
    assert!(adapted.status.success(), "{}", String::from_utf8_lossy(&adapted.stderr));
    let mut cfg: Value = serde_json::from_slice(&adapted.stdout).unwrap();
    let (http, https) = (free_port(), free_port());
    cfg["admin"] = json!({ "disabled": true });
    cfg["apps"]["http"]["http_port"] = json!(http);
    cfg["apps"]["http"]["https_port"] = json!(https);
    let mut others = BTreeMap::new();
    for (_, srv) in cfg["apps"]["http"]["servers"].as_object_mut().unwrap() {
        let mut listen: Vec<String> = srv["listen"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let port: u16 = l.as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap();
                let to = match port {
                    80 => http,
                    443 => https,
                    other => *others.entry(other).or_insert_with(free_port),
                };
                format!("127.0.0.1:{to}")
            })
            .collect();
        listen.dedup();
        srv["listen"] = json!(listen);
    }
    redirect_dials(&mut cfg["apps"]["http"], upstream);
    cfg["apps"]["tls"] = json!({ "automation": { "policies": [{ "issuers": [{ "module": "internal" }] }] } });
    cfg["apps"]["pki"] = json!({ "certificate_authorities": { "local": { "install_trust": false } } });
    let path = tmp.join("caddy.json");
    std::fs::write(&path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let process = spawn_caddy(&path, &[], &xdg, tmp);
    Caddy { http, https, others, _process: process }
}

/// `caddy run --config CONFIG [extra…]` with its state under `xdg` and `home`, quiet.
pub fn spawn_caddy(config: &Path, extra: &[&str], xdg: &Path, home: &Path) -> Proc {
    Proc(
        Command::new(venv("caddy"))
            .args(["run", "--config"])
            .arg(config)
            .args(extra)
            .env("XDG_DATA_HOME", xdg)
            .env("XDG_CONFIG_HOME", xdg)
            .env("HOME", home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Every `dial` below `v` pointed at the upstream.
fn redirect_dials(v: &mut Value, port: u16) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "dial" {
                    *x = json!(format!("127.0.0.1:{port}"));
                } else {
                    redirect_dials(x, port);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redirect_dials(x, port)),
        _ => {}
    }
}

/// Traefik serving a host's configuration on loopback, stopped when dropped.
pub struct Traefik {
    /// The `web` entry point (plain HTTP).
    pub web: u16,
    /// The `websecure` entry point (HTTPS).
    pub websecure: u16,
    /// Traefik's API (insecure, on loopback only).
    pub api: u16,
    /// The routers of the dynamic configuration, which the API lists once loaded.
    pub routers: Vec<String>,
    /// Each stream's entry point (`stream-NAME`) → the loopback port it was moved to (TCP or
    /// UDP, as its address says).
    pub streams: BTreeMap<String, u16>,
    _process: Proc,
}

/// Where the streams' upstreams listen on loopback: every TCP stream's service is pointed at
/// `tcp`, every UDP stream's at `udp`.
#[derive(Clone, Copy)]
pub struct StreamUpstreams {
    pub tcp: u16,
    pub udp: u16,
}

/// Starts Traefik on a host's `traefik/traefik.yml` and `traefik/dynamic/kiln.yml` (after the
/// oracles accept both): entry points and the API on free loopback ports, the dynamic directory,
/// ACME storage and CA moved under `tmp` (no CA is reachable: it fails fast and serves the
/// default certificate), every service (keeping its scheme) and forward-auth address at
/// `127.0.0.1:upstream`.
/// Returns once Traefik's API lists every router.
pub fn run_traefik(host: &Path, upstream: u16, tmp: &Path) -> Traefik {
    run_traefik_with(host, upstream, None, tmp)
}

/// [`run_traefik`], with every stream entry point (`stream-NAME`, `:PORT/tcp` or `:PORT/udp`)
/// moved to a free loopback port of its protocol and its service's servers at `streams`'
/// upstream of that protocol; returns once the API lists the TCP and UDP routers too.
pub fn run_traefik_with(host: &Path, upstream: u16, streams: Option<StreamUpstreams>, tmp: &Path) -> Traefik {
    oracle("traefik-static", &host.join("traefik/traefik.yml")).unwrap();
    oracle("traefik-dynamic", &host.join("traefik/dynamic/kiln.yml")).unwrap();
    let (web, websecure, internal, api) = (free_port(), free_port(), free_port(), free_port());
    let mut st = yaml(&host.join("traefik/traefik.yml"));
    st["entryPoints"]["web"]["address"] = json!(format!("127.0.0.1:{web}"));
    st["entryPoints"]["websecure"]["address"] = json!(format!("127.0.0.1:{websecure}"));
    st["entryPoints"]["internal"]["address"] = json!(format!("127.0.0.1:{internal}"));
    st["entryPoints"]["traefik"] = json!({ "address": format!("127.0.0.1:{api}") });
    st["api"] = json!({ "insecure": true, "dashboard": false });
    let mut moved = BTreeMap::new();
    for (name, ep) in st["entryPoints"].as_object_mut().unwrap().iter_mut().filter(|(n, _)| n.starts_with("stream-")) {
        let address = ep["address"].as_str().unwrap().to_string();
        let (_, protocol) = address.rsplit_once('/').unwrap_or_else(|| panic!("{name}: {address} names no protocol"));
        let port = if protocol == "udp" { free_udp_port() } else { free_port() };
        ep["address"] = json!(format!("127.0.0.1:{port}/{protocol}"));
        moved.insert(name.clone(), port);
    }
    let dynamic_dir = tmp.join("dynamic");
    std::fs::create_dir_all(&dynamic_dir).unwrap();
    st["providers"]["file"]["directory"] = json!(dynamic_dir);
    for (_, r) in st["certificatesResolvers"].as_object_mut().unwrap() {
        r["acme"]["storage"] = json!(tmp.join("acme.json"));
        r["acme"]["caServer"] = json!("https://127.0.0.1:1/directory");
    }
    let mut dy = yaml(&host.join("traefik/dynamic/kiln.yml"));
    for (_, s) in dy["http"]["services"].as_object_mut().unwrap() {
        // The scheme stays (http, or h2c for an endpoint that needs HTTP/2 end to end).
        let scheme =
            s["loadBalancer"]["servers"][0]["url"].as_str().and_then(|u| u.split_once("://")).map_or("http", |(s, _)| s).to_string();
        s["loadBalancer"]["servers"] = json!([{ "url": format!("{scheme}://127.0.0.1:{upstream}") }]);
    }
    if let Some(middlewares) = dy["http"]["middlewares"].as_object_mut() {
        for (_, m) in middlewares {
            if let Some(addr) = m["forwardAuth"]["address"].as_str() {
                let path = addr.splitn(4, '/').nth(3).unwrap_or("");
                m["forwardAuth"]["address"] = json!(format!("http://127.0.0.1:{upstream}/{path}"));
            }
        }
    }
    let mut stream_routers = BTreeMap::new();
    for protocol in ["tcp", "udp"] {
        // `get_mut`, not indexing: indexing a missing key would add it (as null) to the file
        let Some(services) = dy.get_mut(protocol).and_then(|p| p.get_mut("services")).and_then(Value::as_object_mut) else { continue };
        let up = streams.expect("the configuration has streams: give their upstreams");
        let port = if protocol == "udp" { up.udp } else { up.tcp };
        for (_, s) in services {
            s["loadBalancer"]["servers"] = json!([{ "address": format!("127.0.0.1:{port}") }]);
        }
        stream_routers.insert(protocol, dy.get(protocol).and_then(|p| p.get("routers")).and_then(Value::as_object).map_or(0, |r| r.len()));
    }
    let routers: Vec<String> = dy["http"]["routers"].as_object().unwrap().keys().cloned().collect();
    std::fs::write(tmp.join("traefik.yml"), serde_json::to_string(&st).unwrap()).unwrap();
    std::fs::write(dynamic_dir.join("kiln.yml"), serde_json::to_string(&dy).unwrap()).unwrap();
    let process = Proc(
        Command::new(venv("traefik"))
            .arg(format!("--configFile={}", tmp.join("traefik.yml").display()))
            // a DNS-01 resolver's token, when the configuration names one; nothing reaches Cloudflare
            .env("CF_DNS_API_TOKEN", "test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("traefik's API to list every router", || {
        // Traefik's own routers (`@internal`) are listed before the file provider's are loaded.
        api_get(api, "/api/http/routers")
            .as_array()
            .is_some_and(|a| a.iter().filter(|r| r["name"].as_str().is_some_and(|n| n.ends_with("@file"))).count() >= routers.len())
    });
    for (protocol, n) in stream_routers {
        wait_for("traefik's API to list every stream router", || {
            api_get(api, &format!("/api/{protocol}/routers"))
                .as_array()
                .is_some_and(|a| a.iter().filter(|r| r["name"].as_str().is_some_and(|n| n.ends_with("@file"))).count() >= n)
        });
    }
    Traefik { web, websecure, api, routers, streams: moved, _process: process }
}

impl Traefik {
    /// Traefik's own verdict on the configuration it loaded: no router, service or middleware
    /// with an error or a warning.
    pub fn assert_no_errors(&self) {
        let overview = api_get(self.api, "/api/overview");
        for kind in ["routers", "services", "middlewares"] {
            assert_eq!(overview["http"][kind]["errors"], 0, "{kind}: {overview}");
            assert_eq!(overview["http"][kind]["warnings"], 0, "{kind}: {overview}");
        }
    }
}

impl Traefik {
    /// [`Traefik::assert_no_errors`] for the TCP and UDP routers and services.
    pub fn assert_no_stream_errors(&self) {
        let overview = api_get(self.api, "/api/overview");
        for protocol in ["tcp", "udp"] {
            for kind in ["routers", "services"] {
                assert_eq!(overview[protocol][kind]["errors"], 0, "{protocol} {kind}: {overview}");
                assert_eq!(overview[protocol][kind]["warnings"], 0, "{protocol} {kind}: {overview}");
            }
        }
    }
}

/// A JSON document from Traefik's API, or `Null` while it is not there yet.
pub fn api_get(port: u16, path: &str) -> Value {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return Value::Null };
    if write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return Value::Null;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(Value::Null)
}
