//! How the backup script authenticates to its repository, values never in the store: an SFTP
//! server through kiln's own `ssh` command (the delivered key, only the pinned host key, in
//! the payload's `backup/known_hosts`), S3 through `AWS_*` variables read from the delivered
//! secrets when the script runs.

use std::fmt::Write;

use super::quote::sh;
use crate::backup_repo::{Backend, backend};
use crate::model::{BackupPlan, Host};

/// The pinned host key, next to the script in the payload.
pub const KNOWN_HOSTS: &str = "backup/known_hosts";

fn secret_path(name: &str, host: &Host) -> String {
    format!("{}/{}", super::SECRETS_DIR, name.replace("{host}", &host.name))
}

/// `known_hosts` for an SFTP repository with a pinned host key: one line, `[host]:port TYPE KEY`.
pub fn known_hosts(plan: &BackupPlan, repo: &str) -> Option<String> {
    let Ok(Backend::Sftp(s)) = backend(repo) else { return None };
    let key = plan.host_key.as_ref()?;
    // `TYPE BASE64 [comment]`: the comment stays out.
    let key: Vec<&str> = key.split(' ').take(2).collect();
    Some(format!("{} {}\n", s.known_hosts_name(), key.join(" ")))
}

/// The script's lines that give restic the backend's credentials (after the repository and
/// password are exported, before the first `restic`).
pub fn setup(plan: &BackupPlan, host: &Host, repo: &str) -> String {
    let mut o = String::new();
    match backend(repo) {
        Ok(Backend::Sftp(s)) => {
            let (Some(key), Some(_)) = (&plan.ssh_key, &plan.host_key) else { return o };
            let known = format!("{}/{KNOWN_HOSTS}", super::KILN_ROOT);
            // restic runs this command instead of its own `ssh` (`-o sftp.command`, split on
            // spaces: every word here is a kiln path, a typed user, host or port).
            let mut words = vec![
                "ssh".to_string(),
                "-i".into(),
                secret_path(key, host),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
                "-o".into(),
                format!("UserKnownHostsFile={known}"),
                "-o".into(),
                "GlobalKnownHostsFile=/dev/null".into(),
                "-o".into(),
                "StrictHostKeyChecking=yes".into(),
                "-o".into(),
                "UpdateHostKeys=no".into(),
                "-o".into(),
                "BatchMode=yes".into(),
                "-p".into(),
                s.port.to_string(),
            ];
            if let Some(u) = &s.user {
                words.extend(["-l".to_string(), u.clone()]);
            }
            words.extend(["-s".to_string(), s.ssh_host().to_string(), "sftp".into()]);
            let _ = writeln!(
                o,
                "# SFTP: restic dials through this ssh: the delivered key, and only the host key pinned in\n# {known} (a server with another key is refused, never trusted on first use)."
            );
            let _ = writeln!(o, "sftp_key={}", sh(&secret_path(key, host)));
            o.push_str("[ -r \"$sftp_key\" ] || { echo \"kiln-backup: the SSH key $sftp_key was not delivered\" >&2; exit 1; }\n");
            let _ = writeln!(o, "sftp_command={}", sh(&words.join(" ")));
            o.push_str("restic() {\n\tcommand restic -o \"sftp.command=$sftp_command\" \"$@\"\n}\n");
        }
        Ok(Backend::S3) => {
            let (Some(id), Some(secret)) = (&plan.access_key_id, &plan.secret_access_key) else { return o };
            o.push_str("# S3: restic signs with the keys read from the delivered secrets (never in the store).\n");
            let _ = writeln!(o, "AWS_ACCESS_KEY_ID=$(cat {})", sh(&secret_path(id, host)));
            let _ = writeln!(o, "AWS_SECRET_ACCESS_KEY=$(cat {})", sh(&secret_path(secret, host)));
            o.push_str("export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY\n");
        }
        Ok(Backend::Rest(_)) => {
            let (Some(secret), Some((before, after))) = (&plan.rest_password, crate::backup_repo::rest_password_split(repo)) else {
                return o;
            };
            o.push_str(
                r#"# REST server: the password, read from the delivered secret, goes into the URL restic reads
# (percent-encoded byte by byte; restic hides it when it prints the URL).
rest_enc() {
	printf %s "$1" | od -An -v -tx1 | tr -d ' \n' | sed 's/../%&/g'
}
"#,
            );
            let _ = writeln!(o, "rest_password=$(cat {})", sh(&secret_path(secret, host)));
            let _ = writeln!(o, "RESTIC_REPOSITORY={}:\"$(rest_enc \"$rest_password\")\"{}", sh(before), sh(after));
            o.push_str("unset rest_password\nexport RESTIC_REPOSITORY\n");
        }
        _ => {}
    }
    o
}
