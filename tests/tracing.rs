//! Traefik's request spans to Jaeger (issue 15, seed 003's "Trace Flow"): the traefik module's
//! `tracing` slot (`connects = { tracing = "jaeger" }`) becomes `tracing.otlp.http` in Traefik's
//! static configuration. Jacker's configuration is judged by the real Traefik binary: it loads
//! it (its file loader refuses unknown keys) and, with only the collector's address moved to a
//! loopback listener standing in for Jaeger's OTLP/HTTP receiver, posts the span of a request it
//! served there. The connection is derived like every other: on one host the collector is
//! reached on the shared Compose network and nothing is published or opened; across hosts
//! (tests/fixtures/tracing) the endpoint is the collector's private address and the collector's
//! host opens exactly that port to the edge's address. The slot orders no start: the edge has no
//! `depends_on` on the collector, which starts in a later phase.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use common::edges::{free_port, run_traefik, yaml};
use common::*;
use serde_json::json;

/// One request the collector received: its line, its headers (lowercase) and its body.
type Post = (String, Vec<String>, Vec<u8>);

/// The stand-in collector: accepts OTLP/HTTP posts on loopback, answers 200 with an empty
/// (valid, empty protobuf) body and hands over each request's line, headers and body, the
/// chunked transfer undone and the gzip content encoding decompressed.
fn collector() -> (u16, mpsc::Receiver<Post>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut headers = Vec::new();
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h.trim().is_empty() {
                            break;
                        }
                        headers.push(h.trim().to_ascii_lowercase());
                    }
                    let mut body = Vec::new();
                    if headers.iter().any(|h| h == "transfer-encoding: chunked") {
                        loop {
                            let mut size = String::new();
                            r.read_line(&mut size).unwrap();
                            let n = usize::from_str_radix(size.trim(), 16).unwrap();
                            let mut chunk = vec![0; n + 2];
                            r.read_exact(&mut chunk).unwrap();
                            if n == 0 {
                                break;
                            }
                            body.extend_from_slice(&chunk[..n]);
                        }
                    } else if let Some(n) = headers.iter().find_map(|h| h.strip_prefix("content-length: ")) {
                        body = vec![0; n.parse().unwrap()];
                        r.read_exact(&mut body).unwrap();
                    }
                    if headers.iter().any(|h| h == "content-encoding: gzip") {
                        let mut plain = Vec::new();
                        flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain).unwrap();
                        body = plain;
                    }
                    let _ = write!(w, "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n");
                    let _ = tx.send((line.trim().to_string(), headers, body));
                }
            });
        }
    });
    (port, rx)
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn ufw_lines(provision: &Path) -> Vec<String> {
    oracle("sh", provision).unwrap();
    read(provision)
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("set -- \"$@\" allow") || l.starts_with("set -- \"$@\" route"))
        .map(String::from)
        .collect()
}

/// The Compose file with the root-only env files it names (written by the provisioner on the
/// host from delivered secrets) standing empty under `tmp/env`, so Compose can read it here.
fn with_env_files(compose: &Path, tmp: &Path) -> std::path::PathBuf {
    let text = read(compose);
    std::fs::create_dir_all(tmp.join("env")).unwrap();
    for name in text.split("/etc/kiln/env/").skip(1).filter_map(|rest| rest.split(".env").next()) {
        std::fs::write(tmp.join(format!("env/{name}.env")), "").unwrap();
    }
    let file = tmp.join("compose.yaml");
    std::fs::write(&file, text.replace("/etc/kiln/env/", &format!("{}/env/", tmp.display()))).unwrap();
    file
}

