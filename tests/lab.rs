//! The runtime lab (docs/lab.md): seed hosts that run containers, booted for real. Each test
//! takes the lab copy of a seed (tests/lab/mod.rs says what differs), builds it, makes
//! stand-in images for the exact references its services pin (scripts/lab-images: the real
//! PostgreSQL and Valkey behind their images' entrypoint contracts, a probe for the rest),
//! and boots the host with `kiln boot` on the lab's Debian 13 image. Judged by the real
//! programs: cloud-init must finish from NoCloud with no warning and no error, the
//! provisioner must complete (its marker equals the closure), and its `docker compose up
//! --wait` must have brought every container up healthy, which for a probe stand-in means
//! every environment variable and secret file the module declares is there and every
//! connection its environment names accepts TCP. On failure the test prints the serial
//! console, `cloud-init status --long`, the provisioner's log and `docker compose ps`.
//!
//! The stage-0 loader is not exercised here: a host whose payload is fetched from the store
//! boots with its full user-data (`kiln boot` says so), the same payload and closure.

mod common;
#[path = "lab/mod.rs"]
mod lab;
#[path = "common/vm.rs"]
mod vm;

use std::collections::BTreeMap;

use serde_json::Value;

/// A root shell command on a lab host: stdout, or the error.
type RootShell<'a> = Box<dyn Fn(&str) -> Result<String, String> + 'a>;

/// A booted lab host as the checks see it: its part of `kiln boot`'s report, and a root shell.
struct On<'a> {
    report: &'a Value,
    root: RootShell<'a>,
}

impl On<'_> {
    fn single(lab: &lab::LabHost) -> On<'_> {
        On { report: &lab.report, root: Box::new(|cmd| lab.sh(cmd)) }
    }

    fn in_fleet<'a>(fleet: &'a vm::Fleet, host: &'a str) -> On<'a> {
        On {
            report: fleet.host(host),
            root: Box::new(move |cmd| fleet.try_sh(host, &format!("sudo sh -c {}", kiln::render::quote::sh(cmd)))),
        }
    }

    fn sh(&self, cmd: &str) -> Result<String, String> {
        (self.root)(cmd)
    }

    fn must(&self, cmd: &str) -> String {
        self.sh(cmd).unwrap_or_else(|e| panic!("`{cmd}`: {e}"))
    }
}

/// What a lab boot proved, checked for one host.
fn check_host(lab: &On, compose: &Value) {
    let clock = std::time::Instant::now();
    let lap = |what: &str| eprintln!("lab: checks: {what} after {} s", clock.elapsed().as_secs());
    // cloud-init: from NoCloud, no warning on the console, no error or recoverable error
    assert!(lab.report["datasource"].as_str().is_some_and(|d| d.starts_with("DataSourceNoCloud")), "{}", lab.report);
    assert_eq!(lab.report["warnings"], serde_json::json!([]), "warnings on the serial console");
    let status: Value = serde_json::from_str(&lab.must("cloud-init status --format json")).unwrap();
    assert_eq!(status["status"], "done", "{status}");
    assert_eq!(status["errors"], serde_json::json!([]), "{status}");
    assert!(status["recoverable_errors"].as_object().is_none_or(|m| m.is_empty()), "{status}");

    // the provisioner ran to the end
    let closure = lab.report["closure"].as_str().unwrap();
    assert_eq!(lab.must("cat /var/lib/kiln/closure").trim(), closure, "the provisioner's marker");

    lap("cloud-init and the marker");

    // every container of the compose file runs, and every one with a healthcheck is healthy
    let ps = lab.must("docker compose --file /opt/kiln/compose.yaml ps --all --format json");
    let states: BTreeMap<String, (String, String)> = ps
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["Service"].as_str().unwrap().to_string(),
                (v["State"].as_str().unwrap_or("").into(), v["Health"].as_str().unwrap_or("").into()),
            )
        })
        .collect();
    let services = compose["services"].as_object().unwrap();
    assert_eq!(states.keys().collect::<Vec<_>>(), services.keys().collect::<Vec<_>>(), "one container per service: {ps}");
    for (name, svc) in services {
        let (state, health) = &states[name];
        assert_eq!(state, "running", "{name}: {ps}");
        if svc.get("healthcheck").is_some() {
            assert_eq!(health, "healthy", "{name}: {ps}");
        }
    }

    // Docker probes each container every `start_interval` during its start period: Debian's
    // Compose passed it on and its Engine took it (`docker inspect` prints a Go duration, `5s`)
    let probed = lab.must("docker inspect --format '{{.Name}} {{.Config.Healthcheck.StartInterval}}' $(docker ps --all --quiet)");
    for (name, svc) in services.iter().filter(|(_, s)| s.get("healthcheck").is_some_and(|h| h["start_period"] != "0s")) {
        let every = svc["healthcheck"]["start_interval"].as_str().unwrap_or_else(|| panic!("{name}: no start_interval"));
        let line = format!("/{} {every}", container(compose, name));
        assert!(probed.lines().any(|l| l == line), "{name}: no `{line}` in\n{probed}");
    }

    lap("the containers' states and start intervals");

    // the PostgreSQL stand-ins took their role, database and password from the secret file:
    // a password login over TCP (scram-sha-256 for hosts) as the declared user, and a wrong
    // password refused; all in one root shell (each call is seconds under TCG)
    let logins = postgres_logins(compose);
    let script: String = logins
        .iter()
        .map(|(name, login)| {
            let wrong = psql(compose, name, "not-the-password");
            format!("printf '%s\\n' \"right {name} $({login} 'select current_user' 2>/dev/null | tr '\\n' ' ')\"\nif {wrong} 'select 1' >/dev/null 2>&1; then echo \"wrong {name} admitted\"; fi\n")
        })
        .collect();
    let said = if logins.is_empty() { String::new() } else { lab.must(&script) };
    for (name, _) in &logins {
        let user = services[name]["environment"]["POSTGRES_USER"].as_str().unwrap();
        assert!(said.lines().any(|l| l == format!("right {name} {user} ")), "{name}: a password login as the declared user:\n{said}");
        assert!(!said.lines().any(|l| l == format!("wrong {name} admitted")), "{name}: a wrong password is refused:\n{said}");
    }
    lap(&format!("{} PostgreSQL logins", logins.len()));
}

