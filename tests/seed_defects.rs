//! Runtime defects the seed audits found in generated artifacts, each checked on the exact
//! file, key or variable that was wrong, with the program that reads it where one runs here.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// `flake-free-examples/NAME` built into a store under `tmp`; the result.
fn example(name: &str, tmp: &Path) -> std::path::PathBuf {
    build(&repo().join("flake-free-examples").join(name), &tmp.join("store"), &tmp.join(name))
}

/// The `SMTP_*` variables a Vaultwarden container starts with: those Compose puts in its
/// environment (read back by the real `docker-compose config`, env files unread) and those the image's
/// `start.sh` gets by sourcing kiln's `vaultwarden.sh` (sourced by dash with an empty
/// environment, as the image's `/bin/sh` would).
fn smtp_variables(out: &Path, host: &str, service: &str) -> Vec<String> {
    // the environment the Compose file declares (other services' env files, which the
    // provisioner writes on the host, are not read here)
    let v = compose_config(&out.join("hosts").join(host).join("compose.yaml"));
    let mut vars: Vec<String> = v["services"][service]["environment"]
        .as_object()
        .map(|env| env.keys().filter(|k| k.starts_with("SMTP_")).map(|k| format!("compose {k}")).collect())
        .unwrap_or_default();
    let script = out.join("hosts").join(host).join("files").join(service).join("vaultwarden.sh");
    let sourced = run(Command::new("env").args(["-i", "dash", "-c", ". \"$0\" && env"]).arg(&script));
    assert!(sourced.status.success(), "sourcing {}: {}", script.display(), text(&sourced.stderr));
    vars.extend(text(&sourced.stdout).lines().filter(|l| l.starts_with("SMTP_")).map(|l| format!("sourced {l}")));
    vars
}

/// Maidan audit M1: Vaultwarden reads a set-and-empty `SMTP_HOST` as set and then refuses to
/// start without `SMTP_FROM` (dani-garcia/vaultwarden src/util.rs `get_env_str_value`,
/// src/config.rs `validate_config`); the crash stopped the droplet's provisioning. Without an
/// SMTP host no `SMTP_*` variable may reach the container; with one, all of them do.
#[test]
fn vaultwarden_gets_no_empty_smtp_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let out = example("maidan-cloud", tmp.path());
    let vars = smtp_variables(&out, "maidan", "mc-vaultwarden");
    assert!(vars.is_empty(), "e-mail is off, yet the container gets {vars:?}");

    let sys = tmp.path().join("maidan");
    copy_tree(&repo().join("flake-free-examples/maidan-cloud"), &sys);
    let community = sys.join("community.toml");
    let toml = std::fs::read_to_string(&community).unwrap();
    let before = r#"secrets = { admin_token = "{instance}_vaultwarden_admin_token", sso_client_secret = "{instance}_vaultwarden_sso_client_secret" }"#;
    assert!(toml.contains(before), "the example's vaultwarden secrets moved: update this test");
    let with_smtp = toml.replacen(
        before,
        &format!("{before}\n{}", r#"options = { smtp_host = "smtp.example.org", smtp_from = "vault@example.org" }"#),
        1,
    );
    std::fs::write(&community, with_smtp).unwrap();
    let out = build(&sys, &tmp.path().join("store"), &tmp.path().join("out-smtp"));
    let vars = smtp_variables(&out, "maidan", "mc-vaultwarden");
    let want = ["SMTP_FROM=vault@example.org", "SMTP_HOST=smtp.example.org", "SMTP_PORT=587", "SMTP_SECURITY=starttls"];
    let mut got: Vec<&str> = vars.iter().filter_map(|v| v.strip_prefix("sourced ")).collect();
    got.sort_unstable();
    assert_eq!(got, want, "all of {vars:?}");
    assert!(vars.iter().all(|v| v.starts_with("sourced ")), "SMTP_* belong in vaultwarden.sh only: {vars:?}");
}

