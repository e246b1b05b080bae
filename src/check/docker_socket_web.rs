//! `docker-socket-web`: the Docker socket mounted into a container the internet can reach.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;

pub const RULE: Rule = Rule {
    id: "docker-socket-web",
    summary: "the Docker socket mounted into a web-facing container",
    explanation: "Access to the Docker socket is root on the host: whoever controls the container can \
start a privileged container mounting `/`. A container reachable from the internet (a route's \
upstream, an auth service, or an exposed endpoint) must not hold it. Run the `socket-proxy` \
module, which exposes only the read-only API calls a dashboard or proxy needs, on an internal \
bridge, and connect to that instead.",
    allowable: true,
    check,
};

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut web = super::routed(sys);
    for r in &sys.routes {
        web.extend(r.auth.iter().chain(&r.crowdsec).map(|a| a.service.as_str()));
    }
    sys.services
        .values()
        .filter(|s| s.container.as_ref().is_some_and(|c| c.docker_socket))
        .filter(|s| web.contains(s.name.as_str()) || !s.expose.is_empty())
        .map(|s| {
            Diagnostic::error(RULE.id, format!("service `{}` mounts the Docker socket and is reachable from the internet", s.name))
                .primary(s.span, "web-facing, with root on the host")
                .help("run a `socket-proxy` service on an internal bridge and connect to it instead")
                .about("services", &s.name)
        })
        .collect()
}