/// The PostgreSQL servers of a Compose file that take their password from a secret file, with
/// the `psql` command line that logs in to each as its declared user over TCP.
fn postgres_logins(compose: &Value) -> Vec<(String, String)> {
    let is_postgres =
        |svc: &Value| svc["image"].as_str().and_then(|i| i.rsplit('/').next()).and_then(|i| i.split(':').next()) == Some("postgres");
    let services = compose["services"].as_object().unwrap();
    services
        .iter()
        .filter(|(_, svc)| is_postgres(svc) && svc["environment"].get("POSTGRES_PASSWORD_FILE").is_some())
        .map(|(name, _)| (name.clone(), psql(compose, name, "$(cat \"$POSTGRES_PASSWORD_FILE\")")))
        .collect()
}

/// A `docker exec` of `psql` in service `name`'s container as its `POSTGRES_USER` over TCP with
/// `password` (shell words, expanded in the container); the SQL follows as one more word. The
/// container by the name Compose gives it (`PROJECT-SERVICE-1`: kiln sets no `container_name`),
/// not `docker compose exec`, which reads the whole project first (~30 s a call under TCG).
fn psql(compose: &Value, name: &str, password: &str) -> String {
    format!(
        "docker exec {} sh -c {}",
        kiln::render::quote::sh(&container(compose, name)),
        kiln::render::quote::sh(&format!(
            "PGPASSWORD=\"{password}\" psql -h 127.0.0.1 -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\" -Atc \"$0\""
        ))
    )
}

/// The name Compose gives service `name`'s one container.
fn container(compose: &Value, name: &str) -> String {
    format!("{}-{name}-1", compose["name"].as_str().unwrap())
}

/// Reboots the host as its provider's console or a kernel update would (`systemctl reboot`) and
/// checks it comes back as [`check_host`] does. Nothing of kiln runs again at boot (cloud-init
/// runs the provisioner once per instance): the data volume is mounted before Docker starts,
/// Docker starts every container by its restart policy, all at once and in no order, and kiln's
/// watchdog restarts one that stays unhealthy. A row written to each PostgreSQL before the
/// reboot must be there after it.
fn reboot_and_check(lab: &On, compose: &Value) {
    let logins = postgres_logins(compose);
    for (name, login) in &logins {
        lab.must(&format!(
            "{login} {}",
            kiln::render::quote::sh("create table kiln_reboot (v text); insert into kiln_reboot values ('written before the reboot')")
        ));
        eprintln!("lab: {name}: a row written before the reboot");
    }
    let boot_id = lab.must("cat /proc/sys/kernel/random/boot_id");
    // from a transient unit a second later, so the SSH session ends first
    lab.must("systemd-run --quiet --collect --on-active=1 systemctl reboot");
    let start = std::time::Instant::now();
    let waited = |what: &str, limit: u64| {
        assert!(start.elapsed().as_secs() < limit, "{what} after {} s", start.elapsed().as_secs());
        std::thread::sleep(std::time::Duration::from_secs(10));
    };
    while !lab.sh("cat /proc/sys/kernel/random/boot_id").is_ok_and(|id| id != boot_id) {
        waited("the host did not come back from its reboot", 600);
    }
    eprintln!("lab: back from the reboot after {} s", start.elapsed().as_secs());
    wait_until_healthy(lab, compose, 1200);
    eprintln!("lab: every container healthy again {} s after the reboot", start.elapsed().as_secs());
    check_host(lab, compose);
    let services = compose["services"].as_object().unwrap();
    // Docker mounted each tmpfs again: one of a container with a user of its own is that user's
    // (render::compose::tmpfs_owned), where without an owner it comes back root's. One command
    // for all, `docker exec` on Compose's container names (`docker compose exec` is slower).
    let mut want = Vec::new();
    let mut script = String::new();
    for (name, svc) in services {
        let Some(uid) = svc["user"].as_str().and_then(|u| u.split(':').next()).filter(|u| *u != "0" && u.parse::<u32>().is_ok()) else {
            continue;
        };
        for dir in svc["tmpfs"].as_array().into_iter().flatten().filter_map(|t| t.as_str()?.split(':').next()) {
            want.push(format!("{name} {dir} {uid}"));
            script.push_str(&format!(
                "printf '%s %s %s\\n' {n} {d} \"$(docker exec {c} sh -c 'test -w \"$0\" && stat -c %u \"$0\"' {d})\"; ",
                n = kiln::render::quote::sh(name),
                c = kiln::render::quote::sh(&container(compose, name)),
                d = kiln::render::quote::sh(dir)
            ));
        }
    }
    assert!(!want.is_empty(), "the host runs containers with users of their own and tmpfs mounts");
    let got = lab.must(&script);
    assert_eq!(got.lines().collect::<Vec<_>>(), want, "each tmpfs after the reboot: writable, and its container's user's");
    for (name, login) in &logins {
        let got = lab.must(&format!("{login} 'select v from kiln_reboot'"));
        assert_eq!(got.trim(), "written before the reboot", "{name}: the row written before the reboot");
    }
}

