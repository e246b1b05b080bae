//! Start order: services sorted by phase, and within it so each starts after what it connects
//! to; a cycle, or a connection to a later phase, is an error that names the services. A host's
//! services then start in groups ([`start_groups`]): everything whose dependencies are up starts
//! together.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::Diagnostic;
use crate::model::{Service, System};

pub fn start_order(sys: &mut System) -> Result<(), Box<Diagnostic>> {
    // Services by index in name order (the map's order), so every tie below breaks by name.
    let names: Vec<&str> = sys.services.keys().map(String::as_str).collect();
    let index = |n: &str| names.binary_search(&n).ok();
    let deps: Vec<Vec<usize>> = sys
        .services
        .values()
        .map(|s| s.deps.iter().filter(|d| !d.derived && !d.no_wait).filter_map(|d| index(&d.service)).collect())
        .collect();
    for s in sys.services.values() {
        for d in s.deps.iter().filter(|d| !d.derived && !d.no_wait) {
            let Some(t) = sys.services.get(&d.service) else { continue };
            if t.phase > s.phase {
                return Err(Box::new(
                    Diagnostic::error(
                        "phase-order",
                        format!("`{}` (phase {}) connects to `{}`, which starts later (phase {})", s.name, s.phase, t.name, t.phase),
                    )
                    .primary(d.span, "this connection")
                    .secondary(t.span, format!("phase {}", t.phase))
                    .help(format!("move `{}` to phase {} or earlier, or `{}` to phase {}", t.name, s.phase, s.name, t.phase)),
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(&deps) {
        let cycle: Vec<&str> = cycle.into_iter().map(|i| names[i]).collect();
        let first = &sys.services[cycle[0]];
        let edge = first.deps.iter().find(|d| d.service == cycle[1]).map(|d| d.span).unwrap_or(first.span);
        let path = cycle.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(" → ");
        let mut d = Diagnostic::error("dependency-cycle", format!("dependency cycle: {path}"))
            .primary(edge, format!("`{}` connects to `{}` here", cycle[0], cycle[1]));
        for w in cycle.windows(2).skip(1) {
            let s = &sys.services[w[0]];
            if let Some(dep) = s.deps.iter().find(|d| d.service == w[1]) {
                d = d.secondary(dep.span, format!("`{}` connects to `{}`", w[0], w[1]));
            }
        }
        return Err(Box::new(d.help("services start after what they connect to, so one of these connections must go")));
    }
    // Kahn's algorithm, ready set ordered by phase, then name, for a stable result.
    let phases: Vec<u32> = sys.services.values().map(|s| s.phase).collect();
    let mut remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    for (n, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(n);
        }
    }
    let mut ready: BTreeSet<(u32, usize)> = (0..names.len()).filter(|&n| remaining[n] == 0).map(|n| (phases[n], n)).collect();
    let mut order = Vec::with_capacity(names.len());
    while let Some((_, n)) = ready.pop_first() {
        order.push(n);
        for &d in &dependents[n] {
            remaining[d] -= 1;
            if remaining[d] == 0 {
                ready.insert((phases[d], d));
            }
        }
    }
    let mut by_host: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let services: Vec<&Service> = sys.services.values().collect();
    for &n in &order {
        by_host.entry(services[n].host.as_str()).or_default().push(names[n].to_string());
    }
    let order: Vec<String> = order.into_iter().map(|n| names[n].to_string()).collect();
    let mut by_host: BTreeMap<String, Vec<String>> = by_host.into_iter().map(|(h, v)| (h.to_string(), v)).collect();
    for host in sys.hosts.values_mut() {
        host.services = by_host.remove(&host.name).unwrap_or_default();
    }
    sys.start_order = order;
    Ok(())
}

/// A host's services (in start order) as groups started one after another, each started as a
/// whole and healthy before the next: a service goes in the first group after every group
/// holding a same-host service it waits for, and after every group of an earlier phase. So a
/// service still starts only once what it connects to is healthy and its phase has begun, but
/// services that do not wait for each other start together (one `docker compose up --wait` for
/// the group instead of one per service: a host with eight services started in three steps).
pub fn start_groups<'a>(services: &[&'a Service]) -> Vec<Vec<&'a Service>> {
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    // The first level a service of each phase may take: after every level of earlier phases.
    let mut phase_floor: BTreeMap<u32, usize> = BTreeMap::new();
    let mut groups: Vec<Vec<&'a Service>> = Vec::new();
    for s in services {
        let earlier = phase_floor.range(..s.phase).map(|(_, l)| l + 1).max().unwrap_or(0);
        let after_deps = s
            .deps
            .iter()
            .filter(|d| !d.derived && !d.no_wait && d.same_host)
            .filter_map(|d| level.get(d.service.as_str()).map(|l| l + 1))
            .max()
            .unwrap_or(0);
        let l = earlier.max(after_deps);
        level.insert(s.name.as_str(), l);
        let top = phase_floor.entry(s.phase).or_insert(l);
        *top = (*top).max(l);
        if groups.len() <= l {
            groups.resize_with(l + 1, Vec::new);
        }
        groups[l].push(s);
    }
    groups
}

/// The first cycle found (by index, which is name order), as a closed path `a, b, …, a`.
fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(n: usize, deps: &[Vec<usize>], marks: &mut [Mark], stack: &mut Vec<usize>) -> Option<Vec<usize>> {
        match marks[n] {
            Mark::Done => return None,
            Mark::Open => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(n);
                return Some(cycle);
            }
            Mark::New => {}
        }
        marks[n] = Mark::Open;
        stack.push(n);
        for &d in &deps[n] {
            if let Some(c) = visit(d, deps, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks[n] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; deps.len()];
    for n in 0..deps.len() {
        if let Some(c) = visit(n, deps, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}
