//! Why a SOPS or age file, an identity or a recipient was refused, and how public keys are
//! shown in those messages (shortened; a private key passed by mistake never echoed).

use std::fmt;

use super::formats::Format;

/// Why a SOPS or age file, an identity or a recipient was refused. No variant carries a
/// secret value: paths, recipients (public keys) and reasons only.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The file name says no format sops knows.
    UnknownFormat { path: String },
    /// The text is not valid YAML, JSON or dotenv.
    Syntax { format: Format, message: String },
    /// The document is not a mapping (YAML) or an object (JSON) at the top.
    NotAMapping { format: Format },
    /// There is no `sops` metadata: the file was never encrypted with sops.
    NotSops { format: Format },
    /// The `sops` metadata is malformed.
    Metadata { field: String, problem: String },
    /// A sops feature kiln does not implement.
    Unsupported { feature: String },
    /// The data key is encrypted to no age recipient (only to the key types listed).
    NoAgeRecipient { others: Vec<String> },
    /// No identity opens any of the file's age stanzas.
    NoMatchingIdentity { recipients: Vec<String>, identities: Vec<String> },
    /// The data key could not be recovered although an identity may match (a damaged stanza).
    DataKey { problem: String },
    /// A value is malformed, or fails authentication (tampered, moved, or another data key).
    Value { key: String, problem: String },
    /// Two values would be returned under the same dotted key.
    DuplicateKey { key: String },
    /// The file has no MAC.
    MacMissing,
    /// The MAC does not decrypt with the data key and `sops.lastmodified`.
    MacUnreadable { problem: String },
    /// The MAC does not match the values.
    MacMismatch,
    /// The identity text could not be read (`line` is 1-based, when known).
    Identity { line: Option<usize>, problem: String },
    /// A recipient is not an `age1…` or `ssh-ed25519 …` public key.
    Recipient { recipient: String, problem: String },
    /// A plain age file could not be decrypted.
    Age { problem: String },
    /// A key cannot be written to a SOPS file of this format.
    Key { key: String, problem: String },
    /// `lastmodified` is not an RFC 3339 time.
    LastModified { value: String },
    /// Randomness, age or serialisation failed while writing.
    Encrypt { problem: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownFormat { path } => {
                write!(f, "cannot tell the format of `{path}`: expected a SOPS file name ending in .yaml, .yml, .json or .env")
            }
            Error::Syntax { format, message } => write!(f, "not a valid {format} file: {message}"),
            Error::NotAMapping { format } => {
                write!(f, "a SOPS {format} file must be a mapping of keys to values at the top level")
            }
            Error::NotSops { format } => write!(
                f,
                "no sops metadata ({}): this {format} file is not encrypted; encrypt it with `sops encrypt` before referencing it",
                if *format == Format::Dotenv { "no `sops_…` lines" } else { "no top-level `sops` key" }
            ),
            Error::Metadata { field, problem } => write!(f, "bad sops metadata `{field}`: {problem}"),
            Error::Unsupported { feature } => {
                write!(f, "{feature} is not supported by kiln; re-encrypt the file without it")
            }
            Error::NoAgeRecipient { others } if others.is_empty() => {
                write!(f, "the file's data key is encrypted to no recipient at all; re-encrypt it with `sops encrypt --age RECIPIENT`")
            }
            Error::NoAgeRecipient { others } => write!(
                f,
                "the file's data key is encrypted only with {}, and kiln decrypts with age; add an age recipient (`sops updatekeys` with an age key in .sops.yaml)",
                others.join(", ")
            ),
            Error::NoMatchingIdentity { recipients, identities } => {
                write!(f, "no identity matches any of the file's {} age recipient(s) ({})", recipients.len(), list(recipients))?;
                if !identities.is_empty() {
                    write!(f, "; the identities given are for {}", list(identities))?;
                }
                write!(f, "; pass the key with --identity or SOPS_AGE_KEY_FILE")
            }
            Error::DataKey { problem } => write!(f, "cannot recover the file's data key: {problem}"),
            Error::Value { key, problem } => write!(f, "value `{key}`: {problem}"),
            Error::DuplicateKey { key } => {
                write!(f, "two values have the key `{key}` (nested keys are joined with `.`); rename one")
            }
            Error::MacMissing => {
                write!(f, "the file has no MAC (`sops.mac`), so its values cannot be verified; refusing it (re-encrypt it with sops)")
            }
            Error::MacUnreadable { problem } => {
                write!(f, "the MAC does not decrypt ({problem}): `sops.mac` or `sops.lastmodified` was changed; refusing the file")
            }
            Error::MacMismatch => write!(
                f,
                "MAC mismatch: the values, their keys or their order differ from what was encrypted (edited, added, removed or moved outside sops); refusing the file"
            ),
            Error::Identity { line: Some(line), problem } => write!(f, "identity line {line}: {problem}"),
            Error::Identity { line: None, problem } => write!(f, "identity: {problem}"),
            Error::Recipient { recipient, problem } => write!(
                f,
                "recipient `{}`: {problem}; expected an age public key (age1…) or an OpenSSH public key (ssh-ed25519 AAAA…)",
                short(&redact_private(recipient))
            ),
            Error::Age { problem } => write!(f, "cannot decrypt the age file: {problem}"),
            Error::Key { key, problem } => write!(f, "key `{key}`: {problem}"),
            Error::LastModified { value } => {
                write!(f, "lastmodified `{value}` is not an RFC 3339 time (expected e.g. 2026-08-01T09:00:14Z)")
            }
            Error::Encrypt { problem } => write!(f, "cannot encrypt: {problem}"),
        }
    }
}

impl std::error::Error for Error {}

/// A public key or recipient shortened for a message: long keys keep their head and tail.
pub(super) fn short(recipient: &str) -> String {
    let chars: Vec<char> = recipient.chars().collect();
    if chars.len() <= 40 {
        return recipient.to_string();
    }
    let head: String = chars[..24].iter().collect();
    let tail: String = chars[chars.len() - 8..].iter().collect();
    format!("{head}…{tail}")
}

/// A recipient as an error may show it: a private key passed by mistake is not echoed.
pub(super) fn redact_private(text: &str) -> String {
    let upper = text.to_ascii_uppercase();
    if upper.contains("SECRET-KEY") || upper.contains("PRIVATE KEY") { "(a private key, not shown)".into() } else { text.to_string() }
}

/// Recipients for a message, each shortened, comma-separated.
fn list(items: &[String]) -> String {
    items.iter().map(|r| short(r)).collect::<Vec<_>>().join(", ")
}