/// Waits until every service of `compose` with a healthcheck is healthy (by Compose's own
/// account of its containers); fails after `limit` seconds.
fn wait_until_healthy(lab: &On, compose: &Value, limit: u64) {
    let wanted: Vec<&String> =
        compose["services"].as_object().unwrap().iter().filter(|(_, s)| s.get("healthcheck").is_some()).map(|(n, _)| n).collect();
    let start = std::time::Instant::now();
    loop {
        let ps = lab.sh("docker compose --file /opt/kiln/compose.yaml ps --all --format json").unwrap_or_default();
        let healthy: Vec<String> = ps
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["Health"] == "healthy")
            .filter_map(|v| v["Service"].as_str().map(str::to_string))
            .collect();
        if wanted.iter().all(|w| healthy.contains(w)) {
            return;
        }
        assert!(start.elapsed().as_secs() < limit, "not every container was healthy after {limit} s:\n{ps}");
        std::thread::sleep(std::time::Duration::from_secs(10));
    }
}

/// Boots the host of `example` with the most services, as its lab copy; with `reboot`, then
/// reboots it ([`reboot_and_check`]).
fn seed(example: &str, host: &str, reboot: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let (sys, key, admin) = lab::lab_copy(example, tmp.path());
    lab::image_dir(lab::LAB_IMAGE);
    let result = lab::build(&sys, tmp.path());
    let (images, compose) = common::lab_images(&result, host, tmp.path());
    let model: Value = serde_json::from_slice(&std::fs::read(result.join("model.json")).unwrap()).unwrap();
    let holds_data = model["hosts"][host]["volume"].is_string();
    let disk = tmp.path().join("data.qcow2");
    let lab = lab::boot(&sys, host, &key, &admin, &images, holds_data.then_some(disk.as_path()));
    eprintln!("{}", lab.timings());
    let checking = std::time::Instant::now();
    check_host(&On::single(&lab), &compose);
    eprintln!("lab: {host}: the checks took {} s", checking.elapsed().as_secs());
    if reboot {
        reboot_and_check(&On::single(&lab), &compose);
    }
}

/// traefik-edge's one host `box` (eight services behind Traefik, declared on debian-13):
/// PostgreSQL twice, Valkey, the shop, authentik server and worker, Uptime Kuma, Traefik. In
/// the default suite: 333 s on two cores on 2026-12-05 (cloud-init done after 220 s; its
/// services start in two groups, 97 s); 997 s alone on 2026-12-07, every phase about three
/// times slower on that day's machine (cloud-init done after 631 s; then ~5 minutes of checks,
/// each `docker compose exec` ~30 s under TCG); 365 s alone later that day on a faster machine
/// (cloud-init done after 269 s; groups up 64 s and 49 s after they started, the last steps
/// 14 s). 2026-12-08, alone: 307 s once
/// healthchecks probe every 5 s while starting and a step reloads systemd once (done after
/// 211 s; groups 54 s and 28 s, the last steps 3 s).
#[test]
fn lab_traefik_edge_box_comes_up_with_stand_in_images() {
    seed("traefik-edge", "box", false);
}

/// The same host rebooted after it came up ([`reboot_and_check`]): every container healthy
/// again, each tmpfs its container's user's, a row written to each PostgreSQL before the reboot
/// there after it. 2026-12-06, alone: 567 s (cloud-init done after 249 s, back from the reboot
/// after 89 s, every container healthy 148 s after it); on the suite's final tree that day,
/// 795 s beside the other tests. Out of the default suite since 2026-12-07, for its time.
#[test]
#[ignore = "4–8 minutes more than the boot above under TCG, beyond the suite's time: cargo test --test lab -- --ignored --exact lab_traefik_edge_box_comes_back_from_a_reboot_with_its_data (docs/lab.md)"]
fn lab_traefik_edge_box_comes_back_from_a_reboot_with_its_data() {
    seed("traefik-edge", "box", true);
}

