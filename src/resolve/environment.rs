//! A service's own environment (`environment = { VAR = "value" }`, `env_secrets = { VAR =
//! "SECRET" }`), for a module that takes one (`[container] user_environment = true`: the `app`
//! module, whose image's variables no upstream defines). It adds to the module's environment and
//! never replaces a variable the module sets, which its other options and connections rely on;
//! a variable fed by a secret reaches the container through the root-only env file the
//! provisioner writes on the host (`render::service_env_file`), never through the store.

use super::*;

/// Whether the service's module takes an environment from it.
fn takes(p: &Partial<'_>) -> bool {
    p.module.decl.container.as_ref().and_then(|c| c.user_environment.as_ref()).is_some_and(|b| b.value)
}

impl<'a> Resolver<'a> {
    /// Checks the service's own variables: the module takes them, none is one the module sets
    /// or set twice (E0024), every secret is declared (`undefined-secret`).
    pub(super) fn own_environment(&mut self, p: &Partial<'a>, secrets: &BTreeMap<String, &'a SecretDecl>) {
        let (m, s) = (&p.module.decl, p.decl);
        let Some((first, _)) = s.environment.first().or(s.env_secrets.first()) else { return };
        if !takes(p) {
            self.err(
                Diagnostic::error("E0024", format!("module `{}` takes no environment from its services", m.name.value))
                    .primary(first.span, format!("service `{}` sets its own variables", s.name.value))
                    .help(
                        "set the module's options instead (`kiln modules show MODULE`); only a module for your own image (`app`) takes variables of yours",
                    ),
            );
            return;
        }
        let module_sets = |var: &str| {
            m.container
                .as_ref()
                .is_some_and(|c| c.environment.iter().chain(&c.env_secrets).chain(&c.secret_paths).any(|(k, _)| k.value == var))
        };
        let mut own: Vec<&Sp<String>> = Vec::new();
        for (var, _) in s.environment.iter().chain(&s.env_secrets) {
            if module_sets(&var.value) {
                self.err(
                    Diagnostic::error("E0024", format!("module `{}` sets `{}` itself", m.name.value, var.value))
                        .primary(var.span, "set again here")
                        .help("the module derives it from its options and connections: set the option, or name another variable"),
                );
            } else if let Some(before) = own.iter().find(|o| o.value == var.value) {
                self.err(
                    Diagnostic::error("E0024", format!("`{}` is set twice on service `{}`", var.value, s.name.value))
                        .primary(var.span, "set again here")
                        .secondary(before.span, "first set here"),
                );
            } else {
                own.push(var);
            }
        }
        for (_, secret) in &s.env_secrets {
            if let Some(d) = super::secrets::undefined_secret(secret, secrets) {
                self.err(d);
            }
        }
    }
}

/// Adds the service's own variables, checked by [`Resolver::own_environment`], to the module's:
/// plain values to `environment`, secrets to `env_secrets`.
pub(super) fn merge_own(p: &Partial<'_>, environment: &mut BTreeMap<String, String>, env_secrets: &mut BTreeMap<String, String>) {
    if !takes(p) {
        return;
    }
    for (var, value) in &p.decl.environment {
        environment.insert(var.value.clone(), value.value.clone());
    }
    for (var, secret) in &p.decl.env_secrets {
        env_secrets.insert(var.value.clone(), secret.value.clone());
    }
}
