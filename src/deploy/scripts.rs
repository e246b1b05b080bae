//! What `kiln deploy` runs on a host, and how it reads the answers: the shell scripts of each
//! step (every value quoted with `render::quote::sh`), the secrets archive, and the parsers of
//! the probe, the provisioner's status and the health check. Pure; the steps that run them are
//! in `super`.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::{HostPlan, Layout, Secrets};
use crate::render::quote::sh;

/// Prints the marker's closure on the first line, then `NAME SHA256` for each delivered secret.
pub fn probe_script(l: &Layout) -> String {
    format!(
        "m=$(cat {marker} 2>/dev/null || true)\nprintf '%s\\n' \"$m\"\nif [ -d {dir} ]; then\n\tfor f in {dir}/*; do\n\t\t[ -f \"$f\" ] || continue\n\t\tprintf '%s %s\\n' \"${{f##*/}}\" \"$(sha256sum <\"$f\" | cut -d ' ' -f 1)\"\n\tdone\nfi\n",
        marker = sh(&l.marker),
        dir = sh(&l.secrets_dir),
    )
}

/// The probe's answer: the host's closure (if any) and each delivered secret's sha256.
pub fn parse_probe(out: &str) -> (Option<String>, BTreeMap<String, String>) {
    let mut lines = out.lines();
    let marker = lines.next().map(str::trim).filter(|m| !m.is_empty()).map(str::to_string);
    let digests = lines.filter_map(|l| l.split_once(' ')).map(|(n, d)| (n.to_string(), d.trim().to_string())).collect();
    (marker, digests)
}

/// Whether the host holds exactly these secrets with these values.
pub fn secrets_current(values: &Secrets, digests: &BTreeMap<String, String>) -> bool {
    values.0.len() == digests.len()
        && values.0.iter().all(|(n, v)| digests.get(n).is_some_and(|d| *d == crate::render::hex(&Sha256::digest(v))))
}

/// The names of the secrets whose values differ from the host's (or that it lacks).
pub fn changed_secrets(values: &Secrets, digests: &BTreeMap<String, String>) -> BTreeSet<String> {
    values
        .0
        .iter()
        .filter(|(n, v)| digests.get(*n).is_none_or(|d| *d != crate::render::hex(&Sha256::digest(v))))
        .map(|(n, _)| n.clone())
        .collect()
}

/// The secrets as a tar stream (in memory, never on disk): one root-only file per secret.
pub fn secrets_archive(values: &Secrets) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, v) in &values.0 {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o400);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(v.len() as u64);
        tar.append_data(&mut h, name, &v[..]).expect("writing to memory");
    }
    tar.into_inner().expect("writing to memory")
}

/// Unpacks the secrets archive from stdin into a private directory beside the secrets, moves
/// each file into place with a rename (atomic), and removes secrets the host no longer has.
/// Nothing is echoed.
pub fn secrets_script(l: &Layout, names: &BTreeSet<String>) -> String {
    let dir = sh(&l.secrets_dir);
    let keep: Vec<String> = names.iter().map(|n| sh(n)).collect();
    format!(
        "set -eu\numask 077\nmkdir -p {dir}\nchmod 0700 {dir}\nt=$(mktemp -d {dir}/.incoming.XXXXXX)\ntrap 'rm -rf \"$t\"' EXIT\ntar -x -f - -C \"$t\" --no-same-owner\nfor f in \"$t\"/* \"$t\"/.[!.]*; do\n\t[ -f \"$f\" ] || continue\n\tchmod 0400 \"$f\"\n\tmv -f \"$f\" {dir}/\ndone\nfor f in {dir}/*; do\n\t[ -f \"$f\" ] || continue\n\tcase \"${{f##*/}}\" in\n\t{list}) ;;\n\t*) rm -f \"$f\" ;;\n\tesac\ndone\n",
        list = if keep.is_empty() { "''".to_string() } else { keep.join(" | ") },
    )
}

