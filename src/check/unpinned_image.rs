//! `unpinned-image`: every container image names an explicit version (or digest), so a rebuild
//! next month runs the same software.

use super::Rule;
use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::{ImageFrom, System};

pub const RULE: Rule = Rule {
    id: "unpinned-image",
    summary: "a container image without a fixed version",
    explanation: "An image reference without a tag, or with a moving tag such as `latest`, resolves to \
different software over time: two builds of the same system would boot different servers, and a \
replaced server silently upgrades. A tag naming only a major version (`16`, `v3`, `16-alpine`) \
moves the same way, to every release of that major. Pin an explicit version tag, ideally with a \
`@sha256:` digest. This holds for a service's own `version` or `image` (a canary running a newer \
release than its peers) as for a module's image: an empty `version` leaves the image untagged.",
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
        let d = Diagnostic::error(RULE.id, format!("image `{}` of service `{}` is not pinned", c.image, s.name)).about("services", &s.name);
        // The system's `version`/`image` chose it: that line is what to fix.
        let d = match (c.image_from, c.image_span) {
            (ImageFrom::Version, Some(at)) => d
                .primary(at, "this version does not pin the image")
                .help("name a full version, such as `9.2.0` (not `latest`, nor a major version alone)"),
            (ImageFrom::Image, Some(at)) => {
                d.primary(at, "this image is not pinned").help("use an explicit version tag such as `:1.2.3`, or add `@sha256:…`")
            }
            _ => {
                let mut d = d.primary(s.span, "this service runs an unpinned image");
                if let Some(img) = inputs.modules.get(&s.module).and_then(|m| m.decl.container.as_ref()).and_then(|c| c.image.as_ref()) {
                    d = d.secondary(img.span, "image declared here");
                }
                d.help("use an explicit version tag such as `:1.2.3`, or add `@sha256:…`")
            }
        };
        out.push(d);
    }
    out
}
