//! `password-ssh`: sshd accepting passwords.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;

pub const RULE: Rule = Rule {
    id: "password-ssh",
    summary: "SSH with password authentication",
    explanation: "Internet-facing sshd servers are guessed at all day. With passwords enabled a weak \
or reused password is a root shell; with keys only, guessing is hopeless. kiln configures sshd \
with `PasswordAuthentication no` and installs the admins' keys. `password_ssh = true` turns \
passwords back on and needs an `[allow.password-ssh]` with the reason.",
    allowable: true,
    check,
};

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    sys.hosts
        .values()
        .filter(|h| h.password_ssh)
        .map(|h| {
            Diagnostic::error(RULE.id, format!("host `{}` accepts SSH passwords", h.name))
                .primary(h.span, "password_ssh = true")
                .help("log in with keys from `[admins]`; remove `password_ssh`")
                .about("hosts", &h.name)
        })
        .collect()
}