/// A backup and a restore on a real kernel with real Docker: traefik-edge's `box`, its lab copy
/// given a `[backup]` plan (a restic repository on the host itself, its password one of the
/// system's own secrets). After the boot, a table in PostgreSQL, a file in authentik's data
/// volume and a table in Uptime Kuma's SQLite `kuma.db` (written by the sqlite3 its stand-in
/// carries, as the real image does); then `kiln-backup.sh` (dumps, restic) and `kiln-backup.sh
/// drill` (which must pass and leave the running stack as it was), the data goes wrong, and
/// `kiln-backup.sh restore` must bring back the table from the dump (the PostgreSQL stand-in's
/// entrypoint initialising the emptied volume first), the file from the snapshot and kuma.db
/// from its dump, loaded by a one-off container before the service starts (`restore_when =
/// "stopped"`: the snapshot's file, then the dump over it, no write-ahead log left), keep what
/// was there aside, and leave every container running and healthy again.
// 2026-12-06, alone on two cores: **passed**, 516 s (cloud-init done after 218 s); with the drill
// added, 665 s (beside a low-priority build; the drill restored 92 MiB and loaded both dumps);
// on the final tree of that day, alone, 771 s (cloud-init done after 271 s); with Uptime Kuma's
// SQLite restored from its dump (drill and restore), alone, 797 s (cloud-init after 292 s).
#[test]
#[ignore = "9 minutes under TCG, beyond the suite's time: cargo test --test lab -- --ignored (docs/lab.md)"]
fn lab_traefik_edge_box_restores_its_data_from_a_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let (sys, key, admin) = lab::lab_copy("traefik-edge", tmp.path());
    let file = sys.join("system.toml");
    let mut toml = common::read(&file);
    toml.push_str("\n[backup]\nrepository = \"/var/lib/kiln-lab-restic\"\npassword = \"cache_password\"\nkeep = { daily = 7 }\n");
    std::fs::write(&file, toml).unwrap();
    lab::image_dir(lab::LAB_IMAGE);
    let result = lab::build(&sys, tmp.path());
    let (images, compose) = common::lab_images(&result, "box", tmp.path());
    let disk = tmp.path().join("data.qcow2");
    let lab = lab::boot(&sys, "box", &key, &admin, &images, Some(&disk));
    let on = On::single(&lab);
    check_host(&on, &compose);

    let psql = |sql: &str| {
        on.must(&format!(
            "docker compose --file /opt/kiln/compose.yaml exec -T db psql -X -At -v ON_ERROR_STOP=1 -U app -d app -c {}",
            kiln::render::quote::sh(sql)
        ))
    };
    let volume = "/var/lib/kiln/data/docker/volumes/traefik-edge_sso-data/_data";
    let kuma = |sql: &str| {
        on.must(&format!(
            "docker compose --file /opt/kiln/compose.yaml exec -T status sqlite3 -bail /app/data/kuma.db {}",
            kiln::render::quote::sh(sql)
        ))
    };
    psql("CREATE TABLE kept (body text); INSERT INTO kept VALUES ('before the backup')");
    kuma("PRAGMA journal_mode=WAL; CREATE TABLE monitor (name text); INSERT INTO monitor VALUES ('before the backup')");
    on.must(&format!("echo 'before the backup' > {volume}/kept-by-test"));
    let backup = on.sh("/bin/sh /opt/kiln/backup/kiln-backup.sh 2>&1");
    assert!(backup.is_ok(), "the backup failed: {backup:?}");

    // The drill: the snapshot restored into a scratch directory, both databases' dumps loaded
    // into throw-away copies (Compose project `traefik-edge-drill`); the running stack is
    // untouched and nothing of the drill stays.
    let drill = on.sh("/bin/sh /opt/kiln/backup/kiln-backup.sh drill 2>&1");
    let said = drill.unwrap_or_else(|e| panic!("the drill failed: {e}"));
    eprintln!("{said}");
    assert!(said.contains("drill passed") && said.contains("dumps loaded: db, sso-db, status"), "{said}");
    let project = "label=com.docker.compose.project=traefik-edge-drill";
    assert_eq!(
        on.must(&format!("docker ps -aq --filter {project}; docker volume ls -q --filter {project}")).trim(),
        "",
        "the drill left containers or volumes"
    );
    assert!(on.sh("test -e /var/lib/kiln/data/docker/kiln-drill").is_err(), "the drill's scratch directory stayed");
    assert_eq!(psql("SELECT body FROM kept").trim(), "before the backup");
    check_host(&on, &compose);

    psql("DROP TABLE kept; CREATE TABLE junk (x int)");
    kuma("INSERT INTO monitor VALUES ('after the backup')");
    on.must(&format!("rm {volume}/kept-by-test; echo 'after the backup' > {volume}/written-later"));
    let restore = on.sh("/bin/sh /opt/kiln/backup/kiln-backup.sh restore 2>&1");
    let said = restore.unwrap_or_else(|e| {
        panic!("the restore failed: {e}\n{}", on.sh("docker compose --file /opt/kiln/compose.yaml ps --all").unwrap_or_default())
    });
    eprintln!("{said}");

    assert_eq!(psql("SELECT body FROM kept").trim(), "before the backup");
    assert_eq!(psql("SELECT count(*) FROM pg_tables WHERE tablename = 'junk'").trim(), "0");
    assert_eq!(kuma("SELECT name FROM monitor").trim(), "before the backup", "kuma.db is its dump again");
    assert_eq!(kuma("PRAGMA integrity_check").trim(), "ok");
    assert_eq!(on.must(&format!("cat {volume}/kept-by-test")).trim(), "before the backup");
    assert!(on.sh(&format!("test -e {volume}/written-later")).is_err(), "a file from after the snapshot is in the restored volume");
    let kept = said.lines().find_map(|l| l.split("the data found before it is in ").nth(1)).and_then(|r| r.split(' ').next()).unwrap();
    assert_eq!(on.must(&format!("cat {kept}/traefik-edge_sso-data/written-later")).trim(), "after the backup");
    check_host(&on, &compose);
}

