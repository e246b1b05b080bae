//! `kiln deploy` and `kiln secrets push`, for hosts kiln reaches over SSH: per host, the steps
//! of [`Step`] in order, each bounded by a timeout and reported as a progress event. What runs
//! on a host is a small POSIX sh script built here (pure functions), run through a [`Host`];
//! the secret values travel only in memory and over ssh's stdin.
//!
//! `host.rs` is the transport (ssh or local), `known_hosts.rs` host-key pinning, `progress.rs`
//! the output.

pub mod cloud;
pub mod cloud_plan;
mod cloud_show;
pub mod enrol;
pub mod host;
pub mod known_hosts;
pub mod progress;
pub mod replace;
pub mod routes;
pub use routes::{finish_wave, route_gate};
mod scripts;
pub mod stage0;

pub use scripts::*;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::System;
use host::Host;
use progress::{Progress, State};

/// The steps of deploying one host, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A stateful cloud host being replaced: its old server's services stopped and its data
    /// volume unmounted, before OpenTofu destroys the server and moves the volume.
    Stop,
    /// Reach the host over SSH with its pinned key.
    Connect,
    /// Send the bundle, verify its sha256 on the host, unpack it.
    Upload,
    /// Deliver exactly the host's secrets into `/etc/kiln/secrets`.
    Secrets,
    /// Start the provisioner.
    Provision,
    /// Wait until the provisioner finished and the closure marker equals the build's closure.
    Converge,
    /// Every container healthy (or running without a healthcheck), every native unit active.
    Health,
    /// Every route the host's edge serves on its address answers through it (`routes.rs`).
    Routes,
    /// Restart the services whose secrets changed (`kiln secrets push`).
    Restart,
    /// DNS records retargeted to the wave's new servers, once they passed their health gate.
    Cutover,
    Done,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Stop => "stop",
            Step::Connect => "connect",
            Step::Upload => "upload",
            Step::Secrets => "secrets",
            Step::Provision => "provision",
            Step::Converge => "converge",
            Step::Health => "health",
            Step::Routes => "routes",
            Step::Restart => "restart",
            Step::Cutover => "cutover",
            Step::Done => "done",
        }
    }
}

/// Where things live on a host. [`Layout::SYSTEM`] is what the provisioner uses; tests on the
/// local machine point it at a temporary directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub kiln_root: String,
    pub secrets_dir: String,
    pub marker: String,
    /// kiln's state on the host: the provisioner's status and pid.
    pub state_dir: String,
    /// The provisioner's log.
    pub log: String,
}

impl Layout {
    pub fn system() -> Layout {
        Layout {
            kiln_root: crate::render::KILN_ROOT.into(),
            secrets_dir: crate::render::SECRETS_DIR.into(),
            marker: crate::render::MARKER.into(),
            state_dir: "/var/lib/kiln".into(),
            log: "/var/log/kiln/provision.log".into(),
        }
    }
    /// Everything under `root` (tests).
    pub fn under(root: &str) -> Layout {
        Layout {
            kiln_root: format!("{root}/opt/kiln"),
            secrets_dir: format!("{root}/etc/kiln/secrets"),
            marker: format!("{root}/var/lib/kiln/closure"),
            state_dir: format!("{root}/var/lib/kiln"),
            log: format!("{root}/var/log/kiln/provision.log"),
        }
    }
}

/// How long each step may take.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub upload: Duration,
    pub secrets: Duration,
    /// The provisioner's whole run (installing packages, pulling images).
    pub converge: Duration,
    pub health: Duration,
    /// How often a waiting step says what it waits for.
    pub note_every: Duration,
    pub poll: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(30),
            upload: Duration::from_secs(300),
            secrets: Duration::from_secs(60),
            converge: Duration::from_secs(30 * 60),
            health: Duration::from_secs(5 * 60),
            note_every: Duration::from_secs(30),
            poll: Duration::from_secs(3),
        }
    }
}

