//! A qemu that crashed, told apart from one that stopped: kiln starts the machine again from a
//! fresh disk instead of failing the host for a fault of the emulator's own.
//!
//! Under TCG on a loaded machine qemu has aborted on an assertion of its own (`iotlb_to_section:
//! Assertion … failed`, SIGABRT) a second into the guest's kernel: nothing kiln wrote and
//! nothing the guest did. A qemu that dies of such a signal while kiln waits for cloud-init is
//! started again with a new root overlay, at most [`RESTARTS`] times, and the host's report
//! lists each crash. Any other end (an exit code, a SIGKILL from the OOM killer or a user, a
//! timeout) still fails the host at once: a restart would only repeat it.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

/// How many times one machine is started again after qemu crashed.
pub(crate) const RESTARTS: usize = 2;

/// The signals of a program that crashed (as opposed to one that was stopped).
const CRASH_SIGNALS: [(i32, &str); 5] =
    [(libc::SIGABRT, "SIGABRT"), (libc::SIGSEGV, "SIGSEGV"), (libc::SIGBUS, "SIGBUS"), (libc::SIGILL, "SIGILL"), (libc::SIGFPE, "SIGFPE")];

/// When qemu ended with `status` after `after` and wrote `stderr`: a line for the report if
/// it crashed, `None` if it ended any other way.
pub(crate) fn crash(status: ExitStatus, after: Duration, stderr: &str) -> Option<String> {
    let signal = status.signal()?;
    let (_, name) = CRASH_SIGNALS.iter().find(|(n, _)| *n == signal)?;
    let said = stderr.lines().rev().find(|l| !l.trim().is_empty()).map(|l| format!(": {}", l.trim())).unwrap_or_default();
    Some(format!("qemu crashed ({name}) {:.1} s after it started{said}; started again from a fresh disk", after.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signalled(signal: i32) -> ExitStatus {
        ExitStatus::from_raw(signal)
    }

    #[test]
    fn an_abort_is_a_crash_and_names_qemus_last_words() {
        let line = crash(signalled(libc::SIGABRT), Duration::from_millis(1200), "qemu: x\nphysmem.c:2678: Assertion failed\n\n").unwrap();
        assert_eq!(
            line,
            "qemu crashed (SIGABRT) 1.2 s after it started: physmem.c:2678: Assertion failed; started again from a fresh disk"
        );
        assert!(
            crash(signalled(libc::SIGSEGV), Duration::ZERO, "").unwrap().starts_with("qemu crashed (SIGSEGV) 0.0 s after it started; ")
        );
    }

    #[test]
    fn an_exit_a_kill_or_a_stop_is_not_a_crash() {
        assert_eq!(crash(ExitStatus::from_raw(1 << 8), Duration::ZERO, "qemu: could not open disk"), None);
        assert_eq!(crash(ExitStatus::from_raw(0), Duration::ZERO, ""), None);
        assert_eq!(crash(signalled(libc::SIGKILL), Duration::ZERO, ""), None, "SIGKILL: the OOM killer or a user");
        assert_eq!(crash(signalled(libc::SIGTERM), Duration::ZERO, ""), None, "SIGTERM: someone stopped it");
    }
}
