//! `kiln deploy`, `kiln rollback` (through [`rollout`]) and `kiln secrets push`: the edges of
//! `kiln::deploy` — the build written to the store (or a build or generation taken from it),
//! secret values decrypted in memory, ssh targets and pinned keys, every host read before
//! anything changes, the plan shown and confirmed, rollout waves (`canary` first, or `[deploy]
//! order`) run in parallel within a wave, the summary, the exit code and (only when everything
//! succeeded) the generation.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kiln::deploy::host::{self, Host, Ssh, SshSettings, SshTarget};
use kiln::deploy::known_hosts::{self, KeyError};
use kiln::deploy::progress::{Mode, Progress, State};
use kiln::deploy::{self as d, Failure, HostAction, HostPlan, Layout, Outcome, Probe, Step, Timeouts};
use kiln::generations::Generation;
use kiln::pipeline::{self, Compiled, Manifest, Options};
use kiln::store::Store;

use crate::cli::args::{DeployArgs, RolloutArgs};
use crate::cli::env::store_dir;
use crate::cli::ui::{Ui, io_error, usage_error};

/// A host failed: the deployed state is not the requested one.
const EXIT_FAILED: u8 = 3;
/// The plan was not confirmed: no terminal to ask on and no `--yes`, or the answer was no.
const EXIT_NOT_CONFIRMED: u8 = 4;
/// How many hosts are reached and read at once before the plan.
const READ_PARALLEL: usize = 16;

/// What a rollout deploys.
pub(crate) enum What<'a> {
    /// The system at PATH, built now.
    Build,
    /// A build already in the store (`--from RESULT`).
    From(&'a Path),
    /// A recorded generation (`kiln rollback`).
    Generation(Generation),
}

/// `kiln deploy PATH`.
pub(crate) fn deploy(path: &Path, opts: &Options, ui: Ui, a: &DeployArgs, r: &RolloutArgs, from: Option<&Path>) -> ExitCode {
    crate::cli::with_compiled(path, opts, ui, |c| rollout(path, opts, ui, a, r, c, from.map_or(What::Build, What::From)))
}

/// A rollout of `what` to the hosts of the compiled system `c` (deploy and rollback).
pub(crate) fn rollout(path: &Path, opts: &Options, ui: Ui, a: &DeployArgs, r: &RolloutArgs, c: &Compiled, what: What<'_>) -> ExitCode {
    host::catch_signals();
    let selected = match select(c, r) {
        Ok(s) => s,
        Err(e) => return e,
    };
    match run(path, opts, ui, a, c, &selected, r, Action::Deploy, what) {
        Ok(code) => code,
        Err(e) => e,
    }
}

/// `kiln secrets push HOST PATH`.
pub(crate) fn push_secrets(path: &Path, opts: &Options, ui: Ui, a: &DeployArgs, host: &str) -> ExitCode {
    host::catch_signals();
    let r = RolloutArgs { hosts: vec![host.to_string()], group: None, parallel: 1, yes: true };
    crate::cli::with_compiled(path, opts, ui, |c| {
        match run(path, opts, ui, a, c, &[host.to_string()], &r, Action::PushSecrets, What::Build) {
            Ok(code) => code,
            Err(e) => e,
        }
    })
}

/// The hosts `--hosts` or `--group` choose (every host without either).
fn select(c: &Compiled, r: &RolloutArgs) -> Result<Vec<String>, ExitCode> {
    let sys = &c.system;
    if let Some(g) = &r.group {
        let groups: std::collections::BTreeSet<&str> = sys.hosts.values().filter_map(|h| h.group.as_deref()).collect();
        if !groups.contains(g.as_str()) {
            let hint = kiln::diag::did_you_mean(g, groups.iter().copied()).map(|m| format!(" (did you mean `{m}`?)")).unwrap_or_default();
            let known = if groups.is_empty() {
                "no host has a `group`".to_string()
            } else {
                format!("the groups are {}", groups.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", "))
            };
            return Err(usage_error(&format!("no host of system `{}` is in rollout group `{g}`{hint}: {known}", sys.name)));
        }
        return Ok(sys.hosts.values().filter(|h| h.group.as_deref() == Some(g.as_str())).map(|h| h.name.clone()).collect());
    }
    Ok(if r.hosts.is_empty() { sys.hosts.keys().cloned().collect() } else { r.hosts.clone() })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Deploy,
    PushSecrets,
}