/// Maidan audit M12: LibreChat's default Ollama model was never pulled, so its chat was empty.
/// The ollama service now names its models and a job pulls the ones the server lacks. The
/// generated job script runs under dash with two stand-ins on PATH: `docker` (runs the command
/// after `exec -T SERVICE` here, as `docker compose exec` would in the container) and `ollama`
/// (a model list in a file: `show` fails for a missing model, `pull` records and adds it).
/// Proves the script pulls exactly the missing models, once, and stops on a failed pull.
#[test]
fn ollama_pulls_the_models_librechat_defaults_to() {
    let tmp = tempfile::tempdir().unwrap();
    let out = example("maidan-cloud", tmp.path());
    let job = out.join("hosts/maidan/jobs/kiln-job-mc-ollama-pull.sh");
    let timer = std::fs::read_to_string(out.join("hosts/maidan/jobs/kiln-job-mc-ollama-pull.timer")).unwrap();
    assert!(timer.contains("OnCalendar=*:0/5"), "{timer}");

    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let have = tmp.path().join("models");
    let pulls = tmp.path().join("pulls");
    let docker = "#!/bin/sh\n# stand-in for `docker compose --file F exec -T SERVICE CMD...`\nwhile [ \"$1\" != -T ]; do shift; done\nshift 2\nexec \"$@\"\n";
    let ollama = format!(
        "#!/bin/sh\n# stand-in for the ollama CLI\ncase $1 in\nshow) grep -qxF \"$2\" {have} ;;\npull) [ \"$2\" != broken ] || exit 1; echo \"$2\" >> {pulls}; echo \"$2\" >> {have} ;;\n*) exit 2 ;;\nesac\n",
        have = have.display(),
        pulls = pulls.display()
    );
    for (name, body) in [("docker", docker.to_string()), ("ollama", ollama)] {
        std::fs::write(bin.join(name), body).unwrap();
        std::fs::set_permissions(bin.join(name), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let run_job = || run(Command::new("dash").arg(&job).env("PATH", &path));

    std::fs::write(&have, "mistral\n").unwrap();
    let first = run_job();
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(std::fs::read_to_string(&pulls).unwrap(), "llama3.2\n", "the missing model is pulled");
    let again = run_job();
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(std::fs::read_to_string(&pulls).unwrap(), "llama3.2\n", "a model the server has is not pulled again");

    // A pull that fails makes the job fail (systemd records it), rather than passing silently.
    let broken = std::fs::read_to_string(&job).unwrap().replace("llama3.2", "broken");
    let broken_job = tmp.path().join("broken-job.sh");
    std::fs::write(&broken_job, broken).unwrap();
    let failed = run(Command::new("dash").arg(&broken_job).env("PATH", &path));
    assert!(!failed.status.success(), "a failed pull fails the job");
}

/// Maidan audit (Nextcloud cron "without the runtime environment") and Post-X audit (cron "on
/// the wrong networks, before its dependencies"): upstream's separate cron container had none of
/// the Nextcloud service's environment (REDIS_HOST, database, OVERWRITE*) and was not on its
/// networks. Now cron.php runs every five minutes inside the running Nextcloud container, as
/// www-data, so it has that container's environment, networks and volume by construction. For
/// every Nextcloud of both seeds: the job's timer fires every five minutes, the job script (run
/// by dash with a stand-in `docker` that records its arguments) execs `docker compose exec` into
/// that very service, the real `docker compose config` shows that service with its Redis and
/// database settings, and no other container runs cron.php or upstream's /cron.sh.
#[test]
fn nextcloud_cron_runs_inside_the_running_nextcloud_container() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let args_file = tmp.path().join("args");
    std::fs::write(
        bin.join("docker"),
        format!("#!/bin/sh\n# stand-in for docker: records its arguments, one a line\nprintf '%s\\n' \"$@\" > '{}'\n", args_file.display()),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("docker"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut seen = 0;
    for example in ["maidan-cloud", "postx-hetzner"] {
        let out = build(&repo().join("flake-free-examples").join(example), &tmp.path().join("store"), &tmp.path().join(example));
        let model: serde_json::Value = serde_json::from_str(&read(&out.join("model.json"))).unwrap();
        for (name, svc) in model["services"].as_object().unwrap() {
            if svc["module"] != "nextcloud" {
                continue;
            }
            seen += 1;
            let host = out.join("hosts").join(svc["host"].as_str().unwrap());
            let timer = read(&host.join(format!("jobs/kiln-job-{name}-cron.timer")));
            assert!(timer.contains("OnCalendar=*:0/5"), "{example} {name}: {timer}");
            let job = host.join(format!("jobs/kiln-job-{name}-cron.sh"));
            let ran = run(Command::new("dash").arg(&job).env("PATH", format!("{}:/usr/bin:/bin", bin.display())));
            assert!(ran.status.success(), "{example} {name}: {}", text(&ran.stderr));
            let args: Vec<String> = read(&args_file).lines().map(str::to_string).collect();
            assert_eq!(
                args,
                [
                    "compose",
                    "--file",
                    "/opt/kiln/compose.yaml",
                    "exec",
                    "-T",
                    "--user",
                    "www-data",
                    name,
                    "php",
                    "-f",
                    "/var/www/html/cron.php"
                ],
                "{example} {name}"
            );
            let compose = compose_config(&host.join("compose.yaml"));
            let env = &compose["services"][name.as_str()]["environment"];
            for var in ["REDIS_HOST", "POSTGRES_HOST", "POSTGRES_DB"] {
                assert!(env[var].as_str().is_some_and(|v| !v.is_empty()), "{example} {name}: {var} in {env}");
            }
            for (other, s) in compose["services"].as_object().unwrap() {
                let argv = format!("{} {}", s["entrypoint"], s["command"]);
                assert!(!argv.contains("cron.php") && !argv.contains("/cron.sh"), "{example}: {other} runs cron: {argv}");
            }
        }
    }
    assert!(seen >= 4, "Nextcloud services checked: {seen}");
}

/// Jacker audit #11: Traefik sends a forward-auth route's sign-in paths (`/oauth2/`, authentik's
/// outpost) to the auth service unchecked, but on a router of their own, which took only the
/// route's allow-list: CrowdSec's bouncer and the rate limit, which the route asks for, did not
/// hold there. Read back with PyYAML from jacker's dynamic configuration: every auth-path router
/// carries each middleware of its route but the sign-in check, CORS and compression.
#[test]
fn auth_paths_keep_the_routes_allow_list_crowdsec_and_rate_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let out = example("jacker", tmp.path());
    let dynamic = yaml_to_json(&out.join("hosts/jacker/traefik/dynamic/kiln.yml"));
    let routers = dynamic["http"]["routers"].as_object().unwrap();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["middlewares"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect()
    };
    let mut checked = 0;
    for (name, router) in routers {
        let Some(route) = name.strip_suffix("-auth-paths") else { continue };
        let want: Vec<String> =
            names(&routers[route]).into_iter().filter(|m| !m.starts_with("auth-") && !m.ends_with("-cors") && m != "compress").collect();
        assert!(want.iter().any(|m| m.starts_with("crowdsec-")), "{route}: the example's routes ask for CrowdSec");
        assert!(want.iter().any(|m| m.ends_with("-ratelimit")), "{route}: the example's routes ask for a rate limit");
        assert_eq!(names(router), want, "{name}: the route's middlewares but its sign-in check");
        checked += 1;
    }
    assert!(checked >= 5, "jacker's forward-auth routes have sign-in paths: {checked} routers checked");
}

/// Found by the runtime lab (jacker's host booted, 2026-12-05): cAdvisor bind-mounts Docker's data
/// root, but on a host with a data volume Docker's root is moved onto it
/// (`/var/lib/kiln/data/docker`) and `/var/lib/docker` does not exist, so Docker refused to create
/// the container ("bind source path does not exist") and the host's last service group failed.
/// Read back by the real `docker-compose config`: the mount's source is where Docker's data is.
#[test]
fn cadvisor_mounts_dockers_data_root_where_the_data_volume_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = example("jacker", tmp.path());
    let provision = read(&out.join("hosts/jacker/provision.sh"));
    assert!(provision.contains("\"data-root\": \"/var/lib/kiln/data/docker\""), "jacker's Docker root is on its data volume");
    let cfg = compose_config(&out.join("hosts/jacker/compose.yaml"));
    let mounts = cfg["services"]["cadvisor"]["volumes"].as_array().unwrap();
    let docker = mounts.iter().find(|m| m["target"] == "/var/lib/docker").expect("cAdvisor mounts Docker's data root");
    assert_eq!(docker["source"], "/var/lib/kiln/data/docker", "{docker}");
    assert!(mounts.iter().all(|m| m["source"] != "/var/lib/docker"), "{mounts:?}");
}

/// maidan-cloud's lab boot: Docker refused to create Ollama ("Range of CPUs is from 0.01 to
/// 2.00, as there are only 2 CPUs available"): its limit is 4 cores, right on the seed's
/// 16-vCPU droplet, but `kiln boot` gave every machine two. A host's machine now gets as many
/// vCPUs as its largest container limit needs (two at least).
#[test]
fn a_booted_machine_has_the_cpus_its_containers_are_limited_to() {
    let compiled = |name: &str| common::compiled(&repo().join("flake-free-examples").join(name));
    let maidan = compiled("maidan-cloud");
    let sys = &maidan.system;
    let ollama = sys.services.values().filter(|s| s.module == "ollama").filter_map(|s| s.resources.cpus).fold(0.0, f64::max);
    assert_eq!(ollama, 4.0, "the seed's Ollama limit moved: update this test");
    assert_eq!(kiln::boot::vcpus(sys, &sys.hosts["maidan"]), 4);
    let five = compiled("five-vps-saas");
    for (name, host) in &five.system.hosts {
        assert_eq!(kiln::boot::vcpus(&five.system, host), 2, "{name}: no limit above two cores");
    }
}

/// Upstream's compose (authentik lifecycle/container/compose.yml) mounts one `./data` in the
/// server and the worker: media the server stores (uploaded icons, flow backgrounds) are served
/// and processed by both. Four seeds gave the worker a volume of its own, so the worker saw an
/// empty /data. In every example, each worker's /data is its server's, as the real
/// `docker-compose config` reads the host's Compose file; and the host's backup names the shared
/// volume once (it listed a volume once per service mounting it).
#[test]
fn authentik_workers_share_their_servers_data_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pairs = 0;
    for name in ["civic-scaleway", "five-vps-saas", "jacker", "maidan-cloud", "postx-hetzner", "traefik-edge"] {
        let sys = &common::compiled(&repo().join("flake-free-examples").join(name)).system;
        let out = example(name, tmp.path());
        for (host, h) in &sys.hosts {
            let of = |module: &str| h.services.iter().filter(|s| sys.services[*s].module == module).collect::<Vec<_>>();
            let (servers, workers) = (of("authentik"), of("authentik-worker"));
            if workers.is_empty() {
                continue;
            }
            let cfg = compose_config(&out.join("hosts").join(host).join("compose.yaml"));
            let data = |svc: &str| {
                let mounts = cfg["services"][svc]["volumes"].as_array().unwrap_or_else(|| panic!("{name}/{host}: {svc} has no volumes"));
                let m = mounts.iter().find(|m| m["target"] == "/data").unwrap_or_else(|| panic!("{name}/{host}: {svc} mounts no /data"));
                m["source"].as_str().unwrap().to_string()
            };
            // the backup snapshots the shared volume once
            let backup = std::fs::read_to_string(out.join("hosts").join(host).join("backup/kiln-backup.sh")).unwrap_or_default();
            let paths: Vec<&str> = backup.lines().filter(|l| l.starts_with("set -- \"$@\" ")).collect();
            let unique: std::collections::BTreeSet<&&str> = paths.iter().collect();
            assert_eq!(unique.len(), paths.len(), "{name}/{host}: a volume backed up twice: {paths:?}");
            let server_data: Vec<String> = servers.iter().map(|s| data(s)).collect();
            for w in workers {
                assert!(server_data.contains(&data(w)), "{name}/{host}: {w}'s /data {} is none of its servers' {server_data:?}", data(w));
                pairs += 1;
            }
        }
    }
    assert!(pairs >= 6, "every seed with authentik has a worker: {pairs} checked");
}

