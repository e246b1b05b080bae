//! `kiln plan` and `kiln diff`: a fixed list of edits on five-vps-saas, each with the hosts kiln
//! must create, replace and destroy; the same edits planned by Terraform against the stand-in
//! providers (scripts/tofu-check) replace, create and delete exactly those servers; exit codes
//! (0 no changes, 2 changes, 1 error); generations, bad state, and `kiln gc --keep`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const IMAGE: &str = "platform-api:1.4.2@sha256:3f1c6d5e0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d";

/// One edit of five-vps-saas: (name, file, text replaced, replacement; an empty `from` appends).
/// Each with the hosts kiln must (create, replace, destroy).
struct Edit {
    name: &'static str,
    changes: &'static [(&'static str, &'static str, &'static str)],
    create: &'static [&'static str],
    replace: &'static [&'static str],
}

const WORKER: &str = "\n[hosts.worker]\nprovider = \"hetzner\"\ntype = \"cx22\"\nlocation = \"fsn1\"\nimage = \"ubuntu-24.04\"\nzone = \"private\"\nnetworks = { private = \"10.0.0.7\" }\n";

const EDITS: &[Edit] = &[
    // a module option of the service on `cache`
    Edit {
        name: "option",
        changes: &[("services.toml", "maxmemory = \"2GiB\"", "maxmemory = \"1GiB\"")],
        create: &[],
        replace: &["cache"],
    },
    // a route: the edge serves it, the blackbox prober on identity probes it
    Edit {
        name: "route",
        changes: &[("routes.toml", "", "\n[routes.\"status.example.com\"]\nservice = \"grafana\"\nauth = \"authentik\"\n")],
        create: &[],
        replace: &["edge", "identity"],
    },
    // an image version
    Edit {
        name: "image",
        changes: &[("services.toml", IMAGE, "platform-api:1.4.3@sha256:4f1c6d5e0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d")],
        create: &[],
        replace: &["app"],
    },
    // a secret reference: PostgreSQL's superuser password from another secret
    Edit {
        name: "secret",
        changes: &[("services.toml", "password = \"postgres_admin_password\"", "password = \"app_db_password\"")],
        create: &[],
        replace: &["db"],
    },
    // a host added: Prometheus on identity scrapes its node exporter
    Edit { name: "host-added", changes: &[("hosts.toml", "", WORKER)], create: &["worker"], replace: &["identity"] },
    // a rule waived: the app's image by tag only, unpinned-image allowed with a reason
    Edit {
        name: "waiver",
        changes: &[
            ("services.toml", IMAGE, "platform-api:1.4.2"),
            (
                "services.toml",
                "",
                "\n[allow.unpinned-image]\nservices = [\"app\"]\nreason = \"The image is built by our own CI and released by tag; its digest is not known when this file is written.\"\n",
            ),
        ],
        create: &[],
        replace: &["app"],
    },
];

fn edited(tmp: &Path, e: &Edit) -> PathBuf {
    let sys = tmp.join(format!("sys-{}", e.name));
    copy_tree(&repo().join("flake-free-examples/five-vps-saas"), &sys);
    for (file, from, to) in e.changes {
        let f = sys.join(file);
        let t = std::fs::read_to_string(&f).unwrap();
        let changed = if from.is_empty() { format!("{t}{to}") } else { t.replacen(from, to, 1) };
        assert_ne!(t, changed, "{}: the edit applies", e.name);
        std::fs::write(&f, changed).unwrap();
    }
    sys
}

/// `kiln diff --json OLD NEW`: (exit code, plan).
fn diff(old: &Path, new: &Path) -> (i32, serde_json::Value) {
    let out = run(kiln().arg("diff").arg(old).arg(new).arg("--json"));
    let code = out.status.code().unwrap();
    assert!(code != 1, "kiln diff failed: {}", text(&out.stderr));
    (code, serde_json::from_slice(&out.stdout).unwrap())
}

