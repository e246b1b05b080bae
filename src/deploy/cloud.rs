//! `kiln deploy` for hosts a cloud provider creates: OpenTofu (`tofu`, else `terraform`)
//! applies the build's root in the state directory's working copy (`crate::tofu_workdir`),
//! the servers' addresses are read from the state it leaves, each new server's SSH host key is
//! verified by its enrolment proof before anything is sent to it, and then the per-host steps
//! of [`super::deploy_host`] (upload, secrets, provision, converge, health) run over SSH —
//! private hosts through the bastion.
//!
//! Host keys, never trusted blindly (docs/deploy.md, "Cloud hosts"): kiln gives each cloud host
//! a one-time enrolment token (`<state>/enrol/<host>.token`, 0600, 32 random bytes), added to
//! its user-data as a cloud-config part through an OpenTofu override file in the working copy
//! ([`OVERRIDE_FILE`]; the build itself never holds it). At first boot the server publishes
//! `HMAC-SHA256(token, "kiln-enrol-v1 HOST ssh-ed25519 KEY")` as its SSH pre-authentication
//! banner. kiln connects offering no credential at all (`PreferredAuthentications=none`), so
//! the only things exchanged are the key exchange — in which the server proves it holds the
//! private key of the key it presents — and the banner; kiln pins the key only when the proof
//! matches, and then removes the banner from the server. No private key is ever in the
//! user-data or the OpenTofu state: the server makes its own keys.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::enrol::{OVERRIDE_FILE, override_file, tokens};
use super::host::{self, Host, Ssh, SshSettings, SshTarget};
use super::progress::{Mode, Progress, State};
use super::{Failure, HostPlan, Layout, Outcome, Step, Timeouts};
use crate::syntax::system::ProviderKind;

/// Why the cloud path stopped before a host's own steps: the step (`secrets`, `apply`,
/// `address`, `enrol`) and, when one host is concerned, which. Never holds a secret value.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CloudError {
    pub host: Option<String>,
    pub step: &'static str,
    pub message: String,
}

impl std::fmt::Display for CloudError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Some(h) => write!(f, "host `{h}`, step {}: {}", self.step, self.message),
            None => write!(f, "step {}: {}", self.step, self.message),
        }
    }
}

fn err(host: Option<&str>, step: &'static str, message: impl Into<String>) -> CloudError {
    CloudError { host: host.map(str::to_string), step, message: message.into() }
}

pub use super::cloud_plan::{
    CloudHostPlan, Server, check_bastions, cloud_hosts, cutover_records, data_loss_message, host_plans, servers_of_state, unpinned,
    wave_targets,
};

// ---- the edges ----

/// Everything `kiln deploy` hands to the cloud path.
pub struct Request<'a> {
    pub compiled: &'a crate::pipeline::Compiled,
    /// The system's directory (secret files are relative to it).
    pub root: PathBuf,
    pub selected: &'a [String],
    /// The age identity's text (`--identity`).
    pub identity: Option<&'a str>,
    pub store: PathBuf,
    pub state: PathBuf,
    /// `--tofu PATH`; default `tofu` on PATH, else `terraform`.
    pub program: Option<PathBuf>,
    pub ssh_config: Option<PathBuf>,
    pub ssh_user: Option<String>,
    pub timeouts: Timeouts,
    /// How long a new server may take until it proves its key over SSH.
    pub boot_timeout: Duration,
    pub json: bool,
    /// `--yes`: apply a plan that changes something without asking.
    pub yes: bool,
    /// `--parallel N`: hosts of a wave at once.
    pub parallel: usize,
    /// A build already in the store (`--from`, `kiln rollback`) instead of `compiled`'s.
    pub stored: Option<Stored>,
    /// How to write to `[system] store` (stage-0 hosts' bundles): `kiln push`'s credentials.
    pub store_credentials: crate::push::Credentials,
    /// The route gate: `None` off (`--no-route-check`); else where a host's routes are
    /// requested when not at its server's public address and port 443 (`--route-address`).
    pub route_addresses: Option<BTreeMap<String, std::net::SocketAddr>>,
}

/// A build already in the store that the cloud path deploys: what runs (bundles, closures, the
/// OpenTofu root) comes from it; how to reach the hosts and their secrets from the source.
pub struct Stored {
    pub entry: PathBuf,
    pub manifest: crate::pipeline::Manifest,
    /// The generation a rollback returns to (recorded as `rollback_of`).
    pub rollback_of: Option<u64>,
}

