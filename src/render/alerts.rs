//! Derived alerting rules: for every service that evaluates rules (`[collect] rules`, Prometheus),
//! one Prometheus rules file holding only the alerts whose metrics that service actually scrapes:
//! targets down (always), disks filling and memory pressure (node exporters), backups failed or
//! overdue (the backup script's textfile metrics, on hosts whose node exporter it scrapes),
//! containers kept unhealthy or restarted by the watchdog (likewise), and route probes failing
//! or certificates expiring (a connected blackbox exporter probing the public routes).
//!
//! Metric names: node_exporter's `node_filesystem_{avail,size}_bytes` (with `fstype`,
//! `mountpoint`), `node_memory_Mem{Available,Total}_bytes`; blackbox_exporter's `probe_success`
//! and `probe_ssl_earliest_cert_expiry` (http prober, set when the probe used TLS).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Service, System};
use crate::types::Calendar;

/// The rules file in the service's payload directory (`files/<service>/…`): beside the
/// configuration as in the container, so `rules/kiln.yml` in prometheus.yml resolves (relative
/// to the configuration file) both there and for `promtool check config` on the payload.
pub const FILE: &str = "rules/kiln.yml";
/// The scrape job of the route probes in the built-in Prometheus template.
pub const PROBE_JOB: &str = "blackbox-routes";
/// Metrics the backup script writes for the node exporter's textfile collector.
pub const BACKUP_LAST_RUN: &str = "kiln_backup_last_run_timestamp_seconds";
pub const BACKUP_LAST_OK: &str = "kiln_backup_last_run_success";
pub const BACKUP_LAST_SUCCESS: &str = "kiln_backup_last_success_timestamp_seconds";
/// Whether the last restore drill (`kiln-backup.sh drill`, by hand or on its timer) passed.
pub const DRILL_LAST_OK: &str = "kiln_backup_drill_last_run_success";
pub const DRILL_LAST_RUN: &str = "kiln_backup_drill_last_run_timestamp_seconds";
/// Metrics the container watchdog writes likewise.
pub const WATCHDOG_UNHEALTHY: &str = "kiln_watchdog_unhealthy";
pub const WATCHDOG_RESTARTS: &str = "kiln_watchdog_restarts_total";
/// Filesystems that are not disks.
const PSEUDO_FS: &str = "tmpfs|ramfs|devtmpfs|overlay|squashfs|nsfs|fuse.lxcfs";

#[derive(Serialize)]
struct RulesFile {
    groups: Vec<Group>,
}

#[derive(Serialize)]
struct Group {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Serialize)]
struct Rule {
    alert: String,
    expr: String,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    for_: Option<String>,
    labels: BTreeMap<&'static str, String>,
    annotations: BTreeMap<&'static str, String>,
}

fn rule(alert: &str, expr: String, for_: Option<&str>, severity: &str, summary: String) -> Rule {
    Rule {
        alert: alert.to_string(),
        expr,
        for_: for_.map(str::to_string),
        labels: BTreeMap::from([("severity", severity.to_string())]),
        annotations: BTreeMap::from([("summary", summary)]),
    }
}

/// A PromQL string literal (double-quoted, Go escapes).
fn lit(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// What one rule-evaluating service scrapes, as the rules need it.
pub struct Coverage<'a> {
    /// host → the job of the node exporter scraped there.
    pub node_jobs: BTreeMap<&'a str, &'a str>,
    /// Public routes are probed through a connected blackbox exporter.
    pub probes: bool,
}

/// What `prom` scrapes, from its derived connections and its blackbox requirement.
pub fn coverage<'a>(sys: &'a System, prom: &'a Service) -> Coverage<'a> {
    let node_jobs = sys.scraped_node_exporters(prom).map(|s| (s.host.as_str(), s.name.as_str())).collect();
    let routes = sys.routes.iter().any(|r| !r.hostname.starts_with("*."));
    let blackbox = prom
        .deps
        .iter()
        .any(|d| d.slot.as_deref() == Some("blackbox") && sys.services.get(&d.service).is_some_and(|s| s.module == "blackbox-exporter"));
    Coverage { node_jobs, probes: routes && blackbox }
}

