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
//!
//! The pieces: `formats` (YAML, JSON) and `dotenv` read and write the files, `tree` is the
//! document they share, `metadata` the `sops` block, `document` reads a file's values,
//! `identity` and `age_file` hold the age side, `cipher`, `mac` and `value` the AES-GCM
//! values and the MAC, `time` `lastmodified`.

mod age_file;
mod cipher;
mod document;
mod dotenv;
mod error;
mod formats;
mod identity;
mod mac;
mod metadata;
mod time;
mod tree;
mod value;

use std::collections::{BTreeMap, BTreeSet};

use age_file::age_seal;
pub use age_file::{decrypt_age, encrypt_age};
use cipher::{additional_data, gcm_seal, parse_sealed, random};
use document::{check_shape, data_key, leaves, open_leaf, parse_document, sealed_text};
use dotenv::{dotenv_lines, emit_dotenv};
pub use error::Error;
pub use formats::Format;
use formats::{emit_json, emit_yaml, json_entries, yaml_entries};
use identity::parse_recipients;
pub use identity::{Identities, load_identities};
use mac::{Mac, stored_mac};
use metadata::{AgeStanza, DEFAULT_UNENCRYPTED_SUFFIX, Written};
use time::go_rfc3339;
pub use time::rfc3339;
use tree::Node;
use value::{Scalar, render};

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
    let mut mac = Mac::new(doc.meta.mac_only_encrypted);
    let mut values = BTreeMap::new();
    for leaf in leaves(&doc.data) {
        let encrypted = doc.meta.rule.encrypts(&leaf.path);
        let value = if encrypted { open_leaf(&leaf, &key)? } else { leaf.value.clone() };
        if encrypted || !doc.meta.mac_only_encrypted {
            mac.add(&value);
        }
        let rendered = render(&value).map_err(|problem| Error::Value { key: leaf.key.clone(), problem: problem.into() })?;
        if values.insert(leaf.key.clone(), rendered).is_some() {
            return Err(Error::DuplicateKey { key: leaf.key });
        }
    }
    if stored_mac(&doc.meta, &key)? != mac.finish() {
        return Err(Error::MacMismatch);
    }
    Ok(values)
}

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
    let mut mac = Mac::new(false);
    let mut sealed = Vec::new();
    for (name, value) in values {
        mac.add_text(value);
        let stored = if value.is_empty() { String::new() } else { gcm_seal(&key, value, &additional_data(std::slice::from_ref(name)))? };
        sealed.push((name.clone(), stored));
    }
    let mac = gcm_seal(&key, &mac.finish(), &lastmodified)?;
    let meta = Written { age, lastmodified, mac };
    match format {
        Format::Yaml => emit_yaml(&sealed, &meta),
        Format::Json => emit_json(&sealed, &meta),
        Format::Dotenv => Ok(emit_dotenv(&sealed, &meta)),
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
