//! A service's `connects`: the services it connects to, as a list (`["db", "cache.valkey"]`),
//! as a table naming the module's requirement slots they fill (`{ sessions = "valkey-a",
//! cache = "valkey-b" }`), or a list mixing both (`["editor", { sessions = "valkey-a" }]`).

use crate::syntax::decode::{Sink, Sp, as_str, typed};
use crate::syntax::tree::{Node, Value};
use crate::types;

/// One connection as written: its target (`SERVICE` or `SERVICE.ENDPOINT`) and, when written
/// in the table form, the requirement slot it fills.
#[derive(Debug, Clone)]
pub struct ConnectDecl {
    pub slot: Option<Sp<String>>,
    pub target: Sp<String>,
}

impl ConnectDecl {
    /// The service it names (before any `.ENDPOINT`).
    pub fn service(&self) -> &str {
        self.target.value.split_once('.').map_or(self.target.value.as_str(), |(s, _)| s)
    }

    /// A connection to a public route (`route:HOSTNAME` or `https://HOSTNAME[/PATH]`): the
    /// route's hostname.
    pub fn route(&self) -> Option<&str> {
        let v = self.target.value.as_str();
        if let Some(h) = v.strip_prefix("route:") {
            return Some(h);
        }
        let rest = v.strip_prefix("https://")?;
        rest.split(['/', '?', '#']).next()
    }
}

const EXPECTED: &str = "a list of services or a table of slot = service";

/// Reads `connects` (absent: none).
pub fn read(node: Option<&Node>, sink: &Sink) -> Vec<ConnectDecl> {
    let Some(node) = node else { return Vec::new() };
    match &node.value {
        Value::Array(items) => items
            .iter()
            .flat_map(|item| match &item.value {
                Value::Table(_) => slots(item, sink),
                _ => as_str(item, sink).map(|target| ConnectDecl { slot: None, target }).into_iter().collect(),
            })
            .collect(),
        Value::Table(_) => slots(node, sink),
        _ => {
            sink.expected(node, EXPECTED);
            Vec::new()
        }
    }
}

/// A table of `SLOT = "SERVICE[.ENDPOINT]"`.
fn slots(node: &Node, sink: &Sink) -> Vec<ConnectDecl> {
    let Value::Table(t) = &node.value else { return Vec::new() };
    t.entries
        .iter()
        .filter_map(|e| {
            let slot = typed(Some(Sp::new(e.key.clone(), e.key_span)), sink, types::parse_ident);
            let target = as_str(&e.value, sink)?;
            Some(ConnectDecl { slot: Some(slot?), target })
        })
        .collect()
}
