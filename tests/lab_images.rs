//! The lab's stand-in images (scripts/lab-images), read as `docker load` would read them,
//! without a VM: every reference a host's services pin is there, and the stand-in tools layer
//! leaves the base's real programs alone. five-vps-saas's db host is the case that broke a
//! boot: PgBouncer's entrypoint is `/bin/sh FILE` (the shell is real, the program the file
//! execs is the stand-in), and the PgBouncer exporter execs `/bin/pgbouncer_exporter` (on
//! Debian's merged /usr, /bin is a link into /usr, which a `bin/` directory in a layer above
//! would replace).

mod common;

use std::collections::BTreeMap;
use std::io::Read;

use common::{build, repo};

/// A `docker load` archive: its manifest and its layers (name → the layer's tar).
struct Archive {
    manifest: serde_json::Value,
    layers: BTreeMap<String, Vec<u8>>,
}

fn archive(path: &std::path::Path) -> Archive {
    let mut manifest = serde_json::Value::Null;
    let mut layers = BTreeMap::new();
    let mut t = tar::Archive::new(std::fs::File::open(path).unwrap());
    for e in t.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" {
            manifest = serde_json::from_reader(&mut e).unwrap();
        } else if name.ends_with("/layer.tar") {
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            layers.insert(name, data);
        }
    }
    Archive { manifest, layers }
}

/// `example`'s build and the stand-in images of its `host` (the work directory first: it must
/// outlive the archive), with the host's compose file.
fn stand_ins(example: &str, host: &str) -> (tempfile::TempDir, std::path::PathBuf, serde_json::Value, Archive) {
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&repo().join("flake-free-examples").join(example), &tmp.path().join("store"), &tmp.path().join("result"));
    let (tar, compose) = common::lab_images(&result, host, tmp.path());
    let a = archive(&tar);
    (tmp, tar, compose, a)
}

/// A layer's entries: path (without `./`) → symbolic link target, or "" for other kinds.
fn entries(layer: &[u8]) -> BTreeMap<String, String> {
    let mut t = tar::Archive::new(layer);
    t.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().trim_start_matches("./").trim_end_matches('/').to_string();
            let link = e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
            (path, link)
        })
        .collect()
}

#[test]
fn db_stand_ins_keep_the_real_shell_and_stand_in_for_what_the_scripts_exec() {
    // the seed pins its own application by digest, which the lab copy drops (tests/lab/mod.rs);
    // db's services pin tags only
    let (_tmp, _tar, compose, a) = stand_ins("five-vps-saas", "db");

    let refs: Vec<&str> =
        a.manifest.as_array().unwrap().iter().flat_map(|m| m["RepoTags"].as_array().unwrap()).filter_map(|r| r.as_str()).collect();
    let pinned: std::collections::BTreeSet<&str> =
        compose["services"].as_object().unwrap().values().filter_map(|s| s["image"].as_str()).collect();
    assert_eq!(refs.iter().copied().collect::<std::collections::BTreeSet<_>>(), pinned, "one stand-in per pinned reference");

    let layers: Vec<&str> = a.manifest[0]["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(layers.len() >= 2, "the base and the tools first (then an image's own, with a user it runs as)");
    let base = entries(&a.layers[layers[0]]);
    let tools = entries(&a.layers[layers[1]]);
    assert_eq!(base.get("bin").map(String::as_str), Some("usr/bin"), "the base is merged-/usr: {:?}", base.get("bin"));

    // nothing in the tools layer sits under the base's links (it would replace /bin itself)
    let shadowing: Vec<&String> =
        tools.keys().filter(|p| ["bin", "sbin", "lib", "lib64"].contains(&p.split('/').next().unwrap())).collect();
    assert!(shadowing.is_empty(), "entries over the base's /usr links: {shadowing:?}");
    // the shells stay the base's own
    for shell in ["usr/bin/sh", "bin/sh", "usr/bin/bash", "usr/bin/dash"] {
        assert!(!tools.contains_key(shell), "{shell} is replaced by a stand-in tool");
    }
    // what PgBouncer's start script execs, and the exporter's absolute program, are the probe
    assert_eq!(tools.get("usr/local/bin/pgbouncer").map(String::as_str), Some("/usr/local/bin/kiln-standin"), "{tools:?}");
    assert_eq!(tools.get("usr/bin/pgbouncer_exporter").map(String::as_str), Some("/usr/local/bin/kiln-standin"), "{tools:?}");
}

#[test]
fn an_image_pinned_by_digest_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("result"));
    let compose = std::fs::read_to_string(result.join("hosts/app/compose.yaml")).unwrap();
    let json = tmp.path().join("compose.json");
    let value: serde_json::Value = serde_saphyr::from_str(&compose).unwrap();
    std::fs::write(&json, serde_json::to_vec(&value).unwrap()).unwrap();
    let out = common::run(
        std::process::Command::new(repo().join("scripts/lab-images"))
            .arg("--model")
            .arg(result.join("model.json"))
            .arg("--compose")
            .arg(&json)
            .args(["--host", "app"])
            .arg(tmp.path().join("out.tar")),
    );
    assert!(!out.status.success());
    let err = common::text(&out.stderr);
    assert!(err.contains("ghcr.io/example/platform-api:1.4.2@sha256:") && err.contains("pinned by digest"), "{err}");
    assert!(!tmp.path().join("out.tar").exists() && !tmp.path().join("out.tar.part").exists(), "nothing written");
}

