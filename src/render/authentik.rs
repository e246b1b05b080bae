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

use crate::model::{Blueprint, OidcClient, ProxyApp, SocialSource};

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

/// Default flows for users coming from a source (blueprints/default/
/// flow-default-source-authentication.yaml, flow-default-source-enrollment.yaml).
const SOURCE_AUTHENTICATION_FLOW: &str = "default-source-authentication";
const SOURCE_ENROLLMENT_FLOW: &str = "default-source-enrollment";
/// The identification stage of the default authentication flow, whose `sources` are the buttons
/// on the login page, and the blueprint that creates it (blueprints/default/
/// flow-default-authentication-flow.yaml).
const IDENTIFICATION_STAGE: &str = "default-authentication-identification";
const AUTHENTICATION_BLUEPRINT: &str = "Default - Authentication flow";

/// A value in a blueprint: plain data, or a tag authentik resolves.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum V {
    Str(String),
    List(Vec<V>),
    Map(BTreeMap<&'static str, V>),
    Bool(bool),
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

/// The label of a social login's button (authentik's source type `verbose_name`).
fn source_label(kind: &str) -> String {
    match kind {
        "entraid" => "Microsoft".into(),
        "github" => "GitHub".into(),
        "gitlab" => "GitLab".into(),
        "wechat" => "WeChat".into(),
        other => {
            let mut c = other.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        }
    }
}

/// A social login: an OAuth source of the upstream provider's type (its URLs are the type's
/// defaults), the consumer secret read from a file, users enrolled through the default source
/// flows and matched by the provider's identifier only (linking by e-mail would let an upstream
/// account that claims an address take over the local user holding it).
fn source(src: &SocialSource) -> Entry {
    entry(
        "authentik_sources_oauth.oauthsource",
        format!("source-{}", src.kind),
        BTreeMap::from([("slug", s(&src.kind))]),
        BTreeMap::from([
            ("name", s(&source_label(&src.kind))),
            ("slug", s(&src.kind)),
            ("enabled", V::Bool(true)),
            ("provider_type", s(&src.kind)),
            ("consumer_key", s(&src.client_id)),
            ("consumer_secret", tag("File", s(&src.secret_file))),
            ("authentication_flow", flow(SOURCE_AUTHENTICATION_FLOW)),
            ("enrollment_flow", flow(SOURCE_ENROLLMENT_FLOW)),
            ("user_matching_mode", s("identifier")),
        ]),
    )
}

/// The blueprint entry that applies authentik's default authentication flow first.
const DEFAULT_FLOW_ENTRY: &str = "default-authentication-flow";

/// The default login page shows exactly the sources kiln declares (the identification stage's
/// `sources`, replaced on every apply), after the default flow's blueprint has made the stage.
fn login_page(sources: &[SocialSource]) -> [Entry; 2] {
    [
        Entry {
            model: "authentik_blueprints.metaapplyblueprint",
            id: DEFAULT_FLOW_ENTRY.into(),
            state: "present",
            identifiers: BTreeMap::new(),
            attrs: BTreeMap::from([
                ("identifiers", V::Map(BTreeMap::from([("name", s(AUTHENTICATION_BLUEPRINT))]))),
                ("required", V::Bool(false)),
            ]),
        },
        entry(
            "authentik_stages_identification.identificationstage",
            "identification".into(),
            BTreeMap::from([("name", s(IDENTIFICATION_STAGE))]),
            BTreeMap::from([("sources", V::List(sources.iter().map(|x| key_of(&format!("source-{}", x.kind))).collect()))]),
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
    let mut sources = bp.sources.clone();
    sources.sort_by(|a, b| a.kind.cmp(&b.kind));
    if !sources.is_empty() {
        let [apply_default, stage] = login_page(&sources);
        entries.push(apply_default);
        entries.extend(sources.iter().map(source));
        entries.push(stage);
    }
    let doc = Document {
        version: 1,
        metadata: Metadata {
            name: format!("kiln: {}", bp.idp),
            labels: BTreeMap::from([(
                "blueprints.goauthentik.io/description",
                "Providers, applications and sources declared by kiln for this system's routes, logins and social logins".to_string(),
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
            sources: vec![SocialSource {
                kind: "github".into(),
                client_id: "Iv1.x".into(),
                secret_file: "/run/secrets/kiln-social/github".into(),
            }],
        };
        let y = blueprint(&bp);
        assert!(y.contains("provider: !KeyOf provider-kiln-a-example-com"), "{y}");
        assert!(y.contains("client_secret: !File /run/secrets/kiln-oidc/wiki"), "{y}");
        assert!(y.contains("!Find"), "{y}");
        assert!(y.contains("consumer_secret: !File /run/secrets/kiln-social/github"), "{y}");
        assert!(y.contains("- !KeyOf source-github"), "{y}");
    }
}
