//! The cloud deploy's plan on the terminal: per wave, OpenTofu's action on each host's server
//! beside kiln's steps (a kept volume named), the other resources OpenTofu changes, or one
//! `{"plan": …}` line with `--json`; and the confirmation asked on the terminal.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::cloud_plan::CloudHostPlan;

/// The plan, per wave: OpenTofu's action on each host's server and kiln's steps, then the
/// other resources OpenTofu changes; on stdout, or one `{"plan": …}` line with `--json`.
pub fn show_plan(
    json: bool,
    m: &crate::pipeline::Manifest,
    rollback_of: Option<u64>,
    waves: &[(String, Vec<String>)],
    hosts: &BTreeMap<String, CloudHostPlan>,
    tofu: &crate::tofu_workdir::TofuPlan,
) {
    let servers: BTreeSet<&str> = hosts.values().filter_map(|h| h.server.as_deref()).collect();
    let others: BTreeMap<&str, Vec<&String>> =
        [("create", &tofu.create), ("replace", &tofu.replace), ("update", &tofu.update), ("destroy", &tofu.destroy)]
            .into_iter()
            .map(|(k, set)| (k, set.iter().filter(|a| !servers.contains(a.as_str())).collect::<Vec<_>>()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
    if json {
        let waves: Vec<Value> = waves
            .iter()
            .map(|(name, hs)| serde_json::json!({ "wave": name, "hosts": hs.iter().map(|h| &hosts[h]).collect::<Vec<_>>() }))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "plan": { "system": m.system, "hash": m.hash, "rollback_of": rollback_of, "tofu": tofu, "waves": waves, "other_resources": others } })
        );
        return;
    }
    use std::io::Write;
    let what = match rollback_of {
        Some(g) => format!("generation {g} ({})", m.hash.get(..12).unwrap_or(&m.hash)),
        None => format!("build {}", m.hash.get(..12).unwrap_or(&m.hash)),
    };
    let mut out = format!("plan: deploy {what} of `{}` (OpenTofu, then SSH)\n", m.system);
    for (i, (name, hs)) in waves.iter().enumerate() {
        out.push_str(&format!("wave {} `{name}`:\n", i + 1));
        for h in hs {
            let p = &hosts[h];
            let mut server = p.server.as_deref().map(|s| format!("{} {s}", p.tofu)).unwrap_or_else(|| "existing host".into());
            if p.tofu == "replace" && !p.volumes.is_empty() {
                server.push_str(&format!(" (volume {} kept, moved to the new server)", p.volumes.join(", ")));
            }
            out.push_str(&format!("  {h:<16} {server:<32} then {}\n", p.steps.join(", ")));
        }
    }
    for (action, addrs) in &others {
        out.push_str(&format!("OpenTofu {action}s {}\n", addrs.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")));
    }
    if !tofu.changes {
        out.push_str("OpenTofu: no changes\n");
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
}

/// Asks on the terminal; `false` without one (`--yes` is how to go on without asking).
pub fn confirmed(tofu: &crate::tofu_workdir::TofuPlan) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    let n = tofu.create.len() + tofu.replace.len() + tofu.update.len() + tofu.destroy.len();
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        eprintln!(
            "error: not deploying: the plan changes the system ({n} OpenTofu resource change{}) and there is no terminal to confirm it on; pass --yes to deploy without asking",
            if n == 1 { "" } else { "s" }
        );
        return false;
    }
    eprint!("Deploy this plan? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let yes = std::io::stdin().lock().read_line(&mut line).is_ok() && matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes");
    if !yes {
        eprintln!("not deployed: the plan was not confirmed; nothing changed");
    }
    yes
}
