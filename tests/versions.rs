//! Versions per host or group: `[services.X] version = "…"` replaces the tag of the module's
//! image (also from a template instance's `vars`), `image = "…"` replaces the whole reference.
//! The real `docker-compose config` reads the image the overridden service runs; only that
//! service's host changes; `kiln show` says who chose each image. Refusals (unpinned, a bad
//! reference, a native module) are located in tests/fixtures/diagnostics/version-unpinned and
//! image-overrides.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A template of one host and its `web` service, instantiated by [`system`].
const SITE: &str = r#"
[templates.site.hosts."h-{instance}"]
provider = "hetzner"
image = "debian-12"
public = true
group = "{group}"

[templates.site.services."web-{instance}"]
module = "web"
host = "h-{instance}"
"#;

/// Two sites from one template; `line` is added to the template's service.
fn system(dir: &Path, line: &str, canary: &str, prod: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        "{}{SITE}{line}\n\n[instances.canary]\ntemplate = \"site\"\nvars = {{ group = \"canary\"{canary} }}\n\n\
         [instances.prod]\ntemplate = \"site\"\nvars = {{ group = \"production\"{prod} }}\n",
        preamble("canary")
    );
    std::fs::write(dir.join("system.toml"), text).unwrap();
    dir.to_path_buf()
}

fn modules() -> PathBuf {
    repo().join("tests/fixtures/modules")
}

fn image(result: &Path, host: &str, service: &str) -> String {
    let c = compose_config(&result.join(format!("hosts/{host}/compose.yaml")));
    c["services"][service]["image"].as_str().unwrap_or_else(|| panic!("no image for {service}: {c}")).to_string()
}

fn closure(result: &Path, host: &str) -> String {
    manifest(result)["hosts"][host]["closure"].as_str().unwrap().to_string()
}

#[test]
fn an_instance_var_sets_the_canary_version_and_only_its_host_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let store = t.join("store");
    let base = system(&t.join("base"), "", "", "");
    let base = build_with_modules(&modules(), &base, &store, &t.join("r-base"));
    // the canary runs a newer release; production states the module's own pin
    let sys = system(&t.join("canary"), "version = \"{web_version}\"", ", web_version = \"1.27.4\"", ", web_version = \"1.27.3\"");
    let r = build_with_modules(&modules(), &sys, &store, &t.join("r"));

    assert_eq!(image(&base, "h-canary", "web-canary"), "docker.io/library/nginx:1.27.3");
    assert_eq!(image(&r, "h-canary", "web-canary"), "docker.io/library/nginx:1.27.4", "the instance's var reaches Compose");
    assert_eq!(image(&r, "h-prod", "web-prod"), "docker.io/library/nginx:1.27.3");
    assert_ne!(closure(&r, "h-canary"), closure(&base, "h-canary"), "the canary's closure changes");
    assert_eq!(closure(&r, "h-prod"), closure(&base, "h-prod"), "the module's own version changes nothing elsewhere");

    // `kiln show` says which image each service runs and who chose it
    let show_json = |dir: &Path| -> serde_json::Value {
        let out = run(kiln().arg("--modules").arg(modules()).args(["show", "--json"]).arg(dir));
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let show = show_json(&sys);
    assert_eq!(show["services"]["web-canary"]["image"], "docker.io/library/nginx:1.27.4");
    assert_eq!(show["services"]["web-canary"]["image_from"], "version");
    assert_eq!(show_json(&t.join("base"))["services"]["web-prod"]["image_from"], "module");
    let out = run(kiln().arg("--modules").arg(modules()).arg("show").arg(&sys));
    let shown = text(&out.stdout);
    assert!(shown.contains("web-canary on h-canary: docker.io/library/nginx:1.27.4 (module web 1.0.0)"), "{shown}");

    // SYSTEM.md's diagram names the release the canary runs
    let doc = std::fs::read_to_string(r.join("SYSTEM.md")).unwrap();
    assert!(doc.contains("runs docker.io/library/nginx:1.27.4"), "{doc}");
}

