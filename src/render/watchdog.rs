//! Derived container watchdog: Docker marks a container `unhealthy` but never restarts it (its
//! restart policy acts only when the process exits). On every host running a container with a
//! health check, a systemd timer runs a POSIX sh script every minute that restarts this system's
//! containers that stayed unhealthy for [`CHECKS`] consecutive checks, and writes
//! `kiln_watchdog_unhealthy` / `kiln_watchdog_restarts_total` for the node exporter's textfile
//! collector, which the derived alerts (`render::alerts`) watch. On a host that backs up data
//! and that no Prometheus watches (`Host::backup_notify`, `render::notice`), a restart is also
//! posted to the system's Slack-compatible receivers, at most once an hour per container. No
//! third-party image.

use std::fmt::Write;

use super::KILN_ROOT;
use super::alerts::{WATCHDOG_RESTARTS, WATCHDOG_UNHEALTHY};
use super::quote::sh;
use super::timer_unit::{TimedService, script_head};
use crate::model::{Host, System};

/// Where the payload puts the script; the service runs it from there.
pub const SCRIPT: &str = "watchdog/kiln-watchdog.sh";
/// The units, installed into /etc/systemd/system by the provisioner.
pub const UNITS: [&str; 2] = ["kiln-watchdog.service", "kiln-watchdog.timer"];
/// Consecutive unhealthy checks (one a minute) before a restart.
pub const CHECKS: u32 = 3;
/// The node exporter's textfile collector directory (Debian's package and the module's flag).
pub const TEXTFILE_DIR: &str = "/var/lib/prometheus/node-exporter";

/// Whether `host` gets the watchdog: it runs a container with a health check.
pub fn applies(sys: &System, host: &Host) -> bool {
    host.services.iter().map(|s| &sys.services[s]).any(|s| s.container.is_some() && s.health.is_some())
}

/// The host's watchdog files (path, content), empty when it has no container to watch.
pub fn emit(sys: &System, host: &Host) -> Vec<(String, String)> {
    if !applies(sys, host) {
        return Vec::new();
    }
    let exec = format!("/bin/sh /opt/kiln/{SCRIPT}");
    let [service, timer] = TimedService {
        name: UNITS[0],
        description: "restart containers that stay unhealthy",
        after: &[("After", "docker.service")],
        exec: &exec,
        service: &[],
        timer_description: "container watchdog, every minute",
        schedule: &[("OnBootSec", "2min"), ("OnUnitActiveSec", "1min"), ("AccuracySec", "10s")],
    }
    .units();
    let mut files = vec![
        (SCRIPT.to_string(), script(sys, host)),
        (format!("watchdog/{}", UNITS[0]), service),
        (format!("watchdog/{}", UNITS[1]), timer),
    ];
    files.extend(messages(sys, host));
    files
}

/// Stands for the restarted container's name in the messages; replaced by the script (a name the
/// script accepts has only `[a-zA-Z0-9_.-]`, nothing sed or JSON would read otherwise).
const CONTAINER: &str = "@CONTAINER@";

/// Per receiver the host tells itself, the message about a restart (`watchdog/notice-NAME.json`).
fn messages(sys: &System, host: &Host) -> Vec<(String, String)> {
    let text = format!(
        "kiln: the watchdog restarted container {CONTAINER} on host {} (system {}): it stayed unhealthy for {CHECKS} checks; `docker logs {CONTAINER}` on the host says why",
        host.name, sys.name
    );
    super::notice::receivers(sys, host)
        .iter()
        .map(|r| (format!("watchdog/notice-{}.json", r.name), super::notice::message(&text, r)))
        .collect()
}

