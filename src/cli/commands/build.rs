//! `kiln build` (and `--check`) and `kiln check --json`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::io::Write;

use kiln::cache;
use kiln::pipeline::{self, Compiled, Options, Outcome, Stored};
use kiln::store::{self, Store};

use crate::cli::env::store_dir;
use crate::cli::ui::{Ui, io_error};

/// Where and how `kiln build` puts its result.
pub(crate) struct Target {
    pub(crate) store: Option<PathBuf>,
    pub(crate) out_link: PathBuf,
    pub(crate) check: bool,
    pub(crate) json: bool,
    /// Answer from the warm-build cache when a recorded build has the same inputs.
    pub(crate) cache: bool,
}

/// `kiln build`: from the warm-build cache when the inputs are those of a recorded build whose
/// entry is still in the store, else compiled, written and recorded.
pub(crate) fn cached_or_built(path: &Path, opts: &Options, ui: Ui, t: Target) -> ExitCode {
    let probe = if t.cache { cache::Probe::new(path, opts) } else { None };
    if let Some(probe) = &probe
        && let Some(code) = from_cache(probe, ui, &t)
    {
        return code;
    }
    if t.check {
        return crate::cli::with_compiled(path, opts, ui, |c| build_and_check(path, opts, ui, c, &t));
    }
    match pipeline::build(path, opts, &store_dir(t.store.clone())) {
        Err(e) => io_error(&e.0),
        Ok(Outcome::Failed(fail)) => crate::cli::report_failed(path, &fail, ui),
        Ok(Outcome::Ok(s)) => {
            crate::cli::report_compiled(&s.sources, &s.warnings, &s.system, ui);
            finish(path, opts, ui, *s, &t, probe.as_ref())
        }
    }
}