/// Post-X audit P10: ZITADEL's passwords came from a hand-written YAML secret
/// (`zitadel_config_secrets`) that had to repeat the database password; the example's values were
/// 32 hex characters, not that YAML, so ZITADEL would have started with neither. Now the module
/// takes them from the environment (ZITADEL_* variables win over its config files:
/// cmd/defaults.yaml, cmd/setup/steps.yaml), fed by `[container.env_secrets]`: the database
/// user's and admin's password from the very secret the client's postgres service creates the
/// role with (nothing to keep equal by hand), the first administrator's from its own secret,
/// whose value meets ZITADEL's default password policy.
#[test]
fn every_zitadel_reads_the_password_its_postgres_makes_the_role_with() {
    let system = repo().join("flake-free-examples/postx-hetzner");
    let sys = &common::compiled(&system).system;
    let zitadels: Vec<&str> = sys.services.iter().filter(|(_, s)| s.module == "zitadel").map(|(n, _)| n.as_str()).collect();
    assert!(zitadels.len() >= 3, "{zitadels:?}");
    let mut admins = Vec::new();
    for name in &zitadels {
        let env = &sys.services[*name].container.as_ref().unwrap().env_secrets;
        let db = &sys.services[&name.replacen("zitadel-", "zitadel-db-", 1)];
        let role = &db.secrets.iter().find(|u| u.slot == "password").unwrap().secret;
        assert_eq!(env.get("ZITADEL_DATABASE_POSTGRES_USER_PASSWORD"), Some(role), "{name}");
        assert_eq!(env.get("ZITADEL_DATABASE_POSTGRES_ADMIN_PASSWORD"), Some(role), "{name}");
        admins
            .push(env.get("ZITADEL_FIRSTINSTANCE_ORG_HUMAN_PASSWORD").unwrap_or_else(|| panic!("{name}: no first admin password")).clone());
    }
    let values = common::example_secret_values(&system, &admins.iter().map(String::as_str).collect::<Vec<_>>());
    for a in &admins {
        let human = text(&values[a]);
        // ZITADEL's default password policy: 8 characters, upper and lower case, a digit, a symbol
        assert!(human.len() >= 8, "{a}");
        for class in [char::is_ascii_uppercase, char::is_ascii_lowercase, char::is_ascii_digit, char::is_ascii_punctuation] {
            assert!(human.chars().any(|ch| class(&ch)), "{a}: {human:?} misses a class of the default policy");
        }
    }
}

