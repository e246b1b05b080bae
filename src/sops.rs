//! SOPS and age files: list a SOPS file's keys without a private key, decrypt it (the data
//! key through age, each value with AES-256-GCM, the MAC verified) or write one, and decrypt
//! or write plain age files.
//!
//! Everything here is pure: callers pass the file's text and the identities' text, and get
//! values back. Secret values never enter kiln's store; they are decrypted at deploy time
//! only, and no error message ever contains one.
//!
//! The file format follows sops (github.com/getsops/sops, `sops.go`, `aes/cipher.go`,
//! `stores/`):
//!
//! - Every leaf value is encrypted as `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` with a
//!   random 32-byte data key and a 32-byte IV; the additional data is the path of map keys
//!   down to the value, each followed by `:` (`db:password:`). A list item has its list's
//!   path. An empty string stays an empty string.
//! - Values whose path matches `unencrypted_suffix` (by default `_unencrypted`),
//!   `encrypted_suffix`, `unencrypted_regex` or `encrypted_regex` (at most one of them) are
//!   left in clear, as sops leaves them.
//! - The data key is age-encrypted, armored, once per recipient (`sops.age[].enc`).
//! - `sops.mac` is the uppercase hex SHA-512 over every leaf value in file order (only the
//!   encrypted ones, after a fixed prefix, when `mac_only_encrypted` is set), ints and
//!   floats in decimal, booleans as `True` / `False`; it is encrypted like a value with
//!   `sops.lastmodified` (RFC 3339) as additional data. Without a matching MAC a file is
//!   refused: values moved, removed, added or edited outside sops are all caught.
//! - YAML and JSON keep the metadata under a top-level `sops` key; dotenv flattens it into
//!   `sops_`-prefixed lines (`sops_age__list_0__map_enc=…`), with newlines written `\n`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{BufRead, Read, Write};
use std::path::Path;

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::{U12, U16, U32};
use aes_gcm::aead::generic_array::{ArrayLength, GenericArray};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use sha2::{Digest, Sha512};

/// The sops version kiln writes into `sops.version`: the file layout it produces is the
/// one sops has written since 3.7 (age support) and still reads.
const SOPS_VERSION: &str = "3.9.0";

/// The suffix sops leaves in clear when a file names no encryption rule.
const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// What sops feeds the MAC first when `mac_only_encrypted` is set (the SHA-256 of `sops`),
/// so that the two kinds of MAC never coincide.
const MAC_ONLY_ENCRYPTED_PREFIX: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b, 0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f,
    0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// Key types sops can encrypt a data key with, besides age; kiln reads only age.
const OTHER_KEY_TYPES: [&str; 6] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

/// How much of an age header kiln reads to name its stanzas in an error.
const AGE_HEADER_LIMIT: u64 = 64 * 1024;

// ---------------------------------------------------------------------------------------
// Formats and errors
// ---------------------------------------------------------------------------------------

/// The three text formats of a SOPS file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// `.yaml` / `.yml`: a mapping, metadata under `sops:`.
    Yaml,
    /// `.json`: an object, metadata under `"sops"`.
    Json,
    /// `.env`: `KEY=VALUE` lines, metadata in `sops_…` lines.
    Dotenv,
}

impl Format {
    /// The format a file name says, as sops decides it: a name ending in `.yaml` or `.yml`,
    /// `.json`, or `.env` (a bare `.env` too). Anything else is an error naming the path.
    pub fn from_path(path: &Path) -> Result<Format, Error> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            Ok(Format::Yaml)
        } else if name.ends_with(".json") {
            Ok(Format::Json)
        } else if name.ends_with(".env") {
            Ok(Format::Dotenv)
        } else {
            Err(Error::UnknownFormat { path: path.display().to_string() })
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
            Format::Dotenv => "dotenv",
        })
    }
}

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
fn short(recipient: &str) -> String {
    let chars: Vec<char> = recipient.chars().collect();
    if chars.len() <= 40 {
        return recipient.to_string();
    }
    let head: String = chars[..24].iter().collect();
    let tail: String = chars[chars.len() - 8..].iter().collect();
    format!("{head}…{tail}")
}

/// A recipient as an error may show it: a private key passed by mistake is not echoed.
fn redact_private(text: &str) -> String {
    let upper = text.to_ascii_uppercase();
    if upper.contains("SECRET-KEY") || upper.contains("PRIVATE KEY") { "(a private key, not shown)".into() } else { text.to_string() }
}

/// Recipients for a message, each shortened, comma-separated.
fn list(items: &[String]) -> String {
    items.iter().map(|r| short(r)).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------
// Identities and recipients
// ---------------------------------------------------------------------------------------

/// The private keys a SOPS or age file may be encrypted to, parsed from an identity file's
/// text: native age identities (`AGE-SECRET-KEY-1…` lines, `#` comments allowed, as
/// `age-keygen` writes them) and unencrypted OpenSSH `ssh-ed25519` private keys, in any mix.
///
/// RSA keys are refused, as identities and as recipients: decrypting with one would run the
/// `rsa` crate's private-key operation, which is not constant-time (RUSTSEC-2023-0071, the
/// Marvin attack). The crate is linked only because age's `ssh` feature brings it for both
/// key types; refusing RSA keys here keeps that code path unreachable (see `deny.toml`).
pub struct Identities {
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
    recipients: Vec<String>,
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

    fn as_age(&self) -> impl Iterator<Item = &dyn age::Identity> {
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
struct Recipient {
    key: Box<dyn age::Recipient + Send>,
    text: String,
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

fn parse_recipients(texts: &[String]) -> Result<Vec<Recipient>, Error> {
    if texts.is_empty() {
        return Err(Error::Recipient { recipient: String::new(), problem: "no recipient given".into() });
    }
    texts.iter().map(|t| parse_recipient(t)).collect()
}

// ---------------------------------------------------------------------------------------
// age
// ---------------------------------------------------------------------------------------

/// Why an age decryption failed.
enum AgeFailure {
    NoMatch,
    Other(String),
}

/// Decrypts an age file, armored or binary.
fn age_open(input: &[u8], identities: &Identities) -> Result<Vec<u8>, AgeFailure> {
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(input))
        .map_err(|e| AgeFailure::Other(format!("not a valid age file ({e})")))?;
    if decryptor.is_scrypt() {
        return Err(AgeFailure::Other("it is encrypted with a passphrase, which kiln cannot ask for".into()));
    }
    let mut reader = decryptor.decrypt(identities.as_age()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => AgeFailure::NoMatch,
        other => AgeFailure::Other(format!("{other}")),
    })?;
    let mut plain = Vec::new();
    reader.read_to_end(&mut plain).map_err(|e| AgeFailure::Other(format!("the payload does not decrypt ({e})")))?;
    Ok(plain)
}

/// Encrypts to every recipient, armored.
fn age_seal(plain: &[u8], recipients: &[&Recipient]) -> Result<String, Error> {
    let fail = |e: &dyn fmt::Display| Error::Encrypt { problem: format!("age: {e}") };
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r.key.as_ref() as &dyn age::Recipient)).map_err(|e| fail(&e))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor).map_err(|e| fail(&e))?;
    let mut writer = encryptor.wrap_output(armor).map_err(|e| fail(&e))?;
    writer.write_all(plain).map_err(|e| fail(&e))?;
    writer.finish().and_then(|armor| armor.finish()).map_err(|e| fail(&e))?;
    String::from_utf8(out).map_err(|e| fail(&e))
}

