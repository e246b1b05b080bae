//! The document tree of a SOPS file: YAML and JSON read into [`Node`]s with keys in file order
//! (the MAC depends on it), and written from [`Out`].

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::value::Scalar;

/// A mapping's entries in file order.
pub(super) type Entries = Vec<(String, Node)>;

/// A parsed YAML or JSON document, keys in file order (the MAC depends on it).
#[derive(Clone, PartialEq)]
pub(super) enum Node {
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
pub(super) enum Out {
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
