//! A stateful cloud host's replacement: before OpenTofu destroys its old server and moves the
//! data volume to the new one, the old server's services are stopped and the volume is
//! unmounted, so the data is at rest (a database shut down, not cut off) when it moves.
//!
//! Docker and Caddy require the volume's mount unit (`render/data_volume.rs`: `RequiredBy=`), so
//! stopping the mount stops them first; the host's native units are stopped before it. When the
//! volume cannot be unmounted (a process kiln does not know of holds it), what was stopped is
//! started again and the replacement does not go on: nothing is applied for the wave. An old
//! server that cannot be reached (it is why it is being replaced, often) is replaced as it is:
//! its volume then moves as after a power loss, and the progress says so.

use std::fmt::Write;
use std::time::Duration;

use super::host::{Host, SSH_FAILED};
use super::progress::{Progress, State};
use super::{Failure, Step};
use crate::render::data_volume::{MOUNT, UNIT};
use crate::render::quote::sh;

/// What the stop script prints last when the volume is at rest.
const STOPPED: &str = "kiln-stop: stopped";

/// The script that puts an old server's data at rest: its native `units` stopped, then the data
/// volume's mount (and with it Docker, Caddy and their binds), then `sync`. When the mount stays
/// (busy), it names the processes that hold it, starts again what was active and exits 1. Pure.
pub fn stop_script(units: &[String]) -> String {
    let mount_unit = UNIT.rsplit('/').next().unwrap_or(UNIT);
    let mut o = String::from("set -u\n");
    let _ = writeln!(o, "m={}", sh(MOUNT));
    let _ = writeln!(o, "if ! mountpoint -q \"$m\"; then echo 'kiln-stop: no data volume mounted'; sync; echo {}; exit 0; fi", sh(STOPPED));
    let mut candidates: Vec<String> = units.to_vec();
    candidates.extend(["docker.socket", "docker.service", "caddy.service", mount_unit].map(String::from));
    let words: Vec<String> = candidates.iter().map(|u| sh(u)).collect();
    // What was active, to start it again if the volume cannot be let go.
    let _ = writeln!(o, "was=''\nfor u in {}; do systemctl -q is-active \"$u\" && was=\"$was $u\"; done", words.join(" "));
    for u in units {
        let _ = writeln!(o, "systemctl stop {} || true", sh(u));
    }
    let _ = writeln!(o, "systemctl stop {} || true", sh(mount_unit));
    o.push_str("sync\n");
    let _ = writeln!(o, "if ! mountpoint -q \"$m\"; then echo {}; exit 0; fi", sh(STOPPED));
    o.push_str(
        "echo \"kiln-stop: $m is still mounted; held by:\"\n\
         for p in /proc/[0-9]*; do\n\
         \tfor f in \"$p/cwd\" \"$p\"/fd/*; do\n\
         \t\tcase \"$(readlink \"$f\" 2>/dev/null)\" in \"$m\" | \"$m\"/*) echo \"  pid ${p#/proc/} $(cat \"$p/comm\" 2>/dev/null)\"; break ;; esac\n\
         \tdone\n\
         done\n\
         # shellcheck disable=SC2086 # one unit per word\n\
         for u in $was; do systemctl start \"$u\" || true; done\n\
         echo 'kiln-stop: what was stopped is started again'\n\
         exit 1\n",
    );
    o
}

