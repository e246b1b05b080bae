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
        for s in b.password.iter().chain(&b.environment) {
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
        Some(BackupPlan {
            repository: b.repository.as_ref()?.value.clone(),
            password: b.password.as_ref()?.value.clone(),
            environment: b.environment.as_ref().map(|e| e.value.clone()),
            schedule: b.schedule.as_ref().map_or_else(crate::types::Calendar::default_backup, |c| c.value.clone()),
            check: b.check.as_ref().map_or_else(crate::types::Calendar::default_check, |c| c.value.clone()),
            keep: b.keep.iter().map(|(k, n)| (k.value.clone(), n.value)).collect(),
        })
    }
}