fn names(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// (created, replaced, destroyed) hosts of a kiln plan.
fn kiln_sets(plan: &serde_json::Value) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    (names(&plan["create"]), names(&plan["replace"]), names(&plan["destroy"]))
}

#[test]
fn each_edit_plans_its_hosts_and_exit_codes_follow_detailed_exitcode() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let base = build(&repo().join("flake-free-examples/five-vps-saas"), &store, &tmp.path().join("base"));

    // the same build: nothing to do, exit 0
    let again = build(&repo().join("flake-free-examples/five-vps-saas"), &store, &tmp.path().join("again"));
    let (code, plan) = diff(&base, &again);
    assert_eq!(code, 0, "{plan}");
    assert_eq!(plan["changes"], false);

    for e in EDITS {
        let new = build(&edited(tmp.path(), e), &store, &tmp.path().join(format!("r-{}", e.name)));
        let (code, plan) = diff(&base, &new);
        assert_eq!(code, 2, "{}: changes exit 2", e.name);
        assert_eq!(kiln_sets(&plan), (set(e.create), set(e.replace), set(&[])), "{}: {plan:#}", e.name);
        match e.name {
            "image" => {
                let s = &plan["services"][0];
                assert_eq!(s["service"], "app");
                assert!(s["image"][0].as_str().unwrap().contains("1.4.2") && s["image"][1].as_str().unwrap().contains("1.4.3"), "{s}");
                let cause = plan["hosts"][0]["causes"][0].as_str().unwrap();
                assert!(cause.contains("service app changed (services.toml)"), "{cause}");
            }
            "option" => {
                let h = &plan["hosts"][0];
                assert!(h["causes"][0].as_str().unwrap().contains("option maxmemory"), "{h}");
                assert!(h["artifacts"].as_array().unwrap().iter().any(|a| a == "files/valkey/valkey.conf"), "{h}");
                assert!(h["data"].as_str().unwrap().contains("kept and re-attached"), "cache's volume survives: {h}");
            }
            "route" => {
                assert_eq!(names(&plan["routes"]["added"]), set(&["status.example.com → grafana.http via caddy on edge behind authentik"]));
                assert_eq!(names(&plan["dns"]["added"]), set(&["status.example.com → edge (cloudflare zone example.com)"]));
            }
            "secret" => {
                assert_eq!(names(&plan["secrets"]["removed"]), set(&["postgres_admin_password"]), "{plan:#}");
                assert!(plan["secrets"]["added"].as_array().unwrap().is_empty());
            }
            "waiver" => assert_eq!(names(&plan["waivers"]["added"]), set(&["unpinned-image for service app"])),
            "host-added" => {
                assert!(names(&plan["firewall"]["added"]).iter().any(|r| r.starts_with("worker 22/tcp")), "{plan:#}");
            }
            _ => {}
        }
        // the reverse edit: whatever was created is destroyed
        if e.name == "host-added" {
            let (code, back) = diff(&new, &base);
            assert_eq!(code, 2);
            assert_eq!(kiln_sets(&back), (set(&[]), set(e.replace), set(&["worker"])), "{back:#}");
        }
    }

    // a store entry and a manifest file name builds as well as result links do
    let entry = std::fs::canonicalize(tmp.path().join("r-option")).unwrap();
    let (code, plan) = diff(&base.join("manifest.json"), &entry);
    assert_eq!(code, 2);
    assert_eq!(kiln_sets(&plan), (set(&[]), set(&["cache"]), set(&[])), "{plan:#}");

    // a missing build is an error (exit 1) naming it
    let out = run(kiln().arg("diff").arg(&base).arg(tmp.path().join("nothing")));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nothing"), "{}", text(&out.stderr));
    // human output: no colour into a pipe, the summary line
    let out = run(kiln().env_remove("NO_COLOR").arg("diff").arg(&base).arg(tmp.path().join("r-option")));
    let human = text(&out.stdout);
    assert!(!human.contains('\x1b'), "{human}");
    assert!(human.contains("-/+ cache (replace)") && human.contains("Plan: 0 to create, 1 to replace"), "{human}");
    // on a terminal (util-linux `script` gives it one): colour, unless NO_COLOR
    let on_tty = |no_color: Option<&str>| {
        let line = format!("'{}' diff '{}' '{}'", env!("CARGO_BIN_EXE_kiln"), base.display(), tmp.path().join("r-option").display());
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]).env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert!(on_tty(None).contains("\x1b[33m"), "colour on a terminal");
    assert!(!on_tty(Some("1")).contains('\x1b'), "NO_COLOR on a terminal");
}

