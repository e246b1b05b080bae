//! `pgbouncer-prepared-statements`: a client using prepared statements through PgBouncer in
//! transaction mode where PgBouncer cannot track them.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;

pub const RULE: Rule = Rule {
    id: "pgbouncer-prepared-statements",
    summary: "PgBouncer transaction pooling with prepared statements below 1.21",
    explanation: "In transaction pooling a client gets a different server connection for every \
transaction. A server-side prepared statement lives on the connection that prepared it, so the \
next transaction fails with `prepared statement \"…\" does not exist`. PgBouncer 1.21 and later \
track protocol-level prepared statements when `max_prepared_statements` is above zero. Below \
1.21, or with it at zero, a client whose driver prepares statements (Rails, JDBC, pgx) needs \
`pool_mode = session` or a direct connection.",
    allowable: true,
    check,
};

fn check(sys: &System, _: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for s in sys.services.values() {
        for d in s.deps.iter().filter(|d| d.prepared_statements) {
            let Some(t) = sys.services.get(&d.service) else { continue };
            if t.module != "pgbouncer" || t.options.get("pool_mode").map(String::as_str) != Some("transaction") {
                continue;
            }
            let tag = t.container.as_ref().and_then(|c| c.image.tag.clone()).unwrap_or_else(|| t.module_version.clone());
            let old = crate::types::major_minor(&tag).is_none_or(|v| v < (1, 21));
            let off = t.options.get("max_prepared_statements").map(String::as_str) == Some("0");
            if !old && !off {
                continue;
            }
            let why =
                if old { format!("PgBouncer {tag} cannot track prepared statements") } else { "max_prepared_statements = 0".to_string() };
            out.push(
                Diagnostic::error(RULE.id, format!("`{}` uses prepared statements through `{}` in transaction pooling", s.name, t.name))
                    .primary(d.span, "this client prepares statements")
                    .secondary(t.span, why)
                    .help(if old {
                        "use PgBouncer 1.21 or later with `max_prepared_statements` above 0, or `pool_mode = \"session\"`".to_string()
                    } else {
                        "set `max_prepared_statements` above 0 (e.g. 200)".to_string()
                    })
                    .about("services", &s.name),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions() {
        assert_eq!(crate::types::major_minor("1.20.1"), Some((1, 20)));
        assert_eq!(crate::types::major_minor("v1.24.1-p1"), Some((1, 24)));
        assert_eq!(crate::types::major_minor("latest"), None);
    }
}
