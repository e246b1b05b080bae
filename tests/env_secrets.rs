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

/// A service's own environment (five-vps-saas' app: `environment` and `env_secrets` on the
/// service, which the `app` module takes): the plain value is in the Compose file as written, the
/// DSN reaches the container only through the env file the provisioner writes from the delivered
/// secret, which the host is handed (and the store never holds), and the real `docker-compose
/// config` reads both back beside the module's own variables.
#[test]
fn a_services_own_variables_reach_its_container() {
    let tmp = tempfile::tempdir().unwrap();
    let example = repo().join("flake-free-examples/five-vps-saas");
    let out = build(&example, &tmp.path().join("store"), &tmp.path().join("out"));
    let host = out.join("hosts/app");
    let compose = std::fs::read_to_string(host.join("compose.yaml")).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&compose).unwrap();
    let app = &doc["services"]["app"];
    assert_eq!(app["environment"]["LOG_FORMAT"], "json", "{app}");
    assert_eq!(app["environment"]["PORT"], "3000", "the module's own variables stay: {app}");
    assert!(app["environment"].get("SENTRY_DSN").is_none(), "the DSN is not a plain value: {app}");
    assert_eq!(app["env_file"], serde_json::json!(["/etc/kiln/env/app.env"]), "{app}");
    let provision = std::fs::read_to_string(host.join("provision.sh")).unwrap();
    let call =
        provision.lines().find(|l| l.starts_with("env_secrets /etc/kiln/env/app.env ")).expect("the provisioner writes the env file");
    assert_eq!(call, "env_secrets /etc/kiln/env/app.env SENTRY_DSN /etc/kiln/secrets/app_sentry_dsn || true");
    // the host is handed the secret (deploy and boot deliver exactly these), and no artifact holds it
    let opts = kiln::pipeline::Options::default();
    let Ok(kiln::pipeline::Outcome::Ok(c)) = kiln::pipeline::compile(&example, &opts) else { panic!("five-vps-saas compiles") };
    assert!(c.system.host_secrets(&c.system.hosts["app"]).contains("app_sentry_dsn"));
    let dsn = "https://0f3a9c1e2b4d4e6f8a7b5c3d1e9f0a2b@o450000.ingest.sentry.io/4500000";
    for entry in walkdir::WalkDir::new(tmp.path().join("store")).into_iter().filter_map(|e| e.ok()).filter(|e| e.file_type().is_file()) {
        let bytes = std::fs::read(entry.path()).unwrap();
        assert!(!bytes.windows(dsn.len()).any(|w| w == dsn.as_bytes()), "{} holds the DSN", entry.path().display());
    }
    // the provisioner's call and Compose, at a temporary root, hand the container both
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("secrets")).unwrap();
    std::fs::write(root.join("secrets/app_sentry_dsn"), format!("{dsn}\n")).unwrap();
    let r = root.display().to_string();
    let o = dash(&call.replace(" /etc/kiln/secrets/", &format!(" {r}/secrets/")).replace(" /etc/kiln/env/", &format!(" {r}/env/")));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let file = tmp.path().join("compose.yaml");
    std::fs::write(&file, compose.replace("/etc/kiln/env/", &format!("{r}/env/"))).unwrap();
    assert_eq!(compose_env(&file, "app", "SENTRY_DSN").as_deref(), Some(dsn));
    assert_eq!(compose_env(&file, "app", "LOG_FORMAT").as_deref(), Some("json"));
}

/// A service's own values reach the container exactly (Compose's `$` escaped), and a value that
/// is not one line is refused where written.
#[test]
fn a_services_own_values_arrive_exactly_or_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    std::fs::create_dir_all(&sys).unwrap();
    let value = r#"$HOME ${X:-y} $$ `id` "q" 'a' #c"#;
    let system = format!(
        r#"[system]
name = "own"
[providers.hetzner]
kind = "hetzner"
[admins.ops]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKey000000000000000000000000000000 ops@laptop"]
sources = ["198.51.100.0/24"]
[hosts.box]
provider = "hetzner"
image = "debian-13"
public = true
[services.shop]
module = "app"
host = "box"
options = {{ image = "ghcr.io/example/shop:1.4.2" }}
environment = {{ GREETING = {} }}
"#,
        toml_string(value)
    );
    std::fs::write(sys.join("system.toml"), &system).unwrap();
    let out = build(&sys, &tmp.path().join("store"), &tmp.path().join("out"));
    assert_eq!(compose_env(&out.join("hosts/box/compose.yaml"), "shop", "GREETING").as_deref(), Some(value));
    std::fs::write(sys.join("system.toml"), system.replace(&toml_string(value), "\"two\\nlines\"")).unwrap();
    let o = run(kiln().arg("check").arg(&sys));
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("cannot be an environment value"), "{}", text(&o.stderr));
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
