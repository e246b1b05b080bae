//! `kiln-backup.sh restore [SNAPSHOT]`: a host's data back from one of its restic snapshots.
//!
//! The part of the backup script that runs when an operator restores (a replaced server whose
//! volumes are new, or data gone wrong). Nothing is lost on the way: before anything is
//! touched the snapshot must exist and hold a dump of every service that loads one; each
//! backed-up volume's current files are moved aside (a rename on Docker's own filesystem, never a
//! copy or a delete) into `kiln-before-restore/STAMP` under Docker's data root, and the script
//! says where. Then:
//!
//! - a service whose module declares `[backup] restore` (a database: its files in a snapshot are
//!   a live copy, only its dump is consistent) gets an empty volume, its image initialises it
//!   as on a first start, and the dump is piped into the restore command inside the container;
//! - every other backed-up volume gets its files back as the snapshot holds them (restic
//!   restores owners and modes as root); a module whose database is a file (SQLite: `[backup]
//!   restore_when = "stopped"`) then has its dump loaded over those files by a one-off container
//!   of the service, before anything starts;
//! - the stack starts once the dumps are loaded, so no application meets a half-loaded database.
//!
//! A failure part-way stops the script with a message that says what state the host is in.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::quote::sh;
use crate::model::{Host, Service, System};

/// Docker's data root on this host (on the data volume where there is one).
fn docker_root(sys: &System, host: &Host) -> String {
    super::data_volume::host_path(sys, host, "/var/lib/docker")
}

/// The script's variables for Docker's data root and its volumes directory.
pub fn variables(sys: &System, host: &Host) -> String {
    format!("docker_root={}\nvolumes=\"$docker_root/volumes\"\n", sh(&docker_root(sys, host)))
}

/// `body` (which reads `$v`) for the Docker volume of each of `sources`: a `for` loop, or one
/// assignment for a single volume (a loop over one word is what shellcheck warns about).
pub fn each_volume<'a>(sys: &System, sources: impl Iterator<Item = &'a str>, indent: &str, body: &str) -> String {
    let names: Vec<String> = sources.map(|s| sh(&volume_name(sys, s))).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => format!("{indent}v={one}\n{indent}{}\n", body.replace('\n', &format!("\n{indent}"))),
        _ => {
            format!("{indent}for v in {}; do\n{indent}\t{}\n{indent}done\n", names.join(" "), body.replace('\n', &format!("\n{indent}\t")))
        }
    }
}

/// The Docker volume Compose makes for `source` (project name, underscore, volume).
fn volume_name(sys: &System, source: &str) -> String {
    format!("{}_{source}", sys.name)
}

/// The volumes of `services` that hold data, each once (a volume services share, a server's and
/// its worker's, is one path).
pub fn backed_up<'a>(services: &[&'a Service]) -> BTreeSet<&'a str> {
    services.iter().flat_map(|s| s.volumes.iter().filter(|v| v.backup).map(|v| v.source.as_str())).collect()
}

/// The volumes whose files a snapshot keeps: those that hold data, less the volumes of a service
/// whose dump a restore loads into its running server (a database server's). A restore starts
/// those empty and loads the dump, never their files, and a file-by-file copy of a running
/// database server's directory is no consistent backup anyway: copying it would only cost time
/// and space in the repository.
pub fn snapshotted<'a>(services: &[&'a Service]) -> BTreeSet<&'a str> {
    let into_running: Vec<&Service> = services.iter().copied().filter(|s| loads_dump(s) && !stopped(s)).collect();
    backed_up(services).difference(&backed_up(&into_running)).copied().collect()
}

/// The file of the service's dump in the dump directory.
pub fn dump_file(s: &Service) -> String {
    format!("{}.dump", s.name)
}

/// Loads the service's dump from `dir` (a shell word ending in `/`) with the module's restore
/// command through `runner` (`compose` or `drill`): `exec` in the running service, or, for a
/// module that restores while stopped, `run` in a one-off container of it (its entrypoint
/// replaced by the command's first word, so that an image's entrypoint does not start the
/// service; no dependency started).
fn load(runner: &str, s: &Service, dir: &str) -> String {
    let restore = s.backup.as_ref().and_then(|b| b.restore.as_deref()).unwrap_or_default();
    let words: Vec<String> = restore.iter().map(|w| sh(w)).collect();
    let how = match words.split_first() {
        Some((first, rest)) if stopped(s) => {
            format!(
                "run --rm --no-deps -T --entrypoint {first} {}{}",
                sh(&s.name),
                rest.iter().map(|w| format!(" {w}")).collect::<String>()
            )
        }
        _ => format!("exec -T {} {}", sh(&s.name), words.join(" ")),
    };
    format!("{}\t{runner} {how} < {dir}{}\n", literal_note(restore, "\t"), sh(&dump_file(s)))
}

