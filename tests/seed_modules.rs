//! Module-level gaps the audits of seeds 003 (Jacker) and 004 (five-VPS SaaS) found, each
//! checked on the generated key, variable or file that was missing, read by its consumer:
//! the real `docker-compose config` (with the env files the provisioner's own `env_secrets`
//! writes), TOML/YAML parsers, and for Valkey the real `valkey-server` and `valkey-cli`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The environment of `service` on `host` as Compose hands it to the container: the
/// provisioner's own `env_secrets` lines run under dash in a temporary root, each secret file
/// holding `value-of-NAME`, then the real `docker-compose config` reads the Compose file
/// pointed at those env files.
fn container_env(out: &Path, host: &str, service: &str, tmp: &Path) -> serde_json::Map<String, serde_json::Value> {
    let dir = out.join("hosts").join(host);
    let root = tmp.join(format!("root-{host}"));
    std::fs::create_dir_all(root.join("secrets")).unwrap();
    let r = root.display().to_string();
    let provision = read(&dir.join("provision.sh"));
    for call in provision.lines().filter(|l| l.starts_with("env_secrets ")) {
        for word in call.split_whitespace().filter(|w| w.starts_with("/etc/kiln/secrets/")) {
            let name = word.trim_start_matches("/etc/kiln/secrets/");
            std::fs::write(root.join("secrets").join(name), format!("value-of-{name}\n")).unwrap();
        }
        let call = call.replace(" /etc/kiln/secrets/", &format!(" {r}/secrets/")).replace(" /etc/kiln/env/", &format!(" {r}/env/"));
        let script = format!("set -eu\numask 022\nexport LC_ALL=C\n{}\n{call}\n", env_secrets_functions());
        let o = run(Command::new("dash").arg("-c").arg(script));
        assert!(o.status.success(), "{call}: {}", text(&o.stderr));
    }
    let compose = read(&dir.join("compose.yaml")).replace("/etc/kiln/env/", &format!("{r}/env/"));
    let file = root.join("compose.yaml");
    std::fs::write(&file, compose).unwrap();
    let cfg = compose_config(&file);
    cfg["services"][service]["environment"].as_object().cloned().unwrap_or_default()
}

fn copy_example(name: &str, tmp: &Path) -> PathBuf {
    let sys = tmp.join(name);
    copy_tree(&repo().join("flake-free-examples").join(name), &sys);
    sys
}

/// Replaces `before` (which must be in `file`) by `after`.
fn edit(file: &Path, before: &str, after: &str) {
    let s = read(file);
    assert!(s.contains(before), "{} no longer holds {before:?}: update this test", file.display());
    std::fs::write(file, s.replacen(before, after, 1)).unwrap();
}

fn build_fails(system: &Path, tmp: &Path) -> String {
    let o = run(kiln().arg("build").arg(system).arg("--store").arg(tmp.join("store")).arg("--out-link").arg(tmp.join("failed")));
    assert!(!o.status.success(), "kiln build {} should fail", system.display());
    text(&o.stderr)
}

