//! The edge proxies run for real: the generated Traefik and Caddy configurations are started
//! on loopback (only ports, paths and upstream addresses are rewritten, as data), every route
//! reaches a test upstream and answers with the security headers, and Traefik reports no
//! configuration errors or warnings.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::edges::{api_get, build_fixture, run_caddy, run_traefik, wait_for};
use serde_json::json;

/// An HTTP upstream on loopback that answers every request and records the paths it saw.
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

fn upstream() -> Upstream {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || serve(stream, log));
        }
    });
    Upstream { port, seen }
}

fn serve(mut s: TcpStream, log: Arc<Mutex<Vec<String>>>) {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut first = String::new();
    if r.read_line(&mut first).is_err() {
        return;
    }
    let mut line = String::new();
    while r.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
    log.lock().unwrap().push(path.clone());
    let body = format!("hello from upstream {path}");
    let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
}

/// `curl` against `host` at 127.0.0.1:port; returns (status, headers, body).
fn curl(scheme: &str, host: &str, port: u16) -> (u16, String, String) {
    curl_path(scheme, host, port, "/")
}

fn curl_path(scheme: &str, host: &str, port: u16, path: &str) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-D", "-", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("{scheme}://{host}:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn traefik_serves_every_route_with_no_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build_fixture(&common::repo().join("tests/fixtures/edges/traefik"), tmp.path());
    let up = upstream();
    let traefik = run_traefik(&result.join("hosts/edge"), up.port, tmp.path());
    traefik.assert_no_errors();
    let (web, websecure, routers) = (traefik.web, traefik.websecure, &traefik.routers);
    let listed = api_get(traefik.api, "/api/http/routers");
    for name in routers {
        let r = listed.as_array().unwrap().iter().find(|r| r["name"] == format!("{name}@file"));
        assert_eq!(r.map(|r| r["status"].clone()), Some(json!("enabled")), "router {name}: {listed}");
    }
    for host in ["www.example.com", "anything.example.com"] {
        let (status, headers, body) = curl("https", host, websecure);
        assert_eq!(status, 200, "{host}: {headers}{body}");
        assert!(body.starts_with("hello from upstream"), "{host}: {body}");
        assert!(headers.contains("strict-transport-security: max-age=31536000"), "{host}: {headers}");
        assert!(headers.contains("x-content-type-options: nosniff"), "{host}: {headers}");
    }
    // forward auth: the gate is asked first; its own pages go to it unchecked
    up.seen.lock().unwrap().clear();
    let (status, _, _) = curl("https", "admin.example.com", websecure);
    assert_eq!(status, 200);
    let seen = up.seen.lock().unwrap().clone();
    assert!(seen.first().is_some_and(|p| p.starts_with("/auth")) && seen.iter().any(|p| p == "/"), "checked first: {seen:?}");
    up.seen.lock().unwrap().clear();
    let (status, _, _) = curl_path("https", "admin.example.com", websecure, "/gate/start");
    assert_eq!(status, 200);
    let seen = up.seen.lock().unwrap().clone();
    assert_eq!(seen, vec!["/gate/start".to_string()], "the gate's own page is not checked");
    // the allow-list keeps loopback out of the intranet route, and out of a gated route's
    // gate pages as well as the route itself
    let (status, _, _) = curl("https", "intranet.example.com", websecure);
    assert_eq!(status, 403);
    up.seen.lock().unwrap().clear();
    for path in ["/", "/gate/start"] {
        let (status, _, _) = curl_path("https", "staff.example.com", websecure, path);
        assert_eq!(status, 403, "staff.example.com{path} from outside its allow-list");
    }
    assert!(up.seen.lock().unwrap().is_empty(), "nothing reached the gate or the app: {:?}", up.seen.lock().unwrap());
    // plain HTTP is redirected to HTTPS
    let (status, headers, _) = curl("http", "www.example.com", web);
    assert!(status == 301 || status == 308, "{status}: {headers}");
    assert!(headers.contains("location: https://www.example.com"), "{headers}");
}

