//! age encryption: plain age files (`*.age`, armored or binary) and the age-encrypted data key
//! of a SOPS file, opened with [`Identities`] and sealed to recipients.

use std::fmt;
use std::io::{BufRead, Read, Write};

use super::error::Error;
use super::identity::{Identities, Recipient, parse_recipients};

/// How much of an age header kiln reads to name its stanzas in an error.
const AGE_HEADER_LIMIT: u64 = 64 * 1024;

/// Why an age decryption failed.
pub(super) enum AgeFailure {
    NoMatch,
    Other(String),
}

/// Decrypts an age file, armored or binary.
pub(super) fn age_open(input: &[u8], identities: &Identities) -> Result<Vec<u8>, AgeFailure> {
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
pub(super) fn age_seal(plain: &[u8], recipients: &[&Recipient]) -> Result<String, Error> {
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
