//! Secrets as environment variables (`[container.env_secrets]`): the provisioner's
//! `env_secrets` step, run by dash in a temporary root, writes a 0600 env file from the
//! delivered secret, and the real `docker-compose config` reads the exact value back through
//! the Compose file's `env_file`; hostile values are refused or arrive byte for byte.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn compose_bin() -> std::path::PathBuf {
    let venv = repo().join(".venv-oracles/bin/docker-compose");
    if venv.is_file() { venv } else { "docker-compose".into() }
}

/// Runs `call` (an `env_secrets …` line) under dash with the provisioner's settings.
fn dash(call: &str) -> std::process::Output {
    let script = format!("set -eu\numask 022\nexport LC_ALL=C\n{}\n{call}\n", env_secrets_functions());
    run(Command::new("dash").arg("-c").arg(script))
}

/// The value of `var` in `service`'s environment as Compose reads it (its `config` output
/// writes every `$` as `$$`).
fn compose_env(compose: &Path, service: &str, var: &str) -> Option<String> {
    let out = run(Command::new(compose_bin()).arg("-f").arg(compose).args(["config", "--format", "json"]));
    assert!(out.status.success(), "docker-compose config: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["services"][service]["environment"][var].as_str().map(|s| s.replace("$$", "$"))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn the_bouncer_key_reaches_the_container_through_a_root_only_env_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build(&repo().join("flake-free-examples/jacker"), &tmp.path().join("store"), &tmp.path().join("out"));
    let host = out.join("hosts/jacker");
    let compose = std::fs::read_to_string(host.join("compose.yaml")).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&compose).unwrap();
    let bouncer = &doc["services"]["crowdsec-bouncer"];
    assert_eq!(bouncer["env_file"], serde_json::json!(["/etc/kiln/env/crowdsec-bouncer.env"]), "{bouncer}");
    assert!(bouncer["environment"].get("CROWDSEC_BOUNCER_API_KEY").is_none(), "the key is not a plain value: {bouncer}");
    // The provisioner's own call, pointed at a temporary root.
    let provision = std::fs::read_to_string(host.join("provision.sh")).unwrap();
    let call = provision
        .lines()
        .find(|l| l.starts_with("env_secrets /etc/kiln/env/crowdsec-bouncer.env "))
        .expect("the provisioner writes the env file");
    assert_eq!(
        call,
        "env_secrets /etc/kiln/env/crowdsec-bouncer.env CROWDSEC_BOUNCER_API_KEY /etc/kiln/secrets/crowdsec_bouncer_key || true"
    );
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("secrets")).unwrap();
    let key = "k3y-$HOME-\"quoted\" #not-a-comment ${X}";
    std::fs::write(root.join("secrets/crowdsec_bouncer_key"), format!("{key}\n")).unwrap();
    let r = root.display().to_string();
    let call = call.replace(" /etc/kiln/secrets/", &format!(" {r}/secrets/")).replace(" /etc/kiln/env/", &format!(" {r}/env/"));
    let o = dash(&call);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let env = root.join("env/crowdsec-bouncer.env");
    assert_eq!(mode(&env), 0o600);
    assert_eq!(mode(&root.join("env")), 0o700);
    assert_eq!(std::fs::read_to_string(&env).unwrap(), format!("CROWDSEC_BOUNCER_API_KEY='{key}'\n"));
    // A second run changes nothing (and says so by its status).
    let o = dash(&call.replace(" || true", " && echo changed || echo unchanged"));
    assert_eq!(text(&o.stdout).trim(), "unchanged", "{}", text(&o.stderr));
    // Compose, given the file where the host keeps it, hands the container the exact key. Other
    // services' env files (authentik's bootstrap secrets) stand empty beside it.
    for other in compose.split("/etc/kiln/env/").skip(1).filter_map(|rest| rest.split(".env").next()) {
        let f = root.join(format!("env/{other}.env"));
        if !f.exists() {
            std::fs::write(f, "").unwrap();
        }
    }
    let local = compose.replace("/etc/kiln/env/", &format!("{}/env/", root.display()));
    let file = tmp.path().join("compose.yaml");
    std::fs::write(&file, local).unwrap();
    assert_eq!(compose_env(&file, "crowdsec-bouncer", "CROWDSEC_BOUNCER_API_KEY").as_deref(), Some(key));
}

#[test]
fn hostile_values_are_refused_or_arrive_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let env = root.join("env/svc.env");
    let compose = root.join("compose.yaml");
    std::fs::write(&compose, format!("name: t\nservices:\n  svc:\n    image: busybox:1\n    env_file: [{}]\n", env.display())).unwrap();
    let secret = root.join("secret");
    let accepted: &[(&[u8], &str)] = &[
        (b"plain", "plain"),
        (b"with trailing newline\n", "with trailing newline"),
        (b"$HOME ${HOME} $$ $", "$HOME ${HOME} $$ $"),
        (b"\"double\" `tick` $(id)", "\"double\" `tick` $(id)"),
        (b"a #comment", "a #comment"),
        (b"  spaces around  ", "  spaces around  "),
        (b"back\\slash \\n \\\\ \\t", "back\\slash \\n \\\\ \\t"),
        (b"=x=y", "=x=y"),
        ("unicode é ✓".as_bytes(), "unicode é ✓"),
    ];
    for (raw, want) in accepted {
        std::fs::write(&secret, raw).unwrap();
        let _ = std::fs::remove_file(&env);
        let o = dash(&format!("env_secrets '{}' VALUE '{}'", env.display(), secret.display()));
        assert!(o.status.success(), "{want:?} refused: {}", text(&o.stderr));
        assert_eq!(mode(&env), 0o600);
        assert_eq!(compose_env(&compose, "svc", "VALUE").as_deref(), Some(*want), "{:?}", String::from_utf8_lossy(raw));
    }
    let refused: &[&[u8]] = &[
        b"",
        b"\n",
        b"two\nlines",
        b"a'b",
        b"\\'",
        b"ends in backslash\\",
        b"tab\there",
        b"cr\r",
        b"nul\0byte",
        b"two newlines\n\n",
        b"esc\x1b[",
    ];
    for raw in refused {
        std::fs::write(&secret, raw).unwrap();
        let _ = std::fs::remove_file(&env);
        let o = dash(&format!("env_secrets '{}' VALUE '{}'", env.display(), secret.display()));
        assert_eq!(o.status.code(), Some(1), "{:?} accepted", String::from_utf8_lossy(raw));
        assert!(text(&o.stderr).contains("kiln: error: secret"), "{}", text(&o.stderr));
        assert!(!env.exists(), "{:?} left an env file", String::from_utf8_lossy(raw));
        assert_eq!(std::fs::read_dir(root.join("env")).unwrap().count(), 0, "no temporary file left behind");
    }
}

#[test]
fn the_env_secrets_step_passes_shellcheck() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("sh-env-secrets.sh");
    std::fs::write(&f, format!("#!/bin/sh\n{}\nenv_secrets /etc/kiln/env/a.env A /etc/kiln/secrets/a || true\n", env_secrets_functions()))
        .unwrap();
    oracle("sh", &f).unwrap();
}