fn tofu_check(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(repo().join("scripts/tofu-check")).arg(dir).args(args).output().expect("run scripts/tofu-check");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "tofu-check {args:?}:\n{all}");
    all
}

fn root_of(result: &Path, into: &Path) -> PathBuf {
    std::fs::create_dir_all(into).unwrap();
    std::fs::copy(result.join("tofu/main.tf.json"), into.join("main.tf.json")).unwrap();
    into.to_path_buf()
}

/// Terraform's plan of `result` against `state`: the hcloud_server names it (create, replace,
/// delete)s.
fn terraform_sets(result: &Path, state: &Path, work: &Path) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let dir = root_of(result, work);
    let plan = work.join("plan.json");
    tofu_check(&dir, &["--state", state.to_str().unwrap(), "--plan-out", plan.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(plan).unwrap()).unwrap();
    let (mut c, mut r, mut d) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for ch in v["resource_changes"].as_array().map(|a| a.as_slice()).unwrap_or_default() {
        let addr = ch["address"].as_str().unwrap();
        let Some(host) = addr.strip_prefix("hcloud_server.") else { continue };
        let actions: Vec<&str> = ch["change"]["actions"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        match (actions.contains(&"create"), actions.contains(&"delete")) {
            (true, true) => r.insert(host.to_string()),
            (true, false) => c.insert(host.to_string()),
            (false, true) => d.insert(host.to_string()),
            _ => false,
        };
    }
    (c, r, d)
}

#[test]
fn kiln_predicts_the_servers_terraform_replaces() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let base = build(&repo().join("flake-free-examples/five-vps-saas"), &store, &tmp.path().join("base"));
    let state = tmp.path().join("base.tfstate");
    tofu_check(&root_of(&base, &tmp.path().join("tf-base")), &["--apply", "--state", state.to_str().unwrap()]);
    let mut added = None;
    for e in EDITS {
        let new = build(&edited(tmp.path(), e), &store, &tmp.path().join(format!("r-{}", e.name)));
        let (_, plan) = diff(&base, &new);
        let tf = terraform_sets(&new, &state, &tmp.path().join(format!("tf-{}", e.name)));
        assert_eq!(kiln_sets(&plan), tf, "{}: kiln's (create, replace, destroy) against Terraform's", e.name);
        if e.name == "host-added" {
            added = Some(new);
        }
    }
    // a host removed: deploy the fleet with `worker`, then plan the fleet without it
    let with = added.unwrap();
    let state2 = tmp.path().join("with.tfstate");
    tofu_check(&root_of(&with, &tmp.path().join("tf-with")), &["--apply", "--state", state2.to_str().unwrap()]);
    let (_, plan) = diff(&with, &base);
    let tf = terraform_sets(&base, &state2, &tmp.path().join("tf-removed"));
    assert_eq!(kiln_sets(&plan), tf, "host removed: kiln's (create, replace, destroy) against Terraform's");
    assert!(tf.2.contains("worker"));
}

/// `kiln plan` with `--store` and `--state`: (exit code, stdout, stderr).
fn plan(sys: &Path, store: &Path, state: &Path) -> (i32, String, String) {
    let out = run(kiln().arg("plan").arg(sys).arg("--store").arg(store).arg("--state").arg(state).arg("--json"));
    (out.status.code().unwrap(), text(&out.stdout), text(&out.stderr))
}