/// Maidan: Mattermost's database password was a second secret, a hand-written pgpass line
/// (`mattermost_db_pgpass`) that had to repeat the one its postgres service creates the role
/// with. lib/pq, Mattermost's driver, takes a password the data source leaves out from
/// PGPASSWORD (lib/pq connector.go): the module feeds that variable from the role's own secret.
#[test]
fn mattermost_logs_in_with_the_secret_its_postgres_makes_the_role_with() {
    let sys = &common::compiled(&repo().join("flake-free-examples/maidan-cloud")).system;
    let mm = &sys.services["mattermost"];
    let db = &sys.services["mattermost-db"];
    let role = &db.secrets.iter().find(|u| u.slot == "password").unwrap().secret;
    assert_eq!(mm.container.as_ref().unwrap().env_secrets.get("PGPASSWORD"), Some(role));
    assert!(!sys.secrets.keys().any(|k| k.contains("pgpass")), "no second, hand-kept copy: {:?}", sys.secrets.keys());
    let source = &mm.container.as_ref().unwrap().environment["MM_SQLSETTINGS_DATASOURCE"];
    assert!(source.starts_with("postgres://mattermost@"), "the data source names the role and no password: {source}");
}

/// Jacker audit: the log agent (Alloy) mounted the raw Docker socket although the seed puts a
/// read-only socket proxy (Layer 6) in front of Docker. Connected to the proxy, Alloy's Docker
/// discovery and log source go through it, and its container gets no socket.
#[test]
fn jackers_log_agent_reaches_docker_through_the_socket_proxy_and_holds_no_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let out = common::build(&repo().join("flake-free-examples/jacker"), &tmp.path().join("store"), &tmp.path().join("out"));
    let compose = common::compose_config(&out.join("hosts/jacker/compose.yaml"));
    let alloy = &compose["services"]["alloy"];
    assert!(!alloy["volumes"].to_string().contains("docker.sock"), "{alloy}");
    let config = std::fs::read_to_string(out.join("hosts/jacker/files/alloy/config.alloy")).unwrap();
    assert_eq!(config.matches("= \"tcp://socket-proxy:2375\"").count(), 2, "discovery and log source: {config}");
    assert!(!config.contains("docker.sock"), "{config}");
}

