//! `[secrets.SLOT]`: the secrets a module reads, where they are mounted and when they are needed.

use super::strings::absolute;
use super::{OptionDecl, RequireDecl, SecretSlotDecl};
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
    let required_when = t.str("required_when");
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
    if let Some(o) = &d.required_when
        && let Some(slot) = o.value.strip_prefix("requires.")
    {
        if !requires.iter().any(|r| r.slot.value == slot) {
            sink.push(
                crate::diag::Diagnostic::error("E0021", format!("`required_when` names no slot `{slot}` of this module"))
                    .primary(o.span, "not declared as `[requires.SLOT]`"),
            );
        }
    } else if let Some(o) = &d.required_when
        && let name = o.value.split_once('=').map_or(o.value.as_str(), |(n, _)| n)
        && !options.iter().any(|x| x.name.value == name)
    {
        sink.push(
            crate::diag::Diagnostic::error("E0021", format!("`required_when` names no option `{name}` of this module"))
                .primary(o.span, "not declared in `[options]`"),
        );
    }
    Some(d)
}
