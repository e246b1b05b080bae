//! `kiln encrypt-secrets`: a plaintext secrets file into SOPS, for age recipients.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::ui::io_error;

/// Encrypts a plaintext secrets file to stdout. `lastmodified` is the real time: a secrets file
/// is an input, never a store artifact.
pub(crate) fn encrypt_secrets(file: &Path, recipients: &[String]) -> ExitCode {
    let format = match kiln::sops::Format::from_path(file) {
        Ok(f) => f,
        Err(e) => return io_error(&e.to_string()),
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return io_error(&format!("cannot read `{}`: {e}", file.display())),
    };
    let values = match kiln::sops::plain_values(&text, format) {
        Ok(v) => v,
        Err(e) => return io_error(&format!("`{}`: {e}", file.display())),
    };
    #[allow(clippy::disallowed_methods)] // a secrets file records when it was written
    let now = kiln::sops::rfc3339(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
    match kiln::sops::encrypt(&values, format, recipients, &now) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => io_error(&e.to_string()),
    }
}
