//! A service's secret slots: each one the system binds names a slot of the module and a declared
//! secret; each one the module requires (always, or `required_when` a slot is filled or an option
//! set) is bound by the system or taken from a connected service (`same_secrets`).

use super::*;
use crate::syntax::module::RequiredWhen;

impl<'a> Resolver<'a> {
    /// The secrets the service holds: those the system binds to its slots (an unknown slot or an
    /// undeclared secret is an error, and left out) and those `taken` from the services it
    /// connects to.
    pub(super) fn bound_secrets(
        &mut self,
        p: &Partial<'a>,
        taken: &BTreeMap<String, String>,
        secrets: &BTreeMap<String, &'a SecretDecl>,
    ) -> Vec<SecretUse> {
        let (m, s) = (&p.module.decl, p.decl);
        let mut secret_uses = Vec::new();
        for (slot, secret) in &s.secrets {
            let Some(decl) = m.secrets.iter().find(|x| x.slot.value == slot.value) else {
                let mut d = Diagnostic::error("E0023", format!("module `{}` takes no secret `{}`", m.name.value, slot.value))
                    .primary(slot.span, "unknown secret slot");
                if let Some(x) = did_you_mean(&slot.value, m.secrets.iter().map(|x| x.slot.value.as_str())) {
                    d = d.help(format!("did you mean `{x}`?"));
                }
                self.err(d);
                continue;
            };
            if let Some(d) = super::secrets::undefined_secret(secret, secrets) {
                self.err(d);
                continue;
            }
            let target = decl.target.as_ref().map(|t| t.value.clone()).unwrap_or_else(|| format!("/run/secrets/{}", slot.value));
            secret_uses.push(SecretUse { slot: slot.value.clone(), secret: secret.value.clone(), target, uid: decl.uid });
        }
        for (slot, secret) in taken {
            if let Some(decl) = m.secrets.iter().find(|x| &x.slot.value == slot) {
                let target = decl.target.as_ref().map(|t| t.value.clone()).unwrap_or_else(|| format!("/run/secrets/{slot}"));
                secret_uses.push(SecretUse { slot: slot.clone(), secret: secret.clone(), target, uid: decl.uid });
            }
        }
        secret_uses
    }

    /// Errors for the slots the module needs that are neither bound nor taken: E0025, naming the
    /// connection or option that needs the secret when `required_when` says which.
    pub(super) fn unbound_secrets(
        &mut self,
        p: &Partial<'a>,
        all: &BTreeMap<String, Partial<'a>>,
        deps: &[Dependency],
        taken: &BTreeMap<String, String>,
    ) {
        let (m, s) = (&p.module.decl, p.decl);
        let upstream_failed = super::services::connects_unresolved(p, all, &self.managed);
        for decl in &m.secrets {
            // A slot taken from a connected service (`same_secrets`) while one of them failed to
            // resolve: that failure is the error, not this slot.
            let awaited =
                upstream_failed && m.requires.iter().any(|r| r.same_secrets.iter().any(|(mine, _)| mine.value == decl.slot.value));
            let bound = s.secrets.iter().any(|(slot, _)| slot.value == decl.slot.value) || taken.contains_key(&decl.slot.value) || awaited;
            // `required_when = "requires.SLOT"`: the connection that needs this credential.
            if let Some(when) = &decl.required_when
                && let RequiredWhen::Slot(req) = &when.value
                && !bound
                && let Some(c) = deps.iter().find(|d| d.slot.as_deref() == Some(req))
            {
                self.err(
                    Diagnostic::error(
                        "E0025",
                        format!(
                            "service `{}` needs secret `{}`: it connects `{}` to slot `{req}`",
                            s.name.value, decl.slot.value, c.service
                        ),
                    )
                    .primary(c.span, format!("fills `{req}`, so module `{}` needs secret `{}`", m.name.value, decl.slot.value))
                    .secondary(when.span, "the module ties the secret to this slot")
                    .help(format!("add `secrets.{} = \"NAME\"` naming a secret from `[secrets]`", decl.slot.value)),
                );
                continue;
            }
            // `required_when`: the option that turns on the feature needing this credential.
            if let Some(when) = &decl.required_when
                && let RequiredWhen::Option { name: option, equals } = &when.value
                && !bound
                && p.options.get(option).is_some_and(|v| match equals {
                    Some(want) => v.as_str() == Some(want.as_str()),
                    None => v.is_true(),
                })
            {
                let given = s.options.iter().find(|(n, _)| n.value == *option);
                let set = match equals {
                    Some(v) => format!("`{option}` is `{v}`"),
                    None => format!("`{option}` is set"),
                };
                let (span, label) = match given {
                    Some((n, _)) => (n.span, format!("{set}, so module `{}` needs secret `{}`", m.name.value, decl.slot.value)),
                    None => (s.name.span, format!("{set} by its default, so module `{}` needs secret `{}`", m.name.value, decl.slot.value)),
                };
                self.err(
                    Diagnostic::error("E0025", format!("service `{}` needs secret `{}`: {set}", s.name.value, decl.slot.value))
                        .primary(span, label)
                        .secondary(when.span, "the module ties the secret to this option")
                        .help(format!(
                            "add `secrets.{} = \"NAME\"` naming a secret from `[secrets]`, or change `{option}`",
                            decl.slot.value
                        )),
                );
                continue;
            }
            if !decl.optional && !bound {
                self.err(
                    Diagnostic::error("E0025", format!("service `{}` needs secret `{}`", s.name.value, decl.slot.value))
                        .primary(s.name.span, format!("module `{}` requires it", m.name.value))
                        .help(format!("add `secrets.{} = \"NAME\"` naming a secret from `[secrets]`", decl.slot.value)),
                );
            }
        }
    }
}
