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
    let cfg = compose_config_with_env(&file);
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
/// upper-cased) through a root-only env file, never through the store. The password is the
/// Valkey service's own (`[requires.sessions] same_secrets`): left unbound it is taken from
/// there, bound to another secret the build stops at the binding.
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

    // The example leaves the slot unbound: the password is declared once, on redis.
    let sys = copy_example("jacker", tmp.path());
    assert!(!read(&sys.join("services.toml")).contains("redis_password = \"redis_password\" }"), "update this test");
    let unbound = build(&sys, &tmp.path().join("store2"), &tmp.path().join("out2"));
    let env = container_env(&unbound, "jacker", "oauth2-proxy", tmp.path());
    assert_eq!(
        env.get("OAUTH2_PROXY_REDIS_PASSWORD").and_then(|v| v.as_str()),
        Some("value-of-redis_password"),
        "taken from redis: {env:?}"
    );
    edit(
        &sys.join("services.toml"),
        r#"cookie_secret = "oauth_cookie_secret" }"#,
        r#"cookie_secret = "oauth_cookie_secret", redis_password = "oauth_cookie_secret" }"#,
    );
    let err = build_fails(&sys, tmp.path());
    assert!(err.contains("binds `redis_password` to secret `oauth_cookie_secret`, but `redis` holds it as `redis_password`"), "{err}");
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
            fw.contains(&format!("\"$@\" allow proto tcp from 10.0.0.6/32 to any port {port} ")),
            "{service}: port {port} open to Prometheus only"
        );
    }
    let (svc, _) = published(&out, "db", "pgbouncer-exporter");
    // PgBouncer takes TLS clients only (`tls = true`), so the exporter asks for TLS.
    assert_eq!(svc["environment"]["PGBOUNCER_EXPORTER_CONNECTION_STRING"], "postgres://app@pgbouncer:6432/pgbouncer?sslmode=require");
    let ini = read(&out.join("hosts/db/files/pgbouncer/pgbouncer.ini"));
    let lines: Vec<&str> = ini.lines().map(str::trim).collect();
    assert!(lines.contains(&"stats_users = app"), "{ini}");
    assert!(lines.contains(&"ignore_startup_parameters = extra_float_digits"), "{ini}");
    let (svc, _) = published(&out, "cache", "valkey-exporter");
    assert_eq!(svc["environment"]["REDIS_ADDR"], "redis://valkey:6379");
    let (svc, _) = published(&out, "db", "postgres-exporter");
    // postgres speaks TLS only to other containers (`tls = true`); the exporter's own
    // monitoring role reads from `postgres`, not the app's database.
    assert_eq!(svc["environment"]["DATA_SOURCE_URI"], "postgres:5432/postgres?sslmode=require");
    assert_eq!(svc["environment"]["DATA_SOURCE_USER"], "postgres_exporter");
}

/// Five-VPS audit #13: Grafana's `secret_key` was unbound, so Grafana encrypted the data source
/// secrets it stores with its built-in default key (the same in every installation). Read back
/// by the real `docker-compose config`: the container reads its key from the mounted secret.
#[test]
fn five_vps_grafana_encrypts_with_its_own_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("out"));
    let (svc, _) = published(&out, "identity", "grafana");
    assert_eq!(svc["environment"]["GF_SECURITY_SECRET_KEY__FILE"], "/run/secrets/grafana_secret_key", "{svc}");
    let mounted: Vec<&str> = svc["secrets"].as_array().unwrap().iter().filter_map(|s| s["target"].as_str()).collect();
    assert!(mounted.contains(&"/run/secrets/grafana_secret_key"), "{mounted:?}");
}

/// Debian's valkey, unpacked by scripts/install-test-deps into .test-tools/valkey.
fn valkey_bin(name: &str) -> PathBuf {
    let p = repo().join(".test-tools/valkey/usr/bin").join(name);
    assert!(p.exists(), "{} is missing: run scripts/install-test-deps", p.display());
    p
}

/// The valkey module's own start script (files/valkey/start.sh) run by dash with the real
/// valkey-server, on a private loopback port: a stand-in for the container that changes only
/// paths — the secret files under `dir/secrets` (each `(target, value)`), /etc/valkey and the
/// ACL file's tmpfs under `dir`, `dir /data` naming `dir` (valkey changes into it while reading
/// the file, before command-line options apply), the image's `docker-entrypoint.sh
/// valkey-server` Debian's binary — and adds `--bind`/`--port` and the log. So what the
/// server reads (valkey.conf, the ACL file the script writes, its passwords) is kiln's. Killed
/// on drop.
struct Valkey {
    child: std::process::Child,
    port: u16,
}

