//! Every artifact of every example passes the real program that consumes it, and those
//! programs do reject broken input (so a pass means something).

mod common;

use common::*;

#[test]
fn every_artifact_of_every_example_passes_its_judge() {
    let tmp = tempfile::tempdir().unwrap();
    let mut judged = Vec::new();
    for ex in examples() {
        let name = ex.file_name().unwrap().to_string_lossy().into_owned();
        let result = build(&ex, &tmp.path().join("store"), &tmp.path().join(&name));
        let m = manifest(&result);
        for a in m["artifacts"].as_array().unwrap() {
            let path = result.join(a["path"].as_str().unwrap());
            let kind = a["kind"].as_str().unwrap();
            // Module files carry their own judge in the module; the derived Prometheus
            // configuration is the one a whole-system build must get right.
            // So are the derived alerting rules and the Alertmanager configuration that
            // delivers them to the system's receivers.
            let derived = match path.file_name().and_then(|n| n.to_str()) {
                Some("prometheus.yml") if kind == "config" => Some("promtool"),
                Some("kiln.yml") if kind == "config" && path.ends_with("rules/kiln.yml") => Some("promtool-rules"),
                Some("alertmanager.yml") if kind == "config" => Some("amtool"),
                _ => None,
            };
            let Some(judge) = derived.or_else(|| judge_for(kind)) else { continue };
            judged.push((judge, path));
        }
    }
    let n = judged.len();
    // Each example's directory names it in a failure's paths.
    let failures = oracle_all(judged);
    assert!(failures.is_empty(), "{} judge runs failed:\n{}", failures.len(), failures.join("\n"));
    assert!(n >= 4, "only {n} artifacts judged");
}

#[test]
fn the_judges_reject_broken_samples() {
    let dir = repo().join("tests/oracle-samples/bad");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let kind = [
            "cloud-init",
            "compose",
            "caddy",
            "sh",
            "promtool-rules",
            "promtool",
            "amtool",
            "systemd",
            "mermaid",
            "traefik-static",
            "traefik-dynamic",
        ]
        .into_iter()
        .find(|k| name.starts_with(&format!("{k}-")));
        let Some(kind) = kind else { continue };
        assert!(oracle(kind, &p).is_err(), "{kind} accepted the broken sample {name}");
        n += 1;
    }
    assert!(n >= 4, "too few broken samples");
}

