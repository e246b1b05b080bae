//! `[deploy]`: how a system is deployed. Today one thing: where its OpenTofu state lives
//! (`state = "s3://BUCKET/KEY"`, with `state_region` and `state_endpoint`); absent, the state
//! is a local file in the system's state directory.

use crate::diag::Span;
use crate::state_backend;
use crate::syntax::decode::{Sink, Sp, TableReader, typed};
use crate::types;

/// `[deploy]` as written.
#[derive(Debug)]
pub struct DeployDecl {
    pub span: Span,
    /// The bucket and key of `state`.
    pub state: Option<Sp<(String, String)>>,
    pub state_region: Option<Sp<String>>,
    pub state_endpoint: Option<Sp<String>>,
}

/// Reads `[deploy]` from a file's root table.
pub fn read(root: &mut TableReader<'_>, sink: &Sink) -> Option<DeployDecl> {
    root.table("deploy", |mut t| {
        let d = DeployDecl {
            span: t.span,
            state: typed(t.str("state"), sink, state_backend::parse_url),
            state_region: typed(t.str("state_region"), sink, types::parse_provider_token),
            state_endpoint: typed(t.str("state_endpoint"), sink, state_backend::parse_endpoint),
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
