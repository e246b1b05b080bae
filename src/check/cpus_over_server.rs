//! `cpus-over-server`: a container whose CPU limit is above its server type's vCPUs, which
//! Docker refuses to create.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;
use crate::provider_values::server_cpus;

pub const RULE: Rule = Rule {
    id: "cpus-over-server",
    summary: "a container's CPU limit above its server's vCPUs",
    explanation: "Docker refuses to create a container whose `cpus` limit is above the number of \
CPUs the machine has (\"Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs \
available\"): the provisioner's `docker compose up` stops there, and the host never comes up. \
Ollama's module limit of 4 cores on a 2-vCPU droplet is such a case. kiln knows a server type's \
vCPUs where its name says them (DigitalOcean's `s-2vcpu-4gb`, Scaleway's `POP2-8C-32G`); \
Hetzner's names do not, so hosts there are not checked. Lower the service's `cpus`, or choose \
a server type with as many vCPUs.",
    allowable: false,
    check,
};

fn check(sys: &System, _inputs: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for h in sys.hosts.values() {
        let Some(ty) = h.server_type.as_deref() else { continue };
        let Some(vcpus) = server_cpus(h.provider_kind, ty) else { continue };
        for s in h.services.iter().filter_map(|n| sys.services.get(n)).filter(|s| s.container.is_some()) {
            let Some(cpus) = s.resources.cpus.filter(|c| *c > f64::from(vcpus)) else { continue };
            out.push(
                Diagnostic::error(
                    RULE.id,
                    format!("`{}` is limited to {cpus} CPUs, more than the {vcpus} of `{}`'s {} `{ty}`", s.name, h.name, h.provider),
                )
                .primary(s.span, format!("cpus {cpus}: Docker refuses to create it on {vcpus} vCPUs"))
                .secondary(h.span, format!("{vcpus} vCPUs"))
                .help(format!(
                    "set `cpus = {vcpus}` (or less) on `{}`, or choose a server type with at least {} vCPUs",
                    s.name,
                    cpus.ceil()
                ))
                .about("services", &s.name),
            );
        }
    }
    out
}
