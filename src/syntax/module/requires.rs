//! `[requires.SLOT]`: the services a module connects to, one slot each.

use super::RequireDecl;
use crate::syntax::decode::{Sink, Sp, TableReader, typed};
use crate::syntax::system::one_of;
use crate::types;

/// What a consumer keeps in a requirement (`[requires.SLOT] usage`).
pub const USAGES: &[&str] = &["cache", "queue", "session", "data"];

/// One `[requires.SLOT]`.
pub(super) fn require(slot: Sp<String>, mut t: TableReader<'_>, sink: &Sink) -> Option<RequireDecl> {
    let d = RequireDecl {
        modules: t.str_list("modules"),
        endpoint: t.str("endpoint"),
        optional: t.bool("optional").is_some_and(|b| b.value),
        description: t.str("description"),
        usage: typed(t.str("usage"), sink, |s| if USAGES.contains(&s) { Ok(s.to_string()) } else { Err(one_of(s, "usage", USAGES)) }),
        prepared_statements: t.bool("prepared_statements").is_some_and(|b| b.value),
        provision: t.table("provision", super::databases::provision).flatten(),
        account: t.table("account", super::accounts::account).flatten(),
        wait: t.bool("wait").is_none_or(|b| b.value),
        public: t.bool("public").is_some_and(|b| b.value),
        instead_of_docker_socket: t.bool("instead_of_docker_socket").filter(|b| b.value),
        same_secrets: t.str_map("same_secrets"),
        slot: typed(Some(slot), sink, types::parse_ident)?,
    };
    if d.modules.is_empty() {
        t.missing("modules", "[\"postgres\"]");
    }
    t.finish();
    Some(d)
}

/// `instead_of_docker_socket` replaces a socket the container asks for: on a module without
/// `[container] docker_socket = true` it means nothing, so it is refused.
pub(super) fn check_socket_replacements(requires: &[RequireDecl], container: Option<&super::ContainerDecl>, sink: &Sink) {
    if container.and_then(|c| c.docker_socket.as_ref()).is_some_and(|b| b.value) {
        return;
    }
    for r in requires {
        if let Some(b) = &r.instead_of_docker_socket {
            sink.push(
                crate::diag::Diagnostic::error("E0003", "`instead_of_docker_socket` on a module that mounts no Docker socket")
                    .primary(b.span, "replaces nothing")
                    .help("declare `docker_socket = true` in `[container]`, or remove the key"),
            );
        }
    }
}

/// `same_secrets = { SLOT = "SERVER_SLOT" }`: each key is one of the module's own secret slots,
/// and none is the password of a role or user kiln makes for this module (`provision`,
/// `account`): that password is the client's own, made on the server with it, where a taken
/// secret is the server's; one slot cannot be both.
pub(super) fn check_same_secrets(requires: &[RequireDecl], secrets: &[super::SecretSlotDecl], sink: &Sink) {
    let made = || {
        requires.iter().flat_map(|r| {
            let role = r.provision.as_ref().map(|p| (&p.password, "a database role"));
            let user = r.account.as_ref().map(|a| (&a.password, "a user"));
            role.into_iter().chain(user).map(move |(password, what)| (r, password, what))
        })
    };
    for r in requires {
        for (mine, theirs) in &r.same_secrets {
            super::refs::secret_slot(mine, secrets, sink, "name one of this module's `[secrets.SLOT]`");
            if let Some((by, password, what)) = made().find(|(_, password, _)| password.value == mine.value) {
                sink.push(
                    crate::diag::Diagnostic::error(
                        "E0003",
                        format!("secret `{}` is both taken from the server and the password of {what} kiln makes", mine.value),
                    )
                    .primary(mine.span, format!("the server's `{}`, taken over", theirs.value))
                    .secondary(password.span, format!("the password of {what} made on `{}`'s server for this module", by.slot.value))
                    .help("a role or user kiln makes has a password of its own: remove one of the two"),
                );
            }
        }
    }
}
