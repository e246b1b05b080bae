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
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::enrol::{ENROL_DIR, OVERRIDE_FILE, override_file, proof_in, proof_matches, retire_script, tokens, write_private};
use super::host::{self, Host, Ssh, SshSettings, SshTarget};
use super::progress::{Mode, Progress, State};
use super::{Failure, HostPlan, Layout, Outcome, Step, Timeouts};
use crate::syntax::system::ProviderKind;
use crate::types::SshHostKey;
#[cfg(test)]
use crate::types::parse_ssh_host_key;

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

// ---- pure ----

/// A server as OpenTofu's state has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub id: String,
    /// The public IPv4 address (`None` for a server without one).
    pub ipv4: Option<IpAddr>,
}

/// The servers in `tofu show -json` (the state), by `kiln-host` label. Pure.
pub fn servers_of_state(show: &Value) -> BTreeMap<String, Server> {
    let mut out = BTreeMap::new();
    let mut modules = vec![&show["values"]["root_module"]];
    while let Some(m) = modules.pop() {
        for r in m["resources"].as_array().map(Vec::as_slice).unwrap_or_default() {
            if r["mode"] != "managed" {
                continue;
            }
            let v = &r["values"];
            let (ip_key, host) = match r["type"].as_str() {
                Some("hcloud_server") => ("ipv4_address", v["labels"]["kiln-host"].as_str()),
                Some("digitalocean_droplet") => ("ipv4_address", v["name"].as_str()),
                Some("scaleway_instance_server") => ("public_ip", v["tags"].as_array().and_then(|_| v["name"].as_str())),
                _ => continue,
            };
            let host = host.or_else(|| r["name"].as_str()).unwrap_or_default().to_string();
            let id = match &v["id"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            let ipv4 = v[ip_key].as_str().and_then(|s| s.parse().ok());
            out.insert(host, Server { id, ipv4 });
        }
        modules.extend(m["child_modules"].as_array().into_iter().flatten());
    }
    out
}

/// `text` without the `known_hosts` lines pinning `alias`. Pure.
pub fn unpinned(text: &str, alias: &str) -> String {
    text.lines()
        .filter(|l| l.trim().split_once(' ').is_none_or(|(names, _)| names.starts_with('#') || !names.split(',').any(|n| n == alias)))
        .map(|l| format!("{l}\n"))
        .collect()
}

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
}

/// What a cloud deploy did.
pub struct Report {
    pub results: BTreeMap<String, Result<Outcome, Failure>>,
    pub generation: Option<u64>,
    pub entry: PathBuf,
}

