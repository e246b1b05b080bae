//! `kiln plan`, `kiln diff` and `kiln generations`: what deploying would change, and what was
//! deployed.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kiln::pipeline::{self, Options, Outcome};

use crate::cli::args::GenerationsCommand;
use crate::cli::env::{every_state_dir, search_path, secret_values, store_dir};
use crate::cli::ui::{Ui, io_error, plan_error, report, usage_error};

/// Colour on stdout: a terminal, and no `NO_COLOR`.
fn stdout_color() -> bool {
    #[allow(clippy::disallowed_methods)] // the edge: NO_COLOR is read here
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stdout().is_terminal()
}

/// Prints a plan; exit 0 without changes, 2 with.
pub(crate) fn print_plan(p: &kiln::plan::Plan, json: bool) -> ExitCode {
    if json {
        print!("{}", kiln::plan_render::json(p));
    } else {
        print!("{}", kiln::plan_render::text(p, stdout_color()));
    }
    ExitCode::from(if p.has_changes() { 2 } else { 0 })
}

/// OpenTofu's plan in `<state>/tofu/`: the build's root and the system's backend staged in
/// the state directory, `init` and `plan` run there, and the directory put in place only when
/// both succeed (an unreachable backend changes nothing). Exit 1 on any failure.
fn tofu_plan(
    c: &pipeline::Compiled,
    state: &Path,
    program: Option<&Path>,
) -> Result<(kiln::tofu_workdir::TofuPlan, String, String), String> {
    use kiln::tofu_workdir as wd;
    let program = wd::find_program(program, search_path().as_deref())?;
    let backend = kiln::state_backend::Backend::of(c.system.deploy_state.as_ref());
    let root: Vec<(String, Vec<u8>)> = c.system_artifacts.iter().map(|a| (a.path.clone(), a.bytes.clone())).collect();
    let mut files = wd::files(&root, &backend);
    // The enrolment override the last cloud deploy applied (src/deploy/cloud.rs), so that an
    // enrolled server's user-data reads as unchanged.
    files.extend(kiln::deploy::enrol::override_for(&root, &kiln::deploy::enrol::enrolled_tokens(state))?);
    let staged = wd::prepare(state, &files)?;
    let plan = wd::plan(&program, &staged, &backend, &secret_values())
        .map_err(|e| format!("{e}\nnothing was changed in `{}`", state.display()))?;
    staged.install()?;
    let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok((plan, name, backend.describe(state)))
}

/// `kiln diff OLD NEW`.
pub(crate) fn diff_command(old: &Path, new: &Path, json: bool) -> ExitCode {
    let (o, n) = match (kiln::generations::read_build(old), kiln::generations::read_build(new)) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => return plan_error(&e),
    };
    if o.manifest.system != n.manifest.system {
        return plan_error(&format!(
            "`{}` is system `{}` but `{}` is system `{}`",
            old.display(),
            o.manifest.system,
            new.display(),
            n.manifest.system
        ));
    }
    print_plan(&kiln::plan::diff(Some(&o), &n), json)
}