/// Receives the bundle on stdin, checks its sha256 and unpacks it over the kiln root (staged
/// beside it, then renamed into place).
pub fn upload_script(l: &Layout, sha256: &str) -> String {
    let root = l.kiln_root.trim_end_matches('/');
    let (parent, _) = root.rsplit_once('/').unwrap_or(("", root));
    let parent = if parent.is_empty() { "/" } else { parent };
    format!(
        "set -eu\numask 022\nmkdir -p {parent}\nt=$(mktemp -d {parent}/.kiln-upload.XXXXXX)\ntrap 'rm -rf \"$t\"' EXIT\ncat >\"$t/bundle.tar.gz\"\nprintf '%s  %s\\n' {sum} \"$t/bundle.tar.gz\" | sha256sum --check --quiet --strict || {{ echo \"bundle sha256 mismatch: got $(sha256sum <\"$t/bundle.tar.gz\" | cut -d ' ' -f 1)\" >&2; exit 1; }}\nmkdir \"$t/x\"\ntar -xzf \"$t/bundle.tar.gz\" -C \"$t/x\" --no-same-owner\nrm -rf {root}.old\nif [ -e {root} ]; then mv {root} {root}.old; fi\nmv \"$t/x/{bundle_root}\" {root}\nrm -rf {root}.old\n",
        parent = sh(parent),
        root = sh(root),
        sum = sh(sha256),
        bundle_root = crate::render::bundle::ROOT,
    )
}

/// Starts the provisioner detached from the ssh session (its own session, output to the log),
/// unless one is running; its exit status lands in `provision.status`.
pub fn provision_start_script(l: &Layout) -> String {
    let state = sh(&l.state_dir);
    let log = sh(&l.log);
    let log_dir = sh(l.log.rsplit_once('/').map(|(d, _)| d).unwrap_or("."));
    let inner = format!(
        "echo $$ >{state}/provision.pid; sh {root}/provision.sh >{log} 2>&1; s=$?; echo $s >{state}/provision.status.tmp; mv -f {state}/provision.status.tmp {state}/provision.status",
        root = sh(&l.kiln_root),
    );
    format!(
        "set -eu\nmkdir -p {state}\nmkdir -p {log_dir}\nchmod 0700 {log_dir}\nif [ -s {state}/provision.pid ] && kill -0 \"$(cat {state}/provision.pid)\" 2>/dev/null && [ ! -e {state}/provision.status ]; then\n\techo already running\n\texit 0\nfi\nrm -f {state}/provision.status {state}/provision.pid\nsetsid sh -c {inner} </dev/null >/dev/null 2>&1 &\necho started\n",
        inner = sh(&inner),
    )
}

/// Prints the marker on the first line and the provisioner's exit status (empty while it runs)
/// on the second.
pub fn provision_status_script(l: &Layout) -> String {
    format!(
        "printf '%s\\n' \"$(cat {m} 2>/dev/null || true)\" \"$(cat {s}/provision.status 2>/dev/null || true)\"\n",
        m = sh(&l.marker),
        s = sh(&l.state_dir)
    )
}

/// Where the provisioner stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Converge {
    Running,
    Reached,
    /// Finished with this status; the marker holds this closure.
    Failed {
        status: String,
        marker: Option<String>,
    },
}

pub fn parse_status(out: &str, closure: &str) -> Converge {
    let mut lines = out.lines();
    let marker = lines.next().map(str::trim).filter(|m| !m.is_empty()).map(str::to_string);
    match lines.next().map(str::trim).unwrap_or("") {
        "" => Converge::Running,
        "0" if marker.as_deref() == Some(closure) => Converge::Reached,
        s => Converge::Failed { status: s.to_string(), marker },
    }
}

/// The last lines of the provisioner's log.
pub fn log_tail_script(l: &Layout, lines: usize) -> String {
    format!("tail -n {lines} {} 2>/dev/null || true\n", sh(&l.log))
}

/// How long a native unit must have been active to count as healthy: a service that crashes
/// and is restarted (`Restart=on-failure`) is briefly `active` each time, and its activation
/// time starts again with each restart.
pub const UNIT_STABLE_SECS: u64 = 5;

/// One line per container (`container NAME STATUS HEALTH`, health `none` without a
/// healthcheck) and per unit (`unit NAME STATE SECONDS`: how long it has been active, from
/// `ActiveEnterTimestampMonotonic` and the uptime).
pub fn health_script(l: &Layout, containers: &[String], units: &[String]) -> String {
    let mut o = String::new();
    if !units.is_empty() {
        o.push_str("up=$(cut -d . -f 1 /proc/uptime 2>/dev/null || echo 0)\n");
    }
    let compose = sh(&format!("{}/compose.yaml", l.kiln_root));
    for c in containers {
        let q = sh(c);
        o.push_str(&format!("id=$(docker compose --file {compose} ps --all --quiet {q} 2>/dev/null | head -n 1 || true)\n"));
        o.push_str(&format!("if [ -z \"$id\" ]; then echo \"container {q} missing none\"; else\n"));
        o.push_str("\tst=$(docker inspect --format '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' \"$id\" 2>/dev/null || echo 'unknown none')\n");
        o.push_str(&format!("\techo \"container {q} $st\"\nfi\n"));
    }
    for u in units {
        let q = sh(u);
        o.push_str(&format!("s=$(systemctl is-active {q} 2>/dev/null || true)\n"));
        o.push_str(&format!("t=$(systemctl show -p ActiveEnterTimestampMonotonic --value {q} 2>/dev/null || true)\n"));
        o.push_str("case $t in ''|*[!0-9]*) t=0 ;; esac\n");
        o.push_str(&format!("echo \"unit {q} $s $((up - t / 1000000))\"\n"));
    }
    o
}