#[test]
fn image_replaces_the_whole_reference_and_version_drops_a_module_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let mirror = format!("registry.example.com/mirror/nginx:1.27.4@{digest}");
    let sys = system(
        &t.join("image"),
        "image = \"{web_image}\"",
        &format!(", web_image = \"{mirror}\""),
        ", web_image = \"docker.io/library/nginx:1.27.3\"",
    );
    let r = build_with_modules(&modules(), &sys, &t.join("store"), &t.join("r"));
    assert_eq!(image(&r, "h-canary", "web-canary"), mirror);

    // a module pinned by digest: `version` names another release, which the digest would
    // contradict (Docker pulls by the digest and ignores the tag), so the digest goes
    let mods = t.join("modules");
    copy_tree(&modules().join("web"), &mods.join("web"));
    let m = std::fs::read_to_string(mods.join("web/module.toml")).unwrap();
    let pinned = m.replace("\"docker.io/library/nginx:1.27.3\"", &format!("\"docker.io/library/nginx:1.27.3@{digest}\""));
    assert_ne!(m, pinned);
    std::fs::write(mods.join("web/module.toml"), pinned).unwrap();
    let sys = system(&t.join("digest"), "version = \"{web_version}\"", ", web_version = \"1.27.4\"", ", web_version = \"1.27.3\"");
    let mut cmd = kiln();
    cmd.arg("--modules").arg(&mods);
    let out = run(cmd.arg("build").arg(&sys).arg("--store").arg(t.join("store")).arg("--out-link").arg(t.join("r2")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(image(&t.join("r2"), "h-canary", "web-canary"), "docker.io/library/nginx:1.27.4");
    assert_eq!(image(&t.join("r2"), "h-prod", "web-prod"), "docker.io/library/nginx:1.27.3");
}

#[test]
fn unpinned_versions_are_refused_at_the_version_line_even_from_an_instance() {
    for bad in ["latest", "", "1", "v1"] {
        let tmp = tempfile::tempdir().unwrap();
        let sys = system(tmp.path(), "version = \"{web_version}\"", &format!(", web_version = \"{bad}\""), ", web_version = \"1.27.3\"");
        let out = run(kiln().arg("--modules").arg(modules()).arg("check").arg(&sys));
        assert_eq!(out.status.code(), Some(1), "`{bad}` accepted");
        let err = text(&out.stderr);
        assert!(err.contains("error[unpinned-image]"), "{bad}: {err}");
        assert!(err.contains("of service `web-canary` is not pinned"), "{bad}: {err}");
        assert!(!err.contains("web-prod"), "{bad}: {err}");
        // the template's `version` line, where the value came from
        assert!(err.contains("this version does not pin the image"), "{bad}: {err}");
        assert!(err.contains("version = \"{web_version}\""), "{bad}: {err}");
    }
}

#[test]
fn the_postx_canary_runs_a_newer_zitadel_than_production() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = repo().join("flake-free-examples/postx-hetzner");
    let out = run(kiln().args(["show", "--json"]).arg(&sys));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let show: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = show["services"].as_object().unwrap();
    let mut zitadel = 0;
    for (name, s) in services.iter().filter(|(_, s)| s["module"] == "zitadel") {
        let group = show["hosts"][s["host"].as_str().unwrap()]["group"].as_str().unwrap();
        let want = if group == "canary" { "ghcr.io/zitadel/zitadel:v4.17.3" } else { "ghcr.io/zitadel/zitadel:v4.17.1" };
        assert_eq!(s["image"], want, "{name} in group {group}");
        zitadel += 1;
    }
    assert_eq!(zitadel, 11);
    let r = build(&sys, &tmp.path().join("store"), &tmp.path().join("r"));
    assert_eq!(image(&r, "client-alpha", "zitadel-alpha"), "ghcr.io/zitadel/zitadel:v4.17.3");
    assert_eq!(image(&r, "client-beta", "zitadel-beta"), "ghcr.io/zitadel/zitadel:v4.17.1");
}
