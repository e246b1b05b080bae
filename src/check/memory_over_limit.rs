//! `memory-over-limit`: a memory setting larger than the service's share of its memory limit
//! (`[resources.fit.OPTION]` in its module), or a host whose services' limits add up to more than
//! its server type has.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;
use crate::provider_values::server_memory;

pub const RULE: Rule = Rule {
    id: "memory-over-limit",
    summary: "a memory setting over its container's limit, or limits over the server's memory",
    explanation: "A store that is told to use more memory than its container may have is killed by \
the kernel's OOM killer when it gets there, usually under load and at night: Valkey with \
`maxmemory 2gb` in a 512 MiB container, PostgreSQL with `shared_buffers = 1GB` in a 1 GiB one. \
Modules declare how their memory settings relate to the limit (`[resources.fit.OPTION]`: the \
value plus an overhead may be at most a fraction of it, e.g. PostgreSQL's shared_buffers at most \
40 %, a JVM heap at most 75 %, Valkey's maxmemory at most 75 % because a snapshot's fork copies \
pages being written). A service without a limit is held to its server's memory. Likewise the \
memory limits of a host's services may add up to at most its server type's memory (where the \
provider's type says it: Hetzner's types, DigitalOcean and Scaleway slugs that name it) less \
256 MiB for the kernel, Docker, sshd and the provisioner's agents. Lower the setting, or raise \
the service's `memory` (and the server type) to match.",
    allowable: true,
    check,
};

/// Memory the host needs besides its containers: kernel, dockerd, containerd, sshd, fail2ban.
const HOST_RESERVE: u64 = 256 << 20;

fn check(sys: &System, inputs: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for s in sys.services.values() {
        let Some(m) = inputs.modules.get(&s.module) else { continue };
        let Some(res) = &m.decl.resources else { continue };
        let host = sys.hosts.get(&s.host);
        let server = host.and_then(|h| server_memory(h.provider_kind, h.server_type.as_deref()?));
        let (limit, of) = match (s.resources.memory, server) {
            (Some(l), _) => (l.0, "its memory limit"),
            (None, Some(h)) => (h.0, "its server's memory"),
            (None, None) => continue,
        };
        for fit in &res.fit {
            let Some(text) = s.options.get(&fit.option.value) else { continue };
            let frac = fit.max_fraction.value;
            let Some(value) = fit.unit.bytes(text) else {
                out.push(
                    Diagnostic::error(RULE.id, format!("`{}`'s {} = {text} cannot be read as a size", s.name, fit.option.value))
                        .primary(s.span, format!("{} is not {} memory", fit.option.value, fit.unit.name()))
                        .secondary(fit.option.span, format!("read as `{}` here", fit.unit.name()))
                        .about("services", &s.name),
                );
                continue;
            };
            let budget = ((limit as f64 * frac) as u64).saturating_sub(fit.overhead.0);
            if value <= budget {
                continue;
            }
            let overhead = if fit.overhead.0 > 0 { format!(" less {} overhead", human(fit.overhead.0)) } else { String::new() };
            let needed = ((value + fit.overhead.0) as f64 / frac).ceil() as u64;
            let mut d = Diagnostic::error(
                RULE.id,
                format!(
                    "`{}`'s {} = {text} ({}) does not fit {of} of {}: at most {} % of it{overhead}, {}",
                    s.name,
                    fit.option.value,
                    human(value),
                    human(limit),
                    percent(frac),
                    human(budget)
                ),
            )
            .primary(s.span, format!("{} {} in a {} limit", fit.option.value, human(value), human(limit)))
            .secondary(fit.option.span, format!("{} may take at most {} % of the limit{overhead}", fit.option.value, percent(frac)))
            .help(format!(
                "lower `options.{}` to at most {}, or set `memory = \"{}\"` on `{}`",
                fit.option.value,
                human(budget),
                round_up_mib(needed),
                s.name
            ))
            .about("services", &s.name);
            if let Some(r) = &fit.reason {
                d = d.note(r.value.clone());
            }
            out.push(d);
        }
    }
    for h in sys.hosts.values() {
        let Some(server) = h.server_type.as_deref().and_then(|t| server_memory(h.provider_kind, t)) else { continue };
        let limited: Vec<(&str, u64)> = h
            .services
            .iter()
            .filter_map(|n| sys.services.get(n))
            .filter(|s| s.container.is_some())
            .filter_map(|s| Some((s.name.as_str(), s.resources.memory?.0)))
            .collect();
        let total: u64 = limited.iter().map(|(_, m)| m).sum();
        let room = server.0.saturating_sub(HOST_RESERVE);
        if total <= room {
            continue;
        }
        let list = limited.iter().map(|(n, m)| format!("{n} {}", human(*m))).collect::<Vec<_>>().join(", ");
        out.push(
            Diagnostic::error(
                RULE.id,
                format!(
                    "the memory limits on `{}` add up to {}, more than its {} `{}` has for containers ({} less {} for the host)",
                    h.name,
                    human(total),
                    h.provider,
                    h.server_type.as_deref().unwrap_or_default(),
                    human(server.0),
                    human(HOST_RESERVE)
                ),
            )
            .primary(h.span, format!("{} of limits on {}", human(total), human(server.0)))
            .note(format!("limits: {list}"))
            .help("choose a larger server type, lower services' `memory`, or move a service to another host")
            .about("hosts", &h.name),
        );
    }
    out
}

/// `0.4` as `40`, `0.75` as `75`.
fn percent(f: f64) -> String {
    let p = f * 100.0;
    if (p - p.round()).abs() < 1e-9 { format!("{}", p.round() as u64) } else { format!("{p:.1}") }
}

/// Bytes in the largest binary unit that keeps one decimal: `512 MiB`, `1.5 GiB`.
fn human(b: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if b >= 1 << shift {
            let v = b as f64 / (1u64 << shift) as f64;
            return if (v - v.round()).abs() < 0.05 { format!("{} {unit}", v.round() as u64) } else { format!("{v:.1} {unit}") };
        }
    }
    format!("{b} B")
}

/// A limit written as kiln reads it, rounded up to whole MiB (whole GiB when that is exact).
fn round_up_mib(b: u64) -> String {
    let mib = b.div_ceil(1 << 20);
    if mib.is_multiple_of(1024) { format!("{}GiB", mib / 1024) } else { format!("{mib}MiB") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_an_operator_writes_them() {
        assert_eq!(human(512 << 20), "512 MiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(percent(0.4), "40");
        assert_eq!(percent(0.75), "75");
        assert_eq!(round_up_mib((2 << 30) + 1), "2049MiB");
        assert_eq!(round_up_mib(4 << 30), "4GiB");
    }
}
