//! Reading a SOPS file: its values and metadata parsed, its leaves listed in file order, the
//! data key recovered through age and each value opened.

use super::age_file::{AgeFailure, age_open};
use super::cipher::{additional_data, gcm_open, parse_sealed};
use super::dotenv::split_dotenv;
use super::error::{Error, short};
use super::formats::{Format, json_entries, split_sops, yaml_entries};
use super::identity::Identities;
use super::metadata::{Metadata, metadata};
use super::tree::Node;
use super::value::{Scalar, typed};

/// A SOPS file: its values (in file order) and its metadata.
pub(super) struct Document {
    pub(super) data: Vec<(String, Node)>,
    pub(super) meta: Metadata,
}

/// A leaf of the data: its value, its sops path (map keys only) and kiln's dotted key
/// (map keys and list indices).
pub(super) struct Leaf<'a> {
    pub(super) value: &'a Scalar,
    pub(super) path: Vec<String>,
    pub(super) key: String,
}

pub(super) fn parse_document(text: &str, format: Format) -> Result<Document, Error> {
    let (data, meta) = match format {
        Format::Yaml => split_sops(yaml_entries(text)?, format)?,
        Format::Json => split_sops(json_entries(text)?, format)?,
        Format::Dotenv => split_dotenv(text)?,
    };
    Ok(Document { data, meta: metadata(&meta)? })
}

/// The leaves of the data in file order; nulls are no values (sops skips them).
pub(super) fn leaves(data: &[(String, Node)]) -> Vec<Leaf<'_>> {
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

/// The stored form of a value that must be encrypted: an `ENC[…]` string, or empty.
pub(super) fn sealed_text<'a>(leaf: &Leaf<'a>) -> Result<&'a str, Error> {
    match leaf.value {
        Scalar::Str(s) => Ok(s),
        _ => Err(Error::Value {
            key: leaf.key.clone(),
            problem: "expected an encrypted ENC[AES256_GCM,…] value, found a clear one".into(),
        }),
    }
}

pub(super) fn open_leaf(leaf: &Leaf<'_>, key: &[u8; 32]) -> Result<Scalar, Error> {
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
pub(super) fn data_key(meta: &Metadata, identities: &Identities) -> Result<[u8; 32], Error> {
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

/// Checks what can be checked without a key: an age recipient, a MAC, encrypted values.
pub(super) fn check_shape(doc: &Document) -> Result<(), Error> {
    if doc.meta.age.is_empty() {
        return Err(Error::NoAgeRecipient { others: doc.meta.others.clone() });
    }
    let mac = doc.meta.mac.as_deref().ok_or(Error::MacMissing)?;
    parse_sealed(mac).map_err(|problem| Error::Metadata { field: "mac".into(), problem })?;
    Ok(())
}