/// Whether the service's dump is loaded by its module's restore command.
fn loads_dump(s: &Service) -> bool {
    s.container.is_some() && s.backup.as_ref().is_some_and(|b| b.dump.is_some() && b.restore.as_ref().is_some_and(|r| !r.is_empty()))
}

/// Whether its dump is loaded before it starts, over its volumes' files (`restore_when = "stopped"`).
fn stopped(s: &Service) -> bool {
    s.backup.as_ref().is_some_and(|b| b.restore_stopped)
}

/// `snapshot_id SNAPSHOT`, defined once for the `restore` and `drill` branches: the full id of this
/// host's snapshot (`latest` too), nothing when there is none. restic 0.14 ignores an id it does
/// not find (exit 0, `[]`) and ignores `--host` for an explicit id, so the answer is read for
/// both the id and the snapshot's hostname.
pub const SNAPSHOT_ID: &str = r#"
snapshot_id() {
	found=$(restic snapshots --json --host "$host" "$1") || return 1
	case $found in *"\"hostname\":\"$host\""*) ;; *) return 0 ;; esac
	printf '%s\n' "$found" | sed -n 's/.*"id":"\([0-9a-f]\{64\}\)".*/\1/p'
}
"#;

/// `$snapshot` (the branch's argument, `latest` by default) replaced by its full id, or the
/// script stops saying so and `outcome`.
fn resolve(outcome: &str) -> String {
    format!(
        "\tsnapshot=${{2:-latest}}\n\tid=$(snapshot_id \"$snapshot\")\n\t[ -n \"$id\" ] || {{ echo \"kiln-backup: no snapshot $snapshot of host $host (restic snapshots --host $host lists them); {outcome}\" >&2; exit 1; }}\n\tsnapshot=$id\n"
    )
}

