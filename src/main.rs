//! The `kiln` command line: parses arguments, runs the pipeline, prints data on stdout and
//! diagnostics on stderr. Exit 0 on success, 1 for errors in the input, 2 for usage or IO.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use kiln::diag::{self, Diagnostic, Severity, Sources};
use kiln::pipeline::{self, Compiled, Options, Outcome};
use kiln::store::{self, Store};

const EXAMPLES: &str = "\
Examples:
  kiln check flake-free-examples/five-vps-saas        errors at file:line:col, all at once
  kiln show flake-free-examples/five-vps-saas         hosts, services, firewall, start order
  kiln build flake-free-examples/five-vps-saas        write the store, link ./result
  kiln build --check --json path/to/system            build twice, compare, summary as JSON
  kiln push s3://bucket/kiln --from result            upload the closure by content hash
  kiln explain zone-crossing                          why a rule exists
  kiln plan flake-free-examples/five-vps-saas         what deploying it would change
  kiln diff old-result result --json                  compare two builds, for CI
  kiln generations add result                         record a deployment (what deploy will call)
  kiln gc --keep 3                                    keep the last 3 generations' entries
  kiln completions bash > /etc/bash_completion.d/kiln

Exit codes: 0 ok, 1 errors in the input, 2 usage or IO errors.
`kiln plan` and `kiln diff` (like `terraform plan -detailed-exitcode`): 0 no changes,
2 changes, 1 any error (bad input, a state file from another system or corrupt, a generation
whose store entry is gone); nothing is written.";

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "A compiler for server fleets: typed TOML in, reproducible artifacts out",
    after_help = EXAMPLES
)]
struct Cli {
    /// Print only errors: no warnings, no progress, no summary lines.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more: what was read and written; `-vv` also traces every HTTP request of push and
    /// pull.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Accepted before the command too (`kiln --modules DIR check …`), for the commands that
    /// read modules.
    #[command(flatten)]
    early: EarlyInputs,
    #[command(subcommand)]
    command: Command,
}

/// `--modules` and `--identity` written before the command name; they are checked against
/// the command, which must be one that reads them.
#[derive(Args, Default)]
struct EarlyInputs {
    #[arg(long = "modules", value_name = "DIR", hide = true)]
    modules: Vec<PathBuf>,
    #[arg(long = "identity", value_name = "FILE", hide = true)]
    identity: Option<PathBuf>,
}

/// Where modules come from, for the commands that read them.
#[derive(Args, Default)]
struct LibraryArgs {
    /// Extra module directories; a module here overrides a built-in one of the same name.
    #[arg(long = "modules", value_name = "DIR")]
    modules: Vec<PathBuf>,
}