/// Jacker audit, Layer 2 "Redis: Session storage for OAuth": OAuth2-Proxy kept its sessions in
/// the cookie. Connected to the Valkey service through `sessions`, its config names the Redis
/// store (pkg/apis/options/sessions.go: `session_store_type`, `redis_connection_url`) at the
/// Valkey container's address, and the password, which has no `_file` form upstream, reaches
/// the container as `OAUTH2_PROXY_REDIS_PASSWORD` (load.go: prefix `OAUTH2_PROXY`, the cfg key
/// upper-cased) through a root-only env file, never through the store. Without the password
/// secret the build stops at the slot.
#[test]
fn jacker_oauth2_proxy_keeps_its_sessions_in_valkey() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build(&repo().join("flake-free-examples/jacker"), &tmp.path().join("store"), &tmp.path().join("out"));
    let cfg: toml::Table = read(&out.join("hosts/jacker/files/oauth2-proxy/oauth2-proxy.cfg")).parse().expect("oauth2-proxy.cfg is TOML");
    assert_eq!(cfg.get("session_store_type").and_then(|v| v.as_str()), Some("redis"), "{cfg:?}");
    assert_eq!(cfg.get("redis_connection_url").and_then(|v| v.as_str()), Some("redis://redis:6379"), "{cfg:?}");
    assert!(cfg.keys().all(|k| !k.contains("password")), "no password in the stored config: {cfg:?}");

    let env = container_env(&out, "jacker", "oauth2-proxy", tmp.path());
    assert_eq!(env.get("OAUTH2_PROXY_REDIS_PASSWORD").and_then(|v| v.as_str()), Some("value-of-redis_password"), "{env:?}");
    // The Valkey service the URL names is the one holding that password, and starts first.
    let compose = yaml_to_json(&out.join("hosts/jacker/compose.yaml"));
    let proxy = &compose["services"]["oauth2-proxy"];
    assert_eq!(proxy["depends_on"]["redis"]["condition"], "service_healthy", "{proxy}");
    let valkey = compose["services"]["redis"]["secrets"].to_string();
    assert!(valkey.contains("redis_password"), "{valkey}");
    assert!(
        proxy["networks"].as_array().is_some_and(|n| n.iter().any(|b| b == "cache")),
        "oauth2-proxy must share the `cache` bridge with redis: {proxy}"
    );

    let sys = copy_example("jacker", tmp.path());
    edit(&sys.join("services.toml"), r#", redis_password = "redis_password" }"#, " }");
    let err = build_fails(&sys, tmp.path());
    assert!(err.contains("secrets.redis_password") && err.contains("oauth2-proxy"), "{err}");
}

/// Jacker audit ("secret → environment variable … CrowdSec `ENROLL_KEY`"): CrowdSec could not
/// enrol in the CrowdSec console. The image's `docker_start.sh` runs `cscli console enroll`
/// when `ENROLL_KEY` is set (with `ENROLL_INSTANCE_NAME` and the words of `ENROLL_TAGS`) and
/// reads the key from the environment only: the key reaches the container through the
/// provisioner's root-only env file, never the Compose file or the store, and the name and
/// tags are plain variables. Unbound (the module's default), nothing is set.
#[test]
fn jacker_crowdsec_enrols_in_the_console() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build(&repo().join("flake-free-examples/jacker"), &tmp.path().join("store"), &tmp.path().join("out"));
    let compose = read(&out.join("hosts/jacker/compose.yaml"));
    assert!(!compose.contains("ENROLL_KEY"), "the key is no plain Compose variable");
    let env = container_env(&out, "jacker", "crowdsec", tmp.path());
    let var = |k: &str| env.get(k).and_then(|v| v.as_str()).map(str::to_string);
    assert_eq!(var("ENROLL_KEY").as_deref(), Some("value-of-crowdsec_enroll_key"), "{env:?}");
    assert_eq!(var("ENROLL_INSTANCE_NAME").as_deref(), Some("jacker"), "{env:?}");
    assert_eq!(var("ENROLL_TAGS").as_deref(), Some("jacker edge"), "{env:?}");
    assert_eq!(var("DISABLE_ONLINE_API").as_deref(), Some("false"), "enrolment needs the online API: {env:?}");

    let sys = copy_example("jacker", tmp.path());
    edit(&sys.join("services.toml"), r#", enroll_key = "crowdsec_enroll_key" }"#, " }");
    let out = build(&sys, &tmp.path().join("store"), &tmp.path().join("out-unbound"));
    assert!(!read(&out.join("hosts/jacker/provision.sh")).contains("/etc/kiln/env/crowdsec.env"), "no env file without a key");
    let env = container_env(&out, "jacker", "crowdsec", &tmp.path().join("unbound"));
    assert_eq!(env.get("ENROLL_KEY"), None, "{env:?}");
}

