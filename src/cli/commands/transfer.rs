//! `kiln push` and `kiln pull`: a build's closure to and from an artifact store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kiln::pipeline;
use kiln::store::Store;

use crate::cli::commands::build::link_and_root;
use crate::cli::env::{credentials, store_dir};
use crate::cli::ui::{Ui, io_error};

pub(crate) fn push(url: &str, from: &Path, jobs: usize, endpoint: Option<&str>, json: bool, ui: Ui) -> ExitCode {
    let target = match kiln::push::Target::parse(url, endpoint, &credentials()) {
        Ok(t) => t,
        Err(e) => return io_error(&e.0),
    };
    match kiln::push::push(&target, from, jobs, ui.feedback(json)) {
        Ok(s) => {
            if json {
                println!("{}", serde_json::to_string(&s).expect("serialises"));
            } else {
                ui.info(&format!("pushed to {url}: {} uploaded, {} already there, {} bytes", s.uploaded, s.skipped, s.bytes));
                println!("{}", s.hash);
            }
            ExitCode::SUCCESS
        }
        Err(e) => io_error(&format!("push failed: {}", e.0)),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn pull(
    url: &str,
    hash: &str,
    store: Option<PathBuf>,
    endpoint: Option<&str>,
    jobs: usize,
    out_link: &Path,
    json: bool,
    ui: Ui,
) -> ExitCode {
    let target = match kiln::push::Target::parse(url, endpoint, &credentials()) {
        Ok(t) => t,
        Err(e) => return io_error(&e.0),
    };
    let (manifest, files) = match kiln::push::pull(&target, hash, jobs, ui.feedback(json)) {
        Ok(x) => x,
        Err(e) => return io_error(&format!("pull refused, nothing written: {}", e.0)),
    };
    let dir = store_dir(store);
    let written = Store::open(&dir).and_then(|s| {
        let held = s.writer()?;
        pipeline::write_pulled(&manifest, &files, &s).map(|entry| (s, entry, held))
    });
    match written {
        Ok((s, entry, held)) => {
            let entry = std::fs::canonicalize(&entry).unwrap_or(entry);
            if let Err(e) = link_and_root(&s, out_link, &entry) {
                return io_error(&e);
            }
            drop(held);
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "system": manifest.system, "hash": manifest.hash, "path": entry, "files": files.len() })
                );
            } else {
                println!("{}", entry.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => io_error(&format!("cannot write to store `{}`: {e}", dir.display())),
    }
}
