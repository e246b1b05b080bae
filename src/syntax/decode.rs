//! Typed reading of a spanned TOML tree: every wrong type, missing key and unknown key is
//! collected (with a did-you-mean), never stopping at the first.

use std::cell::RefCell;

use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::syntax::tree::{Entry, Node, Table, Value};
use crate::types::TypeError;

/// A value with the span it was written at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sp<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Sp<T> {
    pub fn new(value: T, span: Span) -> Sp<T> {
        Sp { value, span }
    }
}

impl<T> std::ops::Deref for Sp<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Where decoding errors go.
#[derive(Default)]
pub struct Sink {
    diags: RefCell<Vec<Diagnostic>>,
}

impl Sink {
    pub fn push(&self, d: Diagnostic) {
        self.diags.borrow_mut().push(d);
    }
    pub fn take(&self) -> Vec<Diagnostic> {
        std::mem::take(&mut self.diags.borrow_mut())
    }
    pub fn type_error(&self, span: Span, e: TypeError) {
        self.push(Diagnostic::error("E0003", e.message.clone()).primary(span, "invalid value").with_help(e.help));
    }
    pub fn expected(&self, node: &Node, what: &str) {
        self.push(
            Diagnostic::error("E0002", format!("expected {what}, found {}", node.value.type_name()))
                .primary(node.span, format!("expected {what}")),
        );
    }
}

/// Reads the keys of one table; `finish` reports the keys nobody asked for.
pub struct TableReader<'a> {
    pub table: &'a Table,
    pub span: Span,
    sink: &'a Sink,
    what: String,
    known: Vec<&'static str>,
}

