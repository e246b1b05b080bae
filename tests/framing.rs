//! Who may frame a route, judged by the real edges: the framing fixture (an embeddable `editor`,
//! a `chat` service connecting to it, a route naming a partner origin) is built, its Caddyfile
//! run by Caddy and its Traefik configuration by Traefik on loopback (ports, paths and upstream
//! addresses rewritten as data, as in tests/edges.rs), in front of an upstream that sends its own
//! `X-Frame-Options: DENY` and CSP. A route others may frame answers with exactly one
//! `Content-Security-Policy: frame-ancestors 'self' …` naming the derived and declared origins and
//! no `X-Frame-Options`; every other route keeps `X-Frame-Options: SAMEORIGIN`. Origins that could
//! break out of a header, a CSP or a Caddyfile token are refused by `kiln check` at their place.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// An upstream on loopback that answers every request with its own framing headers, which the
/// edges must replace.
fn upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let body = "hello from upstream";
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nX-Frame-Options: DENY\r\nContent-Security-Policy: frame-ancestors 'none'\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
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

fn venv(bin: &str) -> PathBuf {
    common::repo().join(".venv-oracles/bin").join(bin)
}

/// HTTPS `GET /` of `host` at 127.0.0.1:port: the status and the response headers (name
/// lowercased, value as sent, in order).
fn get(host: &str, port: u16) -> (u16, Vec<(String, String)>) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-o", "/dev/null", "-D", "-", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
}