/// The stanza kinds of an age header (`X25519`, `ssh-ed25519`, …), to say in an error what
/// the file was encrypted to. Empty when the header cannot be read.
fn age_stanza_kinds(input: &[u8]) -> Vec<String> {
    let mut header = String::new();
    let mut reader = std::io::BufReader::new(age::armor::ArmoredReader::new(input).take(AGE_HEADER_LIMIT));
    let mut kinds = Vec::new();
    loop {
        header.clear();
        match reader.read_line(&mut header) {
            Ok(n) if n > 0 && !header.starts_with("---") => {}
            _ => return kinds,
        }
        if let Some(kind) = header.strip_prefix("-> ").and_then(|s| s.split_whitespace().next()) {
            kinds.push(format!("{kind} stanza"));
        }
    }
}

/// Decrypts a plain age file (`*.age`, armored or binary) with the identities.
pub fn decrypt_age(bytes: &[u8], identities: &Identities) -> Result<Vec<u8>, Error> {
    age_open(bytes, identities).map_err(|failure| match failure {
        AgeFailure::NoMatch => {
            Error::NoMatchingIdentity { recipients: age_stanza_kinds(bytes), identities: identities.recipients().to_vec() }
        }
        AgeFailure::Other(problem) => Error::Age { problem },
    })
}

/// Encrypts bytes to the recipients (`age1…`, `ssh-ed25519 …`) as an armored age file,
/// which `age -d` reads. Random by nature.
pub fn encrypt_age(bytes: &[u8], recipients: &[String]) -> Result<String, Error> {
    let parsed = parse_recipients(recipients)?;
    age_seal(bytes, &parsed.iter().collect::<Vec<_>>())
}

// ---------------------------------------------------------------------------------------
// Scalars, as sops types them
// ---------------------------------------------------------------------------------------

/// A leaf value: what the parsers give for clear values, and what a decrypted value's
/// `type:` says it is.
#[derive(Clone, PartialEq)]
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    Time(String),
}

/// The bytes sops feeds the MAC for a value (its `ToBytes`).
fn mac_bytes(value: &Scalar) -> Vec<u8> {
    match value {
        Scalar::Str(s) | Scalar::Time(s) => s.as_bytes().to_vec(),
        Scalar::Int(i) => i.to_string().into_bytes(),
        Scalar::Float(x) => go_float(*x).into_bytes(),
        Scalar::Bool(true) => b"True".to_vec(),
        Scalar::Bool(false) => b"False".to_vec(),
        Scalar::Bytes(b) => b.clone(),
    }
}

/// A value as kiln returns it: strings as they are, numbers in decimal, booleans as
/// `true` / `false`.
fn render(value: &Scalar) -> Result<String, &'static str> {
    match value {
        Scalar::Str(s) | Scalar::Time(s) => Ok(s.clone()),
        Scalar::Int(i) => Ok(i.to_string()),
        Scalar::Float(x) => Ok(go_float(*x)),
        Scalar::Bool(b) => Ok(b.to_string()),
        Scalar::Bytes(b) => String::from_utf8(b.clone()).map_err(|_| "a bytes value that is not UTF-8 text"),
    }
}

/// Go's `strconv.FormatFloat(x, 'f', -1, 64)`: the shortest digits that read back as `x`,
/// never in exponent form.
fn go_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{x}")
    }
}

/// Go's `strconv.ParseBool`.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A decrypted value typed by its `type:` field, as sops' cipher does.
fn typed(kind: &str, plain: Vec<u8>) -> Result<Scalar, String> {
    let text = || String::from_utf8(plain.clone()).map_err(|_| format!("a {kind} value that is not UTF-8"));
    match kind {
        "str" => text().map(Scalar::Str),
        "int" => text()?.parse().map(Scalar::Int).map_err(|_| "an int value that is not a decimal integer".into()),
        "float" => text()?.parse().map(Scalar::Float).map_err(|_| "a float value that is not a number".into()),
        "bool" => go_bool(&text()?).map(Scalar::Bool).ok_or_else(|| "a bool value that is not true or false".into()),
        "bytes" => Ok(Scalar::Bytes(plain)),
        "time" => text().map(Scalar::Time),
        other => Err(format!("unknown value type `{other}` (expected str, int, float, bool, bytes or time)")),
    }
}

// ---------------------------------------------------------------------------------------
// AES-256-GCM values
// ---------------------------------------------------------------------------------------

/// The parts of an `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` value.
struct Sealed {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    kind: String,
}

