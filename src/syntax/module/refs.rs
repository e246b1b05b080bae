//! References from one table of a module to its own declarations: an option that must hold
//! text, a secret slot that must exist. Each refusal points at the reference.

use super::{OptType, OptionDecl, SecretSlotDecl};
use crate::diag::Diagnostic;
use crate::syntax::decode::{Sink, Sp};

/// Whether `o` names a string option of the module; an error at `o` when not. `why` says
/// why the value is text (the primary label), `help` how to declare the option.
pub(super) fn string_option(o: &Sp<String>, options: &[OptionDecl], sink: &Sink, why: &str, help: &str) -> bool {
    match options.iter().find(|d| d.name.value == o.value) {
        Some(d) if d.ty.value == OptType::String => true,
        Some(d) => {
            sink.push(
                Diagnostic::error("E0002", format!("option `{}` is not a string", o.value))
                    .primary(o.span, why)
                    .secondary(d.ty.span, "type declared here"),
            );
            false
        }
        None => {
            sink.push(
                Diagnostic::error("E0021", format!("the module has no option `{}`", o.value)).primary(o.span, "unknown option").help(help),
            );
            false
        }
    }
}

/// Whether `s` names a secret slot of the module; an error at `s` when not, with `help`.
pub(super) fn secret_slot(s: &Sp<String>, secrets: &[SecretSlotDecl], sink: &Sink, help: &str) -> bool {
    if secrets.iter().any(|d| d.slot.value == s.value) {
        return true;
    }
    sink.push(
        Diagnostic::error("E0023", format!("the module has no secret slot `{}`", s.value))
            .primary(s.span, "unknown secret slot")
            .help(help),
    );
    false
}