/// `--no-route-check` (no route gate) and `--route-address HOST=ADDRESS:PORT` (the gate
/// requests HOST's routes there) applied to the host plans.
fn set_route_addresses(plans: &mut [HostPlan], a: &DeployArgs, sys: &kiln::model::System) -> Result<(), String> {
    let given = route_addresses(a, sys)?;
    for p in plans {
        if a.no_route_check {
            p.route_address = None;
        } else if let Some(addr) = given.get(&p.name) {
            p.route_address = Some(*addr);
        }
    }
    Ok(())
}

/// `--route-address HOST=ADDRESS:PORT`, each checked.
fn route_addresses(a: &DeployArgs, sys: &kiln::model::System) -> Result<BTreeMap<String, std::net::SocketAddr>, String> {
    let mut given = BTreeMap::new();
    for x in &a.route_address {
        let (h, addr) = x.split_once('=').ok_or_else(|| format!("--route-address `{x}`: expected HOST=ADDRESS:PORT"))?;
        if !sys.hosts.contains_key(h) {
            return Err(format!("--route-address names `{h}`, which is not a host of system `{}`", sys.name));
        }
        let addr = addr.parse().map_err(|e| format!("--route-address `{x}`: `{addr}` is not ADDRESS:PORT ({e})"))?;
        given.insert(h.to_string(), addr);
    }
    Ok(given)
}

/// The state directory: `--state`, else `.kiln/state/<system>`.
pub(crate) fn state_dir(a: &DeployArgs, system: &str) -> PathBuf {
    a.state.clone().unwrap_or_else(|| Path::new(".kiln/state").join(system))
}

/// The store entry `path` (a result link or an entry) names, which must be in `store`.
fn entry_in_store(store: &Path, path: &Path) -> Result<PathBuf, String> {
    let entry = std::fs::canonicalize(path).map_err(|e| format!("--from `{}`: {e}", path.display()))?;
    let store = std::fs::canonicalize(store).map_err(|e| format!("store `{}`: {e}", store.display()))?;
    if entry.parent() != Some(store.as_path()) || !entry.is_dir() {
        return Err(format!(
            "--from `{}` is not an entry of the store `{}` (it resolves to `{}`): pass the store it was built into with --store",
            path.display(),
            store.display(),
            entry.display()
        ));
    }
    Ok(entry)
}

/// A build from the store may be deployed with the system at PATH only when that source says
/// the same about what deploy reads from it: the same system and hosts, each host's services,
/// and each service's secrets (how to reach the hosts and where the secrets are comes from
/// the source; what runs, from the build).
fn same_shape(c: &Compiled, b: &kiln::plan::Build, what: &str, path: &Path) -> Result<(), String> {
    let sys = &c.system;
    if b.manifest.system != sys.name {
        return Err(format!("{what} is a build of system `{}`, not of `{}` at `{}`", b.manifest.system, sys.name, path.display()));
    }
    let theirs: Vec<&String> = b.manifest.hosts.keys().collect();
    let ours: Vec<&String> = sys.hosts.keys().collect();
    let differs = |detail: String| {
        Err(format!(
            "{what} differs from the system at `{}` in what deploy takes from the source ({detail}): deploy it from the source it was built from",
            path.display()
        ))
    };
    if theirs != ours {
        return differs(format!("its hosts are {}, the source's {}", list(&theirs), list(&ours)));
    }
    for (name, h) in &sys.hosts {
        let mut here: Vec<&String> = h.services.iter().collect();
        here.sort();
        let there: Vec<&String> = b.facts.hosts.get(name).map(|f| f.services.iter().collect()).unwrap_or_default();
        if here != there {
            return differs(format!("host `{name}` runs {} there, {} in the source", list(&there), list(&here)));
        }
        for s in &h.services {
            let mut mine: Vec<&String> = sys.services[s].secrets.iter().map(|u| &u.secret).collect();
            mine.sort();
            mine.dedup();
            let mut theirs: Vec<&String> = b.facts.services.get(s).map(|f| f.secrets.iter().collect()).unwrap_or_default();
            theirs.sort();
            theirs.dedup();
            if mine != theirs {
                return differs(format!("service `{s}` uses secrets {} there, {} in the source", list(&theirs), list(&mine)));
            }
        }
    }
    Ok(())
}

