//! SYSTEM.md's Mermaid diagram stays renderable at any fleet size: mermaid (scripts/mermaid,
//! the real parser) refuses more than 500 edges or 50,000 characters, which a per-host diagram
//! passes at about 55 hosts. A 1,000-host fleet of built-in modules gets a grouped diagram that
//! mermaid accepts, and every host is still listed with its services.

mod common;

use std::fmt::Write;

use common::oracle;
use kiln::pipeline::{Options, Outcome, compile};

/// `hosts` hosts stamped out from one template: a Caddy edge, an app, PostgreSQL and Valkey,
/// PgBouncer on every third host, two or three routes through the host's own edge.
fn fleet(hosts: usize) -> String {
    let mut t = String::from(
        r#"[system]
name = "fleet"
domains = ["example.com"]
store = "https://artifacts.example.com/fleet"

[providers.hetzner]
kind = "hetzner"

[networks.private]
cidr = "10.0.0.0/8"

[admins.ops]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKey000000000000000000000000000000 ops@test"]
sources = ["198.51.100.0/24"]

[secrets.db]
file = "secrets.sops.yaml"

[templates.node.hosts."{instance}"]
provider = "hetzner"
type = "cx32"
image = "ubuntu-24.04"
public = true
networks = { private = "{address}" }

[templates.node.services."edge-{instance}"]
module = "caddy"
host = "{instance}"

[templates.node.services."app-{instance}"]
module = "app"
host = "{instance}"
connects = ["{database}", "cache-{instance}"]
secrets = { database_password = "db", cache_password = "db" }
options = { image = "ghcr.io/example/app:1.4.2" }

[templates.node.services."db-{instance}"]
module = "postgres"
host = "{instance}"
secrets = { password = "db" }

[templates.node.services."pgbouncer-{instance}"]
feature = "pgbouncer"
module = "pgbouncer"
host = "{instance}"
connects = ["db-{instance}"]
secrets = { password = "db" }

[templates.node.services."cache-{instance}"]
module = "valkey"
host = "{instance}"
secrets = { password = "db" }

[templates.node.routes."app.{instance}.example.com"]
service = "app-{instance}"
edge = "edge-{instance}"

[templates.node.routes."www.{instance}.example.com"]
service = "app-{instance}"
edge = "edge-{instance}"

[templates.node.routes."api.{instance}.example.com"]
feature = "api"
service = "app-{instance}"
edge = "edge-{instance}"
"#,
    );
    for i in 0..hosts {
        let mut features = Vec::new();
        if i % 3 == 0 {
            features.push("\"pgbouncer\"");
        }
        if i % 2 == 0 {
            features.push("\"api\"");
        }
        let database = if i % 3 == 0 { format!("pgbouncer-n{i:05}") } else { format!("db-n{i:05}") };
        let address = format!("10.{}.{}.{}", i / 62500, i / 250 % 250, i % 250 + 2);
        let _ = write!(
            t,
            "\n[instances.n{i:05}]\ntemplate = \"node\"\nfeatures = [{}]\nvars = {{ address = \"{address}\", database = \"{database}\" }}\n",
            features.join(", ")
        );
    }
    t
}

/// The SYSTEM.md of a fleet of `hosts` hosts.
fn system_md(hosts: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("system.toml"), fleet(hosts)).unwrap();
    let opts = Options { check_only: true, ..Options::default() };
    match compile(dir.path(), &opts).unwrap() {
        Outcome::Ok(c) => kiln::render::system_doc::emit(&c.system),
        Outcome::Failed(f) => panic!("the fleet does not compile: {:?}", f.diagnostics.iter().map(|d| &d.message).collect::<Vec<_>>()),
    }
}

fn judge(md: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("SYSTEM.md");
    std::fs::write(&path, md).unwrap();
    oracle("mermaid", &path)
}

fn mermaid_block(md: &str) -> &str {
    let start = md.find("```mermaid\n").expect("a mermaid block");
    let end = md[start + 11..].find("```").expect("closed") + start + 11;
    &md[start..end]
}

#[test]
fn a_thousand_hosts_get_a_grouped_diagram_that_mermaid_renders() {
    let md = system_md(1000);
    judge(&md).expect("mermaid renders the 1,000-host diagram");
    let block = mermaid_block(&md);
    assert!(block.len() < 50_000, "{} characters", block.len());
    // Two groups of hosts (with and without PgBouncer), hosts counted per module.
    assert!(block.contains("group 1: 334 hosts"), "{block}");
    assert!(block.contains("group 2: 666 hosts"), "{block}");
    assert!(block.contains("pgbouncer ×334"), "{block}");
    // Every host is listed, with its services, under Hosts.
    let hosts = &md[md.find("## Hosts").expect("a Hosts section")..];
    for i in [0, 1, 499, 999] {
        let row = hosts.lines().find(|l| l.starts_with(&format!("| `n{i:05}` |"))).unwrap_or_else(|| panic!("n{i:05} is listed"));
        assert!(row.contains(&format!("`app-n{i:05}` (app)")), "{row}");
        assert_eq!(row.contains("pgbouncer"), i % 3 == 0, "{row}");
    }
}

#[test]
fn a_small_fleet_keeps_every_host_and_service_in_the_diagram() {
    let md = system_md(5);
    judge(&md).expect("mermaid renders the 5-host diagram");
    let block = mermaid_block(&md);
    assert!(block.contains("subgraph host_n00004"), "{block}");
    assert!(block.contains("svc_pgbouncer_n00003"), "{block}");
    assert!(!md.contains("## Hosts"), "no separate host list when the diagram shows every host");
}

/// The judge refuses what mermaid would not render: more than 500 edges, more than 50,000
/// characters (mermaid's own parse checks the first; its render replaces the second with an error).
#[test]
fn the_judge_refuses_diagrams_mermaid_would_not_render() {
    let edges: String = (0..600).map(|i| format!("  a{i} --> b{i}\n")).collect();
    assert!(judge(&format!("# x\n\n```mermaid\nflowchart LR\n{edges}```\n")).is_err(), "600 edges accepted");
    let long: String = (0..300).map(|i| format!("  a{i}[\"{}\"] --> b{i}\n", "x".repeat(200))).collect();
    assert!(judge(&format!("# x\n\n```mermaid\nflowchart LR\n{long}```\n")).is_err(), "65,000 characters accepted");
    let fine: String = (0..300).map(|i| format!("  a{i} --> b{i}\n")).collect();
    judge(&format!("# x\n\n```mermaid\nflowchart LR\n{fine}```\n")).expect("300 short edges render");
}
