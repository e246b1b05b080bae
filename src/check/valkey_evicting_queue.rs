//! `valkey-evicting-queue`: a Valkey (or Redis) that evicts keys, used for queues or sessions.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;

pub const RULE: Rule = Rule {
    id: "valkey-evicting-queue",
    summary: "evicting memory policy on a Valkey used for queues or sessions",
    explanation: "With `maxmemory_policy` set to an `allkeys-*` or `volatile-*` policy, Valkey deletes \
keys when memory runs out. That is right for a cache and wrong for a job queue (jobs vanish \
silently) or a session store (users are logged out at random). A service whose requirement says \
`usage = \"queue\"` or `\"session\"` needs `maxmemory_policy = \"noeviction\"`, which refuses \
writes instead, loudly, when memory is full; or a separate cache instance.",
    allowable: true,
    check,
};

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for s in sys.services.values() {
        for d in &s.deps {
            let Some(usage) = d.usage.as_deref().filter(|u| matches!(*u, "queue" | "session")) else { continue };
            let Some(t) = sys.services.get(&d.service) else { continue };
            if !matches!(t.module.as_str(), "valkey" | "redis") {
                continue;
            }
            let policy = t.options.get("maxmemory_policy").map(String::as_str).unwrap_or("noeviction");
            if policy == "noeviction" {
                continue;
            }
            out.push(
                Diagnostic::error(RULE.id, format!("`{}` keeps its {usage}s in `{}`, which evicts keys ({policy})", s.name, t.name))
                    .primary(d.span, format!("{usage}s would be evicted"))
                    .secondary(t.span, format!("maxmemory_policy = {policy}"))
                    .help(format!("set `options.maxmemory_policy = \"noeviction\"` on `{}`, or give the cache its own instance", t.name))
                    .about("services", &t.name),
            );
        }
    }
    out
}