impl<'a> TableReader<'a> {
    pub fn new(node: &'a Node, sink: &'a Sink, what: impl Into<String>) -> Option<TableReader<'a>> {
        let what = what.into();
        match &node.value {
            Value::Table(t) => Some(TableReader { table: t, span: node.span, sink, what, known: Vec::new() }),
            _ => {
                sink.expected(node, &format!("a table for {what}"));
                None
            }
        }
    }

    pub fn sink(&self) -> &'a Sink {
        self.sink
    }

    fn entry(&mut self, key: &'static str) -> Option<&'a Entry> {
        self.known.push(key);
        self.table.get(key)
    }

    /// The raw node of a key.
    pub fn node(&mut self, key: &'static str) -> Option<&'a Node> {
        self.entry(key).map(|e| &e.value)
    }

    pub fn missing(&self, key: &str, example: &str) {
        self.sink.push(
            Diagnostic::error("E0004", format!("missing key `{key}` in {}", self.what))
                .primary(self.span, format!("`{key}` is required here"))
                .help(format!("add `{key} = {example}`")),
        );
    }

    pub fn str(&mut self, key: &'static str) -> Option<Sp<String>> {
        let n = self.node(key)?;
        as_str(n, self.sink)
    }

    pub fn req_str(&mut self, key: &'static str, example: &str) -> Option<Sp<String>> {
        if self.table.get(key).is_none() {
            self.known.push(key);
            self.missing(key, example);
            return None;
        }
        self.str(key)
    }

    pub fn int(&mut self, key: &'static str) -> Option<Sp<i64>> {
        let n = self.node(key)?;
        as_int(n, self.sink)
    }

    pub fn bool(&mut self, key: &'static str) -> Option<Sp<bool>> {
        let n = self.node(key)?;
        match n.value {
            Value::Bool(b) => Some(Sp::new(b, n.span)),
            _ => {
                self.sink.expected(n, "a boolean");
                None
            }
        }
    }

    pub fn float(&mut self, key: &'static str) -> Option<Sp<f64>> {
        let n = self.node(key)?;
        match n.value {
            Value::Float(f) => Some(Sp::new(f, n.span)),
            Value::Int(i) => Some(Sp::new(i as f64, n.span)),
            _ => {
                self.sink.expected(n, "a number");
                None
            }
        }
    }

    pub fn str_list(&mut self, key: &'static str) -> Vec<Sp<String>> {
        match self.node(key) {
            Some(n) => as_str_list(n, self.sink),
            None => Vec::new(),
        }
    }

    /// A sub-table, read by `f`.
    pub fn table<T>(&mut self, key: &'static str, f: impl FnOnce(TableReader<'a>) -> T) -> Option<T> {
        let n = self.node(key)?;
        let what = format!("`{key}`");
        TableReader::new(n, self.sink, what).map(f)
    }

    /// A sub-table of free-form string values (`KEY = "value"`), each key with its span; a value
    /// that is not a string is reported and left out.
    pub fn str_map(&mut self, key: &'static str) -> Vec<(Sp<String>, Sp<String>)> {
        let sink = self.sink;
        self.table(key, |t| {
            t.entries().iter().filter_map(|e| Some((Sp::new(e.key.clone(), e.key_span), as_str(&e.value, sink)?))).collect()
        })
        .unwrap_or_default()
    }

    /// A table of named entries (`[hosts.NAME]`), each read by `f`, names checked as identifiers.
    pub fn named<T>(&mut self, key: &'static str, mut f: impl FnMut(Sp<String>, TableReader<'a>) -> Option<T>) -> Vec<T> {
        let Some(n) = self.node(key) else {
            return Vec::new();
        };
        let sink = self.sink;
        let Value::Table(t) = &n.value else {
            sink.expected(n, &format!("a table of `{key}`"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in &t.entries {
            let name = Sp::new(e.key.clone(), e.key_span);
            if let Some(r) = TableReader::new(&e.value, sink, format!("`{key}.{}`", e.key))
                && let Some(v) = f(name, r)
            {
                out.push(v);
            }
        }
        out
    }

    /// Reports unknown keys with the closest known one.
    pub fn finish(self) {
        for e in &self.table.entries {
            if self.known.contains(&e.key.as_str()) {
                continue;
            }
            let mut d = Diagnostic::error("E0005", format!("unknown key `{}` in {}", e.key, self.what)).primary(e.key_span, "unknown key");
            d = match did_you_mean(&e.key, self.known.iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => {
                    let mut keys: Vec<&str> = self.known.clone();
                    keys.sort();
                    keys.dedup();
                    d.help(format!("expected one of {}", keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")))
                }
            };
            self.sink.push(d);
        }
    }

    /// Lets all keys through (for free-form maps such as environment variables).
    pub fn entries(&self) -> &'a [Entry] {
        &self.table.entries
    }
}

pub fn as_str(n: &Node, sink: &Sink) -> Option<Sp<String>> {
    match &n.value {
        Value::Str(s) => Some(Sp::new(s.clone(), n.span)),
        _ => {
            sink.expected(n, "a string");
            None
        }
    }
}

pub fn as_int(n: &Node, sink: &Sink) -> Option<Sp<i64>> {
    match n.value {
        Value::Int(i) => Some(Sp::new(i, n.span)),
        _ => {
            sink.expected(n, "an integer");
            None
        }
    }
}

pub fn as_str_list(n: &Node, sink: &Sink) -> Vec<Sp<String>> {
    match &n.value {
        Value::Array(items) => items.iter().filter_map(|i| as_str(i, sink)).collect(),
        _ => {
            sink.expected(n, "an array of strings");
            Vec::new()
        }
    }
}

/// Parses a string node into a typed value, reporting a type error at its span.
pub fn typed<T>(v: Option<Sp<String>>, sink: &Sink, parse: impl FnOnce(&str) -> Result<T, TypeError>) -> Option<Sp<T>> {
    let v = v?;
    match parse(&v.value) {
        Ok(t) => Some(Sp::new(t, v.span)),
        Err(e) => {
            sink.type_error(v.span, e);
            None
        }
    }
}