/// The rules file of `prom`, a service with `rules` set.
pub fn emit(sys: &System, prom: &Service) -> String {
    let cov = coverage(sys, prom);
    let mut groups = vec![Group {
        name: "kiln-targets".into(),
        rules: vec![rule(
            "TargetDown",
            "up == 0".into(),
            Some("5m"),
            "critical",
            "{{ $labels.job }} at {{ $labels.instance }} cannot be scraped".into(),
        )],
    }];
    if !cov.node_jobs.is_empty() {
        let jobs: Vec<&str> = cov.node_jobs.values().copied().collect();
        let sel = format!("job=~{},fstype!~{},mountpoint!~{}", lit(&jobs.join("|")), lit(PSEUDO_FS), lit("/run.*|/boot.*"));
        let mem = format!("job=~{}", lit(&jobs.join("|")));
        groups.push(Group {
            name: "kiln-hosts".into(),
            rules: vec![
                rule(
                    "DiskFilling",
                    format!(
                        "predict_linear(node_filesystem_avail_bytes{{{sel}}}[6h], 24 * 3600) < 0 and node_filesystem_avail_bytes{{{sel}}} / node_filesystem_size_bytes{{{sel}}} < 0.25"
                    ),
                    Some("30m"),
                    "warning",
                    "{{ $labels.mountpoint }} on {{ $labels.instance }} fills up within a day at the current rate".into(),
                ),
                rule(
                    "DiskAlmostFull",
                    format!("node_filesystem_avail_bytes{{{sel}}} / node_filesystem_size_bytes{{{sel}}} < 0.05"),
                    Some("5m"),
                    "critical",
                    "{{ $labels.mountpoint }} on {{ $labels.instance }} has less than 5 % free".into(),
                ),
                rule(
                    "MemoryPressure",
                    format!("node_memory_MemAvailable_bytes{{{mem}}} / node_memory_MemTotal_bytes{{{mem}}} < 0.10"),
                    Some("10m"),
                    "warning",
                    "{{ $labels.instance }} has less than 10 % of its memory available".into(),
                ),
            ],
        });
    }
    let mut backups = Vec::new();
    let mut containers = Vec::new();
    for (host, job) in &cov.node_jobs {
        let Some(h) = sys.hosts.get(*host) else { continue };
        let sel = format!("{{job={}}}", lit(job));
        if let (Some(plan), true) = (&sys.backup, super::backup::backs_up(sys, h)) {
            let max = max_age(&plan.schedule);
            backups.push(rule(
                "BackupFailed",
                format!("{BACKUP_LAST_OK}{sel} == 0"),
                None,
                "critical",
                format!("the last backup of host {host} failed (journalctl -u kiln-backup.service)"),
            ));
            backups.push(rule(
                "BackupOverdue",
                format!("time() - {BACKUP_LAST_SUCCESS}{sel} > {max}"),
                None,
                "critical",
                format!("host {host} has no successful backup for longer than its schedule allows ({})", plan.schedule),
            ));
            backups.push(rule(
                "BackupDrillFailed",
                format!("{DRILL_LAST_OK}{sel} == 0"),
                None,
                "critical",
                format!("the last restore drill of host {host} failed: a snapshot did not restore or a dump did not load (journalctl -u kiln-backup-drill.service)"),
            ));
            backups.push(rule(
                "BackupNeverReported",
                format!("absent({BACKUP_LAST_RUN}{sel})"),
                Some(&format!("{max}s")),
                "warning",
                format!("host {host} has not reported a backup run since its schedule began"),
            ));
        }
        if super::watchdog::applies(sys, h) {
            containers.push(rule(
                "ContainerUnhealthy",
                format!("{WATCHDOG_UNHEALTHY}{sel} == 1"),
                Some("10m"),
                "warning",
                format!("container {{{{ $labels.container }}}} on host {host} stays unhealthy"),
            ));
            containers.push(rule(
                "ContainerRestartedByWatchdog",
                format!("increase({WATCHDOG_RESTARTS}{sel}[1h]) > 0"),
                None,
                "warning",
                format!("the watchdog restarted unhealthy container {{{{ $labels.container }}}} on host {host}"),
            ));
        }
    }
    if !backups.is_empty() {
        groups.push(Group { name: "kiln-backups".into(), rules: backups });
    }
    if !containers.is_empty() {
        groups.push(Group { name: "kiln-containers".into(), rules: containers });
    }
    if cov.probes {
        let sel = format!("{{job={}}}", lit(PROBE_JOB));
        groups.push(Group {
            name: "kiln-routes".into(),
            rules: vec![
                rule(
                    "RouteDown",
                    format!("probe_success{sel} == 0"),
                    Some("5m"),
                    "critical",
                    "{{ $labels.instance }} does not answer".into(),
                ),
                rule(
                    "CertificateExpiring",
                    format!("probe_ssl_earliest_cert_expiry{sel} - time() < 14 * 86400"),
                    Some("1h"),
                    "warning",
                    "the certificate of {{ $labels.instance }} expires within 14 days".into(),
                ),
                rule(
                    "CertificateExpiringSoon",
                    format!("probe_ssl_earliest_cert_expiry{sel} - time() < 3 * 86400"),
                    Some("10m"),
                    "critical",
                    "the certificate of {{ $labels.instance }} expires within 3 days: renewal is failing".into(),
                ),
            ],
        });
    }
    format!("# Generated by kiln for service {}: do not edit.\n{}", prom.name, super::yaml(&RulesFile { groups }))
}