fn list(v: &[&String]) -> String {
    if v.is_empty() { "none".into() } else { v.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ") }
}

#[allow(clippy::too_many_arguments)]
fn run(
    path: &Path,
    opts: &Options,
    ui: Ui,
    a: &DeployArgs,
    c: &Compiled,
    selected: &[String],
    r: &RolloutArgs,
    action: Action,
    what: What<'_>,
) -> Result<ExitCode, ExitCode> {
    let sys = &c.system;
    for h in selected {
        if !sys.hosts.contains_key(h) {
            let hint = kiln::diag::did_you_mean(h, sys.hosts.keys().map(String::as_str))
                .map(|m| format!(" (did you mean `{m}`?)"))
                .unwrap_or_default();
            return Err(usage_error(&format!("no host `{h}` in system `{}`{hint}", sys.name)));
        }
    }
    if !kiln::deploy::cloud::cloud_hosts(sys, selected).is_empty() {
        // Hosts a cloud provider creates: OpenTofu applies, then the same per-host steps.
        let dir = store_dir(a.store.clone());
        let state = state_dir(a, &sys.name);
        let stored = match &what {
            What::Build => None,
            What::From(from) => {
                let entry = entry_in_store(&dir, from).map_err(|e| usage_error(&e))?;
                let b = kiln::generations::read_build(&entry).map_err(|e| usage_error(&format!("--from: {e}")))?;
                same_shape(c, &b, &format!("--from `{}`", from.display()), path).map_err(|e| usage_error(&e))?;
                Some(kiln::deploy::cloud::Stored { entry, manifest: b.manifest, rollback_of: None })
            }
            What::Generation(g) => {
                let b = kiln::generations::build_of(&dir, &state, g).map_err(|e| usage_error(&e))?;
                same_shape(c, &b, &format!("generation {}", g.number), path).map_err(|e| usage_error(&e))?;
                let entry = dir.join(&g.entry);
                Some(kiln::deploy::cloud::Stored {
                    entry: std::fs::canonicalize(&entry).unwrap_or(entry),
                    manifest: b.manifest,
                    rollback_of: Some(g.number),
                })
            }
        };
        let timeouts =
            Timeouts { converge: Duration::from_secs(a.timeout), health: Duration::from_secs(a.health_timeout), ..Timeouts::default() };
        let req = kiln::deploy::cloud::Request {
            compiled: c,
            root: kiln::load::system_root(path).map(|(r, _)| r).unwrap_or_default(),
            selected,
            identity: opts.identity.as_deref(),
            store: dir,
            state,
            program: a.tofu.clone(),
            ssh_config: a.ssh_config.clone(),
            ssh_user: a.ssh_user.clone(),
            timeouts,
            boot_timeout: Duration::from_secs(a.boot_timeout),
            json: a.json,
            yes: r.yes,
            parallel: r.parallel as usize,
            stored,
            store_credentials: crate::cli::env::credentials(),
            route_addresses: if a.no_route_check { None } else { Some(route_addresses(a, sys).map_err(|e| usage_error(&e))?) },
        };
        return Ok(ExitCode::from(match action {
            Action::Deploy => kiln::deploy::cloud::command(&req),
            Action::PushSecrets => kiln::deploy::cloud::push_secrets_command(&req, &selected[0]),
        }));
    }
    let trust = known_hosts::parse_trust(&a.trust_host_key).map_err(|e| usage_error(&e))?;
    for h in trust.keys() {
        if !sys.hosts.contains_key(h) {
            return Err(usage_error(&format!("--trust-host-key names `{h}`, which is not a host of system `{}`", sys.name)));
        }
    }

    // The secrets first: nothing is written or contacted when they cannot be had.
    let identities = match &opts.identity {
        Some(text) => Some(kiln::sops::load_identities(text).map_err(|e| io_error(&format!("identity: {e}")))?),
        None => None,
    };
    let root = kiln::load::system_root(path).map(|(r, _)| r).unwrap_or_default();
    let mut values: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for h in selected {
        let wanted = sys.host_secrets(&sys.hosts[h]);
        if wanted.is_empty() {
            values.insert(h.clone(), BTreeMap::new());
            continue;
        }
        let Some(ids) = &identities else {
            return Err(io_error(&format!(
                "host `{h}`, step secrets: the host needs {} secret{} and no identity was given: pass --identity FILE (or set SOPS_AGE_KEY_FILE)",
                wanted.len(),
                if wanted.len() == 1 { "" } else { "s" }
            )));
        };
        let v = kiln::secrets::values(&root, sys, &wanted, ids)
            .map_err(|e| io_error(&format!("host `{h}`, step secrets: cannot decrypt its secrets with the identity given: {e}")))?;
        values.insert(h.clone(), v);
    }

    // The build in the store (held shared until the generation is recorded: `kiln gc` waits).
    let dir = store_dir(a.store.clone());
    let state = state_dir(a, &sys.name);
    let store = Store::open(&dir).map_err(|e| io_error(&format!("cannot open store `{}`: {e}", dir.display())))?;
    let held = store.writer().map_err(|e| io_error(&format!("cannot lock store `{}`: {e}", dir.display())))?;
    let (entry, manifest, rollback_of): (PathBuf, Manifest, Option<u64>) = match &what {
        What::Build => {
            let entry = pipeline::write(c, &store).map_err(|e| io_error(&format!("cannot write to store `{}`: {e}", dir.display())))?;
            (std::fs::canonicalize(&entry).unwrap_or(entry), c.manifest.clone(), None)
        }
        What::From(from) => {
            let entry = entry_in_store(&dir, from).map_err(|e| usage_error(&e))?;
            let b = kiln::generations::read_build(&entry).map_err(|e| usage_error(&format!("--from: {e}")))?;
            same_shape(c, &b, &format!("--from `{}`", from.display()), path).map_err(|e| usage_error(&e))?;
            (entry, b.manifest, None)
        }
        What::Generation(g) => {
            let b = kiln::generations::build_of(&dir, &state, g).map_err(|e| usage_error(&e))?;
            same_shape(c, &b, &format!("generation {}", g.number), path).map_err(|e| usage_error(&e))?;
            let entry = dir.join(&g.entry);
            (std::fs::canonicalize(&entry).unwrap_or(entry), b.manifest, Some(g.number))
        }
    };
    let mut plans = Vec::new();
    for h in selected {
        let plan = d::host_plan(sys, &entry, &manifest, h, values.remove(h).unwrap_or_default())
            .map_err(|e| io_error(&format!("host `{h}`, step upload: {e}")))?;
        plans.push(plan);
    }
    set_route_addresses(&mut plans, a, sys).map_err(|e| usage_error(&e))?;

    std::fs::create_dir_all(&state).map_err(|e| io_error(&format!("cannot create `{}`: {e}", state.display())))?;
    let control = host::control_dir().map_err(|e| io_error(&e))?;
    let settings = SshSettings {
        known_hosts: state.join("known_hosts"),
        control_dir: control.path().to_path_buf(),
        config: a.ssh_config.clone(),
        connect_timeout: Duration::from_secs(15),
    };
    let user = a.ssh_user.clone().or_else(|| sys.admins.first().map(|x| x.name.clone())).unwrap_or_else(|| "root".into());
    let timeouts =
        Timeouts { converge: Duration::from_secs(a.timeout), health: Duration::from_secs(a.health_timeout), ..Timeouts::default() };
    let mode = if a.json {
        Mode::Json
    } else if std::io::stderr().is_terminal() && !ui.quiet {
        Mode::Terminal
    } else {
        Mode::Plain
    };
    let parallel = r.parallel as usize;
    let waves = d::waves(sys, &sys.deploy_order, selected);

    // Every host is reached and read before anything changes: an unreachable host, a changed
    // key or a login without root stops the deploy with nothing done.
    let reading = Progress::new(mode, selected);
    let ctx = Ctx { sys, settings: &settings, user: &user, trust: &trust, timeouts: &timeouts, progress: &reading, action };
    let refs: Vec<&HostPlan> = plans.iter().collect();
    // Reading changes nothing: more hosts at once than a wave deploys.
    let connected = for_each(&refs, parallel.max(READ_PARALLEL), |p| connect(&ctx, p));
    reading.finish();
    let mut ready: BTreeMap<String, (Ssh, Probe)> = BTreeMap::new();
    let mut results: BTreeMap<String, Result<Outcome, Failure>> = BTreeMap::new();
    for (h, r) in connected {
        match r {
            Ok(x) => {
                ready.insert(h, x);
            }
            Err(f) => {
                results.insert(h, Err(f));
            }
        }
    }
    let close_all = |ready: &BTreeMap<String, (Ssh, Probe)>| {
        std::thread::scope(|sc| {
            for (s, _) in ready.values() {
                sc.spawn(|| s.close());
            }
        })
    };

    let mut actions: BTreeMap<String, HostAction> = BTreeMap::new();
    if results.is_empty() && action == Action::Deploy {
        for p in &plans {
            actions.insert(p.name.clone(), d::decide(p, &ready[&p.name].1));
        }
        show_plan(a.json, &waves, &actions, rollback_of, &manifest);
        let changes = actions.values().any(|x| !x.skip());
        if changes && !r.yes {
            let confirmed = if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
                ask("Deploy this plan? [y/N] ")
            } else {
                close_all(&ready);
                drop(held);
                not_confirmed_summary(a.json, selected);
                eprintln!(
                    "error: not deploying: the plan changes {} host{} and there is no terminal to confirm it on; pass --yes to deploy without asking",
                    actions.values().filter(|x| !x.skip()).count(),
                    if actions.values().filter(|x| !x.skip()).count() == 1 { "" } else { "s" }
                );
                return Ok(ExitCode::from(EXIT_NOT_CONFIRMED));
            };
            if !confirmed {
                close_all(&ready);
                not_confirmed_summary(a.json, selected);
                eprintln!("not deployed: the plan was not confirmed; nothing changed");
                return Ok(ExitCode::from(EXIT_NOT_CONFIRMED));
            }
        }
    }

    // Rollout waves in order; the first failure stops the rollout.
    let progress = Progress::new(mode, &ready.keys().cloned().collect::<Vec<_>>());
    let ctx = Ctx { progress: &progress, ..ctx };
    let mut stopped_at: Option<String> = None;
    if results.is_empty() {
        for (name, wave) in &waves {
            if results.values().any(Result::is_err) || host::INTERRUPTED.load(Ordering::SeqCst) {
                break;
            }
            if a.json {
                println!("{}", serde_json::json!({ "wave": name, "hosts": wave }));
            } else if waves.len() > 1 {
                let _ = writeln!(std::io::stderr().lock(), "wave `{name}`: {}", wave.join(", "));
            }
            let wave_plans: Vec<&HostPlan> = plans.iter().filter(|p| wave.contains(&p.name)).collect();
            let mut done = for_each(&wave_plans, parallel, |p| {
                let (ssh, probe) = &ready[&p.name];
                let layout = Layout::system();
                match action {
                    Action::Deploy => d::apply(ssh, p, probe, &actions[&p.name], &layout, ctx.timeouts, ctx.progress),
                    Action::PushSecrets => d::push_secrets(ssh, p, &layout, ctx.timeouts, ctx.progress).map(|_| Outcome::Deployed),
                }
            });
            if action == Action::Deploy {
                d::finish_wave(&wave_plans, &mut done, ctx.timeouts, ctx.progress);
            }
            if done.values().any(Result::is_err) {
                stopped_at = Some(name.clone());
            }
            results.extend(done);
        }
    } else {
        stopped_at = Some("connect".into());
    }
    progress.finish();
    close_all(&ready);
    drop(control);

    let failed: Vec<&Failure> = results.values().filter_map(|r| r.as_ref().err()).collect();
    let untouched: Vec<&String> = selected.iter().filter(|h| !results.contains_key(*h)).collect();
    let all = selected.len() == sys.hosts.len();
    let ok = failed.is_empty() && untouched.is_empty();
    let mut generation = None;
    if ok && all && action == Action::Deploy {
        #[allow(clippy::disallowed_methods)] // the edge: a generation's time is read here
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let last = kiln::generations::list(&state).ok().and_then(|g| g.last().cloned());
        // A deploy of the last generation's build records nothing new.
        if last.as_ref().is_some_and(|g| g.hash == manifest.hash) {
            generation = last.map(|g| g.number);
        } else {
            match kiln::generations::add_marked(&state, &manifest, &name, now, rollback_of) {
                Ok(g) => generation = Some(g.number),
                Err(e) => return Err(io_error(&format!("every host was deployed, but the generation was not recorded: {e}"))),
            }
        }
    }
    drop(held);

    if a.json {
        let summary = serde_json::json!({
            "summary": {
                "ok": ok,
                "deployed": results.iter().filter(|(_, r)| matches!(r, Ok(Outcome::Deployed))).map(|(h, _)| h).collect::<Vec<_>>(),
                "skipped": results.iter().filter(|(_, r)| matches!(r, Ok(Outcome::Skipped))).map(|(h, _)| h).collect::<Vec<_>>(),
                "failed": failed,
                "untouched": untouched,
                "stopped_at": stopped_at,
                "generation": generation,
                "rollback_of": rollback_of,
                "entry": entry.display().to_string(),
            }
        });
        println!("{summary}");
    }
    for f in &failed {
        eprintln!("error: {f}");
    }
    if !untouched.is_empty() {
        let why = match stopped_at.as_deref() {
            Some("connect") => "every host is read before any is changed, and not every host could be".to_string(),
            Some(w) => format!("the rollout stopped at wave `{w}`"),
            None => "interrupted".to_string(),
        };
        eprintln!("not touched ({why}): {}", untouched.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", "));
    }
    if !ok {
        if action == Action::Deploy {
            eprintln!("no generation recorded: the deployed state is not the requested one");
        }
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    match (action, generation) {
        (Action::Deploy, Some(n)) => ui.info(&format!(
            "deployed `{}`: {} hosts, generation {n}{}",
            sys.name,
            results.len(),
            rollback_of.map(|g| format!(" (a rollback to generation {g})")).unwrap_or_default()
        )),
        (Action::Deploy, None) => ui.info(&format!(
            "deployed {} of {} hosts of `{}`: no generation recorded (only a full deploy records one)",
            results.len(),
            sys.hosts.len(),
            sys.name
        )),
        (Action::PushSecrets, _) => ui.info("secrets delivered"),
    }
    Ok(ExitCode::SUCCESS)
}

