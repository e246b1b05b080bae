//! Connections to public routes (issue 16): CI runners on an existing server that shares no
//! private network with the forge reach it through its route (`connects = { forge =
//! "route:git.example.com" }`, or an `https://` URL in the list form). The real
//! `docker-compose config` reads the URL the runner was given; `dash -n` takes the forge's
//! provisioner, whose firewall opens nothing to the runners (they arrive at the edge's 443 like
//! any client), and Caddy takes the edge's Caddyfile serving the route; `kiln show` says which
//! port leaves the runners' host. A private connection between hosts that share no network is
//! refused with help naming the route form, and that help, applied, builds. Refusals are
//! located in tests/fixtures/diagnostics/public-route-unresolved and rule-route-connection.

mod common;

use std::path::PathBuf;

use common::*;

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/public-routes")
}

fn modules() -> PathBuf {
    repo().join("tests/fixtures/modules")
}

#[test]
fn a_runner_reaches_the_forge_through_its_public_route() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build_with_modules(&modules(), &fixture(), &tmp.path().join("store"), &tmp.path().join("result"));

    let runners = compose_config(&result.join("hosts/runners/compose.yaml"));
    let env = &runners["services"]["runner"]["environment"];
    assert_eq!(env["FORGE_URL"], "https://git.example.com", "{env}");
    assert_eq!(env["FORGE_TLS"], "true", "{env}");

    // The forge's host opens its port to the edge only: nothing for the runners.
    let provision = result.join("hosts/forge/provision.sh");
    oracle("sh", &provision).unwrap();
    let p = read(&provision);
    let opened: Vec<&str> = p.lines().filter(|l| l.trim_start().starts_with("set -- \"$@\" allow")).collect();
    assert_eq!(opened.len(), 2, "{opened:#?}");
    assert!(opened.iter().any(|l| l.contains("from 10.0.0.2/32 to any port 80 comment 'route git.example.com from edge'")), "{opened:#?}");
    assert!(!p.contains("203.0.113.10") && !p.contains("runner"), "{p}");

    // The edge serves the route the runners use.
    let caddyfile = result.join("hosts/edge/Caddyfile");
    oracle("caddy", &caddyfile).unwrap();
    assert!(read(&caddyfile).contains("git.example.com"));

    // `kiln show` names the port that leaves the runners' host, in text and JSON.
    let out = run(kiln().arg("--modules").arg(modules()).arg("show").arg(fixture()));
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(shown.contains("outbound  443/tcp to git.example.com for `runner` (https://git.example.com), through its egress"), "{shown}");
    assert!(shown.contains("outbound  443/tcp to git.example.com for `poller` (https://git.example.com/api/v1)"), "{shown}");
    let out = run(kiln().arg("--modules").arg(modules()).arg("show").arg("--json").arg(fixture()));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hosts"]["runners"]["outbound"].as_array().map(Vec::len), Some(2), "{}", v["hosts"]["runners"]);
    assert!(v["hosts"]["forge"].get("outbound").is_none());
    assert_eq!(v["services"]["runner"]["connects"][0], "https://git.example.com (route to git.http, 443/tcp out)");
}

#[test]
fn a_connection_no_network_carries_is_refused_with_advice_that_builds() {
    let dir = repo().join("tests/fixtures/diagnostics/public-route-unresolved");
    let out = run(kiln().arg("--modules").arg(modules()).arg("check").arg(&dir));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error[E0032]: `direct` on host `runners` cannot reach `git` on host `forge`"), "{err}");
    let advice = "`connects = [\"route:git.example.com\"]`";
    assert!(
        err.contains(&format!(
            "help: connect through its public route instead (out through the host's egress to the edge's 443): {advice}"
        )),
        "{err}"
    );
    assert!(err.contains("help: did you mean `route:git.example.com`?"), "{err}");

    // Take the advice (and drop the other, deliberately broken entries): it builds.
    let text_in = read(&dir.join("system.toml"));
    let fixed = text_in
        .replace("connects = [\"git\"]", advice.trim_matches('`'))
        .replace("route:gti.example.com", "route:git.example.com")
        .replace("https://git.example.com/a b", "https://git.example.com/a/b");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("system.toml"), fixed).unwrap();
    let out = run(kiln().arg("--modules").arg(modules()).arg("check").arg(tmp.path()));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_route_that_cannot_admit_the_client_says_what_to_allow() {
    let dir = repo().join("tests/fixtures/diagnostics/rule-route-connection");
    let out = run(kiln().arg("--modules").arg(modules()).arg("check").arg(&dir));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("help: add `\"203.0.113.10/32\"` to `allow` of route `git.example.com`"), "{err}");
    assert!(err.contains("kiln does not know the address host `cloud` leaves from"), "{err}");
    assert!(err.contains("`offline` connects to https://git.example.com, but host `sealed` has no route to the internet"), "{err}");
}