impl Valkey {
    /// Starts the server from the build's `files/valkey`; `Err` with its output when it exits
    /// instead of answering. `ping` is the user and password that must get PONG.
    fn start(files: &Path, dir: &Path, secrets: &[(&str, &str)], ping: (&str, &str)) -> Result<Valkey, String> {
        std::fs::create_dir_all(dir.join("secrets")).unwrap();
        let d = dir.display().to_string();
        for (target, value) in secrets {
            let name = target.strip_prefix("/run/secrets/").expect("a secret under /run/secrets");
            std::fs::write(dir.join("secrets").join(name), format!("{value}\n")).unwrap();
        }
        let original = read(&files.join("valkey.conf"));
        assert_eq!(original.lines().filter(|l| *l == "dir /data").count(), 1, "{original}");
        let local = dir.join("valkey.conf");
        let conf =
            original.replace("\ndir /data\n", &format!("\ndir {d}\n")).replace("aclfile /tmp/users.acl", &format!("aclfile {d}/users.acl"));
        std::fs::write(&local, conf).unwrap();
        let script = read(&files.join("start.sh"));
        assert_eq!(script.matches("exec docker-entrypoint.sh valkey-server /etc/valkey/valkey.conf").count(), 1, "{script}");
        let script = script
            .replace("exec docker-entrypoint.sh valkey-server", &format!("exec {}", valkey_bin("valkey-server").display()))
            .replace("/etc/valkey/valkey.conf", &local.display().to_string())
            .replace("/run/secrets/", &format!("{d}/secrets/"))
            .replace("/tmp/users.acl", &format!("{d}/users.acl"));
        std::fs::write(dir.join("start.sh"), script).unwrap();
        let port = common::edges::free_port();
        let log = dir.join("valkey.log");
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new("dash")
            .arg(dir.join("start.sh"))
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("start valkey-server");
        let mut v = Valkey { child, port };
        for _ in 0..200 {
            if let Ok(Some(status)) = v.child.try_wait() {
                return Err(format!("valkey-server exited ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default()));
            }
            if v.cli(Some(ping), &["PING"]).0 == "PONG" {
                return Ok(v);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(format!("valkey-server did not answer: {}", std::fs::read_to_string(&log).unwrap_or_default()))
    }

    /// `valkey-cli` against the server as `user` (`--user`, the default user without it), the
    /// password from the environment (REDISCLI_AUTH: Debian's 8.0 CLI knows only the old name;
    /// 9.x, the module's image, reads both): (stdout, stderr), trimmed.
    fn cli(&self, login: Option<(&str, &str)>, args: &[&str]) -> (String, String) {
        let mut c = Command::new(valkey_bin("valkey-cli"));
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]).env_remove("VALKEYCLI_AUTH").env_remove("REDISCLI_AUTH");
        if let Some((user, pw)) = login {
            if user != "default" {
                c.args(["--user", user]);
            }
            c.env("REDISCLI_AUTH", pw);
        }
        let o = run(c.args(args));
        (text(&o.stdout).trim().to_string(), text(&o.stderr).trim().to_string())
    }
}

impl Drop for Valkey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The five-VPS cache's secrets as the valkey container gets them (from its Compose file, read
/// by the real `docker-compose config`): target → a test value, the server's own password
/// `own`, each client's its service name's.
fn five_vps_valkey_secrets(out: &Path, own: &str) -> Vec<(String, String)> {
    let (svc, _) = published(out, "cache", "valkey");
    svc["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let target = s["target"].as_str().unwrap().to_string();
            let value = match target.strip_prefix("/run/secrets/valkey_account_") {
                Some(client) => format!("pw of {client} \"x\""),
                None => own.to_string(),
            };
            (target, value)
        })
        .collect()
}

/// Five-VPS audit, data tier: "Valkey with requirepass, command renaming" had no command
/// renaming. The cache's generated valkey.conf and start script, run with the real
/// valkey-server (Debian's, on a loopback port), refuse FLUSHALL, FLUSHDB, CONFIG, DEBUG and
/// SHUTDOWN as unknown commands even for the server's own all-powerful user, while ordinary
/// commands work with its password, and a wrong password is refused. A name valkey.conf would
/// have to quote is refused by the build; a name that is no command stops the real server.
#[test]
fn five_vps_valkey_refuses_dangerous_commands_and_wants_its_password() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("out"));
    let files = out.join("hosts/cache/files/valkey");
    let pw = "s3cret pass\"word";
    let secrets = five_vps_valkey_secrets(&out, pw);
    let secrets: Vec<(&str, &str)> = secrets.iter().map(|(t, v)| (t.as_str(), v.as_str())).collect();
    let admin = ("admin", pw);
    let v = Valkey::start(&files, &tmp.path().join("data"), &secrets, admin).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.cli(Some(admin), &["SET", "session:1", "alice"]).0, "OK");
    assert_eq!(v.cli(Some(admin), &["GET", "session:1"]).0, "alice");
    for cmd in [&["FLUSHALL"][..], &["FLUSHDB"], &["CONFIG", "GET", "maxmemory"], &["DEBUG", "SLEEP", "0"], &["SHUTDOWN", "NOSAVE"]] {
        let (o, e) = v.cli(Some(admin), cmd);
        assert!(o.contains("unknown command") || e.contains("unknown command"), "{cmd:?} is not refused: {o} {e}");
    }
    assert_eq!(v.cli(Some(admin), &["DBSIZE"]).0, "1", "the data survived");
    let (o, e) = v.cli(None, &["GET", "session:1"]);
    assert!(o.contains("NOAUTH") || e.contains("NOAUTH"), "no password: {o} {e}");
    let (o, e) = v.cli(Some(("admin", "wrong")), &["GET", "session:1"]);
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
    let files = out.join("hosts/cache/files/valkey");
    assert!(read(&files.join("valkey.conf")).lines().any(|l| l == r#"rename-command FLUSHEVERYTHING """#));
    let err = Valkey::start(&files, &tmp.path().join("data-typo"), &secrets, admin)
        .err()
        .expect("valkey-server must refuse a command it does not have");
    assert!(err.contains("No such command"), "{err}");
}

/// Five-VPS seed: "Valkey ACLs". Each client of the cache has an ACL user of its own: the
/// app (`app`, every command but the dangerous ones) and the exporter (`valkey-exporter`,
/// statistics only, no key), each with its own password secret delivered to the server (the
/// store holds none); `default` is off. The real valkey-server loads the ACL file the
/// module's start script writes from the secret files; each client's credentials work for
/// what it needs and nothing more, and neither `default` nor another client's password gets
/// in. The clients get their user names as their images take them (`docker-compose config`):
/// the app's CACHE_USERNAME, redis_exporter's REDIS_USER.
#[test]
fn five_vps_valkey_gives_each_client_its_own_acl_user_and_turns_default_off() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("out"));
    let own = "the server's own";
    let secrets = five_vps_valkey_secrets(&out, own);
    let targets: Vec<&str> = secrets.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        targets,
        ["/run/secrets/valkey_account_app", "/run/secrets/valkey_account_valkey-exporter", "/run/secrets/valkey_password"],
        "each client's own password reaches the server"
    );
    // Each client's copy comes from its own secret, not the server's.
    let provision = read(&out.join("hosts/cache/provision.sh"));
    for (secret, svc) in
        [("valkey_app_password", "valkey"), ("valkey_exporter_password", "valkey"), ("valkey_exporter_password", "valkey-exporter")]
    {
        assert!(provision.contains(&format!("/etc/kiln/secrets/{secret} /etc/kiln/service-secrets/{svc}/{secret}")), "{secret} → {svc}");
    }
    let secrets: Vec<(&str, &str)> = secrets.iter().map(|(t, v)| (t.as_str(), v.as_str())).collect();
    let app = ("app", "pw of app \"x\"");
    let exporter = ("valkey-exporter", "pw of valkey-exporter \"x\"");
    let v = Valkey::start(&out.join("hosts/cache/files/valkey"), &tmp.path().join("data"), &secrets, app).unwrap_or_else(|e| panic!("{e}"));
    let refused = |r: (String, String), why: &str| {
        let all = format!("{} {}", r.0, r.1);
        assert!(all.contains(why), "expected {why}: {all}");
    };
    // The app: sessions, queues and caches, no dangerous command.
    assert_eq!(v.cli(Some(app), &["SET", "session:1", "alice"]).0, "OK");
    assert_eq!(v.cli(Some(app), &["LPUSH", "queue:jobs", "j1"]).0, "1");
    assert_eq!(v.cli(Some(app), &["GET", "session:1"]).0, "alice");
    refused(v.cli(Some(app), &["KEYS", "*"]), "NOPERM");
    refused(v.cli(Some(app), &["INFO"]), "NOPERM");
    // The exporter: statistics only, no key read or written.
    assert!(v.cli(Some(exporter), &["INFO", "memory"]).0.contains("used_memory:"));
    assert_eq!(v.cli(Some(exporter), &["DBSIZE"]).0, "2");
    assert!(v.cli(Some(exporter), &["SLOWLOG", "LEN"]).0.parse::<u64>().is_ok());
    assert!(v.cli(Some(exporter), &["CLIENT", "LIST"]).0.contains("user=valkey-exporter"));
    refused(v.cli(Some(exporter), &["GET", "session:1"]), "NOPERM");
    refused(v.cli(Some(exporter), &["SET", "session:1", "mallory"]), "NOPERM");
    refused(v.cli(Some(exporter), &["DEL", "queue:jobs"]), "NOPERM");
    // Nobody else: no password, the default user with any password, one client's user with
    // another's password.
    refused(v.cli(None, &["GET", "session:1"]), "NOAUTH");
    for pw in [own, app.1, exporter.1, ""] {
        refused(v.cli(Some(("default", pw)), &["GET", "session:1"]), "WRONGPASS");
    }
    refused(v.cli(Some(("app", exporter.1)), &["GET", "session:1"]), "WRONGPASS");
    refused(v.cli(Some(("valkey-exporter", app.1)), &["GET", "session:1"]), "WRONGPASS");
    assert_eq!(v.cli(Some(("admin", own)), &["GET", "session:1"]).0, "alice", "the server's own user (health check, backups)");
    drop(v);

    // The clients' side, as docker-compose reads it: user names and password files.
    let (app_svc, _) = published(&out, "app", "app");
    assert_eq!(app_svc["environment"]["CACHE_USERNAME"], "app");
    assert_eq!(app_svc["environment"]["CACHE_PASSWORD_FILE"], "/run/secrets/cache_password");
    let (exp, _) = published(&out, "cache", "valkey-exporter");
    assert_eq!(exp["environment"]["REDIS_USER"], "valkey-exporter");
    let app_provision = read(&out.join("hosts/app/provision.sh"));
    assert!(app_provision.contains("/etc/kiln/secrets/valkey_app_password /etc/kiln/service-secrets/app/valkey_app_password"));
    assert!(!app_provision.contains("/etc/kiln/secrets/valkey_password "), "the app holds the server's password");
    // The health check and backup dump log in as `admin`.
    let (vk, _) = published(&out, "cache", "valkey");
    let health = vk["healthcheck"]["test"].to_string();
    assert!(health.contains("valkey-cli --user admin"), "{health}");
}

