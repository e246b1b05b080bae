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
        .filter_map(|l| l.strip_prefix("compose_up 600 "))
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

/// Runs the prelude's `compose_up` with `call` under dash, with `docker` on PATH the given
/// stand-in script: (exit status, stdout, stderr).
fn compose_up_with(docker_script: &str, call: &str) -> (Option<i32>, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let docker = bin.join("docker");
    std::fs::write(&docker, docker_script.replace("STATE_DIR", &tmp.path().display().to_string())).unwrap();
    std::fs::set_permissions(&docker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = common::prelude_functions(&["log", "die", "container_id", "compose_up"]) + call + "\necho done\n";
    let out = std::process::Command::new("dash")
        .arg("-euc")
        .arg(&script)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("KILN_ROOT", tmp.path())
        .output()
        .unwrap();
    (out.status.code(), common::text(&out.stdout), common::text(&out.stderr))
}

/// A group whose containers do not all become healthy stops the provisioner with an error line
/// naming each one that is not, with its state, and before it each one's last healthcheck output
/// and log tail (what `kiln boot` reports as the provisioner's result). Run by dash with a
/// stand-in `docker` on PATH (a shell script answering `compose up` with failure and `inspect`
/// and `logs` with a fixed unhealthy postgres and a healthy valkey): it proves the prelude's
/// `compose_up` logic, not Docker's template output, which the lab's VMs run for real.
#[test]
fn a_group_not_healthy_is_named_with_what_each_said() {
    let docker = r#"#!/bin/sh
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
"#;
    let (status, stdout, stderr) = compose_up_with(docker, "compose_up 0 valkey postgres");
    assert_eq!(status, Some(1), "{stderr}");
    assert_eq!(stdout, "", "the provisioner stops");
    let last = stderr.lines().last().unwrap();
    assert_eq!(last, "kiln: error: services not healthy: postgres (restarting, unhealthy)", "{stderr}");
    assert!(stderr.contains("kiln: postgres: its last healthchecks said: pg_isready: no response"), "{stderr}");
    assert!(stderr.contains("FATAL:  lock file"), "the log's end: {stderr}");
    assert!(!stderr.contains("valkey:"), "a healthy one is not named: {stderr}");
}

/// `docker compose up --wait` gives up at the first failed healthcheck, but Docker keeps
/// checking: five-vps-saas identity's authentik database, initialising under load, was
/// unhealthy when Compose gave up and healthy a minute later. Within its time `compose_up`
/// looks again and goes on (same stand-in `docker`: its postgres unhealthy at the first look,
/// healthy at the second).
#[test]
fn a_slow_first_start_that_turns_healthy_goes_on() {
    let docker = r#"#!/bin/sh
# kiln test stand-in for docker (not Docker): a postgres healthy at its second inspection
case "$*" in
*" up "*) echo "container five-vps-saas-postgres-1 is unhealthy" >&2; exit 1 ;;
*" ps --all --quiet "*) echo "id-${7}" ;;
"inspect --format {{.State.Status}}"*id-postgres)
	if [ -e STATE_DIR/looked ]; then echo "running, healthy"; else : >STATE_DIR/looked; echo "running, unhealthy"; fi ;;
*) echo "unexpected: docker $*" >&2; exit 2 ;;
esac
"#;
    let (status, stdout, stderr) = compose_up_with(docker, "compose_up 60 postgres");
    assert_eq!((status, stdout.as_str()), (Some(0), "done\n"), "{stderr}");
    assert!(stderr.contains("kiln: healthy after a slow start: postgres"), "{stderr}");
}