fn add_generation(result: &Path, store: &Path, state: &Path) {
    let out = run(kiln().arg("generations").arg("add").arg(result).arg("--store").arg(store).arg("--state").arg(state));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn plan_compares_with_the_last_generation_and_refuses_bad_state() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let state = tmp.path().join("state");
    let five = repo().join("flake-free-examples/five-vps-saas");

    // nothing deployed: every host is created
    let (code, out, err) = plan(&five, &store, &state);
    assert_eq!(code, 2, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(names(&v["create"]), set(&["app", "cache", "db", "edge", "identity"]));
    assert!(!state.exists() && !store.exists(), "plan writes nothing");

    let base = build(&five, &store, &tmp.path().join("base"));
    add_generation(&base, &store, &state);
    let (code, _, err) = plan(&five, &store, &state);
    assert_eq!(code, 0, "deployed: no changes\n{err}");
    let sys = edited(tmp.path(), &EDITS[0]);
    let (code, out, _) = plan(&sys, &store, &state);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(names(&v["replace"]), set(&["cache"]));

    let second = build(&sys, &store, &tmp.path().join("second"));
    add_generation(&second, &store, &state);
    let out = run(kiln().arg("generations").arg("--state").arg(&state).arg("--json"));
    let gens: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(gens.as_array().unwrap().len(), 2);
    assert_eq!(gens[1]["number"], 2);
    assert_eq!(gens[1]["hash"], manifest(&second)["hash"]);
    assert_eq!(gens[1]["hosts"]["cache"], manifest(&second)["hosts"]["cache"]["closure"]);
    assert_eq!(plan(&sys, &store, &state).0, 0, "the second generation is now the deployed one");

    // another system's state: an error naming the file, exit 1
    let other = repo().join("flake-free-examples/traefik-edge");
    let (code, _, err) = plan(&other, &store, &state);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("2.json") && err.contains("five-vps-saas"), "{err}");

    // a corrupt generation file
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(bad.join("generations")).unwrap();
    std::fs::write(bad.join("generations/1.json"), "{ \"number\": 1, ").unwrap();
    let (code, _, err) = plan(&five, &store, &bad);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("generations/1.json") && err.contains("not a valid generation"), "{err}");
    let out = run(kiln().arg("gc").arg("--store").arg(&store).arg("--state").arg(&bad));
    assert_eq!(out.status.code(), Some(1), "gc refuses a corrupt state");
    assert!(text(&out.stderr).contains("nothing was removed"), "{}", text(&out.stderr));

    // a generation whose entry is gone from the store
    let elsewhere = tmp.path().join("empty-store");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (code, _, err) = plan(&five, &elsewhere, &state);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("2.json") && err.contains("not in"), "{err}");
    let listing = std::fs::read_dir(state.join("generations")).unwrap().count();
    assert_eq!(listing, 2, "nothing changed in the state");
}

#[test]
fn gc_keeps_the_last_generations_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let state = tmp.path().join("state");
    let five = repo().join("flake-free-examples/five-vps-saas");
    let first = build(&five, &store, &tmp.path().join("first"));
    let first_entry = std::fs::canonicalize(&first).unwrap();
    add_generation(&first, &store, &state);
    let second = build(&edited(tmp.path(), &EDITS[0]), &store, &tmp.path().join("second"));
    let second_entry = std::fs::canonicalize(&second).unwrap();
    add_generation(&second, &store, &state);
    // drop both result links: only the generations hold the entries now
    std::fs::remove_file(&first).unwrap();
    std::fs::remove_file(&second).unwrap();

    let gc = |extra: &[&str]| {
        let out = run(kiln().arg("gc").arg("--store").arg(&store).arg("--state").arg(&state).arg("--json").args(extra));
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let r = gc(&[]);
    assert!(r["removed"].as_array().unwrap().is_empty(), "every generation is a root: {r}");
    assert!(first_entry.is_dir() && second_entry.is_dir());

    let r = gc(&["--keep", "1"]);
    let removed = names(&r["removed"]);
    assert!(removed.contains(first_entry.file_name().unwrap().to_str().unwrap()), "{r}");
    assert!(!first_entry.exists() && second_entry.is_dir());
    // the host entries the two generations share stay, the first's own cache entry goes
    assert_eq!(removed.len(), 2, "the first system entry and its own cache entry: {r}");
    let out = run(kiln().arg("gc").arg("--store").arg(&store).arg("--keep").arg("0"));
    assert_eq!(out.status.code(), Some(2), "--keep 0 is a usage error");
}

