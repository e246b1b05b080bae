//! Backups that authenticate. The backup script kiln writes is run by dash in a temporary
//! root: with stand-in `restic`, `ssh` and `docker` on PATH (stand-ins: they prove which
//! arguments, files and variables restic and ssh are handed, not the protocol), every restic
//! call of an SFTP repository goes through kiln's ssh command with the delivered key and only
//! the pinned host key, and an S3 repository's keys reach restic as `AWS_*` variables read from
//! the delivered secrets. Then the real thing: Debian's `sshd` on a loopback port with its own
//! host key and a real `restic` back up through the script to it, and a server presenting
//! another host key is refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Stand-in restic: logs its arguments and credentials variables, then runs the
/// `sftp.command` as restic does (split on spaces), so the stand-in ssh sees what ssh would.
const RESTIC: &str = r#"#!/bin/sh
log=$STANDIN_LOG
printf 'restic' >>"$log"; for a; do printf ' [%s]' "$a" >>"$log"; done; echo >>"$log"
printf 'env AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s RESTIC_PASSWORD_FILE=%s RESTIC_REPOSITORY=%s\n' \
	"${AWS_ACCESS_KEY_ID-unset}" "${AWS_SECRET_ACCESS_KEY-unset}" "${RESTIC_PASSWORD_FILE-unset}" "${RESTIC_REPOSITORY-unset}" >>"$log"
while [ $# -gt 0 ]; do
	case $1 in -o) shift; case $1 in sftp.command=*) ${1#sftp.command=} </dev/null || exit 1 ;; esac ;; esac
	shift
done
"#;

/// Stand-in ssh: logs its arguments and refuses a key file it cannot read.
const SSH: &str = r#"#!/bin/sh
log=$STANDIN_LOG
printf 'ssh' >>"$log"; for a; do printf ' [%s]' "$a" >>"$log"; done; echo >>"$log"
while [ $# -gt 0 ]; do
	case $1 in -i) [ -r "$2" ] || { echo "stand-in ssh: cannot read $2" >&2; exit 255; } ;; esac
	shift
done
"#;

const DOCKER: &str = "#!/bin/sh\necho \"stand-in dump: $*\"\n";

fn standins(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, body) in [("restic", RESTIC), ("ssh", SSH), ("docker", DOCKER)] {
        std::fs::write(bin.join(name), body).unwrap();
        let mut p = std::fs::metadata(bin.join(name)).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
        std::fs::set_permissions(bin.join(name), p).unwrap();
    }
    bin
}

/// The host's backup script with every absolute path it uses moved under `root`.
fn localise(script: &str, root: &Path) -> String {
    let r = root.display().to_string();
    script
        .replace("/etc/kiln/secrets/", &format!("{r}/secrets/"))
        .replace("/opt/kiln/backup/known_hosts", &format!("{r}/known_hosts"))
        .replace("/var/backups/kiln", &format!("{r}/dumps"))
        // Docker's data root (on the data volume, or the default): its volumes under `root`.
        .replace("/var/lib/kiln/data/docker", &r)
        .replace("/var/lib/docker", &r)
}

/// Runs the localised script with `path` first on PATH; returns (status ok, stderr).
fn run_script(script: &str, root: &Path, path: &Path, arg: Option<&str>) -> (bool, String) {
    let file = root.join("kiln-backup.sh");
    std::fs::write(&file, script).unwrap();
    std::fs::create_dir_all(root.join("textfile")).unwrap();
    let mut cmd = Command::new("dash");
    cmd.arg(&file).args(arg);
    cmd.env("PATH", format!("{}:{}", path.display(), "/usr/local/bin:/usr/bin:/bin"))
        .env("STANDIN_LOG", root.join("log"))
        .env("KILN_BACKUP_TEXTFILE", root.join("textfile"))
        .env("XDG_CACHE_HOME", root.join("cache"));
    let out = run(&mut cmd);
    (out.status.success(), text(&out.stderr))
}

fn built(example: &str, host: &str, tmp: &Path) -> PathBuf {
    build(&repo().join("flake-free-examples").join(example), &tmp.join("store"), &tmp.join("out")).join("hosts").join(host).join("backup")
}