/// postx-hetzner's pretix runs `python3 -m pretix migrate` as the image's user 15371 in
/// /pretix/src before it execs supervisord: its stand-in alone gets a third layer with a
/// stand-in `pretix` module, that user, and those directories owned by it; no other image on the
/// host gets them (Valkey's /data keeps its owner).
#[test]
fn pretix_stand_in_has_what_its_start_script_needs_and_the_others_do_not() {
    let (_tmp, _tar, _, a) = stand_ins("postx-hetzner", "client-alpha");
    for image in a.manifest.as_array().unwrap() {
        let reference = image["RepoTags"][0].as_str().unwrap();
        let layers = image["Layers"].as_array().unwrap();
        if !reference.starts_with("docker.io/pretix/") {
            // the shared layers, and at most the name of a user it runs as (and PostgreSQL's
            // socket directory, as the postgres image has it: 3777, owned by postgres)
            let own: Vec<String> = layers[2..].iter().flat_map(|l| entries(&a.layers[l.as_str().unwrap()]).into_keys()).collect();
            let postgres = reference.starts_with("docker.io/library/postgres:");
            assert!(
                own.iter().all(|p| ["etc", "etc/passwd", "etc/group"].contains(&p.as_str()) || (postgres && p == "run/postgresql")),
                "{reference}: {own:?}"
            );
            if postgres {
                let layer = &a.layers[layers[2].as_str().unwrap()];
                let mut t = tar::Archive::new(layer.as_slice());
                let dir = t.entries().unwrap().map(|e| e.unwrap()).find(|e| e.path().unwrap().to_string_lossy().contains("run/postgresql"));
                let h = dir.expect("the postgres stand-in has /run/postgresql").header().clone();
                assert_eq!((h.mode().unwrap() & 0o7777, h.uid().unwrap()), (0o3777, 999), "{reference}");
            }
            continue;
        }
        assert_eq!(layers.len(), 3, "{reference}: a layer of its own");
        let own = &a.layers[layers[2].as_str().unwrap()];
        let mut t = tar::Archive::new(own.as_slice());
        let mut owners = BTreeMap::new();
        let mut passwd = String::new();
        for e in t.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
            owners.insert(path.clone(), e.header().uid().unwrap());
            if path == "etc/passwd" {
                e.read_to_string(&mut passwd).unwrap();
            }
        }
        assert!(owners.contains_key("usr/local/lib/python3.13/dist-packages/pretix/__main__.py"), "{owners:?}");
        for dir in ["pretix/src", "data/logs", "data/media"] {
            assert_eq!(owners.get(dir), Some(&15371), "{dir} belongs to pretix's user: {owners:?}");
        }
        assert!(passwd.lines().any(|l| l.split(':').nth(2) == Some("15371")), "{passwd}");
        assert!(passwd.lines().any(|l| l.starts_with("root:x:0:0:")), "the base's users stay: {passwd}");
    }
}