/// `kiln plan PATH`: compile in memory, compare with the last generation.
pub(crate) fn plan_command(
    path: &Path,
    opts: &Options,
    ui: Ui,
    store: Option<PathBuf>,
    state: Option<PathBuf>,
    tofu: Option<Option<PathBuf>>,
    json: bool,
) -> ExitCode {
    let c = match pipeline::compile(path, opts) {
        Err(e) => return plan_error(&e.0),
        Ok(Outcome::Failed(fail)) => {
            report(&fail.sources, &fail.diagnostics, ui);
            return plan_error(&format!("could not compile `{}`", path.display()));
        }
        Ok(Outcome::Ok(c)) => c,
    };
    report(&c.sources, &c.warnings, ui);
    let state = state.unwrap_or_else(|| Path::new(".kiln/state").join(&c.system.name));
    let gens = match kiln::generations::list(&state) {
        Ok(g) => g,
        Err(e) => return plan_error(&e),
    };
    let old = match gens.last() {
        None => None,
        Some(g) if g.system != c.system.name => {
            return plan_error(&format!(
                "`{}` records system `{}`, not `{}`: --state names another system's state",
                kiln::generations::file_of(&state, g.number).display(),
                g.system,
                c.system.name
            ));
        }
        Some(g) => match kiln::generations::build_of(&store_dir(store), &state, g) {
            Ok(b) => Some(b),
            Err(e) => return plan_error(&e),
        },
    };
    let new = kiln::plan::Build { manifest: c.manifest.clone(), facts: kiln::plan_model::facts(&c.system, &c.hosts, &c.sources) };
    let plan = kiln::plan::diff(old.as_ref(), &new);
    let Some(program) = tofu else { return print_plan(&plan, json) };
    let (t, name, backend) = match tofu_plan(&c, &state, program.as_deref()) {
        Ok(x) => x,
        Err(e) => return plan_error(&e),
    };
    if json {
        print!("{}", kiln::plan_render::json_with_tofu(&plan, &t, &name, &backend));
    } else {
        let color = stdout_color();
        print!("{}{}", kiln::plan_render::text(&plan, color), kiln::plan_render::tofu_text(&t, &name, &backend, color));
    }
    ExitCode::from(if plan.has_changes() || t.changes { 2 } else { 0 })
}

/// `kiln generations [add RESULT]`.
pub(crate) fn generations_command(
    command: Option<GenerationsCommand>,
    state: Option<PathBuf>,
    system: Option<String>,
    json: bool,
    ui: Ui,
) -> ExitCode {
    if let Some(GenerationsCommand::Add { result, store, state: add_state, json: add_json }) = command {
        let dir = store_dir(store);
        let (root, entry) = match (std::fs::canonicalize(&dir), std::fs::canonicalize(&result)) {
            (Ok(r), Ok(e)) => (r, e),
            (Err(e), _) => return io_error(&format!("no store at `{}`: {e}", dir.display())),
            (_, Err(e)) => return io_error(&format!("cannot read `{}`: {e}", result.display())),
        };
        if entry.parent() != Some(root.as_path()) {
            return plan_error(&format!("`{}` is not an entry of the store `{}`", result.display(), dir.display()));
        }
        let build = match kiln::generations::read_build(&entry) {
            Ok(b) => b,
            Err(e) => return plan_error(&e),
        };
        let state = add_state.or(state).unwrap_or_else(|| Path::new(".kiln/state").join(&build.manifest.system));
        #[allow(clippy::disallowed_methods)] // the edge: a generation's time is read here
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return match kiln::generations::add(&state, &build.manifest, &name, now) {
            Ok(g) => {
                if add_json || json {
                    println!("{}", serde_json::to_string_pretty(&g).expect("serialises"));
                }
                ui.info(&format!("recorded generation {} of `{}` in {}", g.number, g.system, state.display()));
                ExitCode::SUCCESS
            }
            Err(e) => plan_error(&e),
        };
    }
    let state = match (state, system) {
        (Some(s), _) => s,
        (None, Some(name)) => Path::new(".kiln/state").join(name),
        (None, None) => match every_state_dir().as_slice() {
            [one] => one.clone(),
            [] => return usage_error("no state in .kiln/state: name one with --state DIR"),
            _ => return usage_error("several systems in .kiln/state: choose one with --system NAME or --state DIR"),
        },
    };
    match kiln::generations::list(&state) {
        Err(e) => plan_error(&e),
        Ok(gens) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&gens).expect("serialises"));
            } else {
                for g in &gens {
                    println!("{:>4}  {}  {}  {} hosts  {}", g.number, g.time, g.hash.get(..12).unwrap_or(&g.hash), g.hosts.len(), g.entry);
                }
                if gens.is_empty() {
                    ui.info(&format!("no generations in {}", state.display()));
                }
            }
            ExitCode::SUCCESS
        }
    }
}
