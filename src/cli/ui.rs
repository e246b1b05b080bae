//! What reaches stderr: `-q`/`-v`, rendered diagnostics and the error lines with their exit
//! codes (1 bad input, 2 usage or IO).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use kiln::diag::{self, Diagnostic, Severity, Sources};

/// What `-q` and `-v` ask of the messages on stderr.
#[derive(Clone, Copy)]
pub(crate) struct Ui {
    pub(crate) quiet: bool,
    pub(crate) verbose: u8,
}

impl Ui {
    /// A summary line (`ok: …`, `built …`): shown unless `-q`.
    pub(crate) fn info(self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }
    /// What push and pull show while they work: a bar on a terminal, retries unless `-q`,
    /// every request with `-vv`.
    pub(crate) fn feedback(self, json: bool) -> kiln::push::Feedback {
        kiln::push::Feedback {
            bar: !json && !self.quiet && std::io::stderr().is_terminal(),
            retries: !self.quiet,
            trace: self.verbose >= 2,
        }
    }
    /// Detail shown only with `-v`.
    pub(crate) fn detail(self, msg: &str) {
        if self.verbose > 0 {
            eprintln!("{msg}");
        }
    }
}

#[allow(clippy::disallowed_methods)] // the edge: NO_COLOR is read here and only here
pub(crate) fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Renders diagnostics on stderr; `-q` keeps only the errors.
pub(crate) fn report(sources: &Sources, diags: &[Diagnostic], ui: Ui) {
    let shown: Vec<Diagnostic> = diags.iter().filter(|d| !ui.quiet || d.severity == Severity::Error).cloned().collect();
    let text = diag::render(sources, &shown, color());
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
}

pub(crate) fn io_error(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// A command line that asks for something that cannot be: exit 2, like clap's own errors.
pub(crate) fn usage_error(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// `kiln plan`/`kiln diff` errors: exit 1 (2 means "changes"), nothing written.
pub(crate) fn plan_error(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}
