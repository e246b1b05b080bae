//! Numbers that mean nothing in a module's `[resources]` (NaN or negative CPUs, zero memory)
//! are refused where the module file says them, like the same keys of a service.

mod common;

use common::*;

#[test]
fn module_resources_refuse_nonsense() {
    let tmp = tempfile::tempdir().unwrap();
    let modules = tmp.path().join("modules");
    copy_tree(&repo().join("tests/fixtures/modules"), &modules);
    let web = modules.join("web/module.toml");
    let sys = repo().join("tests/fixtures/diagnostics/unknown-key");
    for (resources, bad) in [
        ("cpus = nan", "NaN is not a CPU count"),
        ("cpus = -inf", "-inf is not a CPU count"),
        ("cpus = 0", "0 is not a CPU count"),
        ("memory = \"0\"", "`0` is zero bytes"),
        ("memory = \"99999999999TiB\"", "is too large"),
    ] {
        let original = std::fs::read_to_string(repo().join("tests/fixtures/modules/web/module.toml")).unwrap();
        let module = format!("{original}\n[resources]\n{resources}\n");
        std::fs::write(&web, &module).unwrap();
        let out = run(kiln().arg("--modules").arg(&modules).arg("check").arg(&sys));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{resources} accepted:\n{err}");
        let line = module.lines().count();
        assert!(err.contains(bad) && err.contains(&format!("web/module.toml:{line}:")), "{resources}: not reported at its line:\n{err}");
    }
}
