//! Diagnostics as JSON for `kiln check --json`: each located at file, line and column (1-based,
//! column in characters), with its code, labels, notes and help, for CI annotations and editors.

use serde_json::{Value, json};

use crate::diag::{Diagnostic, Severity, Sources, Span};

/// The whole report: whether the system compiled, the counts, and every diagnostic in order.
pub fn report(sources: &Sources, diags: &[Diagnostic]) -> Value {
    let errors = diags.iter().filter(|d| d.severity == Severity::Error).count();
    json!({
        "ok": errors == 0,
        "errors": errors,
        "warnings": diags.iter().filter(|d| d.severity == Severity::Warning).count(),
        "diagnostics": diags.iter().map(|d| diagnostic(sources, d)).collect::<Vec<_>>(),
    })
}

fn diagnostic(sources: &Sources, d: &Diagnostic) -> Value {
    let mut v = json!({
        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning", Severity::Note => "note" },
        "code": d.code,
        "message": d.message,
        "labels": d.labels.iter().map(|l| {
            let mut lv = location(sources, l.span);
            lv["message"] = json!(l.message);
            lv["primary"] = json!(l.primary);
            lv
        }).collect::<Vec<_>>(),
        "notes": d.notes,
        "help": d.help,
    });
    if let Some(span) = d.primary_span() {
        for (k, x) in location(sources, span).as_object().into_iter().flatten() {
            v[k] = x.clone();
        }
    }
    if let Some((kind, name)) = &d.subject {
        v["about"] = json!({ "kind": kind, "name": name });
    }
    v
}

/// `file`, `line`, `column` and the end of a span.
fn location(sources: &Sources, span: Span) -> Value {
    let (line, column) = sources.line_col(span.file, span.start as usize);
    let (end_line, end_column) = sources.line_col(span.file, span.end as usize);
    json!({
        "file": sources.get(span.file).name,
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
    })
}

/// The report as text. serde_json leaves DEL, C1 controls (8-bit CSI) and bidi overrides raw;
/// they are written as `\uXXXX` escapes here (valid anywhere in a JSON string, and JSON's
/// structure is ASCII), so the output is safe to show on a terminal and decodes to the same
/// values.
pub fn to_string(value: &Value) -> String {
    let text = serde_json::to_string_pretty(value).expect("serialises");
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\u{7f}'..='\u{9f}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn terminal_controls_are_escaped_and_decode_to_the_same_value() {
        let v = serde_json::json!({ "message": "a\u{9b}31mred\u{7f}\u{202e}x\u{1b}[0m" });
        let text = super::to_string(&v);
        assert!(!text.chars().any(|c| c.is_control() && c != '\n' || ('\u{202a}'..='\u{202e}').contains(&c)), "{text:?}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), v);
    }
}