/// With `--json`, the summary of a deploy the plan of which was not confirmed: nothing done.
fn not_confirmed_summary(json: bool, selected: &[String]) {
    if json {
        let summary = serde_json::json!({
            "summary": { "ok": false, "confirmed": false, "deployed": [], "skipped": [], "failed": [], "untouched": selected, "generation": null }
        });
        println!("{summary}");
    }
}

/// The plan, per wave: on stdout as text, or as one `{"plan": …}` line with `--json`.
fn show_plan(json: bool, waves: &[(String, Vec<String>)], actions: &BTreeMap<String, HostAction>, rollback_of: Option<u64>, m: &Manifest) {
    if json {
        let waves: Vec<serde_json::Value> = waves
            .iter()
            .map(|(name, hosts)| serde_json::json!({ "wave": name, "hosts": hosts.iter().map(|h| &actions[h]).collect::<Vec<_>>() }))
            .collect();
        println!("{}", serde_json::json!({ "plan": { "system": m.system, "hash": m.hash, "rollback_of": rollback_of, "waves": waves } }));
        return;
    }
    let mut out = String::new();
    let target = rollback_of
        .map(|g| format!("generation {g} ({})", &m.hash.get(..12).unwrap_or(&m.hash)))
        .unwrap_or_else(|| format!("build {}", m.hash.get(..12).unwrap_or(&m.hash)));
    out.push_str(&format!("plan: deploy {target} of `{}`\n", m.system));
    for (i, (name, hosts)) in waves.iter().enumerate() {
        out.push_str(&format!("wave {} `{name}`:\n", i + 1));
        for h in hosts {
            out.push_str(&format!("  {h:<16} {}\n", actions[h].describe()));
        }
    }
    let n = actions.values().filter(|x| !x.skip()).count();
    out.push_str(&format!("{n} of {} hosts change\n", actions.len()));
    print!("{out}");
    let _ = std::io::stdout().flush();
}