/// The longest a successful backup may be old, in seconds: an upper bound of the schedule's
/// period (the largest gap between two runs) plus six hours for the randomised start and the
/// run itself. Conservative: a schedule running several times a day still counts as daily.
pub fn max_age(schedule: &Calendar) -> u64 {
    const DAY: u64 = 86_400;
    let period = match &**schedule {
        "minutely" | "hourly" | "daily" => DAY,
        "weekly" => 7 * DAY,
        "monthly" => 31 * DAY,
        "quarterly" => 92 * DAY,
        "semiannually" => 183 * DAY,
        "yearly" | "annually" => 366 * DAY,
        s => {
            let words: Vec<&str> = s.split(' ').collect();
            let weekdays = words.first().filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_alphabetic()));
            let date = words.iter().find(|w| w.matches('-').count() == 2 && !w.contains(':'));
            let (month, day) = date
                .map(|d| {
                    let p: Vec<&str> = d.split('-').collect();
                    (p[1] != "*", p[2] != "*")
                })
                .unwrap_or((false, false));
            if month {
                366 * DAY
            } else if day {
                31 * DAY
            } else if let Some(w) = weekdays {
                weekday_gap(w) * DAY
            } else {
                DAY
            }
        }
    };
    period + 6 * 3600
}

/// The longest run of days between two weekdays a weekday list (`Mon..Fri`, `Sat,Sun`) names.
fn weekday_gap(list: &str) -> u64 {
    let day = |s: &str| ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].iter().position(|d| s.to_ascii_lowercase().starts_with(d));
    let mut on = [false; 7];
    for part in list.split(',') {
        let (a, b) = part.split_once("..").unwrap_or((part, part));
        if let (Some(a), Some(b)) = (day(a), day(b)) {
            let mut i = a;
            loop {
                on[i] = true;
                if i == b {
                    break;
                }
                i = (i + 1) % 7;
            }
        }
    }
    let days: Vec<usize> = (0..7).filter(|i| on[*i]).collect();
    if days.is_empty() {
        return 7;
    }
    days.iter().map(|d| days.iter().map(|e| (e + 7 - d - 1) % 7 + 1).min().unwrap_or(7)).max().unwrap_or(7) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_age_follows_the_schedule() {
        let age = |s: &str| max_age(&Calendar::parse(s).unwrap()) / 3600;
        assert_eq!(age("daily"), 30);
        assert_eq!(age("*-*-* 03:30:00"), 30);
        assert_eq!(age("Sun *-*-* 05:00:00"), 7 * 24 + 6);
        assert_eq!(age("Mon..Fri *-*-* 02:00"), 3 * 24 + 6);
        assert_eq!(age("*-*-01 02:00"), 31 * 24 + 6);
        assert_eq!(age("weekly"), 7 * 24 + 6);
    }
}