/// Stops the old server of `host` (reached with its pin, as now in OpenTofu's state), within
/// `timeout`. `Ok(true)`: its data is at rest; `Ok(false)`: ssh could not reach the server and
/// it is replaced as it is (reported); `Err`: it was reached but the volume could not be let go,
/// or the script did not finish (the server may be half stopped: nothing is applied).
pub fn stop_old_server(ssh: &dyn Host, host: &str, units: &[String], timeout: Duration, p: &Progress) -> Result<bool, Failure> {
    p.emit(host, Step::Stop, State::Started, "stopping the old server's services and unmounting its data volume");
    match ssh.run(&stop_script(units), b"", timeout) {
        Ok(out) if out.ok() && out.stdout_text().contains(STOPPED) => {
            p.emit(host, Step::Stop, State::Done, "the old server's data is at rest; OpenTofu moves the volume");
            Ok(true)
        }
        Ok(out) => Err(Failure {
            host: host.to_string(),
            step: Step::Stop,
            message: format!(
                "the old server's data volume could not be unmounted, so it is not replaced and nothing was applied for this wave:\n{}{}",
                out.stdout_text().trim_end(),
                out.stderr_tail(5).lines().map(|l| format!("\n{l}")).collect::<String>()
            ),
            log_tail: None,
            details: None,
        }),
        Err(e) if e.starts_with(SSH_FAILED) => {
            p.emit(
                host,
                Step::Stop,
                State::Skipped,
                format!("the old server cannot be reached ({}): it is replaced as it is, its volume moved as after a power loss", e.trim()),
            );
            Ok(false)
        }
        Err(e) => Err(Failure {
            host: host.to_string(),
            step: Step::Stop,
            message: format!(
                "stopping the old server did not finish ({}): it may be half stopped, so it is not replaced and nothing was applied for this wave",
                e.trim()
            ),
            log_tail: None,
            details: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Runs the stop script with stand-ins for `systemctl` (logs its arguments one per line, a
    /// call per paragraph; `is-active` true for docker.service only) and `mountpoint` (mounted
    /// until the mount unit is stopped, or always when `busy`): (exit code, stdout, the log).
    /// The stand-ins prove the script's order, quoting and restart logic; the VM test of
    /// tests/deploy_cloud.rs runs it on a real server.
    fn run(units: &[String], busy: bool) -> (Option<i32>, String, String) {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = d.path().join("log");
        let gone = d.path().join("unmounted");
        let stub = |name: &str, body: String| {
            let f = bin.join(name);
            std::fs::write(&f, format!("#!/bin/sh\n{body}")).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        stub(
            "systemctl",
            format!(
                "for a in \"$@\"; do printf '%s\\n' \"$a\" >>{log}; done; echo >>{log}\n\
                 [ \"$1\" = stop ] && [ \"$2\" = var-lib-kiln-data.mount ] && [ {busy} = false ] && : >{gone}\n\
                 [ \"$1\" = -q ] && {{ [ \"$3\" = docker.service ]; exit $?; }}\nexit 0\n",
                log = sh(&log.display().to_string()),
                gone = sh(&gone.display().to_string()),
            ),
        );
        stub("mountpoint", format!("[ ! -e {} ]\n", sh(&gone.display().to_string())));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(stop_script(units))
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), std::fs::read_to_string(&log).unwrap_or_default())
    }

    #[test]
    fn the_stop_script_stops_units_then_the_mount_and_quotes_every_name() {
        let hostile = "x; touch /tmp/kiln-stop-pwned".to_string();
        let (code, out, log) = run(&["hello.service".into(), hostile.clone()], false);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.ends_with("kiln-stop: stopped\n"), "{out}");
        let stops: Vec<&str> = log.split("\n\n").filter_map(|c| c.strip_prefix("stop\n")).collect();
        assert_eq!(stops, ["hello.service", hostile.as_str(), "var-lib-kiln-data.mount"], "{log}");
        assert!(!std::path::Path::new("/tmp/kiln-stop-pwned").exists());
        assert!(!log.contains("\nstart\n") && !log.starts_with("start"), "nothing started again: {log}");
    }

    /// Transports standing in for the two ways a command can fail to run: ssh that cannot reach
    /// the server, and a command killed at its timeout (the errors `Ssh` and `run_command` give).
    struct Failing(&'static str);
    impl Host for Failing {
        fn run(&self, _: &str, _: &[u8], _: Duration) -> Result<super::super::host::Output, String> {
            Err(self.0.to_string())
        }
    }

    #[test]
    fn an_unreachable_old_server_is_replaced_but_a_stop_that_times_out_applies_nothing() {
        let p = Progress::new(super::super::progress::Mode::Plain, &[]);
        let unreachable = Failing("ssh failed: connect to host 192.0.2.1 port 22: No route to host");
        assert!(unreachable.0.starts_with(SSH_FAILED));
        assert!(!stop_old_server(&unreachable, "db", &[], Duration::from_secs(5), &p).unwrap(), "replaced as it is");
        // The script did not finish: the server may be half stopped.
        let f = stop_old_server(&Failing("timed out after 300 s"), "db", &[], Duration::from_secs(5), &p).unwrap_err();
        assert_eq!(f.step, Step::Stop);
        assert!(f.message.contains("did not finish") && f.message.contains("timed out"), "{}", f.message);
    }

    #[test]
    fn a_volume_that_stays_busy_starts_again_what_was_active_and_fails() {
        let (code, out, log) = run(&["hello.service".into()], true);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("is still mounted; held by:") && out.contains("started again"), "{out}");
        let starts: Vec<&str> = log.split("\n\n").filter_map(|c| c.strip_prefix("start\n")).collect();
        assert_eq!(starts, ["docker.service"], "only what was active: {log}");
    }
}
