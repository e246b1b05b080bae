//! The provisioner starts a host's containers in groups (eval::order::start_groups): each
//! group with one `docker compose up --wait`, so services that do not wait for each other start
//! together. Judged against the Compose file as the real `docker-compose config` resolves it:
//! every service a container `depends_on` is started (and healthy) in an earlier group, every
//! service of the file is started exactly once, and a seed host starts in fewer steps than it
//! has services.

mod common;

use std::collections::BTreeMap;

use common::{build, compose_config, examples};

/// The groups of `docker compose up` lines in a provisioner, in order, by service name.
fn up_groups(script: &str) -> Vec<Vec<String>> {
    script
        .lines()
        .filter_map(|l| l.strip_prefix("docker compose --file \"$KILN_ROOT/compose.yaml\" up --detach --wait --wait-timeout 600 "))
        .map(|rest| {
            let names = rest.strip_suffix(" >/dev/null").expect("the output discarded");
            // service names are kiln names (letters, digits, `-`), each single-quoted
            names.split(' ').map(|w| w.trim_matches('\'').to_string()).collect()
        })
        .collect()
}

#[test]
fn every_container_starts_once_after_everything_it_depends_on() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seen_hosts = 0;
    for example in examples() {
        let name = example.file_name().unwrap().to_string_lossy().to_string();
        let result = build(&example, &tmp.path().join("store"), &tmp.path().join(&name));
        for host in std::fs::read_dir(result.join("hosts")).unwrap().map(|e| e.unwrap().path()) {
            let compose = host.join("compose.yaml");
            if !compose.is_file() {
                continue;
            }
            seen_hosts += 1;
            let config = compose_config(&compose);
            let script = std::fs::read_to_string(host.join("provision.sh")).unwrap();
            let groups = up_groups(&script);
            let mut group_of: BTreeMap<&str, usize> = BTreeMap::new();
            for (i, g) in groups.iter().enumerate() {
                for s in g {
                    assert!(group_of.insert(s, i).is_none(), "{}: `{s}` started twice", host.display());
                }
            }
            let services = config["services"].as_object().unwrap();
            assert_eq!(
                group_of.keys().copied().collect::<Vec<_>>(),
                services.keys().map(String::as_str).collect::<Vec<_>>(),
                "{}: every service started once",
                host.display()
            );
            for (s, svc) in services {
                for dep in svc["depends_on"].as_object().into_iter().flatten().map(|(d, _)| d.as_str()) {
                    assert!(
                        group_of[dep] < group_of[s.as_str()],
                        "{}: `{s}` depends on `{dep}` but starts in group {} with it in group {}",
                        host.display(),
                        group_of[s.as_str()],
                        group_of[dep]
                    );
                }
            }
        }
    }
    assert!(seen_hosts >= 5, "the examples' container hosts");
}

/// traefik-edge's box: eight services in two steps (the databases, the cache, the status page
/// and the edge, then what uses the databases), where one step per service took eight.
#[test]
fn a_seed_host_starts_in_fewer_steps_than_it_has_services() {
    let tmp = tempfile::tempdir().unwrap();
    let example = common::repo().join("flake-free-examples/traefik-edge");
    let result = build(&example, &tmp.path().join("store"), &tmp.path().join("result"));
    let script = std::fs::read_to_string(result.join("hosts/box/provision.sh")).unwrap();
    let groups = up_groups(&script);
    let services: usize = groups.iter().map(Vec::len).sum();
    assert!(services >= 8, "{groups:?}");
    assert!(groups.len() * 2 <= services, "{groups:?}");
}
