//! `[hosts.X] ssh_port`, judged by the programs that consume it: Debian's sshd reads the
//! provisioner's drop-in (`sshd -t`, and `sshd -T` says the port it would listen on),
//! fail2ban's own client reads the jail kiln writes (`fail2ban-client -d`: the sshd jail bans
//! on that port), the OpenTofu root's DigitalOcean firewall opens it instead of 22 (terraform
//! validates every example's root in tests/tofu.rs), and `kiln deploy`'s SSH connection —
//! directly and through a bastion — reaches a loopback sshd that listens only there.

mod common;

use common::{build, read, repo, run, sshd, text};
use kiln::deploy::host::{Host, Ssh, SshSettings, SshTarget};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn maidan() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&repo().join("flake-free-examples/maidan-cloud"), &tmp.path().join("store"), &tmp.path().join("r"));
    (tmp, result)
}

/// The text the provisioner's `put_text DEST …` line installs at `dest`, as dash reads the
/// line's quoting. The stand-in `put_text` only writes its fourth argument (the content) to a
/// file: it proves what the quoted content is, not that the real function installs it.
fn installed(provision: &str, dest: &str, out: &Path) -> String {
    // The call opens an `if …; then` and its quoted content spans lines: run only the call.
    let start = provision.find(&format!("put_text {dest} ")).unwrap_or_else(|| panic!("no put_text call for {dest}"));
    let call = &provision[start..start + provision[start..].find("; then\n").expect("the call's `; then`")];
    let script = format!("put_text() {{ printf '%s' \"$4\" > \"$OUT\"; }}\n{call}\n");
    let o = run(Command::new("dash").arg("-c").arg(&script).env("OUT", out));
    assert!(o.status.success(), "dash: {}", text(&o.stderr));
    read(out)
}

#[test]
fn sshd_listens_on_the_hosts_ssh_port() {
    let (tmp, result) = maidan();
    for h in ["maidan", "legacy"] {
        let provision = read(&result.join(format!("hosts/{h}/provision.sh")));
        let dropin = tmp.path().join(format!("{h}-00-kiln.conf"));
        let conf = installed(&provision, "/etc/ssh/sshd_config.d/00-kiln.conf", &dropin);
        assert!(conf.lines().any(|l| l == "Port 2222"), "{h}: the drop-in sets no port:\n{conf}");
        // Debian's sshd_config: the drop-ins first, then its own settings (Port left commented).
        let key = tmp.path().join(format!("{h}-hostkey"));
        sshd::keygen(&key);
        let main = tmp.path().join(format!("{h}-sshd_config"));
        std::fs::write(
            &main,
            format!("Include {}\nHostKey {}\nUsePAM no\nKbdInteractiveAuthentication no\n", dropin.display(), key.display()),
        )
        .unwrap();
        let o = run(&mut sshd::command(tmp.path(), &["-T", "-f", main.to_str().unwrap()]));
        assert!(o.status.success(), "{h}: sshd rejects the drop-in: {}", text(&o.stderr));
        let effective = text(&o.stdout);
        let ports: Vec<&str> = effective.lines().filter_map(|l| l.strip_prefix("port ")).collect();
        assert_eq!(ports, ["2222"], "{h}: the ports sshd would listen on");
        // ufw opens the port, and no longer 22.
        assert!(provision.contains("to any port 2222 comment 'ssh from the admin sources'"), "{h}: no ufw rule for 2222");
        assert!(!provision.contains("to any port 22 "), "{h}: ufw still opens 22");
    }
}