/// Splits an `ENC[…]` value. The problem never quotes the value.
fn parse_sealed(value: &str) -> Result<Sealed, String> {
    let inner = value
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or("expected an encrypted ENC[AES256_GCM,…] value, found something else (plain text?)")?;
    let fields: Vec<&str> = inner.split(',').collect();
    let [data, iv, tag, kind] = fields.as_slice() else {
        return Err("a malformed ENC[…] value (expected data, iv, tag and type)".into());
    };
    let field = |text: &str, name: &str| -> Result<Vec<u8>, String> {
        let encoded = text.strip_prefix(name).and_then(|t| t.strip_prefix(':')).ok_or(format!("a malformed ENC[…] value (no `{name}`)"))?;
        BASE64.decode(encoded).map_err(|_| format!("a malformed ENC[…] value (`{name}` is not base64)"))
    };
    let kind = kind.strip_prefix("type:").ok_or("a malformed ENC[…] value (no `type`)")?;
    Ok(Sealed { data: field(data, "data")?, iv: field(iv, "iv")?, tag: field(tag, "tag")?, kind: kind.to_string() })
}

/// AES-256-GCM open with an IV of `N` bytes; `None` when authentication fails.
fn gcm_open_with<N: ArrayLength<u8>>(key: &[u8; 32], sealed: &Sealed, aad: &[u8]) -> Option<Vec<u8>> {
    let cipher = AesGcm::<Aes256, N>::new(GenericArray::from_slice(key));
    let mut plain = sealed.data.clone();
    let tag = GenericArray::from_slice(&sealed.tag);
    cipher.decrypt_in_place_detached(GenericArray::from_slice(&sealed.iv), aad, &mut plain, tag).ok()?;
    Some(plain)
}

/// Opens a sealed value: sops writes 32-byte IVs, and reads any length Go's GCM takes.
fn gcm_open(key: &[u8; 32], sealed: &Sealed, aad: &str) -> Result<Vec<u8>, String> {
    if sealed.tag.len() != 16 {
        return Err(format!("a {}-byte tag (expected 16)", sealed.tag.len()));
    }
    let opened = match sealed.iv.len() {
        32 => gcm_open_with::<U32>(key, sealed, aad.as_bytes()),
        16 => gcm_open_with::<U16>(key, sealed, aad.as_bytes()),
        12 => gcm_open_with::<U12>(key, sealed, aad.as_bytes()),
        n => return Err(format!("a {n}-byte IV (expected 32)")),
    };
    opened.ok_or_else(|| "authentication failed: the value was changed, moved to another key, or encrypted with another data key".into())
}

/// Seals a string value as sops does: random 32-byte IV, `type:str`.
fn gcm_seal(key: &[u8; 32], plain: &str, aad: &str) -> Result<String, Error> {
    let mut iv = [0u8; 32];
    random(&mut iv)?;
    let cipher = AesGcm::<Aes256, U32>::new(GenericArray::from_slice(key));
    let mut data = plain.as_bytes().to_vec();
    let tag = cipher
        .encrypt_in_place_detached(GenericArray::from_slice(&iv), aad.as_bytes(), &mut data)
        .map_err(|_| Error::Encrypt { problem: "AES-GCM refused the value".into() })?;
    Ok(format!("ENC[AES256_GCM,data:{},iv:{},tag:{},type:str]", BASE64.encode(&data), BASE64.encode(iv), BASE64.encode(tag)))
}

fn random(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|e| Error::Encrypt { problem: format!("no randomness from the operating system ({e})") })
}

// ---------------------------------------------------------------------------------------
// The document tree
// ---------------------------------------------------------------------------------------

/// A mapping's entries in file order.
type Entries = Vec<(String, Node)>;