/// A client's user and permissions reach the ACL file as written, so kiln refuses what Valkey
/// would read as something else: a rule that sets a password (`>…`), the server's own users
/// (`default`, `admin`), two clients wanting one user with different passwords; each at the
/// client's declaration, naming the option.
#[test]
fn valkey_accounts_refuse_password_rules_reserved_and_shared_users() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, (file, before, after, expect)) in [
        (
            "services.toml",
            "database_user = \"app\"\n",
            "database_user = \"app\"\ncache_acl = \">open ~* +@all\"\n",
            "`>open`, which is no ACL rule",
        ),
        ("services.toml", "database_user = \"app\"\n", "database_user = \"app\"\ncache_user = \"default\"\n", "the server's own user"),
        ("services.toml", "database_user = \"app\"\n", "database_user = \"app\"\ncache_user = \"admin\"\n", "the server's own user"),
        (
            "monitoring.toml",
            "secrets = { password = \"valkey_exporter_password\" }",
            "secrets = { password = \"valkey_exporter_password\" }\noptions = { user = \"app\" }",
            "both want user `app`",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let sys = copy_example("five-vps-saas", &tmp.path().join(i.to_string()));
        edit(&sys.join(file), before, after);
        let err = build_fails(&sys, &tmp.path().join(format!("out{i}")));
        assert!(err.contains(expect), "{after}: {err}");
        assert!(err.contains(&format!("{file}:")), "at the client's declaration: {err}");
    }
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