/// The secret values of one host: in memory only. No `Debug`: a value must not be printed.
pub struct Secrets(pub BTreeMap<String, Vec<u8>>);

/// What deploy does to one host, from the build.
pub struct HostPlan {
    pub name: String,
    pub closure: String,
    pub bundle: Vec<u8>,
    pub bundle_sha256: String,
    pub secrets: Secrets,
    /// Compose services on the host.
    pub containers: Vec<String>,
    /// Native services' systemd units.
    pub units: Vec<String>,
    /// Native service → its unit.
    pub unit_of: BTreeMap<String, String>,
    /// Service → the secrets it uses (what `secrets push` restarts).
    pub secret_users: BTreeMap<String, BTreeSet<String>>,
    /// Where the route gate requests the routes of the host's edge (its public address and
    /// HTTPS port); `None`: no route gate (`--no-route-check`, or no address known yet).
    pub route_address: Option<SocketAddr>,
    /// The routes the host's edge serves, and those the gate leaves out.
    pub routes: routes::RoutePlan,
}

/// Why a host failed: which step, what happened, and the provisioner's log when it matters.
/// Never holds a secret value.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub host: String,
    pub step: Step,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
    /// What the unhealthy services say (a failed health gate): each unit's `systemctl status`,
    /// each container's last log lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host `{}`, step {}: {}", self.host, self.step.name(), self.message)?;
        if let Some(t) = &self.log_tail {
            write!(f, "\nthe provisioner's log ends:\n{t}")?;
        }
        if let Some(d) = &self.details {
            write!(f, "\nthe unhealthy services say:\n{d}")?;
        }
        Ok(())
    }
}

/// How a host ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Deployed,
    /// Already at its closure with its secrets: nothing changed.
    Skipped,
}

/// The host plans of `hosts` from a build: the bundle read from the store entry and checked
/// against the manifest, the secret values from `values` (exactly the host's secrets).
pub fn host_plan(
    sys: &System,
    entry: &Path,
    manifest: &crate::pipeline::Manifest,
    host: &str,
    values: BTreeMap<String, Vec<u8>>,
) -> Result<HostPlan, String> {
    let h = sys.hosts.get(host).ok_or_else(|| format!("no host `{host}` in system `{}`", sys.name))?;
    let closure = manifest.hosts.get(host).map(|e| e.closure.clone()).ok_or_else(|| format!("the manifest lists no host `{host}`"))?;
    let rel = format!("hosts/{host}/bundle.tar.gz");
    let want = manifest
        .artifacts
        .iter()
        .find(|a| a.path == rel)
        .map(|a| a.sha256.clone())
        .ok_or_else(|| format!("the manifest lists no `{rel}`"))?;
    let path = entry.join(&rel);
    let bundle =
        std::fs::read(&path).map_err(|e| format!("store entry: cannot read `{}`: {e} (collected by `kiln gc`?)", path.display()))?;
    let got = crate::render::hex(&Sha256::digest(&bundle));
    if got != want {
        return Err(format!("store entry: `{}` has sha256 {got}, the manifest says {want} (damaged: rebuild)", path.display()));
    }
    let wanted = sys.host_secrets(h);
    let have: BTreeSet<String> = values.keys().cloned().collect();
    if have != wanted {
        return Err(format!("the secrets given ({}) are not the host's ({})", names(&have), names(&wanted)));
    }
    let services: Vec<&crate::model::Service> = h.services.iter().filter_map(|s| sys.services.get(s)).collect();
    Ok(HostPlan {
        name: host.to_string(),
        closure,
        bundle,
        bundle_sha256: want,
        secrets: Secrets(values),
        containers: services.iter().filter(|s| s.container.is_some()).map(|s| s.name.clone()).collect(),
        units: services.iter().filter_map(|s| s.native.as_ref().and_then(|n| n.unit.clone())).collect(),
        unit_of: services.iter().filter_map(|s| Some((s.name.clone(), s.native.as_ref()?.unit.clone()?))).collect(),
        secret_users: services
            .iter()
            .filter(|s| !s.secrets.is_empty())
            .map(|s| (s.name.clone(), s.secrets.iter().map(|u| u.secret.clone()).collect()))
            .collect(),
        // An existing host's declared address; a cloud host's comes from OpenTofu's state.
        route_address: h.address.filter(|_| h.public).map(|ip| SocketAddr::new(ip, routes::HTTPS_PORT)),
        routes: routes::probes(sys, host),
    })
}

