//! The module format's host-facing keys (issue 11, "module format gaps"): a published host port
//! different from the container's (`host_port`, the system's `ports`), an owned volume, ulimits,
//! devices, read-only host mounts and scheduled jobs. The fixture system in
//! tests/fixtures/module_format is built and its artifacts read back by their consumers
//! (`docker-compose config`, dash and shellcheck, `systemd-analyze verify`, Caddy's upstreams);
//! bad declarations are refused at their place in the module file.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/module_format")
}

fn built(tmp: &Path) -> PathBuf {
    build_with_modules(&fixture().join("modules"), &fixture().join("system"), &tmp.join("store"), &tmp.join("out"))
}

#[test]
fn a_host_port_is_published_opened_and_dialled_from_other_hosts_while_the_bridge_uses_the_container_port() {
    let tmp = tempfile::tempdir().unwrap();
    let out = built(tmp.path());
    let app = compose_config(&out.join("hosts/app/compose.yaml"));
    let ports: Vec<(u64, String)> = app["services"]["gauge"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["target"].as_u64().unwrap(), p["published"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(ports, [(8080, "9080".to_string()), (8081, "9181".to_string())], "host:container as the module and the system say");
    // Same host, same Compose network: the container's own port.
    assert_eq!(app["services"]["near"]["environment"]["GAUGE"], "gauge:8080");
    // Another host: the host port on the private address.
    let edge = compose_config(&out.join("hosts/edge/compose.yaml"));
    assert_eq!(edge["services"]["far"]["environment"]["GAUGE"], "10.0.0.3:9080");
    // A native edge on another host dials the system's host port.
    assert!(read(&out.join("hosts/edge/Caddyfile")).contains("reverse_proxy 10.0.0.3:9181"));

    // The firewall opens the host ports; Docker's forwarded packets are matched after DNAT, on
    // the container's ports.
    let prov = read(&out.join("hosts/app/provision.sh"));
    for (verb, port) in [("allow", 9080), ("route allow", 8080), ("allow", 9181), ("route allow", 8081)] {
        let line = format!("\"$@\" {verb} proto tcp from 10.0.0.2/32 to any port {port} ");
        assert!(prov.contains(&line), "missing `{line}` in the provisioner");
    }
    assert!(!prov.contains("to any port 8080 comment") || prov.contains("route allow proto tcp from 10.0.0.2/32 to any port 8080"));
    assert!(!prov.contains("\"$@\" allow proto tcp from 10.0.0.2/32 to any port 8080"), "INPUT rules name the host port");

    let show = run(kiln().args(["--modules"]).arg(fixture().join("modules")).args(["show", "--json"]).arg(fixture().join("system")));
    assert!(show.status.success(), "{}", text(&show.stderr));
    let show: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let s = show.to_string();
    assert!(s.contains("9080") && s.contains("9181"), "kiln show names the host ports: {s}");
}

#[test]
fn host_mounts_devices_ulimits_reach_compose_read_only_and_the_volume_gets_its_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let out = built(tmp.path());
    let app = compose_config(&out.join("hosts/app/compose.yaml"));
    let g = &app["services"]["gauge"];
    let binds: Vec<(String, String, bool)> = g["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "bind")
        .map(|v| (v["source"].as_str().unwrap().to_string(), v["target"].as_str().unwrap().to_string(), v["read_only"] == true))
        .collect();
    assert!(binds.contains(&("/var/log".into(), "/host/var/log".into(), true)), "{binds:?}");
    assert!(binds.contains(&("/sys".into(), "/sys".into(), true)), "{binds:?}");
    assert!(binds.iter().all(|b| b.2), "every host mount is read-only: {binds:?}");
    assert_eq!(g["ulimits"]["nofile"]["soft"], 65536);
    assert_eq!(g["ulimits"]["nofile"]["hard"], 65536);
    assert_eq!(g["ulimits"]["nproc"]["soft"], 4096);
    let devices = g["devices"].to_string();
    assert!(devices.contains("/dev/kmsg"), "{devices}");

    // The owner: the volume is created first (container not started), then its directory
    // chowned, then the service started; the whole provisioner passes shellcheck and dash.
    let prov_path = out.join("hosts/app/provision.sh");
    oracle("sh", &prov_path).unwrap();
    let prov = read(&prov_path);
    let create = prov.find("up --no-start --no-deps gauge").expect("the volume is created before the service starts");
    let chown = prov.find("chown 1000:1000 \"$dir\"").expect("the volume's directory is chowned");
    let up = prov.find("\ncompose_up 600 gauge").unwrap();
    assert!(create < chown && chown < up, "create, chown, start");
    assert!(prov.contains("docker volume inspect --format '{{ .Mountpoint }}' gaps_gauge-data"));
}

#[test]
fn jobs_are_timers_that_run_their_command_in_the_container_and_pass_systemd_and_shellcheck() {
    let tmp = tempfile::tempdir().unwrap();
    let out = built(tmp.path());
    let jobs = out.join("hosts/app/jobs");
    for name in ["kiln-job-gauge-sweep", "kiln-job-gauge-report"] {
        oracle("sh", &jobs.join(format!("{name}.sh"))).unwrap();
        oracle("systemd", &jobs.join(format!("{name}.service"))).unwrap();
        oracle("systemd", &jobs.join(format!("{name}.timer"))).unwrap();
        let timer = read(&jobs.join(format!("{name}.timer")));
        assert!(timer.contains(&format!("Unit={name}.service")));
    }
    assert!(read(&jobs.join("kiln-job-gauge-sweep.timer")).contains("OnCalendar=*:0/5\n"));
    assert!(read(&jobs.join("kiln-job-gauge-report.timer")).contains("OnCalendar=Mon *-*-* 04:00:00\n"));
    let sweep = read(&jobs.join("kiln-job-gauge-sweep.sh"));
    assert!(
        sweep.contains(
            "exec docker compose --file /opt/kiln/compose.yaml exec -T --user 1000 gauge sh -c 'find /data -name '\\''*.tmp'\\'' -mmin +60 -delete'"
        ),
        "{sweep}"
    );
    let report = read(&jobs.join("kiln-job-gauge-report.sh"));
    assert!(report.contains("run --rm --no-deps -T gauge du -s /data"), "{report}");
    // Installed and started by the provisioner; old job units removed.
    let prov = read(&out.join("hosts/app/provision.sh"));
    assert!(
        prov.contains("reload_units\nsystemctl --no-reload enable --now kiln-job-gauge-report.timer kiln-job-gauge-sweep.timer"),
        "{prov}"
    );
    assert!(prov.contains("/etc/systemd/system/kiln-job-*.timer"));
    // Every job artifact is in the payload's checksums.
    let sums = read(&out.join("hosts/app/SHA256SUMS"));
    assert!(sums.contains("jobs/kiln-job-gauge-sweep.timer"));
    // A host without jobs still retires old ones.
    assert!(read(&out.join("hosts/edge/provision.sh")).contains("/etc/systemd/system/kiln-job-*.timer"));
}

/// Builds the fixture system with `gauge`'s module file edited by `edit`; returns stderr.
fn refused(edit: impl Fn(&str) -> String) -> String {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&fixture(), tmp.path());
    let m = tmp.path().join("modules/gauge/module.toml");
    std::fs::write(&m, edit(&read(&m))).unwrap();
    let out = run(kiln().arg("--modules").arg(tmp.path().join("modules")).arg("check").arg(tmp.path().join("system")));
    assert!(!out.status.success(), "the build should fail");
    text(&out.stderr)
}

#[test]
fn a_host_mount_that_holds_the_docker_socket_needs_docker_socket() {
    for mount in ["/:/rootfs", "/var/run:/var/run", "/run/docker.sock:/var/run/docker.sock", "/etc/kiln:/k"] {
        let err = refused(|m| m.replace("host_mounts = [", &format!("host_mounts = [\"{mount}\", ")));
        assert!(err.contains("exposes") && err.contains("docker_socket = true"), "{mount}: {err}");
        assert!(err.contains("module.toml:"), "located in the module file: {err}");
    }
    // With docker_socket declared, `/` is accepted as a module (cAdvisor's case), and the
    // service then counts as holding the socket: routed publicly, `docker-socket-web` refuses it.
    let err = refused(|m| m.replace("host_mounts = [", "docker_socket = true\nhost_mounts = [\"/:/rootfs\", "));
    assert!(err.contains("error[docker-socket-web]") && !err.contains("exposes"), "{err}");
}

#[test]
fn instead_of_docker_socket_on_a_module_without_the_socket_is_refused() {
    let err =
        refused(|m| format!("{m}\n[requires.docker]\nmodules = [\"socket-proxy\"]\noptional = true\ninstead_of_docker_socket = true\n"));
    assert!(err.contains("`instead_of_docker_socket` on a module that mounts no Docker socket"), "{err}");
    assert!(err.contains("module.toml:"), "located in the module file: {err}");
}

#[test]
fn secret_paths_name_declared_slots_and_set_a_variable_once() {
    let slot = "[secrets.token]\ndescription = \"a token\"\noptional = true\n";
    let cases = [
        ("[container.secret_paths]\nTOKEN_FILE = \"tokn\"\n", "environment variable `TOKEN_FILE` names no secret slot `tokn`"),
        (
            "[container.secret_paths]\nTOKEN_FILE = \"token\"\n[container.env_secrets]\nTOKEN_FILE = \"token\"\n",
            "`TOKEN_FILE` is set twice",
        ),
        ("[container.secret_paths]\nTOKEN_FILE = \"token\"\n[container.environment]\nTOKEN_FILE = \"/x\"\n", "`TOKEN_FILE` is set twice"),
    ];
    for (table, want) in cases {
        let err = refused(|m| format!("{m}\n{slot}{table}"));
        assert!(err.contains(want), "expected `{want}` in:\n{err}");
        assert!(err.contains("module.toml:"), "located in the module file: {err}");
    }
}

#[test]
fn a_secret_taken_from_the_server_cannot_also_be_a_password_kiln_makes() {
    let secrets = "[secrets.db_password]\ndescription = \"the role's password\"\n";
    let provision = "[requires.db]\nmodules = [\"postgres\"]\noptional = true\n\
                     provision = { role = \"db_user\", database = \"db_name\", password = \"db_password\" }\n";
    let options = "[options.db_user]\ntype = \"string\"\ndefault = \"gauge\"\ndescription = \"x\"\n\
                   [options.db_name]\ntype = \"string\"\ndefault = \"gauge\"\ndescription = \"x\"\n";
    // Taken on the same requirement and on another: refused either way, at the module file.
    for taken in [
        "same_secrets = { db_password = \"password\" }\n",
        "[requires.other]\nmodules = [\"postgres\"]\noptional = true\nsame_secrets = { db_password = \"password\" }\n",
    ] {
        let err = refused(|m| format!("{m}\n{options}{secrets}{provision}{taken}"));
        assert!(err.contains("secret `db_password` is both taken from the server and the password of a database role kiln makes"), "{err}");
        assert!(err.contains("module.toml:"), "located in the module file: {err}");
    }
}

#[test]
fn bad_mounts_devices_ulimits_owners_jobs_and_ports_are_refused_in_the_module_file() {
    let cases: &[(&str, &str, &str)] = &[
        ("host_mounts = [\"/var/log:/host/var/log\"", "host_mounts = [\"/var/log\"", "is not `SOURCE:TARGET`"),
        ("host_mounts = [\"/var/log:/host/var/log\"", "host_mounts = [\"/var/../etc:/x\"", "plain absolute host path"),
        ("host_mounts = [\"/var/log:/host/var/log\"", "host_mounts = [\"/var/log:/\"", "cannot replace the container's root"),
        ("devices = [\"/dev/kmsg\"]", "devices = [\"/etc/passwd\"]", "is not a device"),
        ("devices = [\"/dev/kmsg\"]", "devices = [\"/dev/kmsg:/dev/kmsg:rwx\"]", "not drawn from `rwm`"),
        ("nproc = 4096", "nprocs = 4096", "ulimit"),
        ("nproc = 4096", "nproc = { soft = 10, hard = 5 }", "is not a limit"),
        ("owner = \"1000:1000\"", "owner = \"www-data\"", "is not `UID:GID`"),
        ("schedule = \"*:0/5\"", "schedule = \"every five minutes\"", "not a systemd calendar expression"),
        ("container = \"run\"", "container = \"fork\"", "job container"),
        ("user = \"1000\"", "user = \"root; rm -rf /\"", "is not a user"),
        ("host_port = 9080", "host_port = 70000", "70000"),
    ];
    for (from, to, want) in cases {
        let err = refused(|m| {
            assert!(m.contains(from), "fixture lacks `{from}`");
            m.replacen(from, to, 1)
        });
        assert!(err.contains(want), "`{to}`: expected `{want}` in:\n{err}");
        assert!(err.contains("module.toml:"), "`{to}` is located in the module file:\n{err}");
    }
}

#[test]
fn a_system_port_for_an_unknown_endpoint_is_an_error_at_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&fixture(), tmp.path());
    let s = tmp.path().join("system/system.toml");
    std::fs::write(&s, read(&s).replace("ports = { admin = 9181 }", "ports = { admn = 9181 }")).unwrap();
    let out = run(kiln().arg("--modules").arg(tmp.path().join("modules")).arg("check").arg(tmp.path().join("system")));
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("has no endpoint `admn`") && err.contains("did you mean `admin`"), "{err}");
}
