//! A server's users, derived from its clients: every service connected to it through a
//! requirement slot with `account` gets a user named by its own option (its service name when
//! that is empty), with its own password secret, delivered to the server as well, and its own
//! permissions (`[accounts]`; Valkey's ACL users). Clients that connect without an `account`
//! log in as the server's shared default user, so the server keeps that one on only for them.

use super::*;

/// The permissions of a client that states none: every key and channel, every command but the
/// dangerous ones (Valkey's ACL categories: FLUSHALL, KEYS, CONFIG, DEBUG, SHUTDOWN, …).
pub(super) const DEFAULT_ACL: &str = "~* &* +@all -@dangerous";

/// The longest user name kiln accepts.
const MAX_USER: usize = 64;

/// One client's user as the server's templates see it (`accounts.users`).
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct AccountClient {
    /// The client service (the first, when services of one application share a user).
    pub client: String,
    pub user: String,
    /// Where the server reads the user's password (the client's secret, delivered to it too).
    pub password_file: String,
    /// ACL rules: the client's, else [`DEFAULT_ACL`].
    pub acl: String,
    #[serde(skip)]
    pub secret: String,
    #[serde(skip)]
    pub uid: Option<u32>,
}

impl AccountClient {
    /// The server's copy of the client's password secret.
    pub(super) fn secret_use(&self) -> SecretUse {
        SecretUse {
            slot: format!("account_{}", self.client),
            secret: self.secret.clone(),
            target: self.password_file.clone(),
            uid: self.uid,
        }
    }
}

/// `accounts` in a server's templates: its clients' users, and whether some client connects
/// without one (and so logs in as the default user).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(super) struct Accounts {
    pub users: Vec<AccountClient>,
    pub default_clients: Vec<String>,
}