#[test]
fn caddy_serves_every_route_through_forward_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build_fixture(&common::repo().join("flake-free-examples/five-vps-saas"), tmp.path());
    let up = upstream();
    let caddy = run_caddy(&result.join("hosts/edge/Caddyfile"), up.port, tmp.path());
    let https = caddy.https;
    wait_for("caddy to serve", || curl("https", "app.example.com", https).0 == 200);
    for host in ["app.example.com", "auth.example.com", "admin.example.com"] {
        let (status, headers, body) = curl("https", host, https);
        assert_eq!(status, 200, "{host}: {headers}{body}");
        assert!(body.starts_with("hello from upstream"), "{host}: {body}");
        assert!(headers.contains("strict-transport-security: max-age=31536000"), "{host}: {headers}");
        assert!(headers.contains("x-content-type-options: nosniff"), "{host}: {headers}");
    }
    let seen = up.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|p| p == "/outpost.goauthentik.io/auth/caddy"), "admin.example.com went through forward auth: {seen:?}");

    // Prometheus on identity scrapes the edge at the address and port kiln wrote into its
    // configuration: Caddy answers there with its metrics (a site of its own; the admin API,
    // which would take configuration changes from whoever reaches it, stays on localhost)
    let prometheus = std::fs::read_to_string(result.join("hosts/identity/files/prometheus/prometheus.yml")).unwrap();
    assert!(prometheus.contains("10.0.0.2:2020"), "identity's Prometheus scrapes the edge's metrics site: {prometheus}");
    let caddyfile = std::fs::read_to_string(result.join("hosts/edge/Caddyfile")).unwrap();
    assert!(caddyfile.contains("admin localhost:2019"), "{caddyfile}");
    let (status, _, body) = curl_path("http", "10.0.0.2", caddy.others[&2020], "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("caddy_config_last_reload_successful 1"), "Caddy's own metrics: {body}");
}

/// (curl's exit code, the HTTP status) of a request to `host` on 127.0.0.1:port with curl's
/// TLS version flags `tls`.
fn curl_tls(host: &str, port: u16, tls: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(tls)
        .arg(format!("https://{host}:{port}/"))
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn both_edges_refuse_tls_1_2_when_the_minimum_is_1_3() {
    // tls_min_version = "1.3" on a Traefik and a Caddy edge: a client that offers at most
    // TLS 1.2 fails the handshake (curl exit 35), one that speaks TLS 1.3 is served.
    let tmp = tempfile::tempdir().unwrap();
    let result = build_fixture(&common::repo().join("tests/fixtures/edges/tls13"), tmp.path());
    let up = upstream();
    let traefik_dir = tmp.path().join("traefik");
    std::fs::create_dir_all(&traefik_dir).unwrap();
    let traefik = run_traefik(&result.join("hosts/t"), up.port, &traefik_dir);
    traefik.assert_no_errors();
    let caddy_dir = tmp.path().join("caddy");
    std::fs::create_dir_all(&caddy_dir).unwrap();
    let caddy = run_caddy(&result.join("hosts/c/Caddyfile"), up.port, &caddy_dir);
    wait_for("caddy to serve", || curl_tls("c.example.com", caddy.https, &["--tlsv1.3"]).1 == "200");
    for (host, port) in [("t.example.com", traefik.websecure), ("c.example.com", caddy.https)] {
        assert_eq!(curl_tls(host, port, &["--tlsv1.3"]), (0, "200".to_string()), "{host} over TLS 1.3");
        let (code, status) = curl_tls(host, port, &["--tlsv1.2", "--tls-max", "1.2"]);
        assert_eq!(code, 35, "{host} refuses a TLS 1.2 handshake (got HTTP {status})");
    }
    // Caddy holds a route to its allow-list as Traefik does: loopback is refused
    up.seen.lock().unwrap().clear();
    assert_eq!(curl_tls("private-c.example.com", caddy.https, &["--tlsv1.3"]), (0, "403".to_string()));
    for path in ["/", "/gate/start"] {
        let (status, _, _) = curl_path("https", "gated-c.example.com", caddy.https, path);
        assert_eq!(status, 403, "gated-c.example.com{path} from outside its allow-list");
    }
    assert!(up.seen.lock().unwrap().is_empty(), "nothing reached the upstream or the gate: {:?}", up.seen.lock().unwrap());
}

/// A route behind forward auth whose authenticator the edge cannot reach (no private network
/// between their hosts) once built the route without the check: served to anyone. It is now
/// refused, naming both hosts, and the build fails (nothing is served unchecked).
#[test]
fn a_route_whose_authenticator_the_edge_cannot_reach_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    common::copy_tree(&common::repo().join("tests/fixtures/edges/traefik"), &sys);
    let toml = std::fs::read_to_string(sys.join("system.toml")).unwrap();
    let gate = "[services.gate]\nmodule = \"gate\"\nhost = \"app\"\n";
    assert!(toml.contains(gate), "the fixture's gate moved: update this test");
    // The gate on a host of its own, on no network the edge is on.
    let toml = toml.replace(gate, "[services.gate]\nmodule = \"gate\"\nhost = \"vault\"\n")
        + "\n[hosts.vault]\nprovider = \"hetzner\"\nimage = \"debian-12\"\npublic = true\n";
    std::fs::write(sys.join("system.toml"), toml).unwrap();
    let out = common::run(common::kiln().arg("--modules").arg(common::repo().join("tests/fixtures/modules")).arg("check").arg(&sys));
    let err = common::text(&out.stderr);
    assert!(!out.status.success(), "built with routes the edge cannot check:\n{err}");
    assert!(err.contains("error[E0032]: the edge on `edge` cannot reach `gate` on `vault`"), "{err}");
    assert!(err.contains("could not authenticate requests"), "{err}");
}