/// `service` on `host` as `docker-compose config` resolves it, and its published ports as
/// `HOST_IP:"PUBLISHED"->TARGET`.
fn published(out: &Path, host: &str, service: &str) -> (serde_json::Value, Vec<String>) {
    let cfg = compose_config(&out.join("hosts").join(host).join("compose.yaml"));
    let svc = cfg["services"][service].clone();
    assert!(svc.is_object(), "no service {service} on {host}");
    let ports = svc["ports"]
        .as_array()
        .map(|ps| ps.iter().map(|p| format!("{}:{}->{}", p["host_ip"].as_str().unwrap_or(""), p["published"], p["target"])).collect())
        .unwrap_or_default();
    (svc, ports)
}

/// Five-VPS audit, "Metrics": PostgreSQL, PgBouncer and Valkey had no exporters. Each now runs
/// beside its server, Prometheus on identity has a job whose target is exactly the address and
/// port Compose publishes the exporter on (read back by `docker-compose config`), the file is
/// accepted by promtool, the exporters' credentials are mounted secret files (never an
/// environment value), and PgBouncer lets the exporter's role read its console
/// (`stats_users`, PgBouncer config.html) with the README's `ignore_startup_parameters`.
#[test]
fn five_vps_data_tier_exporters_are_scraped() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("out"));
    let prom = out.join("hosts/identity/files/prometheus/prometheus.yml");
    oracle("promtool", &prom).unwrap_or_else(|e| panic!("promtool rejects prometheus.yml:\n{e}"));
    let jobs = yaml_to_json(&prom)["scrape_configs"].as_array().cloned().unwrap();
    let target = |job: &str| -> String {
        let j = jobs.iter().find(|j| j["job_name"] == job).unwrap_or_else(|| panic!("no scrape job {job}"));
        j["static_configs"][0]["targets"][0].as_str().unwrap().to_string()
    };
    for (host, addr, service, port, secret) in [
        ("db", "10.0.0.4", "postgres-exporter", 9187, "/run/secrets/postgres_exporter_password"),
        ("db", "10.0.0.4", "pgbouncer-exporter", 9127, "/run/secrets/pgbouncer_exporter_password"),
        ("cache", "10.0.0.5", "valkey-exporter", 9121, "/run/secrets/redis_exporter_password"),
    ] {
        assert_eq!(target(service), format!("{addr}:{port}"), "{service}");
        let (svc, ports) = published(&out, host, service);
        assert_eq!(ports, [format!("{addr}:\"{port}\"->{port}")], "{service} publishes its metrics on the private address only");
        let mounted: Vec<&str> = svc["secrets"].as_array().unwrap().iter().filter_map(|s| s["target"].as_str()).collect();
        assert_eq!(mounted, [secret], "{service}");
        let env: Vec<&String> = svc["environment"].as_object().map(|e| e.keys().collect()).unwrap_or_default();
        assert!(env.iter().all(|k| !k.ends_with("PASSWORD")), "{service}: no password in the environment: {env:?}");
        let fw = read(&out.join("hosts").join(host).join("provision.sh"));
        assert!(
            fw.contains(&format!("ufw allow proto tcp from 10.0.0.6/32 to any port {port} ")),
            "{service}: port {port} open to Prometheus only"
        );
    }
    let (svc, _) = published(&out, "db", "pgbouncer-exporter");
    assert_eq!(svc["environment"]["PGBOUNCER_EXPORTER_CONNECTION_STRING"], "postgres://app@pgbouncer:6432/pgbouncer?sslmode=disable");
    let ini = read(&out.join("hosts/db/files/pgbouncer/pgbouncer.ini"));
    let lines: Vec<&str> = ini.lines().map(str::trim).collect();
    assert!(lines.contains(&"stats_users = app"), "{ini}");
    assert!(lines.contains(&"ignore_startup_parameters = extra_float_digits"), "{ini}");
    let (svc, _) = published(&out, "cache", "valkey-exporter");
    assert_eq!(svc["environment"]["REDIS_ADDR"], "redis://valkey:6379");
    let (svc, _) = published(&out, "db", "postgres-exporter");
    assert_eq!(svc["environment"]["DATA_SOURCE_URI"], "postgres:5432/app?sslmode=disable");
}