/// What a cloud deploy did.
pub struct Report {
    pub results: BTreeMap<String, Result<Outcome, Failure>>,
    pub generation: Option<u64>,
    pub entry: PathBuf,
    /// `false`: the plan changes something and was not confirmed; nothing was applied.
    pub confirmed: bool,
    /// The wave the rollout stopped at.
    pub stopped_at: Option<String>,
}

/// `kiln deploy` with cloud hosts: prints the plan, progress, errors and a summary; returns
/// the exit code: 0 deployed; 2 the secrets, the store or the plan failed, or the plan
/// destroys data (nothing applied); 3 OpenTofu's apply failed or a host failed at a step; 4 the
/// plan was not confirmed (no terminal and no `--yes`, or the answer was no; nothing applied).
pub fn command(r: &Request<'_>) -> u8 {
    match deploy(r) {
        Ok(report) if !report.confirmed => {
            if r.json {
                println!(
                    "{}",
                    serde_json::json!({ "summary": { "ok": false, "confirmed": false, "deployed": [], "skipped": [], "failed": [], "untouched": r.selected, "generation": null } })
                );
            }
            4
        }
        Ok(report) => {
            let ok = report.results.values().all(Result::is_ok) && report.results.len() == r.selected.len();
            let failed: Vec<&Failure> = report.results.values().filter_map(|x| x.as_ref().err()).collect();
            let untouched: Vec<&String> = r.selected.iter().filter(|h| !report.results.contains_key(*h)).collect();
            if r.json {
                println!(
                    "{}",
                    serde_json::json!({ "summary": {
                        "ok": ok,
                        "deployed": report.results.iter().filter(|(_, x)| matches!(x, Ok(Outcome::Deployed))).map(|(h, _)| h).collect::<Vec<_>>(),
                        "skipped": report.results.iter().filter(|(_, x)| matches!(x, Ok(Outcome::Skipped))).map(|(h, _)| h).collect::<Vec<_>>(),
                        "failed": failed,
                        "untouched": untouched,
                        "stopped_at": report.stopped_at,
                        "generation": report.generation,
                        "entry": report.entry.display().to_string(),
                    }})
                );
            }
            for f in &failed {
                eprintln!("error: {f}");
            }
            if !untouched.is_empty() {
                let why = report
                    .stopped_at
                    .as_deref()
                    .map(|w| format!("the rollout stopped at wave `{w}`"))
                    .unwrap_or_else(|| "interrupted".into());
                eprintln!("not touched ({why}): {}", untouched.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", "));
            }
            if !ok {
                eprintln!("no generation recorded: the deployed state is not the requested one");
                return 3;
            }
            match report.generation {
                Some(n) => eprintln!("deployed `{}`: {} hosts, generation {n}", r.compiled.system.name, report.results.len()),
                None => eprintln!("deployed {} hosts of `{}`: no generation recorded", report.results.len(), r.compiled.system.name),
            }
            0
        }
        Err(e) => {
            if r.json {
                println!("{}", serde_json::json!({ "summary": { "ok": false, "error": e } }));
            }
            eprintln!("error: {e}");
            // Nothing was applied when the secrets, the store or the plan failed, or the plan
            // would destroy data (2, as for any usage or IO error); an apply that failed may
            // have changed servers (3).
            if matches!(e.step, "secrets" | "upload" | "plan") { 2 } else { 3 }
        }
    }
}

/// The secrets of `hosts` (decrypted in memory: nothing is applied or contacted when they
/// cannot be had), the build in the store (or the stored build `r.stored` names, its OpenTofu
/// root read from the entry) held against `kiln gc`, and each host's plan.
struct Prepared {
    held: crate::store::WriterLock,
    entry: PathBuf,
    manifest: crate::pipeline::Manifest,
    rollback_of: Option<u64>,
    artifacts: Vec<(String, Vec<u8>)>,
    plans: BTreeMap<String, HostPlan>,
}

