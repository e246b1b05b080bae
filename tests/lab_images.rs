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
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("result"));
    // the seed pins its own application by digest, which the lab copy drops (tests/lab/mod.rs);
    // db's services pin tags only
    let (tar, compose) = common::lab_images(&result, "db", tmp.path());
    let a = archive(&tar);

    let refs: Vec<&str> =
        a.manifest.as_array().unwrap().iter().flat_map(|m| m["RepoTags"].as_array().unwrap()).filter_map(|r| r.as_str()).collect();
    let pinned: std::collections::BTreeSet<&str> =
        compose["services"].as_object().unwrap().values().filter_map(|s| s["image"].as_str()).collect();
    assert_eq!(refs.iter().copied().collect::<std::collections::BTreeSet<_>>(), pinned, "one stand-in per pinned reference");

    let layers: Vec<&str> = a.manifest[0]["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(layers.len(), 2, "the base and the tools");
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
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&repo().join("flake-free-examples/postx-hetzner"), &tmp.path().join("store"), &tmp.path().join("result"));
    let (tar, _) = common::lab_images(&result, "client-alpha", tmp.path());
    let a = archive(&tar);
    for image in a.manifest.as_array().unwrap() {
        let reference = image["RepoTags"][0].as_str().unwrap();
        let layers = image["Layers"].as_array().unwrap();
        if !reference.starts_with("docker.io/pretix/") {
            assert_eq!(layers.len(), 2, "{reference}: the shared layers only");
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
