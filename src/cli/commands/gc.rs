//! `kiln gc`: removes the store entries no root and no kept generation reaches.

use std::path::PathBuf;
use std::process::ExitCode;

use kiln::store::Store;

use crate::cli::env::{every_state_dir, store_dir};
use crate::cli::ui::{Ui, io_error};

/// `kiln gc`: what it removed (or would), as text on stderr or JSON on stdout.
pub(crate) fn gc(store: Option<PathBuf>, dry_run: bool, json: bool, keep: Option<u64>, states: Vec<PathBuf>, ui: Ui) -> ExitCode {
    let dir = store_dir(store);
    if !dir.is_dir() {
        return io_error(&format!("no store at `{}`", dir.display()));
    }
    // The deployed generations are roots too; a state file that cannot be read stops gc
    // before it removes anything.
    let states = if states.is_empty() { every_state_dir() } else { states };
    let kept = match kiln::generations::kept_entries(&states, keep.map(|k| k as usize)) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}; nothing was removed");
            return ExitCode::from(1);
        }
    };
    let store = match Store::open(&dir) {
        Ok(s) => s,
        Err(e) => return io_error(&format!("cannot open store `{}`: {e}", dir.display())),
    };
    match kiln::gc::collect(&store, &kept, dry_run) {
        Err(e) => io_error(&format!("cannot collect store `{}`: {e}", dir.display())),
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&r).expect("serialises"));
            } else {
                let verb = if dry_run { "would remove" } else { "removed" };
                for name in &r.removed {
                    ui.detail(&format!("{verb} {name}"));
                }
                for link in &r.stale_roots {
                    ui.detail(&format!("root {} no longer points into the store", link.display()));
                }
                ui.info(&format!(
                    "{verb} {} entries ({:.1} MiB); kept {} reached from roots and {} generations",
                    r.removed.len(),
                    r.freed_bytes as f64 / 1_048_576.0,
                    r.kept,
                    kept.len()
                ));
            }
            ExitCode::SUCCESS
        }
    }
}
