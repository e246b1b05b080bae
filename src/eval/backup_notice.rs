//! Who hears of a failed backup on a host no Prometheus watches. The derived backup alerts
//! (`render::alerts`: failed, overdue, never reported) read the backup script's textfile
//! metrics through the host's node exporter, so they fire only for hosts whose node exporter a
//! rule-evaluating Prometheus scrapes. A host that backs up data without one (an isolated
//! client server, a system without monitoring) would fail silently: there, each failed backup
//! task tells the system's Slack-compatible receivers itself (`render::backup`: `OnFailure=`),
//! and so does its container watchdog when it restarts a container (`render::watchdog`; the
//! receivers and the message format in `render::notice`).
//! E-mail receivers are not told this way: their SMTP credentials belong to the notifier
//! (Alertmanager), not to every host.

use std::collections::BTreeSet;

use crate::model::{ReceiverKind, System};

/// Sets each host's `backup_notify`: the Slack-compatible receivers, for a host that backs up
/// data (`[backup]` and a service with data) that no rule-evaluating service watches.
pub fn derive(sys: &mut System) {
    if sys.backup.is_none() {
        return;
    }
    let receivers: Vec<String> =
        sys.receivers.iter().filter(|r| matches!(r.kind, ReceiverKind::Slack { .. })).map(|r| r.name.clone()).collect();
    if receivers.is_empty() {
        return;
    }
    let watched = watched(sys);
    let unwatched: Vec<String> = sys
        .hosts
        .values()
        .filter(|h| !watched.contains(h.name.as_str()))
        .filter(|h| h.services.iter().any(|s| sys.services[s].has_data()))
        .map(|h| h.name.clone())
        .collect();
    for name in unwatched {
        if let Some(h) = sys.hosts.get_mut(&name) {
            h.backup_notify = receivers.clone();
        }
    }
}

/// The hosts whose node exporter a rule-evaluating service (Prometheus with `rules`) scrapes:
/// where the derived backup alerts can fire.
fn watched(sys: &System) -> BTreeSet<&str> {
    sys.services.values().filter(|p| p.rules.is_some()).flat_map(|p| sys.scraped_node_exporters(p)).map(|s| s.host.as_str()).collect()
}