impl<'a> Resolver<'a> {
    /// The users server `p` makes for its clients, in client name order.
    pub(super) fn account_clients(&mut self, p: &Partial<'a>, all: &BTreeMap<String, Partial<'a>>) -> Accounts {
        let mut out = Accounts::default();
        let Some(decl) = &p.module.decl.accounts else { return out };
        let server = &p.decl.name.value;
        let clients = p.clients.iter().filter_map(|n| all.get_key_value(n));
        for (name, q) in clients.filter(|(n, q)| *n != server && q.ok) {
            for r in q.module.decl.requires.iter().filter(|r| r.modules.iter().any(|m| m.value == p.module.decl.name.value)) {
                let connected =
                    q.decl.connects.iter().find(|c| c.service() == *server && c.slot.as_ref().is_none_or(|s| s.value == r.slot.value));
                let Some(entry) = connected else { continue };
                let Some(a) = &r.account else {
                    out.default_clients.push(name.clone());
                    continue;
                };
                let value = |o: &Sp<String>| -> (String, Span) {
                    let v = q.options.get(&o.value).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                    let span = q.decl.options.iter().find(|(n, _)| n.value == o.value).map_or(q.decl.name.span, |(_, n)| n.span);
                    (v, span)
                };
                let (mut user, user_span) = value(&a.user);
                if user.is_empty() {
                    user = name.clone();
                }
                let why = if user.len() > MAX_USER {
                    Some(format!("is {} bytes long; kiln keeps {MAX_USER}", user.len()))
                } else if !user.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) {
                    Some("has a character other than a letter, digit, `_`, `-` or `.`".to_string())
                } else if user == "default" || decl.reserved.iter().any(|x| x.value == user) {
                    Some(format!("is the server's own user, not a client's (`{server}` keeps it)"))
                } else {
                    None
                };
                if let Some(why) = why {
                    self.err(
                        Diagnostic::error("E0003", format!("the user name `{user}` of `{name}` on `{server}` {why}"))
                            .primary(user_span, format!("option `{}` (empty: the service's name)", a.user.value))
                            .secondary(entry.target.span, "connected here")
                            .help("a user name is 1 to 64 letters, digits, `_`, `-` and `.`, not `default` nor one the server reserves"),
                    );
                    continue;
                }
                let (acl, acl_span) = a.acl.as_ref().map_or((String::new(), q.decl.name.span), value);
                let acl =
                    if acl.trim().is_empty() { DEFAULT_ACL.to_string() } else { acl.split_whitespace().collect::<Vec<_>>().join(" ") };
                if let Some(bad) = acl.split(' ').find(|t| !acl_rule(t)) {
                    self.err(
                        Diagnostic::error("E0003", format!("`{name}`'s permissions on `{server}` hold `{bad}`, which is no ACL rule kiln passes"))
                            .primary(acl_span, format!("option `{}`", a.acl.as_ref().map_or("", |o| o.value.as_str())))
                            .help(
                                "use key (`~`, `%R~`, `%W~`), channel (`&`) and command (`+`, `-`, `+@`, `-@`) rules, `allkeys`, `allchannels`, \
                                 `allcommands`, `nocommands`, `resetkeys`, `resetchannels`: the password and the user's state are kiln's \
                                 (no `>`, `<`, `#`, `nopass`, `on`, `off`, `reset`), and no quotes or backslashes",
                            ),
                    );
                    continue;
                }
                let Some((_, secret)) = q.decl.secrets.iter().find(|(slot, _)| slot.value == a.password.value) else {
                    self.err(
                        Diagnostic::error("E0025", format!("service `{name}` needs secret `{}`", a.password.value))
                            .primary(entry.target.span, format!("`{server}` makes user `{user}` for it with this password"))
                            .help(format!("add `secrets.{} = \"NAME\"` naming a secret from `[secrets]`", a.password.value)),
                    );
                    continue;
                };
                match out.users.iter().find(|u| u.user == user) {
                    // Services of one application may share a user: the same name, secret and rules.
                    Some(u) if u.secret == secret.value && u.acl == acl => continue,
                    Some(u) => {
                        self.err(
                            Diagnostic::error("E0003", format!("`{name}` and `{}` both want user `{user}` on `{server}`", u.client))
                                .primary(user_span, "already another client's")
                                .secondary(entry.target.span, "connected here")
                                .help(format!(
                                    "each client has its own user: set option `{}` to another name; services of one application share one only \
                                     with the same password secret and permissions (`{}`'s secret is `{}`)",
                                    a.user.value, u.client, u.secret
                                )),
                        );
                        continue;
                    }
                    None => {}
                }
                out.users.push(AccountClient {
                    client: name.clone(),
                    user,
                    password_file: format!("/run/secrets/{server}_account_{name}"),
                    acl,
                    secret: secret.value.clone(),
                    uid: decl.uid,
                });
            }
        }
        out.default_clients.sort();
        out.default_clients.dedup();
        out
    }
}

/// One ACL rule a client may state: keys, channels and commands only, in characters the ACL
/// file keeps as written.
fn acl_rule(t: &str) -> bool {
    const WORDS: &[&str] = &["allkeys", "allchannels", "allcommands", "nocommands", "resetkeys", "resetchannels"];
    let plain = !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic() && !b"\"'\\".contains(&b));
    plain && (WORDS.contains(&t) || ["~", "%R~", "%W~", "%RW~", "&", "+", "-"].iter().any(|p| t.len() > p.len() && t.starts_with(p)))
}

#[cfg(test)]
mod tests {
    use super::acl_rule;

    #[test]
    fn acl_rules_take_keys_channels_and_commands_only() {
        for ok in ["~*", "&*", "+@all", "-@dangerous", "+client|list", "%R~cache:*", "allkeys", "-flushall"] {
            assert!(acl_rule(ok), "{ok}");
        }
        for bad in [">secret", "<secret", "#abc", "nopass", "on", "off", "reset", "resetpass", "~", "+", "~\"x\"", "+get\\"] {
            assert!(!acl_rule(bad), "{bad}");
        }
    }
}
