//! SOPS dotenv files: `KEY=VALUE` lines, with sops' metadata flattened into `sops_`-prefixed
//! lines (`sops_age__list_0__map_enc=…`) and newlines written `\n`; read back and written as
//! sops' dotenv store does.

use std::collections::BTreeMap;

use super::error::Error;
use super::formats::Format;
use super::metadata::{DEFAULT_UNENCRYPTED_SUFFIX, SOPS_VERSION, Written};
use super::tree::{Entries, Node};
use super::value::Scalar;

/// A dotenv file's `KEY=VALUE` lines (sops' dotenv store: `#` lines are comments, `\n` in a
/// value is a newline).
pub(super) fn dotenv_lines(text: &str) -> Result<Vec<(String, String)>, Error> {
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
pub(super) fn split_dotenv(text: &str) -> Result<(Entries, Entries), Error> {
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

/// The dotenv file: the values, then the metadata flattened as sops flattens it.
pub(super) fn emit_dotenv(sealed: &[(String, String)], meta: &Written) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_metadata_keys_split_as_sops_does() {
        let tokens = tokenize("age__list_1__map_enc").unwrap();
        assert!(matches!(tokens.as_slice(), [Token::Key(a), Token::Index(1), Token::Key(e)] if a == "age" && e == "enc"));
    }
}
