//! The three text formats of a SOPS file: which one a file name says, and the YAML and JSON
//! readers and writers (metadata under a top-level `sops` key). Dotenv is in `dotenv.rs`.

use std::fmt;
use std::path::Path;

use super::error::Error;
use super::metadata::{AgeStanza, DEFAULT_UNENCRYPTED_SUFFIX, SOPS_VERSION, Written};
use super::tree::{Entries, Node, Out};

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

pub(super) fn yaml_entries(text: &str) -> Result<Vec<(String, Node)>, Error> {
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

pub(super) fn json_entries(text: &str) -> Result<Vec<(String, Node)>, Error> {
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
pub(super) fn split_sops(entries: Vec<(String, Node)>, format: Format) -> Result<(Entries, Entries), Error> {
    let (meta, data): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(key, _)| key == "sops");
    match <[_; 1]>::try_from(meta) {
        Ok([(_, Node::Map(meta))]) => Ok((data, meta)),
        Ok(_) => Err(Error::Metadata { field: "sops".into(), problem: "expected a mapping".into() }),
        Err(found) if found.is_empty() => Err(Error::NotSops { format }),
        Err(_) => Err(Error::Metadata { field: "sops".into(), problem: "the key appears more than once".into() }),
    }
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

pub(super) fn emit_yaml(sealed: &[(String, String)], meta: &Written) -> Result<String, Error> {
    // Plain scalars and a literal block for the armored data keys, indented as sops does.
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false, indent_step: 4, compact_list_indent: false };
    serde_saphyr::to_string_with_options(&document_out(sealed, meta), options).map_err(|e| Error::Encrypt { problem: format!("YAML: {e}") })
}

pub(super) fn emit_json(sealed: &[(String, String)], meta: &Written) -> Result<String, Error> {
    serde_json::to_string_pretty(&document_out(sealed, meta))
        .map(|text| text + "\n")
        .map_err(|e| Error::Encrypt { problem: format!("JSON: {e}") })
}