/// Debian's valkey, unpacked by scripts/install-test-deps into .test-tools/valkey.
fn valkey_bin(name: &str) -> PathBuf {
    let p = repo().join(".test-tools/valkey/usr/bin").join(name);
    assert!(p.exists(), "{} is missing: run scripts/install-test-deps", p.display());
    p
}

/// A valkey-server on a private loopback port reading `conf` (kiln's generated valkey.conf),
/// with only what the container provides differently overridden on the command line (the data
/// directory, the address and port, the log) and the password the module's command passes;
/// killed on drop.
struct Valkey {
    child: std::process::Child,
    port: u16,
}

impl Valkey {
    /// Starts the server; `Err` with its output when it exits instead of answering. The one
    /// line naming the container's volume (`dir /data`) names `dir` instead: valkey changes
    /// into it while reading the file, before command-line options apply.
    fn start(conf: &Path, dir: &Path, password: &str) -> Result<Valkey, String> {
        std::fs::create_dir_all(dir).unwrap();
        let original = read(conf);
        assert_eq!(original.lines().filter(|l| *l == "dir /data").count(), 1, "{original}");
        let local = dir.join("valkey.conf");
        std::fs::write(&local, original.replace("\ndir /data\n", &format!("\ndir {}\n", dir.display()))).unwrap();
        let port = common::edges::free_port();
        let log = dir.join("valkey.log");
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new(valkey_bin("valkey-server"))
            .arg(&local)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--requirepass", password])
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("start valkey-server");
        let mut v = Valkey { child, port };
        for _ in 0..200 {
            if let Ok(Some(status)) = v.child.try_wait() {
                return Err(format!("valkey-server exited ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default()));
            }
            if v.cli(Some(password), &["PING"]).0 == "PONG" {
                return Ok(v);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(format!("valkey-server did not answer: {}", std::fs::read_to_string(&log).unwrap_or_default()))
    }

    /// `valkey-cli` against the server, the password from the environment (REDISCLI_AUTH:
    /// Debian's 8.0 CLI knows only the old name; 9.x, the module's image, reads both):
    /// (stdout, stderr), trimmed.
    fn cli(&self, password: Option<&str>, args: &[&str]) -> (String, String) {
        let mut c = Command::new(valkey_bin("valkey-cli"));
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]).args(args).env_remove("VALKEYCLI_AUTH").env_remove("REDISCLI_AUTH");
        if let Some(pw) = password {
            c.env("REDISCLI_AUTH", pw);
        }
        let o = run(&mut c);
        (text(&o.stdout).trim().to_string(), text(&o.stderr).trim().to_string())
    }
}

impl Drop for Valkey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Five-VPS audit, data tier: "Valkey with requirepass, command renaming" had no command
/// renaming. The cache's generated valkey.conf, read by the real valkey-server (Debian's, on a
/// loopback port), now refuses FLUSHALL, FLUSHDB, CONFIG, DEBUG and SHUTDOWN as unknown
/// commands while ordinary commands work for a client with the password, and a client
/// without it, or with another, is refused. A name valkey.conf would have to quote is refused
/// by the build; a name that is no command stops the real server.
#[test]
fn five_vps_valkey_refuses_dangerous_commands_and_wants_its_password() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("out"));
    let conf = out.join("hosts/cache/files/valkey/valkey.conf");
    let pw = "s3cret pass\"word";
    let v = Valkey::start(&conf, &tmp.path().join("data"), pw).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.cli(Some(pw), &["SET", "session:1", "alice"]).0, "OK");
    assert_eq!(v.cli(Some(pw), &["GET", "session:1"]).0, "alice");
    for cmd in [&["FLUSHALL"][..], &["FLUSHDB"], &["CONFIG", "GET", "maxmemory"], &["DEBUG", "SLEEP", "0"], &["SHUTDOWN", "NOSAVE"]] {
        let (o, e) = v.cli(Some(pw), cmd);
        assert!(o.contains("unknown command") || e.contains("unknown command"), "{cmd:?} is not refused: {o} {e}");
    }
    assert_eq!(v.cli(Some(pw), &["DBSIZE"]).0, "1", "the data survived");
    let (o, e) = v.cli(None, &["GET", "session:1"]);
    assert!(o.contains("NOAUTH") || e.contains("NOAUTH"), "no password: {o} {e}");
    let (o, e) = v.cli(Some("wrong"), &["GET", "session:1"]);
    assert!(!o.contains("alice") && format!("{o}{e}").contains("WRONGPASS"), "wrong password: {o} {e}");
    drop(v);

    // A name valkey.conf would need quoting for is refused at build time, at the service; one
    // that is no command reaches the server as written, and the server refuses to start.
    let sys = copy_example("five-vps-saas", tmp.path());
    edit(&sys.join("services.toml"), r#""SHUTDOWN"]"#, r#""SHUTDOWN", "GET\" \"x"]"#);
    let err = build_fails(&sys, tmp.path());
    assert!(err.contains("disabled_commands_are_command_names") && err.contains("services.toml"), "{err}");
    let sys = copy_example("five-vps-saas", &tmp.path().join("typo"));
    edit(&sys.join("services.toml"), r#""SHUTDOWN"]"#, r#""SHUTDOWN", "FLUSHEVERYTHING"]"#);
    let out = build(&sys, &tmp.path().join("store"), &tmp.path().join("out-typo"));
    let conf = out.join("hosts/cache/files/valkey/valkey.conf");
    assert!(read(&conf).lines().any(|l| l == r#"rename-command FLUSHEVERYTHING """#));
    let err = Valkey::start(&conf, &tmp.path().join("data-typo"), pw).err().expect("valkey-server must refuse a command it does not have");
    assert!(err.contains("No such command"), "{err}");
}

/// Five-VPS audit: "There is no README" mapping the seed to the example. It exists now, lists
/// every file of the example (and no other), names every service the build resolves (a
/// service on every host by its declared name) and every module they use, and each item it
/// says is not expressed gives its reason.
#[test]
fn five_vps_readme_maps_the_seed_and_says_why_for_every_gap() {
    let dir = repo().join("flake-free-examples/five-vps-saas");
    let readme = read(&dir.join("README.md"));
    assert!(readme.contains("Seed 004"), "the README names its seed");
    let mut inputs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml") || n.ends_with(".sops.yaml"))
        .collect();
    inputs.sort();
    for f in &inputs {
        assert!(readme.contains(&format!("`{f}`")), "README does not mention {f}");
    }
    for quoted in readme.split('`').skip(1).step_by(2).filter(|q| q.ends_with(".toml") || q.ends_with(".sops.yaml")) {
        assert!(inputs.iter().any(|f| f == quoted), "README names {quoted}, which the example does not have");
    }

    let tmp = tempfile::tempdir().unwrap();
    let out = build(&dir, &tmp.path().join("store"), &tmp.path().join("out"));
    let model: serde_json::Value = serde_json::from_str(&read(&out.join("model.json"))).unwrap();
    for (name, svc) in model["services"].as_object().unwrap() {
        let host = svc["host"].as_str().unwrap();
        let declared = name.strip_suffix(&format!("-{host}")).filter(|_| !readme.contains(&format!("`{name}`"))).unwrap_or(name);
        assert!(readme.contains(&format!("`{declared}`")), "README does not name service {declared}");
        let module = svc["module"].as_str().unwrap();
        assert!(readme.contains(&format!("`{module}`")), "README does not name module {module}");
    }

    let gaps = readme.split("## Not expressed").nth(1).expect("a `## Not expressed` section");
    let items: Vec<&str> = gaps.split("\n- ").skip(1).collect();
    assert!(items.len() >= 10, "{items:?}");
    let reasons = [
        "Not yet in kiln",
        "Not in kiln",
        "Upstream limitation",
        "paid feature",
        "Out of scope",
        "example's choice",
        "names no channel",
        "Application concerns",
    ];
    for item in items {
        assert!(reasons.iter().any(|r| item.contains(r)), "no reason given for: {item}");
    }
}
