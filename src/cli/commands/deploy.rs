//! `kiln deploy` and `kiln secrets push`: the edges of `kiln::deploy` — the build written to the
//! store, secret values decrypted in memory, ssh targets and pinned keys, hosts run in rollout
//! waves in parallel, the summary, the exit code and (only when everything succeeded) the
//! generation.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kiln::deploy::host::{self, Host, Ssh, SshSettings, SshTarget};
use kiln::deploy::known_hosts::{self, KeyError};
use kiln::deploy::progress::{Mode, Progress, State};
use kiln::deploy::{self as d, Failure, HostPlan, Layout, Outcome, Step, Timeouts};
use kiln::pipeline::{self, Compiled, Options};
use kiln::store::Store;

use crate::cli::args::DeployArgs;
use crate::cli::env::store_dir;
use crate::cli::ui::{Ui, io_error, usage_error};

/// A host failed: the deployed state is not the requested one.
const EXIT_FAILED: u8 = 3;

/// `kiln deploy PATH`.
pub(crate) fn deploy(path: &Path, opts: &Options, ui: Ui, a: &DeployArgs, hosts: &[String], parallel: u16) -> ExitCode {
    host::catch_signals();
    crate::cli::with_compiled(path, opts, ui, |c| {
        let selected: Vec<String> = if hosts.is_empty() { c.system.hosts.keys().cloned().collect() } else { hosts.to_vec() };
        match run(path, opts, ui, a, c, &selected, parallel as usize, Action::Deploy) {
            Ok(code) => code,
            Err(e) => e,
        }
    })
}