/// The inputs of the commands that compile a system.
#[derive(Args, Default)]
struct InputArgs {
    #[command(flatten)]
    library: LibraryArgs,
    /// An age identity file (age or OpenSSH ed25519 keys): secret files are decrypted and
    /// authenticated (SOPS MAC), and `boot` delivers the host's values. Default:
    /// $SOPS_AGE_KEY_FILE.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Parse, resolve and check a system without writing anything.
    Check {
        /// A system directory (holding system.toml) or a system file.
        path: PathBuf,
        #[command(flatten)]
        inputs: InputArgs,
        /// Print the diagnostics as JSON on stdout (`{"ok", "errors", "warnings",
        /// "diagnostics": [{"severity", "code", "message", "file", "line", "column", …}]}`).
        #[arg(long)]
        json: bool,
    },
    /// Build a system into the store and point a link at it.
    Build {
        /// A system directory (holding system.toml) or a system file.
        path: PathBuf,
        #[command(flatten)]
        inputs: InputArgs,
        /// Store directory (default: $KILN_STORE, else .kiln/store).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Where to put the link to the built system.
        #[arg(long, value_name = "PATH", default_value = "result")]
        out_link: PathBuf,
        /// Rebuild and fail on any byte difference.
        #[arg(long)]
        check: bool,
        /// Print a JSON summary on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show hosts, services, the derived firewall and the start order.
    Show {
        /// A system directory (holding system.toml) or a system file.
        path: PathBuf,
        #[command(flatten)]
        inputs: InputArgs,
        /// Print the model as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List, describe and document the available modules.
    Modules {
        #[command(flatten)]
        library: LibraryArgs,
        #[command(subcommand)]
        command: ModulesCommand,
    },
    /// Print a JSON Schema of the system file (for editors: taplo, Even Better TOML).
    Schema {
        #[command(flatten)]
        library: LibraryArgs,
        /// Print the reference of every key (docs/reference.md) as Markdown instead.
        #[arg(long)]
        markdown: bool,
    },
    /// Why a rule or an error code exists; without an id, every one, one per line.
    Explain {
        /// A rule id (`zone-crossing`) or an error code (`E0005`).
        id: Option<String>,
        /// Print JSON on stdout: one object, or a list without an id.
        #[arg(long)]
        json: bool,
    },
    /// Upload a build's closure to an artifact store, by content hash (manifest last).
    Push {
        /// file://DIR, http(s)://HOST/PATH (basic auth: KILN_STORE_USER/KILN_STORE_PASSWORD,
        /// bearer: KILN_STORE_TOKEN), or s3://BUCKET/PREFIX (credentials as the AWS tools find
        /// them: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile in ~/.aws (AWS_PROFILE), a
        /// web identity, a container or instance role; region from AWS_REGION or the profile).
        url: String,
        /// The build to push.
        #[arg(long, value_name = "RESULT", default_value = "result")]
        from: PathBuf,
        /// Parallel uploads.
        #[arg(long, default_value_t = 8)]
        jobs: usize,
        /// An S3-compatible endpoint (MinIO, R2, …; path-style requests). Default:
        /// AWS_ENDPOINT_URL_S3 or the profile's endpoint_url, else AWS itself.
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// Print `{"hash", "manifest", "uploaded", "skipped", "bytes"}` and nothing else on
        /// stdout: `hash` is what `kiln pull` takes, `manifest` the URL of its manifest.
        #[arg(long)]
        json: bool,
    },
    /// Boot one host's artifacts in a local VM (qemu, NoCloud), wait for cloud-init, report.
    Boot {
        /// The host to boot.
        host: String,
        /// The system (directory or file).
        path: PathBuf,
        #[command(flatten)]
        inputs: InputArgs,
        /// Base image directory (default: ~/.cache/kiln/images/<the host's image>, made by
        /// scripts/build-test-image).
        #[arg(long, value_name = "DIR")]
        image: Option<PathBuf>,
        /// Leave the machine running (its QMP socket and ports are in the report).
        #[arg(long)]
        keep: bool,
        /// Secret values to deliver at boot: a directory with one file per secret.
        #[arg(long, value_name = "DIR")]
        secrets: Option<PathBuf>,
        /// Give up when cloud-init has not finished after this many seconds.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
        /// Attach FILE as the host's data volume (a virtio disk with the serial `kiln-data`,
        /// which the provisioner finds, formats once and mounts at /var/lib/kiln/data). FILE
        /// is created as an empty 1 GiB qcow2 when missing and kept afterwards: boot again
        /// with it to see a replaced server find its data.
        #[arg(long, value_name = "FILE")]
        data_disk: Option<PathBuf>,
        /// Print the boot report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Encrypt a flat YAML, JSON or dotenv file of secrets into a SOPS file (stdout) that
    /// sops and kiln read, for age recipients (`age1…` or `ssh-ed25519 …`).
    #[command(name = "encrypt-secrets")]
    EncryptSecrets {
        /// The plaintext file; its extension says the format.
        file: PathBuf,
        /// A recipient; repeat for several.
        #[arg(long = "age", value_name = "RECIPIENT", required = true)]
        recipients: Vec<String>,
    },
    /// Serve one NoCloud seed request on stdin/stdout (run by qemu for `kiln boot`).
    #[command(hide = true)]
    SeedServe {
        /// The seed directory to serve.
        dir: PathBuf,
    },
    /// Fetch a pushed closure into the local store, verifying every object.
    Pull {
        /// The store to fetch from (as for `push`).
        url: String,
        /// The system hash (manifest.json `hash`).
        hash: String,
        /// Store directory (default: $KILN_STORE, else .kiln/store).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// An S3-compatible endpoint (MinIO, R2, …; path-style requests). Default:
        /// AWS_ENDPOINT_URL_S3 or the profile's endpoint_url, else AWS itself.
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// Parallel downloads.
        #[arg(long, default_value_t = 8)]
        jobs: usize,
        /// Where to put the link to the fetched system.
        #[arg(long, value_name = "PATH", default_value = "result")]
        out_link: PathBuf,
        /// Print `{"system", "hash", "path", "files"}` and nothing else on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove store entries that no `result` link (gc root) reaches; prints what it freed.
    ///
    /// Every `kiln build` and `kiln pull` registers its `result` link as a root; deleting the
    /// link (or pointing it elsewhere) releases the entry. Waits for running builds.
    Gc {
        /// Store directory (default: $KILN_STORE, else .kiln/store).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print `{"removed", "freed_bytes", "kept", "stale_roots"}` on stdout.
        #[arg(long)]
        json: bool,
        /// Keep the entries of only the last N generations of each system (default: all).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        keep: Option<u64>,
        /// A system's state directory whose generations are roots (repeatable; default: every
        /// directory in .kiln/state).
        #[arg(long, value_name = "DIR")]
        state: Vec<PathBuf>,
    },
    /// Compare two builds: hosts created, replaced, destroyed; services, firewall, routes, DNS,
    /// secrets. Exit 0 no changes, 2 changes, 1 error.
    Diff {
        /// The deployed build: a result link, a store entry, or its manifest.json / model.json.
        old: PathBuf,
        /// The new build, in the same forms.
        new: PathBuf,
        /// Print the plan as JSON on stdout (`{"changes", "create", "replace", "update",
        /// "destroy", "hosts", "services", …}`).
        #[arg(long)]
        json: bool,
    },
    /// Build a system in memory and compare it with its last generation (or with nothing).
    /// Writes nothing. Exit 0 no changes, 2 changes, 1 error.
    Plan {
        /// A system directory (holding system.toml) or a system file.
        path: PathBuf,
        #[command(flatten)]
        inputs: InputArgs,
        /// Store directory holding the generations' entries (default: $KILN_STORE, else
        /// .kiln/store).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// The system's state directory (default: .kiln/state/<system>).
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Print the plan as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List the deployed generations of a system, or record one.
    Generations {
        #[command(subcommand)]
        command: Option<GenerationsCommand>,
        /// The system's state directory (default: .kiln/state/<system>, or the only system there).
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// The system whose generations to list (picks .kiln/state/<system>).
        #[arg(long)]
        system: Option<String>,
        /// Print the generations as JSON on stdout (a list of `{"number", "time", "system",
        /// "hash", "entry", "hosts"}`).
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write man pages for kiln and every command into DIR (kiln.1, kiln-build.1, …).
    Man {
        /// The directory to write into (created if missing).
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum GenerationsCommand {
    /// Record a build as the next generation: what `kiln deploy` will call once it has deployed.
    Add {
        /// The build: a result link or a store entry.
        result: PathBuf,
        /// Store directory the entry must be in (default: $KILN_STORE, else .kiln/store).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// The system's state directory (default: .kiln/state/<system>).
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Print the generation as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ModulesCommand {
    /// One line per module: name, version, summary.
    List {
        /// Print JSON on stdout: a list of `{"name", "version", "summary", "kind"}`.
        #[arg(long)]
        json: bool,
    },
    /// Every option of a module, and what it exposes and needs.
    Show {
        /// The module's name (`kiln modules list` shows them).
        name: String,
        /// Print the module's options and interface as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write the module reference pages into DIR (docs/modules in this repository).
    Docs {
        /// The directory to write into; its `.md` pages are replaced.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
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
            if json {
                return check_json(&path, &opts);
            }
            with_compiled(&path, &opts, ui, |c| {
                ui.info(&format!("ok: system `{}`, {} hosts, {} services", c.system.name, c.system.hosts.len(), c.system.services.len()));
                ExitCode::SUCCESS
            })
        }),
        Command::Build { path, inputs, store, out_link, check, json } => with_options(early, inputs, |opts| {
            with_compiled(&path, &opts, ui, |c| build(&path, &opts, ui, c, store, &out_link, check, json))
        }),
        Command::Boot { host, path, inputs, image, keep, secrets, timeout, data_disk, json } => with_options(early, inputs, |opts| {
            with_compiled(&path, &opts, ui, |c| boot(c, &path, &opts, &host, image, keep, secrets, timeout, data_disk, json))
        }),
        Command::Plan { path, inputs, store, state, json } => {
            with_options(early, inputs, |opts| plan_command(&path, &opts, ui, store, state, json))
        }
        Command::Show { path, inputs, json } => with_options(early, inputs, |opts| {
            with_compiled(&path, &opts, ui, |c| {
                let out = if json { kiln::pipeline::show_json(c) } else { kiln::pipeline::show_text(c) };
                print!("{out}");
                ExitCode::SUCCESS
            })
        }),
        Command::Modules { library, command } => {
            with_options(early, InputArgs { library, identity: None }, |opts| with_library(&opts, ui, |lib| modules(lib, command, ui)))
        }
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
                    "`{flag}` means nothing to `kiln {}`; it is read by check, build, show, plan, boot, modules and schema",
                    command.name()
                ));
            }
            match command {
                Command::Push { url, from, jobs, endpoint, json } => push(&url, &from, jobs, endpoint.as_deref(), json, ui),
                Command::Pull { url, hash, store, endpoint, jobs, out_link, json } => {
                    pull(&url, &hash, store, endpoint.as_deref(), jobs, &out_link, json, ui)
                }
                Command::Explain { id, json } => explain(id.as_deref(), json),
                Command::Gc { store, dry_run, json, keep, state } => gc(store, dry_run, json, keep, state, ui),
                Command::Diff { old, new, json } => diff_command(&old, &new, json),
                Command::Generations { command, state, system, json } => generations_command(command, state, system, json, ui),
                Command::SeedServe { dir } => match kiln::boot::seed_serve(&dir) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(_) => ExitCode::from(2),
                },
                Command::EncryptSecrets { file, recipients } => encrypt_secrets(&file, &recipients),
                Command::Completions { shell } => {
                    clap_complete::generate(shell, &mut Cli::command(), "kiln", &mut std::io::stdout());
                    ExitCode::SUCCESS
                }
                Command::Man { dir } => match write_man_pages(&dir) {
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

/// What `-q` and `-v` ask of the messages on stderr.
#[derive(Clone, Copy)]
struct Ui {
    quiet: bool,
    verbose: u8,
}

impl Ui {
    /// A summary line (`ok: …`, `built …`): shown unless `-q`.
    fn info(self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }
    /// What push and pull show while they work: a bar on a terminal, retries unless `-q`,
    /// every request with `-vv`.
    fn feedback(self, json: bool) -> kiln::push::Feedback {
        kiln::push::Feedback {
            bar: !json && !self.quiet && std::io::stderr().is_terminal(),
            retries: !self.quiet,
            trace: self.verbose >= 2,
        }
    }
    /// Detail shown only with `-v`.
    fn detail(self, msg: &str) {
        if self.verbose > 0 {
            eprintln!("{msg}");
        }
    }
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Check { .. } => "check",
            Command::Build { .. } => "build",
            Command::Show { .. } => "show",
            Command::Modules { .. } => "modules",
            Command::Schema { .. } => "schema",
            Command::Explain { .. } => "explain",
            Command::Push { .. } => "push",
            Command::Boot { .. } => "boot",
            Command::EncryptSecrets { .. } => "encrypt-secrets",
            Command::SeedServe { .. } => "seed-serve",
            Command::Pull { .. } => "pull",
            Command::Completions { .. } => "completions",
            Command::Gc { .. } => "gc",
            Command::Diff { .. } => "diff",
            Command::Plan { .. } => "plan",
            Command::Generations { .. } => "generations",
            Command::Man { .. } => "man",
        }
    }
}

impl EarlyInputs {
    /// The first of these flags that was given, if any.
    fn given(&self) -> Option<&'static str> {
        if !self.modules.is_empty() {
            Some("--modules")
        } else if self.identity.is_some() {
            Some("--identity")
        } else {
            None
        }
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
    f(Options { module_dirs, render: kiln::render::RenderOptions { mtime: source_date_epoch() }, identity })
}

fn modules(lib: &kiln::load::Inputs, command: ModulesCommand, ui: Ui) -> ExitCode {
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
        ModulesCommand::Docs { dir } => {
            if let Err(e) = write_docs(&dir, &kiln::docs::pages(lib.modules.values())) {
                return io_error(&format!("cannot write `{}`: {e}", dir.display()));
            }
            ui.info(&format!("wrote {} module pages to {}", lib.modules.len(), dir.display()));
            ExitCode::SUCCESS
        }
    }
}

fn push(url: &str, from: &Path, jobs: usize, endpoint: Option<&str>, json: bool, ui: Ui) -> ExitCode {
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
fn pull(
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

fn explain(id: Option<&str>, json: bool) -> ExitCode {
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

fn explanation_json(e: &kiln::check::Explanation) -> serde_json::Value {
    serde_json::json!({ "id": e.id, "summary": e.summary, "explanation": e.explanation, "allowable": e.allowable })
}

/// `kiln check --json`: every diagnostic as data on stdout; the exit code as without `--json`.
fn check_json(path: &Path, opts: &Options) -> ExitCode {
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
fn link_and_root(store: &Store, link: &Path, entry: &Path) -> Result<(), String> {
    store::set_link(link, entry).map_err(|e| format!("cannot create link `{}`: {e}", link.display()))?;
    store.add_root(link).map_err(|e| format!("cannot register `{}` as a root in `{}`: {e}", link.display(), store.root.display()))
}

/// `kiln gc`: what it removed (or would), as text on stderr or JSON on stdout.
fn gc(store: Option<PathBuf>, dry_run: bool, json: bool, keep: Option<u64>, states: Vec<PathBuf>, ui: Ui) -> ExitCode {
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

/// One page for `kiln` and one for each visible command, as clap_mangen renders them.
fn write_man_pages(dir: &Path) -> std::io::Result<usize> {
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

/// Replaces the `.md` pages in `dir` with `pages`, so a removed module's page goes too.
fn write_docs(dir: &Path, pages: &[(String, String)]) -> std::io::Result<()> {
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

#[allow(clippy::disallowed_methods)] // the edge: NO_COLOR is read here and only here
fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Renders diagnostics on stderr; `-q` keeps only the errors.
fn report(sources: &Sources, diags: &[Diagnostic], ui: Ui) {
    let shown: Vec<Diagnostic> = diags.iter().filter(|d| !ui.quiet || d.severity == Severity::Error).cloned().collect();
    let text = diag::render(sources, &shown, color());
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
}

fn io_error(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// A command line that asks for something that cannot be: exit 2, like clap's own errors.
fn usage_error(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn with_compiled(path: &Path, opts: &Options, ui: Ui, f: impl FnOnce(&Compiled) -> ExitCode) -> ExitCode {
    match pipeline::compile(path, opts) {
        Err(e) => io_error(&e.0),
        Ok(Outcome::Failed(fail)) => {
            report(&fail.sources, &fail.diagnostics, ui);
            let n = fail.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
            eprintln!("error: could not compile `{}` due to {n} error{}", path.display(), if n == 1 { "" } else { "s" });
            ExitCode::from(1)
        }
        Ok(Outcome::Ok(c)) => {
            report(&c.sources, &c.warnings, ui);
            ui.detail(&format!(
                "read {} files; {} modules in use",
                c.sources.len(),
                c.system.services.values().map(|s| &s.module).collect::<std::collections::BTreeSet<_>>().len()
            ));
            f(&c)
        }
    }
}

/// Encrypts a plaintext secrets file to stdout. `lastmodified` is the real time: a secrets file
/// is an input, never a store artifact.
fn encrypt_secrets(file: &Path, recipients: &[String]) -> ExitCode {
    let format = match kiln::sops::Format::from_path(file) {
        Ok(f) => f,
        Err(e) => return io_error(&e.to_string()),
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return io_error(&format!("cannot read `{}`: {e}", file.display())),
    };
    let values = match kiln::sops::plain_values(&text, format) {
        Ok(v) => v,
        Err(e) => return io_error(&format!("`{}`: {e}", file.display())),
    };
    #[allow(clippy::disallowed_methods)] // a secrets file records when it was written
    let now = kiln::sops::rfc3339(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
    match kiln::sops::encrypt(&values, format, recipients, &now) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => io_error(&e.to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
fn boot(
    c: &Compiled,
    path: &Path,
    opts: &Options,
    host: &str,
    image: Option<PathBuf>,
    keep: bool,
    secrets: Option<PathBuf>,
    timeout: u64,
    data_disk: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let Some(ha) = c.hosts.get(host) else {
        let hint =
            diag::did_you_mean(host, c.hosts.keys().map(String::as_str)).map(|m| format!(" (did you mean `{m}`?)")).unwrap_or_default();
        return io_error(&format!("no host `{host}` in system `{}`{hint}", c.system.name));
    };
    if data_disk.is_some() && !kiln::render::data_volume::has_volume(&c.system, &c.system.hosts[host]) {
        return usage_error(&format!(
            "host `{host}` has no data volume (it holds no data, or its provider has no volumes): nothing would use --data-disk"
        ));
    }
    let image_dir = image.unwrap_or_else(|| image_cache().join(&c.system.hosts[host].image.name));
    let mut values = std::collections::BTreeMap::new();
    let wanted = c.system.host_secrets(&c.system.hosts[host]);
    if let (None, Some(text)) = (&secrets, &opts.identity) {
        let ids = match kiln::sops::load_identities(text) {
            Ok(i) => i,
            Err(e) => return io_error(&format!("identity: {e}")),
        };
        let root = kiln::load::system_root(path).map(|(r, _)| r).unwrap_or_default();
        match kiln::secrets::values(&root, &c.system, &wanted, &ids) {
            Ok(v) => values = v,
            Err(e) => return io_error(&e),
        }
    }
    if let Some(dir) = secrets {
        for name in &wanted {
            match std::fs::read(dir.join(name)) {
                Ok(v) => {
                    values.insert(name.clone(), v);
                }
                Err(e) => return io_error(&format!("secret `{name}`: {}: {e}", dir.join(name).display())),
            }
        }
    }
    let Some(user_data) = ha.artifacts.iter().find(|a| a.path == "user-data") else { return io_error("the host has no user-data") };
    let opts = kiln::boot::BootOptions {
        image_dir,
        keep,
        memory_mb: 1024,
        timeout: std::time::Duration::from_secs(timeout),
        kiln_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("kiln")),
        secrets: values,
        data_disk,
    };
    if !json {
        eprintln!("booting `{host}` (closure {}) under qemu; this takes a minute or two", &ha.closure[..16]);
    }
    match kiln::boot::boot(host, &ha.closure, &user_data.bytes, &opts) {
        Err(e) => io_error(&e),
        Ok(r) => {
            let clean = r.datasource.as_deref().is_some_and(|d| d.starts_with("DataSourceNoCloud"))
                && r.warnings.is_empty()
                && r.result_errors.as_ref().is_none_or(|e| e.is_empty())
                && (keep || r.marker.as_deref() == Some(ha.closure.as_str()));
            if json {
                println!("{}", serde_json::to_string_pretty(&r).expect("serialises"));
            } else {
                eprintln!("cloud-init finished after {:.0} s ({})", r.boot_seconds, r.datasource.as_deref().unwrap_or("no datasource"));
                for w in &r.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "ssh:   127.0.0.1:{}
http:  127.0.0.1:{}
https: 127.0.0.1:{}",
                    r.ports["ssh"], r.ports["http"], r.ports["https"]
                );
                if let Some(d) = &r.data_disk {
                    println!("data:  {}{}", d.display(), if r.data_disk_created { " (created, empty)" } else { "" });
                }
                if let Some(q) = &r.qmp {
                    println!("running (pid {}); power off: QMP system_powerdown on {}", r.pid.unwrap_or(0), q.display());
                }
            }
            if clean { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
    }
}

#[allow(clippy::disallowed_methods)] // the edge: where base images are cached
fn image_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("kiln/images")
}

/// Store credentials from the environment (the standard AWS variables for S3).
#[allow(clippy::disallowed_methods)] // the edge: credentials are read here and passed down
fn credentials() -> kiln::push::Credentials {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    kiln::push::Credentials {
        bearer: var("KILN_STORE_TOKEN"),
        basic: var("KILN_STORE_USER").map(|u| (u, var("KILN_STORE_PASSWORD").unwrap_or_default())),
        aws: kiln::push::aws::AwsEnv {
            vars: std::env::vars().filter(|(k, _)| k.starts_with("AWS_")).collect(),
            home: std::env::var_os("HOME").map(PathBuf::from),
        },
    }
}

/// `SOURCE_DATE_EPOCH` (the reproducible-builds convention) sets the mtime inside bundles.
#[allow(clippy::disallowed_methods)] // the edge: read here and passed down as an input
fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

#[allow(clippy::disallowed_methods)] // the edge: KILN_STORE is read here and only here
fn store_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("KILN_STORE").filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".kiln/store"))
}

#[allow(clippy::too_many_arguments)]
fn build(path: &Path, opts: &Options, ui: Ui, c: &Compiled, store: Option<PathBuf>, out_link: &Path, check: bool, json: bool) -> ExitCode {
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

/// Every system's state directory under the default `.kiln/state`.
fn every_state_dir() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(".kiln/state")
        .map(|r| r.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// `kiln plan`/`kiln diff` errors: exit 1 (2 means "changes"), nothing written.
fn plan_error(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

/// Prints a plan; exit 0 without changes, 2 with.
fn print_plan(p: &kiln::plan::Plan, json: bool) -> ExitCode {
    if json {
        print!("{}", kiln::plan_render::json(p));
    } else {
        #[allow(clippy::disallowed_methods)] // the edge: NO_COLOR is read here
        let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal();
        print!("{}", kiln::plan_render::text(p, color));
    }
    ExitCode::from(if p.has_changes() { 2 } else { 0 })
}

/// `kiln diff OLD NEW`.
fn diff_command(old: &Path, new: &Path, json: bool) -> ExitCode {
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
fn plan_command(path: &Path, opts: &Options, ui: Ui, store: Option<PathBuf>, state: Option<PathBuf>, json: bool) -> ExitCode {
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
    print_plan(&kiln::plan::diff(old.as_ref(), &new), json)
}

/// `kiln generations [add RESULT]`.
fn generations_command(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command and every argument says what it is for, in `--help` and the man pages.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" || a.is_hide_set() {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for s in cmd.get_subcommands() {
                let p = format!("{path} {}", s.get_name());
                if s.get_about().is_none() && s.get_name() != "help" {
                    missing.push(p.clone());
                }
                walk(s, &p, missing);
            }
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "kiln", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
