//! Derived backups: for a host whose services declare data, a restic script (database dumps
//! first, then one snapshot of the dumps and the backed-up volumes, then retention) and the
//! systemd timers that run it and a periodic integrity check.

use std::fmt::Write;

use super::quote::sh;
use super::timer_unit::{TimedService, script_head};
use crate::model::{BackupPlan, Host, Service, System};
use crate::types::Calendar;

/// Where the payload puts the script; the units call it from there.
pub const SCRIPT: &str = "backup/kiln-backup.sh";
/// The units, installed into /etc/systemd/system by the provisioner.
pub const UNITS: [&str; 4] = ["kiln-backup.service", "kiln-backup.timer", "kiln-backup-check.service", "kiln-backup-check.timer"];
/// The restore drill's units, when `[backup] drill` schedules it.
pub const DRILL_UNITS: [&str; 2] = ["kiln-backup-drill.service", "kiln-backup-drill.timer"];
/// Dumps land here before restic reads them.
const DUMPS: &str = "/var/backups/kiln";
/// On a host no Prometheus watches (`Host::backup_notify`): the unit a failed backup task
/// starts (`OnFailure=`), the script it runs, and per receiver the message it posts.
pub const NOTICE_UNIT: &str = "kiln-backup-failed.service";
pub const NOTICE_SCRIPT: &str = "backup/kiln-backup-failed.sh";

/// The notice script's body before `post` ([`super::notice::POST`]) and its calls.
const NOTICE_HEAD: &str = r#"# Started by systemd when kiln-backup.service or kiln-backup-check.service fails: posts each
# receiver's message to its webhook, the URL read from the receiver's secret.
set -u
rc=0
"#;

/// The services of `host` whose data the backup takes.
fn with_data<'a>(sys: &'a System, host: &'a Host) -> impl Iterator<Item = &'a Service> {
    host.services.iter().map(|s| &sys.services[s]).filter(|s| s.has_data())
}

/// Whether `host` is backed up: the system has a backup plan and a service of the host data.
pub fn backs_up(sys: &System, host: &Host) -> bool {
    sys.backup.is_some() && with_data(sys, host).next().is_some()
}

/// The host's backup files (path, content), empty when it has nothing to back up.
pub fn emit(sys: &System, host: &Host) -> Vec<(String, String)> {
    let Some(plan) = &sys.backup else { return Vec::new() };
    let services: Vec<&Service> = with_data(sys, host).collect();
    if services.is_empty() {
        return Vec::new();
    }
    let repo = plan.repository.replace("{host}", &host.name);
    let known_hosts = super::backup_auth::known_hosts(plan, &repo).map(|k| (super::backup_auth::KNOWN_HOSTS.to_string(), k));
    let notify = !host.backup_notify.is_empty();
    let backup = timed(UNITS[0], "restic backup of this host's data (dumps first)", "", "Daily backup", &plan.schedule, notify);
    let check = timed(
        UNITS[2],
        "restic integrity check of this host's repository",
        " check",
        "Periodic backup integrity check",
        &plan.check,
        notify,
    );
    let mut files = vec![(SCRIPT.to_string(), script(sys, host, plan, &repo, &services))];
    if let Some(calendar) = &plan.drill {
        let units = timed(DRILL_UNITS[0], "restore drill of this host's latest snapshot", " drill", "Restore drill", calendar, notify);
        files.extend(DRILL_UNITS.iter().zip(units).map(|(name, text)| (format!("backup/{name}"), text)));
    }
    let drilled = super::restore::drilled(&services);
    if !drilled.is_empty() {
        files.push((super::restore::DRILL_COMPOSE.to_string(), super::compose::emit_drill(sys, host, &drilled)));
    }
    files.extend(UNITS.iter().zip(backup.into_iter().chain(check)).map(|(name, text)| (format!("backup/{name}"), text)));
    files.extend(known_hosts);
    files.extend(notice(sys, host));
    files
}

