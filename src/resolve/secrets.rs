//! `[secrets]` against the files load found: missing, refused or without the key; a reference
//! to a secret no `[secrets]` entry declares.

use super::*;

/// `undefined-secret` at a reference to `secret` when `[secrets]` does not declare it, with the
/// closest declared name or how to declare it.
pub(super) fn undefined_secret(secret: &Sp<String>, secrets: &BTreeMap<String, &SecretDecl>) -> Option<Diagnostic> {
    if secrets.contains_key(&secret.value) {
        return None;
    }
    Some(
        Diagnostic::error("undefined-secret", format!("secret `{}` is referenced but not defined", secret.value))
            .primary(secret.span, "not declared in `[secrets]`")
            .help(match did_you_mean(&secret.value, secrets.keys().map(String::as_str)) {
                Some(x) => format!("did you mean `{x}`?"),
                None => format!("declare it: `[secrets.{}]` with `file = \"secrets.sops.yaml\"`", secret.value),
            }),
    )
}

impl<'a> Resolver<'a> {
    /// A declared secret against what load found in its file.
    pub(super) fn secret_file(&mut self, s: &SecretDecl) {
        use crate::secrets::FileStatus;
        let Some(file) = &s.file else { return };
        let key = s.key.as_ref().unwrap_or(&s.name);
        match self.inputs.secret_files.get(&file.value) {
            None => {}
            Some(FileStatus::Missing) if !self.missing_files.insert(file.value.clone()) => {}
            Some(FileStatus::Missing) => self.err(
                Diagnostic::warning("secret-file-missing", format!("secret file `{}` does not exist", file.value))
                    .primary(file.span, "no such file next to the system")
                    .help("create it with `sops` or `kiln encrypt-secrets`; until then no value can be delivered"),
            ),
            Some(FileStatus::Refused(why)) => self.err(
                Diagnostic::error("unauthenticated-secrets", format!("secret file `{}` is refused: {why}", file.value))
                    .primary(file.span, "this file cannot be trusted"),
            ),
            Some(FileStatus::Sops { keys, .. }) if !keys.contains(&key.value) => {
                let mut d = Diagnostic::error("undefined-secret", format!("`{}` holds no key `{}`", file.value, key.value))
                    .primary(key.span, format!("not in {}", file.value));
                d = match did_you_mean(&key.value, keys.iter().map(String::as_str)) {
                    Some(m) => d.help(format!("did you mean `{m}`?")),
                    None => d.help(format!("add it with `sops {}`", file.value)),
                };
                self.err(d);
            }
            Some(FileStatus::Age { .. }) if s.key.is_some() => {
                self.err(Diagnostic::error("E0003", "a plain age file holds one secret: it has no keys").primary(key.span, "remove `key`"));
            }
            Some(_) => {}
        }
    }
}
