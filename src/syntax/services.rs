//! `[services.NAME]`: one instance of a module on a host, with its connections, options,
//! secrets, volumes, limits, and the variables of its own a module may take.

use crate::syntax::decode::{Sink, Sp, TableReader, as_str, typed};
use crate::syntax::system::{ServiceDecl, SocialLoginDecl, ident, read_cpus};
use crate::types;

/// Reads every `[services.NAME]`.
pub fn read(r: &mut TableReader<'_>, sink: &Sink) -> Vec<ServiceDecl> {
    r.named("services", |name, mut t| {
        let options = t
            .table("options", |ot| ot.entries().iter().map(|e| (Sp::new(e.key.clone(), e.key_span), e.value.clone())).collect())
            .unwrap_or_default();
        let secrets = t.str_map("secrets");
        let volumes = t
            .table("volumes", |vt| {
                vt.entries()
                    .iter()
                    .filter_map(|e| {
                        let v = typed(as_str(&e.value, sink), sink, types::parse_ident)?;
                        Some((Sp::new(e.key.clone(), e.key_span), v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let memory = typed(t.str("memory"), sink, crate::types::Size::parse_positive);
        let cpus = read_cpus(&mut t, sink);
        let env_table = |t: &mut TableReader<'_>, key: &'static str, value: fn(&str) -> Result<String, types::TypeError>| {
            t.table(key, |et| {
                et.entries()
                    .iter()
                    .filter_map(|e| {
                        let var = typed(Some(Sp::new(e.key.clone(), e.key_span)), sink, crate::syntax::module::strings::parse_env_name)?;
                        Some((var, typed(as_str(&e.value, sink), sink, value)?))
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
        };
        let environment = env_table(&mut t, "environment", types::parse_env_value);
        let env_secrets = env_table(&mut t, "env_secrets", types::parse_ident);
        let d = ServiceDecl {
            bridges: t.str_list("bridges"),
            phase: t.int("phase"),
            expose: t.str_list("expose"),
            ports: t
                .table("ports", |pt| {
                    pt.entries()
                        .iter()
                        .filter_map(|e| Some((Sp::new(e.key.clone(), e.key_span), crate::syntax::decode::as_int(&e.value, sink)?)))
                        .collect()
                })
                .unwrap_or_default(),
            volumes,
            memory,
            cpus,
            environment,
            env_secrets,
            version: t.str("version"),
            image: t.str("image"),
            login: t.str("login"),
            social_logins: t.named("social_logins", |kind, mut st| {
                let d = SocialLoginDecl {
                    kind,
                    client_id: st.req_str("client_id", "\"1234.apps.googleusercontent.com\""),
                    client_secret: st.req_str("client_secret", "\"google_client_secret\""),
                };
                st.finish();
                Some(d)
            }),
            span: t.span,
            module: t.req_str("module", "\"postgres\""),
            host: t.req_str("host", "\"db\""),
            connects: crate::syntax::connects::read(t.node("connects"), sink),
            options,
            secrets,
            name: ident(name, sink)?,
        };
        t.finish();
        Some(d)
    })
}