/// five-vps-saas's `identity` (declared ubuntu-24.04 on Hetzner; its lab copy runs debian-13),
/// the seed's host with the most services (eight): authentik server and worker, its
/// PostgreSQL, Grafana, Loki, Prometheus, the blackbox exporter and Alloy — all probe stand-ins
/// except the real PostgreSQL. It has no public address: it boots beside `edge`, its NAT gateway
/// and bastion (`kiln boot --hosts edge,identity`), on the seed's private network, and reaches
/// the lab's apt repository through it.
// Last run (2026-12-05, with three other VMs on two cores, stopped by hand after 10 minutes):
// its apt-get retried until edge's NAT was up, then installed prometheus-node-exporter and
// restic through it; it had reached the fail2ban step. 2026-12-06 03:57–04:08, alone on two
// cores: **passed**, 686 s (edge and identity booted together in 541 s; every container of
// identity running and healthy, its PostgreSQL password logins). 2026-12-06 20:33–20:46, alone,
// with Docker restarted without the private address and health asserted after it: **passed**,
// 791 s (booted together in 487 s).
#[test]
#[ignore = "13 minutes under TCG, beyond the suite's time: cargo test --test lab -- --ignored (docs/lab.md)"]
fn lab_five_vps_saas_identity_comes_up_with_stand_in_images() {
    let (_tmp, fleet, composes) = seed_fleet("five-vps-saas", &["edge", "identity"]);
    assert!(composes.contains_key("identity"), "identity runs containers");
    docker_starts_without_the_private_address(&On::in_fleet(&fleet, "identity"), "10.0.0.6", &composes["identity"]);
}

/// A boot where Docker comes up before the private network's address (a DHCP lease, a NIC
/// attached late): the host's address is taken away and Docker restarted, and every container,
/// those publishing on that address too, must be running again without it
/// (`render::private_bind`: without the non-local bind Docker fails them with "cannot assign
/// requested address" and does not retry). Passed twice (2026-12-06): all eight running; a third time with every one healthy again after it.
/// Run detached with `systemd-run`, as the SSH session itself goes over that address; the
/// address is put back at the end, with the default route through the gateway that its removal
/// took along (on a real boot kiln's egress step sets it once the address is up).
fn docker_starts_without_the_private_address(on: &On, address: &str, compose: &Value) {
    let wanted = compose["services"].as_object().unwrap().len();
    assert!(
        on.must(&format!("docker compose --file /opt/kiln/compose.yaml config | grep -c 'host_ip: {address}' || true")).trim() != "0",
        "identity publishes on {address}"
    );
    let script = format!(
        "set -- $(ip -o -4 addr show | awk '{{split($4, a, \"/\"); if (a[1] == \"{address}\") print $2, $4}}'); \
         [ -n \"$2\" ] || exit 1; route=$(ip -4 route show default | head -n 1); \
         ip addr del \"$2\" dev \"$1\"; systemctl restart docker; i=0; \
         while [ \"$(docker ps --filter status=running -q | wc -l)\" -lt {wanted} ] && [ $i -lt 120 ]; do i=$((i + 1)); sleep 5; done; \
         ip -o -4 addr show | grep -c ' {address}/' >/root/address-count || true; \
         docker ps --all --format '{{{{.Names}}}} {{{{.State}}}}' >/root/without-address.tmp; \
         for c in $(docker ps --all --filter status=restarting --filter status=exited --format '{{{{.Names}}}}'); do \
           echo \"--- $c\"; docker logs --tail 30 \"$c\" 2>&1; done >/root/not-running.log; \
         mv /root/without-address.tmp /root/without-address; \
         ip addr add \"$2\" dev \"$1\"; [ -z \"$route\" ] || ip route replace $route"
    );
    on.must(&format!(
        "rm -f /root/without-address; systemd-run --quiet --collect --unit kiln-test-private-bind sh -c {}",
        kiln::render::quote::sh(&script)
    ));
    let start = std::time::Instant::now();
    let states = loop {
        std::thread::sleep(std::time::Duration::from_secs(10));
        if let Ok(s) = on.sh("cat /root/without-address") {
            break s;
        }
        assert!(start.elapsed().as_secs() < 600, "Docker's restart without {address} did not end in 10 minutes");
    };
    assert_eq!(on.must("cat /root/address-count").trim(), "0", "the address was gone while Docker started");
    let running = states.lines().filter(|l| l.ends_with(" running")).count();
    assert_eq!(
        running,
        wanted,
        "every container started without {address}:\n{states}\n{}",
        on.sh("cat /root/not-running.log").unwrap_or_default()
    );
    // and once the address is back, every container is healthy again (the PostgreSQL stand-in's
    // socket directory is a tmpfs: before render::compose::tmpfs_owned it came back root's after
    // the restart and PostgreSQL crash-looped, "health: starting" for ten minutes)
    wait_until_healthy(on, compose, 600);
    check_host(on, compose);
}