/// Asks on the terminal; yes only for `y` or `yes`.
fn ask(question: &str) -> bool {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// What every host's thread shares.
struct Ctx<'a> {
    sys: &'a kiln::model::System,
    settings: &'a SshSettings,
    user: &'a str,
    trust: &'a BTreeMap<String, String>,
    timeouts: &'a Timeouts,
    progress: &'a Progress,
    action: Action,
}

/// Runs `f` on every plan, `parallel` at a time; after a failure no new host is started (nor
/// after an interrupt). Failures are reported as progress events.
fn for_each<T: Send>(
    plans: &[&HostPlan],
    parallel: usize,
    f: impl Fn(&HostPlan) -> Result<T, Failure> + Sync,
) -> BTreeMap<String, Result<T, Failure>> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..parallel.min(plans.len()).max(1) {
            s.spawn(|| {
                loop {
                    if stop.load(Ordering::SeqCst) || host::INTERRUPTED.load(Ordering::SeqCst) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(plan) = plans.get(i) else { return };
                    let r = f(plan);
                    if r.is_err() {
                        stop.store(true, Ordering::SeqCst);
                    }
                    results.lock().expect("not poisoned").insert(plan.name.clone(), r);
                }
            });
        }
    });
    results.into_inner().expect("not poisoned")
}

