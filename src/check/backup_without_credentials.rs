//! `backup-without-credentials`: a `[backup]` repository whose backend needs a credential (an
//! SFTP server's key pair and pinned host key, S3 access keys) that the system does not name.

use super::Rule;
use crate::backup_repo::{Backend, backend};
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;

pub const RULE: Rule = Rule {
    id: "backup-without-credentials",
    summary: "a backup repository whose backend needs credentials the system does not name",
    explanation: "restic reaches its repository with the backend's own credentials, which kiln \
passes to the backup script on each host without putting them in the store. An SFTP repository \
(a Hetzner Storage Box: `sftp:uXXXXX@uXXXXX.your-storagebox.de:/path`, reached on port 23) \
needs `ssh_key`, the secret holding the private key whose public half the server accepts, and \
`host_key`, the server's public host key (`ssh-ed25519 AAAA…`, from `ssh-keyscan -p 23 HOST` \
checked against the provider's published fingerprint): the script pins it in its own \
`known_hosts` and runs `ssh` with `StrictHostKeyChecking=yes`, so a server presenting another \
key is refused instead of trusted on first use. An S3 repository needs `access_key_id` and \
`secret_access_key`, the secrets restic reads as `AWS_ACCESS_KEY_ID` and \
`AWS_SECRET_ACCESS_KEY`. A REST server URL with a user (`rest:https://USER@HOST/`) needs \
`rest_password`, the secret the script puts into the URL when it runs; a password written in the \
URL itself is refused, since the script, and so the store, would hold it. B2, Azure, Google Cloud Storage, Swift and rclone repositories take \
their settings from the `environment` secret (`KEY=value` lines). Without them the timer runs \
every night and every run fails: the first snapshot is never written. Not waivable: each \
backend has a declared way to name its credentials, and trusting an unknown host key would \
send the data to whoever answers.",
    allowable: false,
    check,
};

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let Some(plan) = &sys.backup else { return Vec::new() };
    // A repository kiln cannot parse was refused by resolve.
    let Ok(kind) = backend(&plan.repository) else { return Vec::new() };
    let mut missing: Vec<(&str, &str)> = Vec::new();
    match &kind {
        Backend::Sftp(s) => {
            if plan.ssh_key.is_none() {
                missing.push(("ssh_key", "ssh_key = \"SECRET\" (the private key the server accepts)"));
            }
            if plan.host_key.is_none() {
                missing.push(("host_key", "host_key = \"ssh-ed25519 AAAA…\" (the server's public host key)"));
            }
            if !missing.is_empty() {
                return vec![diagnostic(
                    plan,
                    format!("the SFTP repository on `{}` (port {}) needs {}", s.host, s.port, names(&missing)),
                    "restic cannot log in, or would trust any host key",
                    &missing,
                )];
            }
        }
        Backend::S3 => {
            if plan.access_key_id.is_none() {
                missing.push(("access_key_id", "access_key_id = \"SECRET\" (AWS_ACCESS_KEY_ID)"));
            }
            if plan.secret_access_key.is_none() {
                missing.push(("secret_access_key", "secret_access_key = \"SECRET\" (AWS_SECRET_ACCESS_KEY)"));
            }
            if !missing.is_empty() {
                return vec![diagnostic(
                    plan,
                    format!("the S3 repository needs {}", names(&missing)),
                    "restic cannot sign its requests",
                    &missing,
                )];
            }
        }
        Backend::Other(scheme) if plan.environment.is_none() => {
            missing.push(("environment", "environment = \"SECRET\" (KEY=value lines restic reads)"));
            return vec![diagnostic(
                plan,
                format!("the {scheme} repository needs its credentials in `environment`"),
                "restic finds no credentials for this backend",
                &missing,
            )];
        }
        Backend::Rest(r) if r.inline_password => {
            return vec![
                Diagnostic::error(RULE.id, "the REST repository's URL holds its password")
                    .primary(plan.repository_span, "this password would be written into every host's script in the store")
                    .secondary(plan.span, "in this `[backup]`")
                    .help("keep only the user in the URL (`rest:https://USER@HOST/`) and name a secret with the password: `rest_password = \"SECRET\"`"),
            ];
        }
        Backend::Rest(r) if r.user.is_some() && plan.rest_password.is_none() => {
            missing.push(("rest_password", "rest_password = \"SECRET\" (the password of the URL's user)"));
            return vec![diagnostic(
                plan,
                format!("the REST repository logs in as `{}` but names no password", r.user.as_deref().unwrap_or_default()),
                "the REST server refuses restic",
                &missing,
            )];
        }
        Backend::Rest(_) | Backend::Local | Backend::Other(_) => {}
    }
    // Credentials for another backend than the repository's are a mistake, not a spare.
    let foreign: Vec<&str> = [
        ("ssh_key", plan.ssh_key.is_some() && !matches!(kind, Backend::Sftp(_))),
        ("host_key", plan.host_key.is_some() && !matches!(kind, Backend::Sftp(_))),
        ("access_key_id", plan.access_key_id.is_some() && kind != Backend::S3),
        ("secret_access_key", plan.secret_access_key.is_some() && kind != Backend::S3),
        ("rest_password", plan.rest_password.is_some() && !matches!(&kind, Backend::Rest(r) if r.user.is_some())),
    ]
    .into_iter()
    .filter_map(|(k, bad)| bad.then_some(k))
    .collect();
    if foreign.is_empty() {
        return Vec::new();
    }
    vec![
        Diagnostic::error(RULE.id, format!("`{}` do not belong to this repository's backend", foreign.join("`, `")))
            .primary(plan.repository_span, "this repository does not use them")
            .secondary(plan.span, "declared in this `[backup]`")
            .help("`ssh_key` and `host_key` are for `sftp:` repositories, `access_key_id` and `secret_access_key` for `s3:` ones, `rest_password` for a `rest:` URL with a user"),
    ]
}

fn names(missing: &[(&str, &str)]) -> String {
    missing.iter().map(|(k, _)| format!("`{k}`")).collect::<Vec<_>>().join(" and ")
}

fn diagnostic(plan: &crate::model::BackupPlan, message: String, label: &str, missing: &[(&str, &str)]) -> Diagnostic {
    let add: Vec<&str> = missing.iter().map(|(_, h)| *h).collect();
    Diagnostic::error(RULE.id, message)
        .primary(plan.repository_span, label)
        .secondary(plan.span, "in this `[backup]`")
        .help(format!("add to `[backup]`: {}", add.join("; ")))
}