#[test]
fn an_sftp_backup_dials_with_the_delivered_key_and_only_the_pinned_host_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = built("postx-hetzner", "client-alpha", tmp.path());
    let script = std::fs::read_to_string(dir.join("kiln-backup.sh")).unwrap();
    let known = std::fs::read_to_string(dir.join("known_hosts")).unwrap();
    // The pinned key is the one system.toml declares, for the Storage Box's port 23.
    let system = std::fs::read_to_string(repo().join("flake-free-examples/postx-hetzner/system.toml")).unwrap();
    let declared = system.lines().find_map(|l| l.strip_prefix("host_key = \"")).unwrap().trim_end_matches('"');
    assert_eq!(known, format!("[u123456.your-storagebox.de]:23 {declared}\n"));
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("secrets")).unwrap();
    std::fs::write(root.join("known_hosts"), &known).unwrap();
    // Real ssh tooling finds the pin under the name ssh looks up for port 23.
    let found = run(Command::new("ssh-keygen").args(["-F", "[u123456.your-storagebox.de]:23", "-f"]).arg(root.join("known_hosts")));
    assert!(found.status.success() && text(&found.stdout).contains(declared), "{}", text(&found.stderr));
    let bin = standins(tmp.path());
    let local = localise(&script, &root);
    // Without the delivered key the script stops before restic runs.
    let (ok, err) = run_script(&local, &root, &bin, None);
    assert!(!ok && err.contains("the SSH key") && err.contains("was not delivered"), "{err}");
    assert!(!root.join("log").exists() || !std::fs::read_to_string(root.join("log")).unwrap().contains("restic"));
    std::fs::write(root.join("secrets/storagebox_ssh_key"), "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    std::fs::write(root.join("secrets/restic-password-client-alpha"), "pw\n").unwrap();
    for arg in [None, Some("check")] {
        let _ = std::fs::remove_file(root.join("log"));
        let (ok, err) = run_script(&local, &root, &bin, arg);
        assert!(ok, "{arg:?}: {err}");
        let log = std::fs::read_to_string(root.join("log")).unwrap();
        let r = root.display();
        let ssh = format!(
            "ssh [-i] [{r}/secrets/storagebox_ssh_key] [-o] [IdentitiesOnly=yes] [-o] [UserKnownHostsFile={r}/known_hosts] [-o] \
[GlobalKnownHostsFile=/dev/null] [-o] [StrictHostKeyChecking=yes] [-o] [UpdateHostKeys=no] [-o] [BatchMode=yes] [-p] [23] \
[-l] [u123456] [-s] [u123456.your-storagebox.de] [sftp]"
        );
        let restic: Vec<&str> = log.lines().filter(|l| l.starts_with("restic ")).collect();
        assert!(restic.len() >= if arg.is_some() { 2 } else { 3 }, "{log}");
        for call in &restic {
            assert!(call.starts_with(&format!("restic [-o] [sftp.command={}] ", ssh.replace(['[', ']'], ""))), "{call}");
        }
        // Every restic call dialled once through kiln's ssh, with exactly these arguments.
        assert_eq!(log.lines().filter(|l| l.starts_with("ssh ")).count(), restic.len(), "{log}");
        assert!(log.lines().filter(|l| l.starts_with("ssh ")).all(|l| l == ssh), "{log}");
        if arg == Some("check") {
            assert!(restic.last().unwrap().contains("[check] [--read-data-subset=10%]"), "{log}");
        } else {
            assert!(restic.iter().any(|c| c.contains("[backup]")) && restic.iter().any(|c| c.contains("[forget]")), "{log}");
        }
    }
}

