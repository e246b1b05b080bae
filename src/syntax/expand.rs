//! Expansion of the system language's two shorthands, on the spanned tree before decoding:
//! `[templates]` stamped out by `[instances]`, and services placed on every host (`host = "*"`).
//!
//! A template holds `hosts`, `services`, `routes`, `streams`, `secrets` and `dns` tables written once;
//! each instance copies them with `{instance}` and its `vars` substituted in every key and
//! string, keeping only the entries whose `feature` the instance selects. The copies keep the
//! template's spans, so an error in a stamped-out entry points at the template line.

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::syntax::decode::{Sink, Sp, TableReader, as_str, typed};
use crate::syntax::tree::{Entry, Node, Table, Value};

/// The sections a template may hold.
const SECTIONS: [&str; 6] = ["dns", "hosts", "routes", "secrets", "services", "streams"];

/// One instance of a template, as declared.
struct Instance {
    name: Sp<String>,
    template: Sp<String>,
    features: Vec<Sp<String>>,
    vars: BTreeMap<String, Sp<String>>,
}

/// Expands every file's `templates`/`instances` and every `host = "*"` service. Returns the
/// stamped-out tables as extra root nodes; `roots` lose their `templates` and `instances` keys
/// and have their every-host services replaced by one copy per host.
pub fn expand(roots: &mut [Node], sink: &Sink) -> Vec<Node> {
    let mut templates: BTreeMap<String, (Span, Table)> = BTreeMap::new();
    let mut instances = Vec::new();
    for root in roots.iter_mut() {
        let Value::Table(t) = &mut root.value else { continue };
        if let Some(e) = take(t, "templates") {
            match e.value.value {
                Value::Table(ts) => {
                    for te in ts.entries {
                        if let Some((span, _)) = templates.get(&te.key) {
                            sink.push(
                                Diagnostic::error("E0011", format!("template `{}` is declared twice", te.key))
                                    .primary(te.key_span, "declared again here")
                                    .secondary(*span, "first declared here"),
                            );
                            continue;
                        }
                        if let Some(body) = template_body(&te, sink) {
                            templates.insert(te.key.clone(), (te.key_span, body));
                        }
                    }
                }
                _ => sink.expected(&e.value, "a table of `templates`"),
            }
        }
        if let Some(e) = take(t, "instances") {
            instances.extend(read_instances(&e.value, sink));
        }
    }
    let mut out = Vec::new();
    let mut used_features: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for inst in &instances {
        let Some((_, body)) = templates.get(&inst.template.value) else {
            let mut d = Diagnostic::error("E0010", format!("unknown template `{}`", inst.template.value))
                .primary(inst.template.span, "no such template");
            d = match did_you_mean(&inst.template.value, templates.keys().map(String::as_str)) {
                Some(m) => d.help(format!("did you mean `{m}`?")),
                None => d.help("declare it as `[templates.NAME]` with `hosts`, `services`, `routes`, `streams`, `secrets` or `dns` tables"),
            };
            sink.push(d);
            continue;
        };
        let offered = used_features.entry(inst.template.value.clone()).or_insert_with(|| features_of(body));
        for f in &inst.features {
            if !offered.contains(&f.value) {
                let mut d = Diagnostic::error("E0010", format!("template `{}` has no feature `{}`", inst.template.value, f.value))
                    .primary(f.span, "no entry of the template selects this");
                if let Some(m) = did_you_mean(&f.value, offered.iter().map(String::as_str)) {
                    d = d.help(format!("did you mean `{m}`?"));
                }
                sink.push(d);
            }
        }
        out.push(Node { span: inst.name.span, value: Value::Table(stamp(body, inst, sink)) });
    }
    every_host(roots, &mut out, sink);
    out
}

fn take(t: &mut Table, key: &str) -> Option<Entry> {
    let i = t.entries.iter().position(|e| e.key == key)?;
    Some(t.entries.remove(i))
}

fn template_body(te: &Entry, sink: &Sink) -> Option<Table> {
    let Value::Table(body) = &te.value.value else {
        sink.expected(&te.value, &format!("a table for template `{}`", te.key));
        return None;
    };
    for e in &body.entries {
        if !SECTIONS.contains(&e.key.as_str()) {
            let mut d =
                Diagnostic::error("E0005", format!("unknown key `{}` in template `{}`", e.key, te.key)).primary(e.key_span, "unknown key");
            d = match did_you_mean(&e.key, SECTIONS) {
                Some(m) => d.help(format!("did you mean `{m}`?")),
                None => d.help("a template holds `hosts`, `services`, `routes`, `streams`, `secrets` and `dns` tables"),
            };
            sink.push(d);
        }
    }
    Some(body.clone())
}