/// The route answers through the edge, framed by exactly `csp` (and no X-Frame-Options), or,
/// with `None`, with X-Frame-Options SAMEORIGIN alone.
fn assert_framing(host: &str, port: u16, csp: Option<&str>) {
    let (status, headers) = get(host, port);
    assert_eq!(status, 200, "{host}: {headers:?}");
    assert_eq!(values(&headers, "strict-transport-security"), ["max-age=31536000; includeSubDomains"], "{host}: {headers:?}");
    match csp {
        Some(csp) => {
            assert_eq!(values(&headers, "content-security-policy"), [csp], "{host}: {headers:?}");
            assert_eq!(values(&headers, "x-frame-options"), Vec::<&str>::new(), "{host}: {headers:?}");
        }
        None => assert_eq!(values(&headers, "x-frame-options"), ["SAMEORIGIN"], "{host}: {headers:?}"),
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn fixture() -> PathBuf {
    common::repo().join("tests/fixtures/edges/framing")
}

fn build(system: &Path, out: &Path) -> PathBuf {
    common::build_with_modules(&common::repo().join("tests/fixtures/modules"), system, &out.join("store"), &out.join("result"))
}

const EDITOR: &str = "frame-ancestors 'self' https://chat.example.com";
const DOCS: &str = "frame-ancestors 'self' https://chat.example.com https://partner.example.net:8443";

#[test]
fn caddy_frames_the_embeddable_route_only() {
    let tmp = tempfile::tempdir().unwrap();
    let caddyfile = build(&fixture(), tmp.path()).join("hosts/front/Caddyfile");
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
    redirect_dials(&mut cfg["apps"]["http"], up);
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
    wait_for("caddy to serve", || get("chat.example.com", https).0 == 200);
    // derived: chat connects to the embeddable editor
    assert_framing("editor.example.com", https, Some(EDITOR));
    assert_framing("chat.example.com", https, None);
}

/// A document from Traefik's API, or `Null` while it is not there yet.
fn api_get(port: u16, path: &str) -> Value {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return Value::Null };
    if write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return Value::Null;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(Value::Null)
}

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn traefik_frames_the_embeddable_route_only() {
    let tmp = tempfile::tempdir().unwrap();
    let gate = build(&fixture(), tmp.path()).join("hosts/gate");
    common::oracle("traefik-static", &gate.join("traefik/traefik.yml")).unwrap();
    common::oracle("traefik-dynamic", &gate.join("traefik/dynamic/kiln.yml")).unwrap();
    let up = upstream();
    let (web, websecure, internal, api) = (free_port(), free_port(), free_port(), free_port());
    let mut st = yaml(&gate.join("traefik/traefik.yml"));
    st["entryPoints"]["web"]["address"] = json!(format!("127.0.0.1:{web}"));
    st["entryPoints"]["websecure"]["address"] = json!(format!("127.0.0.1:{websecure}"));
    st["entryPoints"]["internal"]["address"] = json!(format!("127.0.0.1:{internal}"));
    st["entryPoints"]["traefik"] = json!({ "address": format!("127.0.0.1:{api}") });
    st["api"] = json!({ "insecure": true, "dashboard": false });
    let dynamic_dir = tmp.path().join("dynamic");
    std::fs::create_dir_all(&dynamic_dir).unwrap();
    st["providers"]["file"]["directory"] = json!(dynamic_dir);
    for (_, r) in st["certificatesResolvers"].as_object_mut().unwrap() {
        r["acme"]["storage"] = json!(tmp.path().join("acme.json"));
        r["acme"]["caServer"] = json!("https://127.0.0.1:1/directory");
    }
    let mut dy = yaml(&gate.join("traefik/dynamic/kiln.yml"));
    for (_, s) in dy["http"]["services"].as_object_mut().unwrap() {
        s["loadBalancer"]["servers"] = json!([{ "url": format!("http://127.0.0.1:{up}") }]);
    }
    let routers = dy["http"]["routers"].as_object().unwrap().len();
    std::fs::write(tmp.path().join("traefik.yml"), serde_json::to_string(&st).unwrap()).unwrap();
    std::fs::write(dynamic_dir.join("kiln.yml"), serde_json::to_string(&dy).unwrap()).unwrap();
    let _traefik = Proc(
        Command::new(venv("traefik"))
            .arg(format!("--configFile={}", tmp.path().join("traefik.yml").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("traefik's API to list every router", || api_get(api, "/api/http/routers").as_array().is_some_and(|a| a.len() >= routers));
    let overview = api_get(api, "/api/overview");
    for kind in ["routers", "services", "middlewares"] {
        assert_eq!(overview["http"][kind]["errors"], 0, "{kind}: {overview}");
        assert_eq!(overview["http"][kind]["warnings"], 0, "{kind}: {overview}");
    }
    wait_for("traefik to serve", || get("plain.example.com", websecure).0 == 200);
    // derived (chat connects to the editor) and declared (the partner) together
    assert_framing("docs.example.com", websecure, Some(DOCS));
    assert_framing("plain.example.com", websecure, None);
}

/// Without the connection nothing is derived: the editor's Caddy route is back to SAMEORIGIN.
#[test]
fn the_connection_is_what_lets_the_embedder_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    std::fs::create_dir_all(&sys).unwrap();
    let text = std::fs::read_to_string(fixture().join("system.toml")).unwrap();
    assert!(text.contains("connects = [\"editor\"]\n"));
    std::fs::write(sys.join("system.toml"), text.replace("connects = [\"editor\"]\n", "")).unwrap();
    let result = build(&sys, tmp.path());
    let caddyfile = std::fs::read_to_string(result.join("hosts/front/Caddyfile")).unwrap();
    assert!(!caddyfile.contains("Content-Security-Policy"), "{caddyfile}");
    let dynamic = std::fs::read_to_string(result.join("hosts/gate/traefik/dynamic/kiln.yml")).unwrap();
    assert!(dynamic.contains("Content-Security-Policy: frame-ancestors 'self' https://partner.example.net:8443\n"), "{dynamic}");

    let with = std::fs::read_to_string(build(&fixture(), &tmp.path().join("with")).join("hosts/front/Caddyfile")).unwrap();
    assert!(with.contains(&format!("\t\tContent-Security-Policy \"{EDITOR}\"\n\t\t-X-Frame-Options\n")), "{with}");
}

/// Each hostile origin is refused by `kiln check` as E0003 at its own place in the file.
#[test]
fn origins_that_could_break_out_are_refused_where_written() {
    let tmp = tempfile::tempdir().unwrap();
    let hostile = [
        r#"https://a.example.net; script-src *"#,
        r#"https://b.example.net\r\nSet-Cookie: x=1"#,
        r#"https://c.example.net/path"#,
        r#"https://d.example.net\"}"#,
        r#"https://e.example.net 'unsafe-inline'"#,
        r#"javascript:alert(1)"#,
        r#"*"#,
    ];
    let list: Vec<String> = hostile.iter().map(|h| format!("\"{h}\"")).collect();
    let line = format!("frame_ancestors = [\"https://partner.example.net:8443\", {}]", list.join(", "));
    let text = std::fs::read_to_string(fixture().join("system.toml")).unwrap();
    let text = text.replace("frame_ancestors = [\"https://partner.example.net:8443\"]", &line);
    let lineno = text.lines().position(|l| l == line).expect("the hostile line") + 1;
    std::fs::write(tmp.path().join("system.toml"), &text).unwrap();
    let out = common::run(
        common::kiln().arg("--modules").arg(common::repo().join("tests/fixtures/modules")).arg("check").arg(tmp.path()).arg("--json"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let diags = report["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), hostile.len(), "{report:#}");
    for (d, h) in diags.iter().zip(hostile) {
        let quoted = format!("\"{h}\"");
        let column = line.find(&quoted).unwrap() + 1;
        assert_eq!(d["code"], "E0003", "{d:#}");
        assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(lineno as u64), Some(column as u64)), "{h}: {d:#}");
        assert!(d["message"].as_str().unwrap().contains("is not an origin"), "{d:#}");
    }
}