/// `kiln secrets push HOST PATH`.
pub(crate) fn push_secrets(path: &Path, opts: &Options, ui: Ui, a: &DeployArgs, host: &str) -> ExitCode {
    host::catch_signals();
    crate::cli::with_compiled(path, opts, ui, |c| match run(path, opts, ui, a, c, &[host.to_string()], 1, Action::PushSecrets) {
        Ok(code) => code,
        Err(e) => e,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Deploy,
    PushSecrets,
}

#[allow(clippy::too_many_arguments)]
fn run(
    path: &Path,
    opts: &Options,
    ui: Ui,
    a: &DeployArgs,
    c: &Compiled,
    selected: &[String],
    parallel: usize,
    action: Action,
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
    // Only existing hosts for now: cloud hosts come with the OpenTofu path.
    let cloud: Vec<&String> =
        selected.iter().filter(|h| sys.hosts[*h].provider_kind != kiln::syntax::system::ProviderKind::Existing).collect();
    if !cloud.is_empty() {
        return Err(usage_error(&format!(
            "host{} {} {} created by a cloud provider: `kiln deploy` reaches only existing hosts (provider kind `existing`) so far; \
             choose hosts with --hosts",
            if cloud.len() == 1 { "" } else { "s" },
            cloud.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", "),
            if cloud.len() == 1 { "is" } else { "are" }
        )));
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
    let store = Store::open(&dir).map_err(|e| io_error(&format!("cannot open store `{}`: {e}", dir.display())))?;
    let held = store.writer().map_err(|e| io_error(&format!("cannot lock store `{}`: {e}", dir.display())))?;
    let entry = pipeline::write(c, &store).map_err(|e| io_error(&format!("cannot write to store `{}`: {e}", dir.display())))?;
    let entry = std::fs::canonicalize(&entry).unwrap_or(entry);
    let mut plans = Vec::new();
    for h in selected {
        let plan = d::host_plan(sys, &entry, &c.manifest, h, values.remove(h).unwrap_or_default())
            .map_err(|e| io_error(&format!("host `{h}`, step upload: {e}")))?;
        plans.push(plan);
    }

    let state = a.state.clone().unwrap_or_else(|| Path::new(".kiln/state").join(&sys.name));
    std::fs::create_dir_all(&state).map_err(|e| io_error(&format!("cannot create `{}`: {e}", state.display())))?;
    let control = host::control_dir().map_err(|e| io_error(&e))?;
    let settings = SshSettings {
        known_hosts: state.join("known_hosts"),
        control_dir: control.path().to_path_buf(),
        config: a.ssh_config.clone(),
        connect_timeout: Duration::from_secs(15),
    };
    let user = a.ssh_user.clone().or_else(|| sys.admins.first().map(|x| x.name.clone())).unwrap_or_else(|| "root".into());
    let timeouts = Timeouts { converge: Duration::from_secs(a.timeout), ..Timeouts::default() };
    let mode = if a.json {
        Mode::Json
    } else if std::io::stderr().is_terminal() && !ui.quiet {
        Mode::Terminal
    } else {
        Mode::Plain
    };
    let progress = Progress::new(mode, selected);
    let ctx = Ctx { sys, settings: &settings, user: &user, trust: &trust, timeouts: &timeouts, progress: &progress, action };

    // Rollout waves: the `canary` group first, then the rest; a failure stops the rollout.
    let (canary, rest): (Vec<&HostPlan>, Vec<&HostPlan>) =
        plans.iter().partition(|p| sys.hosts[&p.name].group.as_deref() == Some("canary"));
    let mut results: BTreeMap<String, Result<Outcome, Failure>> = BTreeMap::new();
    for wave in [canary, rest] {
        if results.values().any(Result::is_err) || wave.is_empty() {
            continue;
        }
        results.extend(run_wave(&ctx, &wave, parallel));
    }
    progress.finish();
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
        // An unchanged deploy of the last generation's build records nothing new.
        if last.as_ref().is_some_and(|g| g.hash == c.manifest.hash) {
            generation = last.map(|g| g.number);
        } else {
            match kiln::generations::add(&state, &c.manifest, &name, now) {
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
                "generation": generation,
                "entry": entry.display().to_string(),
            }
        });
        println!("{summary}");
    }
    for f in &failed {
        eprintln!("error: {f}");
    }
    if !untouched.is_empty() {
        eprintln!("not deployed (the rollout stopped): {}", untouched.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", "));
    }
    if !ok {
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    match (action, generation) {
        (Action::Deploy, Some(n)) => ui.info(&format!("deployed `{}`: {} hosts, generation {n}", sys.name, results.len())),
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

/// Runs one wave, `parallel` hosts at a time; after a failure no new host is started.
fn run_wave(ctx: &Ctx<'_>, wave: &[&HostPlan], parallel: usize) -> BTreeMap<String, Result<Outcome, Failure>> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..parallel.min(wave.len()).max(1) {
            s.spawn(|| {
                loop {
                    if stop.load(Ordering::SeqCst) || host::INTERRUPTED.load(Ordering::SeqCst) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(plan) = wave.get(i) else { return };
                    let r = one_host(ctx, plan);
                    if let Err(f) = &r {
                        ctx.progress.emit(&f.host, f.step, State::Failed, f.message.clone());
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
        return Ok(SshTarget { alias: name.to_string(), destination: a.to_string(), user: user.to_string(), bastion: None });
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
        user: user.to_string(),
        bastion: Some(Box::new(SshTarget {
            alias: bastion.name.clone(),
            destination: bastion.address.expect("checked").to_string(),
            user: user.to_string(),
            bastion: None,
        })),
    })
}

fn one_host(ctx: &Ctx<'_>, plan: &HostPlan) -> Result<Outcome, Failure> {
    let fail = |m: String| Failure { host: plan.name.clone(), step: Step::Connect, message: m, log_tail: None };
    let t = target(ctx.sys, &plan.name, ctx.user).map_err(|e| fail(e.to_string()))?;
    ctx.progress.emit(&plan.name, Step::Connect, State::Started, format!("{}@{}", t.user, t.destination));
    if let Some(b) = &t.bastion {
        let bastion = Ssh { target: (**b).clone(), settings: ctx.settings.clone() };
        pin_key(ctx, &bastion, &b.alias).map_err(|m| fail(format!("bastion `{}`: {m}", b.alias)))?;
    }
    let ssh = Ssh { target: t.clone(), settings: ctx.settings.clone() };
    pin_key(ctx, &ssh, &plan.name).map_err(fail)?;
    reach(ctx, &ssh).map_err(fail)?;
    let layout = Layout::system();
    let r = match ctx.action {
        Action::Deploy => d::deploy_host(&ssh, plan, &layout, ctx.timeouts, ctx.progress),
        Action::PushSecrets => d::push_secrets(&ssh, plan, &layout, ctx.timeouts, ctx.progress).map(|_| Outcome::Deployed),
    };
    ssh.close();
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

/// The first command over the connection; a host-key failure names the key seen.
fn reach(ctx: &Ctx<'_>, ssh: &Ssh) -> Result<(), String> {
    let deadline = std::time::Instant::now() + ctx.timeouts.connect;
    loop {
        match ssh.run("true", b"", ctx.timeouts.connect) {
            Ok(o) if o.ok() => return Ok(()),
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
