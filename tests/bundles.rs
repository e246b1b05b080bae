//! Host bundles are deterministic archives of exactly the payload (checked with GNU tar and
//! sha256sum), and hosts over their provider's user-data limit either fail with the numbers
//! or, with a store URL, boot a small stage-0 user-data that the real judges accept.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn a_bundle_unpacks_to_exactly_the_payload() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("result"));
    let m = manifest(&result);
    for host in m["hosts"].as_object().unwrap().keys() {
        let dir = result.join("hosts").join(host);
        let bundle = dir.join("bundle.tar.gz");
        let bytes = std::fs::read(&bundle).unwrap();
        // gzip header: no file name (FLG = 0), mtime 0
        assert_eq!(&bytes[..4], &[0x1f, 0x8b, 8, 0], "{host}: gzip header carries a name or flags");
        assert_eq!(&bytes[4..8], &[0, 0, 0, 0], "{host}: gzip header carries a time");
        let out = tmp.path().join("unpacked").join(host);
        std::fs::create_dir_all(&out).unwrap();
        let st = Command::new("tar").arg("-xzf").arg(&bundle).arg("-C").arg(&out).status().unwrap();
        assert!(st.success());
        let listing = Command::new("tar").args(["--numeric-owner", "-tvzf"]).arg(&bundle).output().unwrap();
        let listing = text(&listing.stdout);
        for line in listing.lines() {
            assert!(line.contains(" 0/0 "), "{host}: entry not owned by 0/0: {line}");
            assert!(line.contains("2023-11-14") || line.contains("1970-01-01"), "{host}: unexpected mtime: {line}");
        }
        let names: Vec<&str> = listing.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
        let (dirs, files): (Vec<&str>, Vec<&str>) = names.iter().partition(|n| n.ends_with('/'));
        assert!(dirs.windows(2).all(|w| w[0] <= w[1]) && files.windows(2).all(|w| w[0] <= w[1]), "{host}: entries not sorted");
        // exactly the payload: every file the host installs, and SHA256SUMS verifies inside
        let root = out.join("kiln");
        let unpacked = files_in(&root);
        let payload: Vec<String> = m["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["host"] == host.as_str())
            .map(|a| a["path"].as_str().unwrap().strip_prefix(&format!("hosts/{host}/")).unwrap().to_string())
            .filter(|p| p != "user-data" && p != "bundle.tar.gz")
            .collect();
        let mut payload_sorted = payload.clone();
        payload_sorted.sort();
        assert_eq!(unpacked, payload_sorted, "{host}");
        for p in &payload {
            assert_eq!(std::fs::read(root.join(p)).unwrap(), std::fs::read(dir.join(p)).unwrap(), "{host}/{p}");
        }
        let check = Command::new("sha256sum").args(["--check", "--strict", "--quiet", "SHA256SUMS"]).current_dir(&root).status().unwrap();
        assert!(check.success(), "{host}: SHA256SUMS does not verify inside the bundle");
    }
}

fn files_in(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn source_date_epoch_sets_the_mtime_of_bundle_entries_only() {
    let tmp = tempfile::tempdir().unwrap();
    let ex = repo().join("flake-free-examples/five-vps-saas");
    let json = |epoch: &str| {
        let out = run(kiln().current_dir(tmp.path()).env("SOURCE_DATE_EPOCH", epoch).arg("build").arg(&ex).arg("--json"));
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let a = json("0");
    let b = json("1700000000");
    assert_eq!(a["hosts"], b["hosts"], "closures do not depend on the bundle mtime");
    assert_ne!(a["hash"], b["hash"], "the bundles differ");
}

/// A system whose one host carries a config file too big for Hetzner's 32 KiB user-data.
fn big_system(dir: &Path, store: Option<&str>) -> std::path::PathBuf {
    let mods = dir.join("mods/big");
    std::fs::create_dir_all(&mods).unwrap();
    std::fs::write(
        mods.join("module.toml"),
        "[module]\nname = \"big\"\nversion = \"1.0.0\"\nsummary = \"a big config file\"\nkind = \"container\"\n\n[container]\nimage = \"docker.io/library/nginx:1.27.3\"\n\n[files.\"big.conf\"]\ntemplate = \"big.conf.j2\"\ntarget = \"/etc/big.conf\"\n",
    )
    .unwrap();
    std::fs::write(mods.join("big.conf.j2"), incompressible_text(60_000)).unwrap();
    let sys = dir.join("sys");
    std::fs::create_dir_all(&sys).unwrap();
    let store_line = store.map(|s| format!("store = \"{s}\"\n")).unwrap_or_default();
    std::fs::write(
        sys.join("system.toml"),
        format!("[system]\nname = \"big\"\n{store_line}\n[providers.hetzner]\nkind = \"hetzner\"\n\n[hosts.fat]\nprovider = \"hetzner\"\nimage = \"debian-12\"\npublic = true\n\n[services.big]\nmodule = \"big\"\nhost = \"fat\"\n"),
    )
    .unwrap();
    sys
}

#[test]
fn user_data_over_the_limit_is_an_error_with_the_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = big_system(tmp.path(), None);
    let out = run(kiln().arg("--modules").arg(tmp.path().join("mods")).arg("build").arg(&sys).arg("--store").arg(tmp.path().join("st")));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("error[user-data-too-large]: the user-data of host `fat` is"), "{err}");
    assert!(err.contains("(the hetzner limit of 32768, less ") && err.contains(" for the enrolment part `kiln deploy` adds)"), "{err}");
    assert!(err.contains("largest: files/big/big.conf"), "{err}");
    assert!(err.contains("the user-data carries them gzip-compressed, and is still too large"), "{err}");
    assert!(err.contains("store = "), "the help names the way out: {err}");
}

#[test]
fn with_a_store_a_big_host_boots_through_stage_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = big_system(tmp.path(), Some("https://artifacts.example.com/kiln"));
    build_with_modules(&tmp.path().join("mods"), &sys, &tmp.path().join("st"), &tmp.path().join("result"));
    let host = tmp.path().join("result/hosts/fat");
    let ud = std::fs::read_to_string(host.join("user-data")).unwrap();
    assert!(ud.len() < 4096, "stage 0 is small: {} bytes", ud.len());
    use sha2::{Digest, Sha256};
    let sum = kiln::render::hex(&Sha256::digest(std::fs::read(host.join("bundle.tar.gz")).unwrap()));
    assert!(ud.contains(&format!("https://artifacts.example.com/kiln/objects/{sum}")), "{ud}");
    oracle("cloud-init", &host.join("user-data")).unwrap();
    let parsed = yaml_to_json(&host.join("user-data"));
    let script = parsed["write_files"][0]["content"].as_str().unwrap();
    let f = tmp.path().join("stage0.sh");
    std::fs::write(&f, script).unwrap();
    oracle("sh", &f).unwrap();
    assert!(script.contains(&format!("sum={sum}")));
}
