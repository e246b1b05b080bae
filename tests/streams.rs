//! Streams (`[streams.NAME]`, TCP and UDP through the edge) judged by their consumers: the real
//! Traefik forwards a TCP connection (server speaking first, as SSH and SMTP do) and a UDP
//! datagram to loopback echo servers and refuses a TCP source outside `allow`; Terraform takes
//! the firewall (the stream's port open to its sources only) and its DNS record;
//! `docker-compose config` takes the edge's published ports.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::edges::{StreamUpstreams, build_fixture, run_traefik_with, yaml};
use serde_json::Value;

/// What the TCP echo server says first, before the client sends a byte (as sshd and SMTP do).
const GREETING: &[u8] = b"SSH-2.0-kiln-test\r\n";

/// A TCP server on loopback that greets each connection, then echoes what it reads.
fn tcp_echo() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = s.write_all(GREETING);
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A UDP server on loopback that sends every datagram back, prefixed `echo:`.
fn udp_echo() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&reply, from);
        }
    });
    port
}

/// Connects to a TCP entry point, reads the greeting and has one line echoed; `None` when the
/// edge closes the connection instead.
fn tcp_exchange(port: u16) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < GREETING.len() {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    s.write_all(b"ping\n").ok()?;
    while got.len() < GREETING.len() + 5 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    Some(got)
}

/// Sends a datagram to a UDP entry point until the echo comes back (Traefik's UDP listener may
/// take a moment after its router is listed).
fn udp_exchange(port: u16) -> Vec<u8> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 1500];
    for _ in 0..20 {
        s.send_to(b"query", ("127.0.0.1", port)).unwrap();
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            return buf[..n].to_vec();
        }
    }
    panic!("no datagram came back through UDP entry point {port}");
}

#[test]
fn traefik_forwards_tcp_and_udp_streams_and_refuses_sources_outside_allow() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build_fixture(&common::repo().join("tests/fixtures/edges/streams"), tmp.path());
    let up = StreamUpstreams { tcp: tcp_echo(), udp: udp_echo() };
    let traefik = run_traefik_with(&result.join("hosts/edge"), up.tcp, Some(up), tmp.path());
    traefik.assert_no_errors();
    traefik.assert_no_stream_errors();
    // every stream's router is loaded and enabled
    for (protocol, names) in [("tcp", vec!["stream-cache", "stream-dns-tcp", "stream-sql"]), ("udp", vec!["stream-dns"])] {
        let listed = common::edges::api_get(traefik.api, &format!("/api/{protocol}/routers"));
        for name in names {
            let r = listed.as_array().unwrap().iter().find(|r| r["name"] == format!("{name}@file"));
            assert_eq!(r.map(|r| r["status"].clone()), Some(Value::from("enabled")), "{protocol} router {name}: {listed}");
        }
    }
    // TCP, the server speaking first: the greeting arrives before the client sends, then the echo
    let mut expected = GREETING.to_vec();
    expected.extend_from_slice(b"ping\n");
    for ep in ["stream-cache", "stream-dns-tcp"] {
        let got = tcp_exchange(traefik.streams[ep]);
        assert_eq!(got.as_deref(), Some(expected.as_slice()), "{ep}: {:?}", got.as_deref().map(String::from_utf8_lossy));
    }
    // `sql` allows 198.51.100.0/24 only: loopback is refused by Traefik's TCP allow-list
    assert_eq!(tcp_exchange(traefik.streams["stream-sql"]), None, "a source outside `allow` got through");
    // UDP: the datagram reaches the upstream and its answer comes back
    assert_eq!(udp_exchange(traefik.streams["stream-dns"]), b"echo:query");
}

