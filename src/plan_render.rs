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