/// A parsed YAML or JSON document, keys in file order (the MAC depends on it).
#[derive(Clone, PartialEq)]
enum Node {
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
    Leaf(Scalar),
    Null,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Leaf(Scalar::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Leaf(Scalar::Int(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        // Past int64, sops' JSON store reads a number as a float.
        Ok(Node::Leaf(i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Leaf(Scalar::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Leaf(Scalar::Str(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Leaf(Scalar::Str(v)))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(MapKey(key)) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key: sops accepts string keys only.
struct MapKey(String);

impl<'de> Deserialize<'de> for MapKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<MapKey, D::Error> {
        deserializer.deserialize_any(MapKeyVisitor)
    }
}

struct MapKeyVisitor;

impl Visitor<'_> for MapKeyVisitor {
    type Value = MapKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key (sops supports only string keys)")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<MapKey, E> {
        Ok(MapKey(v.to_string()))
    }
}

/// What kiln writes: strings, multi-line text (a literal block in YAML), mappings in order,
/// lists.
enum Out {
    Str(String),
    Block(String),
    Map(Vec<(String, Out)>),
    List(Vec<Out>),
}

impl Serialize for Out {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Out::Str(s) => serializer.serialize_str(s),
            Out::Block(s) => serde_saphyr::LitStr(s).serialize(serializer),
            Out::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
            Out::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading a SOPS file
// ---------------------------------------------------------------------------------------

/// Which leaf values sops leaves in clear.
enum Rule {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(regex::Regex),
    EncryptedRegex(regex::Regex),
}

impl Rule {
    /// Whether the value at this path of keys is encrypted (sops' `shouldBeEncrypted`).
    fn encrypts(&self, path: &[String]) -> bool {
        match self {
            Rule::UnencryptedSuffix(suffix) => !path.iter().any(|k| k.ends_with(suffix.as_str())),
            Rule::EncryptedSuffix(suffix) => path.iter().any(|k| k.ends_with(suffix.as_str())),
            Rule::UnencryptedRegex(re) => !path.iter().any(|k| re.is_match(k)),
            Rule::EncryptedRegex(re) => path.iter().any(|k| re.is_match(k)),
        }
    }
}

/// One `sops.age[]` entry.
struct AgeStanza {
    recipient: String,
    enc: String,
}

/// What kiln reads of the `sops` metadata.
struct Metadata {
    age: Vec<AgeStanza>,
    others: Vec<String>,
    lastmodified: String,
    mac: Option<String>,
    rule: Rule,
    mac_only_encrypted: bool,
}

/// A SOPS file: its values (in file order) and its metadata.
struct Document {
    data: Vec<(String, Node)>,
    meta: Metadata,
}

/// A leaf of the data: its value, its sops path (map keys only) and kiln's dotted key
/// (map keys and list indices).
struct Leaf<'a> {
    value: &'a Scalar,
    path: Vec<String>,
    key: String,
}

fn parse_document(text: &str, format: Format) -> Result<Document, Error> {
    let (data, meta) = match format {
        Format::Yaml => split_sops(yaml_entries(text)?, format)?,
        Format::Json => split_sops(json_entries(text)?, format)?,
        Format::Dotenv => split_dotenv(text)?,
    };
    Ok(Document { data, meta: metadata(&meta)? })
}

fn yaml_entries(text: &str) -> Result<Vec<(String, Node)>, Error> {
    // As sops' yaml.v3 reads them: YAML 1.2 booleans, `0777` octal, `<<` an ordinary key.
    let options = serde_saphyr::options! {
        strict_booleans: true,
        legacy_octal_numbers: true,
        merge_keys: serde_saphyr::MergeKeyPolicy::AsOrdinary,
    };
    let node: Node = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| Error::Syntax { format: Format::Yaml, message: first_line(&e.to_string()) })?;
    top_entries(node, Format::Yaml)
}

/// A parser's message without the source excerpt it may quote (a plain file's secret).
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

fn json_entries(text: &str) -> Result<Vec<(String, Node)>, Error> {
    let node: Node = serde_json::from_str(text).map_err(|e| Error::Syntax { format: Format::Json, message: e.to_string() })?;
    top_entries(node, Format::Json)
}

fn top_entries(node: Node, format: Format) -> Result<Vec<(String, Node)>, Error> {
    match node {
        Node::Map(entries) => Ok(entries),
        Node::Null => Err(Error::NotSops { format }),
        _ => Err(Error::NotAMapping { format }),
    }
}

/// Splits the top-level `sops` entry off the data.
fn split_sops(entries: Vec<(String, Node)>, format: Format) -> Result<(Entries, Entries), Error> {
    let (meta, data): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(key, _)| key == "sops");
    match <[_; 1]>::try_from(meta) {
        Ok([(_, Node::Map(meta))]) => Ok((data, meta)),
        Ok(_) => Err(Error::Metadata { field: "sops".into(), problem: "expected a mapping".into() }),
        Err(found) if found.is_empty() => Err(Error::NotSops { format }),
        Err(_) => Err(Error::Metadata { field: "sops".into(), problem: "the key appears more than once".into() }),
    }
}

/// A dotenv file's `KEY=VALUE` lines (sops' dotenv store: `#` lines are comments, `\n` in a
/// value is a newline).
fn dotenv_lines(text: &str) -> Result<Vec<(String, String)>, Error> {
    let mut entries = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| Error::Syntax { format: Format::Dotenv, message: format!("line {}: expected KEY=VALUE", index + 1) })?;
        entries.push((key.to_string(), value.replace("\\n", "\n")));
    }
    Ok(entries)
}

/// Splits the `sops_` lines off a dotenv file and rebuilds the metadata they flatten.
fn split_dotenv(text: &str) -> Result<(Entries, Entries), Error> {
    let mut data = Vec::new();
    let mut flat = Vec::new();
    for (key, value) in dotenv_lines(text)? {
        match key.strip_prefix("sops_") {
            Some(meta_key) => flat.push((meta_key.to_string(), value)),
            None => data.push((key, Node::Leaf(Scalar::Str(value)))),
        }
    }
    if flat.is_empty() {
        return Err(Error::NotSops { format: Format::Dotenv });
    }
    Ok((data, unflatten(&flat)?))
}

/// A flattened metadata tree being rebuilt; maps and lists keep sorted keys.
enum Flat {
    Value(String),
    Map(BTreeMap<String, Flat>),
    List(BTreeMap<usize, Flat>),
}

enum Token {
    Key(String),
    Index(usize),
}

/// Splits `age__list_0__map_enc` into `age`, `[0]`, `enc` (sops' `tokenize`).
fn tokenize(flat_key: &str) -> Result<Vec<Token>, Error> {
    let bad = || Error::Metadata { field: format!("sops_{flat_key}"), problem: "a malformed flattened key".into() };
    let mut tokens = Vec::new();
    let mut rest = flat_key;
    let mut is_index = false;
    loop {
        let next = [rest.find("__map_").map(|i| (i, 6, false)), rest.find("__list_").map(|i| (i, 7, true))]
            .into_iter()
            .flatten()
            .min_by_key(|(i, _, _)| *i);
        let part = next.map_or(rest, |(i, _, _)| &rest[..i]);
        tokens.push(if is_index { Token::Index(part.parse().map_err(|_| bad())?) } else { Token::Key(part.to_string()) });
        let Some((i, len, index)) = next else { return Ok(tokens) };
        rest = &rest[i + len..];
        is_index = index;
    }
}

fn place(root: &mut Flat, tokens: &[Token], value: String, field: &str) -> Result<(), Error> {
    let clash = || Error::Metadata { field: format!("sops_{field}"), problem: "conflicts with another metadata line".into() };
    let Some((first, rest)) = tokens.split_first() else {
        return match root {
            Flat::Map(m) if m.is_empty() => {
                *root = Flat::Value(value);
                Ok(())
            }
            _ => Err(clash()),
        };
    };
    let child = match (first, &mut *root) {
        (Token::Key(k), Flat::Map(map)) => map.entry(k.clone()).or_insert_with(|| Flat::Map(BTreeMap::new())),
        (Token::Index(i), Flat::List(list)) => list.entry(*i).or_insert_with(|| Flat::Map(BTreeMap::new())),
        (Token::Index(i), Flat::Map(map)) if map.is_empty() => {
            *root = Flat::List(BTreeMap::new());
            let Flat::List(list) = root else { return Err(clash()) };
            list.entry(*i).or_insert_with(|| Flat::Map(BTreeMap::new()))
        }
        _ => return Err(clash()),
    };
    place(child, rest, value, field)
}

fn flat_to_node(flat: Flat, field: &str) -> Result<Node, Error> {
    match flat {
        Flat::Value(v) => Ok(Node::Leaf(Scalar::Str(v))),
        Flat::Map(map) => map.into_iter().map(|(k, v)| Ok((k.clone(), flat_to_node(v, &k)?))).collect::<Result<_, _>>().map(Node::Map),
        Flat::List(list) => {
            if list.keys().copied().ne(0..list.len()) {
                return Err(Error::Metadata { field: format!("sops_{field}"), problem: "a list with missing items".into() });
            }
            list.into_values().map(|v| flat_to_node(v, field)).collect::<Result<_, _>>().map(Node::List)
        }
    }
}

/// Rebuilds the metadata mapping from dotenv's flattened `sops_` lines.
fn unflatten(flat: &[(String, String)]) -> Result<Vec<(String, Node)>, Error> {
    let mut root = Flat::Map(BTreeMap::new());
    for (key, value) in flat {
        place(&mut root, &tokenize(key)?, value.clone(), key)?;
    }
    match flat_to_node(root, "")? {
        Node::Map(entries) => Ok(entries),
        _ => Err(Error::Metadata { field: "sops".into(), problem: "expected a mapping".into() }),
    }
}

fn field<'a>(meta: &'a [(String, Node)], name: &str) -> Option<&'a Node> {
    meta.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// A metadata string; absent, null and empty are all `None`.