/// Boots `hosts` of `example`'s lab copy together (`lab::boot_fleet`) and checks each host that
/// runs containers as [`check_host`] does. The work directory comes first so that it is removed
/// after the fleet is stopped.
fn seed_fleet(example: &str, hosts: &[&str]) -> (tempfile::TempDir, vm::Fleet, BTreeMap<String, Value>) {
    let tmp = tempfile::tempdir().unwrap();
    let (sys, key, admin) = lab::lab_copy(example, tmp.path());
    lab::image_dir(lab::LAB_IMAGE);
    let result = lab::build(&sys, tmp.path());
    let (fleet, composes) = lab::boot_fleet(&sys, &result, hosts, &key, &admin, tmp.path());
    for (host, compose) in &composes {
        check_host(&On::in_fleet(&fleet, host), compose);
    }
    (tmp, fleet, composes)
}

/// maidan-cloud's `maidan` (declared ubuntu-24.04 on DigitalOcean; the lab copy runs debian-13),
/// the seed's host with the most services (thirty): PostgreSQL and Valkey real, the rest
/// (Nextcloud, MariaDB, Matrix, authentik, LibreChat, …) probe stand-ins.
// Runs (alone on two cores): 2026-12-06 00:52, cloud-init done after 538 s, every group up to
// Nextcloud and WordPress healthy, then Docker refused to create Ollama (limited to 4 CPUs on a
// 2-vCPU machine: `kiln boot` now gives a machine the vCPUs its limits need, boot::vcpus);
// 2026-12-06 01:07, Ollama and every database up, then the three Synapse and LibreChat probes
// stayed unhealthy: lab gaps, not kiln's — Synapse's stand-in ran as root without
// CAP_DAC_OVERRIDE where upstream's start.py drops to $UID:$GID before reading the secrets (the
// probe now drops too); LibreChat's `command` runs a shell script on an image whose entrypoint
// runs its arguments, and the probe stood for that entrypoint, so the script never ran (and it
// calls `node`, which the stand-in base lacks: the probe checks its variables and secret files,
// not the script). 2026-12-06 03:24, LibreChat healthy (the probe answers `OK`, which its check
// greps for), the Synapse probes dropped to uid 991 and then missed the database password that
// the module's entrypoint reads as root before the drop (the probe now reads it first, too).
// 2026-12-06 03:24–03:54, alone on two cores: **passed**, 1,663 s (cloud-init done after
// 937 s; every one of the thirty containers running and healthy; every PostgreSQL password
// login). The Nextcloud cron job's first run failed: the probe image has no `php` (a lab gap).
// 2026-12-08 00:50, alone: passed, 1,627 s (cloud-init done after 1,100 s: its eight start
// groups took 40–176 s each, and the thirteen systemd reloads of its last three steps, one per
// unit file, 140 s; then 337 s of checks, each PostgreSQL login its own SSH call).
#[test]
#[ignore = "28 minutes under TCG, too long for the suite: cargo test --test lab -- --ignored (docs/lab.md)"]
fn lab_maidan_cloud_maidan_comes_up_with_stand_in_images() {
    seed("maidan-cloud", "maidan", false);
}

/// civic-scaleway's `tools-prod` (declared ubuntu-24.04 on Scaleway; the lab copy runs
/// debian-13), the seed's host with the most services (seventeen): Valkey real; Nextcloud,
/// Outline, Decidim, EspoCRM, Leantime, OnlyOffice, MariaDB and Traefik probe stand-ins. It boots
/// as a fleet of one with its VPC attached (its provisioner waits for 10.0.0.3 on a NIC), beside
/// the stand-in `kiln boot` gives the managed PostgreSQL (src/boot/stand_in.rs): Debian's
/// PostgreSQL with every client's role and database, answering
/// `civic-scaleway-main.civic-scaleway-vpc.internal` on the VPC. Decidim's, Outline's,
/// Nextcloud's and EspoCRM's probes are healthy only once that name resolves in their containers
/// and its port accepts them through both hosts' firewalls.
// Runs (alone on two cores): 2026-12-04, as a single-host boot, the provisioner stopped at its
// private-address step, which waits 300 s for 10.0.0.3 on a NIC (a single-host boot attaches
// none of the host's private networks). 2026-12-06 06:16, as a fleet with the database's
// stand-in: the stand-in ready after 255 s, tools-prod found the database by its VPC name, and
// every container healthy but two lab gaps (the EspoCRM daemon's stand-in did not run as
// `php daemon.php`, which its check greps for; the health stand-in printed nothing for
// ONLYOFFICE's check to grep; both fixed in scripts/lab-images). 2026-12-06 07:01: **passed**,
// 563 s (the two machines booted together in 463 s; all seventeen containers running and
// healthy).
#[test]
#[ignore = "9 minutes under TCG, beyond the suite's time: cargo test --test lab -- --ignored (docs/lab.md)"]
fn lab_civic_scaleway_tools_prod_comes_up_with_stand_in_images() {
    let (_tmp, fleet, composes) = seed_fleet("civic-scaleway", &["tools-prod"]);
    assert!(composes.contains_key("tools-prod"), "tools-prod runs containers");
    // the host resolves the database's VPC name through the stand-in, as its containers do
    let on = On::in_fleet(&fleet, "tools-prod");
    let got = on.must("getent hosts civic-scaleway-main.civic-scaleway-vpc.internal");
    assert!(got.starts_with("10.0.0.254 "), "{got}");
    // the stand-in made every client's role and logged in as each over TLS before its marker
    let db = fleet.host("main.database");
    assert_eq!(db["provisioner"], "completed", "{db}");
}