/// Where no Prometheus watches the host (`Host::backup_notify`): the unit a failed backup or
/// check starts, its script, and per Slack-compatible receiver the message (serialised JSON:
/// the payload Slack's and Mattermost's incoming webhooks take, `text` and `channel`).
fn notice(sys: &System, host: &Host) -> Vec<(String, String)> {
    let receivers = super::notice::receivers(sys, host);
    if receivers.is_empty() {
        return Vec::new();
    }
    let drill = if sys.backup.as_ref().is_some_and(|p| p.drill.is_some()) { " -u kiln-backup-drill.service" } else { "" };
    let text = format!(
        "kiln: a backup task of host {} (system {}) failed: journalctl -u kiln-backup.service -u kiln-backup-check.service{drill} on the host says why",
        host.name, sys.name
    );
    let mut files = Vec::new();
    let mut script = script_head("backup failure notice", sys, host);
    script.push_str(NOTICE_HEAD);
    script.push_str(super::notice::POST);
    for r in receivers {
        let payload = format!("backup/notice-{}.json", r.name);
        files.push((payload.clone(), super::notice::message(&text, &r)));
        let _ = writeln!(script, "post {} {} || rc=1", sh(&format!("/opt/kiln/{payload}")), sh(&super::notice::secret_path(&r)));
    }
    script.push_str("exit \"$rc\"\n");
    files.push((NOTICE_SCRIPT.to_string(), script));
    let unit = super::timer_unit::unit(&[
        ("Unit", &[("Description", "kiln: tell the alert receivers that a backup task failed"), ("After", "network-online.target")]),
        ("Service", &[("Type", "oneshot"), ("ExecStart", &format!("/bin/sh /opt/kiln/{NOTICE_SCRIPT}"))]),
    ]);
    files.push((format!("backup/{NOTICE_UNIT}"), unit));
    files
}

fn script(sys: &System, host: &Host, plan: &BackupPlan, repo: &str, services: &[&Service]) -> String {
    let mut o = script_head("backup", sys, host);
    o.push_str("# `kiln-backup.sh` dumps the databases, snapshots dumps and volumes, applies retention;\n");
    o.push_str("# `kiln-backup.sh check` verifies the repository and a tenth of its data;\n");
    o.push_str("# `kiln-backup.sh restore [SNAPSHOT]` brings the data back; `kiln-backup.sh drill [SNAPSHOT]`\n");
    o.push_str("# restores a snapshot into a scratch directory and loads its dumps into throw-away copies\n");
    o.push_str("# of their services (docs/deploy.md).\n");
    o.push_str("set -eu\numask 077\n");
    let _ = writeln!(o, "RESTIC_REPOSITORY={}", sh(repo));
    let _ = writeln!(o, "RESTIC_PASSWORD_FILE={}", sh(&format!("/etc/kiln/secrets/{}", plan.password.replace("{host}", &host.name))));
    o.push_str("export RESTIC_REPOSITORY RESTIC_PASSWORD_FILE\n");
    if let Some(env) = &plan.environment {
        let path = sh(&format!("/etc/kiln/secrets/{}", env.replace("{host}", &host.name)));
        // Read as data, never sourced: a value may hold any character.
        let _ = writeln!(
            o,
            "# Backend credentials: KEY=value lines, root-only, read as data.\nwhile IFS= read -r line || [ -n \"$line\" ]; do\n\tcase $line in '' | '#'*) continue ;; esac\n\tkey=${{line%%=*}}\n\tcase $key in '' | [0-9]* | *[!A-Za-z0-9_]*) echo 'kiln-backup: a line of the environment secret is not KEY=value' >&2; exit 1 ;; esac\n\texport \"$key=${{line#*=}}\"\ndone < {path}"
        );
    }
    o.push_str(&super::backup_auth::setup(plan, host, repo));
    let _ = writeln!(o, "host={}", sh(&host.name));
    let _ = writeln!(o, "dumps={}", sh(DUMPS));
    o.push_str(&super::restore::variables(sys, host));
    let _ = writeln!(o, "compose() {{ docker compose --file {} \"$@\"; }}", sh(&format!("{}/compose.yaml", super::KILN_ROOT)));
    o.push_str("install -d -m 0700 \"$dumps\"\n");
    // One backup, check or restore at a time: a timer that fires during a restore waits for it.
    o.push_str("exec 9>\"$dumps.lock\"\nflock 9\n");
    o.push_str(&textfile());
    // A restore or a drill never makes a repository: they run before that.
    o.push_str(super::restore::SNAPSHOT_ID);
    o.push_str(&super::restore::section(sys, services));
    o.push_str(&super::restore::drill_section(services));
    // A repository restic cannot find is made: restic asks "Is there a repository at the
    // following location?" when it cannot read the config file (cmd/restic/global.go, 0.14 to
    // 0.18; from 0.17 "repository does not exist" too). Any other failure (a wrong password, a
    // refused login) is reported as restic said it, where `|| restic init` buried it under init's.
    o.push_str(concat!(
        "if ! err=$(restic snapshots --host \"$host\" --latest 1 2>&1 >/dev/null); then\n",
        "\tcase $err in\n",
        "\t*'Is there a repository at the following location?'* | *'repository does not exist'*) restic init ;;\n",
        "\t*) printf '%s\\n' \"$err\" >&2; exit 1 ;;\n",
        "\tesac\n",
        "fi\n",
    ));
    // Not `exec`: `restic` may be the function that adds the SFTP command (`backup_auth`).
    o.push_str("if [ \"${1:-}\" = check ]; then\n\trestic check --read-data-subset=10%\n\texit 0\nfi\n");
    o.push_str(&metrics());
    o.push_str("\n# Databases first, so the snapshot holds a consistent dump next to the files.\n");
    for s in services {
        let Some(dump) = s.backup.as_ref().and_then(|b| b.dump.as_ref()) else { continue };
        let words: Vec<String> = dump.iter().map(|w| sh(w)).collect();
        o.push_str(&super::restore::literal_note(dump, ""));
        let file = super::restore::dump_file(s);
        let run = if s.container.is_some() { format!("compose exec -T {} {}", sh(&s.name), words.join(" ")) } else { words.join(" ") };
        let _ = writeln!(o, "{run} > \"$dumps/{file}.part\"\nmv \"$dumps/{file}.part\" \"$dumps/{file}\"");
    }
    o.push_str("\n# One snapshot: the dumps and the volumes a restore brings back (a database server's\n# are left out: its dump is what a restore loads).\nset -- \"$dumps\"\n");
    let volumes = super::restore::snapshotted(services);
    o.push_str(&super::restore::each_volume(sys, volumes.into_iter(), "", "set -- \"$@\" \"$volumes/$v/_data\""));
    o.push_str("restic backup --host \"$host\" --tag kiln \"$@\"\n");
    let keep: Vec<String> = plan.keep.iter().map(|(k, n)| format!("--keep-{k} {n}")).collect();
    let _ = writeln!(o, "restic forget --host \"$host\" --prune {}", keep.join(" "));
    o
}