/// Terraform and the stand-in providers' CLI configuration (scripts/install-tofu-test-deps):
/// `kiln plan --tofu` runs Terraform itself, so the test gives it the stand-ins' mirror and a
/// dummy value for every variable of the root (the stand-ins call no API).
fn tofu_env(cmd: &mut Command, result: &Path) -> PathBuf {
    let terraform = common::cloud::terraform_env(cmd);
    let root: serde_json::Value = serde_json::from_slice(&std::fs::read(result.join("tofu/main.tf.json")).unwrap()).unwrap();
    // (a variable with a default, a write-only password's `_version`, needs none)
    for (name, v) in root["variable"].as_object().unwrap().iter().filter(|(_, v)| v.get("default").is_none()) {
        assert_eq!(v["type"], "string", "variable {name}");
        cmd.env(format!("TF_VAR_{name}"), format!("dummy-{name}-value"));
    }
    terraform
}

/// `kiln plan --tofu --json` with the stand-ins: (exit code, plan, stderr).
fn plan_tofu(sys: &Path, store: &Path, state: &Path, like: &Path, extra: &[(&str, &str)]) -> (i32, serde_json::Value, String) {
    let mut cmd = kiln();
    let terraform = tofu_env(&mut cmd, like);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let flag = format!("--tofu={}", terraform.display());
    let out = run(cmd.arg("plan").arg(sys).arg("--store").arg(store).arg("--state").arg(state).arg(flag).arg("--json"));
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap(), v, text(&out.stderr))
}

/// `terraform apply` in the working directory `kiln plan --tofu` left in `<state>/tofu/`.
fn apply_workdir(state: &Path, like: &Path, extra: &[(&str, &str)]) {
    let mut cmd = Command::new("true");
    let terraform = tofu_env(&mut cmd, like);
    let mut apply = Command::new(terraform);
    apply.args(["apply", "-auto-approve", "-input=false", "-no-color"]).current_dir(state.join("tofu"));
    for (k, v) in cmd.get_envs() {
        apply.env(k, v.unwrap());
    }
    for (k, v) in extra {
        apply.env(k, v);
    }
    let out = run(&mut apply);
    assert!(out.status.success(), "terraform apply:\n{}{}", text(&out.stdout), text(&out.stderr));
}

/// Every file under `dir` with its bytes: what "nothing changed" compares.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    if !dir.exists() {
        return Vec::new();
    }
    files(dir).into_iter().map(|(p, b, _)| (p, b)).collect()
}

fn addresses(v: &serde_json::Value) -> BTreeSet<String> {
    names(v)
}

