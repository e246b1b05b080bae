//! `[secrets.SLOT]`: the secrets a module reads, where they are mounted and when they are needed.

use super::strings::absolute;
use super::{OptionDecl, RequireDecl, RequiredWhen, SecretSlotDecl};
use crate::syntax::decode::{Sink, Sp, TableReader, typed};
use crate::types;

/// One `[secrets.SLOT]`; a `required_when` names one of `options`, or `requires.SLOT` one of
/// `requires`.
pub(super) fn secret(
    slot: Sp<String>,
    mut t: TableReader<'_>,
    options: &[OptionDecl],
    requires: &[RequireDecl],
    sink: &Sink,
) -> Option<SecretSlotDecl> {
    let required_when = t.str("required_when").map(|w| Sp::new(RequiredWhen::parse(&w.value), w.span));
    let d = SecretSlotDecl {
        description: t.str("description"),
        target: absolute(t.str("target"), sink),
        uid: t.int("uid").and_then(|i| u32::try_from(i.value).ok()),
        optional: t.bool("optional").is_some_and(|b| b.value) || required_when.is_some(),
        dns01: typed(t.str("dns01"), sink, |s| crate::syntax::system::ProviderKind::parse(s).map(|k| k.name().to_string())),
        required_when,
        slot: typed(Some(slot), sink, types::parse_ident)?,
    };
    t.finish();
    // The slot or option it names must be one of the module's.
    match d.required_when.as_ref().map(|w| (&w.value, w.span)) {
        Some((RequiredWhen::Slot(slot), span)) if !requires.iter().any(|r| &r.slot.value == slot) => sink.push(
            crate::diag::Diagnostic::error("E0021", format!("`required_when` names no slot `{slot}` of this module"))
                .primary(span, "not declared as `[requires.SLOT]`"),
        ),
        Some((RequiredWhen::Option { name, .. }, span)) if !options.iter().any(|x| &x.name.value == name) => sink.push(
            crate::diag::Diagnostic::error("E0021", format!("`required_when` names no option `{name}` of this module"))
                .primary(span, "not declared in `[options]`"),
        ),
        _ => {}
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::RequiredWhen;

    #[test]
    fn required_when_reads_its_three_forms() {
        assert_eq!(RequiredWhen::parse("requires.office"), RequiredWhen::Slot("office".into()));
        assert_eq!(RequiredWhen::parse("repo_type=s3"), RequiredWhen::Option { name: "repo_type".into(), equals: Some("s3".into()) });
        assert_eq!(RequiredWhen::parse("smtp_username"), RequiredWhen::Option { name: "smtp_username".into(), equals: None });
    }
}
