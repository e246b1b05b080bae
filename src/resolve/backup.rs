//! `[backup]`: one per system, its secrets declared, its schedule typed.

use super::*;

impl<'a> Resolver<'a> {
    /// `[backup]`: one per system; its secrets must be declared.
    pub(super) fn backup(
        &mut self,
        files: &'a [SystemFile],
        secrets: &BTreeMap<String, &'a SecretDecl>,
        sys: &System,
    ) -> Option<BackupPlan> {
        let decls: Vec<&BackupDecl> = files.iter().filter_map(|f| f.backup.as_ref()).collect();
        if let [first, second, ..] = decls[..] {
            self.err(
                Diagnostic::error("E0011", "`[backup]` is declared twice")
                    .primary(second.span, "declared again here")
                    .secondary(first.span, "first declared here"),
            );
        }
        let b = decls.first()?;
        // `{host}` in a secret name gives every host its own (one repository password per client).
        let backed_up: Vec<&str> = sys
            .hosts
            .values()
            .filter(|h| h.services.iter().any(|s| sys.services.get(s).is_some_and(Service::has_data)))
            .map(|h| h.name.as_str())
            .collect();
        for s in b
            .password
            .iter()
            .chain(&b.environment)
            .chain(&b.ssh_key)
            .chain(&b.access_key_id)
            .chain(&b.secret_access_key)
            .chain(&b.rest_password)
        {
            let names: BTreeSet<String> = if s.value.contains("{host}") {
                backed_up.iter().map(|h| s.value.replace("{host}", h)).collect()
            } else {
                BTreeSet::from([s.value.clone()])
            };
            for name in names.iter().filter(|n| !secrets.contains_key(*n)) {
                self.err(
                    Diagnostic::error("undefined-secret", format!("secret `{name}` is referenced but not defined"))
                        .primary(s.span, "not declared in `[secrets]`")
                        .help(format!("declare it: `[secrets.{name}]` with `file = \"secrets.sops.yaml\"`")),
                );
            }
        }
        if b.keep.is_empty() {
            self.err(
                Diagnostic::error("E0004", "`[backup]` keeps nothing")
                    .primary(b.span, "no retention")
                    .help("add `keep = { daily = 7, weekly = 4, monthly = 6 }`"),
            );
        }
        for (k, n) in &b.keep {
            if n.value < 1 {
                self.err(
                    Diagnostic::error("E0003", format!("keep {} must be at least 1", k.value)).primary(n.span, "expected a positive count"),
                );
            }
        }
        // The backend decides which credentials it needs (`check::backup_without_credentials`);
        // an SFTP server part kiln cannot put into an `ssh` command is refused here.
        if let Some(repo) = &b.repository
            && let Err(e) = crate::backup_repo::backend(&repo.value)
        {
            self.err(
                Diagnostic::error("E0003", format!("the backup repository is not one kiln can reach: {e}"))
                    .primary(repo.span, "not a restic repository kiln can authenticate to")
                    .help("write `sftp:USER@HOST:/path`, `sftp://USER@HOST:PORT//path`, `s3:https://ENDPOINT/BUCKET/path`, `rest:https://…/` or a local path"),
            );
        }
        Some(BackupPlan {
            span: b.span,
            repository_span: b.repository.as_ref()?.span,
            ssh_key: b.ssh_key.as_ref().map(|e| e.value.clone()),
            host_key: b.host_key.as_ref().map(|e| e.value.clone()),
            access_key_id: b.access_key_id.as_ref().map(|e| e.value.clone()),
            secret_access_key: b.secret_access_key.as_ref().map(|e| e.value.clone()),
            rest_password: b.rest_password.as_ref().map(|e| e.value.clone()),
            repository: b.repository.as_ref()?.value.clone(),
            password: b.password.as_ref()?.value.clone(),
            environment: b.environment.as_ref().map(|e| e.value.clone()),
            schedule: b.schedule.as_ref().map_or_else(crate::types::Calendar::default_backup, |c| c.value.clone()),
            check: b.check.as_ref().map_or_else(crate::types::Calendar::default_check, |c| c.value.clone()),
            drill: b.drill.as_ref().map(|c| c.value.clone()),
            keep: b.keep.iter().map(|(k, n)| (k.value.clone(), n.value)).collect(),
        })
    }
}
