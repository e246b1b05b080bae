//! The edge proxies run for real: the generated Traefik and Caddy configurations are started
//! on loopback (only ports, paths and upstream addresses are rewritten, as data), every route
//! reaches a test upstream and answers with the security headers, and Traefik reports no
//! configuration errors or warnings.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn venv(bin: &str) -> std::path::PathBuf {
    common::repo().join(".venv-oracles/bin").join(bin)
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

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn build(system: &Path, out: &Path) -> std::path::PathBuf {
    common::build_with_modules(&common::repo().join("tests/fixtures/modules"), system, &out.join("store"), &out.join("result"))
}

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A JSON document from Traefik's API, or `Null` while it is not there yet.
fn http_get(port: u16, path: &str) -> Value {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return Value::Null };
    if write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return Value::Null;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(Value::Null)
}

#[test]
fn traefik_serves_every_route_with_no_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&common::repo().join("tests/fixtures/edges/traefik"), tmp.path());
    let edge = result.join("hosts/edge");
    common::oracle("traefik-static", &edge.join("traefik/traefik.yml")).unwrap();
    common::oracle("traefik-dynamic", &edge.join("traefik/dynamic/kiln.yml")).unwrap();

    let up = upstream();
    let (web, websecure, internal, api) = (free_port(), free_port(), free_port(), free_port());
    let mut st = yaml(&edge.join("traefik/traefik.yml"));
    st["entryPoints"]["web"]["address"] = json!(format!("127.0.0.1:{web}"));
    st["entryPoints"]["websecure"]["address"] = json!(format!("127.0.0.1:{websecure}"));
    st["entryPoints"]["internal"]["address"] = json!(format!("127.0.0.1:{internal}"));
    st["entryPoints"]["traefik"] = json!({ "address": format!("127.0.0.1:{api}") });
    st["api"] = json!({ "insecure": true, "dashboard": false });
    let dynamic_dir = tmp.path().join("dynamic");
    std::fs::create_dir_all(&dynamic_dir).unwrap();
    st["providers"]["file"]["directory"] = json!(dynamic_dir);
    for (_, r) in st["certificatesResolvers"].as_object_mut().unwrap() {
        // no certificate authority is reachable: fail fast on loopback, serve the default cert
        r["acme"]["storage"] = json!(tmp.path().join("acme.json"));
        r["acme"]["caServer"] = json!("https://127.0.0.1:1/directory");
    }
    let mut dy = yaml(&edge.join("traefik/dynamic/kiln.yml"));
    for (_, s) in dy["http"]["services"].as_object_mut().unwrap() {
        s["loadBalancer"]["servers"] = json!([{ "url": format!("http://127.0.0.1:{}", up.port) }]);
    }
    for (_, m) in dy["http"]["middlewares"].as_object_mut().unwrap() {
        if let Some(addr) = m["forwardAuth"]["address"].as_str() {
            let path = addr.splitn(4, '/').nth(3).unwrap_or("");
            m["forwardAuth"]["address"] = json!(format!("http://127.0.0.1:{}/{path}", up.port));
        }
    }
    let routers: Vec<String> = dy["http"]["routers"].as_object().unwrap().keys().cloned().collect();
    std::fs::write(tmp.path().join("traefik.yml"), serde_json::to_string(&st).unwrap()).unwrap();
    std::fs::write(dynamic_dir.join("kiln.yml"), serde_json::to_string(&dy).unwrap()).unwrap();

    let _traefik = Proc(
        Command::new(venv("traefik"))
            .arg(format!("--configFile={}", tmp.path().join("traefik.yml").display()))
            .env("CF_DNS_API_TOKEN", "test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("traefik's API to list every router", || {
        http_get(api, "/api/http/routers").as_array().is_some_and(|a| a.len() >= routers.len())
    });
    let overview = http_get(api, "/api/overview");
    for kind in ["routers", "services", "middlewares"] {
        assert_eq!(overview["http"][kind]["errors"], 0, "{kind}: {overview}");
        assert_eq!(overview["http"][kind]["warnings"], 0, "{kind}: {overview}");
    }
    let listed = http_get(api, "/api/http/routers");
    for name in &routers {
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
    // the allow-list keeps loopback out of the intranet route
    let (status, _, _) = curl("https", "intranet.example.com", websecure);
    assert_eq!(status, 403);
    // plain HTTP is redirected to HTTPS
    let (status, headers, _) = curl("http", "www.example.com", web);
    assert!(status == 301 || status == 308, "{status}: {headers}");
    assert!(headers.contains("location: https://www.example.com"), "{headers}");
}

#[test]
fn caddy_serves_every_route_through_forward_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&common::repo().join("flake-free-examples/five-vps-saas"), tmp.path());
    let caddyfile = result.join("hosts/edge/Caddyfile");
    common::oracle("caddy", &caddyfile).unwrap();
    let xdg = tmp.path().join("xdg");
    let adapted = Command::new(venv("caddy"))
        .args(["adapt", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .env("XDG_DATA_HOME", &xdg)
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .unwrap();
    assert!(adapted.status.success(), "{}", String::from_utf8_lossy(&adapted.stderr));
    let mut cfg: Value = serde_json::from_slice(&adapted.stdout).unwrap();

    let up = upstream();
    let (http, https) = (free_port(), free_port());
    cfg["admin"] = json!({ "disabled": true });
    cfg["apps"]["http"]["http_port"] = json!(http);
    cfg["apps"]["http"]["https_port"] = json!(https);
    for (_, srv) in cfg["apps"]["http"]["servers"].as_object_mut().unwrap() {
        let listen: Vec<String> = srv["listen"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| if l.as_str() == Some(":80") { format!("127.0.0.1:{http}") } else { format!("127.0.0.1:{https}") })
            .collect();
        srv["listen"] = json!(listen);
    }
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
    redirect_dials(&mut cfg["apps"]["http"], up.port);
    cfg["apps"]["tls"] = json!({ "automation": { "policies": [{ "issuers": [{ "module": "internal" }] }] } });
    cfg["apps"]["pki"] = json!({ "certificate_authorities": { "local": { "install_trust": false } } });
    let path = tmp.path().join("caddy.json");
    std::fs::write(&path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let _caddy = Proc(
        Command::new(venv("caddy"))
            .args(["run", "--config"])
            .arg(&path)
            .env("XDG_DATA_HOME", &xdg)
            .env("XDG_CONFIG_HOME", &xdg)
            .env("HOME", tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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
}
