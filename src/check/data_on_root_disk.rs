//! `data-on-root-disk`: data that would still live on a server's own disk, which OpenTofu
//! destroys whenever it replaces the server.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;
use crate::render::data_volume;
use crate::syntax::system::ProviderKind;

pub const RULE: Rule = Rule {
    id: "data-on-root-disk",
    summary: "data on a disk that replacing the server destroys",
    explanation: "kiln replaces servers, it never patches them: any change to a host's closure makes \
OpenTofu destroy its server and create a new one, and the server's own disk goes with it. So the \
data of a host — every volume a module backs up, a database it dumps, an edge's certificates \
(Caddy's data directory, Traefik's acme.json; Let's Encrypt allows 50 certificates per domain a \
week, and a fleet-wide change would spend them) — lives on a block volume that outlives the \
server: OpenTofu creates it with `prevent_destroy` and attaches it to whichever server is the \
host, the provisioner formats it once and mounts it at /var/lib/kiln/data, Docker's data root \
(every named volume) and Caddy's home are on it. This rule reports data kiln cannot place there: \
a native service that backs up a volume or dumps a database (kiln does not know where a \
distribution package keeps its data, so it cannot move it), or a host on a provider without \
block volumes. Existing hosts are never replaced and keep their disk. Run the service in a \
container, or, when losing the data on replacement is acceptable (a cache, a mirror), waive it \
with `[allow.data-on-root-disk]` naming the service or host and the reason.",
    allowable: true,
    check,
};

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for h in sys.hosts.values() {
        if h.provider_kind == ProviderKind::Existing {
            continue;
        }
        let holdings = data_volume::holdings(sys, h);
        if !holdings.is_empty() && !data_volume::provider_has_volumes(h.provider_kind) {
            out.push(
                Diagnostic::error(RULE.id, format!("host `{}` holds data but its provider has no block volumes", h.name))
                    .primary(h.span, "replacing this server destroys its data")
                    .note(format!("it holds: {}", holdings.join("; ")))
                    .about("hosts", &h.name),
            );
            continue;
        }
        for name in &h.services {
            let s = &sys.services[name];
            if s.native.is_none() || !s.has_data() {
                continue;
            }
            let what: Vec<String> = s.volumes.iter().filter(|v| v.backup).map(|v| format!("{} ({})", v.source, v.target)).collect();
            let what = if what.is_empty() { "the database it dumps".to_string() } else { format!("volume {}", what.join(", ")) };
            out.push(
                Diagnostic::error(
                    RULE.id,
                    format!("native service `{name}` keeps {what} on the root disk of `{}`, which replacing the server destroys", h.name),
                )
                .primary(s.span, "native service with data")
                .note(format!(
                    "{} is the data volume of `{}`; only container volumes and Caddy's data are placed there",
                    data_volume::MOUNT,
                    h.name
                ))
                .help(format!(
                    "run it as a container module, or waive with `[allow.data-on-root-disk] services = [\"{name}\"]` and the reason"
                ))
                .about("services", name),
            );
        }
    }
    out
}