fn text_field(meta: &[(String, Node)], name: &str) -> Result<Option<String>, Error> {
    match field(meta, name) {
        None | Some(Node::Null) => Ok(None),
        Some(Node::Leaf(Scalar::Str(s))) if s.is_empty() => Ok(None),
        Some(Node::Leaf(Scalar::Str(s))) => Ok(Some(s.clone())),
        Some(_) => Err(Error::Metadata { field: name.into(), problem: "expected a string".into() }),
    }
}

/// Whether a metadata list (`age`, `pgp`, …) has entries.
fn has_entries(meta: &[(String, Node)], name: &str) -> bool {
    matches!(field(meta, name), Some(Node::List(items)) if !items.is_empty())
}

fn age_stanzas(meta: &[(String, Node)]) -> Result<Vec<AgeStanza>, Error> {
    let items = match field(meta, "age") {
        None | Some(Node::Null) => return Ok(Vec::new()),
        Some(Node::List(items)) => items,
        Some(_) => return Err(Error::Metadata { field: "age".into(), problem: "expected a list".into() }),
    };
    let stanza = |item: &Node| match item {
        Node::Map(entry) => Ok(AgeStanza {
            recipient: text_field(entry, "recipient")?.unwrap_or_default(),
            enc: text_field(entry, "enc")?
                .ok_or(Error::Metadata { field: "age[].enc".into(), problem: "an age entry has no encrypted data key".into() })?,
        }),
        _ => Err(Error::Metadata { field: "age".into(), problem: "expected a list of {recipient, enc} mappings".into() }),
    };
    items.iter().map(stanza).collect()
}

fn mac_only_encrypted(meta: &[(String, Node)]) -> Result<bool, Error> {
    match field(meta, "mac_only_encrypted") {
        None | Some(Node::Null) => Ok(false),
        Some(Node::Leaf(Scalar::Bool(b))) => Ok(*b),
        Some(Node::Leaf(Scalar::Str(s))) if s.is_empty() => Ok(false),
        Some(Node::Leaf(Scalar::Str(s))) => go_bool(s).ok_or(()),
        Some(_) => Err(()),
    }
    .map_err(|()| Error::Metadata { field: "mac_only_encrypted".into(), problem: "expected true or false".into() })
}

fn regex_rule(name: &str, pattern: &str) -> Result<regex::Regex, Error> {
    regex::Regex::new(pattern)
        .map_err(|e| Error::Metadata { field: name.into(), problem: format!("not a regular expression kiln reads ({e})") })
}

/// The encryption rule: at most one may be set; none means `_unencrypted` as a suffix.
fn rule(meta: &[(String, Node)]) -> Result<Rule, Error> {
    for name in ["unencrypted_comment_regex", "encrypted_comment_regex"] {
        if text_field(meta, name)?.is_some() {
            return Err(Error::Unsupported { feature: format!("`{name}` (encryption chosen by comments)") });
        }
    }
    let names = ["unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex"];
    let mut set = Vec::new();
    for name in names {
        if let Some(value) = text_field(meta, name)? {
            set.push((name, value));
        }
    }
    match set.as_slice() {
        [] => Ok(Rule::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.into())),
        [("unencrypted_suffix", v)] => Ok(Rule::UnencryptedSuffix(v.clone())),
        [("encrypted_suffix", v)] => Ok(Rule::EncryptedSuffix(v.clone())),
        [("unencrypted_regex", v)] => Ok(Rule::UnencryptedRegex(regex_rule("unencrypted_regex", v)?)),
        [(name, v)] => Ok(Rule::EncryptedRegex(regex_rule(name, v)?)),
        _ => Err(Error::Metadata {
            field: set.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            problem: "sops allows only one of these in a file".into(),
        }),
    }
}

fn metadata(meta: &[(String, Node)]) -> Result<Metadata, Error> {
    if has_entries(meta, "key_groups") {
        return Err(Error::Unsupported { feature: "key groups (shamir_threshold)".into() });
    }
    let lastmodified = text_field(meta, "lastmodified")?
        .ok_or(Error::Metadata { field: "lastmodified".into(), problem: "missing: the MAC cannot be checked without it".into() })?;
    Ok(Metadata {
        age: age_stanzas(meta)?,
        others: OTHER_KEY_TYPES.iter().filter(|name| has_entries(meta, name)).map(|name| name.to_string()).collect(),
        lastmodified: go_rfc3339(&lastmodified)?,
        mac: text_field(meta, "mac")?,
        rule: rule(meta)?,
        mac_only_encrypted: mac_only_encrypted(meta)?,
    })
}

