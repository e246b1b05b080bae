//! `[deploy]`: how a system is deployed: where its OpenTofu state lives (`state =
//! "s3://BUCKET/KEY"`, with `state_region` and `state_endpoint`; absent, the state is a local
//! file in the system's state directory), and the order of its rollout groups (`order =
//! ["canary", "production"]`, checked against the hosts' `group`s).

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::Span;
use crate::state_backend;
use crate::syntax::decode::{Sink, Sp, TableReader, as_str_list, typed};
use crate::types;

/// `[deploy]` as written.
#[derive(Debug)]
pub struct DeployDecl {
    pub span: Span,
    /// The bucket and key of `state`.
    pub state: Option<Sp<(String, String)>>,
    pub state_region: Option<Sp<String>>,
    pub state_endpoint: Option<Sp<String>>,
    /// `order`: rollout groups, first deployed first (the span of the whole list too).
    pub order: Option<Sp<Vec<Sp<String>>>>,
}

/// Reads `[deploy]` from a file's root table.
pub fn read(root: &mut TableReader<'_>, sink: &Sink) -> Option<DeployDecl> {
    root.table("deploy", |mut t| {
        let d = DeployDecl {
            span: t.span,
            state: typed(t.str("state"), sink, state_backend::parse_url),
            state_region: typed(t.str("state_region"), sink, types::parse_provider_token),
            state_endpoint: typed(t.str("state_endpoint"), sink, state_backend::parse_endpoint),
            order: t.node("order").map(|n| {
                let names = as_str_list(n, sink).into_iter().filter_map(|n| typed(Some(n), sink, types::parse_ident)).collect();
                Sp::new(names, n.span)
            }),
        };
        t.finish();
        d
    })
}

/// The system's state backend from every file's `[deploy]` (one file declares it; a second
/// declaration is an error pointing at both).
pub fn state(files: &[crate::syntax::system::SystemFile], diags: &mut Vec<crate::diag::Diagnostic>) -> Option<state_backend::S3State> {
    let decls: Vec<&DeployDecl> = files.iter().filter_map(|f| f.deploy.as_ref()).collect();
    let first = decls.first()?;
    for extra in &decls[1..] {
        diags.push(
            crate::diag::Diagnostic::error("E0011", "`[deploy]` is declared twice")
                .primary(extra.span, "declared again here")
                .secondary(first.span, "first declared here"),
        );
    }
    let (bucket, key) = first.state.as_ref()?.value.clone();
    Some(state_backend::S3State {
        bucket,
        key,
        region: first.state_region.as_ref().map(|r| r.value.clone()),
        endpoint: first.state_endpoint.as_ref().map(|e| e.value.clone()),
    })
}

/// The rollout order from `[deploy] order`, checked against the hosts' groups: a name no host
/// is in (E0010, did-you-mean among the groups), a name listed twice (E0011), and a group some
/// host is in that the order leaves out (E0004 at the host's `group`) are errors. Without
/// `order`, empty (deploy then runs `canary` first and everything else after).
pub fn order(files: &[crate::syntax::system::SystemFile], diags: &mut Vec<crate::diag::Diagnostic>) -> Vec<String> {
    use crate::diag::Diagnostic;
    let Some(list) = files.iter().filter_map(|f| f.deploy.as_ref()).find_map(|d| d.order.as_ref()) else {
        return Vec::new();
    };
    let hosts: Vec<&crate::syntax::system::HostDecl> = files.iter().flat_map(|f| &f.hosts).collect();
    let groups: BTreeSet<&str> = hosts.iter().filter_map(|h| h.group.as_ref()).map(|g| g.value.as_str()).collect();
    let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
    let mut out = Vec::new();
    for n in &list.value {
        if let Some(first) = seen.get(n.value.as_str()) {
            diags.push(
                Diagnostic::error("E0011", format!("rollout group `{}` is listed twice in `[deploy] order`", n.value))
                    .primary(n.span, "listed again here")
                    .secondary(*first, "first listed here")
                    .help("each group deploys once, as one wave: remove one of them"),
            );
            continue;
        }
        seen.insert(&n.value, n.span);
        if !groups.contains(n.value.as_str()) {
            let mut d = Diagnostic::error("E0010", format!("no host is in rollout group `{}`", n.value))
                .primary(n.span, "named in `[deploy] order`");
            d = match crate::diag::did_you_mean(&n.value, groups.iter().copied()) {
                Some(m) => d.help(format!("did you mean `{m}`?")),
                None if groups.is_empty() => d.help("a host joins a rollout group with `group = \"NAME\"`; no host has one"),
                None => d.help(format!(
                    "a host joins a rollout group with `group = \"NAME\"`; the groups are {}",
                    groups.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ")
                )),
            };
            diags.push(d);
            continue;
        }
        out.push(n.value.clone());
    }
    for h in &hosts {
        let Some(g) = &h.group else { continue };
        if !seen.contains_key(g.value.as_str()) {
            diags.push(
                Diagnostic::error(
                    "E0004",
                    format!("host `{}` is in rollout group `{}`, which `[deploy] order` does not list", h.name.value, g.value),
                )
                .primary(g.span, "this group")
                .secondary(list.span, "the rollout order")
                .help(format!("add `\"{}\"` to `[deploy] order` where it should deploy, or move the host to a listed group", g.value)),
            );
        }
    }
    out
}