fn prepare(r: &Request<'_>, hosts: &[String]) -> Result<Prepared, CloudError> {
    let c = r.compiled;
    let sys = &c.system;
    let identities = match r.identity {
        Some(text) => Some(crate::sops::load_identities(text).map_err(|e| err(None, "secrets", format!("identity: {e}")))?),
        None => None,
    };
    let mut values: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for h in hosts {
        let wanted = sys.host_secrets(&sys.hosts[h]);
        let v = if wanted.is_empty() {
            BTreeMap::new()
        } else {
            let ids = identities.as_ref().ok_or_else(|| {
                err(Some(h), "secrets", format!("the host needs {} secrets and no identity was given: pass --identity FILE", wanted.len()))
            })?;
            crate::secrets::values(&r.root, sys, &wanted, ids)
                .map_err(|e| err(Some(h), "secrets", format!("cannot decrypt its secrets with the identity given: {e}")))?
        };
        values.insert(h.clone(), v);
    }
    let store =
        crate::store::Store::open(&r.store).map_err(|e| err(None, "upload", format!("cannot open store `{}`: {e}", r.store.display())))?;
    let held = store.writer().map_err(|e| err(None, "upload", format!("cannot lock store `{}`: {e}", r.store.display())))?;
    let (entry, manifest, rollback_of, artifacts) = match &r.stored {
        None => {
            let entry = crate::pipeline::write(c, &store).map_err(|e| err(None, "upload", format!("cannot write to store: {e}")))?;
            let artifacts = c.system_artifacts.iter().map(|a| (a.path.clone(), a.bytes.clone())).collect();
            (std::fs::canonicalize(&entry).unwrap_or(entry), c.manifest.clone(), None, artifacts)
        }
        Some(s) => {
            if !s.entry.is_dir() {
                return Err(err(None, "upload", format!("store entry `{}` is gone (collected?)", s.entry.display())));
            }
            (s.entry.clone(), s.manifest.clone(), s.rollback_of, tofu_artifacts(&s.entry).map_err(|e| err(None, "apply", e))?)
        }
    };
    let mut plans: BTreeMap<String, HostPlan> = BTreeMap::new();
    for h in hosts {
        let p = super::host_plan(sys, &entry, &manifest, h, values.remove(h).unwrap_or_default()).map_err(|e| err(Some(h), "upload", e))?;
        plans.insert(h.clone(), p);
    }
    Ok(Prepared { held, entry, manifest, rollback_of, artifacts, plans })
}

/// The OpenTofu root of a store entry (`tofu/*` files), as `(path in the build, bytes)`.
fn tofu_artifacts(entry: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let dir = entry.join("tofu");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| format!("the build `{}` has no OpenTofu root: {e}", entry.display()))? {
        let e = e.map_err(|e| format!("`{}`: {e}", dir.display()))?;
        if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            let bytes = std::fs::read(e.path()).map_err(|x| format!("`{}`: {x}", e.path().display()))?;
            out.push((format!("tofu/{}", e.file_name().to_string_lossy()), bytes));
        }
    }
    out.sort();
    Ok(out)
}