/// `kiln deploy` with cloud hosts: prints progress, errors and a summary; returns the exit
/// code: 0 deployed; 2 the secrets, the store or the plan failed, or the plan destroys data
/// (nothing applied); 3 OpenTofu's apply failed
/// or a host failed at a step.
pub fn command(r: &Request<'_>) -> u8 {
    match deploy(r) {
        Ok(report) => {
            let ok = report.results.values().all(Result::is_ok) && report.results.len() == r.selected.len();
            let failed: Vec<&Failure> = report.results.values().filter_map(|x| x.as_ref().err()).collect();
            if r.json {
                println!(
                    "{}",
                    serde_json::json!({ "summary": {
                        "ok": ok,
                        "deployed": report.results.iter().filter(|(_, x)| matches!(x, Ok(Outcome::Deployed))).map(|(h, _)| h).collect::<Vec<_>>(),
                        "skipped": report.results.iter().filter(|(_, x)| matches!(x, Ok(Outcome::Skipped))).map(|(h, _)| h).collect::<Vec<_>>(),
                        "failed": failed,
                        "untouched": r.selected.iter().filter(|h| !report.results.contains_key(*h)).collect::<Vec<_>>(),
                        "generation": report.generation,
                        "entry": report.entry.display().to_string(),
                    }})
                );
            }
            for f in &failed {
                eprintln!("error: {f}");
            }
            if !ok {
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

/// The cloud path: secrets, the build in the store, OpenTofu apply, addresses, enrolment, then
/// each host's steps (bastions first); a generation when every host of the system succeeded.
pub fn deploy(r: &Request<'_>) -> Result<Report, CloudError> {
    host::catch_signals();
    let c = r.compiled;
    let sys = &c.system;
    // The secrets first: nothing is applied or contacted when they cannot be had.
    let identities = match r.identity {
        Some(text) => Some(crate::sops::load_identities(text).map_err(|e| err(None, "secrets", format!("identity: {e}")))?),
        None => None,
    };
    let mut values: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for h in r.selected {
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
    let entry = crate::pipeline::write(c, &store).map_err(|e| err(None, "upload", format!("cannot write to store: {e}")))?;
    let entry = std::fs::canonicalize(&entry).unwrap_or(entry);
    let mut plans: BTreeMap<String, HostPlan> = BTreeMap::new();
    for h in r.selected {
        let p =
            super::host_plan(sys, &entry, &c.manifest, h, values.remove(h).unwrap_or_default()).map_err(|e| err(Some(h), "upload", e))?;
        plans.insert(h.clone(), p);
    }

    let mode = if r.json { Mode::Json } else { Mode::Plain };
    let progress = Progress::new(mode, r.selected);
    let cloud_hosts: Vec<String> =
        sys.hosts.values().filter(|h| h.provider_kind != ProviderKind::Existing).map(|h| h.name.clone()).collect();
    let tokens = tokens(&r.state, &cloud_hosts).map_err(|e| err(None, "apply", e))?;
    for h in r.selected.iter().filter(|h| cloud_hosts.contains(h)) {
        progress.emit(h, Step::Connect, State::Started, "OpenTofu apply");
    }
    let servers = apply(r, &tokens)?;
    for h in r.selected.iter().filter(|h| cloud_hosts.contains(h)) {
        let s = servers.get(h).ok_or_else(|| err(Some(h), "address", "OpenTofu's state has no server for it after apply"))?;
        progress.emit(
            h,
            Step::Connect,
            State::Done,
            format!("server {} {}", s.id, s.ipv4.map(|a| a.to_string()).unwrap_or_else(|| "(private)".into())),
        );
    }

    let control = host::control_dir().map_err(|e| err(None, "connect", e))?;
    let settings = SshSettings {
        known_hosts: r.state.join("known_hosts"),
        control_dir: control.path().to_path_buf(),
        config: r.ssh_config.clone(),
        connect_timeout: Duration::from_secs(15),
    };
    let user = r.ssh_user.clone().or_else(|| sys.admins.first().map(|a| a.name.clone())).unwrap_or_else(|| "root".into());
    // Bastions first: the private hosts are reached through them.
    let mut order: Vec<&String> = r.selected.iter().collect();
    order.sort_by_key(|h| (!sys.hosts[*h].bastion, (*h).clone()));
    let mut results = BTreeMap::new();
    for h in order {
        let plan = &plans[h];
        let res = one_host(r, &settings, &user, &servers, &tokens, plan, &progress);
        if let Err(f) = &res {
            progress.emit(&f.host, f.step, State::Failed, f.message.clone());
        }
        let stop = res.is_err();
        results.insert(h.clone(), res);
        if stop || host::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            break;
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
        let last = crate::generations::list(&r.state).ok().and_then(|g| g.last().cloned());
        generation = if last.as_ref().is_some_and(|g| g.hash == c.manifest.hash) {
            last.map(|g| g.number)
        } else {
            let g = crate::generations::add(&r.state, &c.manifest, &name, now)
                .map_err(|e| err(None, "done", format!("every host was deployed, but the generation was not recorded: {e}")))?;
            Some(g.number)
        };
    }
    drop(held);
    Ok(Report { results, generation, entry })
}

/// `init` and `apply` in a staged working copy (root, backend, enrolment override), put in
/// place only when both succeeded; then the servers from `show -json`.
fn apply(r: &Request<'_>, tokens: &BTreeMap<String, String>) -> Result<BTreeMap<String, Server>, CloudError> {
    use crate::tofu_workdir as wd;
    let c = r.compiled;
    #[allow(clippy::disallowed_methods)] // the edge: the program is looked up on PATH
    let path_var = std::env::var_os("PATH");
    let program = wd::find_program(r.program.as_deref(), path_var.as_deref()).map_err(|e| err(None, "apply", e))?;
    let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "tofu".into());
    let backend = crate::state_backend::Backend::of(c.system.deploy_state.as_ref());
    let artifacts: Vec<(String, Vec<u8>)> = c.system_artifacts.iter().map(|a| (a.path.clone(), a.bytes.clone())).collect();
    let main = artifacts
        .iter()
        .find(|(p, _)| p == "tofu/main.tf.json")
        .ok_or_else(|| err(None, "apply", "the build has no OpenTofu root (tofu/main.tf.json)"))?;
    let root: Value = serde_json::from_slice(&main.1).map_err(|e| err(None, "apply", format!("tofu/main.tf.json: {e}")))?;
    let mut files = wd::files(&artifacts, &backend);
    files.push((OVERRIDE_FILE.to_string(), override_file(&root, tokens).map_err(|e| err(None, "apply", e))?));
    let staged = wd::prepare(&r.state, &files).map_err(|e| err(None, "apply", e))?;
    let redact: Vec<String> = secret_env().into_iter().chain(tokens.values().cloned()).collect();
    let run = |dir: &Path, args: &[&str]| wd::run_in(&program, dir, args).map_err(|e| err(None, "apply", e));
    // The plan first (`init` and `plan`): data it would destroy stops the deploy before
    // anything is applied.
    let plan = wd::plan(&program, &staged, &backend, &redact).map_err(|e| err(None, "plan", e))?;
    let losses = wd::data_losses(&plan);
    if !losses.is_empty() {
        return Err(err(None, "plan", data_loss_message(&name, &losses, &r.state)));
    }
    let apply = run(staged.path(), &["apply", "-auto-approve", "-input=false", "-no-color"])?;
    // What was applied is in the state either way: the working copy goes in place.
    let dir = staged.install().map_err(|e| err(None, "apply", e))?;
    if !apply.status.success() {
        return Err(err(None, "apply", format!("`{name} apply` failed{}", wd::excerpt(&apply.stdout, &apply.stderr, &redact))));
    }
    let show = run(&dir, &["show", "-json", "-no-color"])?;
    if !show.status.success() {
        return Err(err(None, "address", format!("`{name} show -json` failed{}", wd::excerpt(&show.stdout, &show.stderr, &redact))));
    }
    let v: Value =
        serde_json::from_slice(&show.stdout).map_err(|e| err(None, "address", format!("`{name} show -json` printed no JSON: {e}")))?;
    Ok(servers_of_state(&v))
}

/// Why a plan that destroys data is not applied, and the operator's ways on. Pure.
pub fn data_loss_message(program: &str, losses: &[String], state: &Path) -> String {
    let dir = state.join(crate::tofu_workdir::WORKDIR);
    format!(
        "the plan destroys or replaces resources that hold data: {}; nothing was applied.\n  \
         kiln never destroys data on its own (OpenTofu's prevent_destroy holds only while the system declares the resource).\n  \
         Put the declaration back, or let go of it yourself: `{program} -chdir={} state rm ADDRESS` leaves it at the provider, \
         unmanaged (delete it there when its data is safe), then deploy again",
        losses.join(", "),
        dir.display()
    )
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
        return Ok(SshTarget { alias: name.to_string(), destination: a.to_string(), user: user.to_string(), bastion: None });
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
        user: user.to_string(),
        bastion: Some(Box::new(SshTarget { alias: bastion, destination: address.to_string(), user: user.to_string(), bastion: None })),
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
        fresh = enrol(r, settings, &ssh, server, token, p)?;
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

/// Pins the server's key when its enrolment proof checks out (see the module's comment); a
/// server already enrolled (its id recorded beside the pin) is left as pinned (`false`). A
/// replaced server's old pin is dropped first.
fn enrol(r: &Request<'_>, settings: &SshSettings, ssh: &Ssh, server: &Server, token: &str, p: &Progress) -> Result<bool, Failure> {
    let name = ssh.target.alias.as_str();
    let record = r.state.join(ENROL_DIR).join(format!("{name}.server"));
    let known = std::fs::read_to_string(&settings.known_hosts).unwrap_or_default();
    if std::fs::read_to_string(&record).ok().as_deref().map(str::trim) == Some(server.id.as_str())
        && !super::known_hosts::pinned(&known, name).is_empty()
    {
        return Ok(false);
    }
    let io = |e: std::io::Error| fail(name, Step::Connect, format!("`{}`: {e}", settings.known_hosts.display()));
    if !super::known_hosts::pinned(&known, name).is_empty() {
        write_private(&settings.known_hosts, unpinned(&known, name).as_bytes()).map_err(io)?;
    }
    p.emit(name, Step::Connect, State::Waiting, format!("waiting for server {} to prove its host key", server.id));
    let start = Instant::now();
    let mut last_note = Instant::now();
    let mut last;
    let key = loop {
        match probe(settings, ssh) {
            Ok((key, Some(claimed))) => {
                if !proof_matches(token, name, &key, &claimed) {
                    return Err(fail(
                        name,
                        Step::Connect,
                        format!(
                            "the server at {} presents host key {} with an enrolment proof that does not match: refused (a different server, or a man in the middle)",
                            ssh.target.destination,
                            key.fingerprint()
                        ),
                    ));
                }
                break key;
            }
            Ok((key, None)) => last = format!("it presents {} but no enrolment proof yet", key.fingerprint()),
            Err(e) => last = e,
        }
        if host::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(fail(name, Step::Connect, "interrupted"));
        }
        if start.elapsed() >= r.boot_timeout {
            return Err(fail(
                name,
                Step::Connect,
                format!("unreachable: no verified host key within {} s ({last})", r.boot_timeout.as_secs()),
            ));
        }
        if last_note.elapsed() >= r.timeouts.note_every {
            last_note = Instant::now();
            p.emit(name, Step::Connect, State::Waiting, format!("{} s: {last}", start.elapsed().as_secs()));
        }
        std::thread::sleep(Duration::from_secs(5));
    };
    super::known_hosts::pin(&settings.known_hosts, name, &key).map_err(|e| fail(name, Step::Connect, e))?;
    write_private(&record, server.id.as_bytes()).map_err(io)?;
    p.emit(name, Step::Connect, State::Waiting, format!("host key {} proven by enrolment and pinned", key.fingerprint()));
    // The admin's account may not be there yet (cloud-init is still running): a refused login
    // is waited out, with the key already pinned and checked strictly.
    loop {
        match ssh.run(&retire_script(), b"", r.timeouts.connect) {
            Ok(out) if out.ok() => return Ok(true),
            Ok(out) => return Err(fail(name, Step::Connect, format!("cannot run commands as root: {}", out.stderr_tail(3)))),
            Err(e) if start.elapsed() < r.boot_timeout && !host::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) => {
                if last_note.elapsed() >= r.timeouts.note_every {
                    last_note = Instant::now();
                    p.emit(
                        name,
                        Step::Connect,
                        State::Waiting,
                        format!("{} s: not logged in yet: {}", start.elapsed().as_secs(), host::tail(&e, 1)),
                    );
                }
                std::thread::sleep(Duration::from_secs(5));
            }
            Err(e) => return Err(fail(name, Step::Connect, format!("unreachable over SSH after its key was pinned: {e}"))),
        }
    }
}

/// One connection offering no credential: the key the server proved it holds (recorded by
/// ssh in a private copy of `known_hosts`) and the proof in its banner.
fn probe(settings: &SshSettings, ssh: &Ssh) -> Result<(SshHostKey, Option<String>), String> {
    let tmp = tempfile::Builder::new().prefix("kiln-enrol-").tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let file = tmp.path().join("known_hosts");
    // The bastion's pin (the ProxyCommand still checks it strictly); the host's own line is
    // what ssh adds.
    let text = std::fs::read_to_string(&settings.known_hosts).unwrap_or_default();
    std::fs::write(&file, unpinned(&text, &ssh.target.alias)).map_err(|e| e.to_string())?;
    let probe_settings = SshSettings { known_hosts: file.clone(), ..settings.clone() };
    let mut cmd = Command::new("ssh");
    // The first value of an option wins: these come before the shared ones.
    for o in [
        "StrictHostKeyChecking=accept-new",
        "HashKnownHosts=no",
        "PreferredAuthentications=none",
        "HostKeyAlgorithms=ssh-ed25519",
        "ControlMaster=no",
        "ControlPath=none",
        "IdentitiesOnly=yes",
        "IdentityAgent=none",
        "LogLevel=INFO",
    ] {
        cmd.arg("-o").arg(o);
    }
    cmd.args(Ssh::options(&probe_settings, &ssh.target)).arg("--").arg(&ssh.target.destination).arg("true");
    let out = host::run_command(cmd, b"", settings.connect_timeout + Duration::from_secs(10))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let seen = std::fs::read_to_string(&file).unwrap_or_default();
    let key = super::known_hosts::pinned(&seen, &ssh.target.alias)
        .into_iter()
        .find(|k| k.algorithm == "ssh-ed25519")
        .ok_or_else(|| format!("no SSH host key yet: {}", host::tail(&stderr, 2)))?;
    Ok((key, proof_in(&stderr)))
}

/// The names of the selected hosts a cloud provider creates.
pub fn cloud_hosts(sys: &crate::model::System, selected: &[String]) -> BTreeSet<String> {
    selected.iter().filter(|h| sys.hosts.get(*h).is_some_and(|x| x.provider_kind != ProviderKind::Existing)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::enrol::{ENROLLED_MARK, PROOF_PREFIX, proof, publish_script, with_part};

    fn key(line: &str) -> Option<SshHostKey> {
        parse_ssh_host_key(line).ok()
    }

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINGu/19U9LmMSakf0i3kdYq7lwBm6tImdo3nSx6IH9kN";

    #[test]
    fn the_proof_binds_token_host_and_key() {
        let k = key(KEY).unwrap();
        let token = "11".repeat(32);
        let p = proof(&token, "edge", &k);
        assert!(proof_matches(&token, "edge", &k, &p));
        assert!(!proof_matches(&token, "db", &k, &p), "another host's proof");
        assert!(!proof_matches(&"22".repeat(32), "edge", &k, &p), "another token");
        let other = key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC2dx5tDzGtxT8Vfw8b8Rk5l1r7jGZbUB1Ll0cKlL3sK").unwrap();
        assert!(!proof_matches(&token, "edge", &other, &p), "another key");
        assert!(!proof_matches(&token, "edge", &k, "not hex"));
        assert_eq!(proof_in(&format!("Warning: x\n{PROOF_PREFIX} {p}\nPermission denied (publickey).\n")), Some(p));
        assert_eq!(proof_in("Permission denied\n"), None);
    }

    /// The script the server runs computes the very proof kiln checks (dash and openssl on
    /// this machine, with a fake key file standing in for sshd's).
    #[test]
    fn the_servers_script_computes_the_proof_kiln_checks() {
        let k = key(KEY).unwrap();
        let token = "ab".repeat(32);
        let script = publish_script("edge", &token);
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_str().unwrap();
        let script = script
            .replace(ENROLLED_MARK, &format!("{root}/enrolled"))
            .replace("/var/lib/cloud/instance/sem/config_ssh", &format!("{root}/sem"))
            .replace("/etc/ssh/ssh_host_ed25519_key.pub", &format!("{root}/key.pub"))
            .replace("/run/kiln-enrol", &format!("{root}/run"))
            .replace("/etc/ssh/sshd_config.d", root)
            .replace("systemctl", "true");
        std::fs::write(d.path().join("sem"), "").unwrap();
        std::fs::write(d.path().join("key.pub"), format!("{KEY} root@edge\n")).unwrap();
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let banner = std::fs::read_to_string(d.path().join("run/banner")).unwrap();
        let claimed = proof_in(&banner).unwrap();
        assert!(proof_matches(&token, "edge", &k, &claimed), "{banner}");
        assert_eq!(std::fs::read_to_string(d.path().join("kiln-enrol.conf")).unwrap().trim(), format!("Banner {root}/run/banner"));
    }

    #[test]
    fn the_override_adds_the_part_to_each_server() {
        let root = serde_json::json!({ "resource": {
            "hcloud_server": {
                "edge": { "labels": { "kiln-host": "edge" }, "user_data": "#cloud-config\nhostname: edge\n" },
                "db": { "labels": { "kiln-host": "db" }, "user_data": "#!/bin/sh\necho hi\n" },
            },
            "hcloud_volume": { "db": { "size": 10 } },
        }});
        let tokens: BTreeMap<String, String> = [("edge".to_string(), "aa".repeat(32)), ("db".to_string(), "bb".repeat(32))].into();
        let o: Value = serde_json::from_slice(&override_file(&root, &tokens).unwrap()).unwrap();
        let edge = o["resource"]["hcloud_server"]["edge"]["user_data"].as_str().unwrap();
        assert!(edge.starts_with("Content-Type: multipart/mixed"), "{edge}");
        assert!(edge.contains("Content-Type: text/cloud-config") && edge.contains("hostname: edge") && edge.contains(&"aa".repeat(32)));
        let db = o["resource"]["hcloud_server"]["db"]["user_data"].as_str().unwrap();
        assert!(db.contains("Content-Type: text/x-shellscript") && db.contains(&"bb".repeat(32)) && !db.contains(&"aa".repeat(32)));
        assert_eq!(o["resource"].as_object().unwrap().len(), 1, "only servers");
        assert!(with_part("Content-Type: multipart/mixed", "x").is_err());
    }

    #[test]
    fn servers_and_pins_are_read() {
        let show = serde_json::json!({ "values": { "root_module": { "resources": [
            { "mode": "managed", "type": "hcloud_server", "name": "edge",
              "values": { "id": "123", "ipv4_address": "127.0.0.10", "labels": { "kiln-host": "edge" } } },
            { "mode": "managed", "type": "hcloud_server", "name": "db",
              "values": { "id": "456", "ipv4_address": "", "labels": { "kiln-host": "db" } } },
            { "mode": "managed", "type": "hcloud_volume", "name": "db", "values": { "id": "9" } },
        ]}}});
        let s = servers_of_state(&show);
        assert_eq!(s["edge"], Server { id: "123".into(), ipv4: Some("127.0.0.10".parse().unwrap()) });
        assert_eq!(s["db"], Server { id: "456".into(), ipv4: None });
        assert_eq!(s.len(), 2);
        let text = format!("edge {KEY}\ndb {KEY}\n# edge comment\nedge,other {KEY}\n");
        assert_eq!(unpinned(&text, "edge"), format!("db {KEY}\n# edge comment\n"));
    }
}
