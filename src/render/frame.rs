//! A route's `Content-Security-Policy`, which both edges send: its own `csp`, and who may frame
//! it (`frame-ancestors`), which replaces `X-Frame-Options: SAMEORIGIN` (that header cannot name
//! other origins).

use crate::model::Route;

/// Whether others may frame the route: it answers without `X-Frame-Options`, its CSP naming them.
pub fn framed(r: &Route) -> bool {
    !r.frame_ancestors.is_empty()
}

/// The policy the edge answers with, `None` for a route with neither a `csp` nor frame ancestors
/// (it keeps `X-Frame-Options: SAMEORIGIN` and the application's own policy). The `csp` is typed
/// (`types::parse_csp`), the origins too (`types::parse_origin`: scheme, host and port): nothing
/// a header or a Caddyfile token could split on.
pub fn policy(r: &Route) -> Option<String> {
    let mut v = r.csp.clone().unwrap_or_default();
    if framed(r) {
        if !v.is_empty() {
            v.push_str("; ");
        }
        v.push_str("frame-ancestors 'self'");
        for o in &r.frame_ancestors {
            v.push(' ');
            v.push_str(o);
        }
    }
    (!v.is_empty()).then_some(v)
}
