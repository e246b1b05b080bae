//! A database server's databases, derived from its clients: every service connected to it
//! through a requirement slot with `provision` gets a database and an owner role named by its
//! own options, and its password secret is delivered to the server as well (`[databases]`).
//!
//! A client logging in as the server's superuser keeps the single-database form (the
//! superuser's own database, made by the image) and adds nothing. A client whose slot says
//! `replication` is a streaming replica: it gets a REPLICATION role, a physical replication
//! slot and a `pg_hba.conf` line for its own address (its host's address on the private network
//! both hosts are on, or `samenet`, the primary's own Compose networks, on one host). A replica
//! serves no clients of its own: they connect to the primary. A client whose slot says `monitor`
//! (an exporter) gets a login role granted `pg_monitor` and no database: it reads the server's
//! statistics without owning or opening anyone's data.

use super::*;

/// One client's database as the server's templates see it (`databases`).
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct DbClient {
    /// The client service.
    pub client: String,
    /// Empty for a replica's replication role.
    pub database: String,
    pub role: String,
    /// Where the server reads the role's password (the client's secret, delivered to it too).
    pub password_file: String,
    /// A streaming replica: `role` has REPLICATION, `slot` is its physical replication slot and
    /// `address` the `pg_hba.conf` address it connects from.
    pub replication: bool,
    pub slot: String,
    /// A monitoring role (an exporter's): a login role granted `pg_monitor`, no database.
    pub monitor: bool,
    pub address: String,
    #[serde(skip)]
    pub secret: String,
    #[serde(skip)]
    pub uid: Option<u32>,
}

impl DbClient {
    /// The server's copy of the client's password secret.
    pub(super) fn secret_use(&self) -> SecretUse {
        SecretUse { slot: format!("db_{}", self.client), secret: self.secret.clone(), target: self.password_file.clone(), uid: self.uid }
    }
}

/// PostgreSQL's longest identifier (NAMEDATALEN - 1 bytes); a longer one is truncated, and
/// two names that agree that far would be one database.
const MAX_NAME: usize = 63;

