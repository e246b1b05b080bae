//! Host keys, never trusted blindly: `<state>/known_hosts` pins each host's key under its name
//! in the system (ssh's `HostKeyAlias`). On first contact the key comes from the system
//! (`ssh_host_key`), or from `ssh-keyscan` when the operator vouched for its fingerprint with
//! `--trust-host-key HOST=SHA256:…`; then ssh itself checks every connection against the pin.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::types::{SshHostKey, parse_ssh_host_key};

/// The keys pinned for `alias` in a `known_hosts` text (plain `alias KEYTYPE KEY` lines).
pub fn pinned(text: &str, alias: &str) -> Vec<SshHostKey> {
    text.lines()
        .filter_map(|l| {
            let (names, key) = l.trim().split_once(' ')?;
            if names.starts_with('#') || !names.split(',').any(|n| n == alias) {
                return None;
            }
            parse_ssh_host_key(key).ok()
        })
        .collect()
}

/// The `known_hosts` line pinning `key` for `alias`.
pub fn line(alias: &str, key: &SshHostKey) -> String {
    format!("{alias} {}\n", key.line())
}

/// Appends a pin to `file` (created 0600), flushed to disk.
pub fn pin(file: &Path, alias: &str, key: &SshHostKey) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = file.parent() {
        fs::create_dir_all(d).map_err(|e| format!("cannot create `{}`: {e}", d.display()))?;
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| format!("cannot open `{}`: {e}", file.display()))?;
    f.write_all(line(alias, key).as_bytes()).and_then(|()| f.sync_all()).map_err(|e| format!("cannot write `{}`: {e}", file.display()))
}

/// `--trust-host-key HOST=SHA256:…`, by host.
pub fn parse_trust(args: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for a in args {
        let Some((host, fp)) = a.split_once('=') else {
            return Err(format!("--trust-host-key `{a}`: expected HOST=SHA256:FINGERPRINT"));
        };
        let fp = fp.trim();
        let body = fp.strip_prefix("SHA256:").unwrap_or("");
        if body.len() != 43 || !body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
            return Err(format!(
                "--trust-host-key `{a}`: `{fp}` is not an OpenSSH SHA256 fingerprint (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the server prints it)"
            ));
        }
        out.insert(host.to_string(), fp.to_string());
    }
    Ok(out)
}

/// The keys a server presents, read with `ssh-keyscan` (no authentication, nothing sent): one
/// scan per key type, so that a slow answer for one type (a loaded server) does not hide the
/// others.
pub fn keyscan(host: &str, port: u16, timeout: Duration) -> Result<Vec<SshHostKey>, String> {
    let mut keys: Vec<SshHostKey> = Vec::new();
    let mut errors = Vec::new();
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let mut cmd = Command::new("ssh-keyscan");
        cmd.args(["-T", &timeout.as_secs().max(1).to_string(), "-t", kind, "-p", &port.to_string(), "--", host]);
        match super::host::run_command(cmd, b"", timeout + Duration::from_secs(5)) {
            Ok(out) => {
                let found: Vec<SshHostKey> = out
                    .stdout_text()
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .filter_map(|l| l.split_once(' ').and_then(|(_, k)| parse_ssh_host_key(k).ok()))
                    .collect();
                if found.is_empty() && !out.stderr_tail(1).is_empty() {
                    errors.push(out.stderr_tail(2));
                }
                keys.extend(found);
            }
            Err(e) => errors.push(e),
        }
    }
    if keys.is_empty() {
        return Err(format!("ssh-keyscan got no key from {host} port {port}: {}", errors.join("; ")));
    }
    Ok(keys)
}

/// What to pin on first contact: the declared key, else the presented key whose fingerprint
/// the operator gave. `presented` is only asked for when needed.
pub fn first_contact(
    declared: Option<&SshHostKey>,
    trusted: Option<&str>,
    presented: impl FnOnce() -> Result<Vec<SshHostKey>, String>,
) -> Result<SshHostKey, KeyError> {
    if let Some(k) = declared {
        return Ok(k.clone());
    }
    let seen = presented().map_err(KeyError::Unreachable)?;
    let fingerprints: Vec<String> = seen.iter().map(SshHostKey::fingerprint).collect();
    match trusted {
        None => Err(KeyError::Unknown { seen: fingerprints }),
        Some(fp) => seen.into_iter().find(|k| k.fingerprint() == fp).ok_or(KeyError::Mismatch { seen: fingerprints }),
    }
}

/// Why a host key was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    Unreachable(String),
    /// Nothing declared, nothing vouched for.
    Unknown {
        seen: Vec<String>,
    },
    /// The server presents no key with the vouched-for fingerprint.
    Mismatch {
        seen: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOcr6DKk1A6iN0E92UOfcelJ2bE+ICR9Ej9Mrn9Ly+HG root@vm";

    #[test]
    fn fingerprint_is_openssh_s() {
        // `ssh-keygen -lf` of this key prints this fingerprint.
        let k = parse_ssh_host_key(ED).unwrap();
        assert_eq!(k.fingerprint(), "SHA256:+Xs5mgfrYPJk6VeRCU1ONLBQl4grXq7Vxy9Wd6rXQ/w");
        assert!(parse_ssh_host_key("ssh-ed25519 AAAA").is_err());
        assert!(parse_ssh_host_key("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl").is_err());
    }

    #[test]
    fn pins_are_read_by_alias() {
        let k = parse_ssh_host_key(ED).unwrap();
        let text = format!("# comment\nother {ED}\n{}", line("web", &k));
        assert_eq!(pinned(&text, "web"), vec![k.clone()]);
        assert!(pinned(&text, "we").is_empty());
    }

    #[test]
    fn first_contact_needs_a_declared_or_vouched_key() {
        let k = parse_ssh_host_key(ED).unwrap();
        let fp = k.fingerprint();
        assert_eq!(first_contact(Some(&k), None, || unreachable!()), Ok(k.clone()));
        assert_eq!(first_contact(None, Some(&fp), || Ok(vec![k.clone()])), Ok(k.clone()));
        assert_eq!(first_contact(None, None, || Ok(vec![k.clone()])), Err(KeyError::Unknown { seen: vec![fp.clone()] }));
        let other = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(first_contact(None, Some(other), || Ok(vec![k.clone()])), Err(KeyError::Mismatch { seen: vec![fp] }));
        assert!(parse_trust(&["web=SHA256:nope".into()]).is_err());
        assert!(parse_trust(&[format!("web={other}")]).unwrap().contains_key("web"));
    }
}