/// Civic audit C6: civic-scaleway had no backups at all. Each of its servers that holds data now
/// backs it up with restic to its own path of the Amsterdam bucket its OpenTofu root creates.
#[test]
fn civic_scaleway_backs_up_every_server_with_data_to_its_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build(&repo().join("flake-free-examples/civic-scaleway"), &tmp.path().join("store"), &tmp.path().join("out"));
    for host in ["tools-prod", "management", "authentik-prod"] {
        let script = std::fs::read_to_string(out.join("hosts").join(host).join("backup/kiln-backup.sh"))
            .unwrap_or_else(|e| panic!("{host} backs up: {e}"));
        assert!(script.contains(&format!("RESTIC_REPOSITORY=s3:https://s3.nl-ams.scw.cloud/civic-scaleway-backups/{host}")), "{script}");
        assert!(script.contains("/etc/kiln/secrets/backup_access_key_id"), "{script}");
    }
    let tf: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("tofu/main.tf.json")).unwrap()).unwrap();
    let bucket = &tf["resource"]["scaleway_object_bucket"]["backups"];
    assert_eq!((bucket["name"].as_str(), bucket["region"].as_str()), (Some("civic-scaleway-backups"), Some("nl-ams")), "{bucket}");
}

#[test]
fn an_s3_backup_hands_restic_the_keys_from_the_delivered_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build(&repo().join("flake-free-examples/maidan-cloud"), &tmp.path().join("store"), &tmp.path().join("out"));
    let host = std::fs::read_dir(out.join("hosts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|h| h.join("backup/kiln-backup.sh").is_file())
        .min()
        .expect("a maidan host backs up");
    let script = std::fs::read_to_string(host.join("backup/kiln-backup.sh")).unwrap();
    assert!(!host.join("backup/known_hosts").exists(), "no host key for an S3 repository");
    assert!(script.contains("RESTIC_REPOSITORY=s3:https://ams3.digitaloceanspaces.com/"), "{script}");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("secrets")).unwrap();
    let (id, secret) = ("DO00EXAMPLEKEYID", "s3cr3t/with+chars=");
    std::fs::write(root.join("secrets/spaces_access_key_id"), format!("{id}\n")).unwrap();
    std::fs::write(root.join("secrets/spaces_secret_access_key"), format!("{secret}\n")).unwrap();
    std::fs::write(root.join("secrets/restic_password"), "pw\n").unwrap();
    let bin = standins(tmp.path());
    let (ok, err) = run_script(&localise(&script, &root), &root, &bin, None);
    assert!(ok, "{err}");
    let log = std::fs::read_to_string(root.join("log")).unwrap();
    let envs: Vec<&str> = log.lines().filter(|l| l.starts_with("env ")).collect();
    assert!(!envs.is_empty());
    for e in envs {
        assert!(e.starts_with(&format!("env AWS_ACCESS_KEY_ID={id} AWS_SECRET_ACCESS_KEY={secret} ")), "{e}");
    }
    assert!(!log.contains("sftp.command") && !log.contains("\nssh "), "{log}");
    // The values live only in the delivered files: the script names the files.
    assert!(script.contains("AWS_ACCESS_KEY_ID=$(cat /etc/kiln/secrets/spaces_access_key_id)"), "{script}");
}

/// A test system whose one host backs up a volume to `repository`, with the `[backup]` lines
/// `extra` and the secrets `secrets` declared.
fn backup_system(dir: &Path, repository: &str, extra: &str, secrets: &[&str]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let mut s = format!(
        "{}\n[hosts.db]\nprovider = \"hetzner\"\nimage = \"debian-12\"\npublic = true\n\n[services.pg]\nmodule = \"db\"\nhost = \"db\"\n\
secrets = {{ password = \"pg_password\" }}\n\n[backup]\nrepository = \"{repository}\"\npassword = \"restic_password\"\n{extra}\
keep = {{ daily = 7 }}\n",
        preamble("sftp")
    );
    for name in ["pg_password", "restic_password"].iter().chain(secrets) {
        s.push_str(&format!("\n[secrets.{name}]\nfile = \"s.sops.yaml\"\n"));
    }
    std::fs::write(dir.join("system.toml"), s).unwrap();
    let out = build_with_modules(&repo().join("tests/fixtures/modules"), dir, &dir.join("store"), &dir.join("out"));
    std::fs::read_to_string(out.join("hosts/db/backup/kiln-backup.sh")).unwrap()
}

