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
    answer(l.accept().unwrap().0)
}

/// [`receive`], or `None` when no request comes within 60 s.
fn receive_within(l: &TcpListener) -> Option<(String, String, Vec<u8>)> {
    l.set_nonblocking(true).unwrap();
    for _ in 0..600 {
        if let Ok((s, _)) = l.accept() {
            s.set_nonblocking(false).unwrap();
            return Some(answer(s));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    None
}

/// The request on `s`, answered 200.
fn answer(mut s: std::net::TcpStream) -> (String, String, Vec<u8>) {
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
    assert!(
        provision.contains("put_unit /opt/kiln/backup/kiln-backup-failed.service kiln-backup-failed.service\n"),
        "the provisioner installs it"
    );
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

/// Post-X audit X6: a client's container that stays unhealthy was restarted by the watchdog and
/// recorded in a metrics file nobody read (no Prometheus scrapes the clients). On such a host the
/// watchdog now posts each restart to the Slack-compatible receivers, once an hour at most per
/// container. Run by dash with a stand-in `docker` (it reports one unhealthy container and
/// accepts `restart`; it proves the watchdog's logic, not Docker) and the real curl posting to an
/// HTTP server of this test standing in for the webhook; judged by shellcheck too.
#[test]
fn an_unwatched_hosts_watchdog_tells_the_receivers_of_a_restart_once_an_hour() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build(&repo().join("flake-free-examples/postx-hetzner"), &tmp.path().join("store"), &tmp.path().join("out"));
    let host = out.join("hosts/client-alpha");
    oracle("sh", &host.join("watchdog/kiln-watchdog.sh")).unwrap();
    let message: serde_json::Value = serde_json::from_str(&read(&host.join("watchdog/notice-ops-chat.json"))).unwrap();
    assert_eq!(message["channel"], "#alerts");

    let t = tmp.path();
    let (bin, state, secrets) = (t.join("bin"), t.join("state"), t.join("secrets"));
    for d in [&bin, &state, &secrets] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(
        bin.join("docker"),
        "#!/bin/sh\n# Stand-in for docker: one unhealthy container of project `postx`.\ncase \"$*\" in ps*label=com.docker.compose.project=postx*health=unhealthy*) echo postx-nextcloud-alpha-1 ;; esac\nexit 0\n",
    )
    .unwrap();
    assert!(Command::new("chmod").arg("+x").arg(bin.join("docker")).status().unwrap().success());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    std::fs::write(secrets.join("alert_webhook_url"), format!("http://127.0.0.1:{}/hooks/abc\n", l.local_addr().unwrap().port())).unwrap();
    let script = read(&host.join("watchdog/kiln-watchdog.sh"))
        .replace("/opt/kiln/", &format!("{}/", host.display()))
        .replace("/etc/kiln/secrets/", &format!("{}/", secrets.display()));
    let run = || {
        let out = Command::new("dash")
            .arg("-c")
            .arg(&script)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("KILN_WATCHDOG_STATE", &state)
            .env("KILN_WATCHDOG_TEXTFILE", t.join("no-textfile"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let server = std::thread::spawn(move || (receive_within(&l), l));
    run();
    run();
    let said = run();
    assert!(said.contains("restarting"), "the third unhealthy check restarts it: {said}");
    let (first, l) = server.join().unwrap();
    let (line, _, body) = first.expect("the restart is posted");
    assert_eq!(line, "POST /hooks/abc HTTP/1.1");
    let posted: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let text_posted = posted["text"].as_str().unwrap();
    assert!(
        text_posted.starts_with("kiln: the watchdog restarted container postx-nextcloud-alpha-1 on host client-alpha (system postx)"),
        "{text_posted}"
    );
    assert_eq!(posted["channel"], "#alerts");
    // Three more checks, a second restart within the hour: not told again.
    for _ in 0..3 {
        run();
    }
    assert!(l.accept().is_err(), "a second restart within the hour posts nothing");
    assert!(!state.join("postx-nextcloud-alpha-1.message").exists(), "no message left behind");
}