/// A judge given many files at once (what the suite does to save each judge's start) still
/// refuses a broken one among good ones, and names it.
#[test]
fn a_batched_judge_rejects_a_broken_file_among_good_ones_and_names_it() {
    let samples = repo().join("tests/oracle-samples");
    for judge in BATCHED_JUDGES {
        let of = |dir: &str| -> Vec<std::path::PathBuf> {
            let mut v: Vec<_> = std::fs::read_dir(samples.join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{judge}-")))
                .collect();
            v.sort();
            v
        };
        let (good, bad) = (of("good"), of("bad"));
        assert!(!good.is_empty() && !bad.is_empty(), "{judge}: samples missing");
        assert!(oracle_all(good.iter().map(|p| (*judge, p.clone()))).is_empty(), "{judge} refused its good samples");
        for b in &bad {
            let files = good.iter().chain([b]).chain(good.iter()).map(|p| (*judge, p.clone()));
            let failures = oracle_all(files);
            let name = b.file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(failures.len(), 1, "{judge} accepted {name} among good files");
            // The tool's own words, without the first line (which lists every file it was given).
            let complaint = failures[0].split_once('\n').unwrap().1;
            assert!(complaint.contains(&name), "{judge}'s complaint does not name {name}:\n{complaint}");
        }
    }
}

#[test]
fn manifest_lists_every_file_with_its_hash_and_size() {
    use sha2::{Digest, Sha256};
    let tmp = tempfile::tempdir().unwrap();
    for ex in examples() {
        let result = build(&ex, &tmp.path().join("store"), &tmp.path().join("result"));
        let m = manifest(&result);
        let listed: Vec<&str> = m["artifacts"].as_array().unwrap().iter().map(|a| a["path"].as_str().unwrap()).collect();
        for a in m["artifacts"].as_array().unwrap() {
            let bytes = std::fs::read(result.join(a["path"].as_str().unwrap())).unwrap();
            assert_eq!(a["size"].as_u64().unwrap() as usize, bytes.len());
            assert_eq!(a["sha256"].as_str().unwrap(), kiln::render::hex(&Sha256::digest(&bytes)));
        }
        for (rel, _, _) in files(&result) {
            assert!(rel == "manifest.json" || listed.contains(&rel.as_str()), "{rel} is not in the manifest");
        }
        for (host, h) in m["hosts"].as_object().unwrap() {
            assert_eq!(h["closure"].as_str().unwrap().len(), 64, "{host}");
            let sums = std::fs::read(result.join("hosts").join(host).join("SHA256SUMS")).unwrap();
            assert_eq!(h["closure"].as_str().unwrap(), kiln::render::hex(&Sha256::digest(&sums)));
        }
        assert_eq!(m["kiln"], env!("CARGO_PKG_VERSION"));
    }
}

/// `fail2ban_http`: the filter kiln installs matches what the edge logs for a failed login — a
/// 401 to a request that carried credentials — by client address, and nothing else (fail2ban's
/// own `fail2ban-regex`), for a native Caddy edge and for Traefik in a container (whose log then
/// goes to the journal). The challenge a WebDAV client gets before it sends credentials (401
/// without them) and an application's 403 are not failed logins: banning on them locked out
/// offices of syncing clients (audits: maidan M10, Post-X P7).
#[test]
fn the_http_ban_filter_matches_auth_failures_only() {
    // A request with credentials (Caddy logs the header's value as REDACTED; Traefik logs the
    // Basic user name) or without.
    let caddy = |status: u16, creds: bool| {
        let headers = if creds { r#""User-Agent":["davfs2/1.7"],"Authorization":["REDACTED"]"# } else { r#""User-Agent":["davfs2/1.7"]"# };
        format!(
            r#"{{"level":"info","ts":1646861401.5241024,"logger":"http.log.access.log0","msg":"handled request","request":{{"remote_ip":"203.0.113.9","remote_port":"41342","proto":"HTTP/2.0","method":"GET","host":"admin.example.com","uri":"/","headers":{{{headers}}}}},"user_id":"","duration":0.0001,"size":0,"status":{status},"resp_headers":{{}}}}"#
        )
    };
    let traefik = |status: u16, creds: bool| {
        let user = if creds { "alice" } else { "-" };
        format!(
            r#"{{"ClientAddr":"203.0.113.9:41342","ClientHost":"203.0.113.9","ClientPort":"41342","ClientUsername":"{user}","DownstreamContentSize":17,"DownstreamStatus":{status},"Duration":163000,"OriginStatus":{status},"RequestHost":"admin.example.com","RequestMethod":"GET","RequestPath":"/","RequestProtocol":"HTTP/2.0","RouterName":"admin@file","entryPointName":"websecure","level":"info","msg":"","time":"2026-11-22T18:00:00Z"}}"#
        )
    };
    let base = std::fs::read_to_string(repo().join("tests/fixtures/diagnostics/rule-password-ssh/system.toml")).unwrap();
    let with_f2b = base.replace("password_ssh = true\n", "").replacen("public = true\n", "public = true\nfail2ban_http = true\n", 1);
    type Line<'a> = &'a dyn Fn(u16, bool) -> String;
    let variants: [(&str, String, Line); 2] =
        [("caddy", with_f2b.clone(), &caddy), ("traefik", with_f2b.replace("module = \"caddy\"", "module = \"tedge\""), &traefik)];
    for (name, system, line) in variants {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path().join("sys");
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::write(sys.join("system.toml"), system).unwrap();
        build_with_modules(&repo().join("tests/fixtures/modules"), &sys, &tmp.path().join("s"), &tmp.path().join("r"));
        let filter = tmp.path().join("r/hosts/edge/fail2ban/kiln-http.conf");
        let script = std::fs::read_to_string(tmp.path().join("r/hosts/edge/provision.sh")).unwrap();
        assert!(
            script.contains("[kiln-http]") && script.contains("/etc/fail2ban/filter.d/kiln-http.conf"),
            "{name}: the jail is installed"
        );
        if name == "traefik" {
            let compose = yaml_to_json(&tmp.path().join("r/hosts/edge/compose.yaml"));
            assert_eq!(compose["services"]["proxy"]["logging"]["driver"], "journald", "{name}: the edge logs to the journal");
            assert!(script.contains("chain = DOCKER-USER"), "{name}: bans apply to Docker's forwarded traffic");
        }
        let cases = [(401, true, 1), (401, false, 0), (403, true, 0), (403, false, 0), (200, true, 0), (404, false, 0)];
        for (status, creds, matched) in cases {
            let out = std::process::Command::new(repo().join(".test-tools/bin/fail2ban-regex"))
                .arg("-v")
                .arg(line(status, creds))
                .arg(&filter)
                .output()
                .expect("fail2ban-regex (scripts/install-test-deps unpacks it into .test-tools)");
            let report = text(&out.stdout);
            assert!(
                report.contains(&format!("1 lines, 0 ignored, {matched} matched")),
                "{name} status {status}, credentials {creds}:\n{report}"
            );
            if matched == 1 {
                assert!(report.contains("203.0.113.9"), "{name}: the ban is for the client address:\n{report}");
            }
        }
    }
}

/// The Caddyfile's other CDN form: with a caddy module of 2.7 or later (a user's, through
/// `--modules`), the CDN's ranges are trusted server-wide (`servers { trusted_proxies static … }`)
/// instead of on each handler, and Caddy 2.11.7 accepts it; Debian's 2.6.2, which the built-in
/// module installs, refuses that form, which is why the built-in module gets the other.
#[test]
fn a_caddy_of_2_7_or_later_trusts_the_cdn_server_wide() {
    let tmp = tempfile::tempdir().unwrap();
    let modules = tmp.path().join("modules");
    common::copy_tree(&repo().join("modules/caddy"), &modules.join("caddy"));
    let m = std::fs::read_to_string(modules.join("caddy/module.toml")).unwrap();
    assert!(m.contains("\nversion = \"2.6.2\"\n"), "the built-in module's version");
    std::fs::write(modules.join("caddy/module.toml"), m.replace("\nversion = \"2.6.2\"\n", "\nversion = \"2.7.6\"\n")).unwrap();
    let r = common::build_with_modules(
        &modules,
        &repo().join("flake-free-examples/five-vps-saas"),
        &tmp.path().join("store"),
        &tmp.path().join("r"),
    );
    let caddyfile = r.join("hosts/edge/Caddyfile");
    let text = std::fs::read_to_string(&caddyfile).unwrap();
    assert!(text.contains("\tservers {\n\t\ttrusted_proxies static "), "{text}");
    let repeated = text.lines().filter(|l| l.contains("trusted_proxies") && l.contains("103.21.244.0/22")).count();
    assert_eq!(repeated, 1, "the ranges once, server-wide, no handler repeats them: {text}");
    oracle("caddy-recent", &caddyfile).unwrap();
    let debian = oracle("caddy", &caddyfile).expect_err("Debian's Caddy 2.6.2 refuses the server-wide form");
    assert!(debian.contains("caddy-debian"), "{debian}");
}

/// A host whose user-data would exceed Hetzner's 32 KiB as text, in a system with no store to
/// boot it from, carries its files packed (gzip in base64, cloud-init's `gz+b64`): the user-data
/// fits, passes the cloud-init judges, and cloud-init's own `write_files` (Debian's 22.4, run
/// on the user-data with the paths moved under a temporary root) writes every file of the host's
/// payload with exactly the bytes and mode kiln built. A host that fits as text keeps its files
/// readable, and writes the same way.
#[test]
fn a_user_data_over_the_limit_carries_its_files_packed_and_cloud_init_writes_them_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut system = preamble("packed");
    system.push_str("\n[hosts.box]\nprovider = \"hetzner\"\ntype = \"cpx31\"\nlocation = \"nbg1\"\nimage = \"debian-13\"\npublic = true\n");
    system
        .push_str("\n[hosts.small]\nprovider = \"hetzner\"\ntype = \"cpx11\"\nlocation = \"nbg1\"\nimage = \"debian-13\"\npublic = true\n");
    system.push_str("\n[secrets.db]\nfile = \"secrets.yaml\"\n\n[services.db]\nmodule = \"postgres\"\nhost = \"box\"\nsecrets = { password = \"db\" }\n");
    for i in 0..4 {
        system.push_str(&format!(
            "\n[secrets.vault_{i}]\nfile = \"secrets.yaml\"\n\n[services.vault-{i}]\nmodule = \"vaultwarden\"\nhost = \"box\"\nconnects = [\"db\"]\nsecrets = {{ database_password = \"vault_{i}\" }}\noptions = {{ domain = \"https://v{i}.example.com\", port = {}, database_name = \"vault{i}\", database_user = \"vault{i}\" }}\n",
            8090 + i
        ));
    }
    system.push_str(
        "\n[services.small-vault]\nmodule = \"vaultwarden\"\nhost = \"small\"\noptions = { domain = \"https://s.example.com\" }\n",
    );
    let sys = tmp.path().join("sys");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(sys.join("system.toml"), system).unwrap();
    let result = build(&sys.join("system.toml"), &tmp.path().join("store"), &tmp.path().join("result"));
    let py = r#"
import os, sys
from cloudinit import util
from cloudinit.config import cc_write_files
root = sys.argv[2]
cfg = util.load_yaml(util.load_file(sys.argv[1]))
files = cfg["write_files"]
for f in files:
    f["path"] = root + f["path"]
cc_write_files.write_files("write_files", files, "root:root")
print(sorted(set(f.get("encoding", "text") for f in files)))
"#;
    for (host, packed) in [("box", true), ("small", false)] {
        let dir = result.join("hosts").join(host);
        let ud_path = dir.join("user-data");
        let ud = std::fs::read(&ud_path).unwrap();
        assert!(ud.len() <= 32768, "{host}: {} bytes", ud.len());
        oracle("cloud-init", &ud_path).unwrap_or_else(|e| panic!("{host}: {e}"));
        let root = tmp.path().join(format!("root-{host}"));
        let out = run(std::process::Command::new("/usr/bin/python3")
            .env("PYTHONPATH", repo().join(".test-tools/cloud-init/usr/lib/python3/dist-packages"))
            .arg("-c")
            .arg(py)
            .arg(&ud_path)
            .arg(&root));
        assert!(out.status.success(), "{host}: cloud-init's write_files: {}", text(&out.stderr));
        let encodings = text(&out.stdout);
        assert_eq!(encodings.trim(), if packed { "['gz+b64']" } else { "['text']" }, "{host}");
        let written = root.join(kiln::render::KILN_ROOT.trim_start_matches('/'));
        let mut n = 0;
        for a in manifest(&result)["artifacts"].as_array().unwrap() {
            let Some(rel) = a["path"].as_str().unwrap().strip_prefix(&format!("hosts/{host}/")) else { continue };
            if rel == "user-data" || rel == "bundle.tar.gz" {
                continue;
            }
            let got = written.join(rel);
            let bytes = std::fs::read(dir.join(rel)).unwrap();
            assert_eq!(std::fs::read(&got).unwrap_or_else(|e| panic!("{host}: {rel}: {e}")), bytes, "{host}: {rel}");
            let got_mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&got).unwrap().permissions()) & 0o7777;
            assert_eq!(format!("{got_mode:04o}"), a["mode"].as_str().unwrap(), "{host}: {rel}");
            n += 1;
        }
        assert!(n >= 5, "{host}: only {n} files");
        assert_eq!(files(&written).len(), n, "{host}: cloud-init wrote the payload and nothing else");
    }
}