fn names(s: &BTreeSet<String>) -> String {
    if s.is_empty() { "none".into() } else { s.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ") }
}

// ---- the steps ----

fn fail(host: &str, step: Step, message: impl Into<String>) -> Failure {
    Failure { host: host.to_string(), step, message: message.into(), log_tail: None, details: None }
}

fn run_step(h: &dyn Host, plan: &HostPlan, step: Step, script: &str, stdin: &[u8], timeout: Duration) -> Result<host::Output, Failure> {
    h.run(script, stdin, timeout).map_err(|e| fail(&plan.name, step, e))
}

/// Delivers the host's secrets (the values only ever on ssh's stdin).
pub fn deliver_secrets(h: &dyn Host, plan: &HostPlan, l: &Layout, t: &Timeouts, p: &Progress) -> Result<(), Failure> {
    p.emit(&plan.name, Step::Secrets, State::Started, format!("{} secrets", plan.secrets.0.len()));
    let names: BTreeSet<String> = plan.secrets.0.keys().cloned().collect();
    let out = run_step(h, plan, Step::Secrets, &secrets_script(l, &names), &secrets_archive(&plan.secrets), t.secrets)?;
    if !out.ok() {
        return Err(fail(&plan.name, Step::Secrets, format!("writing {} failed: {}", l.secrets_dir, out.stderr_tail(5))));
    }
    p.emit(&plan.name, Step::Secrets, State::Done, format!("{} secrets in {}", names.len(), l.secrets_dir));
    Ok(())
}

/// Runs the provisioner and waits for the closure marker.
fn provision(h: &dyn Host, plan: &HostPlan, l: &Layout, t: &Timeouts, p: &Progress) -> Result<(), Failure> {
    p.emit(&plan.name, Step::Provision, State::Started, "");
    let out = run_step(h, plan, Step::Provision, &provision_start_script(l), b"", t.connect)?;
    if !out.ok() {
        return Err(fail(&plan.name, Step::Provision, format!("cannot start the provisioner: {}", out.stderr_tail(5))));
    }
    p.emit(&plan.name, Step::Provision, State::Done, out.stdout_text().trim().to_string());
    p.emit(&plan.name, Step::Converge, State::Started, format!("waiting for closure {}", short(&plan.closure)));
    let start = Instant::now();
    let mut last_note = Instant::now();
    loop {
        let out = run_step(h, plan, Step::Converge, &provision_status_script(l), b"", t.connect)?;
        match parse_status(&out.stdout_text(), &plan.closure) {
            Converge::Reached => break,
            Converge::Failed { status, marker } => {
                let tail = h.run(&log_tail_script(l, 30), b"", t.connect).map(|o| host::tail(&o.stdout_text(), 30)).ok();
                let at = marker.map(|m| format!("the host is at closure {}", short(&m))).unwrap_or_else(|| "no closure marker".into());
                return Err(Failure {
                    host: plan.name.clone(),
                    step: Step::Converge,
                    message: format!("the provisioner exited with status {status}; {at}, not {}", short(&plan.closure)),
                    log_tail: tail,
                    details: None,
                });
            }
            Converge::Running => {}
        }
        if start.elapsed() >= t.converge {
            let tail = h.run(&log_tail_script(l, 30), b"", t.connect).map(|o| host::tail(&o.stdout_text(), 30)).ok();
            return Err(Failure {
                host: plan.name.clone(),
                step: Step::Converge,
                message: format!("the provisioner did not finish within {} s", t.converge.as_secs()),
                log_tail: tail,
                details: None,
            });
        }
        if last_note.elapsed() >= t.note_every {
            last_note = Instant::now();
            p.emit(&plan.name, Step::Converge, State::Waiting, format!("provisioner running ({} s)", start.elapsed().as_secs()));
        }
        std::thread::sleep(t.poll);
    }
    p.emit(&plan.name, Step::Converge, State::Done, format!("at closure {}", short(&plan.closure)));
    Ok(())
}

/// Waits until every container is healthy and every native unit active.
pub fn health(h: &dyn Host, plan: &HostPlan, l: &Layout, t: &Timeouts, p: &Progress) -> Result<(), Failure> {
    if plan.containers.is_empty() && plan.units.is_empty() {
        p.emit(&plan.name, Step::Health, State::Skipped, "no containers or units on this host");
        return Ok(());
    }
    p.emit(&plan.name, Step::Health, State::Started, format!("{} containers, {} units", plan.containers.len(), plan.units.len()));
    let script = health_script(l, &plan.containers, &plan.units);
    let start = Instant::now();
    let mut last_note = Instant::now();
    loop {
        let out = run_step(h, plan, Step::Health, &script, b"", t.connect)?;
        let bad = unhealthy(&out.stdout_text(), &plan.containers, &plan.units);
        if bad.is_empty() {
            break;
        }
        if start.elapsed() >= t.health {
            let tail = h.run(&log_tail_script(l, 30), b"", t.connect).map(|o| host::tail(&o.stdout_text(), 30)).ok();
            let details = h
                .run(&unhealthy_details_script(l, &bad_names(&out.stdout_text(), &plan.containers, &plan.units)), b"", t.connect)
                .map(|o| host::tail(&o.stdout_text(), 60))
                .ok()
                .filter(|d| !d.is_empty());
            return Err(Failure {
                host: plan.name.clone(),
                step: Step::Health,
                message: format!("not healthy after {} s: {}", t.health.as_secs(), bad.join("; ")),
                log_tail: tail.filter(|t| !t.is_empty()),
                details,
            });
        }
        if last_note.elapsed() >= t.note_every {
            last_note = Instant::now();
            p.emit(&plan.name, Step::Health, State::Waiting, bad.join("; "));
        }
        std::thread::sleep(t.poll);
    }
    p.emit(&plan.name, Step::Health, State::Done, "");
    Ok(())
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// What a host holds now: its closure marker and each delivered secret's sha256 (never a
/// value).
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub marker: Option<String>,
    pub digests: BTreeMap<String, String>,
}

/// What deploy will do to one host, decided from its [`Probe`] before anything changes (the
/// plan `kiln deploy` shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostAction {
    pub host: String,
    /// The closure the host is at now (`None`: never provisioned).
    pub at: Option<String>,
    pub closure: String,
    /// Send the bundle (the host is not at the build's closure).
    pub upload: bool,
    /// Deliver the secrets (some value differs or is missing).
    pub secrets: bool,
    /// Run the provisioner.
    pub provision: bool,
    /// The services restarted because a secret they use changed while the closure did not.
    pub restart: Vec<String>,
}