/// The leaves of the data in file order; nulls are no values (sops skips them).
fn leaves(data: &[(String, Node)]) -> Vec<Leaf<'_>> {
    let mut out = Vec::new();
    for (key, node) in data {
        collect(node, &mut vec![key.clone()], &mut vec![key.clone()], &mut out);
    }
    out
}

fn collect<'a>(node: &'a Node, path: &mut Vec<String>, key: &mut Vec<String>, out: &mut Vec<Leaf<'a>>) {
    match node {
        Node::Map(entries) => {
            for (k, child) in entries {
                path.push(k.clone());
                key.push(k.clone());
                collect(child, path, key, out);
                path.pop();
                key.pop();
            }
        }
        Node::List(items) => {
            for (index, child) in items.iter().enumerate() {
                key.push(index.to_string());
                collect(child, path, key, out);
                key.pop();
            }
        }
        Node::Leaf(value) => out.push(Leaf { value, path: path.clone(), key: key.join(".") }),
        Node::Null => {}
    }
}

/// The additional data sops binds a value to: its path of keys, each followed by `:`.
fn additional_data(path: &[String]) -> String {
    path.iter().map(|k| format!("{k}:")).collect()
}

/// The stored form of a value that must be encrypted: an `ENC[…]` string, or empty.
fn sealed_text<'a>(leaf: &Leaf<'a>) -> Result<&'a str, Error> {
    match leaf.value {
        Scalar::Str(s) => Ok(s),
        _ => Err(Error::Value {
            key: leaf.key.clone(),
            problem: "expected an encrypted ENC[AES256_GCM,…] value, found a clear one".into(),
        }),
    }
}

fn open_leaf(leaf: &Leaf<'_>, key: &[u8; 32]) -> Result<Scalar, Error> {
    let text = sealed_text(leaf)?;
    if text.is_empty() {
        return Ok(Scalar::Str(String::new()));
    }
    let fail = |problem: String| Error::Value { key: leaf.key.clone(), problem };
    let sealed = parse_sealed(text).map_err(fail)?;
    let plain = gcm_open(key, &sealed, &additional_data(&leaf.path)).map_err(fail)?;
    typed(&sealed.kind, plain).map_err(fail)
}

/// Recovers the 32-byte data key from the first age stanza an identity opens.
fn data_key(meta: &Metadata, identities: &Identities) -> Result<[u8; 32], Error> {
    if meta.age.is_empty() {
        return Err(Error::NoAgeRecipient { others: meta.others.clone() });
    }
    let mut damaged = Vec::new();
    for stanza in &meta.age {
        match age_open(stanza.enc.as_bytes(), identities) {
            Ok(plain) => {
                return <[u8; 32]>::try_from(plain.as_slice()).map_err(|_| Error::DataKey {
                    problem: format!("the data key for {} is {} bytes, expected 32", short(&stanza.recipient), plain.len()),
                });
            }
            Err(AgeFailure::NoMatch) => {}
            Err(AgeFailure::Other(problem)) => damaged.push(format!("{}: {problem}", short(&stanza.recipient))),
        }
    }
    if damaged.is_empty() {
        let recipients = meta.age.iter().map(|s| s.recipient.clone()).collect();
        return Err(Error::NoMatchingIdentity { recipients, identities: identities.recipients().to_vec() });
    }
    Err(Error::DataKey { problem: damaged.join("; ") })
}

/// The MAC as stored: decrypted with the data key, `lastmodified` as additional data.
fn stored_mac(meta: &Metadata, key: &[u8; 32]) -> Result<String, Error> {
    let text = meta.mac.as_deref().ok_or(Error::MacMissing)?;
    let unreadable = |problem: String| Error::MacUnreadable { problem };
    let sealed = parse_sealed(text).map_err(unreadable)?;
    let plain = gcm_open(key, &sealed, &meta.lastmodified).map_err(unreadable)?;
    String::from_utf8(plain).map_err(|_| unreadable("not text".into()))
}

/// Checks what can be checked without a key: an age recipient, a MAC, encrypted values.
fn check_shape(doc: &Document) -> Result<(), Error> {
    if doc.meta.age.is_empty() {
        return Err(Error::NoAgeRecipient { others: doc.meta.others.clone() });
    }
    let mac = doc.meta.mac.as_deref().ok_or(Error::MacMissing)?;
    parse_sealed(mac).map_err(|problem| Error::Metadata { field: "mac".into(), problem })?;
    Ok(())
}

/// The key paths of a SOPS file's values, in file order, read without any private key
/// (sops keeps keys in clear). Nested keys are joined with `.` (`db.password`), list items
/// by index (`hosts.0`); null values and the `sops` metadata are not listed.
///
/// It also refuses, as [`decrypt`] would, a file that is not encrypted, names no age
/// recipient, has no MAC, or holds a clear value where sops would have encrypted one.
pub fn keys(text: &str, format: Format) -> Result<Vec<String>, Error> {
    let doc = parse_document(text, format)?;
    check_shape(&doc)?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for leaf in leaves(&doc.data) {
        if doc.meta.rule.encrypts(&leaf.path) {
            let text = sealed_text(&leaf)?;
            if !text.is_empty() {
                parse_sealed(text).map_err(|problem| Error::Value { key: leaf.key.clone(), problem })?;
            }
        }
        if !seen.insert(leaf.key.clone()) {
            return Err(Error::DuplicateKey { key: leaf.key });
        }
        out.push(leaf.key);
    }
    Ok(out)
}

