//! The route gate of `kiln deploy` (the last part of its health gate): every route a host's edge
//! serves on the host's own public address is requested over HTTPS from the machine running
//! kiln, with the route's name pinned to that address (`--resolve`-style: DNS is not cut over
//! yet), until each answers or the health timeout passes.
//!
//! What counts as an answer: any HTTP response with a status below 500 (a 403 from an `allow`
//! list that does not admit this machine, a 302 or 401 from forward auth, a 404 from the app:
//! the edge serves the name and passes it on). A 5xx fails (502, 503 and 504 are the edge
//! saying the upstream is not there), and so does a connection or TLS error. Redirects are not
//! followed: the first answer is the edge's.
//!
//! The certificate is **not verified**: before DNS points at the host, an HTTP-01 certificate
//! cannot have been issued yet, and `tls = "internal"` certificates come from the edge's own
//! CA. The gate proves the edge terminates TLS for the name and routes it; not that browsers
//! will trust the certificate.
//!
//! A `tls = "acme"` route may have no certificate at all yet: Caddy then fails the TLS
//! handshake for the name (an `internal_error` alert; Traefik serves its default certificate
//! instead). For such a route, when the edge accepts TCP on its HTTPS port but the HTTPS
//! request fails, the gate asks the edge's HTTP port (80) for the name: a redirect to
//! `https://NAME` passes the route, reported as "no certificate yet". That is weaker than an
//! HTTPS answer: it proves the edge accepts TLS connections and answers HTTP, not that it serves
//! this name (Caddy redirects every name on its HTTP port) or reaches the upstream.
//!
//! [`probes`] is pure (which routes, and which are left out and why); [`check`] does the
//! requests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::progress::{Progress, State};
use super::{Failure, HostPlan, Outcome, Step, Timeouts};
use crate::model::System;
use crate::syntax::system::TlsMode;
use std::collections::BTreeMap;

/// The HTTPS port edges listen on (Caddy's default, Traefik's `websecure` entry point).
pub const HTTPS_PORT: u16 = 443;

/// The label a wildcard route's `*` is replaced with to make a name to request.
pub const WILDCARD_LABEL: &str = "kiln-route-check";

/// One route to request through the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteProbe {
    /// The route as declared (`[routes."NAME"]`).
    pub route: String,
    /// The name requested (the route's, a wildcard's `*` replaced by [`WILDCARD_LABEL`]).
    pub name: String,
    /// The certificate comes over ACME HTTP-01/TLS-ALPN (`tls = "acme"`): before DNS points at
    /// the host the edge may have none, and the HTTP fallback applies.
    pub acme: bool,
}

/// A route of the host's edge the gate does not request, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftOut {
    pub route: String,
    pub reason: String,
}

/// The routes a host's edge serves: those the gate requests, and those it leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RoutePlan {
    pub probes: Vec<RouteProbe>,
    pub left_out: Vec<LeftOut>,
}

/// The routes whose edge runs on `host`, in hostname order. A route a Cloudflare tunnel
/// carries arrives through the host's `cloudflared`, not on its address, and a route on a
/// private edge host without a tunnel is served only on the private network: both are left out.
pub fn probes(sys: &System, host: &str) -> RoutePlan {
    let mut plan = RoutePlan::default();
    let public = sys.hosts.get(host).is_some_and(|h| h.public);
    let mut routes: Vec<&crate::model::Route> = sys.routes.iter().filter(|r| r.edge_host == host).collect();
    routes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    for r in routes {
        if let Some(c) = crate::eval::tunnel::carrier(sys, r) {
            plan.left_out.push(LeftOut {
                route: r.hostname.clone(),
                reason: format!("carried by the Cloudflare tunnel of `{}`, not served on the host's address", c.name),
            });
        } else if !public {
            plan.left_out.push(LeftOut {
                route: r.hostname.clone(),
                reason: format!("`{host}` is private: its edge serves the route on the private network only"),
            });
        } else {
            let name = match r.hostname.strip_prefix("*.") {
                Some(rest) => format!("{WILDCARD_LABEL}.{rest}"),
                None => r.hostname.clone(),
            };
            plan.probes.push(RouteProbe { route: r.hostname.clone(), name, acme: r.tls == TlsMode::Acme });
        }
    }
    plan
}

/// What one request of a route got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP status below 500: the edge serves the route.
    Served(u16),
    /// An ACME route without a certificate yet: HTTPS failed with this error, and the edge's
    /// HTTP port redirected the name to HTTPS with this status.
    NoCertificateYet(u16, String),
    /// A 5xx status: what it means.
    ServerError(u16, String),
    /// No HTTP answer: the connection or TLS error.
    Error(String),
}

impl Answer {
    pub fn passes(&self) -> bool {
        matches!(self, Answer::Served(_) | Answer::NoCertificateYet(..))
    }

