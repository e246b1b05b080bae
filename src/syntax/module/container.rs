//! `[container]` and `[native]`: how a module runs (image, user, mounts, limits, environment, the
//! secrets it reads from the environment) or which packages and unit it installs.

use super::strings::{bad, exposes_sensitive, parse_device, parse_env_name, parse_host_mount};
use super::{ContainerDecl, NativeDecl, SecretSlotDecl, str_list_node};
use crate::syntax::decode::{Sink, Sp, TableReader, as_str, typed};
use crate::syntax::system::one_of;
use crate::syntax::tree::Value;
use crate::types::{Duration, Size};

/// `[container]`.
pub(super) fn container(mut t: TableReader<'_>, sink: &Sink) -> ContainerDecl {
    let environment = t.str_map("environment");
    let env_secrets = var_to_slot(&mut t, "env_secrets", sink);
    let secret_paths = var_to_slot(&mut t, "secret_paths", sink);
    let command = t.node("command");
    let entrypoint = t.node("entrypoint");
    let d = ContainerDecl {
        span: t.span,
        image: t.req_str("image", "\"docker.io/library/postgres:18.1\""),
        user: t.str("user"),
        read_only: t.bool("read_only"),
        tmpfs: t.str_list("tmpfs"),
        command: str_list_node(command, sink),
        entrypoint: str_list_node(entrypoint, sink),
        environment,
        cap_drop: t.str_list("cap_drop"),
        cap_add: t.str_list("cap_add"),
        stop_grace_period: typed(t.str("stop_grace_period"), sink, Duration::parse),
        network_mode: t.str("network_mode"),
        docker_socket: t.bool("docker_socket"),
        shm_size: typed(t.str("shm_size"), sink, Size::parse),
        init: t.bool("init"),
        env_secrets,
        secret_paths,
        user_environment: t.bool("user_environment"),
        ulimits: t.table("ulimits", |u| ulimits(u, sink)).unwrap_or_default(),
        devices: t.str_list("devices").into_iter().filter_map(|x| typed(Some(x), sink, parse_device)).collect(),
        host_mounts: t.str_list("host_mounts").into_iter().filter_map(|x| typed(Some(x), sink, parse_host_mount)).collect(),
    };
    if !d.docker_socket.as_ref().is_some_and(|b| b.value) {
        for m in &d.host_mounts {
            if let Some(p) = exposes_sensitive(&m.value.0) {
                sink.push(
                    crate::diag::Diagnostic::error("E0003", format!("host mount `{}` exposes `{p}`", m.value.0))
                        .primary(m.span, "this mount hands the container control of the host")
                        .note("a read-only bind mount still lets a process connect to a socket in it")
                        .help("declare `docker_socket = true` as well, so kiln treats the service as holding the Docker socket"),
                );
            }
        }
    }
    t.finish();
    d
}

/// A table of environment variable → secret slot (`env_secrets`, `secret_paths`).
fn var_to_slot(t: &mut TableReader<'_>, key: &'static str, sink: &Sink) -> Vec<(Sp<String>, Sp<String>)> {
    t.table(key, |et| {
        et.entries()
            .iter()
            .filter_map(|e| {
                let var = typed(Some(Sp::new(e.key.clone(), e.key_span)), sink, parse_env_name)?;
                Some((var, as_str(&e.value, sink)?))
            })
            .collect()
    })
    .unwrap_or_default()
}

/// `[native]`.
pub(super) fn native(mut t: TableReader<'_>) -> NativeDecl {
    let d = NativeDecl { span: t.span, packages: t.str_list("packages"), unit: t.str("unit") };
    t.finish();
    d
}

/// The resource limits Docker passes to `setrlimit` (Compose `ulimits`).
pub const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

fn ulimits(t: TableReader<'_>, sink: &Sink) -> Vec<(Sp<String>, i64, i64)> {
    let mut out = Vec::new();
    for e in t.entries() {
        let name = Sp::new(e.key.clone(), e.key_span);
        if !ULIMITS.contains(&e.key.as_str()) {
            sink.type_error(e.key_span, one_of(&e.key, "ulimit", ULIMITS));
            continue;
        }
        let limits = match &e.value.value {
            Value::Int(i) => Some((*i, *i)),
            Value::Table(_) => TableReader::new(&e.value, sink, format!("`ulimits.{}`", e.key)).and_then(|mut l| {
                let (soft, hard) = (l.int("soft"), l.int("hard"));
                if soft.is_none() {
                    l.missing("soft", "65536");
                }
                if hard.is_none() {
                    l.missing("hard", "65536");
                }
                l.finish();
                Some((soft?.value, hard?.value))
            }),
            _ => {
                sink.expected(&e.value, "a limit or `{ soft = …, hard = … }`");
                None
            }
        };
        let Some((soft, hard)) = limits else { continue };
        let unlimited = |v: i64| v == -1;
        if soft < -1 || hard < -1 || (!unlimited(hard) && (unlimited(soft) || soft > hard)) {
            sink.type_error(
                e.value.span,
                bad(
                    format!("ulimit `{}` soft {soft} / hard {hard} is not a limit", e.key),
                    "limits are at least 0 (-1: unlimited), soft ≤ hard",
                ),
            );
            continue;
        }
        out.push((name, soft, hard));
    }
    out
}

/// Every `[container.env_secrets]` and `[container.secret_paths]` entry names a declared secret
/// slot, and no variable is set twice (by those tables or as a plain `[container.environment]`
/// value).
pub(super) fn env_secret_slots(c: &ContainerDecl, secrets: &[SecretSlotDecl], sink: &Sink) {
    let fed: Vec<_> = c
        .env_secrets
        .iter()
        .map(|e| (e, "fed by a secret here"))
        .chain(c.secret_paths.iter().map(|e| (e, "a secret's path here")))
        .collect();
    for (i, ((var, slot), what)) in fed.iter().enumerate() {
        if let Some(((k, _), _)) = fed[..i].iter().find(|((k, _), _)| k.value == var.value) {
            sink.push(
                crate::diag::Diagnostic::error("E0011", format!("environment variable `{}` is set twice", var.value))
                    .primary(var.span, *what)
                    .secondary(k.span, "and here"),
            );
        }
        if !secrets.iter().any(|s| s.slot.value == slot.value) {
            let mut d = crate::diag::Diagnostic::error(
                "E0023",
                format!("environment variable `{}` names no secret slot `{}`", var.value, slot.value),
            )
            .primary(slot.span, "not a `[secrets.SLOT]` of this module");
            if let Some(x) = crate::diag::did_you_mean(&slot.value, secrets.iter().map(|s| s.slot.value.as_str())) {
                d = d.help(format!("did you mean `{x}`?"));
            } else {
                d = d.help(format!("declare the slot: `[secrets.{}]` with a `description`", slot.value));
            }
            sink.push(d);
        }
        if let Some((k, _)) = c.environment.iter().find(|(k, _)| k.value == var.value) {
            sink.push(
                crate::diag::Diagnostic::error("E0011", format!("environment variable `{}` is set twice", var.value))
                    .primary(var.span, *what)
                    .secondary(k.span, "and set in `[container.environment]` here"),
            );
        }
    }
}
