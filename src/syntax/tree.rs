//! A TOML document as an owned tree in which every key and value keeps its span.

use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostic, FileId, Span};

#[derive(Clone, Debug)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

#[derive(Clone, Debug)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime(String),
    Array(Vec<Node>),
    Table(Table),
}

#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Entries sorted by key: TOML tables are unordered, so nothing may depend on source order.
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

impl Node {
    /// The value as TOML-like text, for messages and documentation.
    pub fn text(&self) -> String {
        match &self.value {
            Value::Str(s) => format!("{s:?}"),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Datetime(d) => d.clone(),
            Value::Array(items) => format!("[{}]", items.iter().map(Node::text).collect::<Vec<_>>().join(", ")),
            Value::Table(_) => "{…}".into(),
        }
    }
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Datetime(_) => "a datetime",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// Parses a TOML file; syntax errors come back all at once, located in `file`.
pub fn parse(file: FileId, text: &str) -> Result<Node, Vec<Diagnostic>> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(syntax_errors(file, text, errors.iter().map(|e| (e.span().unwrap_or(0..0), first_line(e.message())))));
    }
    let span = Span::new(file, clamp(doc.span(), text.len()));
    Ok(Node { span, value: Value::Table(convert_table(file, doc.get_ref(), text.len())) })
}

/// One diagnostic per mistake. Recovery inside an unclosed array or table repeats itself, so
/// a line gets one error; a table header written twice is one error, not one more for each
/// of its keys.
fn syntax_errors(file: FileId, text: &str, errors: impl Iterator<Item = (std::ops::Range<usize>, String)>) -> Vec<Diagnostic> {
    let lines: Vec<(usize, &str)> = line_starts(text);
    let mut lines_seen = Vec::new();
    let mut repeated_table: Option<usize> = None;
    let mut out = Vec::new();
    for (range, msg) in errors {
        let range = clamp(range, text.len());
        let line = text[..range.start].matches('\n').count();
        if lines_seen.contains(&line) {
            continue;
        }
        lines_seen.push(line);
        let is_duplicate = msg.starts_with("duplicate key");
        if is_duplicate && repeated_table.is_some_and(|h| same_table(&lines, h, line)) {
            continue;
        }
        if is_duplicate && let Some(key) = header_key(lines[line].1) {
            repeated_table = Some(line);
            out.push(repeated_header(file, &lines, line, &key, range));
            continue;
        }
        out.push(syntax_error(file, &msg, range));
    }
    out
}

fn syntax_error(file: FileId, msg: &str, range: std::ops::Range<usize>) -> Diagnostic {
    let d = Diagnostic::error("E0001", format!("invalid TOML: {msg}")).primary(Span::new(file, range), "here");
    if msg.contains("missing comma between array elements") {
        d.help("is a `]` missing at the end of the array before this?")
    } else if msg.contains("string values must be quoted") {
        d.help("write strings in quotes: `key = \"value\"`")
    } else {
        d
    }
}

/// `[KEY]` written a second time at `line`, pointing at the first one where it is a header.
fn repeated_header(file: FileId, lines: &[(usize, &str)], line: usize, key: &str, range: std::ops::Range<usize>) -> Diagnostic {
    let mut d = Diagnostic::error("E0011", format!("table `[{key}]` is declared twice"))
        .primary(Span::new(file, range), "declared again here")
        .help("merge the two tables into one");
    if let Some(first) = (0..line).find(|&l| header_key(lines[l].1).as_deref() == Some(key)) {
        let (start, text) = lines[first];
        let lead = text.len() - text.trim_start().len();
        d = d.secondary(Span::new(file, start + lead..start + text.trim_end().len()), "first declared here");
    }
    d
}

/// Byte offset and text of every line.
fn line_starts(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    for l in text.split('\n') {
        out.push((start, l));
        start += l.len() + 1;
    }
    out
}

/// Whether `line` still lies in the table whose header is at `header` (no header between).
fn same_table(lines: &[(usize, &str)], header: usize, line: usize) -> bool {
    line > header && lines[header + 1..=line].iter().all(|(_, l)| !l.trim_start().starts_with('['))
}

/// The key of a `[table]` header line (not `[[array]]`), whitespace outside quotes removed.
fn header_key(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix('[')?;
    if rest.starts_with('[') {
        return None;
    }
    let mut key = String::new();
    let mut quote: Option<char> = None;
    for c in rest.chars() {
        match (quote, c) {
            (None, ']') => return Some(key),
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => continue,
            _ => {}
        }
        key.push(c);
    }
    None
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

fn clamp(r: std::ops::Range<usize>, len: usize) -> std::ops::Range<usize> {
    let start = r.start.min(len);
    start..r.end.clamp(start, len)
}

fn convert_table(file: FileId, t: &DeTable<'_>, len: usize) -> Table {
    let mut entries: Vec<Entry> = t
        .iter()
        .map(|(k, v)| Entry {
            key: k.get_ref().to_string(),
            key_span: Span::new(file, clamp(k.span(), len)),
            value: Node { span: Span::new(file, clamp(v.span(), len)), value: convert(file, v.get_ref(), len) },
        })
        .collect();
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    Table { entries }
}

fn convert(file: FileId, v: &DeValue<'_>, len: usize) -> Value {
    match v {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::Int(n),
            Err(_) => Value::Str(i.as_str().to_string()),
        },
        DeValue::Float(f) => Value::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::Datetime(d.to_string()),
        DeValue::Array(a) => Value::Array(
            a.iter().map(|n| Node { span: Span::new(file, clamp(n.span(), len)), value: convert(file, n.get_ref(), len) }).collect(),
        ),
        DeValue::Table(t) => Value::Table(convert_table(file, t, len)),
    }
}
