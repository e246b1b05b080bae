//! Which requirement slot each `connects` entry fills: the slot it names (table form), or in the
//! list form the one open slot whose modules include the target's module. Entries named twice,
//! unknown slots, a target of the wrong kind for its slot and lists that cannot say which slot
//! an entry fills are refused, naming the slots.

use super::*;
use crate::syntax::connects::ConnectDecl;
use crate::syntax::module::RequireDecl;

/// What one `connects` entry fills.
#[derive(Clone, Copy)]
pub(super) enum Fill<'m> {
    Slot(&'m RequireDecl),
    /// A connection that fills no slot (it still orders start-up and opens the firewall).
    Nothing,
    /// The entry was refused (and reported): it adds nothing, and no slot is reported unfilled.
    Refused,
}

impl<'a> Resolver<'a> {
    /// One [`Fill`] per entry of the service's `connects`.
    pub(super) fn fill_slots(&mut self, p: &Partial<'a>, all: &BTreeMap<String, Partial<'a>>) -> Vec<Fill<'a>> {
        let conns = &p.decl.connects;
        let m = &p.module.decl;
        let mut fills = vec![Fill::Nothing; conns.len()];
        self.duplicates(conns, &mut fills);
        // A public route's entry (`route:HOST`) stands for the service behind the route.
        let targets: Vec<String> = conns
            .iter()
            .map(|c| c.route().and_then(|h| self.route_targets.get(h)).map_or(c.service(), |(s, _)| s.as_str()).to_string())
            .collect();
        let module_of = |i: usize| all.get(&targets[i]).map(|t| t.module.decl.name.value.as_str());
        // The table form: the slot is named.
        let mut named: BTreeSet<&str> = BTreeSet::new();
        for (i, c) in conns.iter().enumerate() {
            let Some(slot) = &c.slot else { continue };
            if matches!(fills[i], Fill::Refused) {
                continue;
            }
            let Some(r) = m.requires.iter().find(|r| r.slot.value == slot.value) else {
                self.unknown_slot(p, slot);
                fills[i] = Fill::Refused;
                continue;
            };
            named.insert(&r.slot.value);
            fills[i] = match module_of(i) {
                Some(tm) if !r.modules.iter().any(|x| x.value == tm) => {
                    self.wrong_kind(p, c, r, tm);
                    Fill::Refused
                }
                // A target that did not resolve has reported its own error.
                _ => Fill::Slot(r),
            };
        }
        // The list form: each entry against the slots left open; entries that could fill the
        // same slots form a group, which binds only when it is one entry and one slot.
        let open: Vec<&'a RequireDecl> = m.requires.iter().filter(|r| !named.contains(r.slot.value.as_str())).collect();
        let mut groups: Vec<(Vec<usize>, BTreeSet<usize>)> = Vec::new();
        for (i, c) in conns.iter().enumerate() {
            if c.slot.is_some() || matches!(fills[i], Fill::Refused) {
                continue;
            }
            let Some(tm) = module_of(i) else { continue };
            let cands: BTreeSet<usize> = (0..open.len()).filter(|&k| open[k].modules.iter().any(|x| x.value == tm)).collect();
            if cands.is_empty() {
                continue;
            }
            let (mut entries, mut slots) = (vec![i], cands);
            groups.retain(|(ge, gs)| {
                if gs.is_disjoint(&slots) {
                    return true;
                }
                entries.extend(ge);
                slots.extend(gs);
                false
            });
            entries.sort();
            groups.push((entries, slots));
        }
        for (entries, slots) in groups {
            let slots: Vec<&'a RequireDecl> = slots.into_iter().map(|k| open[k]).collect();
            if let ([i], [r]) = (entries.as_slice(), slots.as_slice()) {
                fills[*i] = Fill::Slot(r);
                continue;
            }
            self.ambiguous(p, &entries, &slots, &fills);
            for i in entries {
                fills[i] = Fill::Refused;
            }
        }
        fills
    }

    /// An entry written twice (one service may fill two slots only when both are named), or a
    /// slot named twice.
    fn duplicates(&mut self, conns: &[ConnectDecl], fills: &mut [Fill<'a>]) {
        for (i, c) in conns.iter().enumerate() {
            let earlier = conns[..i].iter().find(|e| match (&e.slot, &c.slot) {
                (Some(a), Some(b)) => a.value == b.value,
                _ => e.target.value == c.target.value,
            });
            let Some(e) = earlier else { continue };
            let d = match (&e.slot, &c.slot) {
                (Some(a), Some(b)) => Diagnostic::error("E0011", format!("slot `{}` is filled twice in `connects`", b.value))
                    .primary(b.span, "named again here")
                    .secondary(a.span, "first named here")
                    .help("a slot takes one service: keep one of them"),
                _ => Diagnostic::error("E0011", format!("`connects` names `{}` twice", c.target.value))
                    .primary(c.target.span, "named again here")
                    .secondary(e.target.span, "first named here")
                    .help(match (&e.slot, &c.slot) {
                        (None, None) => "remove one; to fill two slots with one service, name them: `connects = { SLOT = \"SERVICE\", OTHER = \"SERVICE\" }`".to_string(),
                        _ => format!("remove the entry without a slot, or name its slot too: `SLOT = \"{}\"`", c.target.value),
                    }),
            };
            self.err(d);
            fills[i] = Fill::Refused;
        }
    }

    fn unknown_slot(&mut self, p: &Partial<'a>, slot: &Sp<String>) {
        let m = &p.module.decl;
        let mut d = Diagnostic::error("E0010", format!("module `{}` has no requirement slot `{}`", m.name.value, slot.value))
            .primary(slot.span, "no `[requires]` slot of this name");
        let names: Vec<String> = m.requires.iter().map(|r| format!("`{}`", r.slot.value)).collect();
        d = match did_you_mean(&slot.value, m.requires.iter().map(|r| r.slot.value.as_str())) {
            Some(x) => d.help(format!("did you mean `{x}`?")),
            None if names.is_empty() => d.help(format!(
                "module `{}` requires nothing; list connections that fill no slot: `connects = [\"SERVICE\"]`",
                m.name.value
            )),
            None => d.help(format!(
                "its slots are {}; list connections that fill no slot: `connects = [\"SERVICE\", {{ SLOT = \"SERVICE\" }}]`",
                names.join(", ")
            )),
        };
        self.err(d);
    }

    fn wrong_kind(&mut self, p: &Partial<'a>, c: &ConnectDecl, r: &RequireDecl, target_module: &str) {
        let mods = r.modules.iter().map(|x| format!("`{}`", x.value)).collect::<Vec<_>>().join(" or ");
        self.err(
            Diagnostic::error(
                "E0036",
                format!(
                    "slot `{}` of `{}` takes a {mods}, not `{}` (module `{target_module}`)",
                    r.slot.value,
                    p.decl.name.value,
                    c.service()
                ),
            )
            .primary(c.target.span, format!("a service of module `{target_module}`"))
            .secondary(r.slot.span, "the slot is declared here")
            .help(format!("name a service of module {mods} for `{}`", r.slot.value)),
        );
    }

    /// Several list entries, or several open slots, that could pair up: the table form decides.
    fn ambiguous(&mut self, p: &Partial<'a>, entries: &[usize], slots: &[&'a RequireDecl], fills: &[Fill<'a>]) {
        let conns = &p.decl.connects;
        let quoted = |xs: &mut dyn Iterator<Item = &str>| {
            let v: Vec<String> = xs.map(|x| format!("`{x}`")).collect();
            match v.as_slice() {
                [a] => a.clone(),
                [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
                [] => String::new(),
            }
        };
        let names = quoted(&mut entries.iter().map(|&i| conns[i].target.value.as_str()));
        let slot_names = quoted(&mut slots.iter().map(|r| r.slot.value.as_str()));
        let message = match entries {
            [_] => format!("`connects` does not say which slot {names} fills: it could be {}", slot_names.replace(" and ", " or ")),
            _ if slots.len() == 1 => format!("`connects` does not say which of {names} fills slot {slot_names}"),
            _ => format!("`connects` does not say which of {names} fills which of slots {slot_names}"),
        };
        let mut d =
            Diagnostic::error("E0036", message).primary(conns[entries[0]].target.span, "a list entry fills the one slot it matches");
        for &i in &entries[1..] {
            d = d.secondary(conns[i].target.span, "so could this");
        }
        for r in slots {
            let mods = r.modules.iter().map(|x| format!("`{}`", x.value)).collect::<Vec<_>>().join(" or ");
            d = d.secondary(r.slot.span, format!("slot `{}` takes a {mods}", r.slot.value));
        }
        d = d.help(format!("name the slots: `connects = {}`", suggestion(conns, entries, slots, fills)));
        if entries.len() < slots.len() {
            d = d.note("one service may fill several slots when each is named");
        }
        self.err(d);
    }
}

/// `connects` rewritten with the group's slots named (in order, the last entry filling any
/// slots left over), keeping every other entry as written.
fn suggestion(conns: &[ConnectDecl], entries: &[usize], slots: &[&RequireDecl], fills: &[Fill<'_>]) -> String {
    let mut table: Vec<String> = Vec::new();
    let mut list: Vec<String> = Vec::new();
    for (i, c) in conns.iter().enumerate() {
        // the group's entries come below; refused ones are reported on their own
        if entries.contains(&i) || matches!(fills[i], Fill::Refused) {
            continue;
        }
        match &c.slot {
            Some(s) => table.push(format!("{} = \"{}\"", s.value, c.target.value)),
            None => list.push(format!("\"{}\"", c.target.value)),
        }
    }
    for (k, r) in slots.iter().enumerate() {
        let i = entries[k.min(entries.len() - 1)];
        table.push(format!("{} = \"{}\"", r.slot.value, conns[i].target.value));
    }
    for &i in entries.iter().skip(slots.len()) {
        list.push(format!("\"{}\"", conns[i].target.value));
    }
    let table = format!("{{ {} }}", table.join(", "));
    if list.is_empty() { table } else { format!("[{}, {table}]", list.join(", ")) }
}
