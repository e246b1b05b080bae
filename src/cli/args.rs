//! The command line's shape: every command and argument (clap derive types), with the help
//! text `kiln --help`, the man pages and the completions are made from.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub(crate) const EXAMPLES: &str = "\
Examples:
  kiln check flake-free-examples/five-vps-saas        errors at file:line:col, all at once
  kiln show flake-free-examples/five-vps-saas         hosts, services, firewall, start order
  kiln build flake-free-examples/five-vps-saas        write the store, link ./result
  kiln build --check --json path/to/system            build twice, compare, summary as JSON
  kiln push s3://bucket/kiln --from result            upload the closure by content hash
  kiln explain zone-crossing                          why a rule exists
  kiln plan flake-free-examples/five-vps-saas         what deploying it would change
  kiln plan --tofu path/to/system                     and what OpenTofu plans against the state
  kiln diff old-result result --json                  compare two builds, for CI
  kiln generations add result                         record a deployment (what deploy will call)
  kiln gc --keep 3                                    keep the last 3 generations' entries
  kiln completions bash > /etc/bash_completion.d/kiln

Exit codes: 0 ok, 1 errors in the input, 2 usage or IO errors.
`kiln deploy` and `kiln rollback`: also 3 a host failed (the deployed state is not the
requested one), 4 not confirmed (no terminal and no --yes, or declined); see docs/deploy.md.
`kiln plan` and `kiln diff` (like `terraform plan -detailed-exitcode`): 0 no changes,
2 changes, 1 any error (bad input, a state file from another system or corrupt, a generation
whose store entry is gone, a state backend that cannot be reached); nothing is changed.";

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "A compiler for server fleets: typed TOML in, reproducible artifacts out",
    after_help = EXAMPLES
)]
pub(crate) struct Cli {
    /// Print only errors: no warnings, no progress, no summary lines.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Print more: what was read and written; `-vv` also traces every HTTP request of push and
    /// pull.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Accepted before the command too (`kiln --modules DIR check …`), for the commands that
    /// read modules.
    #[command(flatten)]
    pub(crate) early: EarlyInputs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `--modules` and `--identity` written before the command name; they are checked against
/// the command, which must be one that reads them.
#[derive(Args, Default)]
pub(crate) struct EarlyInputs {
    #[arg(long = "modules", value_name = "DIR", hide = true)]
    pub(crate) modules: Vec<PathBuf>,
    #[arg(long = "identity", value_name = "FILE", hide = true)]
    pub(crate) identity: Option<PathBuf>,
}

/// Where modules come from, for the commands that read them.
#[derive(Args, Default)]
pub(crate) struct LibraryArgs {
    /// Extra module directories; a module here overrides a built-in one of the same name.
    #[arg(long = "modules", value_name = "DIR")]
    pub(crate) modules: Vec<PathBuf>,
}

/// The inputs of the commands that compile a system.
#[derive(Args, Default)]
pub(crate) struct InputArgs {
    #[command(flatten)]
    pub(crate) library: LibraryArgs,
    /// An age identity file (age or OpenSSH ed25519 keys): secret files are decrypted and
    /// authenticated (SOPS MAC), and `boot` delivers the host's values. Default:
    /// $SOPS_AGE_KEY_FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) identity: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        /// Build even when a build with the same inputs is in the store. Without it, a build
        /// whose inputs (every file read, the sources kiln was built from, the options) are those of a
        /// recorded build answers from the store (`<store>/.cache/`; `-v` says "from cache").
        #[arg(long)]
        no_cache: bool,
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
    /// Boot hosts' artifacts in local VMs (qemu, NoCloud), wait for cloud-init, report:
    /// `kiln boot HOST PATH` one host; `kiln boot --all PATH` or `--hosts A,B PATH` several on
    /// the system's private networks; `kiln boot --down [PATH]` stops what `--keep` left.
    Boot {
        /// `HOST PATH` (one host), or only `PATH` with --all, --hosts or --down (the system:
        /// a directory or a file).
        #[arg(value_name = "HOST|PATH", num_args = 0..=2)]
        targets: Vec<String>,
        /// Boot every host of the system, each in its own VM, together on its private networks
        /// (a managed PostgreSQL on one of them gets a stand-in VM there: docs/lab.md).
        #[arg(long, conflicts_with_all = ["hosts", "down"])]
        all: bool,
        /// Boot these hosts (comma-separated) together on the system's private networks, with
        /// a stand-in for each managed PostgreSQL on them.
        #[arg(long, value_delimiter = ',', value_name = "HOST,...", conflicts_with = "down")]
        hosts: Vec<String>,
        /// Power off the machines `--keep` left running (those of PATH's system, or all of
        /// them) and remove their work directories.
        #[arg(long)]
        down: bool,
        /// Where `--keep` records the machines left running for `--down` (default:
        /// $XDG_RUNTIME_DIR/kiln-boot, else ~/.cache/kiln/boot).
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
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
        /// The memory of each machine in MiB.
        #[arg(long, value_name = "MIB", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(256..=65536))]
        memory: u32,
        /// Lab: attach FILE, a `docker load` archive of stand-in images (scripts/lab-images),
        /// read-only; the lab's debian-13 image loads it into Docker before the provisioner
        /// runs, so that `docker compose up` finds the images offline (docs/lab.md). With
        /// --all/--hosts, a directory: each host gets its `HOST.tar` there, if any.
        #[arg(long, value_name = "FILE|DIR")]
        lab_images: Option<PathBuf>,
        /// Lab: DIR is a flat apt repository (scripts/lab-apt-repo) that becomes the machines'
        /// only apt source, served where a host with a way out reaches it (the uplink's seed
        /// address, port 8080; a host routed through a gateway reaches it through the gateway),
        /// so the provisioner's `apt-get install` runs for real offline (docs/lab.md).
        #[arg(long, value_name = "DIR")]
        apt_repo: Option<PathBuf>,
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
    /// Serve one request for a file of the lab's apt repository on stdin/stdout (run by qemu
    /// for `kiln boot --apt-repo`).
    #[command(name = "repo-serve", hide = true)]
    RepoServe {
        /// The repository directory to serve.
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
    /// Writes nothing (with `--tofu`, only `<state>/tofu/`). Exit 0 no changes, 2 changes, 1 error.
    ///
    /// The plan is kiln's own: hosts created, replaced, destroyed, and why; services, firewall,
    /// routes, DNS, secrets; what happens to each replaced host's data. With `--tofu`, OpenTofu
    /// plans too, against the real state: the build's OpenTofu root and the backend of
    /// `[deploy] state` (local by default: `<state>/terraform.tfstate`; S3 with locking) are
    /// staged in the state directory, `tofu init` and `tofu plan -detailed-exitcode` run there,
    /// and the result becomes `<state>/tofu/` (what `deploy` applies in). Credentials and
    /// provider tokens come from the environment (`AWS_*`, `TF_VAR_*`) and are never written.
    ///
    /// Exit codes: 0 no changes (kiln's and, with `--tofu`, OpenTofu's), 2 changes, 1 any
    /// error: the system does not compile; the state directory holds another system's
    /// generations, a corrupt generation file, or a generation whose store entry is gone; with
    /// `--tofu`, no OpenTofu program, a state backend that cannot be reached (the error names
    /// its URL, never a credential), its lock held by another run, or a failed OpenTofu plan.
    /// On an error nothing is changed in the state directory.
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
        /// Also plan with OpenTofu in `<state>/tofu/` against the state backend, and show its
        /// replace/create/destroy set beside kiln's; `--tofu=PATH` names the program (default:
        /// `tofu` on PATH, else `terraform`).
        #[arg(long, value_name = "PATH", num_args = 0..=1, require_equals = true)]
        tofu: Option<Option<PathBuf>>,
        /// Print the plan as JSON on stdout (with `--tofu`, OpenTofu's under `tofu`).
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
    /// Deploy a system to its existing hosts over SSH: every host is read first (pinned host
    /// key, its closure and secrets) and the plan shown; then, in rollout waves (`canary` first,
    /// or `[deploy] order`), per host upload the bundle, deliver its secrets, run the
    /// provisioner, wait for its closure, health gate. Exit codes: 0 every requested host
    /// reached its closure and passed its health gate; 1 bad input; 2 usage or IO; 3 a host
    /// failed (the output names the host and step; later waves untouched); 4 not confirmed (no
    /// terminal to ask and no --yes, or declined). A generation is recorded only on 0.
    Deploy {
        /// A system directory (holding system.toml) or a system file.
        path: PathBuf,
        #[command(flatten)]
        inputs: InputArgs,
        #[command(flatten)]
        deploy: DeployArgs,
        #[command(flatten)]
        rollout: RolloutArgs,
        /// Deploy this build (a result link or store entry of the system) instead of building
        /// PATH; PATH still says how to reach the hosts and where their secrets are.
        #[arg(long, value_name = "RESULT")]
        from: Option<PathBuf>,
    },
    /// Deploy a recorded generation again (default: the one before the last) through the same
    /// path as `kiln deploy`; recorded as a new generation marked `rollback_of`. The system's
    /// source (--system) says how to reach the hosts and where their secrets are (the current
    /// values are delivered). Exit codes as for deploy: 0 only when every host is at the
    /// generation's closures and healthy.
    Rollback {
        /// The generation to return to (`kiln generations` lists them).
        generation: Option<u64>,
        /// The system directory (holding system.toml) or system file.
        #[arg(long, value_name = "PATH", default_value = ".")]
        system: PathBuf,
        #[command(flatten)]
        inputs: InputArgs,
        #[command(flatten)]
        deploy: DeployArgs,
        #[command(flatten)]
        rollout: RolloutArgs,
    },
    /// Secrets on deployed hosts: `kiln secrets push HOST PATH` re-delivers one host's secrets.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
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

/// What `kiln deploy` and `kiln secrets push` share: where the store and state are, how to
/// reach hosts, how to show progress.
#[derive(clap::Args, Clone)]
pub(crate) struct DeployArgs {
    /// Store directory (default: $KILN_STORE, else .kiln/store).
    #[arg(long, value_name = "DIR")]
    pub(crate) store: Option<PathBuf>,
    /// The system's state directory (default: .kiln/state/<system>): generations and the pinned
    /// host keys (`known_hosts`).
    #[arg(long, value_name = "DIR")]
    pub(crate) state: Option<PathBuf>,
    /// An ssh_config file passed to ssh as `-F` (map addresses to names, ports, keys).
    #[arg(long, value_name = "FILE")]
    pub(crate) ssh_config: Option<PathBuf>,
    /// The user kiln logs in as (root, or one with passwordless sudo; default: the system's
    /// first admin, else root).
    #[arg(long, value_name = "USER")]
    pub(crate) ssh_user: Option<String>,
    /// On first contact, trust HOST's key if its fingerprint is this one (check it on the
    /// server: `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`); it is then pinned. Repeat
    /// for several hosts.
    #[arg(long, value_name = "HOST=SHA256:…")]
    pub(crate) trust_host_key: Vec<String>,
    /// Seconds the provisioner may take on a host (the other steps have their own limits).
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub(crate) timeout: u64,
    /// Seconds the health gate waits for every container to be healthy and every unit active.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub(crate) health_timeout: u64,
    /// Skip the route gate: after the health gate, kiln requests every route a host's edge
    /// serves over HTTPS at the host's address, the name pinned to it (no DNS needed, the
    /// certificate not verified), and waits (up to --health-timeout) for an answer below 500.
    /// For a machine that cannot reach the edges.
    #[arg(long)]
    pub(crate) no_route_check: bool,
    /// Request HOST's routes at ADDRESS:PORT instead of its own address and port 443 (an edge
    /// behind a port forward or NAT). Repeat for several hosts.
    #[arg(long, value_name = "HOST=ADDRESS:PORT")]
    pub(crate) route_address: Vec<String>,
    /// One JSON event per line on stdout (`{"host", "step", "state", "message", "elapsed"}`),
    /// the plan (`{"plan": …}`) before acting, then a summary object.
    #[arg(long)]
    pub(crate) json: bool,
    /// The OpenTofu or Terraform program for hosts a cloud provider creates (a path, or a name
    /// looked up on PATH); default `tofu` on PATH, else `terraform`.
    #[arg(long, value_name = "PATH")]
    pub(crate) tofu: Option<PathBuf>,
    /// Seconds a new cloud server may take to boot and prove its SSH host key (enrolment).
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub(crate) boot_timeout: u64,
}

/// Which hosts a rollout takes and how (`deploy`, `rollback`).
#[derive(clap::Args, Clone)]
pub(crate) struct RolloutArgs {
    /// Deploy only these hosts (comma-separated); no generation is recorded unless every
    /// host of the system is deployed.
    #[arg(long, value_delimiter = ',', value_name = "HOST,...", conflicts_with = "group")]
    pub(crate) hosts: Vec<String>,
    /// Deploy only the hosts of this rollout group (their `group`); no generation is recorded.
    #[arg(long, value_name = "NAME")]
    pub(crate) group: Option<String>,
    /// How many hosts to deploy at once (within a rollout group).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) parallel: u16,
    /// Go ahead without asking. Without it kiln shows the plan and asks on the terminal; with
    /// no terminal it refuses (exit 4) unless the plan changes nothing.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

#[derive(Subcommand)]
pub(crate) enum SecretsCommand {
    /// Re-deliver one host's secrets (rotation), then restart the services that use a changed
    /// one. The host must be at the system's closure already.
    Push {
        /// The host.
        host: String,
        /// A system directory (holding system.toml) or a system file.
        #[arg(default_value = ".")]
        path: PathBuf,
        #[command(flatten)]
        inputs: InputArgs,
        #[command(flatten)]
        deploy: DeployArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum GenerationsCommand {
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
pub(crate) enum ModulesCommand {
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
    /// Render each module of DIR in a minimal system and judge its files (exit 1 when one fails).
    ///
    /// Each module gets one public host with its service, whatever it requires, example values
    /// for options without a default and a Caddy edge and a route when it serves HTTP (its
    /// `from_route` options then come from that route). The build must
    /// succeed; then every file the module declares with a `judge` goes to that judge (yaml,
    /// json and toml in kiln; sh to shellcheck and `dash -n`; promtool; caddy), its job scripts
    /// to sh, and the Compose file to `docker compose config`. A judge whose program is not
    /// installed is listed as not run, not passed.
    Check {
        /// Module directories: one holding module.toml, or one whose subdirectories do.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    /// The command's name, as typed.
    pub(crate) fn name(&self) -> &'static str {
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
            Command::RepoServe { .. } => "repo-serve",
            Command::Pull { .. } => "pull",
            Command::Completions { .. } => "completions",
            Command::Gc { .. } => "gc",
            Command::Diff { .. } => "diff",
            Command::Plan { .. } => "plan",
            Command::Generations { .. } => "generations",
            Command::Deploy { .. } => "deploy",
            Command::Rollback { .. } => "rollback",
            Command::Secrets { .. } => "secrets",
            Command::Man { .. } => "man",
        }
    }
}

impl EarlyInputs {
    /// The first of these flags that was given, if any.
    pub(crate) fn given(&self) -> Option<&'static str> {
        if !self.modules.is_empty() {
            Some("--modules")
        } else if self.identity.is_some() {
            Some("--identity")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

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