/// A file's bytes in a layer.
fn file_in(layer: &[u8], path: &str) -> Option<Vec<u8>> {
    let mut t = tar::Archive::new(layer);
    for e in t.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy().trim_start_matches("./") == path {
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            return Some(data);
        }
    }
    None
}

/// The image `reference`'s manifest entry and its config, from a `docker load` archive.
fn image_config(tar: &std::path::Path, a: &Archive, reference: &str) -> (serde_json::Value, serde_json::Value) {
    let m = a.manifest.as_array().unwrap().iter().find(|m| m["RepoTags"][0] == reference).unwrap_or_else(|| panic!("{reference}")).clone();
    let name = m["Config"].as_str().unwrap().to_string();
    let mut t = tar::Archive::new(std::fs::File::open(tar).unwrap());
    for e in t.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == name {
            return (m, serde_json::from_reader(&mut e).unwrap());
        }
    }
    panic!("no config {name}")
}

/// What five-vps-saas's db stand-ins failed on in a VM (their healthchecks never passed), each
/// as upstream's image has it: PgBouncer runs as uid 70, which has a name (edoburu/pgbouncer's
/// `postgres`; libpq's pg_isready will not try without one); the probe answers a PostgreSQL
/// client as a server that lets no one in (pg_isready, the real one from Debian, then reports
/// it up, and "rejecting connections" while the probe has problems); pgBackRest's S3 keys are
/// required only with `repo_type = s3` (kiln's `required_when`), which db does not use.
#[test]
fn db_stand_ins_pass_their_healthchecks_as_upstream_images_would() {
    let (tmp, tar, compose, a) = stand_ins("five-vps-saas", "db");
    let image = |svc: &str| compose["services"][svc]["image"].as_str().unwrap().to_string();

    let (pgbouncer, _) = image_config(&tar, &a, &image("pgbouncer"));
    let layers: Vec<&str> = pgbouncer["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let passwd = layers.iter().rev().find_map(|l| file_in(&a.layers[*l], "etc/passwd")).expect("an /etc/passwd");
    assert!(String::from_utf8_lossy(&passwd).lines().any(|l| l.split(':').nth(2) == Some("70")), "uid 70 has a name");

    let (_, pgbackrest) = image_config(&tar, &a, &image("pgbackrest"));
    let env: Vec<&str> = pgbackrest["config"]["Env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    let required = env.iter().find_map(|e| e.strip_prefix("KILN_STANDIN_SECRETS=")).unwrap();
    assert!(!required.contains("s3"), "S3 keys are not required without an S3 repository: {required}");

    // the probe itself, with Debian's pg_isready
    let standin = file_in(&a.layers[layers[1]], "usr/local/bin/kiln-standin").expect("the probe");
    let script = tmp.path().join("kiln-standin");
    std::fs::write(&script, standin).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pg_isready = repo().join(".test-tools/postgresql/usr/lib/postgresql/15/bin/pg_isready");
    assert!(pg_isready.is_file(), "{} is missing: run scripts/install-test-deps", pg_isready.display());
    for (problem, expected) in [(None, "accepting connections"), (Some(("DB_HOST", "DB_PORT")), "rejecting connections")] {
        let mut probe = std::process::Command::new("python3");
        probe.arg(&script).env_clear().env("KILN_STANDIN_PORTS", port.to_string()).env("KILN_STANDIN_REF", "test");
        if let Some((host, port_var)) = problem {
            // a connection it declares that nothing answers: the probe has a problem
            probe.env(host, "127.0.0.1").env(port_var, "1");
        }
        let mut child = probe.stderr(std::process::Stdio::null()).spawn().unwrap();
        let mut said = String::new();
        for _ in 0..50 {
            let out = std::process::Command::new(&pg_isready)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-d", "pgbouncer"])
                .output()
                .unwrap();
            said = common::text(&out.stdout);
            if !said.contains("no response") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(said.trim(), format!("127.0.0.1:{port} - {expected}"));
    }
}

/// pgBackRest's stand-in runs the real pgBackRest (Debian's, in the shared base) behind
/// woblerr/pgbackrest's entrypoint contract: the module's command (`sh kiln-run.sh`, which makes
/// the stanza and marks the container healthy) runs, as BACKREST_UID. The probe in its place
/// never ran that script, so five-vps-saas's db host never came up in the lab.
#[test]
fn pgbackrest_stand_in_runs_the_module_command_with_the_real_pgbackrest() {
    let (tmp, tar, compose, a) = stand_ins("five-vps-saas", "db");
    let (manifest, config) = image_config(&tar, &a, compose["services"]["pgbackrest"]["image"].as_str().unwrap());
    assert_eq!(config["config"]["Labels"]["org.kiln.lab.stand-in"], "pgbackrest");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["docker-entrypoint.sh"]), "the entrypoint runs the compose command");
    let layers: Vec<&str> = manifest["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let base = entries(&a.layers[layers[0]]);
    assert!(base.contains_key("usr/bin/pgbackrest"), "the base has the real pgbackrest");
    let entrypoint = String::from_utf8(file_in(&a.layers[layers[1]], "usr/local/bin/docker-entrypoint.sh").unwrap()).unwrap();
    assert!(entrypoint.contains("KILN_STANDIN:-}\" = pgbackrest") && entrypoint.contains("--reuid=\"$uid\""), "{entrypoint}");
    // the healthcheck is the module's own script, run by the base's real sh and find (its
    // stanza marker, last backup and WAL spool), not answered by a probe
    let health = compose["services"]["pgbackrest"]["healthcheck"]["test"].as_array().unwrap();
    assert_eq!(health[1..], [serde_json::json!("sh"), serde_json::json!("/etc/pgbackrest/kiln-health.sh")]);
    for tool in ["sh", "find"] {
        assert!(!entries(&a.layers[layers[1]]).contains_key(&format!("usr/local/bin/{tool}")), "{tool} stays the real one");
    }
    assert!(base.contains_key("usr/bin/find"), "the base has find");

    // The entrypoint as the container runs it (dash, as root), with stand-ins on PATH for what
    // would touch this machine or needs a container (id, mkdir, chown, getent, setpriv). chown -R
    // fails as it did in the VM (the module keeps CHOWN, not DAC_READ_SEARCH): the entrypoint
    // goes on; the command runs as BACKREST_UID with that user's HOME (libpq reads
    // ~/.postgresql), not root's.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = tmp.path().join("calls");
    let fake = |name: &str, body: &str| {
        let f = bin.join(name);
        std::fs::write(&f, format!("#!/bin/sh\necho \"{name} $*\" >>'{}'\n{body}\n", log.display())).unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    fake("id", "echo 0");
    fake("mkdir", "exit 0");
    fake("chown", "case $1 in -R) echo \"chown: cannot read directory '$3': Permission denied\" >&2; exit 1 ;; esac");
    fake("getent", "[ \"$2\" = 999 ] && echo 'postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/bash'");
    fake("setpriv", "echo \"HOME=$HOME $*\"");
    let script = tmp.path().join("docker-entrypoint.sh");
    std::fs::write(&script, &entrypoint).unwrap();
    let out = common::run(
        std::process::Command::new("dash")
            .arg(&script)
            .args(["sh", "/etc/pgbackrest/kiln-run.sh"])
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("HOME", "/root")
            .env("KILN_STANDIN", "pgbackrest")
            .env("BACKREST_UID", "999")
            .env("BACKREST_GID", "999"),
    );
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    assert_eq!(
        common::text(&out.stdout).trim(),
        "HOME=/var/lib/postgresql --reuid=999 --regid=999 --clear-groups sh /etc/pgbackrest/kiln-run.sh"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    for d in ["/var/log/pgbackrest", "/var/lib/pgbackrest", "/var/spool/pgbackrest", "/tmp/pgbackrest"] {
        assert!(calls.contains(&format!("chown 999:999 {d}\n")), "{d} is given to the user: {calls}");
    }
}

/// jacker's code-server runs as uid 1000 and makes its workspace in its `home` volume at start
/// (`mkdir -p /home/coder/project`). Upstream's image has /home/coder as that user's home, so a
/// named volume there starts owned by it; the stand-in has it too, else the start script fails
/// ("Permission denied", seen in the lab) on what is the stand-in's gap, not kiln's.
#[test]
fn code_server_stand_in_has_its_users_home_as_upstream_has() {
    let (_tmp, _tar, compose, a) = stand_ins("jacker", "jacker");
    let reference = compose["services"]["code-server"]["image"].as_str().unwrap();
    let image = a.manifest.as_array().unwrap().iter().find(|m| m["RepoTags"][0] == reference).unwrap();
    let layers = image["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "{reference}: a layer of its own");
    let mut t = tar::Archive::new(a.layers[layers[2].as_str().unwrap()].as_slice());
    let owners: BTreeMap<String, u64> = t
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().to_string_lossy().trim_end_matches('/').to_string(), e.header().uid().unwrap())
        })
        .collect();
    for dir in ["home/coder", "home/coder/project"] {
        assert_eq!(owners.get(dir), Some(&1000), "{dir} belongs to code-server's user: {owners:?}");
    }
}

/// civic-scaleway's tools-prod: the healthchecks that look at what upstream's programs do, run
/// against the stand-ins. EspoCRM's daemon check greps /proc/1/cmdline for `daemon.php`, which
/// upstream's docker-daemon.sh execs: its stand-in execs the probe with that command line.
/// ONLYOFFICE's check greps `curl …/healthcheck` for `true`: the stand-in `curl` (the health
/// tool) prints the probe's answer for that path, which is `true` there as upstream's is.
#[test]
fn tools_prod_stand_ins_answer_the_checks_that_look_at_upstreams_programs() {
    let (tmp, _tar, compose, a) = stand_ins("civic-scaleway", "tools-prod");
    let layers: Vec<&str> = a.manifest[0]["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let tools = &a.layers[layers[1]];
    assert_eq!(compose["services"]["espocrm-daemon"]["entrypoint"], serde_json::json!(["docker-daemon.sh"]));
    let daemon = String::from_utf8(file_in(tools, "usr/local/bin/docker-daemon.sh").expect("docker-daemon.sh's stand-in")).unwrap();
    assert!(daemon.contains("\nexec /usr/local/bin/kiln-standin php /var/www/html/daemon.php \"$@\"\n"), "{daemon}");

    // the probe and the health tool, run here: the module's own check command, with the tool
    // as `curl`
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(tmp.path().join("kiln-standin"), file_in(tools, "usr/local/bin/kiln-standin").unwrap()).unwrap();
    let health = bin.join("curl");
    std::fs::write(&health, file_in(tools, "usr/local/bin/kiln-standin-health").unwrap()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&health, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new("python3")
        .arg(tmp.path().join("kiln-standin"))
        .env_clear()
        .env("KILN_STANDIN_PORTS", port.to_string())
        .env("KILN_STANDIN_REF", "test")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let check = compose["services"]["onlyoffice"]["healthcheck"]["test"][1].as_str().unwrap().replace("8084", &port.to_string());
    assert!(check.contains("| grep -q true"), "{check}");
    let path = format!("{}:{}", bin.display(), "/usr/bin:/bin");
    let mut ok = false;
    for _ in 0..50 {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&check)
            .env("PATH", &path)
            .env("KILN_STANDIN_PORTS", port.to_string())
            .output()
            .unwrap();
        if out.status.success() {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // and another path still gets the probe's OK, which `true` is not part of
    let other = std::process::Command::new(&health)
        .arg("http://127.0.0.1:1/")
        .env("PATH", "/usr/bin:/bin")
        .env("KILN_STANDIN_PORTS", port.to_string())
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "`{check}` did not pass against the probe");
    assert!(common::text(&other.stdout).starts_with("OK (kiln stand-in for test)"), "{}", common::text(&other.stdout));
}