/// Where ssh connects for `name`: its address, or its private address through a bastion.
fn target(sys: &kiln::model::System, name: &str, user: &str) -> Result<SshTarget, String> {
    let h = &sys.hosts[name];
    if let Some(a) = h.address {
        return Ok(SshTarget {
            alias: name.to_string(),
            destination: a.to_string(),
            port: h.ssh_port,
            user: user.to_string(),
            bastion: None,
        });
    }
    let private = h.private_address().ok_or("the host has no address: give it `address = \"…\"`")?;
    let bastion = sys
        .hosts
        .values()
        .find(|b| b.bastion && b.name != name && b.address.is_some())
        .ok_or("the host has no public address and the system has no bastion with an `address` to reach it through")?;
    Ok(SshTarget {
        alias: name.to_string(),
        destination: private.to_string(),
        port: h.ssh_port,
        user: user.to_string(),
        bastion: Some(Box::new(SshTarget {
            alias: bastion.name.clone(),
            destination: bastion.address.expect("checked").to_string(),
            port: bastion.ssh_port,
            user: user.to_string(),
            bastion: None,
        })),
    })
}

/// Reaches one host (its key pinned) and, for a deploy, reads its state. Changes nothing on it.
fn connect(ctx: &Ctx<'_>, plan: &HostPlan) -> Result<(Ssh, Probe), Failure> {
    let r = (|| {
        let fail = |m: String| Failure { host: plan.name.clone(), step: Step::Connect, message: m, log_tail: None, details: None };
        let t = target(ctx.sys, &plan.name, ctx.user).map_err(|e| fail(e.to_string()))?;
        ctx.progress.emit(&plan.name, Step::Connect, State::Started, format!("{}@{}", t.user, t.destination));
        if let Some(b) = &t.bastion {
            let bastion = Ssh { target: (**b).clone(), settings: ctx.settings.clone() };
            pin_key(ctx, &bastion, &b.alias).map_err(|m| fail(format!("bastion `{}`: {m}", b.alias)))?;
        }
        let ssh = Ssh { target: t.clone(), settings: ctx.settings.clone() };
        pin_key(ctx, &ssh, &plan.name).map_err(fail)?;
        // For a deploy the first command over the connection is already the probe.
        let script = match ctx.action {
            Action::Deploy => d::probe_script(&Layout::system()),
            Action::PushSecrets => "true".to_string(),
        };
        let out = reach(ctx, &ssh, &script).map_err(fail)?;
        let probe = match ctx.action {
            Action::Deploy => match d::read_probe(plan, &out, ctx.progress) {
                Ok(p) => p,
                Err(f) => {
                    ssh.close();
                    return Err(f);
                }
            },
            Action::PushSecrets => Probe::default(),
        };
        Ok((ssh, probe))
    })();
    if let Err(f) = &r {
        ctx.progress.emit(&f.host, f.step, State::Failed, f.message.clone());
    }
    r
}