#[test]
fn jacker_traefik_sends_its_request_spans_to_jaeger() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&repo().join("flake-free-examples/jacker"), &tmp.path().join("store"), &tmp.path().join("result"));
    let host = result.join("hosts/jacker");

    // The exact keys: Traefik's OTLP/HTTP exporter at Jaeger's 4318 by its Compose name, in plain
    // HTTP (Traefik's default scheme is https), and nothing else under `tracing`.
    oracle("traefik-static", &host.join("traefik/traefik.yml")).unwrap();
    let st = yaml(&host.join("traefik/traefik.yml"));
    assert_eq!(
        st["tracing"],
        json!({ "serviceName": "traefik", "otlp": { "http": { "endpoint": "http://jaeger:4318/v1/traces" } } }),
        "{st}"
    );

    // The connection on one host: the shared Compose network carries it; Jaeger publishes
    // nothing; Traefik does not wait for it (Jaeger starts in phase 6, Traefik in 2).
    let compose = compose_config(&with_env_files(&host.join("compose.yaml"), tmp.path()));
    let svc = &compose["services"];
    assert!(svc["traefik"]["networks"].get("traefik_proxy").is_some() && svc["jaeger"]["networks"].get("traefik_proxy").is_some());
    assert!(svc["jaeger"].get("ports").is_none(), "{}", svc["jaeger"]);
    assert!(svc["traefik"].get("depends_on").is_none_or(|d| d.get("jaeger").is_none()), "{}", svc["traefik"]);
    let opened = ufw_lines(&host.join("provision.sh"));
    assert!(opened.iter().all(|l| !l.contains("4318") && !l.contains("4317") && !l.contains("jaeger")), "{opened:#?}");

    // The real Traefik: the collector moved to a loopback stand-in, everything else as built.
    let (port, spans) = collector();
    let copy = tmp.path().join("copy");
    std::fs::create_dir_all(copy.join("traefik/dynamic")).unwrap();
    let mut moved = st.clone();
    moved["tracing"]["otlp"]["http"]["endpoint"] = json!(format!("http://127.0.0.1:{port}/v1/traces"));
    std::fs::write(copy.join("traefik/traefik.yml"), serde_json::to_string(&moved).unwrap()).unwrap();
    std::fs::copy(host.join("traefik/dynamic/kiln.yml"), copy.join("traefik/dynamic/kiln.yml")).unwrap();
    // No upstream listens: the gate and the app answer 5xx, and the span is recorded all the same.
    let upstream = free_port();
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let traefik = run_traefik(&copy, upstream, &run);
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "--resolve"])
        .arg(format!("grafana.example.com:{}:127.0.0.1", traefik.websecure))
        .arg(format!("https://grafana.example.com:{}/kiln-trace-probe", traefik.websecure))
        .output()
        .unwrap();
    assert!(!out.stdout.is_empty(), "curl: {}", text(&out.stderr));

    // The batch exporter flushes every 5 s: the post arrives within the wait.
    let (line, headers, body) = spans.recv_timeout(Duration::from_secs(30)).expect("no OTLP post from Traefik");
    assert_eq!(line, "POST /v1/traces HTTP/1.1");
    assert!(headers.iter().any(|h| h == "content-type: application/x-protobuf"), "{headers:?}");
    // The resource's service name, and the request Traefik served.
    assert!(contains(&body, "traefik") && contains(&body, "grafana.example.com"), "{}", String::from_utf8_lossy(&body));
}

#[test]
fn across_hosts_the_collector_host_opens_its_otlp_port_to_the_edge_only() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&repo().join("tests/fixtures/tracing"), &tmp.path().join("store"), &tmp.path().join("result"));

    let static_file = result.join("hosts/edge/traefik/traefik.yml");
    oracle("traefik-static", &static_file).unwrap();
    assert_eq!(yaml(&static_file)["tracing"]["otlp"]["http"]["endpoint"], "http://10.0.0.3:4318/v1/traces");

    // The monitoring host: 4318 from the edge's private address, and only that beside SSH.
    let opened = ufw_lines(&result.join("hosts/mon/provision.sh"));
    let jaeger: Vec<&String> = opened.iter().filter(|l| !l.contains("port 22 ")).collect();
    assert_eq!(
        jaeger,
        vec![
            "set -- \"$@\" allow proto tcp from 10.0.0.2/32 to any port 4318 comment 'traefik on edge connects to jaeger' ';'",
            "set -- \"$@\" route allow proto tcp from 10.0.0.2/32 to any port 4318 comment 'traefik on edge connects to jaeger' ';'",
        ],
        "{opened:#?}"
    );
    // Jaeger publishes its OTLP/HTTP port on the private address only (not gRPC, the UI or
    // metrics).
    let mon = compose_config(&result.join("hosts/mon/compose.yaml"));
    let ports = &mon["services"]["jaeger"]["ports"];
    assert_eq!(ports.as_array().map(Vec::len), Some(1), "{ports}");
    assert_eq!(ports[0]["host_ip"], "10.0.0.3");
    assert_eq!(ports[0]["target"], 4318);
    assert_eq!(ports[0]["published"], "4318");
    // The edge opens nothing for it (its ufw has SSH and the edge's ports only).
    let edge = ufw_lines(&result.join("hosts/edge/provision.sh"));
    assert!(edge.iter().all(|l| !l.contains("4318")), "{edge:#?}");
}
