//! `public-first-run-setup`: a public route to an application whose first visitor becomes its
//! administrator (or that ships a default login), with nothing in front of it.

use std::collections::{BTreeMap, BTreeSet};

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::{Route, Service, System};

pub const RULE: Rule = Rule {
    id: "public-first-run-setup",
    summary: "a public route to an unclaimed first-run setup",
    explanation: "Some applications hand their administrator account to whoever comes first: \
authentik's initial-setup flow, WordPress's installer, the first Mattermost, n8n, CryptPad, \
Leantime or Uptime Kuma sign-up; others ship a well-known login (Zabbix `Admin`/`zabbix`). A \
module says so with `[module] first_run_setup`. Between the deploy and the operator's first \
visit, anyone who finds the hostname (certificate transparency logs publish it within \
minutes) takes the instance. Where the upstream reads a bootstrap credential, the module \
declares it (`first_run_bootstrap`) and binding that secret closes the setup (authentik: \
`bootstrap_password` on the worker; zabbix-web: `admin_password`, which a job sets through \
the Zabbix API within minutes of the start). Otherwise put the route behind forward auth \
(`auth = \"SERVICE\"`) or an IP allow-list (`allow = [\"CIDR\", …]`); through a \
Cloudflare tunnel every visitor arrives from the connector's address, so an allow-list that \
admits the connector's network gates nothing there. Once the setup is done \
and the default login changed, `[allow.public-first-run-setup]` with `routes = [\"…\"]` and a \
reason waives it.",
    allowable: true,
    check,
};

fn check(sys: &System, inputs: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut targets = BootstrapTargets::default();
    for r in &sys.routes {
        let Some(s) = sys.services.get(&r.service) else { continue };
        let Some(m) = inputs.modules.get(&s.module) else { continue };
        let Some(setup) = &m.decl.first_run_setup else { continue };
        if gated(sys, r) || bootstrapped(sys, inputs, s, &mut targets) {
            continue;
        }
        let mut d = Diagnostic::error(
            RULE.id,
            format!("route `{}` exposes the first-run setup of `{}` ({}) to the internet", r.hostname, s.name, s.module),
        )
        .primary(
            r.span,
            if tunnel_admitted(sys, r) {
                "its allow-list admits the tunnel, through which every visitor arrives"
            } else {
                "public, with no forward auth and no allow-list"
            },
        )
        .note(format!("{}: {}", s.module, setup.value))
        .about("routes", &r.hostname);
        d = match &m.decl.first_run_bootstrap {
            Some(b) => d.help(format!(
                "bind the `{}` secret of a `{}` service that shares a connection with `{}`, or gate the route with `auth = \"…\"` or `allow = [\"…\"]`",
                b.value.1, b.value.0, s.name
            )),
            None => d.help("gate the route with `auth = \"…\"` (forward auth) or `allow = [\"CIDR\"]`; once set up, waive it with [allow.public-first-run-setup]"),
        };
        out.push(d);
    }
    out
}

/// Forward auth, or an allow-list narrower than the whole internet. Through a tunnel every
/// visitor arrives from the connector's address on its network with the edge: an allow-list
/// that admits that network (or may: its subnet left to Docker) admits everyone.
fn gated(sys: &System, r: &Route) -> bool {
    r.auth.is_some() || (!r.allow.is_empty() && r.allow.iter().all(|c| c.prefix > 0) && !tunnel_admitted(sys, r))
}

/// The route arrives through a tunnel and its allow-list admits the tunnel's connector: one of
/// its ranges overlaps the network the connector shares with the edge, or that network's subnet
/// is Docker's choice, so no range can be shown to leave it out.
fn tunnel_admitted(sys: &System, r: &Route) -> bool {
    let Some(connector) = crate::eval::tunnel::carrier(sys, r) else { return false };
    let Some(edge) = sys.services.get(&r.edge_service) else { return false };
    let Some(network) = crate::eval::firewall_layers::shared_network(connector, edge) else { return false };
    match sys.hosts.get(&r.edge_host).and_then(|h| h.bridges.get(&network)).and_then(|b| b.subnet.as_ref()) {
        Some(subnet) => r.allow.iter().any(|c| c.overlaps(subnet)),
        None => !r.allow.is_empty(),
    }
}

/// Per (module, slot): the connection targets of every service of that module that binds that
/// slot, found once (a scan of every service per route made the rule quadratic).
type BootstrapTargets<'a> = BTreeMap<(&'a str, &'a str), BTreeSet<&'a str>>;

/// The module's bootstrap secret is bound: on the service itself, or on a service of the
/// companion module that shares a connection target with it (authentik's worker and server
/// use the same database).
fn bootstrapped<'a>(sys: &'a System, inputs: &'a Inputs, s: &Service, targets: &mut BootstrapTargets<'a>) -> bool {
    let Some(b) = inputs.modules.get(&s.module).and_then(|m| m.decl.first_run_bootstrap.as_ref()) else {
        return false;
    };
    let (module, slot) = &b.value;
    let binds = |t: &Service| t.module == *module && t.secrets.iter().any(|u| u.slot == *slot);
    if s.module == *module {
        return binds(s);
    }
    let shared = targets
        .entry((module.as_str(), slot.as_str()))
        .or_insert_with(|| sys.services.values().filter(|t| binds(t)).flat_map(|t| t.deps.iter().map(|d| d.service.as_str())).collect());
    s.deps.iter().any(|e| shared.contains(e.service.as_str()))
}
