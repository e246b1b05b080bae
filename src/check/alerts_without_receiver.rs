//! `alerts-without-receiver`: the system evaluates alerts, but nobody is told when one fires.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;

pub const RULE: Rule = Rule {
    id: "alerts-without-receiver",
    summary: "alerts are evaluated but reach nobody",
    explanation: "kiln derives alerting rules for every service that evaluates them (Prometheus: \
targets down, disks filling, memory pressure, failed or overdue backups, containers kept \
unhealthy, failing route probes, expiring certificates). An alert that fires where nobody looks \
is monitoring in name only: the disk fills, the certificate expires, and the first to notice is a \
user. Connect the Prometheus to an Alertmanager (`connects = [\"alertmanager\"]`) and declare who \
is told in `[alerts.receivers.NAME]` (`email = \"ops@example.com\"`, `slack = \"SECRET\"` for a \
Slack or Mattermost incoming webhook, or `webhook = \"SECRET\"` for Alertmanager's webhook JSON). \
Waive it only where someone really does watch the alerts page.",
    allowable: true,
    check,
};

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for s in sys.services.values().filter(|s| s.rules.is_some()) {
        let notifier = s.deps.iter().filter(|d| !d.derived).find(|d| sys.services.get(&d.service).is_some_and(|t| t.notifies));
        let d = match (notifier, sys.receivers.is_empty()) {
            (None, _) => Diagnostic::error(RULE.id, format!("`{}` evaluates alerts but sends them nowhere", s.name))
                .primary(s.span, "no Alertmanager connected")
                .help(format!("add an `alertmanager` service, list it in `{}`'s `connects`, and declare `[alerts.receivers]`", s.name)),
            (Some(n), true) => Diagnostic::error(RULE.id, format!("`{}` sends alerts to `{}`, which tells nobody", s.name, n.service))
                .primary(s.span, "alerts reach no one")
                .secondary(n.span, "delivered here")
                .help("declare who is told: `[alerts.receivers.ops]` with `email = \"ops@example.com\"`, `slack = \"SECRET\"` or `webhook = \"SECRET\"`"),
            (Some(_), false) => continue,
        };
        out.push(d.about("services", &s.name));
    }
    out
}