impl HostAction {
    /// Nothing but the health gate.
    pub fn skip(&self) -> bool {
        !self.upload && !self.secrets && !self.provision
    }

    /// `skip`, or the steps that change the host, for the plan.
    pub fn describe(&self) -> String {
        if self.skip() {
            return format!("skip: at closure {}, secrets unchanged (health gate only)", short(&self.closure));
        }
        let mut steps = Vec::new();
        if self.upload {
            steps.push(match &self.at {
                Some(a) => format!("upload (closure {} -> {})", short(a), short(&self.closure)),
                None => format!("upload (closure {}, first deploy)", short(&self.closure)),
            });
        }
        if self.secrets {
            steps.push("secrets".to_string());
        }
        if self.provision {
            steps.push("provision".to_string());
        }
        if !self.restart.is_empty() {
            steps.push(format!("restart {}", self.restart.join(", ")));
        }
        steps.push("health".to_string());
        steps.join(", ")
    }
}

/// Reads what the host holds (the connect step's last part). Changes nothing.
pub fn probe(h: &dyn Host, plan: &HostPlan, l: &Layout, t: &Timeouts, p: &Progress) -> Result<Probe, Failure> {
    let out = run_step(h, plan, Step::Connect, &probe_script(l), b"", t.connect)?;
    read_probe(plan, &out, p)
}