#[test]
fn plan_tofu_prepares_the_working_directory_and_agrees_with_kiln() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let state = tmp.path().join("state");
    let five = repo().join("flake-free-examples/five-vps-saas");
    let base = build(&five, &store, &tmp.path().join("base"));

    // nothing deployed: OpenTofu creates every server and data volume kiln creates
    let (code, v, err) = plan_tofu(&five, &store, &state, &base, &[]);
    assert_eq!(code, 2, "{err}");
    let t = &v["tofu"];
    assert_eq!(t["changes"], true);
    for host in ["app", "cache", "db", "edge", "identity"] {
        assert!(addresses(&t["create"]).contains(&format!("hcloud_server.{host}")), "{t}");
    }
    assert!(addresses(&t["create"]).contains("hcloud_volume.db_data"), "{t}");
    // the working directory: the build's root, byte for byte, and a local backend in the state dir
    let work = state.join("tofu");
    assert_eq!(std::fs::read(work.join("main.tf.json")).unwrap(), std::fs::read(base.join("tofu/main.tf.json")).unwrap());
    let backend: serde_json::Value = serde_json::from_slice(&std::fs::read(work.join("kiln_backend.tf.json")).unwrap()).unwrap();
    assert_eq!(backend["terraform"]["backend"]["local"]["path"], "../terraform.tfstate");
    assert!(!work.join("kiln.tfplan").exists(), "the saved plan (it may hold variable values) is removed");
    let leftovers: Vec<String> =
        std::fs::read_dir(&state).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(leftovers, ["tofu"], "no staging directory left behind");

    // applied and recorded: both plans are empty, exit 0
    let lock = read(&work.join(".terraform.lock.hcl"));
    apply_workdir(&state, &base, &[]);
    assert!(state.join("terraform.tfstate").is_file(), "the local state lives in the state directory");
    add_generation(&base, &store, &state);
    let (code, v, err) = plan_tofu(&five, &store, &state, &base, &[]);
    assert_eq!(code, 0, "{err}\n{v:#}");
    assert_eq!(v["tofu"]["changes"], false);
    assert_eq!(read(&work.join(".terraform.lock.hcl")), lock, "the provider lock file is carried over");

    // a module option on the stateful `cache`: kiln and OpenTofu replace its server, and
    // neither touches its volume
    let sys = edited(tmp.path(), &EDITS[0]);
    let (code, v, err) = plan_tofu(&sys, &store, &state, &base, &[]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(names(&v["replace"]), set(&["cache"]));
    let t = &v["tofu"];
    assert!(addresses(&t["replace"]).contains("hcloud_server.cache"), "{t}");
    let touched: Vec<String> = ["create", "replace", "update", "destroy"]
        .iter()
        .flat_map(|k| addresses(&t[*k]))
        .filter(|a| a.starts_with("hcloud_volume.") || a.starts_with("hcloud_server.") && a != "hcloud_server.cache")
        .collect();
    assert!(touched.is_empty(), "only cache's server changes, no volume: {touched:?}");

    // a corrupt state file: exit 1 naming it, nothing in the state directory changed
    std::fs::write(state.join("terraform.tfstate"), "{ \"version\": 4, \"serial\": ").unwrap();
    let before = snapshot(&state);
    let (code, _, err) = plan_tofu(&sys, &store, &state, &base, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&state.join("terraform.tfstate").display().to_string()) && err.contains("nothing was changed"), "{err}");
    assert_eq!(snapshot(&state), before);
}