/// The provider firewall rules Terraform plans for one server, as (port, protocol, sources).
fn planned_rules(plan: &Value, server: &str) -> Vec<(String, String, Vec<String>)> {
    let fw = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "hcloud_firewall" && c["name"] == server)
        .unwrap_or_else(|| panic!("no hcloud_firewall.{server}"));
    fw["change"]["after"]["rule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let sources = r["source_ips"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
            (r["port"].as_str().unwrap().to_string(), r["protocol"].as_str().unwrap().to_string(), sources)
        })
        .collect()
}

#[test]
fn terraform_plans_the_streams_firewall_and_dns_record() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build_fixture(&common::repo().join("tests/fixtures/edges/streams"), tmp.path());
    let plan = common::terraform::plan(&result, tmp.path());
    let edge = planned_rules(&plan, "edge");
    let rule = |port: &str, protocol: &str| {
        edge.iter()
            .find(|(p, pr, _)| p == port && pr == protocol)
            .map(|r| r.2.clone())
            .unwrap_or_else(|| panic!("{port}/{protocol}: {edge:?}"))
    };
    // the office only: no other source is in the rule
    assert_eq!(rule("5433", "tcp"), ["198.51.100.0/24"]);
    // no allow: anyone, over both protocols on one port number
    for protocol in ["tcp", "udp"] {
        assert_eq!(rule("8053", protocol), ["0.0.0.0/0", "::/0"]);
    }
    assert_eq!(rule("6380", "tcp"), ["0.0.0.0/0", "::/0"]);
    // the upstream ports are private traffic: the Hetzner firewall never sees them (ufw does)
    assert!(planned_rules(&plan, "app").is_empty(), "{:?}", planned_rules(&plan, "app"));
    // ufw on the edge: the stream's port from its sources only, for the host and for Docker's DNAT
    let provision = std::fs::read_to_string(result.join("hosts/edge/provision.sh")).unwrap();
    let lines: Vec<&str> =
        provision.lines().map(str::trim).filter(|l| l.starts_with("set -- \"$@\" ") && l.contains("port 5433 ")).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("from 198.51.100.0/24 to any port 5433")), "{lines:?}");
    // the upstream on `app`: only from the edge's private address
    let app = std::fs::read_to_string(result.join("hosts/app/provision.sh")).unwrap();
    let lines: Vec<&str> = app.lines().map(str::trim).filter(|l| l.starts_with("set -- \"$@\" ") && l.contains("port 5432 ")).collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.contains("from 10.0.0.2/32")), "{lines:?}");
    // `db.example.com` (the stream's own name) points at the edge
    let record = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "hcloud_zone_rrset" && c["change"]["after"]["name"] == "db")
        .unwrap_or_else(|| panic!("no record for db.example.com"));
    assert_eq!(record["change"]["after"]["type"], "A");
}

#[test]
fn compose_publishes_the_stream_ports_on_the_edge_only() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build_fixture(&common::repo().join("tests/fixtures/edges/streams"), tmp.path());
    let edge = common::compose_config(&result.join("hosts/edge/compose.yaml"));
    let ports: Vec<(String, String, String)> = edge["services"]["traefik"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["published"].as_str().unwrap().to_string(), p["protocol"].as_str().unwrap().to_string(), p["target"].to_string()))
        .collect();
    for (port, protocol) in [("5433", "tcp"), ("6380", "tcp"), ("8053", "tcp"), ("8053", "udp")] {
        assert!(ports.iter().any(|(p, pr, t)| p == port && pr == protocol && *t == port), "{port}/{protocol}: {ports:?}");
    }
    // the container beside the edge is reached over the Compose network: nothing published
    assert!(edge["services"]["cache"]["ports"].as_array().is_none_or(|p| p.is_empty()), "{}", edge["services"]["cache"]);
    // on `app`, the endpoints are published on the private address only, for the edge
    let app = common::compose_config(&result.join("hosts/app/compose.yaml"));
    for (svc, port, protocol) in [("db", "5432", "tcp"), ("dns", "53", "udp"), ("dns", "53", "tcp")] {
        let ports = app["services"][svc]["ports"].as_array().unwrap();
        assert!(
            ports.iter().any(|p| p["published"] == port && p["protocol"] == protocol && p["host_ip"] == "10.0.0.3"),
            "{svc} {port}/{protocol}: {ports:?}"
        );
    }
}