/// The cloud path: secrets, the build in the store, OpenTofu's plan of the whole root (data it
/// would destroy stops here), the plan shown and confirmed, then wave by wave (`[deploy]
/// order`): an apply targeting the wave's servers and what depends on them, addresses,
/// enrolment, each host's steps (bastions first, then `--parallel` at a time); the first
/// failure stops the rollout. A generation when every host of the system succeeded.
pub fn deploy(r: &Request<'_>) -> Result<Report, CloudError> {
    host::catch_signals();
    let c = r.compiled;
    let sys = &c.system;
    let Prepared { held, entry, manifest, rollback_of, artifacts, mut plans } = prepare(r, r.selected)?;
    for p in plans.values_mut() {
        // Existing hosts: `--no-route-check` and `--route-address` as on their own path.
        p.route_address = r.route_addresses.as_ref().and_then(|given| given.get(&p.name).copied().or(p.route_address));
    }

    let cloud_hosts: Vec<String> =
        sys.hosts.values().filter(|h| h.provider_kind != ProviderKind::Existing).map(|h| h.name.clone()).collect();
    let tokens = tokens(&r.state, &cloud_hosts).map_err(|e| err(None, "apply", e))?;
    let tofu = Tofu::plan(r, &artifacts, &tokens)?;
    let waves = super::waves(sys, &sys.deploy_order, r.selected);
    let cloud_plans = host_plans(&tofu.root, &tofu.plan, r.selected);
    check_bastions(sys, &waves, &cloud_plans).map_err(|e| err(None, "plan", e))?;
    let targets = wave_targets(&tofu.root, &waves);
    super::cloud_show::show_plan(r.json, &manifest, rollback_of, &waves, &cloud_plans, &tofu.plan);
    let last = crate::generations::list(&r.state).ok().and_then(|g| g.last().cloned());
    let changes = tofu.plan.changes || last.as_ref().is_none_or(|g| g.hash != manifest.hash);
    if changes && !r.yes && !super::cloud_show::confirmed(&tofu.plan) {
        return Ok(Report { results: BTreeMap::new(), generation: None, entry, confirmed: false, stopped_at: None });
    }
    // A new server booting through stage 0 fetches its bundle from the system's store: the
    // build goes there first, and each such bundle is fetched back as the host will.
    let new_servers: Vec<String> =
        r.selected.iter().filter(|h| cloud_plans.get(*h).is_some_and(CloudHostPlan::new_server)).cloned().collect();
    let stage0 = super::stage0::stage0_hosts(&entry, &manifest, &new_servers).map_err(|e| err(None, "upload", e))?;
    if let (false, Some(url)) = (stage0.is_empty(), sys.store_url.as_deref()) {
        let names: Vec<&str> = stage0.iter().map(|(h, _)| h.as_str()).collect();
        eprintln!("publishing the build to {url} (stage 0 of {})", names.join(", "));
        super::stage0::publish(url, &r.store_credentials, &entry, &stage0)
            .map_err(|e| err(None, "upload", format!("{e}; nothing was applied")))?;
    }
    // What is applied from here on is in the state: the working copy goes in place.
    let Tofu { program, name, staged, redact, plan: tofu_plan, .. } = tofu;
    let dir = staged.install().map_err(|e| err(None, "apply", e))?;
    // The servers as they are before anything is applied: the old servers of stateful hosts
    // about to be replaced are stopped there.
    let before = if cloud_plans.values().any(CloudHostPlan::stops_old_server) {
        show_servers(&program, &name, &dir, &redact)?
    } else {
        BTreeMap::new()
    };
    // One wave selecting every host needs no `-target` (and none of Terraform's warnings).
    let targeted = waves.len() > 1 || r.selected.len() < sys.hosts.len();

    let mode = if r.json { Mode::Json } else { Mode::Plain };
    let progress = Progress::new(mode, r.selected);
    let control = host::control_dir().map_err(|e| err(None, "connect", e))?;
    let settings = ssh_settings(r, control.path());
    let user = ssh_user(r);
    let mut results = BTreeMap::new();
    let mut stopped_at = None;
    for ((wave, hosts), wave_targets) in waves.iter().zip(&targets) {
        if results.values().any(Result::is_err) || host::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        if r.json {
            println!(
                "{}",
                serde_json::json!({ "wave": wave, "hosts": hosts, "targets": if targeted { Some(wave_targets) } else { None } })
            );
        } else {
            eprintln!("wave `{wave}`: {}", hosts.join(", "));
        }
        let wave_cloud: Vec<&String> = hosts.iter().filter(|h| cloud_hosts.contains(h)).collect();
        for h in &wave_cloud {
            progress.emit(h, Step::Connect, State::Started, format!("OpenTofu apply ({})", cloud_plans[*h].tofu));
        }
        // A stateful host's old server is stopped before OpenTofu replaces it (private hosts
        // first: a bastion being replaced is the way to them).
        let mut stopping: Vec<&&String> =
            wave_cloud.iter().filter(|h| cloud_plans[**h].stops_old_server() && before.contains_key(**h)).collect();
        stopping.sort_by_key(|h| sys.hosts[**h].bastion);
        for h in stopping {
            let res = target(r, &before, h, &user).map_err(|e| fail(h, Step::Stop, e)).and_then(|t| {
                let ssh = Ssh { target: t, settings: settings.clone() };
                let res = super::replace::stop_old_server(&ssh, h, &plans[*h].units, Duration::from_secs(300), &progress);
                ssh.close();
                res
            });
            if let Err(f) = res {
                progress.emit(h, Step::Stop, State::Failed, f.message.clone());
                results.insert((*h).clone(), Err(f));
                break;
            }
        }
        if results.values().any(Result::is_err) {
            stopped_at = Some(wave.clone());
            break;
        }
        // DNS records the wave changes wait for its hosts' health gates: the cut-over.
        let cutover = cutover_records(wave_targets, &tofu_plan);
        let first: BTreeSet<String> = wave_targets.difference(&cutover).cloned().collect();
        let servers = apply_wave(&program, &name, &dir, (targeted || !cutover.is_empty()).then_some(&first), &redact)
            .map_err(|e| if targeted { CloudError { message: format!("wave `{wave}`: {}", e.message), ..e } } else { e })?;
        for h in &wave_cloud {
            let s = servers.get(*h).ok_or_else(|| err(Some(h), "address", "OpenTofu's state has no server for it after apply"))?;
            // The route gate requests the edge's routes at its server's public address.
            if let Some(p) = plans.get_mut(*h) {
                p.route_address = r.route_addresses.as_ref().and_then(|given| {
                    given.get(*h).copied().or_else(|| s.ipv4.map(|ip| std::net::SocketAddr::new(ip, super::routes::HTTPS_PORT)))
                });
            }
            progress.emit(
                h,
                Step::Connect,
                State::Done,
                format!("server {} {}", s.id, s.ipv4.map(|a| a.to_string()).unwrap_or_else(|| "(private)".into())),
            );
        }
        // Bastions first, one at a time: the private hosts are reached through them.
        let (bastions, rest): (Vec<&String>, Vec<&String>) = hosts.iter().partition(|h| sys.hosts[*h].bastion);
        for h in bastions {
            let res = one_host(r, &settings, &user, &servers, &tokens, &plans[h], &progress);
            if let Err(f) = &res {
                progress.emit(&f.host, f.step, State::Failed, f.message.clone());
            }
            results.insert(h.clone(), res);
        }
        if results.values().all(Result::is_ok) {
            let done = in_parallel(&rest, r.parallel, |h| one_host(r, &settings, &user, &servers, &tokens, &plans[h], &progress));
            for f in done.values().filter_map(|x| x.as_ref().err()) {
                progress.emit(&f.host, f.step, State::Failed, f.message.clone());
            }
            results.extend(done);
        }
        // The route gates once the whole wave is up (the edge's upstreams are its other hosts).
        let wave_plans: Vec<&HostPlan> = hosts.iter().filter_map(|h| plans.get(h)).collect();
        let mut wave_results: BTreeMap<String, Result<Outcome, Failure>> =
            hosts.iter().filter_map(|h| results.remove(h).map(|x| (h.clone(), x))).collect();
        super::finish_wave(&wave_plans, &mut wave_results, &r.timeouts, &progress);
        results.extend(wave_results);
        if results.values().any(Result::is_err) {
            stopped_at = Some(wave.clone());
        } else if !cutover.is_empty() {
            cut_over(&program, &name, &dir, &cutover, &redact, &wave_cloud, &progress)
                .map_err(|e| CloudError { message: format!("wave `{wave}`: {}", e.message), ..e })?;
        }
    }
    progress.finish();
    drop(control);

    let all_ok = results.values().all(Result::is_ok) && results.len() == r.selected.len();
    let mut generation = None;
    if all_ok && r.selected.len() == sys.hosts.len() {
        #[allow(clippy::disallowed_methods)] // the edge: a generation's time is read here
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        generation = if last.as_ref().is_some_and(|g| g.hash == manifest.hash) {
            last.map(|g| g.number)
        } else {
            let g = crate::generations::add_marked(&r.state, &manifest, &name, now, rollback_of)
                .map_err(|e| err(None, "done", format!("every host was deployed, but the generation was not recorded: {e}")))?;
            Some(g.number)
        };
    }
    drop(held);
    Ok(Report { results, generation, entry, confirmed: true, stopped_at })
}

