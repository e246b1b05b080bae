//! `[oidc]`: the module's application signs users in through an OpenID Connect provider, and
//! which of its options and secret slots take the provider's settings (`login = "IDP"` on a
//! service fills them).

use super::strings::parse_url_path;
use super::{OidcDecl, OptionDecl, SecretSlotDecl, refs};
use crate::syntax::decode::{Sink, Sp, TableReader, typed};

/// The optional keys naming options that take the provider's endpoints (for applications that
/// do not read the issuer's discovery document), in `OidcDecl::endpoint_options` order.
pub const ENDPOINT_OPTIONS: [&str; 4] = ["authorization_url_option", "token_url_option", "userinfo_url_option", "jwks_url_option"];

/// `[oidc]`; `None` when a key is missing or names an option or slot the module lacks.
pub(super) fn oidc(mut t: TableReader<'_>, options: &[OptionDecl], secrets: &[SecretSlotDecl], sink: &Sink) -> Option<OidcDecl> {
    let issuer = t.str("issuer_option");
    let client_id = t.req_str("client_id_option", "\"oidc_client_id\"");
    let client_secret = t.req_str("client_secret", "\"oidc_client_secret\"");
    let redirect_path = typed(t.req_str("redirect_path", "\"/auth/oidc.callback\""), sink, parse_url_path);
    let endpoints = ENDPOINT_OPTIONS.map(|k| t.str(k));
    // Without discovery an application takes the endpoints instead of the issuer (Grafana).
    let missing_issuer = issuer.is_none() && endpoints[0].is_none();
    if missing_issuer {
        t.missing("issuer_option", "\"oidc_issuer_url\" (or `authorization_url_option` and the other endpoints)");
    }
    t.finish();
    let string_option = |o: &Option<Sp<String>>| -> bool {
        o.as_ref().is_some_and(|o| {
            refs::string_option(
                o,
                options,
                sink,
                "the provider's setting is text",
                "declare it under [options] with `type = \"string\"` and `default = \"\"`",
            )
        })
    };
    let issuer_ok = !missing_issuer && (issuer.is_none() || string_option(&issuer));
    let client_ok = string_option(&client_id);
    let secret_ok = client_secret
        .as_ref()
        .is_some_and(|s| refs::secret_slot(s, secrets, sink, "declare it under [secrets] with the path the application reads"));
    let endpoints_ok = endpoints.iter().filter(|e| e.is_some()).all(string_option);
    if !(issuer_ok && client_ok && secret_ok && endpoints_ok) {
        return None;
    }
    Some(OidcDecl {
        issuer_option: issuer,
        client_id_option: client_id?,
        client_secret: client_secret?,
        redirect_path: redirect_path?,
        endpoint_options: endpoints,
    })
}
