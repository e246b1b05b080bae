//! The commands that describe kiln itself: `kiln modules`, `kiln explain` and `kiln man`.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use kiln::diag;

use crate::cli::args::{Cli, ModulesCommand};
use crate::cli::ui::{Ui, io_error, usage_error};

pub(crate) fn modules(lib: &kiln::load::Inputs, command: ModulesCommand, ui: Ui) -> ExitCode {
    match command {
        ModulesCommand::List { json } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&kiln::docs::list_json(lib.modules.values())).expect("serialises"));
            } else {
                print!("{}", kiln::docs::list(lib.modules.values()));
            }
            ExitCode::SUCCESS
        }
        ModulesCommand::Show { name, json } => match lib.modules.get(&name) {
            Some(m) if json => {
                println!("{}", serde_json::to_string_pretty(&kiln::docs::page_json(m)).expect("serialises"));
                ExitCode::SUCCESS
            }
            Some(m) => {
                print!("{}", kiln::docs::page(m));
                ExitCode::SUCCESS
            }
            None => {
                let hint = diag::did_you_mean(&name, lib.modules.keys().map(String::as_str))
                    .map(|m| format!(" (did you mean `{m}`?)"))
                    .unwrap_or_default();
                usage_error(&format!("no module `{name}`{hint}; `kiln modules list` shows them all"))
            }
        },
        ModulesCommand::Check { dirs, json } => {
            let report = match kiln::module_check::check(&dirs) {
                Ok(r) => r,
                Err(e) => return io_error(&e.0),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report).expect("serialises"));
            } else {
                print!("{}", kiln::module_check::render_text(&report));
            }
            if report.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS }
        }
        ModulesCommand::Docs { dir } => {
            if let Err(e) = write_docs(&dir, &kiln::docs::pages(lib.modules.values())) {
                return io_error(&format!("cannot write `{}`: {e}", dir.display()));
            }
            ui.info(&format!("wrote {} module pages to {}", lib.modules.len(), dir.display()));
            ExitCode::SUCCESS
        }
    }
}

pub(crate) fn explain(id: Option<&str>, json: bool) -> ExitCode {
    let all = kiln::check::everything();
    let Some(id) = id else {
        if json {
            println!("{}", serde_json::to_string_pretty(&all.iter().map(explanation_json).collect::<Vec<_>>()).expect("serialises"));
        } else {
            for e in &all {
                println!("{:<24} {}", e.id, e.summary);
            }
        }
        return ExitCode::SUCCESS;
    };
    match all.iter().find(|e| e.id.eq_ignore_ascii_case(id)) {
        Some(e) if json => {
            println!("{}", serde_json::to_string_pretty(&explanation_json(e)).expect("serialises"));
            ExitCode::SUCCESS
        }
        Some(e) => {
            println!("{}: {}\n\n{}", e.id, e.summary, e.explanation);
            ExitCode::SUCCESS
        }
        None => {
            let hint = diag::did_you_mean(id, all.iter().map(|e| e.id)).map(|m| format!(" (did you mean `{m}`?)")).unwrap_or_default();
            usage_error(&format!("no rule or error code `{id}`{hint}; `kiln explain` lists them"))
        }
    }
}

pub(crate) fn explanation_json(e: &kiln::check::Explanation) -> serde_json::Value {
    serde_json::json!({ "id": e.id, "summary": e.summary, "explanation": e.explanation, "allowable": e.allowable })
}

/// One page for `kiln` and one for each visible command, as clap_mangen renders them.
pub(crate) fn write_man_pages(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let root = Cli::command();
    let mut pages = vec![("kiln".to_string(), root.clone())];
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("kiln-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().display_name(name.clone()).bin_name(name.clone())));
    }
    for (name, cmd) in &pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)?;
    }
    Ok(pages.len())
}

/// Replaces the `.md` pages in `dir` with `pages`, so a removed module's page goes too.
pub(crate) fn write_docs(dir: &Path, pages: &[(String, String)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "md") {
            std::fs::remove_file(p)?;
        }
    }
    for (name, text) in pages {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}
