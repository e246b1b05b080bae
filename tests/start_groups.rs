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
        .filter_map(|l| l.strip_prefix("compose_up "))
        .map(|rest| {
            // service names are kiln names (letters, digits, `-`), each single-quoted
            rest.split(' ').map(|w| w.trim_matches('\'').to_string()).collect()
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

/// A group whose containers do not all become healthy stops the provisioner with an error line
/// naming each one that is not, with its state, and before it each one's last healthcheck output
/// and log tail (what `kiln boot` reports as the provisioner's result). Run by dash with a
/// stand-in `docker` on PATH (a shell script answering `compose up` with failure and `inspect`
/// and `logs` with a fixed unhealthy postgres and a healthy valkey): it proves the prelude's
/// `compose_up` logic, not Docker's template output, which the lab's VMs run for real.
#[test]
fn a_group_not_healthy_is_named_with_what_each_said() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let docker = bin.join("docker");
    std::fs::write(
        &docker,
        r#"#!/bin/sh
# kiln test stand-in for docker (not Docker): a postgres that is restarting and unhealthy
case "$*" in
*" up "*) echo "container five-vps-saas-postgres-1 is unhealthy" >&2; exit 1 ;;
*" ps --all --quiet "*) echo "id-${7}" ;;
"inspect --format {{.State.Status}}"*id-postgres) echo "restarting, unhealthy" ;;
"inspect --format {{.State.Status}}"*id-valkey) echo "running, healthy" ;;
"inspect --format {{with .State.Health}}"*id-postgres) printf 'pg_isready: no response\n' ;;
"logs --tail 30 id-postgres") echo 'FATAL:  lock file "postmaster.pid" already exists' >&2 ;;
*) echo "unexpected: docker $*" >&2; exit 2 ;;
esac
"#,
    )
    .unwrap();
    std::fs::set_permissions(&docker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = common::prelude_functions(&["log", "die", "compose_up"]) + "compose_up valkey postgres\necho not reached\n";
    let out = std::process::Command::new("dash")
        .arg("-euc")
        .arg(&script)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("KILN_ROOT", tmp.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (common::text(&out.stdout), common::text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "", "the provisioner stops");
    let last = stderr.lines().last().unwrap();
    assert_eq!(last, "kiln: error: services not healthy: postgres (restarting, unhealthy)", "{stderr}");
    assert!(stderr.contains("kiln: postgres is restarting, unhealthy; its last healthchecks said: pg_isready: no response"), "{stderr}");
    assert!(stderr.contains("FATAL:  lock file"), "the log's end: {stderr}");
    assert!(!stderr.contains("valkey is"), "a healthy one is not named: {stderr}");
}