#[test]
fn an_unreachable_state_backend_is_exit_1_naming_its_url_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    // a port nothing listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sys = tmp.path().join("sys");
    copy_tree(&repo().join("flake-free-examples/five-vps-saas"), &sys);
    let toml = sys.join("system.toml");
    let deploy = format!(
        "\n[deploy]\nstate = \"s3://kiln-state/five/prod.tfstate\"\nstate_region = \"eu-central-1\"\nstate_endpoint = \"http://127.0.0.1:{port}\"\n"
    );
    std::fs::write(&toml, format!("{}{deploy}", read(&toml))).unwrap();
    let base = build(&sys, &store, &tmp.path().join("base"));
    // a state directory with a generation and an earlier working directory in it
    let state = tmp.path().join("state");
    add_generation(&base, &store, &state);
    std::fs::create_dir_all(state.join("tofu")).unwrap();
    std::fs::write(state.join("tofu/main.tf.json"), "{}").unwrap();
    let before = snapshot(&state);

    let secret = "kiln-test-secret-Zq8w1";
    let (code, _, err) =
        plan_tofu(&sys, &store, &state, &base, &[("AWS_ACCESS_KEY_ID", "AKIAKILNTEST"), ("AWS_SECRET_ACCESS_KEY", secret)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("s3://kiln-state/five/prod.tfstate") && err.contains(&format!("http://127.0.0.1:{port}")), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(!err.contains(secret) && !err.contains("dummy-hcloud_token-value"), "no credential in the message: {err}");
    assert_eq!(snapshot(&state), before, "the state directory is as it was");
}

/// The test's S3 server (s3s-fs, scripts/test-servers), stopped when dropped.
struct S3 {
    dir: tempfile::TempDir,
    info: serde_json::Value,
}

impl S3 {
    fn start() -> S3 {
        let dir = tempfile::tempdir().unwrap();
        let out = run(Command::new(repo().join("scripts/test-servers"))
            .arg("start")
            .arg(dir.path())
            .arg("--watch-pid")
            .arg(std::process::id().to_string())
            .stdin(std::process::Stdio::null()));
        assert!(out.status.success(), "test servers (scripts/install-push-test-deps):\n{}", text(&out.stderr));
        let info: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("servers.json")).unwrap()).unwrap();
        S3 { info: info["s3"].clone(), dir }
    }
    fn get(&self, k: &str) -> String {
        self.info[k].as_str().unwrap().to_string()
    }
    /// One signed request through scripts/test-servers: its status line.
    fn request(&self, method: &str, key: &str, extra: &[&str]) -> String {
        let out = run(Command::new(repo().join("scripts/test-servers")).arg("s3").arg(self.dir.path()).arg(method).arg(key).args(extra));
        text(&out.stdout).lines().next().unwrap_or_default().to_string()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/test-servers")).arg("stop").arg(self.dir.path()).output();
    }
}

/// Terraform's S3 backend against s3s-fs (which checks SigV4 and honours `If-None-Match: *`,
/// the conditional write S3-native locking relies on): the state is written to the bucket,
/// nothing to the state directory, and a lock held by someone else stops the plan.
#[test]
fn an_s3_state_backend_keeps_the_state_in_the_bucket_and_locks_it() {
    let s3 = S3::start();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let sys = tmp.path().join("sys");
    copy_tree(&repo().join("flake-free-examples/five-vps-saas"), &sys);
    let toml = sys.join("system.toml");
    let deploy = format!(
        "\n[deploy]\nstate = \"s3://{}/five/prod.tfstate\"\nstate_region = \"{}\"\nstate_endpoint = \"{}\"\n",
        s3.get("bucket"),
        s3.get("region"),
        s3.get("endpoint")
    );
    std::fs::write(&toml, format!("{}{deploy}", read(&toml))).unwrap();
    let base = build(&sys, &store, &tmp.path().join("base"));
    let state = tmp.path().join("state");
    let (ak, sk) = (s3.get("access_key"), s3.get("secret_key"));
    let creds = [("AWS_ACCESS_KEY_ID", ak.as_str()), ("AWS_SECRET_ACCESS_KEY", sk.as_str())];

    let (code, v, err) = plan_tofu(&sys, &store, &state, &base, &creds);
    assert_eq!(code, 2, "{err}");
    assert!(addresses(&v["tofu"]["create"]).contains("hcloud_server.db"), "{v:#}");
    let backend = read(&state.join("tofu/kiln_backend.tf.json"));
    assert!(backend.contains("\"use_lockfile\": true") && !backend.contains(&sk) && !backend.contains(&ak), "{backend}");
    apply_workdir(&state, &base, &creds);
    let object = PathBuf::from(s3.get("root")).join("five/prod.tfstate");
    assert!(object.is_file(), "the state is in the bucket");
    assert!(!state.join("terraform.tfstate").exists(), "and not in the state directory");
    let (code, v, err) = plan_tofu(&sys, &store, &state, &base, &creds);
    assert_eq!(v["tofu"]["changes"], false, "{err}\n{v:#}");
    assert_eq!(code, 2, "kiln still plans: no generation is recorded");

    // someone else holds the lock: the plan stops, exit 1, the working directory as it was
    assert_eq!(s3.request("PUT", "five/prod.tfstate.tflock", &["--data", "{\"ID\":\"other\"}", "--header", "If-None-Match:*"]), "200");
    let before = snapshot(&state);
    let (code, _, err) = plan_tofu(&sys, &store, &state, &base, &creds);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Error acquiring the state lock"), "{err}");
    assert_eq!(snapshot(&state), before);
}

