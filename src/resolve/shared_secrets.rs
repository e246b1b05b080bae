//! `[requires.SLOT] same_secrets`: a secret both ends of a connection hold, declared once.

use super::*;

impl<'a> Resolver<'a> {
    /// `[requires.SLOT] same_secrets`: the secrets this service takes from the services filling
    /// its slots (its slot → the secret), for the slots the system leaves unbound; a slot bound to
    /// another secret than the filled service's is an error (E0025), since the two ends would hold
    /// different values of what must be one.
    pub(super) fn same_secrets(
        &mut self,
        p: &Partial<'a>,
        all: &BTreeMap<String, Partial<'a>>,
        deps: &[Dependency],
    ) -> BTreeMap<String, String> {
        let mut taken = BTreeMap::new();
        for r in p.module.decl.requires.iter().filter(|r| !r.same_secrets.is_empty()) {
            for d in deps.iter().filter(|d| d.slot.as_deref() == Some(r.slot.value.as_str())) {
                let Some(other) = all.get(&d.service) else { continue };
                for (mine, theirs) in &r.same_secrets {
                    let bound = p.decl.secrets.iter().find(|(k, _)| k.value == mine.value);
                    // A module of the filled service without that slot: the module's own mistake.
                    if !other.module.decl.secrets.iter().any(|x| x.slot.value == theirs.value) {
                        self.err(
                            Diagnostic::error(
                                "E0023",
                                format!("module `{}` has no secret slot `{}`", other.module.decl.name.value, theirs.value),
                            )
                            .primary(theirs.span, format!("`{}` fills this requirement", d.service))
                            .help("name one of that module's `[secrets.SLOT]`"),
                        );
                        continue;
                    }
                    let Some((_, held)) = other.decl.secrets.iter().find(|(k, _)| k.value == theirs.value) else {
                        // The other end leaves its (optional) slot unbound: a value bound here
                        // reaches no one there (a bouncer key CrowdSec never registers).
                        if let Some((_, bound)) = bound {
                            self.err(
                                Diagnostic::error(
                                    "E0025",
                                    format!(
                                        "service `{}` binds `{}`, but `{}` holds no `{}` to match it",
                                        p.decl.name.value, mine.value, d.service, theirs.value
                                    ),
                                )
                                .primary(bound.span, "the other end does not know this value")
                                .secondary(mine.span, "the module says the two are one secret")
                                .help(format!(
                                    "bind `secrets.{} = \"{}\"` on `{}`, and leave `{}` out here",
                                    theirs.value, bound.value, d.service, mine.value
                                )),
                            );
                        }
                        continue;
                    };
                    match bound {
                        None => {
                            taken.insert(mine.value.clone(), held.value.clone());
                        }
                        // A secret that is not declared has its own error (`undefined-secret`).
                        Some((_, bound)) if !self.secret_declared(&bound.value) || !self.secret_declared(&held.value) => {}
                        Some((_, bound)) if bound.value != held.value => self.err(
                            Diagnostic::error(
                                "E0025",
                                format!(
                                    "service `{}` binds `{}` to secret `{}`, but `{}` holds it as `{}`",
                                    p.decl.name.value, mine.value, bound.value, d.service, held.value
                                ),
                            )
                            .primary(bound.span, "another secret than the one the other end holds")
                            .secondary(held.span, format!("`{}`'s `{}`", d.service, theirs.value))
                            .secondary(mine.span, "the module says the two are one secret")
                            .help(format!("remove `{}` here: kiln takes `{}` from `{}`", mine.value, held.value, d.service)),
                        ),
                        Some(_) => {}
                    }
                }
            }
        }
        taken
    }
}