/// Hand-repeated secrets: the bouncer's API key must be the value CrowdSec registers it with
/// (`traefik_bouncer_key`). The module says so (`[requires.crowdsec] same_secrets`): jacker no
/// longer binds it, kiln takes crowdsec's; a bouncer bound to another secret is refused at the
/// binding, naming both.
#[test]
fn jackers_bouncer_takes_crowdsecs_key_and_another_key_is_refused() {
    let jacker = repo().join("flake-free-examples/jacker");
    assert!(!read(&jacker.join("services.toml")).contains("api_key ="), "the example binds no api_key by hand");
    let sys = &common::compiled(&jacker).system;
    let key = |svc: &str, slot: &str| sys.services[svc].secrets.iter().find(|u| u.slot == slot).map(|u| u.secret.clone());
    assert_eq!(key("crowdsec-bouncer", "api_key"), key("crowdsec", "traefik_bouncer_key"));
    assert_eq!(key("crowdsec-bouncer", "api_key").as_deref(), Some("crowdsec_bouncer_key"));
    assert_eq!(
        sys.services["crowdsec-bouncer"].container.as_ref().unwrap().env_secrets.get("CROWDSEC_BOUNCER_API_KEY").map(String::as_str),
        Some("crowdsec_bouncer_key")
    );

    let tmp = tempfile::tempdir().unwrap();
    common::copy_tree(&jacker, tmp.path());
    let services = tmp.path().join("services.toml");
    let text = read(&services).replace(
        "connects = [\"crowdsec\"]\n# Its API key",
        "connects = [\"crowdsec\"]\nsecrets = { api_key = \"crowdsec_enroll_key\" }\n# Its API key",
    );
    std::fs::write(&services, text).unwrap();
    let out = common::run(common::kiln().arg("check").arg(tmp.path()));
    let err = common::text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "service `crowdsec-bouncer` binds `api_key` to secret `crowdsec_enroll_key`, but `crowdsec` holds it as `crowdsec_bouncer_key`"
        ),
        "{err}"
    );
    assert!(err.contains("services.toml:"), "located at the binding: {err}");
    // the root cause alone: the routes whose forward auth names the bouncer say nothing more
    assert!(!err.contains("unknown service"), "{err}");
}

