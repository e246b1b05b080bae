//! Scheduled jobs (`[jobs.NAME]` in a module): per job a sh script, a oneshot systemd service
//! that runs it and a timer on the job's calendar; and the provisioner's steps that install
//! them, retire the timers of jobs that are gone, and give owned volumes their owner.

use std::fmt::Write;

use super::quote::sh;
use super::timer_unit::TimedService;
use crate::model::{Host, Job, Service, System};
use crate::render::KILN_ROOT;
use crate::syntax::module::JobContainer;

/// Where job scripts and units live in the payload.
pub const DIR: &str = "jobs";

/// The unit name of a job, without suffix: `kiln-job-SERVICE-JOB`.
pub fn unit_name(service: &str, job: &str) -> String {
    format!("kiln-job-{service}-{job}")
}

/// The host's job files (path, content): a script, a service and a timer per job.
pub fn emit(sys: &System, host: &Host) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in host.services.iter().map(|n| &sys.services[n]) {
        for j in &s.jobs {
            let name = unit_name(&s.name, &j.name);
            let script_path = format!("{DIR}/{name}.sh");
            out.push((script_path.clone(), script(sys, host, s, j)));
            let [service, timer] = units(s, j, &name, &script_path);
            out.push((format!("{DIR}/{name}.service"), service));
            out.push((format!("{DIR}/{name}.timer"), timer));
        }
    }
    out
}

fn script(sys: &System, host: &Host, s: &Service, j: &Job) -> String {
    let mut o = String::from("#!/bin/sh\n");
    let _ = writeln!(
        o,
        "# kiln {} job `{}` of service `{}` on host `{}` of system `{}`. Generated: do not edit.",
        crate::pipeline::KILN_VERSION,
        j.name,
        s.name,
        host.name,
        sys.name
    );
    o.push_str("set -eu\n");
    let words: Vec<String> = j.command.iter().map(|w| sh(w)).collect();
    let user = j.user.as_ref().map(|u| format!("--user {} ", sh(u))).unwrap_or_default();
    let compose = format!("docker compose --file {}", sh(&format!("{KILN_ROOT}/compose.yaml")));
    match (s.container.is_some(), j.container) {
        // The running container: its environment, secrets, networks and volumes.
        (true, JobContainer::Exec) => {
            let _ = writeln!(o, "exec {compose} exec -T {user}{} {}", sh(&s.name), words.join(" "));
        }
        // A one-off container of the service: same image, volumes, secrets and networks.
        (true, JobContainer::Run) => {
            let _ = writeln!(o, "exec {compose} run --rm --no-deps -T {user}{} {}", sh(&s.name), words.join(" "));
        }
        // Native: the unit's `User=` switches user.
        (false, _) => {
            let _ = writeln!(o, "exec {}", words.join(" "));
        }
    }
    o
}

/// The job's service, which runs its script, and the timer on the job's calendar.
fn units(s: &Service, j: &Job, name: &str, script: &str) -> [String; 2] {
    let mut after: Vec<(&str, &str)> = Vec::new();
    let mut service: Vec<(&str, &str)> = Vec::new();
    if s.container.is_some() {
        after.push(("After", "docker.service"));
    } else if let Some(u) = &j.user {
        service.push(("User", u));
    }
    if let Some(u) = s.native.as_ref().and_then(|n| n.unit.as_deref()) {
        after.push(("After", u));
    }
    TimedService {
        name: &format!("{name}.service"),
        description: &format!("job `{}` of `{}`", j.name, s.name),
        after: &after,
        exec: &format!("/bin/sh {KILN_ROOT}/{script}"),
        service: &service,
        timer_description: &format!("schedule of job `{}` of `{}`", j.name, s.name),
        schedule: &[("OnCalendar", &j.schedule), ("Persistent", "true")],
    }
    .units()
}

/// Provisioner step: install the job units, start their timers, and stop and remove the units
/// of jobs this host no longer has.
pub fn provision(o: &mut String, sys: &System, host: &Host) {
    let names: Vec<String> =
        host.services.iter().map(|n| &sys.services[n]).flat_map(|s| s.jobs.iter().map(|j| unit_name(&s.name, &j.name))).collect();
    o.push_str("\n# Scheduled jobs: a systemd timer per job; timers of jobs that are gone are removed.\nlog 'step: jobs'\n");
    for name in &names {
        for suffix in ["service", "timer"] {
            super::provision::put_unit(o, &format!("{DIR}/{name}.{suffix}"), &format!("{name}.{suffix}"));
        }
    }
    let keep: Vec<String> = names.iter().flat_map(|n| [sh(&format!("{n}.service")), sh(&format!("{n}.timer"))]).collect();
    o.push_str("for f in /etc/systemd/system/kiln-job-*.timer /etc/systemd/system/kiln-job-*.service; do\n\t[ -e \"$f\" ] || continue\n");
    if keep.is_empty() {
        o.push_str("\tsystemctl disable --now \"${f##*/}\" >/dev/null 2>&1 || true\n\trm -f \"$f\"\n\tunits_changed=1\n");
    } else {
        let _ = writeln!(
            o,
            "\tcase ${{f##*/}} in\n\t{}) ;;\n\t*)\n\t\tsystemctl disable --now \"${{f##*/}}\" >/dev/null 2>&1 || true\n\t\trm -f \"$f\"\n\t\tunits_changed=1\n\t\t;;\n\tesac",
            keep.join(" | ")
        );
    }
    o.push_str("done\nreload_units\n");
    if !names.is_empty() {
        let timers: Vec<String> = names.iter().map(|n| format!("{n}.timer")).collect();
        super::provision::start_units(o, &timers.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

/// Provisioner lines before a container starts: its owned volumes are created (with the
/// container, not started) and their directory given the declared `uid:gid`. Docker creates a
/// named volume's directory as root (or copies the image's directory when it has one): an image
/// that runs as another user and has no such directory could not write its own data.
pub fn volume_owners(o: &mut String, sys: &System, s: &Service) {
    let owned: Vec<_> = s.volumes.iter().filter_map(|v| Some((v, v.owner?))).collect();
    if owned.is_empty() || s.container.is_none() {
        return;
    }
    let _ = writeln!(o, "docker compose --file \"$KILN_ROOT/compose.yaml\" up --no-start --no-deps {} >/dev/null", sh(&s.name));
    for (v, (uid, gid)) in owned {
        // Compose names a project's volume `PROJECT_NAME`.
        let volume = format!("{}_{}", sys.name, v.source);
        let _ = writeln!(
            o,
            "dir=$(docker volume inspect --format '{{{{ .Mountpoint }}}}' {})\n[ \"$(stat -c %u:%g \"$dir\")\" = {} ] || chown {uid}:{gid} \"$dir\"",
            sh(&volume),
            sh(&format!("{uid}:{gid}"))
        );
    }
}