/// Runs `f` on every host, `parallel` at a time; after a failure (or an interrupt) no new host
/// is started.
fn in_parallel<'h>(
    hosts: &[&'h String],
    parallel: usize,
    f: impl Fn(&'h String) -> Result<Outcome, Failure> + Sync,
) -> BTreeMap<String, Result<Outcome, Failure>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results = std::sync::Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..parallel.min(hosts.len()).max(1) {
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) && !host::INTERRUPTED.load(Ordering::SeqCst) {
                    let Some(h) = hosts.get(next.fetch_add(1, Ordering::SeqCst)) else { return };
                    let res = f(h);
                    if res.is_err() {
                        stop.store(true, Ordering::SeqCst);
                    }
                    results.lock().expect("not poisoned").insert((*h).clone(), res);
                }
            });
        }
    });
    results.into_inner().expect("not poisoned")
}

/// The staged working copy with OpenTofu's plan of it (`init`, `plan`), not yet in place.
struct Tofu {
    program: PathBuf,
    name: String,
    staged: crate::tofu_workdir::Staged,
    root: Value,
    plan: crate::tofu_workdir::TofuPlan,
    redact: Vec<String>,
}

impl Tofu {
    /// Stages the working copy (root, backend, enrolment override) and plans it; a plan that
    /// destroys data stops here.
    fn plan(r: &Request<'_>, artifacts: &[(String, Vec<u8>)], tokens: &BTreeMap<String, String>) -> Result<Tofu, CloudError> {
        use crate::tofu_workdir as wd;
        let c = r.compiled;
        #[allow(clippy::disallowed_methods)] // the edge: the program is looked up on PATH
        let path_var = std::env::var_os("PATH");
        let program = wd::find_program(r.program.as_deref(), path_var.as_deref()).map_err(|e| err(None, "apply", e))?;
        let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "tofu".into());
        let backend = crate::state_backend::Backend::of(c.system.deploy_state.as_ref());
        let main = artifacts
            .iter()
            .find(|(p, _)| p == "tofu/main.tf.json")
            .ok_or_else(|| err(None, "apply", "the build has no OpenTofu root (tofu/main.tf.json)"))?;
        let root: Value = serde_json::from_slice(&main.1).map_err(|e| err(None, "apply", format!("tofu/main.tf.json: {e}")))?;
        let mut files = wd::files(artifacts, &backend);
        files.push((OVERRIDE_FILE.to_string(), override_file(&root, tokens).map_err(|e| err(None, "apply", e))?));
        let staged = wd::prepare(&r.state, &files).map_err(|e| err(None, "apply", e))?;
        let redact: Vec<String> = secret_env().into_iter().chain(tokens.values().cloned()).collect();
        let plan = wd::plan(&program, &staged, &backend, &redact).map_err(|e| err(None, "plan", e))?;
        let losses = wd::data_losses(&plan);
        if !losses.is_empty() {
            return Err(err(None, "plan", data_loss_message(&name, &losses, &r.state)));
        }
        Ok(Tofu { program, name, staged, root, plan, redact })
    }
}