/// The other end of `same_secrets` holds nothing: CrowdSec without its (optional)
/// `traefik_bouncer_key` never registers a bouncer key, so a bouncer given one by hand would be
/// refused by CrowdSec at every request. kiln refuses the system instead.
#[test]
fn a_bouncer_key_that_crowdsec_does_not_hold_is_refused() {
    let err = refused_when_edited("jacker", "services.toml", |t| {
        t.replace("secrets = { traefik_bouncer_key = \"crowdsec_bouncer_key\", ", "secrets = { ").replace(
            "connects = [\"crowdsec\"]\n# Its API key",
            "connects = [\"crowdsec\"]\nsecrets = { api_key = \"crowdsec_bouncer_key\" }\n# Its API key",
        )
    });
    assert!(err.contains("service `crowdsec-bouncer` binds `api_key`, but `crowdsec` holds no `traefik_bouncer_key` to match it"), "{err}");
}

/// `instead_of_docker_socket`: a socket proxy speaks for its own host's Docker. five-vps-saas
/// runs Alloy on every host; connected to one proxy on `identity`, the Alloy of every other host
/// would ship identity's containers as its own: refused (E0037) for each of them, not for
/// identity's own.
#[test]
fn a_socket_proxy_on_another_host_does_not_replace_the_docker_socket() {
    let err = refused_when_edited("five-vps-saas", "monitoring.toml", |t| {
        t.replace(
            "[services.alloy]\nmodule = \"alloy\"\nhost = \"*\"\nconnects = [\"loki\"]",
            "[services.alloy]\nmodule = \"alloy\"\nhost = \"*\"\nconnects = [\"loki\", \"docker-proxy\"]\n\n[services.docker-proxy]\nmodule = \"socket-proxy\"\nhost = \"identity\"",
        )
    });
    let refused: Vec<&str> = err.lines().filter(|l| l.starts_with("error[E0037]")).collect();
    assert_eq!(refused.len(), 4, "edge, app, db and cache, not identity: {err}");
    assert!(refused.iter().all(|l| l.contains("`docker-proxy` is a socket proxy on another host than `alloy")), "{err}");
}

/// `kiln check` of a copy of `example` whose `file` is changed by `edit` (which must change it):
/// it must fail; returns its stderr.
fn refused_when_edited(example: &str, file: &str, edit: impl FnOnce(&str) -> String) -> String {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_tree(&repo().join("flake-free-examples").join(example), tmp.path());
    let path = tmp.path().join(file);
    let before = read(&path);
    let text = edit(&before);
    assert_ne!(text, before, "the example is edited as expected");
    std::fs::write(&path, text).unwrap();
    let out = common::run(common::kiln().arg("check").arg(tmp.path()));
    let err = common::text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    err
}

