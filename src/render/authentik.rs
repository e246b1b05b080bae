//! authentik blueprints: the providers, applications and embedded-outpost binding kiln
//! declares in one authentik service (`model::Blueprint`), as the YAML document the worker
//! discovers under `/blueprints` and applies at start and on every change.
//!
//! Format (authentik's blueprints/schema.json and blueprints/v1/common.py): `version: 1`,
//! `metadata.name`, `entries` of `model`, `id`, `identifiers` (how an existing object is
//! found, so applying twice updates it), `attrs`. References are YAML tags resolved by authentik:
//! `!KeyOf ID` (the primary key of an entry of this blueprint), `!Find [MODEL, [FIELD, VALUE]]`
//! (an existing object: authentik's default flows, its self-signed key pair, its managed scope
//! mappings) and `!File PATH` (a file's contents, stripped: the client secret, so the value
//! never enters the blueprint). Tags are written by the YAML serialiser (`Tagged`), never as text.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_saphyr::Tagged;

use crate::model::{Blueprint, OidcClient, ProxyApp};

/// The embedded outpost (authentik/outposts/apps.py `MANAGED_OUTPOST`, `MANAGED_OUTPOST_NAME`).
pub const EMBEDDED_OUTPOST: &str = "goauthentik.io/outposts/embedded";
const EMBEDDED_OUTPOST_NAME: &str = "authentik Embedded Outpost";
/// Default flows every authentik instance has (blueprints/default/).
const AUTHORIZATION_FLOW: &str = "default-provider-authorization-implicit-consent";
const INVALIDATION_FLOW: &str = "default-provider-invalidation-flow";
/// The key pair authentik creates at start (authentik/crypto/apps.py).
const SIGNING_KEY: &str = "authentik Self-signed Certificate";
/// Managed scope mappings (blueprints/system/providers-oauth2.yaml); offline_access for refresh
/// tokens (Vaultwarden needs it with authentik).
const SCOPES: [&str; 4] = ["openid", "email", "profile", "offline_access"];

/// A value in a blueprint: plain data, or a tag authentik resolves.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum V {
    Str(String),
    List(Vec<V>),
    Map(BTreeMap<&'static str, V>),
    Tag(Tagged<Box<V>>),
}

fn s(v: &str) -> V {
    V::Str(v.to_string())
}

fn tag(name: &str, v: V) -> V {
    V::Tag(Tagged(Box::new(v), Some(format!("!{name}"))))
}

/// `!Find [MODEL, [FIELD, VALUE]]`.
fn find(model: &str, field: &str, value: &str) -> V {
    tag("Find", V::List(vec![s(model), V::List(vec![s(field), s(value)])]))
}

fn key_of(id: &str) -> V {
    tag("KeyOf", s(id))
}

fn flow(slug: &str) -> V {
    find("authentik_flows.flow", "slug", slug)
}

#[derive(Debug, Serialize)]
struct Document {
    version: u32,
    metadata: Metadata,
    entries: Vec<Entry>,
}

#[derive(Debug, Serialize)]
struct Metadata {
    name: String,
    labels: BTreeMap<&'static str, String>,
}

#[derive(Debug, Serialize)]
struct Entry {
    model: &'static str,
    id: String,
    state: &'static str,
    identifiers: BTreeMap<&'static str, V>,
    attrs: BTreeMap<&'static str, V>,
}

fn entry(model: &'static str, id: String, identifiers: BTreeMap<&'static str, V>, attrs: BTreeMap<&'static str, V>) -> Entry {
    Entry { model, id, state: "present", identifiers, attrs }
}

/// A forward-auth route: a proxy provider in single-application forward mode for the route's
/// URL, and its application.
fn proxy(p: &ProxyApp) -> [Entry; 2] {
    let provider = format!("provider-{}", p.slug);
    [
        entry(
            "authentik_providers_proxy.proxyprovider",
            provider.clone(),
            BTreeMap::from([("name", s(&p.slug))]),
            BTreeMap::from([
                ("name", s(&p.slug)),
                ("mode", s("forward_single")),
                ("external_host", s(&p.external_host)),
                ("authorization_flow", flow(AUTHORIZATION_FLOW)),
                ("invalidation_flow", flow(INVALIDATION_FLOW)),
            ]),
        ),
        entry(
            "authentik_core.application",
            format!("application-{}", p.slug),
            BTreeMap::from([("slug", s(&p.slug))]),
            BTreeMap::from([
                ("name", s(p.external_host.trim_start_matches("https://"))),
                ("slug", s(&p.slug)),
                ("provider", key_of(&provider)),
                ("meta_launch_url", s(&p.external_host)),
            ]),
        ),
    ]
}

