//! A [`Plan`] as a person reads it (a terminal or a CI log: colour only when asked) or as a
//! program does (`--json`).

use std::fmt::Write;

use crate::plan::{Action, AddedRemoved, Plan};

pub fn json(p: &Plan) -> String {
    let mut v = serde_json::to_value(p).expect("plan serialises");
    v["changes"] = serde_json::Value::Bool(p.has_changes());
    for a in [Action::Create, Action::Replace, Action::Update, Action::Destroy] {
        v[a.name()] = serde_json::json!(p.by_action(a));
    }
    let mut s = serde_json::to_string_pretty(&v).expect("plan serialises");
    s.push('\n');
    s
}

pub fn text(p: &Plan, color: bool) -> String {
    let paint = |code: &str, s: &str| if color { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() };
    let mut o = String::new();
    let from = p.old.as_deref().map(|h| format!("deployed {}", short(h))).unwrap_or_else(|| "nothing deployed".into());
    let _ = writeln!(o, "plan for system {}: {from} → build {}", p.system, short(&p.new));
    if !p.has_changes() {
        let _ = writeln!(o, "\nNo changes: the build is what is deployed.");
        return o;
    }
    if let Some((a, b)) = &p.kiln {
        let _ = writeln!(o, "kiln {a} → {b}");
    }
    let _ = writeln!(o, "\nhosts");
    for h in &p.hosts {
        let (sign, code) = match h.action {
            Action::Create => ("+", "32"),
            Action::Replace => ("-/+", "33"),
            Action::Update => ("~", "33"),
            Action::Destroy => ("-", "31"),
        };
        let _ = writeln!(o, "  {} {} {}", paint(code, &format!("{sign:>3}")), h.host, paint(code, &format!("({})", h.action.name())));
        for c in &h.causes {
            let _ = writeln!(o, "        because {c}");
        }
        if !h.artifacts.is_empty() {
            let _ = writeln!(o, "        artifacts: {}", h.artifacts.join(", "));
        }
        if let Some(d) = &h.data {
            let _ = writeln!(o, "        data: {d}");
        }
    }
    if !p.unchanged.is_empty() {
        let _ = writeln!(o, "    = unchanged: {}", p.unchanged.join(", "));
    }
    if !p.services.is_empty() {
        let _ = writeln!(o, "\nservices");
        for s in &p.services {
            let mut what = s.details.clone();
            if let Some((a, b)) = &s.image {
                what.push(format!("image {} → {}", a.as_deref().unwrap_or("-"), b.as_deref().unwrap_or("-")));
            }
            let _ = writeln!(o, "  {} {} on {}: {}", s.change, s.service, s.host, what.join("; "));
        }
    }
    section(&mut o, "firewall rules", &p.firewall);
    section(&mut o, "routes", &p.routes);
    section(&mut o, "streams", &p.streams);
    section(&mut o, "DNS records", &p.dns);
    section(&mut o, "secrets referenced", &p.secrets);
    section(&mut o, "waived rules", &p.waivers);
    let count = |a| p.by_action(a).len();
    let _ = writeln!(
        o,
        "\nPlan: {} to create, {} to replace, {} to update, {} to destroy, {} unchanged.",
        count(Action::Create),
        count(Action::Replace),
        count(Action::Update),
        count(Action::Destroy),
        p.unchanged.len()
    );
    o
}

fn section(o: &mut String, title: &str, c: &AddedRemoved) {
    if c.added.is_empty() && c.removed.is_empty() && c.retargeted.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n{title}");
    for a in &c.added {
        let _ = writeln!(o, "  + {a}");
    }
    for r in &c.removed {
        let _ = writeln!(o, "  - {r}");
    }
    for r in &c.retargeted {
        let _ = writeln!(o, "  ~ {r}");
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// OpenTofu's plan of the same change (`kiln plan --tofu`), by resource address, after kiln's.
pub fn tofu_text(t: &crate::tofu_workdir::TofuPlan, program: &str, backend: &str, color: bool) -> String {
    let paint = |code: &str, s: &str| if color { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() };
    let mut o = String::new();
    let _ = writeln!(o, "\n{program} plan against {backend}");
    for (set, sign, code) in [(&t.create, "+", "32"), (&t.replace, "-/+", "33"), (&t.update, "~", "33"), (&t.destroy, "-", "31")] {
        for addr in set {
            let _ = writeln!(o, "  {} {addr}", paint(code, &format!("{sign:>3}")));
        }
    }
    if !t.changes {
        let _ = writeln!(o, "  No changes: the infrastructure matches the configuration.");
    }
    let _ = writeln!(
        o,
        "\n{program}: {} to create, {} to replace, {} to update, {} to destroy.",
        t.create.len(),
        t.replace.len(),
        t.update.len(),
        t.destroy.len()
    );
    o
}

/// `--json` with `--tofu`: kiln's plan with OpenTofu's under `tofu` (`{"program", "backend",
/// "changes", "create", "replace", "update", "destroy"}`); `changes` is true when either has.
pub fn json_with_tofu(p: &Plan, t: &crate::tofu_workdir::TofuPlan, program: &str, backend: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&json(p)).expect("plan JSON");
    let mut tv = serde_json::to_value(t).expect("plan serialises");
    tv["program"] = serde_json::json!(program);
    tv["backend"] = serde_json::json!(backend);
    v["tofu"] = tv;
    v["changes"] = serde_json::Value::Bool(p.has_changes() || t.changes);
    let mut s = serde_json::to_string_pretty(&v).expect("plan serialises");
    s.push('\n');
    s
}