/// A hit: the recorded entry gets the result link and its root as a build would give it, and
/// what the build printed is printed again. `None` on a miss (nothing done).
fn from_cache(probe: &cache::Probe, ui: Ui, t: &Target) -> Option<ExitCode> {
    let dir = store_dir(t.store.clone());
    // No records, no hit: opening the store would create it (and its lock) for a build that
    // may still fail, which must leave nothing behind.
    if !dir.join(cache::DIR).is_dir() {
        return None;
    }
    let store = Store::open(&dir).ok()?;
    // Held from the lookup until the root is registered: `kiln gc` cannot take the entry between.
    let held = store.writer().ok()?;
    let r = cache::lookup(&store, probe)?;
    let entry = store.root.join(&r.entry);
    let entry = std::fs::canonicalize(&entry).unwrap_or(entry);
    if let Err(e) = link_and_root(&store, &t.out_link, &entry) {
        return Some(io_error(&e));
    }
    drop(held);
    if !ui.quiet {
        let text = if crate::cli::ui::color() { &r.printed.warnings_color } else { &r.printed.warnings };
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
    ui.detail(&format!("read {} files; {} modules in use", r.printed.files_read, r.printed.modules_in_use));
    ui.detail(&format!("from cache: the inputs are those of the build of {}", entry.display()));
    if t.json {
        println!(
            "{}",
            pipeline::build_json_of(&r.system, &r.hash, &entry, r.hosts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
        );
    } else {
        println!("{}", entry.display());
    }
    for (name, closure) in &r.hosts {
        ui.detail(&format!("host {name}: closure {closure}"));
    }
    ui.info(&format!("built `{}`: {} hosts, {} artifacts -> {}", r.system, r.hosts.len(), r.printed.artifacts, t.out_link.display()));
    Some(ExitCode::SUCCESS)
}

/// A build written into the store: the result link and its root, the warm-build record, and
/// what a build prints.
fn finish(path: &Path, opts: &Options, ui: Ui, s: Stored, t: &Target, probe: Option<&cache::Probe>) -> ExitCode {
    let entry = std::fs::canonicalize(&s.entry).unwrap_or_else(|_| s.entry.clone());
    if let Err(e) = link_and_root(&s.store, &t.out_link, &entry) {
        return io_error(&e);
    }
    if let Some(probe) = probe {
        let printed = cache::Printed {
            warnings: kiln::diag::render(&s.sources, &s.warnings, false),
            warnings_color: kiln::diag::render(&s.sources, &s.warnings, true),
            files_read: s.sources.len(),
            modules_in_use: s.system.services.values().map(|s| &s.module).collect::<std::collections::BTreeSet<_>>().len(),
            artifacts: s.manifest.artifacts.len(),
        };
        if let Err(e) = cache::save(&s.store, probe, path, opts, &s, &entry, printed) {
            ui.detail(&format!("the build was not recorded for the warm-build cache: {e}"));
        }
    }
    drop(s.held);
    print_built(ui, &s.manifest, &entry, t);
    ExitCode::SUCCESS
}

/// `kiln build --check`: the system compiled twice must give the same manifest, and a store
/// entry of the same name the same bytes; then it is written as a build writes it, from the
/// compile held in memory.
fn build_and_check(path: &Path, opts: &Options, ui: Ui, c: &Compiled, t: &Target) -> ExitCode {
    match pipeline::compile(path, opts) {
        Ok(Outcome::Ok(again)) => {
            if let Some(diff) = pipeline::difference(c, &again) {
                eprintln!("error: the rebuild differs: {diff}");
                return ExitCode::from(1);
            }
        }
        Ok(Outcome::Failed(_)) => {
            eprintln!("error: the rebuild failed where the first build succeeded");
            return ExitCode::from(1);
        }
        Err(e) => return io_error(&e.0),
    }
    let dir = store_dir(t.store.clone());
    let store = match Store::open(&dir) {
        Ok(s) => s,
        Err(e) => return io_error(&format!("cannot open store `{}`: {e}", dir.display())),
    };
    if let Some(diff) = pipeline::differs_from_store(c, &store) {
        eprintln!("error: the store holds different bytes: {diff}");
        return ExitCode::from(1);
    }
    let entry = match store.writer().and_then(|held| pipeline::write(c, &store).map(|p| (p, held))) {
        Ok(p) => p,
        Err(e) => return io_error(&format!("cannot write to store `{}`: {e}", dir.display())),
    };
    let (entry, held) = (std::fs::canonicalize(&entry.0).unwrap_or(entry.0), entry.1);
    if let Err(e) = link_and_root(&store, &t.out_link, &entry) {
        return io_error(&e);
    }
    drop(held);
    print_built(ui, &c.manifest, &entry, t);
    ExitCode::SUCCESS
}

/// What `kiln build` prints once the entry is in place.
fn print_built(ui: Ui, m: &pipeline::Manifest, entry: &Path, t: &Target) {
    if t.json {
        println!("{}", pipeline::build_json(m, entry));
    } else {
        println!("{}", entry.display());
    }
    for (name, h) in &m.hosts {
        ui.detail(&format!("host {name}: closure {}", h.closure));
    }
    ui.info(&format!("built `{}`: {} hosts, {} artifacts -> {}", m.system, m.hosts.len(), m.artifacts.len(), t.out_link.display()));
}

/// `kiln check --json`: every diagnostic as data on stdout; the exit code as without `--json`.
pub(crate) fn check_json(path: &Path, opts: &Options) -> ExitCode {
    let (value, code) = match pipeline::compile(path, opts) {
        Err(e) => (serde_json::json!({ "ok": false, "error": e.0 }), 2),
        Ok(Outcome::Failed(fail)) => (kiln::diag_json::report(&fail.sources, &fail.diagnostics), 1),
        Ok(Outcome::Ok(c)) => (kiln::diag_json::report(&c.sources, &c.warnings), 0),
    };
    println!("{}", kiln::diag_json::to_string(&value));
    ExitCode::from(code)
}

/// Points the result link at a new entry and registers the link as a gc root (while the
/// caller still holds the store, so `kiln gc` never sees the entry without its root).
pub(crate) fn link_and_root(store: &Store, link: &Path, entry: &Path) -> Result<(), String> {
    store::set_link(link, entry).map_err(|e| format!("cannot create link `{}`: {e}", link.display()))?;
    store.add_root(link).map_err(|e| format!("cannot register `{}` as a root in `{}`: {e}", link.display(), store.root.display()))
}
