//! `[alerts.receivers]`: who is told when an alert fires; each secret a receiver names is bound.

use super::*;

impl<'a> Resolver<'a> {
    /// The receivers of every file, by name, their secrets checked against `[secrets]`.
    pub(super) fn alert_receivers(&mut self, secrets: &BTreeMap<String, &'a SecretDecl>) -> Vec<Receiver> {
        let files = &self.inputs.files;
        let decls = self.index("receiver", files.iter().flat_map(|f| &f.receivers), |r| &r.name);
        let mut out = Vec::new();
        for (name, r) in decls {
            for s in [&r.slack, &r.webhook].into_iter().flatten() {
                if !secrets.contains_key(&s.value) {
                    self.err(
                        Diagnostic::error("undefined-secret", format!("secret `{}` is referenced but not defined", s.value))
                            .primary(s.span, "not declared in `[secrets]`")
                            .help(match did_you_mean(&s.value, secrets.keys().map(String::as_str)) {
                                Some(x) => format!("did you mean `{x}`?"),
                                None => format!("declare it: `[secrets.{}]` with `file = \"secrets.sops.yaml\"`", s.value),
                            }),
                    );
                }
            }
            let kind = match (&r.email, &r.slack, &r.webhook) {
                (Some(to), None, None) => ReceiverKind::Email { to: to.value.clone() },
                (None, Some(s), None) => {
                    ReceiverKind::Slack { secret: s.value.clone(), channel: r.channel.as_ref().map(|c| c.value.clone()) }
                }
                (None, None, Some(s)) => ReceiverKind::Webhook { secret: s.value.clone() },
                // Reported where it was read.
                _ => continue,
            };
            if let (Some(c), false) = (&r.channel, matches!(kind, ReceiverKind::Slack { .. })) {
                self.err(
                    Diagnostic::error("E0003", format!("receiver `{name}` has a `channel` but is not a `slack` receiver"))
                        .primary(c.span, "only Slack-compatible webhooks take a channel"),
                );
            }
            out.push(Receiver { name: name.clone(), kind });
        }
        out
    }
}

/// Where a notifying service reads the URL of receiver `name` (its own copy of the secret).
pub(super) fn receiver_secret_target(name: &str) -> String {
    format!("/run/secrets/alert-receiver-{name}")
}