/// Decrypts a SOPS file: the data key from the first `sops.age` stanza one of the
/// identities opens, then every value (keys as [`keys`] names them), and verifies the MAC.
/// Values sops leaves in clear (`_unencrypted` and the like) are returned as they are.
///
/// Any failure refuses the whole file: no identity matching, a damaged stanza, a value that
/// does not authenticate (changed, or moved to another key), a missing or changed MAC, or
/// values added, removed or reordered (the MAC covers them in file order).
pub fn decrypt(text: &str, format: Format, identities: &Identities) -> Result<BTreeMap<String, String>, Error> {
    let doc = parse_document(text, format)?;
    check_shape(&doc)?;
    let key = data_key(&doc.meta, identities)?;
    let mut hasher = Sha512::new();
    if doc.meta.mac_only_encrypted {
        hasher.update(MAC_ONLY_ENCRYPTED_PREFIX);
    }
    let mut values = BTreeMap::new();
    for leaf in leaves(&doc.data) {
        let encrypted = doc.meta.rule.encrypts(&leaf.path);
        let value = if encrypted { open_leaf(&leaf, &key)? } else { leaf.value.clone() };
        if encrypted || !doc.meta.mac_only_encrypted {
            hasher.update(mac_bytes(&value));
        }
        let rendered = render(&value).map_err(|problem| Error::Value { key: leaf.key.clone(), problem: problem.into() })?;
        if values.insert(leaf.key.clone(), rendered).is_some() {
            return Err(Error::DuplicateKey { key: leaf.key });
        }
    }
    if stored_mac(&doc.meta, &key)? != hex::encode_upper(hasher.finalize()) {
        return Err(Error::MacMismatch);
    }
    Ok(values)
}

// ---------------------------------------------------------------------------------------
// Writing a SOPS file
// ---------------------------------------------------------------------------------------

/// Refuses keys that sops would read back differently, or that the format cannot hold.
fn check_key(key: &str, format: Format) -> Result<(), Error> {
    let fail = |problem: &str| Err(Error::Key { key: key.escape_debug().to_string(), problem: problem.into() });
    if key.is_empty() {
        return fail("an empty key");
    }
    if key.ends_with(DEFAULT_UNENCRYPTED_SUFFIX) {
        return fail("sops leaves keys ending in `_unencrypted` in clear; kiln writes secrets encrypted, rename it");
    }
    match format {
        Format::Yaml | Format::Json if key == "sops" => fail("`sops` is reserved for sops' metadata"),
        Format::Dotenv if key.starts_with("sops_") => fail("keys starting with `sops_` are reserved for sops' metadata"),
        Format::Dotenv if key.contains(['=', '\n', '\r']) || key.starts_with('#') => {
            fail("a dotenv key cannot contain `=` or a line break, nor start with `#`")
        }
        _ => Ok(()),
    }
}

/// The metadata kiln writes, already encrypted.
struct Written {
    age: Vec<AgeStanza>,
    lastmodified: String,
    mac: String,
}

/// The `sops` mapping, keys sorted as sops writes them.
fn metadata_out(meta: &Written) -> Out {
    let stanza =
        |s: &AgeStanza| Out::Map(vec![("enc".into(), Out::Block(s.enc.clone())), ("recipient".into(), Out::Str(s.recipient.clone()))]);
    Out::Map(vec![
        ("age".into(), Out::List(meta.age.iter().map(stanza).collect())),
        ("lastmodified".into(), Out::Str(meta.lastmodified.clone())),
        ("mac".into(), Out::Str(meta.mac.clone())),
        ("unencrypted_suffix".into(), Out::Str(DEFAULT_UNENCRYPTED_SUFFIX.into())),
        ("version".into(), Out::Str(SOPS_VERSION.into())),
    ])
}

fn document_out(sealed: &[(String, String)], meta: &Written) -> Out {
    let mut entries: Vec<(String, Out)> = sealed.iter().map(|(k, v)| (k.clone(), Out::Str(v.clone()))).collect();
    entries.push(("sops".into(), metadata_out(meta)));
    Out::Map(entries)
}

fn emit_yaml(sealed: &[(String, String)], meta: &Written) -> Result<String, Error> {
    // Plain scalars and a literal block for the armored data keys, indented as sops does.
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false, indent_step: 4, compact_list_indent: false };
    serde_saphyr::to_string_with_options(&document_out(sealed, meta), options).map_err(|e| Error::Encrypt { problem: format!("YAML: {e}") })
}

fn emit_json(sealed: &[(String, String)], meta: &Written) -> Result<String, Error> {
    serde_json::to_string_pretty(&document_out(sealed, meta))
        .map(|text| text + "\n")
        .map_err(|e| Error::Encrypt { problem: format!("JSON: {e}") })
}

/// The dotenv file: the values, then the metadata flattened as sops flattens it.
fn emit_dotenv(sealed: &[(String, String)], meta: &Written) -> String {
    let mut lines: Vec<(String, String)> = sealed.to_vec();
    for (i, stanza) in meta.age.iter().enumerate() {
        lines.push((format!("sops_age__list_{i}__map_enc"), stanza.enc.clone()));
        lines.push((format!("sops_age__list_{i}__map_recipient"), stanza.recipient.clone()));
    }
    lines.push(("sops_lastmodified".into(), meta.lastmodified.clone()));
    lines.push(("sops_mac".into(), meta.mac.clone()));
    lines.push(("sops_unencrypted_suffix".into(), DEFAULT_UNENCRYPTED_SUFFIX.into()));
    lines.push(("sops_version".into(), SOPS_VERSION.into()));
    lines.iter().map(|(k, v)| format!("{k}={}\n", v.replace('\n', "\\n"))).collect()
}

