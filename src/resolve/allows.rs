//! `[allow.RULE]`: what each allowance waives, and its reason.

use super::*;

impl<'a> Resolver<'a> {
    /// `[allow.RULE]` tables: the rule must exist and be one a system may waive, the names must
    /// exist, and the reason must say something.
    pub(super) fn allows(&mut self, files: &'a [SystemFile]) -> Vec<Allow> {
        let mut out = Vec::new();
        let explained = crate::check::explanations();
        // The names declared, not those resolved: a service or route that failed has its own
        // error, and naming it here is not another one.
        let names = |v: Vec<&Sp<String>>| v.into_iter().map(|n| n.value.clone()).collect::<Vec<_>>();
        let hosts = names(files.iter().flat_map(|f| &f.hosts).map(|h| &h.name).collect());
        let services = names(files.iter().flat_map(|f| &f.services).map(|s| &s.name).collect());
        let routes = names(files.iter().flat_map(|f| &f.routes).map(|r| &r.hostname).collect());
        for a in files.iter().flat_map(|f| &f.allows) {
            match explained.iter().find(|e| e.id == a.rule.value) {
                None => {
                    let mut d =
                        Diagnostic::error("E0010", format!("unknown rule `{}`", a.rule.value)).primary(a.rule.span, "no rule of this id");
                    d = match did_you_mean(&a.rule.value, explained.iter().map(|e| e.id)) {
                        Some(m) => d.help(format!("did you mean `{m}`?")),
                        None => d.help("`kiln explain` lists every rule"),
                    };
                    self.err(d);
                    continue;
                }
                Some(e) if !e.allowable => {
                    self.err(
                        Diagnostic::error("E0035", format!("rule `{}` cannot be allowed", a.rule.value))
                            .primary(a.rule.span, "this rule guards against output that cannot work")
                            .help(format!("fix the input instead; `kiln explain {}` says why", a.rule.value)),
                    );
                    continue;
                }
                Some(_) => {}
            }
            let reason = a.reason.as_ref().map(|r| r.value.trim().to_string()).unwrap_or_default();
            if let Some(r) = &a.reason
                && reason.split_whitespace().count() < 3
            {
                self.err(
                    Diagnostic::error("E0035", format!("the reason for allowing `{}` is too short", a.rule.value))
                        .primary(r.span, "say why this exception is safe here")
                        .help("write a sentence a reviewer can check, e.g. \"the vendor image is only published as latest; mirrored by digest\""),
                );
            }
            for (list, kind, known) in [(&a.hosts, "host", &hosts), (&a.services, "service", &services), (&a.routes, "route", &routes)] {
                for n in list {
                    if !known.contains(&n.value) {
                        self.unknown(kind, n, known.iter(), &format!("{kind}s"));
                    }
                }
            }
            if a.hosts.is_empty() && a.services.is_empty() && a.routes.is_empty() {
                self.err(
                    Diagnostic::error("E0004", format!("`[allow.{}]` names nothing", a.rule.value))
                        .primary(a.span, "no `hosts`, `services` or `routes`")
                        .help("name what the exception is for: `services = [\"legacy\"]`"),
                );
            }
            let names = |l: &Vec<Sp<String>>| l.iter().map(|x| x.value.clone()).collect();
            out.push(Allow {
                rule: a.rule.value.clone(),
                hosts: names(&a.hosts),
                services: names(&a.services),
                routes: names(&a.routes),
                reason,
                span: a.rule.span,
            });
        }
        out
    }
}