/// The server resource names of a build's OpenTofu root: the hosts OpenTofu creates (an
/// `existing` host has none).
fn servers(result: &Path) -> BTreeSet<String> {
    let root: serde_json::Value = serde_json::from_slice(&std::fs::read(result.join("tofu/main.tf.json")).unwrap()).unwrap();
    ["hcloud_server", "digitalocean_droplet", "scaleway_instance_server"]
        .iter()
        .flat_map(|t| root["resource"][*t].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default())
        .collect()
}

/// OpenTofu's (create, replace, destroy) servers, by host name.
fn tofu_server_sets(t: &serde_json::Value) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let hosts = |k: &str| -> BTreeSet<String> {
        addresses(&t[k])
            .into_iter()
            .filter_map(|a| {
                ["hcloud_server.", "digitalocean_droplet.", "scaleway_instance_server."]
                    .iter()
                    .find_map(|p| a.strip_prefix(p).map(str::to_string))
            })
            .collect()
    };
    (hosts("create"), hosts("replace"), hosts("destroy"))
}

/// Every example through `kiln plan --tofu` with the stand-in providers: with nothing deployed,
/// kiln creates exactly the servers OpenTofu creates; once applied and recorded, both plans are
/// empty; an admin added (a fleet-wide change) replaces the same servers in both. Hosts of kind
/// `existing` have no server in OpenTofu, so kiln's sets are compared on the servers alone.
#[test]
fn kiln_and_opentofu_agree_on_every_example() {
    for example in examples() {
        let name = example.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = tempfile::tempdir().unwrap();
        let (store, state) = (tmp.path().join("store"), tmp.path().join("state"));
        let base = build(&example, &store, &tmp.path().join("base"));
        let servers = servers(&base);
        let on_servers = |s: BTreeSet<String>| s.intersection(&servers).cloned().collect::<BTreeSet<_>>();

        let (code, v, err) = plan_tofu(&example, &store, &state, &base, &[]);
        assert_eq!(code, 2, "{name}: {err}");
        assert_eq!(tofu_server_sets(&v["tofu"]), (servers.clone(), set(&[]), set(&[])), "{name}: OpenTofu creates every server");
        assert_eq!(on_servers(names(&v["create"])), servers, "{name}: kiln creates every server");

        apply_workdir(&state, &base, &[]);
        add_generation(&base, &store, &state);
        let (code, v, err) = plan_tofu(&example, &store, &state, &base, &[]);
        assert_eq!((code, &v["tofu"]["changes"]), (0, &serde_json::Value::Bool(false)), "{name}: applied and recorded\n{err}\n{v:#}");

        let sys = tmp.path().join("sys");
        copy_tree(&example, &sys);
        let toml = sys.join("system.toml");
        let admin = "\n[admins.auditor]\nkeys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKey000000000000000000000000000000 auditor@laptop\"]\nsources = [\"198.51.100.0/24\"]\n";
        std::fs::write(&toml, format!("{}{admin}", read(&toml))).unwrap();
        let (code, v, err) = plan_tofu(&sys, &store, &state, &base, &[]);
        assert_eq!(code, 2, "{name}: {err}");
        let (c, r, d) = kiln_sets(&v);
        let kiln = (on_servers(c), on_servers(r), on_servers(d));
        assert_eq!(kiln, tofu_server_sets(&v["tofu"]), "{name}: kiln's (create, replace, destroy) servers against OpenTofu's");
        assert_eq!(kiln.1, servers, "{name}: an admin reaches every server");
    }
}