/// Writes a SOPS file holding `values` (top-level keys), encrypted to the recipients
/// (`age1…` and `ssh-ed25519 …`), in the layout sops itself writes and reads: a random
/// data key age-encrypted once per recipient, each value sealed with its own random IV, the
/// MAC over the values in key order, `lastmodified` (RFC 3339, e.g. `2026-08-01T09:00:14Z`),
/// `unencrypted_suffix: _unencrypted` and `version`. The output is random by nature: it is
/// a secrets file, never a store artifact.
pub fn encrypt(values: &BTreeMap<String, String>, format: Format, recipients: &[String], lastmodified: &str) -> Result<String, Error> {
    let lastmodified = go_rfc3339(lastmodified)?;
    let recipients = parse_recipients(recipients)?;
    for key in values.keys() {
        check_key(key, format)?;
    }
    let mut key = [0u8; 32];
    random(&mut key)?;
    let age = recipients
        .iter()
        .map(|r| Ok(AgeStanza { recipient: r.text.clone(), enc: age_seal(&key, &[r])? }))
        .collect::<Result<Vec<_>, Error>>()?;
    let mut hasher = Sha512::new();
    let mut sealed = Vec::new();
    for (name, value) in values {
        hasher.update(value.as_bytes());
        let stored = if value.is_empty() { String::new() } else { gcm_seal(&key, value, &additional_data(std::slice::from_ref(name)))? };
        sealed.push((name.clone(), stored));
    }
    let mac = gcm_seal(&key, &hex::encode_upper(hasher.finalize()), &lastmodified)?;
    let meta = Written { age, lastmodified, mac };
    match format {
        Format::Yaml => emit_yaml(&sealed, &meta),
        Format::Json => emit_json(&sealed, &meta),
        Format::Dotenv => Ok(emit_dotenv(&sealed, &meta)),
    }
}

// ---------------------------------------------------------------------------------------
// lastmodified
// ---------------------------------------------------------------------------------------

/// `lastmodified` as sops uses it for the MAC: parsed as RFC 3339 and formatted back the
/// way Go does (fractional seconds dropped, a zero offset written `Z`).
fn go_rfc3339(value: &str) -> Result<String, Error> {
    normalize_rfc3339(value).ok_or_else(|| Error::LastModified { value: value.escape_debug().to_string() })
}

fn normalize_rfc3339(value: &str) -> Option<String> {
    let (date_time, rest) = (value.get(..19)?, value.get(19..)?);
    let b = date_time.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = date_time.get(range)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(format!("{date_time}{}", zone(skip_fraction(rest)?)?))
}

fn skip_fraction(rest: &str) -> Option<&str> {
    let Some(fraction) = rest.strip_prefix('.') else { return Some(rest) };
    let end = fraction.find(|c: char| !c.is_ascii_digit()).unwrap_or(fraction.len());
    (end > 0).then(|| &fraction[end..])
}

/// A zone `Z` or `±HH:MM`, as Go writes it back.
fn zone(text: &str) -> Option<String> {
    if text == "Z" {
        return Some("Z".into());
    }
    let b = text.as_bytes();
    if b.len() != 6 || !(b[0] == b'+' || b[0] == b'-') || b[3] != b':' {
        return None;
    }
    let two = |s: &str| s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse::<u32>().ok())?;
    let (hours, minutes) = (two(&text[1..3])?, two(&text[4..6])?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(if hours == 0 && minutes == 0 { "Z".into() } else { text.to_string() })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The top-level values of a plaintext secrets file (flat YAML or JSON mapping, or dotenv),
/// as text: what `kiln encrypt-secrets` encrypts.
pub fn plain_values(text: &str, format: Format) -> Result<BTreeMap<String, String>, Error> {
    let entries: Vec<(String, String)> = match format {
        Format::Dotenv => dotenv_lines(text)?,
        Format::Yaml | Format::Json => {
            let nodes = if format == Format::Yaml { yaml_entries(text)? } else { json_entries(text)? };
            let mut out = Vec::new();
            for (k, n) in nodes {
                let v = match n {
                    Node::Leaf(Scalar::Str(s)) | Node::Leaf(Scalar::Time(s)) => s,
                    Node::Leaf(Scalar::Int(i)) => i.to_string(),
                    Node::Leaf(Scalar::Float(f)) => f.to_string(),
                    Node::Leaf(Scalar::Bool(b)) => b.to_string(),
                    _ => {
                        return Err(Error::Unsupported {
                            feature: format!("a nested or empty value under `{k}` (kiln writes flat files)"),
                        });
                    }
                };
                out.push((k, v));
            }
            out
        }
    };
    let mut map = BTreeMap::new();
    for (k, v) in entries {
        if map.insert(k.clone(), v).is_some() {
            return Err(Error::DuplicateKey { key: k });
        }
    }
    Ok(map)
}

/// A UTC time as sops writes `lastmodified` (`2026-08-01T09:00:14Z`), from Unix seconds.
pub fn rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_785_574_814), "2026-08-01T09:00:14Z");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_does() {
        assert_eq!(go_float(0.1), "0.1");
        assert_eq!(go_float(100.0), "100");
        assert_eq!(go_float(1.5e-7), "0.00000015");
        assert_eq!(go_float(1e21), "1000000000000000000000");
        assert_eq!(go_float(-0.0), "-0");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }

    #[test]
    fn lastmodified_is_normalised_as_go_formats_it() {
        assert_eq!(normalize_rfc3339("2026-08-01T09:00:14Z").as_deref(), Some("2026-08-01T09:00:14Z"));
        assert_eq!(normalize_rfc3339("2026-08-01T09:00:14.123456Z").as_deref(), Some("2026-08-01T09:00:14Z"));
        assert_eq!(normalize_rfc3339("2026-08-01T09:00:14+00:00").as_deref(), Some("2026-08-01T09:00:14Z"));
        assert_eq!(normalize_rfc3339("2026-08-01T09:00:14+02:00").as_deref(), Some("2026-08-01T09:00:14+02:00"));
        assert_eq!(normalize_rfc3339("2026-02-30T09:00:14Z"), None);
        assert_eq!(normalize_rfc3339("2026-08-01 09:00:14Z"), None);
        assert_eq!(normalize_rfc3339("2026-08-01T09:00:14"), None);
    }

    #[test]
    fn flattened_metadata_keys_split_as_sops_does() {
        let tokens = tokenize("age__list_1__map_enc").unwrap();
        assert!(matches!(tokens.as_slice(), [Token::Key(a), Token::Index(1), Token::Key(e)] if a == "age" && e == "enc"));
    }

    #[test]
    fn additional_data_is_the_key_path_with_colons() {
        assert_eq!(additional_data(&["db".into(), "password".into()]), "db:password:");
    }
}