/// `apply` in the working copy in place (`-target` each of `targets` when given), then the
/// servers from `show -json`.
fn apply_wave(
    program: &Path,
    name: &str,
    dir: &Path,
    targets: Option<&BTreeSet<String>>,
    redact: &[String],
) -> Result<BTreeMap<String, Server>, CloudError> {
    use crate::tofu_workdir as wd;
    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        wd::run_in(program, dir, &args).map_err(|e| err(None, "apply", e))
    };
    let mut args: Vec<String> = ["apply", "-auto-approve", "-input=false", "-no-color"].map(String::from).to_vec();
    args.extend(targets.into_iter().flatten().map(|t| format!("-target={t}")));
    let apply = run(&args)?;
    if !apply.status.success() {
        return Err(err(None, "apply", format!("`{name} apply` failed{}", wd::excerpt(&apply.stdout, &apply.stderr, redact))));
    }
    show_servers(program, name, dir, redact)
}

/// The wave's cut-over, once its hosts passed their health gates: an apply targeting the DNS
/// records it changes (`cutover_records`), reported on each of the wave's cloud hosts.
fn cut_over(
    program: &Path,
    name: &str,
    dir: &Path,
    records: &BTreeSet<String>,
    redact: &[String],
    hosts: &[&String],
    p: &Progress,
) -> Result<(), CloudError> {
    let list = records.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
    for h in hosts {
        p.emit(h, Step::Cutover, State::Started, format!("DNS records retargeted: {list}"));
    }
    let res = apply_wave(program, name, dir, Some(records), redact).map_err(|e| CloudError {
        step: "cutover",
        message: format!("every host is deployed and healthy, but the DNS cut-over failed ({list} not retargeted): {}", e.message),
        ..e
    });
    for h in hosts {
        p.emit(h, Step::Cutover, if res.is_ok() { State::Done } else { State::Failed }, "");
    }
    res.map(|_| ())
}

/// The servers in the working copy's state (`show -json`).
fn show_servers(program: &Path, name: &str, dir: &Path, redact: &[String]) -> Result<BTreeMap<String, Server>, CloudError> {
    use crate::tofu_workdir as wd;
    let show = wd::run_in(program, dir, &["show", "-json", "-no-color"]).map_err(|e| err(None, "address", e))?;
    if !show.status.success() {
        return Err(err(None, "address", format!("`{name} show -json` failed{}", wd::excerpt(&show.stdout, &show.stderr, redact))));
    }
    let v: Value =
        serde_json::from_slice(&show.stdout).map_err(|e| err(None, "address", format!("`{name} show -json` printed no JSON: {e}")))?;
    Ok(servers_of_state(&v))
}