#[test]
fn the_generated_traefik_configuration_matches_its_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build_fixture(&common::repo().join("tests/fixtures/edges/streams"), tmp.path());
    let host = result.join("hosts/edge/traefik");
    // read back as YAML first: both files are data Traefik parses
    assert!(yaml(&host.join("traefik.yml"))["entryPoints"]["stream-dns"]["address"] == ":8053/udp");
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_snapshot_path("snapshots");
    settings.bind(|| {
        insta::assert_snapshot!("streams__traefik.yml", std::fs::read_to_string(host.join("traefik.yml")).unwrap());
        insta::assert_snapshot!("streams__dynamic__kiln.yml", std::fs::read_to_string(host.join("dynamic/kiln.yml")).unwrap());
    });
}

#[test]
fn kiln_show_and_system_md_name_each_stream_and_why_its_port_is_open() {
    let dir = common::repo().join("tests/fixtures/edges/streams");
    let out =
        common::run(common::kiln().arg("--modules").arg(common::repo().join("tests/fixtures/modules")).arg("show").arg("--json").arg(&dir));
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let show: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sql = show["streams"].as_array().unwrap().iter().find(|s| s["name"] == "sql").unwrap();
    assert_eq!(sql["port"], "5433/tcp");
    assert_eq!(sql["upstream"], "10.0.0.3:5432");
    assert_eq!(sql["allow"], serde_json::json!(["198.51.100.0/24"]));
    let rule = show["hosts"]["edge"]["firewall"].as_array().unwrap().iter().find(|r| r["port"] == 5433).unwrap();
    assert_eq!(rule["reason"], "stream `sql` forwarded by `traefik`");
    let tmp = tempfile::tempdir().unwrap();
    let result = build_fixture(&dir, tmp.path());
    let doc = std::fs::read_to_string(result.join("SYSTEM.md")).unwrap();
    assert!(doc.contains("| `edge` | 5433/tcp | 198.51.100.0/24 | stream `sql` forwarded by `traefik` |"), "{doc}");
    assert!(doc.contains("| `app` | 5432/tcp | 10.0.0.2/32 | stream `sql` from `edge` |"), "{doc}");
    assert!(doc.contains("| `edge` | 6379/tcp to `cache` | `traefik` | stream `cache` | Compose network `default` |"), "{doc}");
    assert!(doc.contains("| `db.example.com` |"), "the stream's name in the DNS table: {doc}");
}

#[test]
fn a_template_stamps_out_a_stream_per_instance() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = r#"
[system]
name = "tenants"
domains = ["example.com"]

[providers.hetzner]
kind = "hetzner"

[templates.tenant.hosts."{instance}"]
provider = "hetzner"
image = "debian-12"
public = true

[templates.tenant.services."{instance}-edge"]
module = "tedge"
host = "{instance}"

[templates.tenant.services."{instance}-db"]
module = "kv"
host = "{instance}"

[templates.tenant.streams."{instance}-kv"]
service = "{instance}-db"
edge = "{instance}-edge"
port = 6380

[instances.acme]
template = "tenant"

[instances.globex]
template = "tenant"
"#;
    std::fs::write(tmp.path().join("system.toml"), sys).unwrap();
    let out = common::run(
        common::kiln().arg("--modules").arg(common::repo().join("tests/fixtures/modules")).arg("show").arg("--json").arg(tmp.path()),
    );
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let show: Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams: Vec<(&str, &str)> =
        show["streams"].as_array().unwrap().iter().map(|s| (s["name"].as_str().unwrap(), s["upstream"].as_str().unwrap())).collect();
    assert_eq!(streams, [("acme-kv", "acme-db:6379"), ("globex-kv", "globex-db:6379")]);
}
