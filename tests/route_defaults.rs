//! `[route_defaults]` (issue 16): routes get forward auth, an allow-list and a rate limit from
//! one table unless they say otherwise; a written list replaces the default (`allow = []`
//! opens the route), `auth = "none"` takes the gate away. The real Traefik serves the fixture
//! on loopback and decides: the defaults' allow-list refuses loopback, an emptied one lets it
//! through the gate, and a route without the gate reaches the upstream directly. Mistakes in the
//! table are located in tests/fixtures/diagnostics/route-defaults.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::edges::{build_fixture, run_traefik};

/// An upstream on loopback answering 200 to everything (the app and the gate's `/auth`),
/// recording the paths it saw.
fn upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || serve(s, log));
        }
    });
    (port, seen)
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
    log.lock().unwrap().push(first.split_whitespace().nth(1).unwrap_or("").to_string());
    let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
}

fn status(host: &str, port: u16) -> u16 {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

#[test]
fn traefik_applies_the_defaults_and_each_routes_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build_fixture(&common::repo().join("tests/fixtures/edges/route-defaults"), tmp.path());
    let (port, seen) = upstream();
    let traefik = run_traefik(&result.join("hosts/edge"), port, tmp.path());
    traefik.assert_no_errors();
    let https = traefik.websecure;

    // the defaults' allow-list keeps loopback out, before the gate or the app see anything
    assert_eq!(status("a.example.com", https), 403);
    assert!(seen.lock().unwrap().is_empty(), "{:?}", seen.lock().unwrap());

    // `allow = []`: through, but the gate is asked first
    assert_eq!(status("b.example.com", https), 200);
    let got = std::mem::take(&mut *seen.lock().unwrap());
    assert!(got.first().is_some_and(|p| p.starts_with("/auth")) && got.last().is_some_and(|p| p == "/"), "gate first: {got:?}");

    // `auth = "none"` as well: straight to the app
    assert_eq!(status("c.example.com", https), 200);
    let got = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(got, vec!["/".to_string()], "no gate: {got:?}");

    // `allow = ["local"]`: the admin `local`'s sources (loopback) get through, and only the
    // route's own list counts (the defaults name `ops`, whose network loopback is not in)
    assert_eq!(status("d.example.com", https), 200);
    let got = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(got, vec!["/".to_string()], "admitted by the admin's sources: {got:?}");
}
