//! Allow-lists (`allow` on a route, in `[route_defaults]`, on a stream): each entry an address, a
//! network, or an admin's name standing for that admin's `sources`, so the administrators'
//! networks are written once, in `[admins.NAME]`, however many routes admit only them.

use super::*;
use crate::types::AllowEntry;

impl Resolver<'_> {
    /// Reports each admin's name in `entries` that stands for no source: an unknown admin, or
    /// one without `sources` (the entry would narrow nothing, and an allow-list left empty
    /// admits everyone). Called once per list as written, so that a mistake in
    /// `[route_defaults]` is reported once, not for every route that inherits it.
    pub(super) fn check_allow_list(&mut self, entries: &[Sp<AllowEntry>], admins: &BTreeMap<String, &AdminDecl>) {
        for entry in entries {
            let AllowEntry::Admin(name) = &entry.value else { continue };
            match admins.get(name) {
                None => self.unknown("admin", &Sp { value: name.clone(), span: entry.span }, admins.keys(), "admins"),
                Some(admin) if admin.sources.is_empty() => self.err(
                    Diagnostic::error("E0049", format!("admin `{name}` has no `sources` for this allow-list to admit"))
                        .primary(entry.span, "stands for the admin's `sources`")
                        .secondary(admin.name.span, "declared here without `sources`")
                        .help(format!("give `[admins.{name}]` the networks it connects from (`sources`), or write them here")),
                ),
                Some(_) => {}
            }
        }
    }
}

/// The sources an allow-list admits, in the order written, each once; an admin's name is the
/// admin's `sources` (a name [`Resolver::check_allow_list`] reported stands for nothing).
pub(super) fn allow_list(entries: &[Sp<AllowEntry>], admins: &BTreeMap<String, &AdminDecl>) -> Vec<types::Cidr> {
    let mut out: Vec<types::Cidr> = Vec::new();
    for entry in entries {
        let sources: Vec<types::Cidr> = match &entry.value {
            AllowEntry::Source(cidr) => vec![*cidr],
            AllowEntry::Admin(name) => admins.get(name).map(|a| a.sources.iter().map(|s| s.value).collect()).unwrap_or_default(),
        };
        for source in sources {
            if !out.contains(&source) {
                out.push(source);
            }
        }
    }
    out
}