/// What a cloud server receives is the build's user-data wrapped with the enrolment part `kiln
/// deploy` adds (`deploy::enrol`): that, not the build's file alone, must fit the provider's limit.
/// For every host of every example and of the edges fixture whose provider has a limit (the
/// fixture's Traefik host was 31,592 bytes as text, within 32 KiB alone and over it with the
/// part; it is now packed), the user-data with a real enrolment part fits.
#[test]
fn every_user_data_fits_its_providers_limit_with_the_enrolment_part() {
    let tmp = tempfile::tempdir().unwrap();
    let mut results: Vec<std::path::PathBuf> =
        examples().iter().map(|ex| build(ex, &tmp.path().join("store"), &tmp.path().join(ex.file_name().unwrap()))).collect();
    results.push(build_with_modules(
        &repo().join("tests/fixtures/modules"),
        &repo().join("tests/fixtures/edges/traefik"),
        &tmp.path().join("store"),
        &tmp.path().join("edges-traefik"),
    ));
    let mut checked = 0;
    for result in results {
        for (host, h) in manifest(&result)["hosts"].as_object().unwrap() {
            let Some(limit) = h["user_data"]["limit"].as_u64() else { continue };
            let ud = read(&result.join("hosts").join(host).join("user-data"));
            let sent = kiln::deploy::enrol::with_part(&ud, &kiln::deploy::enrol::enrol_part(host, &"ab".repeat(32))).unwrap();
            assert!(
                sent.len() as u64 <= limit,
                "{}: host {host}: {} bytes with the enrolment part, over {limit}",
                result.display(),
                sent.len()
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} hosts with a limit");
}
