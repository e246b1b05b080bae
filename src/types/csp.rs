//! A route's Content-Security-Policy (`csp`), typed where it is read.

use super::{TypeError, err, visible};

/// The directives of Content Security Policy Level 3 (w3.org/TR/CSP3, §6, with the navigation
/// and reporting directives) that a route's `csp` may set; `frame-ancestors` is the route's
/// `frame_ancestors`, which kiln also derives, so it is not one of them.
pub const CSP_DIRECTIVES: &[&str] = &[
    "default-src",
    "script-src",
    "script-src-elem",
    "script-src-attr",
    "style-src",
    "style-src-elem",
    "style-src-attr",
    "img-src",
    "font-src",
    "connect-src",
    "media-src",
    "object-src",
    "frame-src",
    "child-src",
    "worker-src",
    "manifest-src",
    "fenced-frame-src",
    "base-uri",
    "form-action",
    "sandbox",
    "upgrade-insecure-requests",
    "require-trusted-types-for",
    "trusted-types",
    "report-uri",
    "report-to",
    "webrtc",
];

/// A Content-Security-Policy (a route's `csp`), normalised: its directives in the order written,
/// each a known name (`CSP_DIRECTIVES`) and its values, separated by `; `. A value holds only
/// what CSP's grammar allows in one (printable ASCII but `;` and `,`) and none of `"`, `\`, `{`,
/// `}`: nothing that could end a Caddyfile token or start a placeholder there, or a template in
/// Traefik's dynamic configuration.
pub fn parse_csp(s: &str) -> Result<String, TypeError> {
    const HELP: &str = "write directives separated by `;`, like `default-src 'self'; img-src 'self' data:`";
    let mut seen: Vec<&str> = Vec::new();
    let mut out: Vec<String> = Vec::new();
    for directive in s.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        let mut words = directive.split([' ', '\t']).filter(|w| !w.is_empty());
        let name = words.next().unwrap_or_default();
        let lower = name.to_ascii_lowercase();
        if lower == "frame-ancestors" {
            return err(
                "`frame-ancestors` is not written in `csp`",
                Some(
                    "name the origins that may frame the route in `frame_ancestors`: kiln adds the directive, with the origins it derives",
                ),
            );
        }
        let Some(known) = CSP_DIRECTIVES.iter().find(|d| **d == lower) else {
            let hint = crate::diag::did_you_mean(&lower, CSP_DIRECTIVES.iter().copied())
                .map(|m| format!("did you mean `{m}`? {HELP}"))
                .unwrap_or_else(|| HELP.to_string());
            return err(format!("`{}` is not a Content-Security-Policy directive", visible(name)), Some(&hint));
        };
        if seen.contains(known) {
            return err(format!("`{known}` is set twice (browsers ignore the second)"), Some("write its sources once, in one directive"));
        }
        seen.push(known);
        let mut d = known.to_string();
        for w in words {
            if let Some(c) = w.chars().find(|c| !(' '..='~').contains(c) || matches!(c, ',' | '"' | '\\' | '{' | '}')) {
                return err(
                    format!("`{}` in `{known}` holds `{}`, which a policy value cannot", visible(w), c.escape_default()),
                    Some("sources are keywords like `'self'`, schemes like `data:` and hosts like `https://cdn.example.org`"),
                );
            }
            d.push(' ');
            d.push_str(w);
        }
        out.push(d);
    }
    if out.is_empty() {
        return err("the policy has no directive", Some(HELP));
    }
    Ok(out.join("; "))
}