/// `kiln secrets push HOST` for a host a cloud provider created: its server's address from
/// OpenTofu's state in `<state>/tofu` (nothing is applied), its key as enrolment pinned it, then
/// the same steps as for an existing host (`super::push_secrets`: at the build's closure,
/// secrets delivered, the provisioner, restarts, health). Exit 0, 2 (secrets, store, no state
/// or pin yet) or 3 (the host failed at a step).
pub fn push_secrets_command(r: &Request<'_>, name: &str) -> u8 {
    let res = (|| -> Result<BTreeSet<String>, CloudError> {
        let Prepared { held, plans, .. } = prepare(r, &[name.to_string()])?;
        let servers = state_servers(r)?;
        let known = std::fs::read_to_string(r.state.join("known_hosts")).unwrap_or_default();
        if servers.contains_key(name) && super::known_hosts::pinned(&known, name).is_empty() {
            return Err(err(Some(name), "plan", "its host key was never enrolled: deploy it first (`kiln deploy`)"));
        }
        let control = host::control_dir().map_err(|e| err(None, "connect", e))?;
        let settings = ssh_settings(r, control.path());
        let user = ssh_user(r);
        let t = target(r, &servers, name, &user).map_err(|e| err(Some(name), "connect", e))?;
        let ssh = Ssh { target: t, settings };
        let progress = Progress::new(if r.json { Mode::Json } else { Mode::Plain }, &[name.to_string()]);
        let out = super::push_secrets(&ssh, &plans[name], &Layout::system(), &r.timeouts, &progress);
        progress.finish();
        ssh.close();
        drop(control);
        drop(held);
        out.map_err(|f| CloudError {
            host: Some(f.host.clone()),
            step: f.step.name(),
            message: f.message.clone() + &f.log_tail.map(|t| format!("\n{t}")).unwrap_or_default(),
        })
    })();
    match res {
        Ok(changed) => {
            if r.json {
                println!("{}", serde_json::json!({ "summary": { "ok": true, "deployed": [name], "changed": changed } }));
            }
            eprintln!("secrets delivered");
            0
        }
        Err(e) => {
            if r.json {
                println!("{}", serde_json::json!({ "summary": { "ok": false, "error": e } }));
            }
            eprintln!("error: {e}");
            if matches!(e.step, "secrets" | "upload" | "plan" | "address") { 2 } else { 3 }
        }
    }
}

/// The servers OpenTofu's state in `<state>/tofu` holds (`show -json`; nothing applied).
fn state_servers(r: &Request<'_>) -> Result<BTreeMap<String, Server>, CloudError> {
    use crate::tofu_workdir as wd;
    let dir = r.state.join(wd::WORKDIR);
    if !dir.is_dir() {
        return Err(err(None, "address", format!("no OpenTofu working copy in `{}`: deploy the system first", dir.display())));
    }
    #[allow(clippy::disallowed_methods)] // the edge: the program is looked up on PATH
    let path_var = std::env::var_os("PATH");
    let program = wd::find_program(r.program.as_deref(), path_var.as_deref()).map_err(|e| err(None, "address", e))?;
    let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "tofu".into());
    show_servers(&program, &name, &dir, &secret_env())
}

/// How the cloud path's SSH connections are made: the state's pins, a control directory.
fn ssh_settings(r: &Request<'_>, control: &Path) -> SshSettings {
    SshSettings {
        known_hosts: r.state.join("known_hosts"),
        control_dir: control.to_path_buf(),
        config: r.ssh_config.clone(),
        connect_timeout: Duration::from_secs(15),
    }
}

/// The login on cloud hosts: `--ssh-user`, else the first admin, else root.
fn ssh_user(r: &Request<'_>) -> String {
    r.ssh_user.clone().or_else(|| r.compiled.system.admins.first().map(|a| a.name.clone())).unwrap_or_else(|| "root".into())
}

/// Values of the environment that are credentials (`TF_VAR_*`, `*TOKEN*`, `*SECRET*`), to be
/// redacted from OpenTofu's output.
fn secret_env() -> Vec<String> {
    #[allow(clippy::disallowed_methods)] // the edge: OpenTofu's credentials come from the environment
    std::env::vars()
        .filter(|(k, _)| k.starts_with("TF_VAR_") || k.contains("TOKEN") || k.contains("SECRET") || k.contains("PASSWORD"))
        .map(|(_, v)| v)
        .collect()
}

fn fail(host: &str, step: Step, message: impl Into<String>) -> Failure {
    Failure { host: host.to_string(), step, message: message.into(), log_tail: None, details: None }
}

