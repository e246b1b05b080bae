//! An endpoint that needs HTTP/2 end to end (`h2c = true`, as ZITADEL's gRPC API does) is
//! proxied over h2c by both edges, run for real on loopback: the upstream is Caddy serving h1
//! and h2c and answering with the protocol each request reached it over. A client speaking
//! HTTP/1.1 to the edge still reaches the upstream over HTTP/2; the same route to an endpoint
//! without `h2c` reaches it over HTTP/1.1 (the control that shows the probe can tell).

mod common;

use std::path::Path;
use std::process::Command;

use common::edges::{Proc, free_port, run_caddy, run_traefik, spawn_caddy, wait_for};
use common::*;

/// Caddy on loopback speaking HTTP/1.1 and h2c (no TLS), answering every request, whatever its
/// Host, with the protocol it arrived over (`HTTP/1.1` or `HTTP/2.0`).
fn protocol_echo(tmp: &Path) -> (u16, Proc) {
    let port = free_port();
    let caddyfile = tmp.join("echo.Caddyfile");
    std::fs::write(
        &caddyfile,
        format!("{{\n\tadmin off\n\tservers {{\n\t\tprotocols h1 h2c\n\t}}\n}}\n\nhttp://:{port} {{\n\tbind 127.0.0.1\n\trespond \"{{http.request.proto}}\"\n}}\n"),
    )
    .unwrap();
    let proc = spawn_caddy(&caddyfile, &["--adapter", "caddyfile"], &tmp.join("echo-xdg"), tmp);
    wait_for("the protocol echo", || get("127.0.0.1", port, "http").is_some());
    (port, proc)
}

/// The body of GET / on `host` at 127.0.0.1:port, over HTTP/1.1 (None when nothing answers 200).
fn get(host: &str, port: u16, scheme: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sk", "--http1.1", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("{scheme}://{host}:{port}/"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    (code == "200").then(|| body.to_string())
}

/// A one-host system: `edge_module` and two routes, `grpc.example.com` to an h2c endpoint and
/// `web.example.com` to the same service's plain HTTP endpoint.
fn system(edge_module: &str) -> String {
    format!(
        "{}\n[networks.private]\ncidr = \"10.0.0.0/24\"\n\n[hosts.edge]\nprovider = \"hetzner\"\nimage = \"debian-12\"\npublic = true\nnetworks = {{ private = \"10.0.0.2\" }}\n\n[services.proxy]\nmodule = \"{edge_module}\"\nhost = \"edge\"\n\n[services.api]\nmodule = \"grpc\"\nhost = \"edge\"\n\n[routes.\"grpc.example.com\"]\nservice = \"api\"\nendpoint = \"api\"\n\n[routes.\"web.example.com\"]\nservice = \"api\"\nendpoint = \"web\"\n",
        preamble("h2c")
    )
}

fn build_system(edge_module: &str, tmp: &Path) -> std::path::PathBuf {
    let sys = tmp.join("sys");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(sys.join("system.toml"), system(edge_module)).unwrap();
    build_with_modules(&repo().join("tests/fixtures/modules"), &sys, &tmp.join("store"), &tmp.join("out"))
}

#[test]
fn traefik_proxies_an_h2c_endpoint_over_http2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build_system("tedge", tmp.path());
    let dynamic = read(&out.join("hosts/edge/traefik/dynamic/kiln.yml"));
    assert!(dynamic.contains("h2c://"), "the h2c endpoint's service URL:\n{dynamic}");
    let (echo, _echo) = protocol_echo(tmp.path());
    let traefik = run_traefik(&out.join("hosts/edge"), echo, tmp.path());
    traefik.assert_no_errors();
    wait_for("the h2c route", || get("grpc.example.com", traefik.websecure, "https").is_some());
    assert_eq!(get("grpc.example.com", traefik.websecure, "https").as_deref(), Some("HTTP/2.0"));
    assert_eq!(get("web.example.com", traefik.websecure, "https").as_deref(), Some("HTTP/1.1"), "the control route");
}

#[test]
fn caddy_proxies_an_h2c_endpoint_over_http2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build_system("caddy", tmp.path());
    let caddyfile = out.join("hosts/edge/Caddyfile");
    assert!(read(&caddyfile).contains("h2c://"), "the h2c endpoint's upstream:\n{}", read(&caddyfile));
    let (echo, _echo) = protocol_echo(tmp.path());
    let caddy = run_caddy(&caddyfile, echo, tmp.path());
    wait_for("the h2c route", || get("grpc.example.com", caddy.https, "https").is_some());
    assert_eq!(get("grpc.example.com", caddy.https, "https").as_deref(), Some("HTTP/2.0"));
    assert_eq!(get("web.example.com", caddy.https, "https").as_deref(), Some("HTTP/1.1"), "the control route");
}
