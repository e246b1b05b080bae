//! `[route_defaults]`: what every route gets unless it says otherwise — forward auth, a CrowdSec
//! bouncer, a rate limit, an allow-list, CORS origins, frame ancestors, a Content-Security-Policy,
//! the TLS mode and the edge — so that nine routes behind one sign-in do not repeat the same four
//! lines. A route's own value
//! replaces the default (a list replaces the list, `allow = []` included); `auth = "none"` and
//! `crowdsec = "none"` take a default away. Applied in `resolve` before routes are bound, so
//! every rule and emitter sees the effective route.

use crate::diag::Span;
use crate::syntax::decode::{Sink, Sp, TableReader, typed};
use crate::syntax::system::{RouteDecl, TlsMode};
use crate::types;

/// The value of `auth`/`crowdsec` that takes a default away.
pub const NONE: &str = "none";

#[derive(Debug, Clone)]
pub struct RouteDefaultsDecl {
    pub span: Span,
    pub tls: Option<Sp<TlsMode>>,
    pub auth: Option<Sp<String>>,
    pub edge: Option<Sp<String>>,
    pub rate_limit: Option<(Sp<i64>, Option<Sp<i64>>, Span)>,
    pub cors: Option<Vec<Sp<String>>>,
    pub allow: Option<Vec<Sp<types::AllowEntry>>>,
    pub crowdsec: Option<Sp<String>>,
    pub frame_ancestors: Option<Vec<Sp<String>>>,
    pub csp: Option<Sp<String>>,
}

/// Reads `[route_defaults]` (absent: `None`).
pub fn read(root: &mut TableReader<'_>, sink: &Sink) -> Option<RouteDefaultsDecl> {
    root.table("route_defaults", |mut t| {
        let has = |t: &mut TableReader<'_>, k: &'static str| t.node(k).is_some();
        let d = RouteDefaultsDecl {
            span: t.span,
            tls: typed(t.str("tls"), sink, TlsMode::parse),
            auth: t.str("auth"),
            edge: t.str("edge"),
            rate_limit: rate_limit(&mut t),
            cors: has(&mut t, "cors").then(|| t.str_list("cors")),
            allow: has(&mut t, "allow")
                .then(|| t.str_list("allow").into_iter().filter_map(|s| typed(Some(s), sink, types::parse_allow_entry)).collect()),
            crowdsec: t.str("crowdsec"),
            frame_ancestors: has(&mut t, "frame_ancestors")
                .then(|| t.str_list("frame_ancestors").into_iter().filter_map(|s| typed(Some(s), sink, types::parse_origin)).collect()),
            csp: typed(t.str("csp"), sink, types::parse_csp),
        };
        t.finish();
        d
    })
}

/// `rate_limit = { average = N, burst = M }`, as routes read it.
pub fn rate_limit(t: &mut TableReader<'_>) -> Option<(Sp<i64>, Option<Sp<i64>>, Span)> {
    t.table("rate_limit", |mut rt| {
        let span = rt.span;
        let avg = rt.int("average");
        let burst = rt.int("burst");
        if avg.is_none() {
            rt.missing("average", "100");
        }
        rt.finish();
        avg.map(|a| (a, burst, span))
    })
    .flatten()
}

/// The route with the defaults it does not set filled in, and `"none"` taking one away.
pub fn apply(r: &RouteDecl, d: Option<&RouteDefaultsDecl>) -> RouteDecl {
    let mut out = r.clone();
    if let Some(d) = d {
        let written = |k: &str| r.written.contains(&k);
        out.tls = out.tls.or_else(|| d.tls.clone());
        out.auth = out.auth.or_else(|| d.auth.clone());
        out.edge = out.edge.or_else(|| d.edge.clone());
        out.rate_limit = out.rate_limit.or_else(|| d.rate_limit.clone());
        out.crowdsec = out.crowdsec.or_else(|| d.crowdsec.clone());
        out.csp = out.csp.or_else(|| d.csp.clone());
        if !written("cors") {
            out.cors = d.cors.clone().unwrap_or_default();
        }
        if !written("allow") {
            out.allow = d.allow.clone().unwrap_or_default();
        }
        if !written("frame_ancestors") {
            out.frame_ancestors = d.frame_ancestors.clone().unwrap_or_default();
        }
    }
    out.auth = out.auth.filter(|a| a.value != NONE);
    out.crowdsec = out.crowdsec.filter(|a| a.value != NONE);
    out
}
