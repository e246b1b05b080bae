//! The `kiln` command line: parses arguments, dispatches to one function per command, prints
//! data on stdout and diagnostics on stderr.

mod args;
mod commands;
mod env;
mod ui;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use kiln::diag::Severity;
use kiln::pipeline::{self, Compiled, Options, Outcome};

use args::{Cli, Command, EarlyInputs, InputArgs};
use commands::{boot, build, deploy, gc, plan, reference, rollback, secrets, transfer};
use env::source_date_epoch;
use ui::{Ui, io_error, report, usage_error};

/// Runs the command line; the exit code is what `main` returns.
pub fn run() -> ExitCode {
    restore_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let ui = Ui { quiet: cli.quiet, verbose: cli.verbose };
    let early = cli.early;
    match cli.command {
        Command::Check { path, inputs, json } => with_options(early, inputs, |opts| {
            let opts = Options { check_only: true, ..opts };
            if json {
                return build::check_json(&path, &opts);
            }
            with_compiled(&path, &opts, ui, |c| {
                ui.info(&format!("ok: system `{}`, {} hosts, {} services", c.system.name, c.system.hosts.len(), c.system.services.len()));
                ExitCode::SUCCESS
            })
        }),
        Command::Build { path, inputs, store, out_link, check, json, no_cache } => with_options(early, inputs, |opts| {
            build::cached_or_built(&path, &opts, ui, build::Target { store, out_link, check, json, cache: !no_cache && !check })
        }),
        Command::Boot {
            targets,
            all,
            hosts,
            down,
            state,
            inputs,
            image,
            keep,
            secrets,
            timeout,
            data_disk,
            memory,
            lab_images,
            apt_repo,
            json,
        } => {
            let state = state.unwrap_or_else(boot::state_dir);
            match env::accel_config() {
                Ok(c) => kiln::boot::accel::configure(c),
                Err(e) => return usage_error(&e),
            }
            let fleet = all || !hosts.is_empty();
            let (host, path) = match (targets.as_slice(), fleet || down) {
                ([host, path], false) => (Some(host.clone()), PathBuf::from(path)),
                ([path], true) => (None, PathBuf::from(path)),
                ([], true) if down => return boot::down(&state, None, json),
                _ if down => return usage_error("kiln boot --down takes at most the system's PATH"),
                _ if fleet => return usage_error("kiln boot --all/--hosts takes only the system's PATH"),
                _ => return usage_error("kiln boot takes HOST PATH (or --all PATH, --hosts A,B PATH, --down [PATH])"),
            };
            if fleet && data_disk.is_some() {
                return usage_error("--data-disk boots one host: not with --all or --hosts");
            }
            with_options(early, inputs, |opts| {
                with_compiled(&path, &opts, ui, |c| {
                    if down {
                        return boot::down(&state, Some(&c.system.name), json);
                    }
                    if fleet {
                        let selection = if all { c.hosts.keys().cloned().collect() } else { hosts.clone() };
                        let f = boot::Fleet {
                            hosts: selection,
                            image: image.clone(),
                            keep,
                            secrets: secrets.clone(),
                            timeout,
                            memory,
                            state: state.clone(),
                            apt_repo: apt_repo.clone(),
                            lab_images: lab_images.clone(),
                        };
                        return boot::fleet(c, &path, &opts, f, json);
                    }
                    let machine = boot::Machine {
                        memory,
                        lab_images: lab_images.clone(),
                        data_disk: data_disk.clone(),
                        apt_repo: apt_repo.clone(),
                        state: state.clone(),
                    };
                    boot::boot(
                        c,
                        &path,
                        &opts,
                        host.as_deref().unwrap_or_default(),
                        image.clone(),
                        keep,
                        secrets.clone(),
                        timeout,
                        machine,
                        json,
                    )
                })
            })
        }
        Command::Plan { path, inputs, store, state, tofu, json } => {
            with_options(early, inputs, |opts| plan::plan_command(&path, &opts, ui, store, state, tofu, json))
        }
        Command::Show { path, inputs, json } => with_options(early, inputs, |opts| {
            with_compiled(&path, &opts, ui, |c| {
                let out = if json { kiln::pipeline::show_json(c) } else { kiln::pipeline::show_text(c) };
                print!("{out}");
                ExitCode::SUCCESS
            })
        }),
        Command::Deploy { path, inputs, deploy: d, rollout, from } => {
            with_options(early, inputs, |opts| deploy::deploy(&path, &opts, ui, &d, &rollout, from.as_deref()))
        }
        Command::Rollback { generation, system, inputs, deploy: d, rollout } => {
            with_options(early, inputs, |opts| rollback::rollback(&system, generation, &opts, ui, &d, &rollout))
        }
        Command::Secrets { command: args::SecretsCommand::Push { host, path, inputs, deploy: d } } => {
            with_options(early, inputs, |opts| deploy::push_secrets(&path, &opts, ui, &d, &host))
        }
        Command::Modules { library, command } => with_options(early, InputArgs { library, identity: None }, |opts| {
            with_library(&opts, ui, |lib| reference::modules(lib, command, ui))
        }),
        Command::Schema { markdown: true, .. } => {
            print!("{}", kiln::schema::reference::markdown());
            ExitCode::SUCCESS
        }
        Command::Schema { library, .. } => with_options(early, InputArgs { library, identity: None }, |opts| {
            with_library(&opts, ui, |lib| {
                let schema = kiln::schema::system_schema(lib.modules.values());
                println!("{}", serde_json::to_string_pretty(&schema).expect("serialises"));
                ExitCode::SUCCESS
            })
        }),
        command => {
            if let Some(flag) = early.given() {
                return usage_error(&format!(
                    "`{flag}` means nothing to `kiln {}`; it is read by check, build, show, plan, boot, deploy, rollback, secrets push, modules and schema",
                    command.name()
                ));
            }
            match command {
                Command::Push { url, from, jobs, endpoint, json } => transfer::push(&url, &from, jobs, endpoint.as_deref(), json, ui),
                Command::Pull { url, hash, store, endpoint, jobs, out_link, json } => {
                    transfer::pull(&url, &hash, store, endpoint.as_deref(), jobs, &out_link, json, ui)
                }
                Command::Explain { id, json } => reference::explain(id.as_deref(), json),
                Command::Gc { store, dry_run, json, keep, state } => gc::gc(store, dry_run, json, keep, state, ui),
                Command::Diff { old, new, json } => plan::diff_command(&old, &new, json),
                Command::Generations { command, state, system, json } => plan::generations_command(command, state, system, json, ui),
                Command::SeedServe { dir } => match kiln::boot::seed_serve(&dir) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(_) => ExitCode::from(2),
                },
                Command::RepoServe { dir } => match kiln::boot::repo_serve(&dir) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(_) => ExitCode::from(2),
                },
                Command::EncryptSecrets { file, recipients } => secrets::encrypt_secrets(&file, &recipients),
                Command::Completions { shell } => {
                    clap_complete::generate(shell, &mut Cli::command(), "kiln", &mut std::io::stdout());
                    ExitCode::SUCCESS
                }
                Command::Man { dir } => match reference::write_man_pages(&dir) {
                    Ok(n) => {
                        ui.info(&format!("wrote {n} man pages to {}", dir.display()));
                        ExitCode::SUCCESS
                    }
                    Err(e) => io_error(&format!("cannot write man pages to `{}`: {e}", dir.display())),
                },
                Command::Check { .. }
                | Command::Build { .. }
                | Command::Boot { .. }
                | Command::Show { .. }
                | Command::Plan { .. }
                | Command::Deploy { .. }
                | Command::Rollback { .. }
                | Command::Secrets { .. }
                | Command::Modules { .. }
                | Command::Schema { .. } => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

/// `kiln … | head` ends quietly when the reader goes away, as other Unix tools do, instead of
/// panicking on a write to a closed pipe (Rust ignores SIGPIPE by default).
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Merges the flags given before and after the command name (and `$SOPS_AGE_KEY_FILE`) into
/// the pipeline's options, reading the identity file, then runs `f`.
fn with_options(early: EarlyInputs, inputs: InputArgs, f: impl FnOnce(Options) -> ExitCode) -> ExitCode {
    let mut module_dirs = early.modules;
    module_dirs.extend(inputs.library.modules);
    #[allow(clippy::disallowed_methods)] // the one environment variable sops users already set
    let identity_path =
        inputs.identity.or(early.identity).or_else(|| std::env::var_os("SOPS_AGE_KEY_FILE").filter(|v| !v.is_empty()).map(PathBuf::from));
    let identity = match &identity_path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t),
            Err(e) => return io_error(&format!("cannot read identity `{}`: {e}", p.display())),
        },
        None => None,
    };
    f(Options { module_dirs, render: kiln::render::RenderOptions { mtime: source_date_epoch() }, identity, check_only: false })
}

