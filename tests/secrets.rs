//! Secrets never reach the store: every example is built with its test-key SOPS files (so
//! kiln decrypts and authenticates them), then every value is searched for in every store
//! file, in `kiln show` and in what the build printed. A tampered file fails the build.

mod common;

use std::collections::BTreeSet;

use common::*;
use kiln::pipeline::{Options, Outcome, compile};

fn identity() -> std::path::PathBuf {
    repo().join("tests/fixtures/keys/examples.agekey")
}

/// Every secret value of an example, decrypted with the test key.
fn values(example: &std::path::Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(identity()).unwrap();
    let opts = Options { identity: Some(text.clone()), ..Options::default() };
    let c = match compile(example, &opts).unwrap() {
        Outcome::Ok(c) => c,
        Outcome::Failed(f) => panic!("{}: {:?}", example.display(), f.diagnostics),
    };
    assert!(c.warnings.is_empty(), "{}: every secret file exists and authenticates: {:?}", example.display(), c.warnings);
    let ids = kiln::sops::load_identities(&text).unwrap();
    let names: BTreeSet<String> = c.system.secrets.keys().cloned().collect();
    let v = kiln::secrets::values(example, &c.system, &names, &ids).unwrap();
    v.into_values().collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_secret_value_reaches_the_store_show_or_the_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut searched = 0;
    let mut env_files = 0;
    let mut leaks = Vec::new();
    for ex in examples() {
        let name = ex.file_name().unwrap().to_string_lossy().into_owned();
        let secrets = values(&ex);
        assert!(!secrets.is_empty(), "{name} declares no secrets");
        let store = tmp.path().join("store");
        let out = run(kiln()
            .arg("--identity")
            .arg(identity())
            .arg("build")
            .arg(&ex)
            .arg("--store")
            .arg(&store)
            .arg("--out-link")
            .arg(tmp.path().join(&name)));
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let show = run(kiln().arg("--identity").arg(identity()).arg("show").arg(&ex));
        let show_json = run(kiln().arg("--identity").arg(identity()).arg("show").arg("--json").arg(&ex));
        let mut haystacks: Vec<(String, Vec<u8>)> = vec![
            ("build output".into(), [out.stdout, out.stderr].concat()),
            ("kiln show".into(), show.stdout),
            ("kiln show --json".into(), show_json.stdout),
        ];
        for entry in walkdir::WalkDir::new(&store).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()) {
            if entry.file_name() == "compose.yaml" && contains(&std::fs::read(entry.path()).unwrap(), b"env_file:") {
                env_files += 1;
            }
            haystacks.push((entry.path().display().to_string(), std::fs::read(entry.path()).unwrap()));
        }
        for (where_, bytes) in &haystacks {
            for v in &secrets {
                searched += 1;
                if contains(bytes, v) {
                    leaks.push(format!("{name}: a secret value is in {where_}"));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
    // A secret fed to a container's environment (jacker's bouncer key) is among those searched:
    // the Compose file names its env file and holds no value.
    assert!(env_files > 0, "no example passes a secret as an environment variable");
    assert!(searched > 100, "searched only {searched} (file, value) pairs");
}

#[test]
fn a_tampered_secrets_file_fails_the_build() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    copy_tree(&repo().join("flake-free-examples/five-vps-saas"), &sys);
    let file = sys.join("secrets.sops.yaml");
    let sops_text = std::fs::read_to_string(&file).unwrap();
    // Swap the encrypted values of two keys: each still decrypts, the MAC no longer matches.
    let lines: Vec<&str> = sops_text.lines().collect();
    let (a, b) = (lines[0].split_once(": ").unwrap(), lines[1].split_once(": ").unwrap());
    let swapped = sops_text.replacen(lines[0], &format!("{}: {}", a.0, b.1), 1).replacen(lines[1], &format!("{}: {}", b.0, a.1), 1);
    std::fs::write(&file, swapped).unwrap();
    let out = run(kiln().arg("--identity").arg(identity()).arg("check").arg(&sys));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("error[unauthenticated-secrets]"), "{}", text(&out.stderr));
    // Without an identity the keys are still listed, so the same check passes: nothing to verify.
    let out = run(kiln().arg("check").arg(&sys));
    assert!(out.status.success(), "{}", text(&out.stderr));
}