#[test]
fn fail2ban_bans_on_the_ssh_port() {
    let (tmp, result) = maidan();
    let provision = read(&result.join("hosts/maidan/provision.sh"));
    let etc = tmp.path().join("fail2ban");
    common::copy_tree(&repo().join(".test-tools/fail2ban/etc/fail2ban"), &etc);
    let jail = installed(&provision, "/etc/fail2ban/jail.d/kiln.local", &etc.join("jail.d/kiln.local"));
    assert!(jail.contains("[sshd]"), "{jail}");
    // Debian's fail2ban, unpacked by scripts/install-test-deps as .test-tools/bin/fail2ban-regex runs it.
    let unpacked = repo().join(".test-tools/fail2ban");
    let o = run(Command::new("/usr/bin/python3")
        .arg(unpacked.join("usr/bin/fail2ban-client"))
        .arg("-c")
        .arg(&etc)
        .arg("-d")
        .env("PYTHONPATH", unpacked.join("usr/lib/python3/dist-packages")));
    assert!(o.status.success(), "fail2ban-client -d: {}{}", text(&o.stdout), text(&o.stderr));
    let dump = text(&o.stdout);
    let sshd: Vec<&str> = dump.lines().filter(|l| l.contains("'sshd'") && l.contains("'port'")).collect();
    assert!(!sshd.is_empty(), "fail2ban's sshd jail names no port:\n{dump}");
    assert!(sshd.iter().all(|l| l.contains("'2222'")), "the sshd jail bans another port:\n{}", sshd.join("\n"));
}

#[test]
fn the_provider_firewall_opens_the_ssh_port() {
    let (_tmp, result) = maidan();
    let root: serde_json::Value = serde_json::from_str(&read(&result.join("tofu/main.tf.json"))).unwrap();
    let fw = &root["resource"]["digitalocean_firewall"];
    let rules: Vec<&serde_json::Value> =
        fw.as_object().expect("a DigitalOcean firewall").values().flat_map(|f| f["inbound_rule"].as_array().unwrap().iter()).collect();
    let ports: Vec<&str> = rules.iter().filter_map(|r| r["port_range"].as_str()).collect();
    assert!(ports.contains(&"2222"), "no inbound rule for 2222: {ports:?}");
    assert!(!ports.contains(&"22"), "the firewall still opens 22: {ports:?}");
}

#[test]
fn deploy_connects_on_the_ssh_port_directly_and_through_a_bastion() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    assert_ne!(port, 22);
    let host_key = sshd::keygen(&dir.join("hostkey"));
    sshd::keygen(&dir.join("client"));
    let _sshd = sshd::Loopback::start(dir, port, &dir.join("hostkey"), &dir.join("client.pub"), "", "");
    // The key pinned under both names, as `kiln deploy`'s state directory holds it.
    std::fs::write(dir.join("known_hosts"), format!("box {host_key}\njump {host_key}\n")).unwrap();
    std::fs::write(dir.join("ssh_config"), format!("IdentityFile {}\nIdentitiesOnly yes\n", dir.join("client").display())).unwrap();
    let control = dir.join("ctl");
    std::fs::create_dir(&control).unwrap();
    let settings = SshSettings {
        known_hosts: dir.join("known_hosts"),
        control_dir: control,
        config: Some(dir.join("ssh_config")),
        connect_timeout: Duration::from_secs(10),
    };
    let user = text(&run(Command::new("id").arg("-un")).stdout).trim().to_string();
    let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let direct = SshTarget { alias: "box".into(), destination: loopback.to_string(), port, user: user.clone(), bastion: None };
    let jump = SshTarget {
        alias: "box".into(),
        destination: loopback.to_string(),
        port,
        user: user.clone(),
        bastion: Some(Box::new(SshTarget { alias: "jump".into(), destination: loopback.to_string(), port, user, bastion: None })),
    };
    for (what, target) in [("directly", direct), ("through the bastion", jump)] {
        let ssh = Ssh { target, settings: settings.clone() };
        assert_eq!(ssh.resolved().expect("ssh -G").1, port, "{what}: ssh -G's port (ssh-keyscan's)");
        let out = ssh.run("echo reached", b"", Duration::from_secs(60)).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(out.stdout_text().trim(), "reached", "{what}");
        ssh.close();
    }
}