/// Runs `f` on the module library, after reporting any errors in module files.
fn with_library(opts: &Options, ui: Ui, f: impl FnOnce(&kiln::load::Inputs) -> ExitCode) -> ExitCode {
    match kiln::load::library(&opts.module_dirs) {
        Err(e) => io_error(&e.0),
        Ok(lib) => {
            report(&lib.sources, &lib.diags, ui);
            if lib.diags.iter().any(|d| d.severity == Severity::Error) {
                eprintln!("error: the module library has errors");
                return ExitCode::from(1);
            }
            f(&lib)
        }
    }
}

pub(crate) fn with_compiled(path: &Path, opts: &Options, ui: Ui, f: impl FnOnce(&Compiled) -> ExitCode) -> ExitCode {
    match pipeline::compile(path, opts) {
        Err(e) => io_error(&e.0),
        Ok(Outcome::Failed(fail)) => report_failed(path, &fail, ui),
        Ok(Outcome::Ok(c)) => {
            report_compiled(&c.sources, &c.warnings, &c.system, ui);
            let code = f(&c);
            // The command ends here and the process with it: the operating system takes the
            // model back at once, where freeing it node by node is a share of `kiln check`'s
            // time on a large fleet (docs/performance.md). It holds only memory.
            std::mem::forget(c);
            code
        }
    }
}

/// A compile with errors: every diagnostic, then the count; exit 1.
pub(crate) fn report_failed(path: &Path, fail: &pipeline::Failed, ui: Ui) -> ExitCode {
    report(&fail.sources, &fail.diagnostics, ui);
    let n = fail.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    eprintln!("error: could not compile `{}` due to {n} error{}", path.display(), if n == 1 { "" } else { "s" });
    ExitCode::from(1)
}

/// A compile without errors: its warnings, and what it read.
pub(crate) fn report_compiled(sources: &kiln::diag::Sources, warnings: &[kiln::diag::Diagnostic], system: &kiln::model::System, ui: Ui) {
    report(sources, warnings, ui);
    ui.detail(&format!(
        "read {} files; {} modules in use",
        sources.len(),
        system.services.values().map(|s| &s.module).collect::<std::collections::BTreeSet<_>>().len()
    ));
}
