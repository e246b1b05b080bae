//! The `sops` metadata kiln reads (age stanzas, `lastmodified`, the MAC, the encryption rule)
//! and writes.

use super::error::Error;
use super::time::go_rfc3339;
use super::tree::Node;
use super::value::{Scalar, go_bool};

/// The sops version kiln writes into `sops.version`: the file layout it produces is the
/// one sops has written since 3.7 (age support) and still reads.
pub(super) const SOPS_VERSION: &str = "3.9.0";

/// The suffix sops leaves in clear when a file names no encryption rule.
pub(super) const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// Key types sops can encrypt a data key with, besides age; kiln reads only age.
const OTHER_KEY_TYPES: [&str; 6] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

/// Which leaf values sops leaves in clear.
pub(super) enum Rule {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(regex::Regex),
    EncryptedRegex(regex::Regex),
}

impl Rule {
    /// Whether the value at this path of keys is encrypted (sops' `shouldBeEncrypted`).
    pub(super) fn encrypts(&self, path: &[String]) -> bool {
        match self {
            Rule::UnencryptedSuffix(suffix) => !path.iter().any(|k| k.ends_with(suffix.as_str())),
            Rule::EncryptedSuffix(suffix) => path.iter().any(|k| k.ends_with(suffix.as_str())),
            Rule::UnencryptedRegex(re) => !path.iter().any(|k| re.is_match(k)),
            Rule::EncryptedRegex(re) => path.iter().any(|k| re.is_match(k)),
        }
    }
}

/// One `sops.age[]` entry.
pub(super) struct AgeStanza {
    pub(super) recipient: String,
    pub(super) enc: String,
}

/// What kiln reads of the `sops` metadata.
pub(super) struct Metadata {
    pub(super) age: Vec<AgeStanza>,
    pub(super) others: Vec<String>,
    pub(super) lastmodified: String,
    pub(super) mac: Option<String>,
    pub(super) rule: Rule,
    pub(super) mac_only_encrypted: bool,
}

/// The metadata kiln writes, already encrypted.
pub(super) struct Written {
    pub(super) age: Vec<AgeStanza>,
    pub(super) lastmodified: String,
    pub(super) mac: String,
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

pub(super) fn metadata(meta: &[(String, Node)]) -> Result<Metadata, Error> {
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
