//! Test support: run the real `kiln` binary in temporary directories, find the examples, and
//! hand artifacts to the real tools that consume them (scripts/oracles.sh).
#![allow(dead_code)]

pub mod cloud;
pub mod edges;
pub mod servers;
pub mod sshd;
pub mod terraform;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn kiln() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.env_remove("KILN_STORE").env("NO_COLOR", "1");
    c
}

pub fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("flake-free-examples"))
        .expect("flake-free-examples/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("system.toml").is_file())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no examples found");
    v
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run command")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A file's text; panics naming the file.
pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Builds `system` into `store`, linking the result at `link`; panics with kiln's stderr on failure.
pub fn build(system: &Path, store: &Path, link: &Path) -> PathBuf {
    build_using(kiln(), system, store, link)
}

/// [`build`] with a `--modules` directory.
pub fn build_with_modules(modules: &Path, system: &Path, store: &Path, link: &Path) -> PathBuf {
    let mut cmd = kiln();
    cmd.arg("--modules").arg(modules);
    build_using(cmd, system, store, link)
}

/// The age identity that decrypts the examples' secrets (tests/fixtures/keys).
pub fn examples_identity() -> PathBuf {
    repo().join("tests/fixtures/keys/examples.agekey")
}

/// [`build`] with the examples' identity, so that secrets are checked against their files.
pub fn build_with_identity(system: &Path, store: &Path, link: &Path) -> PathBuf {
    let mut cmd = kiln();
    cmd.arg("--identity").arg(examples_identity());
    build_using(cmd, system, store, link)
}

/// `system` compiled in memory (no identity: secrets stay references); panics with the
/// diagnostics when it does not compile.
pub fn compiled(system: &Path) -> Box<kiln::pipeline::Compiled> {
    match kiln::pipeline::compile(system, &kiln::pipeline::Options::default()).unwrap() {
        kiln::pipeline::Outcome::Ok(c) => c,
        kiln::pipeline::Outcome::Failed(f) => panic!("{} does not compile: {:?}", system.display(), f.diagnostics),
    }
}

/// The values of the secrets `names` of `system`, decrypted with the examples' identity: what a
/// test searches for where no secret may be.
pub fn example_secret_values(system: &Path, names: &[&str]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let key = read(&examples_identity());
    let ids = kiln::sops::load_identities(&key).unwrap();
    let opts = kiln::pipeline::Options { identity: Some(key.clone()), ..Default::default() };
    let c = match kiln::pipeline::compile(system, &opts).unwrap() {
        kiln::pipeline::Outcome::Ok(c) => c,
        kiln::pipeline::Outcome::Failed(f) => panic!("{:?}", f.diagnostics),
    };
    let names = names.iter().map(|n| n.to_string()).collect();
    let values = kiln::secrets::values(system, &c.system, &names, &ids).unwrap();
    for (name, value) in &values {
        assert!(value.len() >= 8, "the test secret {name} is long enough to search for");
    }
    values
}

/// Every file under `dir` that holds `needle`.
pub fn holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter(|e| std::fs::read(e.path()).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
        .map(|e| e.path().display().to_string())
        .collect()
}

fn build_using(mut cmd: Command, system: &Path, store: &Path, link: &Path) -> PathBuf {
    let out = run(cmd.arg("build").arg(system).arg("--store").arg(store).arg("--out-link").arg(link));
    assert!(out.status.success(), "kiln build {} failed:\n{}", system.display(), text(&out.stderr));
    link.to_path_buf()
}

/// The Compose file as the real `docker-compose config` resolves it (after the `compose` oracle
/// accepts it); `env_file`s, which the provisioner writes on the host from delivered secrets,
/// are not read (see [`compose_config_with_env`]).
pub fn compose_config(file: &Path) -> serde_json::Value {
    compose_config_as(file, &["--no-env-resolution"])
}

/// [`compose_config`] with every `env_file` read, as Compose does on the host (the files must
/// exist: tests/env_secrets.rs and tests/seed_modules.rs write them as the provisioner would).
pub fn compose_config_with_env(file: &Path) -> serde_json::Value {
    compose_config_as(file, &[])
}

fn compose_config_as(file: &Path, extra: &[&str]) -> serde_json::Value {
    oracle("compose", file).unwrap_or_else(|e| panic!("docker-compose rejects {}:\n{e}", file.display()));
    let venv = repo().join(".venv-oracles/bin/docker-compose");
    let bin: PathBuf = if venv.is_file() { venv } else { "docker-compose".into() };
    let out = run(Command::new(bin).arg("-f").arg(file).args(["config", "--format", "json"]).args(extra));
    assert!(out.status.success(), "docker-compose config: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs one judge from scripts/oracles.sh; `Err` carries the tool's complaint.
pub fn oracle(kind: &str, file: &Path) -> Result<(), String> {
    oracle_files(kind, &[file.to_path_buf()])
}

/// The judges of scripts/oracles.sh that take several files in one run (their schema judge
/// starts once for all of them).
pub const BATCHED_JUDGES: &[&str] = &["cloud-init", "compose", "sh", "traefik-static", "traefik-dynamic"];

/// Judges files in as few runs as their judges allow: one run of scripts/oracles.sh per judge of
/// [`BATCHED_JUDGES`] (so a rejected file is named in the tool's output), one per file for the
/// others. Every complaint, each with its judge and the files it was given.
pub fn oracle_all<'a>(files: impl IntoIterator<Item = (&'a str, PathBuf)>) -> Vec<String> {
    let mut by_judge: std::collections::BTreeMap<&str, Vec<PathBuf>> = std::collections::BTreeMap::new();
    for (judge, path) in files {
        by_judge.entry(judge).or_default().push(path);
    }
    let mut failures = Vec::new();
    for (judge, paths) in by_judge {
        let runs: Vec<Vec<PathBuf>> =
            if BATCHED_JUDGES.contains(&judge) { vec![paths] } else { paths.into_iter().map(|p| vec![p]).collect() };
        for run in runs {
            if let Err(e) = oracle_files(judge, &run) {
                let names: Vec<String> = run.iter().map(|p| p.display().to_string()).collect();
                failures.push(format!("{judge} on {}:\n{e}", names.join(" ")));
            }
        }
    }
    failures
}