impl<'a> Resolver<'a> {
    /// The clients of server `p` that want a database of their own, in name order.
    pub(super) fn database_clients(
        &mut self,
        p: &Partial<'a>,
        all: &BTreeMap<String, Partial<'a>>,
        hosts: &BTreeMap<String, Host>,
    ) -> Vec<DbClient> {
        let Some(decl) = &p.module.decl.databases else { return Vec::new() };
        let primary = primary_of(p, all);
        let own = |o: &Sp<String>| p.options.get(&o.value).and_then(|v| v.as_str().map(str::to_string));
        let (superuser, own_db) = (own(&decl.superuser), own(&decl.database));
        let mut out: Vec<DbClient> = Vec::new();
        // Only the services that connect to this one (`clients`, filled once): scanning every
        // service for every server made a 1,000-host resolve quadratic.
        let clients = p.clients.iter().filter_map(|n| all.get_key_value(n));
        for (name, q) in clients.filter(|(n, q)| **n != p.decl.name.value && q.ok) {
            for r in &q.module.decl.requires {
                let Some(prov) = &r.provision else { continue };
                if !r.modules.iter().any(|m| m.value == p.module.decl.name.value) {
                    continue;
                }
                let connected = q
                    .decl
                    .connects
                    .iter()
                    .find(|c| c.service() == p.decl.name.value && c.slot.as_ref().is_none_or(|s| s.value == r.slot.value));
                let Some(entry) = connected else { continue };
                if let Some(primary) = primary {
                    let what = if prov.replication { "a replica of a replica" } else { "a client of a replica" };
                    self.err(
                        Diagnostic::error(
                            "E0003",
                            format!("`{}` is a streaming replica of `{primary}`: `{name}` cannot be {what}", p.decl.name.value,),
                        )
                        .primary(entry.target.span, "a replica is read-only and makes no databases or roles")
                        .help(format!("connect `{name}` to the primary, `{primary}`")),
                    );
                    continue;
                }
                let value = |o: &Sp<String>| -> (String, Span) {
                    let v = q.options.get(&o.value).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                    let span = q.decl.options.iter().find(|(n, _)| n.value == o.value).map_or(q.decl.name.span, |(_, n)| n.span);
                    (v, span)
                };
                let (database, db_span) = prov.database.as_ref().map_or((String::new(), entry.target.span), value);
                let (role, role_span) = value(&prov.role);
                if superuser.as_deref() == Some(role.as_str()) {
                    continue;
                }
                let bad_db = prov.database.as_ref().is_some_and(|o| self.bad_name(&database, db_span, "database", &o.value, name));
                let bad_role = self.bad_name(&role, role_span, "role", &prov.role.value, name)
                    || (prov.replication && self.bad_replication_role(&role, role_span, &prov.role.value, name));
                if bad_db || bad_role {
                    continue;
                }
                if !prov.role_only() && own_db.as_deref() == Some(database.as_str()) {
                    self.err(
                        Diagnostic::error("E0003", format!("database `{database}` of `{name}` is the server's own database"))
                            .primary(db_span, format!("`{}` owns it, not role `{role}`", superuser.as_deref().unwrap_or("the superuser")))
                            .secondary(entry.target.span, "connected here")
                            .help(format!(
                                "give `{name}` a database of its own (option `{}`), or log in as the superuser (option `{}` = `{}`)",
                                prov.database.as_ref().map_or("", |d| d.value.as_str()),
                                prov.role.value,
                                superuser.as_deref().unwrap_or_default()
                            )),
                    );
                    continue;
                }
                let Some((_, secret)) = q.decl.secrets.iter().find(|(slot, _)| slot.value == prov.password.value) else {
                    self.err(
                        Diagnostic::error("E0025", format!("service `{name}` needs secret `{}`", prov.password.value))
                            .primary(entry.target.span, format!("`{}` creates role `{role}` for it with this password", p.decl.name.value))
                            .help(format!("add `secrets.{} = \"NAME\"` naming a secret from `[secrets]`", prov.password.value)),
                    );
                    continue;
                };
                let address = if !prov.replication {
                    String::new()
                } else if q.host == p.host {
                    "samenet".to_string()
                } else {
                    // No shared network: the connection itself reports it.
                    let Some(a) = super::connections::shared_address(hosts, &p.host, &q.host) else { continue };
                    if a.is_ipv4() { format!("{a}/32") } else { format!("{a}/128") }
                };
                let taken = out.iter().find(|d| (!database.is_empty() && d.database == database) || d.role == role);
                // One application's services (a web process and its worker) share its database
                // and role: the same names and the same password secret are made once.
                if taken.is_some_and(|d| !prov.replication && d.database == database && d.role == role && d.secret == secret.value) {
                    continue;
                }
                if let Some(d) = taken {
                    let what = if d.database == database { format!("database `{database}`") } else { format!("role `{role}`") };
                    self.err(
                        Diagnostic::error("E0003", format!("`{name}` and `{}` both want {what} on `{}`", d.client, p.decl.name.value))
                            .primary(if d.database == database { db_span } else { role_span }, "already another client's")
                            .help(format!(
                                "each client of one server has its own database and role: change one of the names; services of one \
                                 application share both only with the same password secret (`{}`'s is `{}`)",
                                d.client, d.secret
                            )),
                    );
                    continue;
                }
                out.push(DbClient {
                    client: name.clone(),
                    database,
                    role,
                    password_file: format!("/run/secrets/{}_db_{name}", p.decl.name.value),
                    replication: prov.replication,
                    monitor: prov.monitor,
                    slot: if prov.replication { format!("kiln_{}", name.replace('-', "_")) } else { String::new() },
                    address,
                    secret: secret.value.clone(),
                    uid: decl.uid,
                });
            }
        }
        out
    }

    /// A replication role lands in `pg_hba.conf` unquoted: a plain lowercase identifier only.
    fn bad_replication_role(&mut self, v: &str, span: Span, option: &str, client: &str) -> bool {
        let plain = v.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !plain {
            self.err(
                Diagnostic::error("E0003", format!("the replication role of `{client}` is not a plain name"))
                    .primary(span, format!("option `{option}`"))
                    .help("a replication role is written into pg_hba.conf: `a-z`, `0-9` and `_`, starting with a letter or `_`"),
            );
        }
        !plain
    }

    /// A database or role name PostgreSQL would not keep as written: an error at the option.
    fn bad_name(&mut self, v: &str, span: Span, what: &str, option: &str, client: &str) -> bool {
        let why = if v.is_empty() {
            "is empty".to_string()
        } else if v.len() > MAX_NAME {
            format!("is {} bytes long; PostgreSQL keeps {MAX_NAME}", v.len())
        } else if v.chars().any(char::is_control) {
            "holds a control character".to_string()
        } else {
            return false;
        };
        self.err(
            Diagnostic::error("E0003", format!("the {what} name of `{client}` {why}"))
                .primary(span, format!("option `{option}`"))
                .help(format!("a {what} name is 1 to {MAX_NAME} bytes without control characters")),
        );
        true
    }
}

/// The primary `p` streams from, when `p` is a replica: a service of a module its replication
/// slot accepts, named in its `connects`.
fn primary_of<'b>(p: &Partial<'_>, all: &'b BTreeMap<String, Partial<'_>>) -> Option<&'b str> {
    let r = p.module.decl.requires.iter().find(|r| r.provision.as_ref().is_some_and(|x| x.replication))?;
    p.decl.connects.iter().filter(|c| c.slot.as_ref().is_none_or(|s| s.value == r.slot.value)).find_map(|c| {
        let (name, t) = all.get_key_value(c.service())?;
        r.modules.iter().any(|m| m.value == t.module.decl.name.value).then_some(name.as_str())
    })
}
