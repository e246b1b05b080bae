//! Who may frame a route, judged by the real edges: the framing fixture (an embeddable `editor`,
//! a `chat` service connecting to it, a route naming a partner origin) is built, its Caddyfile
//! run by Caddy and its Traefik configuration by Traefik on loopback (ports, paths and upstream
//! addresses rewritten as data by tests/common/edges.rs), in front of an upstream that sends its own
//! `X-Frame-Options: DENY` and CSP. A route others may frame answers with exactly one
//! `Content-Security-Policy: frame-ancestors 'self' …` naming the derived and declared origins and
//! no `X-Frame-Options`; every other route keeps `X-Frame-Options: SAMEORIGIN`. A route's own
//! `csp` replaces the upstream's policy, normalised, with the framing directive added where the
//! route is framed. Origins and policies that could break out of a header, a CSP or a Caddyfile
//! token are refused by `kiln check` at their place.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use common::edges::{build_fixture, run_caddy, run_traefik, wait_for};
use serde_json::Value;

/// An upstream on loopback that answers every request with its own framing headers, which the
/// edges must replace.
fn upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let body = "hello from upstream";
    common::edges::serve_http(
        l,
        format!(
            "HTTP/1.1 200 OK\r\nX-Frame-Options: DENY\r\nContent-Security-Policy: frame-ancestors 'none'\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    port
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

/// The route answers with its own policy, exactly `csp` (the upstream's replaced), and keeps
/// X-Frame-Options SAMEORIGIN: nobody else may frame it.
fn assert_own_policy(host: &str, port: u16, csp: &str) {
    let (status, headers) = get(host, port);
    assert_eq!(status, 200, "{host}: {headers:?}");
    assert_eq!(values(&headers, "content-security-policy"), [csp], "{host}: {headers:?}");
    assert_eq!(values(&headers, "x-frame-options"), ["SAMEORIGIN"], "{host}: {headers:?}");
}

fn fixture() -> PathBuf {
    common::repo().join("tests/fixtures/edges/framing")
}

const EDITOR: &str = "frame-ancestors 'self' https://chat.example.com";
const DOCS: &str = "default-src 'self'; frame-ancestors 'self' https://chat.example.com https://partner.example.net:8443";
const CHAT: &str = "default-src 'self'; img-src 'self' data:";

#[test]
fn caddy_frames_the_embeddable_route_only() {
    let tmp = tempfile::tempdir().unwrap();
    let caddyfile = build_fixture(&fixture(), tmp.path()).join("hosts/front/Caddyfile");
    let caddy = run_caddy(&caddyfile, upstream(), tmp.path());
    let https = caddy.https;
    wait_for("caddy to serve", || get("chat.example.com", https).0 == 200);
    // derived: chat connects to the embeddable editor
    assert_framing("editor.example.com", https, Some(EDITOR));
    // its own policy, normalised, beside X-Frame-Options
    assert_own_policy("chat.example.com", https, CHAT);
}

#[test]
fn traefik_frames_the_embeddable_route_only() {
    let tmp = tempfile::tempdir().unwrap();
    let gate = build_fixture(&fixture(), tmp.path()).join("hosts/gate");
    let traefik = run_traefik(&gate, upstream(), tmp.path());
    traefik.assert_no_errors();
    let websecure = traefik.websecure;
    wait_for("traefik to serve", || get("plain.example.com", websecure).0 == 200);
    // its own policy, then derived (chat connects to the editor) and declared (the partner) framing
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
    let result = build_fixture(&sys, tmp.path());
    let caddyfile = std::fs::read_to_string(result.join("hosts/front/Caddyfile")).unwrap();
    let editor = caddyfile.split("\n}\n").find(|b| b.contains("editor.example.com {")).unwrap();
    assert!(!editor.contains("Content-Security-Policy"), "{caddyfile}");
    let dynamic = std::fs::read_to_string(result.join("hosts/gate/traefik/dynamic/kiln.yml")).unwrap();
    assert!(
        dynamic.contains("Content-Security-Policy: default-src 'self'; frame-ancestors 'self' https://partner.example.net:8443\n"),
        "{dynamic}"
    );

    let with = std::fs::read_to_string(build_fixture(&fixture(), &tmp.path().join("with")).join("hosts/front/Caddyfile")).unwrap();
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

/// Each hostile or wrong policy is refused by `kiln check` as E0003 at its place, saying why.
#[test]
fn policies_that_could_break_out_are_refused_where_written() {
    let hostile = [
        (r#"default-src 'self'\"\n}\nevil.example.com {"#, "holds"),
        (r#"default-src {http.request.header.Cookie}"#, "holds `{`"),
        (r#"default-src {{ env \"HOME\" }}"#, "holds `{`"),
        (r#"default-src 'self', script-src *"#, "holds `,`"),
        (r#"default-src 'self'\r\nSet-Cookie: x=1"#, "holds"),
        (r#"frame-ancestors *"#, "is not written in `csp`"),
        (r#"defualt-src 'self'"#, "did you mean `default-src`?"),
        (r#"img-src 'self'; img-src data:"#, "is set twice"),
        (r#" ; "#, "no directive"),
    ];
    let text = std::fs::read_to_string(fixture().join("system.toml")).unwrap();
    for (csp, why) in hostile {
        let tmp = tempfile::tempdir().unwrap();
        let line = format!("csp = \"{csp}\"");
        let with = text.replace("csp = \"DEFAULT-SRC 'self'\"", &line);
        let lineno = with.lines().position(|l| l == line).expect("the hostile line") + 1;
        std::fs::write(tmp.path().join("system.toml"), &with).unwrap();
        let out = common::run(
            common::kiln().arg("--modules").arg(common::repo().join("tests/fixtures/modules")).arg("check").arg(tmp.path()).arg("--json"),
        );
        assert_eq!(out.status.code(), Some(1), "{csp}: {}", common::text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let d = &report["diagnostics"][0];
        assert_eq!(report["diagnostics"].as_array().unwrap().len(), 1, "{csp}: {report:#}");
        assert_eq!(d["code"], "E0003", "{d:#}");
        assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(lineno as u64), Some(7)), "{csp}: {d:#}");
        let said = format!("{} {}", d["message"].as_str().unwrap(), d["help"].as_str().unwrap_or(""));
        assert!(said.contains(why), "{csp}: {d:#}");
    }
}