fn oracle_files(kind: &str, files: &[PathBuf]) -> Result<(), String> {
    let out = Command::new("bash").arg(repo().join("scripts/oracles.sh")).arg(kind).args(files).output().expect("run oracles.sh");
    match out.status.code() {
        Some(0) => Ok(()),
        Some(2) => panic!("oracle `{kind}` is not installed or misused (run scripts/install-test-deps):\n{}", text(&out.stderr)),
        _ => Err(format!("{}{}", text(&out.stdout), text(&out.stderr))),
    }
}

/// The judge for a manifest artifact kind, if the kind has one.
pub fn judge_for(kind: &str) -> Option<&'static str> {
    match kind {
        "cloud-init" => Some("cloud-init"),
        "provisioner" | "script" => Some("sh"),
        "systemd-unit" => Some("systemd"),
        "doc" => Some("mermaid"),
        "compose" => Some("compose"),
        "caddyfile" => Some("caddy"),
        "traefik-static" => Some("traefik-static"),
        "traefik-dynamic" => Some("traefik-dynamic"),
        _ => None,
    }
}

/// Parses a YAML file back with PyYAML (via the oracle helper) into JSON.
pub fn yaml_to_json(file: &Path) -> serde_json::Value {
    let out = Command::new("bash").arg(repo().join("scripts/oracles.sh")).arg("yaml").arg(file).output().expect("run oracles.sh");
    assert!(out.status.success(), "YAML did not parse:\n{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

pub fn manifest(result: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(result.join("manifest.json")).expect("manifest.json")).expect("manifest is JSON")
}

/// Every regular file under `dir` (following the result's host links), as sorted relative paths.
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut v: Vec<(String, Vec<u8>, u32)> = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            (rel, std::fs::read(e.path()).unwrap(), mode)
        })
        .collect();
    v.sort();
    v
}

/// Copies a directory tree (an example) so a test can edit it.
pub fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// The head of a test system: `[system]` named `name` on example.com, a Hetzner provider and
/// one admin with a fixture key, ready for hosts and services to be appended.
pub fn preamble(name: &str) -> String {
    format!(
        r#"[system]
name = "{name}"
domains = ["example.com"]

[providers.hetzner]
kind = "hetzner"

[admins.ops]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKey000000000000000000000000000000 ops@laptop"]
sources = ["198.51.100.0/24"]
"#
    )
}

/// The provisioner prelude's functions `names`, as provision.sh.in defines them: a script that
/// dash can run alone (the prelude's own steps left out).
pub fn prelude_functions(names: &[&str]) -> String {
    let prelude = read(&repo().join("src/render/provision.sh.in"));
    let mut out = String::new();
    for name in names {
        let start = prelude.find(&format!("\n{name}() {{")).unwrap_or_else(|| panic!("no {name}() in the prelude")) + 1;
        let rest = &prelude[start..];
        let end =
            if rest.lines().next().unwrap().trim_end().ends_with('}') { rest.find('\n').unwrap() } else { rest.find("\n}\n").unwrap() + 2 };
        out.push_str(&rest[..end]);
        out.push('\n');
    }
    out
}

/// The provisioner prelude's helpers `env_secrets` uses (`log`, `die`, `ids`, `put`), then
/// `env_secrets` itself.
pub fn env_secrets_functions() -> String {
    prelude_functions(&["log", "die", "ids", "put"]) + kiln::render::provision::ENV_SECRETS_FN
}

/// The stand-in images of `host`'s services as a `docker load` archive (scripts/lab-images).
pub fn lab_images(result: &Path, host: &str, tmp: &Path) -> (PathBuf, serde_json::Value) {
    let compose = std::fs::read_to_string(result.join("hosts").join(host).join("compose.yaml")).expect("the host runs containers");
    let compose: serde_json::Value = serde_saphyr::from_str(&compose).expect("compose.yaml parses");
    let json = tmp.join("compose.json");
    std::fs::write(&json, serde_json::to_vec(&compose).unwrap()).unwrap();
    let archive = tmp.join("images.tar");
    let out = run(Command::new(repo().join("scripts/lab-images"))
        .arg("--model")
        .arg(result.join("model.json"))
        .arg("--compose")
        .arg(&json)
        .arg("--modules")
        .arg(repo().join("modules"))
        .arg("--host")
        .arg(host)
        .arg(&archive));
    assert!(out.status.success(), "scripts/lab-images: {}", text(&out.stderr));
    (archive, compose)
}

/// About `bytes` of comment lines that gzip cannot shrink much (a SHA-256 chain in hex), for a
/// file too big for a provider's user-data even packed (cloud-init's `gz+b64`).
pub fn incompressible_text(bytes: usize) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::digest(b"kiln").to_vec();
    let mut out = String::new();
    while out.len() < bytes {
        out.push_str(&format!("# {}\n", kiln::render::hex(&digest)));
        digest = Sha256::digest(&digest).to_vec();
    }
    out
}