/// What is not healthy yet, from the health script's output (empty: all healthy). Anything
/// expected but missing from the output counts as not healthy.
pub fn unhealthy(out: &str, containers: &[String], units: &[String]) -> Vec<String> {
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut bad = Vec::new();
    for l in out.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["container", name, status, health] => {
                seen.insert(("container".into(), name.to_string()), format!("{status} {health}"));
                if *status != "running" || !matches!(*health, "healthy" | "none") {
                    bad.push(format!(
                        "container {name}: {status}{}",
                        if *health == "none" { String::new() } else { format!(", {health}") }
                    ));
                }
            }
            ["unit", name, state] => {
                seen.insert(("unit".into(), name.to_string()), state.to_string());
                if *state != "active" {
                    bad.push(format!("unit {name}: {state}"));
                }
            }
            ["unit", name, state, secs] => {
                seen.insert(("unit".into(), name.to_string()), state.to_string());
                let secs: u64 = secs.parse().unwrap_or(0);
                if *state != "active" {
                    bad.push(format!("unit {name}: {state}"));
                } else if secs < UNIT_STABLE_SECS {
                    bad.push(format!("unit {name}: active for {secs} s only (restarting?)"));
                }
            }
            ["unit", name] => {
                seen.insert(("unit".into(), name.to_string()), String::new());
                bad.push(format!("unit {name}: unknown"));
            }
            _ => {}
        }
    }
    for c in containers {
        if !seen.contains_key(&("container".into(), c.clone())) {
            bad.push(format!("container {c}: not reported"));
        }
    }
    for u in units {
        if !seen.contains_key(&("unit".into(), u.clone())) {
            bad.push(format!("unit {u}: not reported"));
        }
    }
    bad
}

/// The containers and units [`unhealthy`] complains about, by kind: `(containers, units)`.
pub fn bad_names(out: &str, containers: &[String], units: &[String]) -> (Vec<String>, Vec<String>) {
    let bad = unhealthy(out, containers, units);
    let of = |kind: &str, all: &[String]| -> Vec<String> {
        all.iter().filter(|n| bad.iter().any(|b| b.starts_with(&format!("{kind} {n}:")))).cloned().collect()
    };
    (of("container", containers), of("unit", units))
}

/// What unhealthy services say: each container's last log lines (Compose), each unit's
/// `systemctl status` with its last journal lines. Read-only.
pub fn unhealthy_details_script(l: &Layout, (containers, units): &(Vec<String>, Vec<String>)) -> String {
    let compose = sh(&format!("{}/compose.yaml", l.kiln_root));
    let mut o = String::new();
    for c in containers {
        let q = sh(c);
        o.push_str(&format!(
            "echo \"--- container {c}\"\ndocker compose --file {compose} logs --no-color --tail 15 {q} 2>&1 || true\n",
            c = c.replace(['"', '\\', '$', '`'], "_")
        ));
    }
    for u in units {
        let q = sh(u);
        o.push_str(&format!(
            "echo \"--- unit {u}\"\nsystemctl status --no-pager --lines 15 {q} 2>&1 || true\n",
            u = u.replace(['"', '\\', '$', '`'], "_")
        ));
    }
    o
}

/// Restarts the services that use any of `changed` (containers through Compose, native units
/// through systemd). Empty when none does.
pub fn restart_script(l: &Layout, plan: &HostPlan, changed: &BTreeSet<String>) -> Option<String> {
    let users: Vec<&String> = plan.secret_users.iter().filter(|(_, s)| !s.is_disjoint(changed)).map(|(n, _)| n).collect();
    let mut o = String::from("set -eu\n");
    let compose = sh(&format!("{}/compose.yaml", l.kiln_root));
    let containers: Vec<String> = users.iter().filter(|u| plan.containers.contains(u)).map(|u| sh(u)).collect();
    if !containers.is_empty() {
        o.push_str(&format!("docker compose --file {compose} restart {}\n", containers.join(" ")));
    }
    let mut any = !containers.is_empty();
    for unit in users.iter().filter_map(|u| plan.unit_of.get(*u)) {
        o.push_str(&format!("systemctl try-restart {}\n", sh(unit)));
        any = true;
    }
    any.then_some(o)
}
