//! The command line as a user meets it: exit codes, stdout for data and stderr for talk, the
//! store and its link, JSON outputs, module overrides, closure hashes.

mod common;

use std::path::Path;

use common::*;

fn props_system(dir: &Path) -> std::path::PathBuf {
    let sys = dir.join("sys");
    copy_tree(&repo().join("tests/fixtures/props"), &sys);
    sys
}

fn fixture_modules() -> std::path::PathBuf {
    repo().join("tests/fixtures/modules")
}

#[test]
fn exit_codes_separate_bad_input_from_usage_and_io() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(kiln().arg("check").arg(tmp.path().join("nowhere")));
    assert_eq!(out.status.code(), Some(2), "missing path is an IO failure");
    assert!(text(&out.stderr).contains("cannot read"), "{}", text(&out.stderr));

    let out = run(kiln().arg("frobnicate"));
    assert_eq!(out.status.code(), Some(2), "usage error");

    let out = run(kiln().arg("--modules").arg(fixture_modules()).arg("check").arg(repo().join("tests/fixtures/diagnostics/cycle")));
    assert_eq!(out.status.code(), Some(1), "bad input");
    assert!(text(&out.stderr).contains("dependency cycle"));
}

#[test]
fn a_failed_build_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let out = run(kiln()
        .current_dir(tmp.path())
        .arg("--modules")
        .arg(fixture_modules())
        .arg("build")
        .arg(repo().join("tests/fixtures/diagnostics/wrong-types"))
        .arg("--store")
        .arg(&store));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(!tmp.path().join("result").exists(), "no result link after a failed build");
    assert!(!store.exists() || std::fs::read_dir(&store).unwrap().next().is_none(), "no store entry after a failed build");
}

#[test]
fn build_writes_read_only_entries_once_and_links_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = props_system(tmp.path());
    let store = tmp.path().join("store");
    let build =
        || run(kiln().current_dir(tmp.path()).env("KILN_STORE", &store).arg("--modules").arg(fixture_modules()).arg("build").arg(&sys));
    let out = build();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let entry = Path::new(printed.trim());
    assert!(entry.starts_with(std::fs::canonicalize(&store).unwrap()), "KILN_STORE is honoured: {printed}");
    assert_eq!(std::fs::canonicalize(tmp.path().join("result")).unwrap(), std::fs::canonicalize(entry).unwrap());
    let listing = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    let before = listing(&store);
    assert!(before.iter().all(|n| !n.starts_with(".tmp")), "no temporary leftovers: {before:?}");
    // `.lock` is the store's lock file (builds clean stale staging directories under it) and
    // `.roots` holds the gc roots (the `result` link just made).
    assert_eq!(before.iter().filter(|n| !n.starts_with('.')).count(), 4, "three hosts and the system: {before:?}");
    assert!(before.iter().any(|n| n == ".roots"), "the result link is registered as a root: {before:?}");
    for (rel, _, mode) in files(entry) {
        assert_eq!(mode & 0o222, 0, "{rel} is writable in the store");
    }
    let out = build();
    assert!(out.status.success());
    assert_eq!(listing(&store), before, "a second build of the same system writes nothing new");
}

#[test]
fn json_outputs_are_data_on_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = props_system(tmp.path());
    let out = run(kiln()
        .current_dir(tmp.path())
        .arg("--modules")
        .arg(fixture_modules())
        .arg("build")
        .arg(&sys)
        .arg("--json")
        .arg("--out-link")
        .arg(tmp.path().join("out/link")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    let m = manifest(&tmp.path().join("out/link"));
    assert_eq!(v["hash"], m["hash"]);
    assert_eq!(v["hosts"]["app"], m["hosts"]["app"]["closure"]);

    let out = run(kiln().arg("--modules").arg(fixture_modules()).arg("show").arg(&sys).arg("--json"));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["start_order"], serde_json::json!(["db", "proxy", "web"]));
    let data_fw = v["hosts"]["data"]["firewall"].as_array().unwrap();
    let pg = data_fw.iter().find(|r| r["port"] == 5432).expect("db port open on data");
    assert_eq!(pg["sources"], serde_json::json!(["10.0.0.3/32"]), "only from the app host");
    assert!(v["hosts"]["app"]["firewall"].as_array().unwrap().iter().all(|r| r["port"] != 5432));

    let out = run(kiln().arg("--modules").arg(fixture_modules()).arg("show").arg(&sys));
    let s = text(&out.stdout);
    assert!(s.contains("start order\n  db → proxy → web"), "{s}");
    assert!(s.contains("5432/tcp from 10.0.0.3/32"), "{s}");
}