    /// The answer to a status.
    pub fn of_status(status: u16) -> Answer {
        match status {
            ..500 => Answer::Served(status),
            502..=504 => Answer::ServerError(status, "the edge cannot reach the upstream".into()),
            _ => Answer::ServerError(status, "a server error".into()),
        }
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Served(s) => write!(f, "{s}"),
            Answer::NoCertificateYet(s, e) => write!(f, "{s} over HTTP, no certificate yet (HTTPS: {e})"),
            Answer::ServerError(s, why) => write!(f, "status {s}: {why}"),
            Answer::Error(e) => write!(f, "{e}"),
        }
    }
}

/// The URL of a probe at `addr` (the port in the URL when it is not 443).
pub fn url(p: &RouteProbe, addr: SocketAddr) -> String {
    if addr.port() == HTTPS_PORT { format!("https://{}/", p.name) } else { format!("https://{}:{}/", p.name, addr.port()) }
}

/// A request's error with its causes (reqwest's own message alone says only "error sending
/// request").
fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

/// A client that sends `name` to `addr` (no DNS), follows no redirect, uses no proxy, waits at
/// most `timeout`, and does not verify certificates (see the module's documentation).
fn pinned_client(name: &str, addr: SocketAddr, timeout: Duration) -> Result<reqwest::blocking::Client, String> {
    reqwest::blocking::Client::builder()
        .resolve(name, addr)
        .tls_danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {}", error_chain(e)))
}

/// One request of `p` at `addr`, bounded by `timeout`. The certificate is not verified (see
/// the module's documentation).
pub fn request(p: &RouteProbe, addr: SocketAddr, timeout: Duration) -> Answer {
    let client = match pinned_client(&p.name, addr, timeout) {
        Ok(c) => c,
        Err(e) => return Answer::Error(e),
    };
    match client.get(url(p, addr)).send() {
        Ok(r) => Answer::of_status(r.status().as_u16()),
        Err(e) => Answer::Error(error_chain(e)),
    }
}

/// The HTTP fallback of an ACME route whose HTTPS request failed with `https_error`: passes
/// when the edge accepts TCP at `addr` (its HTTPS port) and its HTTP port `http` answers the name
/// with a redirect to `https://NAME`.
pub fn http_fallback(p: &RouteProbe, addr: SocketAddr, http: SocketAddr, https_error: &str, timeout: Duration) -> Answer {
    if std::net::TcpStream::connect_timeout(&addr, timeout).is_err() {
        return Answer::Error(https_error.to_string());
    }
    let client = match pinned_client(&p.name, http, timeout) {
        Ok(c) => c,
        Err(e) => return Answer::Error(e),
    };
    let url = if http.port() == 80 { format!("http://{}/", p.name) } else { format!("http://{}:{}/", p.name, http.port()) };
    match client.get(url).send() {
        Ok(r) => {
            let status = r.status();
            let to = r.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok()).unwrap_or("");
            let https = format!("https://{}", p.name);
            let names = to == https || to.starts_with(&format!("{https}/")) || to.starts_with(&format!("{https}:"));
            if status.is_redirection() && names {
                Answer::NoCertificateYet(status.as_u16(), https_error.to_string())
            } else {
                Answer::Error(format!("{https_error}; over HTTP the edge answered {} without a redirect to {https}", status.as_u16()))
            }
        }
        Err(e) => Answer::Error(format!("{https_error}; over HTTP: {}", error_chain(e))),
    }
}

/// The longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The route gate of `host`: requests every probe at `addr` until each answered (a status
/// below 500) or `t.health` passed; the failure names each route that did not answer and what
/// it got last.
pub fn check(host: &str, addr: SocketAddr, plan: &RoutePlan, t: &Timeouts, p: &Progress) -> Result<(), Failure> {
    // The HTTP port is known only for the standard HTTPS port (an edge's own address).
    let http = (addr.port() == HTTPS_PORT).then(|| SocketAddr::new(addr.ip(), 80));
    check_at(host, addr, http, plan, t, p)
}

