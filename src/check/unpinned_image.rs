//! `unpinned-image`: every container image names an explicit version (or digest), so a rebuild
//! next month runs the same software.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;

pub const RULE: Rule = Rule {
    id: "unpinned-image",
    summary: "a container image without a fixed version",
    explanation: "An image reference without a tag, or with a moving tag such as `latest`, resolves to \
different software over time: two builds of the same system would boot different servers, and a \
replaced server silently upgrades. Pin an explicit version tag, ideally with a `@sha256:` digest.",
    allowable: true,
    check,
};

fn check(sys: &System, inputs: &Inputs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for s in sys.services.values() {
        let Some(c) = &s.container else { continue };
        if c.image.is_pinned() {
            continue;
        }
        let mut d = Diagnostic::error(RULE.id, format!("image `{}` of service `{}` is not pinned", c.image, s.name))
            .primary(s.span, "this service runs an unpinned image")
            .about("services", &s.name);
        if let Some(img) = inputs.modules.get(&s.module).and_then(|m| m.decl.container.as_ref()).and_then(|c| c.image.as_ref()) {
            d = d.secondary(img.span, "image declared here");
        }
        out.push(d.help("use an explicit version tag such as `:1.2.3`, or add `@sha256:…`"));
    }
    out
}
