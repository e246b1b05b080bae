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
    // a secret reference: PgBouncer's userlist from another secret
    Edit {
        name: "secret",
        changes: &[("services.toml", "userlist = \"pgbouncer_userlist\"", "userlist = \"app_db_password\"")],
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
                assert_eq!(names(&plan["secrets"]["removed"]), set(&["pgbouncer_userlist"]), "{plan:#}");
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

    // a missing build is an error (exit 1) naming it
    let out = run(kiln().arg("diff").arg(&base).arg(tmp.path().join("nothing")));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nothing"), "{}", text(&out.stderr));
    // human output: no colour without a terminal, the summary line
    let out = run(kiln().arg("diff").arg(&base).arg(tmp.path().join("r-option")));
    let human = text(&out.stdout);
    assert!(!human.contains('\x1b'), "{human}");
    assert!(human.contains("-/+ cache (replace)") && human.contains("Plan: 0 to create, 1 to replace"), "{human}");
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
