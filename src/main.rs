//! The `kiln` command line: parses arguments, runs the pipeline, prints data on stdout and
//! diagnostics on stderr. Exit 0 on success, 1 for errors in the input, 2 for usage or IO.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use kiln::diag::{self, Diagnostic, Severity, Sources};
use kiln::pipeline::{self, Compiled, Options, Outcome};
use kiln::store::{self, Store};

#[derive(Parser)]
#[command(name = "kiln", version, about = "A compiler for server fleets: typed TOML in, reproducible artifacts out")]
struct Cli {
    /// Extra module directories; a module here overrides a built-in one of the same name.
    #[arg(long = "modules", global = true, value_name = "DIR")]
    modules: Vec<PathBuf>,
    /// An age identity file (age or OpenSSH ed25519 keys): secret files are decrypted and
    /// authenticated (SOPS MAC), and `boot` delivers the host's values. Default:
    /// $SOPS_AGE_KEY_FILE.
    #[arg(long, global = true, value_name = "FILE")]
    identity: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse, resolve and check a system without writing anything.
    Check {
        /// A system directory (holding system.toml) or a system file.
        path: PathBuf,
    },
    /// Build a system into the store and point a link at it.
    Build {
        path: PathBuf,
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
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List, describe and document the available modules.
    Modules {
        #[command(subcommand)]
        command: ModulesCommand,
    },
    /// Print a JSON Schema of the system file (for editors: taplo, Even Better TOML).
    Schema,
    /// Why a rule exists; without an id, every rule, one per line.
    Explain { id: Option<String> },
    /// Upload a build's closure to an artifact store, by content hash (manifest last).
    Push {
        /// file://DIR, http(s)://HOST/PATH (basic auth: KILN_STORE_USER/KILN_STORE_PASSWORD,
        /// bearer: KILN_STORE_TOKEN), or s3://BUCKET/PREFIX (AWS_ACCESS_KEY_ID,
        /// AWS_SECRET_ACCESS_KEY, AWS_REGION).
        url: String,
        /// The build to push.
        #[arg(long, value_name = "RESULT", default_value = "result")]
        from: PathBuf,
        /// Parallel uploads.
        #[arg(long, default_value_t = 8)]
        jobs: usize,
        /// The S3 endpoint (path-style requests).
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// Print `{"uploaded": N, "skipped": N, "bytes": N}` and nothing else on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Boot one host's artifacts in a local VM (qemu, NoCloud), wait for cloud-init, report.
    Boot {
        /// The host to boot.
        host: String,
        /// The system (directory or file).
        path: PathBuf,
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
    SeedServe { dir: PathBuf },
    /// Fetch a pushed closure into the local store, verifying every object.
    Pull {
        url: String,
        /// The system hash (manifest.json `hash`).
        hash: String,
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        #[arg(long, default_value_t = 8)]
        jobs: usize,
        #[arg(long, value_name = "PATH", default_value = "result")]
        out_link: PathBuf,
    },
}

#[derive(Subcommand)]
enum ModulesCommand {
    /// One line per module: name, version, summary.
    List,
    /// Every option of a module, and what it exposes and needs.
    Show { name: String },
    /// Write the module reference pages into DIR (docs/modules in this repository).
    Docs { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    #[allow(clippy::disallowed_methods)] // the one environment variable sops users already set
    let identity_path = cli.identity.clone().or_else(|| std::env::var_os("SOPS_AGE_KEY_FILE").map(PathBuf::from));
    let identity = match &identity_path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t),
            Err(e) => return io_error(&format!("cannot read identity `{}`: {e}", p.display())),
        },
        None => None,
    };
    let opts = Options { module_dirs: cli.modules.clone(), render: kiln::render::RenderOptions { mtime: source_date_epoch() }, identity };
    match cli.command {
        Command::Check { path } => with_compiled(&path, &opts, |c| {
            eprintln!("ok: system `{}`, {} hosts, {} services", c.system.name, c.system.hosts.len(), c.system.services.len());
            ExitCode::SUCCESS
        }),
        Command::Build { path, store, out_link, check, json } => {
            with_compiled(&path, &opts, |c| build(&path, &opts, c, store, &out_link, check, json))
        }
        Command::Show { path, json } => with_compiled(&path, &opts, |c| {
            let out = if json { kiln::pipeline::show_json(c) } else { kiln::pipeline::show_text(c) };
            print!("{out}");
            ExitCode::SUCCESS
        }),
        Command::Modules { command } => with_library(&opts, |lib| match command {
            ModulesCommand::List => {
                print!("{}", kiln::docs::list(lib.modules.values()));
                ExitCode::SUCCESS
            }
            ModulesCommand::Show { name } => match lib.modules.get(&name) {
                Some(m) => {
                    print!("{}", kiln::docs::page(m));
                    ExitCode::SUCCESS
                }
                None => {
                    let hint = diag::did_you_mean(&name, lib.modules.keys().map(String::as_str))
                        .map(|m| format!(" (did you mean `{m}`?)"))
                        .unwrap_or_default();
                    eprintln!("error: no module `{name}`{hint}; `kiln modules list` shows them all");
                    ExitCode::from(2)
                }
            },
            ModulesCommand::Docs { dir } => {
                if let Err(e) = write_docs(&dir, &kiln::docs::pages(lib.modules.values())) {
                    return io_error(&format!("cannot write `{}`: {e}", dir.display()));
                }
                eprintln!("wrote {} module pages to {}", lib.modules.len(), dir.display());
                ExitCode::SUCCESS
            }
        }),
        Command::Push { url, from, jobs, endpoint, json } => {
            let target = match kiln::push::Target::parse(&url, endpoint.as_deref(), &credentials()) {
                Ok(t) => t,
                Err(e) => return io_error(&e.0),
            };
            let progress = !json && std::io::stderr().is_terminal();
            match kiln::push::push(&target, &from, jobs, progress) {
                Ok(s) => {
                    if json {
                        println!("{}", serde_json::to_string(&s).expect("serialises"));
                    } else {
                        eprintln!("pushed to {url}: {} uploaded, {} already there, {} bytes", s.uploaded, s.skipped, s.bytes);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => io_error(&e.0),
            }
        }
        Command::Pull { url, hash, store, endpoint, jobs, out_link } => {
            let target = match kiln::push::Target::parse(&url, endpoint.as_deref(), &credentials()) {
                Ok(t) => t,
                Err(e) => return io_error(&e.0),
            };
            let (manifest, files) = match kiln::push::pull(&target, &hash, jobs) {
                Ok(x) => x,
                Err(e) => return io_error(&e.0),
            };
            let dir = store_dir(store);
            let entry = Store::open(&dir).and_then(|s| pipeline::write_pulled(&manifest, &files, &s));
            match entry {
                Ok(entry) => {
                    let entry = std::fs::canonicalize(&entry).unwrap_or(entry);
                    if let Err(e) = store::set_link(&out_link, &entry) {
                        return io_error(&format!("cannot create link `{}`: {e}", out_link.display()));
                    }
                    println!("{}", entry.display());
                    ExitCode::SUCCESS
                }
                Err(e) => io_error(&format!("cannot write to store `{}`: {e}", dir.display())),
            }
        }
        Command::Explain { id } => {
            let all = kiln::check::explanations();
            match id {
                None => {
                    for e in &all {
                        println!("{:<24} {}", e.id, e.summary);
                    }
                    ExitCode::SUCCESS
                }
                Some(id) => match all.iter().find(|e| e.id == id) {
                    Some(e) => {
                        println!("{}: {}\n\n{}", e.id, e.summary, e.explanation);
                        ExitCode::SUCCESS
                    }
                    None => {
                        let hint = diag::did_you_mean(&id, all.iter().map(|e| e.id))
                            .map(|m| format!(" (did you mean `{m}`?)"))
                            .unwrap_or_default();
                        eprintln!("error: no rule `{id}`{hint}; `kiln explain` lists them");
                        ExitCode::from(2)
                    }
                },
            }
        }
        Command::SeedServe { dir } => match kiln::boot::seed_serve(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(2),
        },
        Command::Boot { host, path, image, keep, secrets, timeout, json } => {
            with_compiled(&path, &opts, |c| boot(c, &path, &opts, &host, image, keep, secrets, timeout, json))
        }
        Command::EncryptSecrets { file, recipients } => encrypt_secrets(&file, &recipients),
        Command::Schema => with_library(&opts, |lib| {
            let schema = kiln::schema::system_schema(lib.modules.values());
            println!("{}", serde_json::to_string_pretty(&schema).expect("serialises"));
            ExitCode::SUCCESS
        }),
    }
}

/// Runs `f` on the module library, after reporting any errors in module files.
fn with_library(opts: &Options, f: impl FnOnce(&kiln::load::Inputs) -> ExitCode) -> ExitCode {
    match kiln::load::library(&opts.module_dirs) {
        Err(e) => io_error(&e.0),
        Ok(lib) => {
            report(&lib.sources, &lib.diags);
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

fn report(sources: &Sources, diags: &[Diagnostic]) {
    let text = diag::render(sources, diags, color());
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
}

fn io_error(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn with_compiled(path: &Path, opts: &Options, f: impl FnOnce(&Compiled) -> ExitCode) -> ExitCode {
    match pipeline::compile(path, opts) {
        Err(e) => io_error(&e.0),
        Ok(Outcome::Failed(fail)) => {
            report(&fail.sources, &fail.diagnostics);
            let n = fail.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
            eprintln!("error: could not compile `{}` due to {n} error{}", path.display(), if n == 1 { "" } else { "s" });
            ExitCode::from(1)
        }
        Ok(Outcome::Ok(c)) => {
            report(&c.sources, &c.warnings);
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
    json: bool,
) -> ExitCode {
    let Some(ha) = c.hosts.get(host) else {
        let hint =
            diag::did_you_mean(host, c.hosts.keys().map(String::as_str)).map(|m| format!(" (did you mean `{m}`?)")).unwrap_or_default();
        return io_error(&format!("no host `{host}` in system `{}`{hint}", c.system.name));
    };
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
        aws_access_key: var("AWS_ACCESS_KEY_ID"),
        aws_secret_key: var("AWS_SECRET_ACCESS_KEY"),
        aws_session_token: var("AWS_SESSION_TOKEN"),
        aws_region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
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

fn build(path: &Path, opts: &Options, c: &Compiled, store: Option<PathBuf>, out_link: &Path, check: bool, json: bool) -> ExitCode {
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
    let entry = match pipeline::write(c, &store) {
        Ok(p) => p,
        Err(e) => return io_error(&format!("cannot write to store `{}`: {e}", dir.display())),
    };
    let entry = std::fs::canonicalize(&entry).unwrap_or(entry);
    if let Err(e) = store::set_link(out_link, &entry) {
        return io_error(&format!("cannot create link `{}`: {e}", out_link.display()));
    }
    if json {
        println!("{}", pipeline::build_json(c, &entry));
    } else {
        println!("{}", entry.display());
    }
    eprintln!("built `{}`: {} hosts, {} artifacts -> {}", c.system.name, c.hosts.len(), c.manifest.artifacts.len(), out_link.display());
    ExitCode::SUCCESS
}