/// The `restore` branch of the backup script: `dumps` and `compose` are the script's variables
/// for the dump directory, and its `compose` function.
pub fn section(sys: &System, services: &[&Service]) -> String {
    let loaded: Vec<&Service> = services.iter().copied().filter(|s| loads_dump(s)).collect();
    let (over_files, into_running): (Vec<&Service>, Vec<&Service>) = loaded.iter().partition(|s| stopped(s));
    let volumes = backed_up(services);
    let containers = services.iter().any(|s| s.container.is_some());
    let mut o = String::from("\nif [ \"${1:-}\" = restore ]; then\n");
    o.push_str("\t# Before anything is touched: the snapshot exists and holds every dump the restore loads.\n");
    o.push_str(&resolve("nothing was changed"));
    if !loaded.is_empty() {
        o.push_str("\tlisting=$(restic ls \"$snapshot\" \"$dumps\")\n");
    }
    for s in &loaded {
        let file = dump_file(s);
        let _ = writeln!(
            o,
            "\tprintf '%s\\n' \"$listing\" | grep -qxF \"$dumps/\"{f} || {{ printf 'kiln-backup: snapshot %s holds no dump of %s (%s); nothing was changed\\n' \"$snapshot\" {n} \"$dumps/\"{f} >&2; exit 1; }}",
            f = sh(&file),
            n = sh(&s.name)
        );
    }
    o.push_str("\tkept=$docker_root/kiln-before-restore/$(date -u +%Y%m%dT%H%M%SZ)\n");
    o.push_str("\tstage='stopping the services'\n");
    o.push_str("\ttrap 'rc=$?; [ \"$rc\" -eq 0 ] || echo \"kiln-backup: the restore stopped while $stage; the data found before it is in $kept\" >&2' EXIT\n");
    if containers {
        o.push_str("\tcompose down\n");
    }
    o.push_str("\tinstall -d -m 0700 \"$kept\"\n");
    o.push_str("\tstage='moving the current data aside'\n");
    // Each volume goes too, so Compose makes it again as on a first start (Docker copies the
    // image's files and their owners into an empty new volume).
    o.push_str(&each_volume(
        sys,
        volumes.iter().copied(),
        "\t",
        "if [ -d \"$volumes/$v/_data\" ]; then mv \"$volumes/$v/_data\" \"$kept/$v\"; fi\nif docker volume inspect \"$v\" >/dev/null 2>&1; then docker volume rm \"$v\" >/dev/null; fi",
    ));
    if containers {
        o.push_str("\tcompose up --no-start\n");
    }
    o.push_str("\tstage='restoring files from the snapshot'\n");
    o.push_str("\tfind \"$dumps\" -mindepth 1 -delete\n");
    o.push_str("\tset -- --include \"$dumps\"\n");
    // A volume shared with a service that loads its dump into the running service starts empty
    // with it: only the snapshotted volumes' files come back.
    o.push_str(&each_volume(sys, snapshotted(services).into_iter(), "\t", "set -- \"$@\" --include \"$volumes/$v/_data\""));
    o.push_str("\trestic restore \"$snapshot\" --target / \"$@\"\n");
    if !loaded.is_empty() {
        o.push_str("\tstage='loading the dumps'\n");
    }
    for s in &over_files {
        o.push_str(&load("compose", s, "\"$dumps/\""));
    }
    if !into_running.is_empty() {
        let names: Vec<String> = into_running.iter().map(|s| sh(&s.name)).collect();
        let _ = writeln!(o, "\tcompose up --detach --wait {}", names.join(" "));
        for s in &into_running {
            o.push_str(&load("compose", s, "\"$dumps/\""));
        }
    }
    if containers {
        o.push_str("\tstage='starting the services'\n");
        o.push_str("\tcompose up --detach --wait\n");
    }
    for s in services.iter().filter(|s| !loads_dump(s) && s.backup.as_ref().is_some_and(|b| b.dump.is_some())) {
        let _ = writeln!(
            o,
            "\tprintf 'kiln-backup: the files of %s are back as snapshotted; its dump, which kiln does not load, is %s\\n' {} \"$dumps/\"{}",
            sh(&s.name),
            sh(&dump_file(s))
        );
    }
    o.push_str("\techo \"kiln-backup: restored snapshot $snapshot of host $host; the data found before it is in $kept (remove it once the services are right)\"\n");
    o.push_str("\texit 0\nfi\n");
    o
}

/// Before a module's command whose words hold `$` or a backquote: they are single-quoted
/// literals for the shell inside the container, which shellcheck would otherwise flag.
pub fn literal_note(words: &[String], indent: &str) -> String {
    if words.iter().any(|w| w.contains(['$', '`'])) {
        format!("{indent}# shellcheck disable=SC2016 # the module's command, expanded by the container's shell\n")
    } else {
        String::new()
    }
}

/// Where the payload puts the drill's compose file.
pub const DRILL_COMPOSE: &str = "backup/drill.compose.yaml";

/// The services a drill loads a dump into: those whose module restores one, on a bridge network
/// (a service on the host's network would meet its own ports).
pub fn drilled<'a>(services: &[&'a Service]) -> Vec<&'a Service> {
    services
        .iter()
        .copied()
        .filter(|s| loads_dump(s) && s.container.as_ref().is_some_and(|c| c.network_mode.as_deref() != Some("host")))
        .collect()
}

