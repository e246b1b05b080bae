//! Identities (private keys that open a file) and recipients (public keys a file is written
//! to): native age keys and OpenSSH `ssh-ed25519` keys; RSA keys are refused.

use std::fmt;

use super::error::{Error, redact_private};

/// The private keys a SOPS or age file may be encrypted to, parsed from an identity file's
/// text: native age identities (`AGE-SECRET-KEY-1…` lines, `#` comments allowed, as
/// `age-keygen` writes them) and unencrypted OpenSSH `ssh-ed25519` private keys, in any mix.
///
/// RSA keys are refused, as identities and as recipients: decrypting with one would run the
/// `rsa` crate's private-key operation, which is not constant-time (RUSTSEC-2023-0071, the
/// Marvin attack). The crate is linked only because age's `ssh` feature brings it for both
/// key types; refusing RSA keys here keeps that code path unreachable (see `deny.toml`).
pub struct Identities {
    pub(super) keys: Vec<Box<dyn age::Identity + Send + Sync>>,
    pub(super) recipients: Vec<String>,
}

impl Identities {
    /// Parses an identity file's text. Errors name a line number, never a line's content.
    pub fn parse(text: &str) -> Result<Identities, Error> {
        let mut identities = Identities { keys: Vec::new(), recipients: Vec::new() };
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].trim();
            if is_pem_begin(line) {
                let end = pem_end(&lines, i)?;
                identities.push_ssh(&lines[i..=end].join("\n"), i + 1)?;
                i = end + 1;
                continue;
            }
            if !line.is_empty() && !line.starts_with('#') {
                identities.push_native(line, i + 1)?;
            }
            i += 1;
        }
        if identities.keys.is_empty() {
            return Err(Error::Identity {
                line: None,
                problem: "no identity found: expected AGE-SECRET-KEY-1… lines (age-keygen) or an OpenSSH private key".into(),
            });
        }
        Ok(identities)
    }

    /// The public recipient of each identity, in the order given (`age1…`, `ssh-ed25519 …`).
    pub fn recipients(&self) -> &[String] {
        &self.recipients
    }

    /// How many identities there are (at least one).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: parsing refuses a text without identities.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn push_native(&mut self, line: &str, number: usize) -> Result<(), Error> {
        let identity: age::x25519::Identity =
            line.parse().map_err(|_| Error::Identity { line: Some(number), problem: native_problem(line).into() })?;
        self.recipients.push(identity.to_public().to_string());
        self.keys.push(Box::new(identity));
        Ok(())
    }

    fn push_ssh(&mut self, block: &str, number: usize) -> Result<(), Error> {
        let identity = age::ssh::Identity::from_buffer(block.as_bytes(), None)
            .map_err(|e| Error::Identity { line: Some(number), problem: format!("not a readable OpenSSH private key ({e})") })?;
        let recipient = match &identity {
            age::ssh::Identity::Unencrypted(_) => age::ssh::Recipient::try_from(identity.clone())
                .map_err(|e| Error::Identity { line: Some(number), problem: format!("unusable OpenSSH key ({e:?})") })?,
            age::ssh::Identity::Encrypted(_) => {
                return Err(Error::Identity {
                    line: Some(number),
                    problem: "the OpenSSH key is protected by a passphrase, which kiln cannot ask for; use an unencrypted deploy key or a native age identity (age-keygen)".into(),
                });
            }
            age::ssh::Identity::Unsupported(key) => {
                return Err(Error::Identity { line: Some(number), problem: unsupported_ssh(key) });
            }
        };
        if let age::ssh::Recipient::SshRsa(..) = recipient {
            return Err(Error::Identity { line: Some(number), problem: RSA_REFUSED.into() });
        }
        self.recipients.push(recipient.to_string());
        self.keys.push(Box::new(identity));
        Ok(())
    }

    pub(super) fn as_age(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity)
    }
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities").field("recipients", &self.recipients).finish_non_exhaustive()
    }
}

/// Parses an identity file's text (see [`Identities`]): the entry point for `--identity`
/// and `SOPS_AGE_KEY_FILE`, whose files the caller reads.
pub fn load_identities(text: &str) -> Result<Identities, Error> {
    Identities::parse(text)
}