/// Makes sure `alias` has a pinned key before ssh connects: the one pinned, else the declared
/// one, else the presented one the operator vouched for.
fn pin_key(ctx: &Ctx<'_>, ssh: &Ssh, alias: &str) -> Result<(), String> {
    let file = &ctx.settings.known_hosts;
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let pins = known_hosts::pinned(&text, alias);
    let declared = ctx.sys.hosts.get(alias).and_then(|h| h.ssh_host_key.as_ref());
    if !pins.is_empty() {
        if let Some(k) = declared
            && !pins.contains(k)
        {
            return Err(format!(
                "the system declares host key {} but `{}` pins {}: if the server was rebuilt, delete its line there and deploy again",
                k.fingerprint(),
                file.display(),
                pins.iter().map(|p| p.fingerprint()).collect::<Vec<_>>().join(", ")
            ));
        }
        return Ok(());
    }
    let timeout = ctx.timeouts.connect;
    let key = known_hosts::first_contact(declared, ctx.trust.get(alias).map(String::as_str), || {
        let (h, port) = ssh.resolved()?;
        known_hosts::keyscan(&h, port, timeout)
    })
    .map_err(|e| match e {
        KeyError::Unreachable(m) => format!("unreachable while reading its host key: {m}"),
        KeyError::Unknown { seen } => format!(
            "unknown host key (the server presents {}): nothing vouches for it; declare `ssh_host_key = \"ssh-ed25519 …\"` for host `{alias}` \
             in the system, or check the fingerprint on the server's console (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) and pass \
             --trust-host-key {alias}=SHA256:…",
            seen.join(", ")
        ),
        KeyError::Mismatch { seen } => format!(
            "the server presents {}, not the key --trust-host-key vouched for: refused (a different server, or a man in the middle)",
            seen.join(", ")
        ),
    })?;
    known_hosts::pin(file, alias, &key)?;
    ctx.progress.emit(alias, Step::Connect, State::Waiting, format!("pinned host key {} in {}", key.fingerprint(), file.display()));
    Ok(())
}