fn script(sys: &System, host: &Host) -> String {
    let mut o = script_head("container watchdog", sys, host);
    o.push_str("set -eu\n");
    let _ = writeln!(o, "project={}", sh(&sys.name));
    let _ = writeln!(o, "limit={CHECKS}");
    let _ = writeln!(o, "state=${{KILN_WATCHDOG_STATE:-/var/lib/kiln/watchdog}}");
    let _ = writeln!(o, "textfile=${{KILN_WATCHDOG_TEXTFILE:-{TEXTFILE_DIR}}}");
    let receivers = super::notice::receivers(sys, host);
    let tell = if receivers.is_empty() {
        ""
    } else {
        o.push_str(super::notice::POST);
        o.push_str("# tell NAME: posts the restart of container NAME to each receiver; once one was told, not\n");
        o.push_str("# again for an hour (a failed post is tried again at the next restart).\ntell() {\n");
        o.push_str("\t[ -z \"$(find \"$state/$1.told\" -mmin -60 2>/dev/null)\" ] || return 0\n\ttold=\"\"\n");
        for r in &receivers {
            let message = sh(&format!("{KILN_ROOT}/watchdog/notice-{}.json", r.name));
            let _ = writeln!(
                o,
                "\tif sed \"s/{CONTAINER}/$1/g\" {message} >\"$state/$1.message\" && post \"$state/$1.message\" {}; then\n\t\ttold=1\n\telse\n\t\techo {} >&2\n\tfi",
                sh(&super::notice::secret_path(r)),
                sh(&format!("kiln-watchdog: telling {} failed", r.name))
            );
        }
        o.push_str("\trm -f \"$state/$1.message\"\n\t[ -z \"$told\" ] || touch \"$state/$1.told\"\n}\n");
        // After the counters are written: a notice that fails or hangs for curl's retries never
        // leaves the restart uncounted.
        "\t\ttell \"$name\" || :\n"
    };
    o.push_str(
        WATCHDOG_BODY
            .replace("@UNHEALTHY@", WATCHDOG_UNHEALTHY)
            .replace("@RESTARTS@", WATCHDOG_RESTARTS)
            .replace("@TELL@\n", tell)
            .as_str(),
    );
    o
}

/// The static part: per container, `<state>/<name>.count` (consecutive unhealthy checks) and
/// `<name>.restarts` (restarts so far). Names Docker allows are `[a-zA-Z0-9][a-zA-Z0-9_.-]*`;
/// anything else is skipped, so a name is safe as a file name and a label value.
const WATCHDOG_BODY: &str = r#"install -d -m 0700 "$state"
unhealthy=$(docker ps --filter "label=com.docker.compose.project=$project" --filter health=unhealthy --format '{{.Names}}')

for name in $unhealthy; do
	case $name in [!a-zA-Z0-9]* | *[!a-zA-Z0-9_.-]*) continue ;; esac
	count=$(cat "$state/$name.count" 2>/dev/null || echo 0)
	count=$((count + 1))
	if [ "$count" -ge "$limit" ]; then
		echo "kiln-watchdog: $name unhealthy for $count checks: restarting" >&2
		docker restart "$name" >/dev/null
		restarts=$(cat "$state/$name.restarts" 2>/dev/null || echo 0)
		echo $((restarts + 1)) >"$state/$name.restarts"
		rm -f "$state/$name.count"
@TELL@
	else
		echo "$count" >"$state/$name.count"
	fi
done

for f in "$state"/*.count; do
	[ -e "$f" ] || continue
	name=${f##*/}
	name=${name%.count}
	printf '%s\n' "$unhealthy" | grep -qxF -- "$name" || rm -f "$f"
done

[ -d "$textfile" ] || exit 0
tmp=$textfile/kiln_watchdog.prom.$$
{
	echo '# HELP @UNHEALTHY@ Whether the container was unhealthy at the last check.'
	echo '# TYPE @UNHEALTHY@ gauge'
	for f in "$state"/*.count; do
		[ -e "$f" ] || continue
		name=${f##*/}
		echo "@UNHEALTHY@{container=\"${name%.count}\"} 1"
	done
	echo '# HELP @RESTARTS@ Restarts of the container by the kiln watchdog.'
	echo '# TYPE @RESTARTS@ counter'
	for f in "$state"/*.restarts; do
		[ -e "$f" ] || continue
		name=${f##*/}
		echo "@RESTARTS@{container=\"${name%.restarts}\"} $(cat "$f")"
	done
} >"$tmp"
chmod 0644 "$tmp"
mv "$tmp" "$textfile/kiln_watchdog.prom"
"#;