/// [`check`] with the edge's HTTP port for the ACME fallback given (`None`: no fallback).
pub fn check_at(
    host: &str,
    addr: SocketAddr,
    http: Option<SocketAddr>,
    plan: &RoutePlan,
    t: &Timeouts,
    p: &Progress,
) -> Result<(), Failure> {
    let left = if plan.left_out.is_empty() {
        String::new()
    } else {
        format!("; left out: {}", plan.left_out.iter().map(|l| format!("`{}` ({})", l.route, l.reason)).collect::<Vec<_>>().join(", "))
    };
    if plan.probes.is_empty() {
        if !plan.left_out.is_empty() {
            p.emit(host, Step::Routes, State::Skipped, format!("no route served on the host's address{left}"));
        }
        return Ok(());
    }
    p.emit(
        host,
        Step::Routes,
        State::Started,
        format!(
            "{} route{} at {addr}, certificate not verified (DNS not cut over yet){left}",
            plan.probes.len(),
            plural(plan.probes.len())
        ),
    );
    let start = Instant::now();
    let mut last_note = Instant::now();
    let mut pending: Vec<(&RouteProbe, Answer)> = plan.probes.iter().map(|r| (r, Answer::Error("not requested yet".into()))).collect();
    let mut served: Vec<(&RouteProbe, Answer)> = Vec::new();
    loop {
        let mut still = Vec::new();
        for (r, _) in pending {
            let room = t.health.saturating_sub(start.elapsed()).clamp(Duration::from_secs(1), REQUEST_TIMEOUT);
            let mut a = request(r, addr, room);
            if let (Answer::Error(e), true, Some(http)) = (&a, r.acme, http) {
                a = http_fallback(r, addr, http, e, room);
            }
            if a.passes() { served.push((r, a)) } else { still.push((r, a)) }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        let what = || pending.iter().map(|(r, a)| format!("`{}`: {a}", r.name)).collect::<Vec<_>>().join("; ");
        if start.elapsed() >= t.health {
            return Err(Failure {
                host: host.to_string(),
                step: Step::Routes,
                message: format!(
                    "{} of {} route{} did not answer through the edge at {addr} within {} s: {}",
                    pending.len(),
                    plan.probes.len(),
                    plural(plan.probes.len()),
                    t.health.as_secs(),
                    what()
                ),
                log_tail: None,
                details: None,
            });
        }
        if last_note.elapsed() >= t.note_every {
            last_note = Instant::now();
            p.emit(host, Step::Routes, State::Waiting, what());
        }
        std::thread::sleep(t.poll);
    }
    served.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let got = served.iter().map(|(r, s)| format!("`{}` {s}", r.name)).collect::<Vec<_>>().join(", ");
    p.emit(host, Step::Routes, State::Done, format!("{got} through {addr} (certificate not verified)"));
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The route gate after the health gate: every route the host's edge serves answers through
/// `plan.route_address` (skipped, and said so, without an address).
pub fn route_gate(plan: &HostPlan, t: &Timeouts, p: &Progress) -> Result<(), Failure> {
    match plan.route_address {
        Some(addr) => check(&plan.name, addr, &plan.routes, t, p),
        None => {
            if !plan.routes.probes.is_empty() {
                p.emit(
                    &plan.name,
                    Step::Routes,
                    State::Skipped,
                    format!(
                        "{} route{} not requested: no address to reach the edge at (or --no-route-check)",
                        plan.routes.probes.len(),
                        if plan.routes.probes.len() == 1 { "" } else { "s" }
                    ),
                );
            }
            Ok(())
        }
    }
}

/// The end of a wave: once every host of it passed its health gate, each host's route gate —
/// an edge's routes lead to services on other hosts, often of the same wave, so they are
/// requested only when the whole wave is up (hosts in parallel) — then `done` for each host
/// that passed. A host whose route gate fails gets that failure as its result. When a host of
/// the wave failed, the others' route gates are not run (the progress says so).
pub fn finish_wave(plans: &[&HostPlan], results: &mut BTreeMap<String, Result<Outcome, Failure>>, t: &Timeouts, p: &Progress) {
    let wave_ok = plans.iter().all(|x| results.get(&x.name).is_some_and(Result::is_ok));
    let gated: Vec<(String, Result<(), Failure>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = plans
            .iter()
            .filter(|x| results.get(&x.name).is_some_and(Result::is_ok))
            .map(|x| {
                sc.spawn(move || {
                    if wave_ok {
                        (x.name.clone(), route_gate(x, t, p))
                    } else {
                        if !x.routes.probes.is_empty() {
                            p.emit(&x.name, Step::Routes, State::Skipped, "not requested: another host of the wave failed");
                        }
                        (x.name.clone(), Ok(()))
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a route gate panicked")).collect()
    });
    for (name, res) in gated {
        match res {
            Ok(()) => {
                if let Some(Ok(outcome)) = results.get(&name) {
                    p.emit(&name, Step::Done, State::Done, if *outcome == Outcome::Skipped { "unchanged" } else { "deployed" });
                }
            }
            Err(f) => {
                p.emit(&f.host, f.step, State::Failed, f.message.clone());
                results.insert(name, Err(f));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_below_500_pass() {
        for s in [200, 204, 301, 302, 401, 403, 404, 499] {
            assert!(Answer::of_status(s).passes(), "{s}");
        }
        for s in [500, 501, 502, 503, 504, 505] {
            assert!(!Answer::of_status(s).passes(), "{s}");
        }
        assert_eq!(Answer::of_status(502).to_string(), "status 502: the edge cannot reach the upstream");
    }

    #[test]
    fn the_port_is_in_the_url_only_when_not_443() {
        let p = RouteProbe { route: "*.example.com".into(), name: "kiln-route-check.example.com".into(), acme: true };
        assert_eq!(url(&p, "192.0.2.1:443".parse().unwrap()), "https://kiln-route-check.example.com/");
        assert_eq!(url(&p, "127.0.0.1:8443".parse().unwrap()), "https://kiln-route-check.example.com:8443/");
    }
}
