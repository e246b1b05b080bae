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
        "warnings": diags.len() - errors,
        "diagnostics": diags.iter().map(|d| diagnostic(sources, d)).collect::<Vec<_>>(),
    })
}

fn diagnostic(sources: &Sources, d: &Diagnostic) -> Value {
    let mut v = json!({
        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
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