/// traefik-edge audit: Traefik's DNS-01 challenge (Hetzner zone) must get the Hetzner token, and
/// the edge's container named four providers' `*_FILE` variables, three of them files it did
/// not have. Each `*_FILE` variable is now set only for a bound slot (`[container.secret_paths]`),
/// and names the file Compose mounts there (read back by the real `docker-compose config`).
#[test]
fn traefik_names_only_the_dns_credential_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    for (ex, host, service, want) in
        [("traefik-edge", "box", "traefik", "HETZNER_API_TOKEN_FILE"), ("maidan-cloud", "maidan", "traefik", "CF_DNS_API_TOKEN_FILE")]
    {
        let out = example(ex, tmp.path());
        let v = compose_config(&out.join("hosts").join(host).join("compose.yaml"));
        let svc = &v["services"][service];
        let dns: Vec<(&String, &serde_json::Value)> = svc["environment"]
            .as_object()
            .unwrap_or_else(|| panic!("{ex}: no environment for {service}"))
            .iter()
            .filter(|(k, _)| {
                ["CF_DNS_API_TOKEN_FILE", "HETZNER_API_TOKEN_FILE", "DO_AUTH_TOKEN_FILE", "SCW_SECRET_KEY_FILE"].contains(&k.as_str())
            })
            .collect();
        assert_eq!(dns.len(), 1, "{ex}: {dns:?}");
        assert_eq!(dns[0].0, want, "{ex}");
        let path = dns[0].1.as_str().unwrap();
        let mounted = svc["secrets"].as_array().unwrap().iter().any(|s| s["target"] == path);
        assert!(mounted, "{ex}: {want}={path} names no secret Compose mounts: {}", svc["secrets"]);
    }
}

/// Civic audit C10: Decidim's health check accepted any HTTP answer, so a Puma whose Rails app
/// fails every request (no database, pending migrations: 500) counted as healthy, and Rails'
/// force_ssl answers a plain request with a redirect before the app runs at all. The generated
/// check is run here with the real curl against a stand-in (named as one: a Python HTTP server
/// that answers as Rails' SSL middleware and an app would, on the system sign-in page): it
/// passes only when the app itself answers 200, and fails when the app answers 500.
#[test]
fn decidims_health_check_fails_when_rails_answers_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = example("civic-scaleway", tmp.path());
    let v = compose_config(&out.join("hosts/tools-prod/compose.yaml"));
    let test: Vec<String> = v["services"]["decidim"]["healthcheck"]["test"]
        .as_array()
        .expect("decidim has a health check")
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    assert_eq!(test[0], "CMD", "{test:?}");
    let standin = r#"
import http.server, sys
status = int(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("X-Forwarded-Proto") != "https":
            self.send_response(301); self.send_header("Location", "https://x" + self.path)  # force_ssl
        elif self.path == "/system/admins/sign_in":
            self.send_response(status)  # the app: 200, or 500 when it cannot serve
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_port, flush=True)
s.serve_forever()
"#;
    for (status, healthy) in [(200, true), (500, false)] {
        let mut server =
            Command::new("python3").args(["-c", standin, &status.to_string()]).stdout(std::process::Stdio::piped()).spawn().unwrap();
        let mut port = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.as_mut().unwrap()), &mut port).unwrap();
        let argv: Vec<String> = test[1..].iter().map(|a| a.replace("127.0.0.1:3002", &format!("127.0.0.1:{}", port.trim()))).collect();
        assert!(argv.iter().any(|a| a.contains(port.trim())), "the check asks another port than 3002: {test:?}");
        let o = run(Command::new(&argv[0]).args(&argv[1..]));
        server.kill().unwrap();
        server.wait().unwrap();
        assert_eq!(o.status.success(), healthy, "app answering {status}: {argv:?}: {}", text(&o.stderr));
    }
}