/// jacker's one host `jacker` (declared ubuntu-24.04 on Hetzner; the lab copy runs debian-13),
/// twenty-six services: PostgreSQL and Valkey real, Traefik, CrowdSec, authentik, OAuth2-Proxy
/// and the monitoring stack probe stand-ins.
// Runs (alone on two cores): 2026-12-05 22:27, cAdvisor refused (its bind mount of
// /var/lib/docker, not where the data volume holds Docker's root; fixed in
// render::data_volume::host_path); 2026-12-05 23:42, code-server's stand-in lacked upstream's
// /home/coder owned by uid 1000 (fixed in scripts/lab-images); 2026-12-06 00:09, passed in
// 1,266 s (cloud-init done after 994 s, every one of its 26 services healthy).
#[test]
#[ignore = "21 minutes under TCG, too long for the suite: cargo test --test lab -- --ignored (docs/lab.md)"]
fn lab_jacker_jacker_comes_up_with_stand_in_images() {
    seed("jacker", "jacker", false);
}

/// postx-hetzner's `client-alpha` (declared ubuntu-24.04 on Hetzner; the lab copy runs
/// debian-13), one of the seed's two hosts with the most services (eleven, with client-zeta):
/// PostgreSQL and Valkey real, Zitadel, Nextcloud, listmonk, pretix and Traefik probe stand-ins.
// Runs (alone on two cores): 2026-12-06 00:34, every container healthy after 373 s, but this
// test took Nextcloud (POSTGRES_PASSWORD_FILE, a client's variable) for a PostgreSQL server;
// 2026-12-06 00:43, passed in 519 s (cloud-init done after 341 s). 2026-12-08, with start
// intervals and one systemd reload per step: passed in 436 s (cloud-init done after 288 s; its
// four PostgreSQL logins and four refusals in one shell, 33 s).
#[test]
#[ignore = "9 minutes under TCG, beyond the suite's time: cargo test --test lab -- --ignored (docs/lab.md)"]
fn lab_postx_hetzner_client_alpha_comes_up_with_stand_in_images() {
    seed("postx-hetzner", "client-alpha", false);
}

/// Whether `on` (a root shell on a host, or `docker compose exec` into one of its containers
/// when `container` is given) opens a TCP connection to `address:port` within 8 s.
fn opens(on: &On, container: Option<&str>, address: &str, port: u16) -> bool {
    let probe = format!("timeout 8 bash -c 'exec 3<>/dev/tcp/{address}/{port}' 2>/dev/null && echo open || echo closed");
    let cmd = match container {
        Some(c) => format!(
            "docker compose --file /opt/kiln/compose.yaml exec -T {} bash -c {}",
            kiln::render::quote::sh(c),
            kiln::render::quote::sh(&probe)
        ),
        None => probe,
    };
    on.must(&cmd).trim() == "open"
}

