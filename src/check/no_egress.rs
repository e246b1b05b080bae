//! `no-egress`: a host with no route to the internet, though its packages, images and bundle
//! come from there.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::{Egress, System};

pub const RULE: Rule = Rule {
    id: "no-egress",
    summary: "a host without a route to the internet",
    explanation: "Every kiln host installs packages (ufw, fail2ban, unattended-upgrades and its \
services' own) and takes security updates; a host with container services pulls their images; a \
host that boots through stage 0 fetches its bundle from the store. A host without a public \
address has no route out of its own: on Hetzner and Scaleway nothing NATs a private network by \
default (a DigitalOcean droplet keeps its public IPv4 and needs nothing). kiln derives the route: \
a public host on a common private network becomes the NAT gateway (IP forwarding and masquerade \
for the network in its provisioner and ufw, `hcloud_network_route` 0.0.0.0/0 on Hetzner) and the \
private host's default route points through it. With exactly one such public host it is chosen; \
with several, choose with `[hosts.X] egress = \"via:GATEWAY\"`; with none, make one host public \
or put the host on a network with one. `egress = \"none\"` says the host has no route out: since \
the provisioner itself installs packages, that holds only when something else serves them (an \
apt mirror or proxy on the private network, an image with everything inside); say so with an \
`[allow.no-egress]` naming the host and the reason.",
    allowable: true,
    check,
};

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for h in sys.hosts.values() {
        let at = h.egress_decl.as_ref().map(|(_, s)| *s).unwrap_or(h.span);
        let needs = crate::eval::egress::needs(sys, h).join("; ");
        let d = match &h.egress {
            Egress::None => Diagnostic::error(RULE.id, format!("host `{}` has no route to the internet (`egress = \"none\"`)", h.name))
                .primary(at, "no egress")
                .note(format!("it needs the internet for: {needs}"))
                .help(format!(
                    "if a mirror or proxy on the private network serves it, waive with `[allow.no-egress] hosts = [\"{}\"]` and the reason",
                    h.name
                )),
            Egress::Missing { problem, candidates } => {
                let help = match candidates.as_slice() {
                    [] => format!(
                        "make `{}` public, or put it on a private network with a public {} host, which becomes its NAT gateway",
                        h.name,
                        h.provider_kind.name()
                    ),
                    c => format!(
                        "choose a gateway: {}",
                        c.iter().map(|g| format!("`egress = \"via:{g}\"`")).collect::<Vec<_>>().join(" or ")
                    ),
                };
                Diagnostic::error(RULE.id, problem.clone())
                    .primary(at, "no route to the internet")
                    .note(format!("it needs the internet for: {needs}"))
                    .help(help)
            }
            _ => continue,
        };
        out.push(d.about("hosts", &h.name));
    }
    out
}