/// The [`Probe`] from the output of [`probe_script`] (run by the caller, for instance as the
/// first command over a new connection).
pub fn read_probe(plan: &HostPlan, out: &host::Output, p: &Progress) -> Result<Probe, Failure> {
    if !out.ok() {
        return Err(fail(&plan.name, Step::Connect, format!("cannot read the host's state: {}", out.stderr_tail(5))));
    }
    let (marker, digests) = parse_probe(&out.stdout_text());
    p.emit(
        &plan.name,
        Step::Connect,
        State::Done,
        match &marker {
            Some(m) => format!("at closure {}", short(m)),
            None => "no closure yet".to_string(),
        },
    );
    Ok(Probe { marker, digests })
}

/// What deploying `plan` does to a host in the state `probe` read.
pub fn decide(plan: &HostPlan, probe: &Probe) -> HostAction {
    let at = probe.marker.as_deref() == Some(plan.closure.as_str());
    let current = secrets_current(&plan.secrets, &probe.digests);
    let changed = changed_secrets(&plan.secrets, &probe.digests);
    let restart = if at && !current {
        plan.secret_users.iter().filter(|(_, s)| !s.is_disjoint(&changed)).map(|(n, _)| n.clone()).collect()
    } else {
        Vec::new()
    };
    HostAction {
        host: plan.name.clone(),
        at: probe.marker.clone(),
        closure: plan.closure.clone(),
        upload: !at,
        secrets: !current,
        provision: !(at && current),
        restart,
    }
}

/// Carries out `action` on a connected host (probed as `probe`), then the health gate (the
/// route gate and `done` follow when its wave is up: [`finish_wave`]).
pub fn apply(
    h: &dyn Host,
    plan: &HostPlan,
    probe: &Probe,
    action: &HostAction,
    l: &Layout,
    t: &Timeouts,
    p: &Progress,
) -> Result<Outcome, Failure> {
    let outcome = if action.skip() {
        p.emit(&plan.name, Step::Upload, State::Skipped, format!("already at closure {}, secrets unchanged", short(&plan.closure)));
        Outcome::Skipped
    } else {
        if !action.upload {
            p.emit(&plan.name, Step::Upload, State::Skipped, "already at this closure; secrets changed");
        } else {
            p.emit(&plan.name, Step::Upload, State::Started, format!("{} bytes", plan.bundle.len()));
            let out = run_step(h, plan, Step::Upload, &upload_script(l, &plan.bundle_sha256), &plan.bundle, t.upload)?;
            if !out.ok() {
                return Err(fail(&plan.name, Step::Upload, out.stderr_tail(5)));
            }
            p.emit(&plan.name, Step::Upload, State::Done, format!("sha256 {} verified on the host", short(&plan.bundle_sha256)));
        }
        if action.secrets {
            deliver_secrets(h, plan, l, t, p)?;
        }
        provision(h, plan, l, t, p)?;
        if !action.upload && action.secrets {
            restart(h, plan, l, t, p, &changed_secrets(&plan.secrets, &probe.digests))?;
        }
        Outcome::Deployed
    };
    health(h, plan, l, t, p)?;
    Ok(outcome)
}

/// Deploys one connected host: skip when it is at its closure with its secrets, else upload,
/// secrets, provisioner, converge; then the health gate.
pub fn deploy_host(h: &dyn Host, plan: &HostPlan, l: &Layout, t: &Timeouts, p: &Progress) -> Result<Outcome, Failure> {
    let probe = probe(h, plan, l, t, p)?;
    let action = decide(plan, &probe);
    apply(h, plan, &probe, &action, l, t, p)
}

