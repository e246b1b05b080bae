//! `[volumes.NAME]`, `[backup]`, `[files.NAME]` and `[resources]`: what a service keeps, what is
//! backed up, the files rendered for it and what it may use.

use super::strings::{absolute, parse_file_name, parse_owner};
use super::{BackupDecl, FILE_JUDGES, FileDecl, OptionDecl, ResourcesDecl, VolumeDecl, str_list_node};
use crate::syntax::decode::{Sink, Sp, TableReader, typed};
use crate::syntax::system::one_of;
use crate::syntax::tree::Value;
use crate::types::{self, Size};

/// One `[volumes.NAME]`.
pub(super) fn volume(name: Sp<String>, mut t: TableReader<'_>, sink: &Sink) -> Option<VolumeDecl> {
    let d = VolumeDecl {
        target: absolute(t.req_str("target", "\"/var/lib/app\""), sink)?,
        backup: t.bool("backup").is_some_and(|b| b.value),
        owner: typed(t.str("owner"), sink, parse_owner),
        name: typed(Some(name), sink, types::parse_ident)?,
    };
    t.finish();
    Some(d)
}

/// `[backup]`.
pub(super) fn backup(mut t: TableReader<'_>, sink: &Sink) -> BackupDecl {
    let dump = str_list_node(t.node("dump"), sink);
    let restore = t.node("restore");
    let empty = [
        ("dump", t.node("dump"), "every backup would hold no dump of the service's data"),
        ("restore", restore, "a restore would load no dump and say nothing"),
    ];
    for (key, node, loses) in empty {
        if let Some(n) = node.filter(|n| matches!(&n.value, Value::Array(items) if items.is_empty())) {
            sink.push(
                crate::diag::Diagnostic::error("E0003", format!("`{key}` is an empty command"))
                    .primary(n.span, "no program to run")
                    .note(loses)
                    .help(format!("name the program and its arguments, e.g. `{key} = [\"sh\", \"-c\", \"…\"]`, or remove `{key}`")),
            );
        }
    }
    if let (Some(r), None) = (restore, &dump) {
        sink.push(
            crate::diag::Diagnostic::error("E0003", "`restore` without `dump`")
                .primary(r.span, "nothing to restore from")
                .note("`restore` reads, on its standard input, the dump `dump` wrote")
                .help("declare the `dump` command as well, or remove `restore`"),
        );
    }
    let when = typed(t.str("restore_when"), sink, |w| match w {
        "running" => Ok(false),
        "stopped" => Ok(true),
        _ => Err(one_of(w, "restore mode", &["running", "stopped"])),
    });
    if let (Some(w), None) = (&when, restore) {
        sink.push(
            crate::diag::Diagnostic::error("E0003", "`restore_when` without `restore`")
                .primary(w.span, "says when a restore command runs")
                .help("declare the `restore` command as well, or remove `restore_when`"),
        );
    }
    let d = BackupDecl {
        span: t.span,
        dump,
        restore: str_list_node(restore, sink),
        restore_stopped: when.is_some_and(|w| w.value),
        volumes: t.str_list("volumes"),
    };
    t.finish();
    d
}

/// `[resources]`, whose fits name the module's options.
pub(super) fn resources(mut t: TableReader<'_>, options: &[OptionDecl], sink: &Sink) -> ResourcesDecl {
    let d = ResourcesDecl {
        memory: typed(t.str("memory"), sink, Size::parse_positive),
        cpus: crate::syntax::system::read_cpus(&mut t, sink),
        fit: crate::syntax::memory_fit::read(&mut t, options, sink),
    };
    t.finish();
    d
}

/// One `[files.NAME]`.
pub(super) fn file(name: Sp<String>, mut t: TableReader<'_>, sink: &Sink) -> Option<FileDecl> {
    let mode = t.str("mode").map(|m| m.value).unwrap_or_else(|| "0644".into());
    let d = FileDecl {
        template: t.req_str("template", "\"config.yaml.j2\"")?,
        target: absolute(t.req_str("target", "\"/etc/app/config.yaml\""), sink)?,
        mode: u32::from_str_radix(&mode, 8).unwrap_or(0o644) & 0o777,
        judge: typed(t.str("judge"), sink, |s| {
            if FILE_JUDGES.contains(&s) { Ok(s.to_string()) } else { Err(one_of(s, "file judge", FILE_JUDGES)) }
        }),
        name: typed(Some(name), sink, parse_file_name)?,
    };
    t.finish();
    Some(d)
}
