//! Who may frame a route: the `Content-Security-Policy` both edges send for a route with frame
//! ancestors, in place of `X-Frame-Options: SAMEORIGIN` (which cannot name other origins).

use crate::model::Route;

/// `frame-ancestors 'self' ORIGIN…` for a route others may frame, `None` for the rest (they
/// keep `X-Frame-Options: SAMEORIGIN`). The origins are typed (`types::parse_origin`: scheme,
/// host and port, nothing a header or a CSP could split on).
pub fn policy(r: &Route) -> Option<String> {
    if r.frame_ancestors.is_empty() {
        return None;
    }
    let mut v = String::from("frame-ancestors 'self'");
    for o in &r.frame_ancestors {
        v.push(' ');
        v.push_str(o);
    }
    Some(v)
}