/// The rollout's waves: with `order` (`[deploy] order`), one per listed group in that order,
/// then the hosts without a group; without it, the `canary` group, then every other host.
/// Only `selected` hosts appear; empty waves are left out. Each wave is named and its hosts
/// sorted.
pub fn waves(sys: &System, order: &[String], selected: &[String]) -> Vec<(String, Vec<String>)> {
    let group = |h: &String| sys.hosts.get(h).and_then(|h| h.group.clone());
    let mut sel: Vec<String> = selected.to_vec();
    sel.sort();
    sel.dedup();
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    if order.is_empty() {
        let (canary, rest): (Vec<String>, Vec<String>) = sel.into_iter().partition(|h| group(h).as_deref() == Some("canary"));
        out.push(("canary".into(), canary));
        out.push(("the rest".into(), rest));
    } else {
        for g in order {
            out.push((g.clone(), sel.iter().filter(|h| group(h).as_deref() == Some(g.as_str())).cloned().collect()));
        }
        // Hosts in no listed group: the check makes these the ungrouped ones.
        out.push(("no group".into(), sel.iter().filter(|h| group(h).is_none_or(|g| !order.contains(&g))).cloned().collect()));
    }
    out.retain(|(_, w)| !w.is_empty());
    out
}

fn restart(h: &dyn Host, plan: &HostPlan, l: &Layout, t: &Timeouts, p: &Progress, changed: &BTreeSet<String>) -> Result<(), Failure> {
    let Some(script) = restart_script(l, plan, changed) else {
        p.emit(&plan.name, Step::Restart, State::Skipped, "no service uses the changed secrets");
        return Ok(());
    };
    p.emit(&plan.name, Step::Restart, State::Started, "");
    let out = run_step(h, plan, Step::Restart, &script, b"", t.health)?;
    if !out.ok() {
        return Err(fail(&plan.name, Step::Restart, out.stderr_tail(5)));
    }
    p.emit(&plan.name, Step::Restart, State::Done, "");
    Ok(())
}