#[test]
fn a_rest_backup_puts_the_delivered_password_into_the_url_only_when_it_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let script = backup_system(
        &tmp.path().join("system"),
        "rest:https://backup@rest.example.com:8000/{host}/",
        "rest_password = \"rest_password\"\n",
        &["rest_password"],
    );
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("secrets")).unwrap();
    let password = "p@ss:w/rd %41 é'\"$x";
    std::fs::write(root.join("secrets/rest_password"), format!("{password}\n")).unwrap();
    std::fs::write(root.join("secrets/restic_password"), "pw\n").unwrap();
    std::fs::create_dir_all(root.join("volumes/sftp_pg-data/_data")).unwrap();
    let bin = standins(tmp.path());
    let (ok, err) = run_script(&localise(&script, &root), &root, &bin, None);
    assert!(ok, "{err}");
    let log = std::fs::read_to_string(root.join("log")).unwrap();
    let encoded: String = password.bytes().map(|b| format!("%{b:02x}")).collect();
    let want = format!("RESTIC_REPOSITORY=rest:https://backup:{encoded}@rest.example.com:8000/db/");
    let envs: Vec<&str> = log.lines().filter(|l| l.starts_with("env ")).collect();
    assert!(!envs.is_empty() && envs.iter().all(|e| e.ends_with(&want)), "{log}");
    assert!(!script.contains("p@ss"), "{script}");
}

#[test]
fn the_backup_scripts_pass_shellcheck_and_dash() {
    let tmp = tempfile::tempdir().unwrap();
    let mut scripts = Vec::new();
    for (example, host) in [("postx-hetzner", "client-alpha"), ("five-vps-saas", "db"), ("maidan-cloud", "maidan")] {
        scripts.push((example.to_string(), built(example, host, &tmp.path().join(example)).join("kiln-backup.sh")));
    }
    let rest = backup_system(&tmp.path().join("rest"), "rest:https://u@h/", "rest_password = \"rest_password\"\n", &["rest_password"]);
    std::fs::write(tmp.path().join("rest.sh"), rest).unwrap();
    scripts.push(("a REST repository".into(), tmp.path().join("rest.sh")));
    for (what, script) in scripts {
        oracle("sh", &script).unwrap_or_else(|e| panic!("{what}: {e}"));
        let n = run(Command::new("dash").arg("-n").arg(&script));
        assert!(n.status.success(), "{what}: {}", text(&n.stderr));
    }
}

// --- the real thing: restic over SFTP to a loopback sshd ------------------------------------