/// An OIDC client: a confidential OAuth2/OpenID provider (secret read from a file, strict
/// redirect URIs, RS256 with authentik's key pair, the openid/email/profile scopes) and its
/// application, whose slug makes the issuer `…/application/o/SLUG/`.
fn client(c: &OidcClient) -> [Entry; 2] {
    let provider = format!("provider-{}", c.slug);
    let redirects = c.redirect_uris.iter().map(|u| V::Map(BTreeMap::from([("matching_mode", s("strict")), ("url", s(u))]))).collect();
    let scopes = SCOPES
        .iter()
        .map(|x| find("authentik_providers_oauth2.scopemapping", "managed", &format!("goauthentik.io/providers/oauth2/scope-{x}")))
        .collect();
    [
        entry(
            "authentik_providers_oauth2.oauth2provider",
            provider.clone(),
            BTreeMap::from([("name", s(&c.slug))]),
            BTreeMap::from([
                ("name", s(&c.slug)),
                ("client_type", s("confidential")),
                ("client_id", s(&c.client_id)),
                ("client_secret", tag("File", s(&c.secret_file))),
                ("redirect_uris", V::List(redirects)),
                ("authorization_flow", flow(AUTHORIZATION_FLOW)),
                ("invalidation_flow", flow(INVALIDATION_FLOW)),
                ("signing_key", find("authentik_crypto.certificatekeypair", "name", SIGNING_KEY)),
                ("property_mappings", V::List(scopes)),
            ]),
        ),
        entry(
            "authentik_core.application",
            format!("application-{}", c.slug),
            BTreeMap::from([("slug", s(&c.slug))]),
            BTreeMap::from([("name", s(&c.slug)), ("slug", s(&c.slug)), ("provider", key_of(&provider))]),
        ),
    ]
}

/// The embedded outpost serves exactly the forward-auth providers kiln declares (the list
/// replaces the one set in the admin interface, on every apply).
fn outpost(proxies: &[ProxyApp]) -> Entry {
    let providers = proxies.iter().map(|p| key_of(&format!("provider-{}", p.slug))).collect();
    entry(
        "authentik_outposts.outpost",
        "embedded-outpost".into(),
        BTreeMap::from([("managed", s(EMBEDDED_OUTPOST))]),
        BTreeMap::from([("name", s(EMBEDDED_OUTPOST_NAME)), ("type", s("proxy")), ("providers", V::List(providers))]),
    )
}

/// The blueprint document for one authentik service.
pub fn blueprint(bp: &Blueprint) -> String {
    let mut entries: Vec<Entry> = Vec::new();
    let mut proxies = bp.proxies.clone();
    proxies.sort_by(|a, b| a.slug.cmp(&b.slug));
    let mut clients = bp.clients.clone();
    clients.sort_by(|a, b| a.slug.cmp(&b.slug));
    entries.extend(proxies.iter().flat_map(proxy));
    entries.extend(clients.iter().flat_map(client));
    if !proxies.is_empty() {
        entries.push(outpost(&proxies));
    }
    let doc = Document {
        version: 1,
        metadata: Metadata {
            name: format!("kiln: {}", bp.idp),
            labels: BTreeMap::from([(
                "blueprints.goauthentik.io/description",
                "Providers and applications declared by kiln for this system's routes and logins".to_string(),
            )]),
        },
        entries,
    };
    super::yaml(&doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_written_as_yaml_tags() {
        let bp = Blueprint {
            idp: "sso".into(),
            proxies: vec![ProxyApp { slug: "kiln-a-example-com".into(), external_host: "https://a.example.com".into() }],
            clients: vec![OidcClient {
                slug: "wiki".into(),
                client_id: "wiki".into(),
                redirect_uris: vec!["https://wiki.example.com/cb".into()],
                secret_file: "/run/secrets/kiln-oidc/wiki".into(),
            }],
        };
        let y = blueprint(&bp);
        assert!(y.contains("provider: !KeyOf provider-kiln-a-example-com"), "{y}");
        assert!(y.contains("client_secret: !File /run/secrets/kiln-oidc/wiki"), "{y}");
        assert!(y.contains("!Find"), "{y}");
    }
}