/// `kiln secrets push`: deliver the host's secrets, let its provisioner hand each service its
/// copy (it must be at the build's closure already), restart the services using a changed
/// secret, then the health gate.
pub fn push_secrets(h: &dyn Host, plan: &HostPlan, l: &Layout, t: &Timeouts, p: &Progress) -> Result<BTreeSet<String>, Failure> {
    let out = run_step(h, plan, Step::Connect, &probe_script(l), b"", t.connect)?;
    let (marker, digests) = parse_probe(&out.stdout_text());
    if marker.as_deref() != Some(plan.closure.as_str()) {
        return Err(fail(
            &plan.name,
            Step::Connect,
            format!(
                "the host is at closure {}, not this build's {}: run `kiln deploy` instead",
                marker.as_deref().map(short).unwrap_or("(none)"),
                short(&plan.closure)
            ),
        ));
    }
    p.emit(&plan.name, Step::Connect, State::Done, format!("at closure {}", short(&plan.closure)));
    let changed = changed_secrets(&plan.secrets, &digests);
    deliver_secrets(h, plan, l, t, p)?;
    provision(h, plan, l, t, p)?;
    restart(h, plan, l, t, p, &changed)?;
    health(h, plan, l, t, p)?;
    p.emit(&plan.name, Step::Done, State::Done, format!("{} secrets changed", changed.len()));
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(secrets: &[(&str, &str)]) -> HostPlan {
        HostPlan {
            name: "web".into(),
            closure: "c".repeat(64),
            bundle: Vec::new(),
            bundle_sha256: String::new(),
            secrets: Secrets(secrets.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()),
            containers: vec!["app".into()],
            units: vec!["caddy.service".into()],
            unit_of: [("caddy".to_string(), "caddy.service".to_string())].into(),
            secret_users: [("app".to_string(), ["db_password".to_string()].into())].into(),
            route_address: None,
            routes: routes::RoutePlan::default(),
        }
    }

    #[test]
    fn decide_reads_the_probe() {
        let p = plan(&[("db_password", "s3cret")]);
        let digest = crate::render::hex(&Sha256::digest(b"s3cret"));
        let fresh = decide(&p, &Probe::default());
        assert!(fresh.upload && fresh.secrets && fresh.provision && fresh.restart.is_empty());
        assert!(fresh.describe().starts_with("upload (closure cccccccccccc, first deploy), secrets, provision"), "{}", fresh.describe());
        let at = Probe { marker: Some(p.closure.clone()), digests: [("db_password".to_string(), digest)].into() };
        let skip = decide(&p, &at);
        assert!(skip.skip() && skip.describe().starts_with("skip"), "{skip:?}");
        let rotated = Probe { marker: Some(p.closure.clone()), digests: [("db_password".to_string(), "0".repeat(64))].into() };
        let r = decide(&p, &rotated);
        assert!(!r.upload && r.secrets && r.provision && r.restart == ["app"], "{r:?}");
        let old = Probe { marker: Some("o".repeat(64)), digests: at.digests.clone() };
        let u = decide(&p, &old);
        assert!(u.upload && !u.secrets && u.provision && u.restart.is_empty(), "{u:?}");
    }

    #[test]
    fn probe_and_status_are_read_back() {
        let (m, d) = parse_probe("abc\nx 12\ny 34\n");
        assert_eq!(m.as_deref(), Some("abc"));
        assert_eq!(d.len(), 2);
        assert_eq!(parse_probe("\n").0, None);
        assert_eq!(parse_status("abc\n\n", "abc"), Converge::Running);
        assert_eq!(parse_status("abc\n0\n", "abc"), Converge::Reached);
        assert_eq!(parse_status("old\n0\n", "abc"), Converge::Failed { status: "0".into(), marker: Some("old".into()) });
        assert_eq!(parse_status("\n1\n", "abc"), Converge::Failed { status: "1".into(), marker: None });
    }

    #[test]
    fn health_needs_every_container_and_unit() {
        let (c, u) = (vec!["app".to_string(), "db".to_string()], vec!["caddy.service".to_string()]);
        assert!(unhealthy("container app running healthy\ncontainer db running none\nunit caddy.service active\n", &c, &u).is_empty());
        let bad = unhealthy("container app running starting\nunit caddy.service failed\n", &c, &u);
        assert_eq!(bad, ["container app: running, starting", "unit caddy.service: failed", "container db: not reported"]);
    }

    /// A unit is healthy once it has stayed active a few seconds: one that crashes and is
    /// restarted is `active` for a moment each time. The script is run by dash against a
    /// stand-in `systemctl` (a unit active since 2 s before "now", then one active for long).
    #[test]
    fn a_unit_must_stay_active_to_be_healthy() {
        let u = vec!["hello.service".to_string()];
        assert_eq!(unhealthy("unit hello.service active 1\n", &[], &u), ["unit hello.service: active for 1 s only (restarting?)"]);
        assert!(unhealthy("unit hello.service active 3600\n", &[], &u).is_empty());
        assert_eq!(unhealthy("unit hello.service activating 0\n", &[], &u), ["unit hello.service: activating"]);
        let d = tempfile::tempdir().unwrap();
        let up: u64 = std::fs::read_to_string("/proc/uptime").unwrap().split('.').next().unwrap().parse().unwrap();
        for (since, healthy) in [(up.saturating_sub(2), false), (up.saturating_sub(600), true)] {
            let bin = d.path().join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            let fake = format!("#!/bin/sh\ncase $1 in is-active) echo active ;; show) echo {} ;; esac\n", since * 1_000_000);
            std::fs::write(bin.join("systemctl"), fake).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(bin.join("systemctl"), std::fs::Permissions::from_mode(0o755)).unwrap();
            let out = std::process::Command::new("dash")
                .arg("-c")
                .arg(health_script(&Layout::system(), &[], &u))
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert_eq!(unhealthy(&text, &[], &u).is_empty(), healthy, "{text}");
        }
    }

    #[test]
    fn secret_changes_are_seen_by_digest() {
        let p = plan(&[("db_password", "s3cret")]);
        let digest = crate::render::hex(&Sha256::digest(b"s3cret"));
        let same: BTreeMap<String, String> = [("db_password".to_string(), digest)].into();
        assert!(secrets_current(&p.secrets, &same));
        assert!(changed_secrets(&p.secrets, &same).is_empty());
        let stale: BTreeMap<String, String> = [("db_password".to_string(), "0".repeat(64)), ("gone".to_string(), "1".into())].into();
        assert!(!secrets_current(&p.secrets, &stale));
        assert_eq!(changed_secrets(&p.secrets, &stale), ["db_password".to_string()].into());
        let r = restart_script(&Layout::system(), &p, &changed_secrets(&p.secrets, &stale)).unwrap();
        assert!(r.contains("docker compose --file /opt/kiln/compose.yaml restart app"), "{r}");
        assert!(restart_script(&Layout::system(), &p, &["other".to_string()].into()).is_none());
    }

    /// The secrets script, run by dash on a local directory: every value arrives byte for
    /// byte, root-only, a stale secret is removed, and no temporary directory stays.
    #[test]
    fn secrets_arrive_exactly_and_stale_ones_go() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let l = Layout::under(d.path().to_str().unwrap());
        std::fs::create_dir_all(&l.secrets_dir).unwrap();
        std::fs::write(format!("{}/old", l.secrets_dir), "x").unwrap();
        let p = plan(&[("db_password", "line1\nline2 'quoted' $HOME"), ("token", "\u{0}bin")]);
        let names: BTreeSet<String> = p.secrets.0.keys().cloned().collect();
        let out = host::Local.run(&secrets_script(&l, &names), &secrets_archive(&p.secrets), Duration::from_secs(10)).unwrap();
        assert!(out.ok(), "{}", out.stderr_tail(10));
        let mut found: Vec<String> =
            std::fs::read_dir(&l.secrets_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        found.sort();
        assert_eq!(found, ["db_password", "token"]);
        for (n, v) in &p.secrets.0 {
            let f = format!("{}/{n}", l.secrets_dir);
            assert_eq!(&std::fs::read(&f).unwrap(), v);
            assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o400);
        }
        assert_eq!(std::fs::metadata(&l.secrets_dir).unwrap().permissions().mode() & 0o777, 0o700);
        let probe = host::Local.run(&probe_script(&l), b"", Duration::from_secs(10)).unwrap();
        let (_, digests) = parse_probe(&probe.stdout_text());
        assert!(secrets_current(&p.secrets, &digests));
    }

    /// The upload script takes the bundle only when its sha256 matches.
    #[test]
    fn upload_verifies_the_bundle() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::under(d.path().to_str().unwrap());
        let art = crate::render::Artifact {
            path: "provision.sh".into(),
            kind: crate::render::Kind::Provisioner,
            mode: 0o755,
            bytes: b"echo hi\n".to_vec(),
        };
        let bundle = crate::render::bundle::bundle(&[art], 0);
        let sum = crate::render::hex(&Sha256::digest(&bundle));
        let bad = host::Local.run(&upload_script(&l, &"0".repeat(64)), &bundle, Duration::from_secs(10)).unwrap();
        assert!(!bad.ok() && bad.stderr_tail(3).contains("sha256 mismatch"), "{}", bad.stderr_tail(3));
        assert!(!Path::new(&l.kiln_root).exists());
        let good = host::Local.run(&upload_script(&l, &sum), &bundle, Duration::from_secs(10)).unwrap();
        assert!(good.ok(), "{}", good.stderr_tail(5));
        assert_eq!(std::fs::read(format!("{}/provision.sh", l.kiln_root)).unwrap(), b"echo hi\n");
    }
}