#[test]
fn a_closure_changes_exactly_when_its_host_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = props_system(tmp.path());
    let closures = |sys: &Path| {
        let out = run(kiln().current_dir(tmp.path()).arg("--modules").arg(fixture_modules()).arg("build").arg(sys).arg("--json"));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["hosts"].clone()
    };
    let a = closures(&sys);
    let f = sys.join("system.toml");
    let text0 = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, text0.replace("hello from props", "hello again")).unwrap();
    let b = closures(&sys);
    assert_ne!(a["app"], b["app"], "the app host changed");
    assert_eq!(a["edge"], b["edge"]);
    assert_eq!(a["data"], b["data"]);
}

#[test]
fn a_user_module_overrides_a_builtin_of_the_same_name() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = props_system(tmp.path());
    // the fixture's `web` module, renamed to shadow the built-in `caddy`
    let mods = tmp.path().join("mods");
    copy_tree(&fixture_modules(), &mods);
    let caddy = mods.join("caddy");
    copy_tree(&mods.join("proxy"), &caddy);
    let m = std::fs::read_to_string(caddy.join("module.toml")).unwrap();
    std::fs::write(caddy.join("module.toml"), m.replace("name = \"proxy\"", "name = \"caddy\"").replace("2.6.2", "9.9.9-override"))
        .unwrap();
    let f = sys.join("system.toml");
    std::fs::write(&f, std::fs::read_to_string(&f).unwrap().replace("module = \"proxy\"", "module = \"caddy\"")).unwrap();
    let out = run(kiln().arg("--modules").arg(&mods).arg("show").arg(&sys).arg("--json"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["services"]["proxy"]["version"], "9.9.9-override", "the user's module wins");
    let out = run(kiln().current_dir(tmp.path()).arg("--modules").arg(&mods).arg("build").arg(&sys));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = std::fs::read_to_string(tmp.path().join("result/hosts/edge/provision.sh")).unwrap();
    assert!(script.contains("systemctl enable --now caddy.service"), "the override is used");
}

#[test]
fn every_rule_id_a_diagnostic_uses_is_explained() {
    let out = run(kiln().arg("explain"));
    assert!(out.status.success());
    let list = text(&out.stdout);
    let ids: Vec<&str> = list.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    // every code in the source that is not an `E0000` number is a rule id
    let mut used = Vec::new();
    for entry in walkdir::WalkDir::new(common::repo().join("src")) {
        let entry = entry.unwrap();
        if entry.path().extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let src = std::fs::read_to_string(entry.path()).unwrap();
        for part in src.split("Diagnostic::").skip(1).chain(src.split("    id: ").skip(1)) {
            let Some(code) = part.split('"').nth(1) else { continue };
            let is_call = part.starts_with("error(\"") || part.starts_with("warning(\"") || part.starts_with('"');
            if is_call && !code.starts_with('E') && !code.is_empty() {
                used.push(code.to_string());
            }
        }
    }
    used.sort();
    used.dedup();
    assert!(used.len() >= 20, "{used:?}");
    for id in &used {
        let id = id.as_str();
        assert!(ids.contains(&id), "`kiln explain` does not list {id}:\n{list}");
        let out = run(kiln().arg("explain").arg(id));
        assert!(out.status.success());
        assert!(text(&out.stdout).len() > 100, "{id} has no real explanation");
    }
    let out = run(kiln().arg("explain").arg("port-conflicts"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("did you mean `port-conflict`?"));
}
