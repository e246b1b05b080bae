//! Databases a server makes for its clients: `[databases]` on the server module (PostgreSQL)
//! and `provision` on a client's `[requires.SLOT]`, naming the client's options that hold its
//! database and role names and the secret slot holding the role's password.
//!
//! The server is told nothing by hand: kiln lists the clients connected to it, delivers each
//! client's password secret to the server too, and its templates see them as `databases`.

use super::refs::{self, secret_slot};
use super::{OptionDecl, RequireDecl, SecretSlotDecl};
use crate::diag::{Diagnostic, Span};
use crate::syntax::decode::{Sink, Sp, TableReader};

/// `[requires.SLOT] provision = { database = "OPTION", role = "OPTION", password = "SLOT" }`,
/// or `{ role = "OPTION", password = "SLOT", replication = true }`: a streaming replica's
/// replication role (and slot) instead of a database, or `{ role = "OPTION", password = "SLOT",
/// monitor = true }`: a read-only monitoring role (PostgreSQL's `pg_monitor`) for an exporter.
#[derive(Debug, Clone)]
pub struct ProvisionDecl {
    pub span: Span,
    /// The client's string option naming its database (none for a replication role).
    pub database: Option<Sp<String>>,
    /// The client's string option naming the role it logs in as (the database's owner).
    pub role: Sp<String>,
    /// The client's secret slot holding that role's password.
    pub password: Sp<String>,
    /// The client is a streaming replica: a REPLICATION role, a physical replication slot and
    /// a `pg_hba.conf` line for the client's address only.
    pub replication: bool,
    /// The client only reads statistics: a login role granted `pg_monitor`, no database.
    pub monitor: bool,
}

impl ProvisionDecl {
    /// The client gets a role only, no database of its own (a replica or a monitor).
    pub fn role_only(&self) -> bool {
        self.replication || self.monitor
    }
}

/// `[databases]` on a server module: it creates a database and owner role for every client
/// whose requirement slot says `provision`.
#[derive(Debug, Clone)]
pub struct DatabasesDecl {
    pub span: Span,
    /// The server's option naming its superuser: a client logging in as that role uses the
    /// server's own database and gets no role of its own (the single-database form).
    pub superuser: Sp<String>,
    /// The server's option naming the superuser's own database, which no client may claim.
    pub database: Sp<String>,
    /// Owner of the password files delivered to the server.
    pub uid: Option<u32>,
}

/// `provision = { … }` inside `[requires.SLOT]`.
pub(super) fn provision(mut t: TableReader<'_>) -> Option<ProvisionDecl> {
    let span = t.span;
    let replication = t.bool("replication");
    let monitor = t.bool("monitor");
    let (replication, monitor) = (replication.filter(|b| b.value), monitor.filter(|b| b.value));
    let role_only = replication.is_some() || monitor.is_some();
    let database = if role_only { t.str("database") } else { t.req_str("database", "\"database_name\"") };
    let role = t.req_str("role", "\"database_user\"");
    let password = t.req_str("password", "\"database_password\"");
    if let (Some(r), Some(m)) = (&replication, &monitor) {
        t.sink().push(
            Diagnostic::error("E0003", "a role is either a replica's or a monitor's")
                .primary(m.span, "`monitor` here")
                .secondary(r.span, "`replication` here")
                .help("a replica streams the server's WAL; a monitor reads its statistics: keep one"),
        );
    }
    if let (true, Some(d)) = (role_only, &database) {
        let (what, why) = if replication.is_some() {
            ("a replication role", "a streaming replica copies every database of the server")
        } else {
            ("a monitoring role", "pg_monitor reads every database's statistics from any database the role may open")
        };
        t.sink().push(Diagnostic::error("E0003", format!("{what} has no database")).primary(d.span, "remove `database`").help(why));
    }
    t.finish();
    if !role_only && database.is_none() {
        return None;
    }
    Some(ProvisionDecl { span, database, role: role?, password: password?, replication: replication.is_some(), monitor: monitor.is_some() })
}

/// `[databases]`.
pub(super) fn server(mut t: TableReader<'_>, options: &[OptionDecl], sink: &Sink) -> Option<DatabasesDecl> {
    let span = t.span;
    let superuser = t.req_str("superuser", "\"user\"");
    let database = t.req_str("database", "\"database\"");
    let uid = t.int("uid").and_then(|i| u32::try_from(i.value).ok());
    t.finish();
    let (superuser, database) = (superuser?, database?);
    let ok = string_option(&superuser, options, sink) & string_option(&database, options, sink);
    ok.then_some(DatabasesDecl { span, superuser, database, uid })
}

/// Every `provision` names string options and a secret slot the module declares.
pub(super) fn check_provisions(requires: &[RequireDecl], options: &[OptionDecl], secrets: &[SecretSlotDecl], sink: &Sink) {
    for p in requires.iter().filter_map(|r| r.provision.as_ref()) {
        if let Some(d) = &p.database {
            string_option(d, options, sink);
        }
        string_option(&p.role, options, sink);
        secret_slot(&p.password, secrets, sink, "declare it under [secrets]: the file the client reads its database password from");
    }
}

/// Whether `o` names a string option of the module; an error at `o` when not.
fn string_option(o: &Sp<String>, options: &[OptionDecl], sink: &Sink) -> bool {
    refs::string_option(
        o,
        options,
        sink,
        "a database or role name is text",
        "declare it under [options] with `type = \"string\"` and a default",
    )
}
