//! Cloudflare tunnels in the OpenTofu root: one remotely managed tunnel per `cloudflared`
//! service, its configuration (an ingress rule per route it carries, `eval::tunnel`, then the
//! catch-all 404 cloudflared requires last), a proxied CNAME `<hostname> → <tunnel id>.cfargotunnel.com`
//! for each of those routes inside a Cloudflare zone, and the tunnel's id as an output.
//!
//! The tunnel's token is not in the root, its state or the store: the tunnel is created without
//! a `tunnel_secret` (Cloudflare generates it), and the operator fetches its token once after
//! `apply` (`cloudflared tunnel token <id>`, or the API's `GET /accounts/{account}/cfd_tunnel/{id}/token`)
//! into the secret the connector's `token` slot names, which kiln delivers to the host only.

use serde_json::{Map, Value, json};

use super::{add, expr, rname};
use crate::eval::tunnel;
use crate::model::System;
use crate::syntax::system::ProviderKind;

pub(super) fn tunnels(
    sys: &System,
    variables: &mut Map<String, Value>,
    resources: &mut Map<String, Value>,
    outputs: &mut Map<String, Value>,
) {
    let connectors: Vec<_> = sys.services.values().filter(|s| s.module == tunnel::MODULE).collect();
    if connectors.is_empty() || !sys.providers.values().any(|k| *k == ProviderKind::Cloudflare) {
        return;
    }
    variables
        .insert("cloudflare_account_id".into(), json!({ "type": "string", "description": "Cloudflare account that owns the tunnels" }));
    for c in connectors {
        let t = rname(&c.name);
        let id = format!("${{cloudflare_zero_trust_tunnel_cloudflared.{t}.id}}");
        add(
            resources,
            "cloudflare_zero_trust_tunnel_cloudflared",
            &c.name,
            json!({ "account_id": expr("${var.cloudflare_account_id}".into()), "name": format!("{}-{}", sys.name, c.name), "config_src": "cloudflare" }),
        );
        let routes = tunnel::ingress(sys, c);
        let mut ingress: Vec<Value> = routes
            .iter()
            .flat_map(|i| {
                let mut origin = json!({ "origin_server_name": i.origin_server_name });
                if i.no_tls_verify {
                    origin["no_tls_verify"] = json!(true);
                }
                let challenge = i
                    .acme_challenge
                    .as_ref()
                    .map(|service| json!({ "hostname": i.hostname, "path": tunnel::ACME_CHALLENGE_PATH, "service": service }));
                challenge.into_iter().chain([json!({ "hostname": i.hostname, "service": i.service, "origin_request": origin })])
            })
            .collect();
        // cloudflared refuses a configuration whose last rule matches only some requests.
        ingress.push(json!({ "service": "http_status:404" }));
        add(
            resources,
            "cloudflare_zero_trust_tunnel_cloudflared_config",
            &c.name,
            json!({
                "account_id": expr("${var.cloudflare_account_id}".into()),
                "tunnel_id": expr(id.clone()),
                "source": "cloudflare",
                "config": { "ingress": ingress },
            }),
        );
        for i in &routes {
            // The zone the name lies in; a name outside the system's zones, or in another
            // provider's, gets no record (a CNAME to the tunnel works only on a zone Cloudflare
            // proxies).
            let Some(z) = sys.zone_of(i.hostname).filter(|z| z.provider_kind == ProviderKind::Cloudflare) else {
                continue;
            };
            add(
                resources,
                "cloudflare_dns_record",
                &format!("{}_cname", rname(&i.hostname.replace('*', "wildcard"))),
                json!({
                    "zone_id": expr(format!("${{var.cloudflare_zone_id_{}}}", rname(&z.zone))),
                    "name": i.hostname,
                    "type": "CNAME",
                    "content": expr(format!("{id}.cfargotunnel.com")),
                    "ttl": 1,
                    "proxied": true,
                    "comment": format!("kiln: through the tunnel of `{}`", c.name),
                }),
            );
        }
        outputs.insert(format!("{t}_tunnel_id"), json!({ "value": expr(id) }));
    }
}
