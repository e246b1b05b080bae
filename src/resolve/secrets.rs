//! `[secrets]` against the files load found: missing, refused or without the key.

use super::*;

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