/// The `drill` branch: the snapshot restored in full into a scratch directory beside Docker's data
/// (restic reads back and verifies every file), then each dump loaded into a fresh copy of its
/// service, started as a Compose project of its own ([`super::compose::drill_project`]: its own
/// volumes and network, no published port). The running services and their data are not
/// touched; the scratch directory and the drill's containers and volumes go at the end, pass or
/// fail. It needs free space for the snapshot (checked first) and, one copy at a time, the memory
/// limit of each copy ([`MEMORY_ROOM`]).
pub fn drill_section(services: &[&Service]) -> String {
    let drilled = drilled(services);
    let mut o = String::from("\nif [ \"${1:-}\" = drill ]; then\n");
    o.push_str("\tscratch=$docker_root/kiln-drill\n");
    if !drilled.is_empty() {
        let _ = writeln!(o, "\tdrill() {{ docker compose --file {} \"$@\"; }}", sh(&format!("{}/{DRILL_COMPOSE}", super::KILN_ROOT)));
    }
    o.push_str(&drill_done(!drilled.is_empty()));
    o.push_str("\ttrap drill_done EXIT\n");
    o.push_str(&resolve("no drill ran"));
    o.push_str("\trm -rf \"$scratch\"\n");
    o.push_str("\t# Room for the whole snapshot first (restic's restore size), in KiB as df counts.\n");
    o.push_str("\tneed=$(restic stats --json --mode restore-size \"$snapshot\" | sed -n 's/.*\"total_size\":\\([0-9]*\\).*/\\1/p')\n");
    o.push_str("\tfree=$(df -Pk \"$docker_root\" | awk 'NR == 2 { print $4 }')\n");
    o.push_str("\t[ -n \"$need\" ] && [ $(((need + 1023) / 1024)) -lt \"$free\" ] || { echo \"kiln-backup: the drill needs ${need:-?} bytes under $docker_root, $free KiB are free\" >&2; exit 1; }\n");
    o.push_str("\tinstall -d -m 0700 \"$scratch\"\n");
    o.push_str("\trestic restore \"$snapshot\" --target \"$scratch\" --verify\n");
    if drilled.iter().any(|s| s.resources.memory.is_some()) {
        o.push_str(MEMORY_ROOM);
    }
    for s in &drilled {
        let dump = sh(&dump_file(s));
        let _ = writeln!(
            o,
            "\t[ -s \"$scratch$dumps/\"{dump} ] || {{ printf 'kiln-backup: snapshot %s holds no dump of %s\\n' \"$snapshot\" {n} >&2; exit 1; }}",
            n = sh(&s.name)
        );
        if let Some(limit) = s.resources.memory {
            let _ = writeln!(o, "\tmemory_room {} {}", limit.0, sh(&s.name));
        }
        if stopped(s) {
            // Into the copy's empty volume, by a one-off container that is gone when it ends.
            o.push_str(&load("drill", s, "\"$scratch$dumps/\""));
            continue;
        }
        let _ = writeln!(o, "\tdrill up --detach --wait {}", sh(&s.name));
        o.push_str(&load("drill", s, "\"$scratch$dumps/\""));
        // One copy at a time beside the running services: its volume stays until the end.
        let _ = writeln!(o, "\tdrill rm --stop --force {} >/dev/null", sh(&s.name));
    }
    let names: Vec<&str> = drilled.iter().map(|s| s.name.as_str()).collect();
    let loaded = if names.is_empty() { "no dump to load".to_string() } else { format!("dumps loaded: {}", names.join(", ")) };
    let _ = writeln!(o, "\techo \"kiln-backup: drill passed: snapshot $snapshot restored and verified ($need bytes); {loaded}\"");
    o.push_str("\texit 0\nfi\n");
    o
}

/// Before a copy starts: the host has its memory limit available (`MemAvailable`, which counts
/// the page cache the kernel can drop), else the drill stops there rather than let the kernel's
/// OOM killer choose among the running services. A service without a limit is not checked.
const MEMORY_ROOM: &str = r#"	meminfo=${KILN_BACKUP_MEMINFO:-/proc/meminfo}
	memory_room() {
		avail=$(awk '$1 == "MemAvailable:" { print $2 }' "$meminfo")
		[ -n "$avail" ] && [ "$avail" -ge $(($1 / 1024)) ] || {
			printf 'kiln-backup: the drill needs %s MiB of memory for a copy of %s (its limit), %s MiB are available\n' \
				$(($1 / 1048576)) "$2" $((${avail:-0} / 1024)) >&2
			exit 1
		}
	}
"#;

/// The drill's exit, pass or fail: its containers, volumes and scratch directory go, and its
/// outcome reaches the node exporter's textfile collector (the `BackupDrillFailed` alert).
fn drill_done(compose: bool) -> String {
    use super::alerts::{DRILL_LAST_OK, DRILL_LAST_RUN};
    let down = if compose { "\t\tdrill down --volumes --timeout 10 >/dev/null 2>&1 || true\n" } else { "" };
    format!(
        r#"	# shellcheck disable=SC2329 # run by the EXIT trap
	drill_done() {{
		rc=$?
{down}		rm -rf "$scratch"
		if [ -d "$textfile" ]; then
			printf '# TYPE {DRILL_LAST_RUN} gauge\n{DRILL_LAST_RUN} %s\n# TYPE {DRILL_LAST_OK} gauge\n{DRILL_LAST_OK} %s\n' \
				"$(date +%s)" "$((rc == 0))" | publish kiln_backup_drill.prom
		fi
		exit "$rc"
	}}
"#
    )
}
