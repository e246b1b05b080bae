//! Ctrl-C and termination as a flag: `boot` and `deploy` poll it in their waits, so they
//! return (their work directories dropped, no secret left on disk) instead of dying.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the signal handler [`catch`] installs.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the handler that sets [`INTERRUPTED`] on SIGINT, SIGTERM and SIGHUP.
pub fn catch() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}