/// A Valkey client without a user of its own logs in as the default user, whose password is the
/// server's (requirepass): bound to another secret, it could never log in (Outline, Nextcloud,
/// Decidim and the others kept it by hand, equal by care only). Now taken from the server, and
/// another secret is refused at the binding.
#[test]
fn a_valkey_client_without_its_own_user_gets_the_servers_password() {
    let err = refused_when_edited("civic-scaleway", "tools.toml", |t| {
        t.replace(
            "secrets = { database_password = \"outline_db_password\", ",
            "secrets = { database_password = \"outline_db_password\", cache_password = \"outline_db_password\", ",
        )
    });
    assert!(err.contains("service `outline` binds `cache_password` to secret `outline_db_password`, but `"), "{err}");
    assert_eq!(err.matches("error[").count(), 1, "the one root cause only: {err}");
    // Unbound, the client's copy is the server's secret.
    let tmp = tempfile::tempdir().unwrap();
    let out = example("civic-scaleway", tmp.path());
    let v = compose_config(&out.join("hosts/tools-prod/compose.yaml"));
    let source = |svc: &str, target: &str| -> String {
        let s = v["services"][svc]["secrets"].as_array().unwrap().iter().find(|s| s["target"] == target);
        let name = s.unwrap_or_else(|| panic!("{svc} mounts nothing at {target}"))["source"].as_str().unwrap();
        v["secrets"][name]["file"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
    };
    let server = source("outline-cache", "/run/secrets/valkey_password");
    let client = v["services"]["outline"]["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap().to_string())
        .find(|s| s.contains("cache_password"))
        .expect("outline mounts its cache password");
    let client_file = v["secrets"][&client]["file"].as_str().unwrap();
    assert!(client_file.ends_with(&format!("/{server}")), "outline reads {client_file}, the server {server}");
}

/// The same for clients that log in as their server's one user: WordPress and Leantime as
/// MariaDB's user, LibreChat as MongoDB's root user and with Meilisearch's master key. Another
/// secret bound on the client is refused at the binding, as the one root cause (WordPress's
/// failure once also reported maidan's `[allow]` naming its route as an unknown route).
#[test]
fn clients_of_a_servers_one_user_take_its_password() {
    let err = refused_when_edited("maidan-cloud", "community.toml", |t| {
        t.replace(
            "connects = [\"{instance}-wordpress-db\"]\n",
            "connects = [\"{instance}-wordpress-db\"]\nsecrets = { database_password = \"{instance}_wordpress_db_root_password\" }\n",
        )
    });
    assert!(err.contains("binds `database_password` to secret `") && err.contains("_wordpress_db_root_password`, but `"), "{err}");
    assert!(err.lines().filter(|l| l.starts_with("error[")).all(|l| l.starts_with("error[E0025]")), "{err}");
    let err = refused_when_edited("maidan-cloud", "community.toml", |t| {
        t.replace("secrets = { creds_key", "secrets = { database_password = \"{instance}_librechat_creds_key\", creds_key")
    });
    assert!(err.contains("holds it as `") && err.contains("_librechat_db_password`"), "{err}");
    let err = refused_when_edited("civic-scaleway", "tools.toml", |t| {
        t.replace("secrets = { session_password", "secrets = { database_password = \"leantime_db_root_password\", session_password")
    });
    assert!(err.contains("service `leantime` binds `database_password` to secret `leantime_db_root_password`"), "{err}");
}

/// Post-X audit X2 (residual): the client template declared no data disk, so each client's
/// Docker data root (seven images, Nextcloud's files with 4 GB uploads) and the monthly restore
/// drill's scratch copy sat on kiln's 10 GiB default volume. Each client's `hcloud_volume` in
/// the OpenTofu root now has its plan's size (100 GiB or more), and Docker's data root is on it.
#[test]
fn postx_clients_get_a_data_volume_sized_for_their_images_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = example("postx-hetzner", tmp.path());
    let root: serde_json::Value = serde_json::from_str(&read(&out.join("tofu/main.tf.json"))).unwrap();
    let volumes = root["resource"]["hcloud_volume"].as_object().unwrap();
    let clients: Vec<_> = volumes.iter().filter(|(name, _)| name.starts_with("client-")).collect();
    assert_eq!(clients.len(), 11, "{:?}", volumes.keys());
    for (name, v) in clients {
        assert!(v["size"].as_u64().unwrap() >= 100, "{name}: {} GiB", v["size"]);
    }
    let script = read(&out.join("hosts/client-alpha/provision.sh"));
    assert!(script.contains(r#""data-root": "/var/lib/kiln/data/docker""#), "Docker's data root is on the volume");
}
