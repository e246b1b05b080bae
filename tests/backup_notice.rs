//! A failed backup on a host no Prometheus watches is told to the alert receivers by the host
//! itself (`eval::backup_notice`, `render::backup`): postx-hetzner's client servers, which the
//! seed isolates from the monitoring server (audit P4: a client's failed backup raised no alert).
//! Judged by shellcheck and dash, systemd-analyze, and by running the notice script with the
//! real curl against an HTTP server of this test standing in for the Mattermost webhook.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use common::*;

/// One HTTP request received on `l` (request line, headers lower-cased, body), answered 200.
fn receive(l: &TcpListener) -> (String, String, Vec<u8>) {
    let (mut s, _) = l.accept().unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let mut headers = String::new();
    let mut length = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        let h = h.to_ascii_lowercase();
        if let Some(v) = h.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        headers.push_str(&h);
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").unwrap();
    (line.trim().to_string(), headers, body)
}

/// The notice script with its paths moved under `root` (payloads under root/opt/kiln, secrets
/// under root/secrets), run by dash; its exit status.
fn run_notice(host: &Path, root: &Path) -> bool {
    let script = std::fs::read_to_string(host.join("backup/kiln-backup-failed.sh")).unwrap();
    let script = script
        .replace("/opt/kiln/", &format!("{}/", host.display()))
        .replace("/etc/kiln/secrets/", &format!("{}/secrets/", root.display()));
    Command::new("dash").arg("-c").arg(&script).status().unwrap().success()
}

#[test]
fn an_unwatched_hosts_failed_backup_posts_to_the_webhook_receivers() {
    let tmp = tempfile::tempdir().unwrap();
    let example = repo().join("flake-free-examples/postx-hetzner");
    let out = build(&example, &tmp.path().join("store"), &tmp.path().join("out"));
    let host = out.join("hosts/client-alpha");

    // systemd starts the notice when the backup or its check fails
    for unit in ["kiln-backup.service", "kiln-backup-check.service"] {
        let text = read(&host.join("backup").join(unit));
        assert!(text.lines().any(|l| l == "OnFailure=kiln-backup-failed.service"), "{unit}:\n{text}");
        oracle("systemd", &host.join("backup").join(unit)).unwrap_or_else(|e| panic!("{unit}: {e}"));
    }
    oracle("systemd", &host.join("backup/kiln-backup-failed.service")).unwrap();
    oracle("sh", &host.join("backup/kiln-backup-failed.sh")).unwrap();
    let provision = read(&host.join("provision.sh"));
    assert!(provision.contains("/etc/systemd/system/kiln-backup-failed.service"), "the provisioner installs it");
    let install = provision.lines().find(|l| l.starts_with("apt_install ") && l.contains("restic")).unwrap();
    assert!(install.split_whitespace().any(|w| w == "curl"), "the notice's curl is installed: {install}");

    // the message, as the webhook receives it (Slack's payload, which Mattermost takes)
    let payload = read(&host.join("backup/notice-ops-chat.json"));
    let msg: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(msg["channel"], "#alerts");
    assert!(msg["text"].as_str().unwrap().contains("host client-alpha"), "{msg}");

    // the receiver's webhook secret reaches the host
    let compiled = common::compiled(&example);
    let sys = &compiled.system;
    assert!(sys.host_secrets(&sys.hosts["client-alpha"]).contains("alert_webhook_url"));

    // where Prometheus watches the host's backups (jacker's, through its node exporter; its
    // receiver made a Slack one here), the derived alerts tell, and the host does not
    let sys = tmp.path().join("jacker-sys");
    copy_tree(&repo().join("flake-free-examples/jacker"), &sys);
    let services = sys.join("services.toml");
    let toml = read(&services);
    let webhook = "[alerts.receivers.chat]\nwebhook = \"alertmanager_webhook_url\"";
    assert!(toml.contains(webhook), "jacker's receiver moved: update this test");
    std::fs::write(&services, toml.replace(webhook, "[alerts.receivers.chat]\nslack = \"alertmanager_webhook_url\"")).unwrap();
    let jacker = build(&sys, &tmp.path().join("store"), &tmp.path().join("jacker"));
    assert!(jacker.join("hosts/jacker/backup/kiln-backup.sh").is_file(), "jacker backs up");
    assert!(!jacker.join("hosts/jacker/backup/kiln-backup-failed.sh").exists(), "jacker is watched");
    assert!(!read(&jacker.join("hosts/jacker/backup/kiln-backup.service")).contains("OnFailure="));

    // run: curl posts the payload to the URL the secret holds, which never is an argument
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/hooks/abc", l.local_addr().unwrap().port());
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("secrets")).unwrap();
    std::fs::write(root.join("secrets/alert_webhook_url"), format!("{url}\n")).unwrap();
    let server = std::thread::spawn(move || receive(&l));
    assert!(run_notice(&host, &root), "the notice script succeeds");
    let (line, headers, body) = server.join().unwrap();
    assert_eq!(line, "POST /hooks/abc HTTP/1.1");
    assert!(headers.contains("content-type: application/json"), "{headers}");
    assert_eq!(String::from_utf8(body).unwrap(), payload);

    // a secret that is no URL curl's config can quote is refused, and nothing is sent
    std::fs::write(root.join("secrets/alert_webhook_url"), "https://example.com/\" -o /tmp/x\n").unwrap();
    assert!(!run_notice(&host, &root), "a URL with a quote is refused");
}