/// Where ssh connects for `name`: its public address (from the state for a cloud host, the
/// model for an existing one), else its private address through the bastion.
fn target(r: &Request<'_>, servers: &BTreeMap<String, Server>, name: &str, user: &str) -> Result<SshTarget, String> {
    let sys = &r.compiled.system;
    let public = |n: &str| -> Option<IpAddr> { servers.get(n).and_then(|s| s.ipv4).or(sys.hosts[n].address) };
    if let Some(a) = public(name) {
        let port = sys.hosts[name].ssh_port;
        return Ok(SshTarget { alias: name.to_string(), destination: a.to_string(), port, user: user.to_string(), bastion: None });
    }
    let private = sys.hosts[name].private_address().ok_or("the host has neither a public nor a private address")?;
    let (bastion, address) = sys
        .hosts
        .values()
        .filter(|b| b.bastion && b.name != name)
        .find_map(|b| public(&b.name).map(|a| (b.name.clone(), a)))
        .ok_or("the host has no public address and the system has no bastion with one to reach it through")?;
    Ok(SshTarget {
        alias: name.to_string(),
        destination: private.to_string(),
        port: sys.hosts[name].ssh_port,
        user: user.to_string(),
        bastion: Some(Box::new(SshTarget {
            destination: address.to_string(),
            port: sys.hosts[&bastion].ssh_port,
            alias: bastion,
            user: user.to_string(),
            bastion: None,
        })),
    })
}

fn one_host(
    r: &Request<'_>,
    settings: &SshSettings,
    user: &str,
    servers: &BTreeMap<String, Server>,
    tokens: &BTreeMap<String, String>,
    plan: &HostPlan,
    p: &Progress,
) -> Result<Outcome, Failure> {
    let name = plan.name.as_str();
    let t = target(r, servers, name, user).map_err(|e| fail(name, Step::Connect, e))?;
    let ssh = Ssh { target: t.clone(), settings: settings.clone() };
    let mut fresh = false;
    if let (Some(server), Some(token)) = (servers.get(name), tokens.get(name)) {
        fresh = super::enrol::wait_and_pin(
            &super::enrol::Waits { state: &r.state, boot_timeout: r.boot_timeout, timeouts: &r.timeouts },
            settings,
            &ssh,
            server,
            token,
            p,
        )?;
        if fresh {
            boot_provisioner(r, &ssh, plan, p)?;
        }
    } else {
        let pinned = super::known_hosts::pinned(&std::fs::read_to_string(&settings.known_hosts).unwrap_or_default(), name);
        if pinned.is_empty() {
            let declared = r.compiled.system.hosts[name].ssh_host_key.clone();
            let key = declared.ok_or_else(|| {
                fail(name, Step::Connect, "no pinned host key: deploy this existing host alone first (`--hosts`, `--trust-host-key`)")
            })?;
            super::known_hosts::pin(&settings.known_hosts, name, &key).map_err(|e| fail(name, Step::Connect, e))?;
        }
    }
    let res = super::deploy_host(&ssh, plan, &Layout::system(), &r.timeouts, p);
    ssh.close();
    // A new server reached its closure through its boot's provisioner run: deployed, not
    // skipped.
    res.map(|o| if fresh { Outcome::Deployed } else { o })
}

/// A new server runs its provisioner from cloud-init, and that run waits for its secrets:
/// they are delivered, and cloud-init is waited for, before `deploy_host` looks at the host
/// (which then finds it at its closure, or runs the provisioner again). Never two
/// provisioners at once.
fn boot_provisioner(r: &Request<'_>, ssh: &Ssh, plan: &HostPlan, p: &Progress) -> Result<(), Failure> {
    let layout = Layout::system();
    if !plan.secrets.0.is_empty() {
        super::deliver_secrets(ssh, plan, &layout, &r.timeouts, p)?;
    }
    p.emit(&plan.name, Step::Converge, State::Waiting, "waiting for cloud-init (the boot's provisioner run)");
    let out = ssh
        .run("cloud-init status --wait >/dev/null 2>&1 || true\ncloud-init status 2>&1 || true\n", b"", r.timeouts.converge)
        .map_err(|e| fail(&plan.name, Step::Converge, format!("waiting for cloud-init: {e}")))?;
    p.emit(&plan.name, Step::Converge, State::Waiting, format!("cloud-init {}", out.stdout_text().trim()));
    Ok(())
}