/// The node exporter's textfile collector, where the backup and the drill report their outcome
/// for the derived alerts (`render::alerts`), and `publish FILE`, which writes its standard input
/// there beside FILE and renames it over FILE, so that the collector never reads half a file.
fn textfile() -> String {
    format!(
        "textfile=${{KILN_BACKUP_TEXTFILE:-{}}}\npublish() {{ cat >\"$textfile/$1.$$\" && chmod 0644 \"$textfile/$1.$$\" && mv \"$textfile/$1.$$\" \"$textfile/$1\"; }}\n",
        sh(super::watchdog::TEXTFILE_DIR)
    )
}

/// The backup's outcome, published on every exit (a failure under `set -e` too): when it last
/// ran, whether that run succeeded, and when one last succeeded (kept across failures).
fn metrics() -> String {
    use super::alerts::{BACKUP_LAST_OK, BACKUP_LAST_RUN, BACKUP_LAST_SUCCESS};
    format!(
        r#"
# Report the outcome to the node exporter's textfile collector (read by the backup alerts).
report() {{
	rc=$?
	[ -d "$textfile" ] || exit "$rc"
	now=$(date +%s)
	last=$(sed -n 's/^{BACKUP_LAST_SUCCESS} //p' "$textfile/kiln_backup.prom" 2>/dev/null || true)
	ok=0
	if [ "$rc" -eq 0 ]; then
		ok=1
		last=$now
	fi
	printf '# TYPE {BACKUP_LAST_RUN} gauge\n{BACKUP_LAST_RUN} %s\n# TYPE {BACKUP_LAST_OK} gauge\n{BACKUP_LAST_OK} %s\n# TYPE {BACKUP_LAST_SUCCESS} gauge\n{BACKUP_LAST_SUCCESS} %s\n' \
		"$now" "$ok" "${{last:-0}}" | publish kiln_backup.prom
	exit "$rc"
}}
trap report EXIT
"#
    )
}

/// A backup task: the service running the script with `arg`, and its timer on `calendar`; with
/// `notify`, its failure starts [`NOTICE_UNIT`].
fn timed(name: &str, description: &str, arg: &str, timer_description: &str, calendar: &Calendar, notify: bool) -> [String; 2] {
    let mut after = vec![("Wants", "network-online.target"), ("After", "network-online.target docker.service")];
    if notify {
        after.push(("OnFailure", NOTICE_UNIT));
    }
    TimedService {
        name,
        description,
        after: &after,
        exec: &format!("/bin/sh /opt/kiln/{SCRIPT}{arg}"),
        service: &[("Nice", "10"), ("IOSchedulingClass", "idle")],
        timer_description,
        schedule: &[("OnCalendar", calendar), ("RandomizedDelaySec", "15m"), ("Persistent", "true")],
    }
    .units()
}