// Last run (2026-12-05 20:49–21:36, the five VMs alone on two cores): passed, 2,765 s (booted
// together in 1,822 s; then each host's checks and every probe below). The run before, with a
// build beside it, had identity's containers reported unhealthy by healthchecks that timed out
// starting under load and recovered a minute later: the boot report now waits for health to
// settle (boot::seed). `#[ignore]`d for the suite's time (46 min alone), not for a fault.
/// five-vps-saas, all five hosts booted together on the seed's private network (edge public:
/// Caddy, bastion and NAT gateway; app, db, cache and identity private, leaving through edge),
/// each with its stand-in images: "least privilege, derived" on real kernels. Every host comes
/// up (cloud-init clean, marker, every container healthy: the app's probe stand-in is healthy
/// only once it reached PgBouncer on db and Valkey on cache at the addresses kiln wrote into
/// its environment); then, container to container and host to host across the network, what a
/// service connects to opens and what it does not is refused by ufw and `DOCKER-USER`.
#[test]
#[ignore = "46 minutes under TCG, too long for the suite: cargo test --test lab -- --ignored (docs/lab.md)"]
fn lab_five_vps_saas_hosts_reach_exactly_what_they_connect_to() {
    let (tmp, fleet, composes) = seed_fleet("five-vps-saas", &["edge", "app", "db", "cache", "identity"]);
    let on = |h: &'static str| On::in_fleet(&fleet, h);
    let env = &composes["app"]["services"]["app"]["environment"];
    let (db, cache) = (env["DATABASE_HOST"].as_str().unwrap(), env["CACHE_HOST"].as_str().unwrap());
    assert_eq!((db, cache), ("10.0.0.4", "10.0.0.5"), "kiln wrote the private addresses into the app's environment");

    // what the app connects to, from its container: PgBouncer on db, Valkey on cache
    assert!(opens(&on("app"), Some("app"), db, 6432), "app → pgbouncer");
    assert!(opens(&on("app"), Some("app"), cache, 6379), "app → valkey");
    // what it does not: the exporters on the same hosts, published to identity's Prometheus only
    assert!(!opens(&on("app"), Some("app"), db, 9187), "app ↛ postgres-exporter (DOCKER-USER)");
    assert!(!opens(&on("app"), Some("app"), cache, 9121), "app ↛ valkey-exporter (DOCKER-USER)");
    // host to host: Prometheus's host reaches the exporters, the edge does not reach PgBouncer
    assert!(opens(&on("identity"), None, db, 9187), "identity → postgres-exporter");
    assert!(opens(&on("identity"), None, cache, 9121), "identity → valkey-exporter");
    assert!(!opens(&on("edge"), None, db, 6432), "edge ↛ pgbouncer");
    assert!(!opens(&on("cache"), None, db, 6432), "cache ↛ pgbouncer");
    assert!(!opens(&on("db"), None, cache, 6379), "db ↛ valkey");
    // ssh only from the bastion
    assert!(opens(&on("edge"), None, db, 22), "edge (the bastion) → db's ssh");
    assert!(!opens(&on("app"), None, db, 22), "app ↛ db's ssh");

    // from the internet (the test, through qemu's forwarded ports): ssh answers the admins'
    // source; the edge's HTTP and HTTPS answer Cloudflare's addresses only, not the test's
    assert!(answers(fleet.port("edge", "ssh")).starts_with("SSH-2.0-"), "ssh answers the admins' source");
    for port in ["http", "https"] {
        assert_eq!(answers(fleet.port("edge", port)), "", "{port} answers no address but Cloudflare's");
    }

    // ufw on each private host holds exactly the derived rules (model.json's `firewall`), each
    // for the host itself and, where a container publishes the port, for what Docker forwards
    // to it (`route`; no host here publishes on another port than the container's): db has PgBouncer for
    // app, the exporters for identity, ssh for the bastion, and nothing for PostgreSQL itself
    // (edge's ssh sources have the lab's own added, tests/lab/mod.rs)
    let model: Value = serde_json::from_slice(&std::fs::read(tmp.path().join("result/model.json")).unwrap()).unwrap();
    for host in ["app", "db", "cache", "identity"] {
        let mut derived = std::collections::BTreeSet::new();
        for rule in model["firewall"].as_array().unwrap().iter().filter(|r| r["host"] == host) {
            for src in rule["sources"].as_array().unwrap() {
                let (proto, src, port) = (rule["protocol"].as_str().unwrap(), src.as_str().unwrap(), rule["port"].as_u64().unwrap());
                derived.insert(ufw_rule("allow", proto, src, port));
                if rule["forwarded"] == true {
                    derived.insert(ufw_rule("route", proto, src, port));
                }
            }
        }
        let added: std::collections::BTreeSet<String> = on(host).must("ufw show added").lines().filter_map(parse_ufw_added).collect();
        assert_eq!(added, derived, "{host}: ufw's rules are the derived ones");
    }
    assert!(!on("db").must("ufw show added").contains("5432"), "no rule for PostgreSQL itself");
    let docker_user = on("db").must("iptables -S DOCKER-USER");
    assert!(docker_user.contains("ufw-user-forward"), "DOCKER-USER sends containers' traffic through ufw's route rules: {docker_user}");
}

/// One ufw rule as the lab compares them: kind (`allow` or `route`), protocol, source (a
/// single address without its `/32`), port.
fn ufw_rule(kind: &str, proto: &str, src: &str, port: u64) -> String {
    format!("{kind} {proto} {} {port}", src.trim_end_matches("/32").trim_end_matches("/128"))
}

/// A line of `ufw show added` (`ufw [route] allow [proto P] from SRC to any port N [proto P]
/// [comment '…']`) as [`ufw_rule`] writes it.
fn parse_ufw_added(line: &str) -> Option<String> {
    let line = line.strip_prefix("ufw ")?.split(" comment ").next()?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |w: &str| words.iter().position(|x| *x == w).and_then(|i| words.get(i + 1)).copied();
    let kind = if words.first() == Some(&"route") { "route" } else { "allow" };
    Some(ufw_rule(kind, after("proto")?, after("from")?, after("port")?.parse().ok()?))
}

/// What a forwarded loopback port says within 8 s to a line of HTTP (an SSH banner, an HTTP
/// or TLS answer), or "" when the guest's firewall drops the connection.
fn answers(port: u64) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port as u16)) else { return String::new() };
    s.set_read_timeout(Some(std::time::Duration::from_secs(8))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(_) => String::new(),
    }
}