fn read_instances(node: &Node, sink: &Sink) -> Vec<Instance> {
    let Value::Table(t) = &node.value else {
        sink.expected(node, "a table of `instances`");
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in &t.entries {
        let Some(mut r) = TableReader::new(&e.value, sink, format!("`instances.{}`", e.key)) else { continue };
        let template = r.req_str("template", "\"client\"");
        let features = r.str_list("features");
        let vars = r
            .table("vars", |vt| vt.entries().iter().filter_map(|v| Some((v.key.clone(), as_str(&v.value, sink)?))).collect())
            .unwrap_or_default();
        r.finish();
        let name = typed(Some(Sp::new(e.key.clone(), e.key_span)), sink, crate::types::parse_ident);
        if let (Some(name), Some(template)) = (name, template) {
            out.push(Instance { name, template, features, vars });
        }
    }
    out
}

/// Every `feature` value named by an entry of the template.
fn features_of(body: &Table) -> Vec<String> {
    let mut v: Vec<String> = body
        .entries
        .iter()
        .filter_map(|s| match &s.value.value {
            Value::Table(t) => Some(t.entries.iter()),
            _ => None,
        })
        .flatten()
        .filter_map(|e| match &e.value.value {
            Value::Table(t) => t.get("feature").and_then(|f| match &f.value.value {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            }),
            _ => None,
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// One instance's copy of a template body.
fn stamp(body: &Table, inst: &Instance, sink: &Sink) -> Table {
    let mut sections = Vec::new();
    for section in &body.entries {
        let Value::Table(entries) = &section.value.value else {
            sink.expected(&section.value, &format!("a table of `{}`", section.key));
            continue;
        };
        let mut kept = Vec::new();
        for e in &entries.entries {
            let mut value = e.value.clone();
            if let Value::Table(t) = &mut value.value
                && let Some(f) = take(t, "feature")
            {
                match &f.value.value {
                    Value::Str(s) if inst.features.iter().any(|x| &x.value == s) => {}
                    Value::Str(_) => continue,
                    _ => {
                        sink.expected(&f.value, "a feature name");
                        continue;
                    }
                }
            }
            let key = substitute(&e.key, e.key_span, inst, sink);
            substitute_node(&mut value, inst, sink);
            kept.push(Entry { key, key_span: e.key_span, value });
        }
        kept.sort_by(|a, b| a.key.cmp(&b.key));
        sections.push(Entry {
            key: section.key.clone(),
            key_span: section.key_span,
            value: Node { span: section.value.span, value: Value::Table(Table { entries: kept }) },
        });
    }
    Table { entries: sections }
}

fn substitute_node(n: &mut Node, inst: &Instance, sink: &Sink) {
    match &mut n.value {
        Value::Str(s) => *s = substitute(s, n.span, inst, sink),
        Value::Array(items) => items.iter_mut().for_each(|i| substitute_node(i, inst, sink)),
        Value::Table(t) => {
            for e in &mut t.entries {
                e.key = substitute(&e.key, e.key_span, inst, sink);
                substitute_node(&mut e.value, inst, sink);
            }
            t.entries.sort_by(|a, b| a.key.cmp(&b.key));
        }
        _ => {}
    }
}

/// Replaces `{instance}` and `{VAR}` (a lowercase identifier between single braces) in `s`.
/// Anything else in braces — `{{ jinja }}`, JSON — is left alone.
fn substitute(s: &str, span: Span, inst: &Instance, sink: &Sink) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}');
        let name = close.map(|c| &after[..c]);
        let doubled = rest[open + 1..].starts_with('{') || out.ends_with('{');
        match name {
            Some(name) if !doubled && is_var(name) && !after[close.unwrap_or(0) + 1..].starts_with('}') => {
                if name == "instance" {
                    out.push_str(&inst.name.value);
                } else if let Some(v) = inst.vars.get(name) {
                    out.push_str(&v.value);
                } else {
                    let mut d = Diagnostic::error("E0010", format!("instance `{}` sets no variable `{name}`", inst.name.value))
                        .primary(span, format!("uses `{{{name}}}`"))
                        .secondary(inst.name.span, "the instance");
                    d = match did_you_mean(name, inst.vars.keys().map(String::as_str).chain(["instance"])) {
                        Some(m) => d.help(format!("did you mean `{{{m}}}`?")),
                        None => d.help(format!("add `vars = {{ {name} = \"…\" }}` to the instance")),
                    };
                    sink.push(d);
                }
                rest = &after[close.unwrap_or(0) + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_var(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Replaces each service declared with `host = "*"` by one copy per host, named
/// `SERVICE-HOST`. Hosts come from every root and every stamped-out instance.
fn every_host(roots: &mut [Node], stamped: &mut [Node], sink: &Sink) {
    let mut hosts: Vec<(String, Span)> = Vec::new();
    for root in roots.iter().chain(stamped.iter()) {
        if let Value::Table(t) = &root.value
            && let Some(h) = t.get("hosts")
            && let Value::Table(ht) = &h.value.value
        {
            hosts.extend(ht.entries.iter().map(|e| (e.key.clone(), e.key_span)));
        }
    }
    hosts.sort();
    for root in roots.iter_mut().chain(stamped.iter_mut()) {
        let Value::Table(t) = &mut root.value else { continue };
        let Some(services) = t.entries.iter_mut().find(|e| e.key == "services") else { continue };
        let Value::Table(st) = &mut services.value.value else { continue };
        let mut out = Vec::new();
        for e in std::mem::take(&mut st.entries) {
            let star = matches!(&e.value.value, Value::Table(t) if t.get("host").is_some_and(|h| matches!(&h.value.value, Value::Str(s) if s == "*")));
            if !star {
                out.push(e);
                continue;
            }
            if hosts.is_empty() {
                sink.push(
                    Diagnostic::error("E0070", format!("service `{}` is placed on every host, but there are none", e.key))
                        .primary(e.key_span, "no host to place it on"),
                );
            }
            for (h, _) in &hosts {
                let mut copy = e.clone();
                copy.key = format!("{}-{h}", e.key);
                if let Value::Table(ct) = &mut copy.value.value
                    && let Some(he) = ct.entries.iter_mut().find(|x| x.key == "host")
                {
                    he.value.value = Value::Str(h.clone());
                }
                out.push(copy);
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        st.entries = out;
    }
}
