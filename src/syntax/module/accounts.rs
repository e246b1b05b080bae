//! Users a server makes for its clients: `[accounts]` on the server module (Valkey's ACL users)
//! and `account` on a client's `[requires.SLOT]`, naming the client's option holding its user
//! name, the secret slot holding its password and, optionally, the option holding its
//! permissions (ACL rules).
//!
//! As with `[databases]`, the server is told nothing by hand: kiln lists the clients connected
//! to it with an `account`, delivers each client's password secret to the server too, and its
//! templates see them as `accounts`.

use super::refs::{self, secret_slot};
use super::{OptionDecl, RequireDecl, SecretSlotDecl};
use crate::diag::Span;
use crate::syntax::decode::{Sink, Sp, TableReader};

/// `[requires.SLOT] account = { user = "OPTION", password = "SLOT", acl = "OPTION" }`.
#[derive(Debug, Clone)]
pub struct AccountDecl {
    pub span: Span,
    /// The client's string option naming its user; empty means the client service's name.
    pub user: Sp<String>,
    /// The client's secret slot holding the user's password.
    pub password: Sp<String>,
    /// The client's string option holding its permissions (ACL rules); absent or empty means
    /// the server's default.
    pub acl: Option<Sp<String>>,
}

/// `[accounts]` on a server module: it makes a user for every client whose requirement slot
/// says `account`.
#[derive(Debug, Clone)]
pub struct AccountsDecl {
    pub span: Span,
    /// Owner of the password files delivered to the server.
    pub uid: Option<u32>,
    /// User names the server keeps for itself (besides `default`), which no client may take.
    pub reserved: Vec<Sp<String>>,
}

/// `account = { … }` inside `[requires.SLOT]`.
pub(super) fn account(mut t: TableReader<'_>) -> Option<AccountDecl> {
    let span = t.span;
    let user = t.req_str("user", "\"cache_user\"");
    let password = t.req_str("password", "\"cache_password\"");
    let acl = t.str("acl");
    t.finish();
    Some(AccountDecl { span, user: user?, password: password?, acl })
}

/// `[accounts]`.
pub(super) fn server(mut t: TableReader<'_>) -> Option<AccountsDecl> {
    let span = t.span;
    let uid = t.int("uid").and_then(|i| u32::try_from(i.value).ok());
    let reserved = t.str_list("reserved");
    t.finish();
    Some(AccountsDecl { span, uid, reserved })
}

/// Every `account` names string options and a secret slot the module declares.
pub(super) fn check_accounts(requires: &[RequireDecl], options: &[OptionDecl], secrets: &[SecretSlotDecl], sink: &Sink) {
    for a in requires.iter().filter_map(|r| r.account.as_ref()) {
        for o in std::iter::once(&a.user).chain(&a.acl) {
            refs::string_option(
                o,
                options,
                sink,
                "a user name or ACL is text",
                "declare it under [options] with `type = \"string\"` and a default",
            );
        }
        secret_slot(&a.password, secrets, sink, "declare it under [secrets]: the file the client reads its password from");
    }
}
