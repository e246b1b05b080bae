//! Declared certificates (`[certificates.NAME]`) judged by the real Traefik: the generated
//! configuration starts with no errors or warnings, and Traefik's own API shows every router a
//! certificate covers asking its resolver for the same domains (the certificate's names, the
//! first `main`, the rest `sans`), so the edge requests each certificate once.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::edges::{api_get, build_fixture, run_traefik};
use serde_json::{Value, json};

#[test]
fn traefik_requests_each_declared_certificate_once_for_every_route_it_covers() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build_fixture(&common::repo().join("tests/fixtures/edges/certificates"), tmp.path());
    let traefik = run_traefik(&result.join("hosts/edge"), common::edges::free_port(), tmp.path());
    traefik.assert_no_errors();

    // The static configuration's resolvers, as generated: the DNS-01 one at the certificate's
    // provider, HTTP-01 for the rest.
    let st = common::edges::yaml(&result.join("hosts/edge/traefik/traefik.yml"));
    assert_eq!(st["certificatesResolvers"]["dns-cloudflare"]["acme"]["dnsChallenge"]["provider"], "cloudflare", "{st}");
    assert_eq!(st["certificatesResolvers"]["letsencrypt"]["acme"]["httpChallenge"]["entryPoint"], "web", "{st}");

    // What Traefik itself made of every router: enabled, on which resolver, asking for which
    // domains.
    let listed = api_get(traefik.api, "/api/http/routers");
    let mut by_rule: BTreeMap<String, (String, Value)> = BTreeMap::new();
    for r in listed.as_array().unwrap().iter().filter(|r| r["provider"] == "file") {
        assert_eq!(r["status"], "enabled", "{r}");
        let resolver = r["tls"]["certResolver"].as_str().unwrap_or_default().to_string();
        by_rule.insert(r["rule"].as_str().unwrap().to_string(), (resolver, r["tls"]["domains"].clone()));
    }
    let wild = json!([{ "main": "example.com", "sans": ["*.example.com"] }]);
    let pair = json!([{ "main": "a.example.net", "sans": ["b.example.net"] }]);
    let expect = [
        // named by the route
        ("example.com", "dns-cloudflare", &wild),
        // covered by the wildcard: taken by default
        ("git.example.com", "dns-cloudflare", &wild),
        ("wiki.example.com", "dns-cloudflare", &wild),
        // an HTTP-01 certificate for two names, named by one route and taken by the other
        ("a.example.net", "letsencrypt", &pair),
        ("b.example.net", "letsencrypt", &pair),
    ];
    for (host, resolver, domains) in expect {
        let got = &by_rule[&format!("Host(`{host}`)")];
        assert_eq!((got.0.as_str(), &got.1), (resolver, domains), "router for {host}");
    }
    // Outside every certificate: its own certificate for its own name (no domains: the rule's).
    let own = &by_rule["Host(`example.net`)"];
    assert_eq!((own.0.as_str(), &own.1), ("letsencrypt", &Value::Null));

    // Exactly one distinct certificate request per declared certificate, with its names.
    let requested: BTreeSet<String> = by_rule.values().filter(|(_, d)| !d.is_null()).map(|(_, d)| d.to_string()).collect();
    assert_eq!(requested, BTreeSet::from([wild.to_string(), pair.to_string()]));
}
