//! `kiln build` (and `--check`) and `kiln check --json`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kiln::pipeline::{self, Compiled, Options, Outcome};
use kiln::store::{self, Store};

use crate::cli::env::store_dir;
use crate::cli::ui::{Ui, io_error};

#[allow(clippy::too_many_arguments)]
pub(crate) fn build(
    path: &Path,
    opts: &Options,
    ui: Ui,
    c: &Compiled,
    store: Option<PathBuf>,
    out_link: &Path,
    check: bool,
    json: bool,
) -> ExitCode {
    if check {
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
    }
    let dir = store_dir(store);
    let store = match Store::open(&dir) {
        Ok(s) => s,
        Err(e) => return io_error(&format!("cannot open store `{}`: {e}", dir.display())),
    };
    if check && let Some(diff) = pipeline::differs_from_store(c, &store) {
        eprintln!("error: the store holds different bytes: {diff}");
        return ExitCode::from(1);
    }
    let entry = match store.writer().and_then(|held| pipeline::write(c, &store).map(|p| (p, held))) {
        Ok(p) => p,
        Err(e) => return io_error(&format!("cannot write to store `{}`: {e}", dir.display())),
    };
    let (entry, held) = (std::fs::canonicalize(&entry.0).unwrap_or(entry.0), entry.1);
    if let Err(e) = link_and_root(&store, out_link, &entry) {
        return io_error(&e);
    }
    drop(held);
    if json {
        println!("{}", pipeline::build_json(c, &entry));
    } else {
        println!("{}", entry.display());
    }
    for (name, h) in &c.hosts {
        ui.detail(&format!("host {name}: closure {}", h.closure));
    }
    ui.info(&format!(
        "built `{}`: {} hosts, {} artifacts -> {}",
        c.system.name,
        c.hosts.len(),
        c.manifest.artifacts.len(),
        out_link.display()
    ));
    ExitCode::SUCCESS
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
