//! Keycloak realm import: the realm kiln declares in one Keycloak service (`model::Realm`), as the
//! JSON file Keycloak reads from /opt/keycloak/data/import when started with `--import-realm`.
//!
//! Format: Keycloak's RealmRepresentation and ClientRepresentation (keycloak/keycloak
//! core/src/main/java/org/keycloak/representations/idm/), the same JSON a realm export writes.
//! Keycloak resolves `${VAR}` placeholders from the environment while importing (keycloak.org
//! server/importExport, "Using Environment Variables within the Realm Configuration Files"):
//! each client secret is such a placeholder, exported from its delivered file by the module's
//! entrypoint, so the value never enters the file. An existing realm is skipped on import
//! (Keycloak does not update it): clients added later are created by Keycloak only in a new
//! realm, or through its admin interface or API.

use serde::Serialize;

use crate::model::{OidcClient, Realm};

/// The environment variable the keycloak module's entrypoint exports a client's secret in,
/// from its file `/run/secrets/kiln-oidc/ID`: `KILN_OIDC_` and the id upper-cased, every other
/// character than a letter or digit as `_` (the entrypoint applies the same rule).
pub fn keycloak_secret_var(id: &str) -> String {
    let up: String = id.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("KILN_OIDC_{up}")
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RealmRep {
    realm: String,
    enabled: bool,
    /// HTTPS required for all but private addresses (Keycloak's default for new realms).
    ssl_required: &'static str,
    registration_allowed: bool,
    clients: Vec<ClientRep>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClientRep {
    client_id: String,
    name: String,
    enabled: bool,
    protocol: &'static str,
    public_client: bool,
    client_authenticator_type: &'static str,
    secret: String,
    redirect_uris: Vec<String>,
    /// `+`: the origins of the redirect URIs (Keycloak's ClientRepresentation docs).
    web_origins: Vec<String>,
    standard_flow_enabled: bool,
    implicit_flow_enabled: bool,
    direct_access_grants_enabled: bool,
    service_accounts_enabled: bool,
}

/// A confidential authorization-code client, the secret a placeholder for its variable.
fn client(c: &OidcClient) -> ClientRep {
    ClientRep {
        client_id: c.client_id.clone(),
        name: c.slug.clone(),
        enabled: true,
        protocol: "openid-connect",
        public_client: false,
        client_authenticator_type: "client-secret",
        secret: format!("${{{}}}", keycloak_secret_var(&c.client_id)),
        redirect_uris: c.redirect_uris.clone(),
        web_origins: vec!["+".into()],
        standard_flow_enabled: true,
        implicit_flow_enabled: false,
        direct_access_grants_enabled: false,
        service_accounts_enabled: false,
    }
}

/// The realm document for one Keycloak service.
pub fn realm(r: &Realm) -> String {
    let mut clients = r.clients.clone();
    clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    let rep = RealmRep {
        realm: r.name.clone(),
        enabled: true,
        ssl_required: "external",
        registration_allowed: false,
        clients: clients.iter().map(client).collect(),
    };
    let mut out = serde_json::to_string_pretty(&rep).expect("JSON serialisation of plain data");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_environment_placeholders() {
        let r = Realm {
            name: "keycloak".into(),
            clients: vec![OidcClient {
                slug: "my-wiki".into(),
                client_id: "my-wiki".into(),
                redirect_uris: vec!["https://wiki.example.com/cb".into()],
                secret_file: "/run/secrets/kiln-oidc/my-wiki".into(),
            }],
        };
        let j: serde_json::Value = serde_json::from_str(&realm(&r)).unwrap();
        assert_eq!(j["clients"][0]["secret"], "${KILN_OIDC_MY_WIKI}");
        assert_eq!(j["clients"][0]["redirectUris"][0], "https://wiki.example.com/cb");
    }
}