fn is_pem_begin(line: &str) -> bool {
    line.starts_with("-----BEGIN ") && line.ends_with("PRIVATE KEY-----")
}

/// The index of the `-----END …-----` line closing the PEM block that starts at `start`.
fn pem_end(lines: &[&str], start: usize) -> Result<usize, Error> {
    (start + 1..lines.len())
        .find(|&j| lines[j].trim().starts_with("-----END "))
        .ok_or(Error::Identity { line: Some(start + 1), problem: "the private key block has no -----END line".into() })
}

/// Why a line is not a native identity, guessing from its (public) shape only.
fn native_problem(line: &str) -> &'static str {
    if line.starts_with("age1") {
        "this is an age public key (age1…); an identity file holds the private key (AGE-SECRET-KEY-1…)"
    } else if line.starts_with("ssh-") {
        "this is an OpenSSH public key; pass the private key file instead"
    } else if line.starts_with("AGE-PLUGIN-") {
        "age plugin identities are not supported; use a native age identity or an OpenSSH key"
    } else {
        "expected an AGE-SECRET-KEY-1… line, an OpenSSH private key or a # comment"
    }
}

/// Why an RSA key is refused (see [`Identities`]).
const RSA_REFUSED: &str = "ssh-rsa keys are not supported (RSA decryption in the rsa crate is not constant-time, RUSTSEC-2023-0071); use an ssh-ed25519 key or a native age identity (age-keygen)";

fn unsupported_ssh(key: &age::ssh::UnsupportedKey) -> String {
    match key {
        age::ssh::UnsupportedKey::EncryptedPem => {
            "an encrypted PEM key; convert it with `ssh-keygen -o -p` or use an unencrypted key".into()
        }
        age::ssh::UnsupportedKey::EncryptedSsh(cipher) => format!("an OpenSSH key encrypted with {cipher}, which age cannot read"),
        age::ssh::UnsupportedKey::Hardware(kind) => format!("a hardware security key ({kind}), which age cannot use"),
        age::ssh::UnsupportedKey::Type(kind) => format!("key type {kind} is not supported; use ssh-ed25519 or a native age identity"),
    }
}

/// An age recipient parsed for encryption, with its canonical public text.
pub(super) struct Recipient {
    pub(super) key: Box<dyn age::Recipient + Send>,
    pub(super) text: String,
}

fn parse_recipient(text: &str) -> Result<Recipient, Error> {
    let trimmed = text.trim();
    let fail = |problem: String| Error::Recipient { recipient: redact_private(trimmed), problem };
    if redact_private(trimmed) != trimmed {
        Err(fail("this is a private key; pass its public key (age-keygen -y, or the .pub file)".into()))
    } else if trimmed.starts_with("age1") {
        let key: age::x25519::Recipient = trimmed.parse().map_err(|e: &str| fail(e.to_string()))?;
        Ok(Recipient { text: key.to_string(), key: Box::new(key) })
    } else if trimmed.starts_with("ssh-") {
        let key: age::ssh::Recipient = trimmed.parse().map_err(|e| fail(ssh_recipient_problem(e)))?;
        if let age::ssh::Recipient::SshRsa(..) = key {
            return Err(fail(RSA_REFUSED.into()));
        }
        Ok(Recipient { text: key.to_string(), key: Box::new(key) })
    } else {
        Err(fail("not a public key kiln knows".into()))
    }
}

fn ssh_recipient_problem(error: age::ssh::ParseRecipientKeyError) -> String {
    use age::ssh::ParseRecipientKeyError as E;
    match error {
        E::Unsupported(kind) => format!("key type {kind} is not supported (use ssh-ed25519 or an age1… key)"),
        E::RsaModulusTooLarge | E::RsaModulusTooSmall => RSA_REFUSED.into(),
        E::Invalid(why) => why.into(),
        _ => "not a usable OpenSSH public key".into(),
    }
}

pub(super) fn parse_recipients(texts: &[String]) -> Result<Vec<Recipient>, Error> {
    if texts.is_empty() {
        return Err(Error::Recipient { recipient: String::new(), problem: "no recipient given".into() });
    }
    texts.iter().map(|t| parse_recipient(t)).collect()
}