/// A group waits for the services on other hosts it connects to before it starts (servers boot
/// together: five-vps-saas's app came up before db's PgBouncer, and its healthcheck failed):
/// app waits for PgBouncer on db and Valkey on cache at the addresses and ports it dials, no
/// group waits for a service on its own host, and no collector waits for the Loki it ships to
/// (alloy's `wait = false`).
#[test]
fn a_group_waits_for_what_it_connects_to_on_other_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let r = build(&common::repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("r"));
    let app = common::read(&r.join("hosts/app/provision.sh"));
    let lines: Vec<&str> = app.lines().collect();
    let up = lines.iter().position(|l| l.starts_with("compose_up ") && l.ends_with(" app")).expect("app's group");
    for wait in ["wait_for 'pgbouncer on db' 10.0.0.4 6432 1200", "wait_for 'valkey on cache' 10.0.0.5 6379 1200"] {
        let at = lines.iter().position(|l| *l == wait).unwrap_or_else(|| panic!("{wait} in app's provisioner"));
        assert!(at < up, "{wait} before app's group");
    }
    for host in ["edge", "app", "db", "cache", "identity"] {
        let p = common::read(&r.join("hosts").join(host).join("provision.sh"));
        let waits: Vec<&str> = p.lines().filter(|l| l.starts_with("wait_for ")).collect();
        assert!(waits.iter().all(|w| !w.contains(&format!(" on {host}'"))), "{host} waits for none of its own: {waits:?}");
        assert!(waits.iter().all(|w| !w.contains("loki")), "{host}: no collector waits for Loki: {waits:?}");
    }
}

/// `wait_for` returns once the port answers, and after its time when it does not (then the
/// group's healthchecks judge): run by dash against a real listener and a closed port.
#[test]
fn wait_for_returns_when_the_port_answers_or_its_time_is_up() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let script = common::prelude_functions(&["log", "wait_for"])
        + &format!("wait_for 'pgbouncer on db' 127.0.0.1 {open} 60\nwait_for 'valkey on cache' 127.0.0.1 {closed} 0\necho done\n");
    let out = std::process::Command::new("dash").arg("-euc").arg(&script).output().unwrap();
    let stderr = common::text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(common::text(&out.stdout), "done\n");
    assert!(stderr.contains(&format!("kiln: pgbouncer on db answers at 127.0.0.1:{open}")), "{stderr}");
    assert!(stderr.contains(&format!("kiln: valkey on cache (127.0.0.1:{closed}) does not answer after 0 s")), "{stderr}");
}

/// Before any container starts, the provisioner stops on a Docker Engine older than 25 (API
/// 1.44), naming its version: the healthchecks carry `start_interval`, which Compose refuses to
/// send to an older engine. Run by dash with a stand-in `docker` on PATH (a shell script, not
/// Docker, answering `version` as engines 24.0.7 and 26.1.5 do): it proves the prelude's
/// version test; the lab's VMs run it against Debian 13's real Docker 26.
#[test]
fn an_engine_older_than_25_stops_the_provisioner_with_its_version() {
    for (api, version, ok) in [("1.43", "24.0.7", false), ("1.45", "26.1.5", true), ("1.9", "1.9.1", false)] {
        let tmp = tempfile::tempdir().unwrap();
        let docker = tmp.path().join("docker");
        let script = format!(
            "#!/bin/sh\n# kiln test stand-in for docker (not Docker)\ncase \"$*\" in\n\"version --format {{{{.Server.APIVersion}}}}\") echo {api} ;;\n\"version --format {{{{.Server.Version}}}}\") echo {version} ;;\n*) echo \"unexpected: docker $*\" >&2; exit 2 ;;\nesac\n"
        );
        std::fs::write(&docker, script).unwrap();
        std::fs::set_permissions(&docker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let sh = common::prelude_functions(&["log", "die", "docker_new_enough"]) + "docker_new_enough\necho done\n";
        let out = std::process::Command::new("dash")
            .arg("-euc")
            .arg(&sh)
            .env("PATH", format!("{}:/usr/bin:/bin", tmp.path().display()))
            .output()
            .unwrap();
        let stderr = common::text(&out.stderr);
        assert_eq!(out.status.success(), ok, "API {api}: {stderr}");
        if ok {
            assert_eq!(common::text(&out.stdout), "done\n");
        } else {
            assert!(stderr.contains(&format!("Docker Engine {version} is older than 25")), "{stderr}");
        }
    }
}