/// The loopback sshd's SFTP server, which restic's sftp backend talks to.
const SFTP: &str = "Subsystem sftp internal-sftp\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn snapshots(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("snapshots")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn restic_backs_up_over_sftp_to_a_server_with_the_pinned_host_key_and_refuses_another() {
    assert!(run(Command::new("restic").arg("version")).status.success(), "restic is not installed (run scripts/install-test-deps)");
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let host_pub = sshd::keygen(&t.join("host_key"));
    let _other_pub = sshd::keygen(&t.join("other_host_key"));
    sshd::keygen(&t.join("client_key"));
    let port = free_port();
    let user = text(&run(Command::new("id").arg("-un")).stdout).trim().to_string();
    let repo_dir = t.join("repo");
    // A system whose one host backs up a volume to this sshd, pinned to its host key.
    let system = t.join("system");
    std::fs::create_dir_all(&system).unwrap();
    std::fs::write(
        system.join("system.toml"),
        format!(
            "{}\n[hosts.db]\nprovider = \"hetzner\"\nimage = \"debian-12\"\npublic = true\n\n[services.pg]\nmodule = \"db\"\nhost = \"db\"\n\
secrets = {{ password = \"pg_password\" }}\n\n[backup]\nrepository = \"sftp://{user}@127.0.0.1:{port}/{}\"\npassword = \"restic_password\"\n\
ssh_key = \"backup_ssh_key\"\nhost_key = \"{host_pub}\"\nkeep = {{ daily = 7 }}\n\n[secrets.pg_password]\nfile = \"s.sops.yaml\"\n\n\
[secrets.restic_password]\nfile = \"s.sops.yaml\"\n\n[secrets.backup_ssh_key]\nfile = \"s.sops.yaml\"\n",
            preamble("sftp"),
            repo_dir.display()
        ),
    )
    .unwrap();
    let out = build_with_modules(&repo().join("tests/fixtures/modules"), &system, &t.join("store"), &t.join("out"));
    let dir = out.join("hosts/db/backup");
    let script = std::fs::read_to_string(dir.join("kiln-backup.sh")).unwrap();
    assert!(script.contains(&format!("-p {port} -l {user} -s 127.0.0.1 sftp")), "{script}");
    // The host as delivered: secrets, the payload's known_hosts, a volume with data.
    let root = t.join("root");
    std::fs::create_dir_all(root.join("secrets")).unwrap();
    std::fs::create_dir_all(root.join("volumes/sftp_pg-data/_data")).unwrap();
    std::fs::write(root.join("volumes/sftp_pg-data/_data/table"), "rows\n").unwrap();
    std::fs::copy(t.join("client_key"), root.join("secrets/backup_ssh_key")).unwrap();
    std::fs::write(root.join("secrets/restic_password"), "correct horse\n").unwrap();
    std::fs::copy(dir.join("known_hosts"), root.join("known_hosts")).unwrap();
    let local = localise(&script, &root);
    // Only the real restic and ssh: the empty stand-in directory shadows nothing.
    let nothing = t.join("no-standins");
    std::fs::create_dir_all(&nothing).unwrap();

    // The server with the pinned key: the repository is created and holds one snapshot.
    {
        let _server = sshd::Loopback::start(t, port, &t.join("host_key"), &t.join("client_key.pub"), SFTP, "");
        let (ok, err) = run_script(&local, &root, &nothing, None);
        assert!(ok, "backup failed: {err}\nsshd: {}", std::fs::read_to_string(sshd::Loopback::log_file(t, port)).unwrap_or_default());
        assert!(repo_dir.join("config").is_file(), "no repository at {}", repo_dir.display());
        assert_eq!(snapshots(&repo_dir), 1);
        let (ok, err) = run_script(&local, &root, &nothing, Some("check"));
        assert!(ok, "check failed: {err}");
        let metric = std::fs::read_to_string(root.join("textfile/kiln_backup.prom")).unwrap();
        assert!(metric.contains("kiln_backup_last_run_success 1"), "{metric}");
        // A wrong repository password fails with restic's own reason, not with `restic init`'s
        // "config file already exists", which the first error used to be buried under.
        std::fs::write(root.join("secrets/restic_password"), "wrong horse\n").unwrap();
        let (ok, err) = run_script(&local, &root, &nothing, None);
        assert!(!ok, "a wrong password backed up");
        assert!(err.contains("wrong password"), "{err}");
        assert!(!err.contains("already exists") && !err.contains("already initialized"), "init was tried: {err}");
        std::fs::write(root.join("secrets/restic_password"), "correct horse\n").unwrap();
    }
    // The same address answering with another host key: ssh refuses it, nothing is written.
    {
        let _server = sshd::Loopback::start(t, port, &t.join("other_host_key"), &t.join("client_key.pub"), SFTP, "");
        let (ok, err) = run_script(&local, &root, &nothing, None);
        assert!(!ok, "a server with another host key was trusted: {err}");
        assert_eq!(snapshots(&repo_dir), 1, "no snapshot written to the impostor");
        // Why: the script's own ssh command, run directly (restic relays ssh's complaint only
        // when it reads it before exiting), refuses the key.
        let command = local.lines().find_map(|l| l.strip_prefix("sftp_command='")).unwrap().trim_end_matches('\'');
        let words: Vec<&str> = command.split(' ').collect();
        let o = run(Command::new(words[0]).args(&words[1..]).stdin(std::process::Stdio::null()));
        assert_eq!(o.status.code(), Some(255), "{}", text(&o.stderr));
        assert!(text(&o.stderr).contains("Host key verification failed"), "{}", text(&o.stderr));
    }
}