/// The first command over the connection (`script`, whose output is returned); a host-key
/// failure names the key seen.
fn reach(ctx: &Ctx<'_>, ssh: &Ssh, script: &str) -> Result<host::Output, String> {
    let deadline = std::time::Instant::now() + ctx.timeouts.connect;
    loop {
        match ssh.run(script, b"", ctx.timeouts.connect) {
            Ok(o) if o.ok() => return Ok(o),
            Ok(o) => {
                return Err(format!("cannot run commands as root (is sudo passwordless for `{}`?): {}", ssh.target.user, o.stderr_tail(3)));
            }
            Err(e) if e.contains("Host key verification failed") || e.contains("HOST IDENTIFICATION HAS CHANGED") => {
                let seen = ssh
                    .resolved()
                    .and_then(|(h, p)| known_hosts::keyscan(&h, p, Duration::from_secs(20)))
                    .map(|ks| ks.iter().map(|k| k.fingerprint()).collect::<Vec<_>>().join(", "))
                    .unwrap_or_else(|e| format!("(unknown: {e})"));
                let pinned =
                    known_hosts::pinned(&std::fs::read_to_string(&ctx.settings.known_hosts).unwrap_or_default(), &ssh.target.alias);
                return Err(format!(
                    "host key changed: `{}` pins {}, the server presents {seen}; refused. If the server was really rebuilt, delete its line \
                     from that file and deploy with --trust-host-key {}=SHA256:… (checked on the server's console)",
                    ctx.settings.known_hosts.display(),
                    pinned.iter().map(|k| k.fingerprint()).collect::<Vec<_>>().join(", "),
                    ssh.target.alias
                ));
            }
            Err(e)
                if std::time::Instant::now() < deadline
                    && !host::INTERRUPTED.load(Ordering::SeqCst)
                    && !e.contains("Permission denied") =>
            {
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(e) => return Err(format!("unreachable over SSH: {e}")),
        }
    }
}
