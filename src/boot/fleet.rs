//! `kiln boot --all` / `--hosts`: several hosts of a system, each in its own qemu, started
//! together (as many at a time as memory allows), on the network [`super::net`] plans: the
//! system's private networks as segments shared by the VMs, an uplink only for hosts with a
//! route of their own, loopback ports forwarded to public hosts. Each host's seed carries its
//! own secrets (served once, deleted once cloud-init has it) and the report part
//! (`seed::report_part`), whose lines on the serial console give the provisioner's result, the
//! closure marker and the containers' states, also for machines kept running.
//!
//! `--keep` leaves the machines running and records them in a state file (0600, in a 0700
//! directory), as [`keep_one`] records a single host's `kiln boot HOST --keep`; [`down`] powers
//! them off and removes their work directory.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::net::{Plan, Role, VmNet, network_config};
use super::seed::{REPORT_PREFIX, report_part};
use super::{
    INTERRUPTED, catch_interrupts, console_tail, data_disk, free_port, nocloud_name, private_dir, qemu_command, read_from_disk, spawn_qemu,
    stop, write_private,
};

/// One host to boot: what the build made for it and what the boot delivers.
pub struct FleetHost {
    pub name: String,
    pub closure: String,
    pub user_data: Vec<u8>,
    /// Directory with `base.raw`, `vmlinuz`, `initrd.img`.
    pub image_dir: PathBuf,
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// The host holds data: it gets a fresh, empty data disk (its provider volume's stand-in),
    /// removed with the work directory.
    pub volume: bool,
    /// The port its sshd listens on (`ssh_port`), which the loopback SSH forward reaches.
    pub ssh_port: u16,
    /// Virtual CPUs (`boot::vcpus`).
    pub cpus: u32,
    /// Lab plumbing: its stand-in images, a `docker load` archive attached read-only (see
    /// [`super::LAB_IMAGES_SERIAL`]).
    pub lab_images: Option<PathBuf>,
    /// Its memory in MiB when not the fleet's (`FleetOptions::memory_mb`): a stand-in's.
    pub memory_mb: Option<u32>,
}

pub struct FleetOptions {
    pub system: String,
    pub keep: bool,
    /// Memory per machine, in MiB.
    pub memory_mb: u32,
    pub timeout: Duration,
    pub kiln_exe: PathBuf,
    /// Where `--keep` records the running machines for `kiln boot --down`.
    pub state_dir: PathBuf,
    /// Lab plumbing: a flat apt repository, the machines' only apt source ([`super::seed::apt_part`]).
    pub apt_repo: Option<PathBuf>,
}

/// A container's state as `docker compose ps` gave it on the host.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub service: String,
    pub state: String,
    pub health: String,
}

#[derive(Serialize, Debug)]
pub struct HostReport {
    pub host: String,
    pub closure: String,
    /// Why the host has no full report (qemu exited, timeout, interrupted).
    pub error: Option<String>,
    pub boot_seconds: Option<f64>,
    pub datasource: Option<String>,
    /// Lines of the serial console with `WARNING` or `Invalid cloud-config`.
    pub warnings: Vec<String>,
    /// cloud-init's errors from /var/lib/cloud/data/result.json, read from the disk after
    /// power-off (not read when the machines are kept running).
    pub result_errors: Option<Vec<serde_json::Value>>,
    /// `completed` when the marker holds the closure, else the provisioner's last error line.
    pub provisioner: Option<String>,
    pub marker: Option<String>,
    pub containers: Vec<Container>,
    /// Loopback ports forwarded to a public host: `ssh`, `http`, `https`.
    pub ports: BTreeMap<String, u16>,
    pub network: VmNet,
    /// With `--keep`: the qemu process and its QMP socket.
    pub pid: Option<u32>,
    pub qmp: Option<PathBuf>,
    /// Each time qemu crashed before cloud-init finished and the machine was started again
    /// from a fresh disk (`boot::crash`).
    pub crashes: Vec<String>,
}

impl HostReport {
    /// Everything a clean boot shows: NoCloud, no warning, no cloud-init error, the provisioner
    /// completed with the closure as its marker, every container running (healthy where it has
    /// a healthcheck).
    pub fn clean(&self) -> bool {
        self.error.is_none()
            && self.datasource.as_deref().is_some_and(|d| d.starts_with("DataSourceNoCloud"))
            && self.warnings.is_empty()
            && self.result_errors.as_ref().is_none_or(|e| e.is_empty())
            && self.provisioner.as_deref() == Some("completed")
            && self.marker.as_deref() == Some(self.closure.as_str())
            && self.containers.iter().all(|c| c.state == "running" && (c.health.is_empty() || c.health == "healthy"))
    }
}

#[derive(Serialize, Debug)]
pub struct FleetReport {
    pub system: String,
    pub plan: Plan,
    pub hosts: Vec<HostReport>,
    /// With `--keep`: the fleet's work directory and its state file (`kiln boot --down`).
    pub workdir: Option<PathBuf>,
    pub state: Option<PathBuf>,
}

/// What `--keep` leaves for `kiln boot --down`.
#[derive(Serialize, Deserialize, Debug)]
struct State {
    system: String,
    workdir: PathBuf,
    machines: Vec<KeptMachine>,
}

#[derive(Serialize, Deserialize, Debug)]
struct KeptMachine {
    host: String,
    pid: u32,
    qmp: PathBuf,
}

/// What the report part wrote to the console: marker, provisioner error, containers.
fn parse_report(log: &str) -> (Option<String>, Option<String>, Vec<Container>, bool) {
    let (mut marker, mut error, mut containers, mut end) = (None, None, Vec::new(), false);
    for line in log.lines() {
        let Some(rest) = line.split_once(REPORT_PREFIX).map(|(_, r)| r.trim_end_matches('\r')) else { continue };
        if let Some(m) = rest.strip_prefix("marker ") {
            marker = Some(m.trim().to_string()).filter(|m| !m.is_empty() && m != "none");
        } else if let Some(e) = rest.strip_prefix("provisioner-error") {
            error = Some(e.trim().to_string()).filter(|e| !e.is_empty());
        } else if let Some(c) = rest.strip_prefix("container ") {
            let mut f = c.split_whitespace();
            let service = f.next().unwrap_or("").to_string();
            containers.push(Container { service, state: f.next().unwrap_or("").into(), health: f.next().unwrap_or("").into() });
        } else if rest.trim() == "end" {
            end = true;
        }
    }
    (marker, error, containers, end)
}

/// The memory the machine kiln runs on has free, in MiB (`MemAvailable`).
fn available_mb() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb / 1024)
}

/// A free UDP port on loopback and the `count - 1` after it (for the private networks' segments).
fn free_udp_ports(count: usize) -> Result<u16, String> {
    for _ in 0..20 {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("no free UDP port: {e}"))?;
        let first = s.local_addr().map_err(|e| e.to_string())?.port();
        drop(s);
        let ok = (0..count as u16).all(|i| first.checked_add(i).is_some_and(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()));
        if ok {
            return Ok(first);
        }
    }
    Err("no run of free UDP ports for the private networks".into())
}

/// A machine being booted.
struct Running {
    index: usize,
    child: Child,
    started: Instant,
    dir: PathBuf,
}

/// The first UDP port the segments of a fleet use: chosen free now (pass it to [`super::net::plan`]).
pub fn lan_port(networks: usize) -> Result<u16, String> {
    free_udp_ports(networks.max(1))
}

/// Boots `hosts` with the network `plan` (made for exactly these hosts, in this order) and
/// waits for each; see the module.
pub fn boot_fleet(hosts: &[FleetHost], plan: &Plan, opts: &FleetOptions) -> Result<FleetReport, String> {
    if hosts.len() != plan.vms.len() || hosts.iter().zip(&plan.vms).any(|(h, v)| h.name != v.host) {
        return Err("the network plan is not for these hosts".into());
    }
    for h in hosts {
        if let Some(images) = h.lab_images.as_ref().filter(|i| !i.is_file() || i.to_string_lossy().contains(',')) {
            return Err(format!("{}: {}: no such file (or a path with a comma, which qemu cannot take)", h.name, images.display()));
        }
        for f in ["base.raw", "vmlinuz", "initrd.img"] {
            if !h.image_dir.join(f).is_file() {
                return Err(format!(
                    "{}: no {f} in {} (build the base image with scripts/build-test-image)",
                    h.name,
                    h.image_dir.display()
                ));
            }
        }
    }
    // How many machines fit at once; kept machines never free their memory.
    let fit = available_mb().map_or(hosts.len(), |m| (m.saturating_sub(512) / u64::from(opts.memory_mb.max(1))) as usize).max(1);
    if opts.keep && fit < hosts.len() {
        return Err(format!(
            "{} machines of {} MiB do not fit in the memory available ({} at a time): boot fewer hosts or give --memory less",
            hosts.len(),
            opts.memory_mb,
            fit
        ));
    }
    // Refused before any machine starts.
    if let Some(dir) = &opts.apt_repo {
        super::repo_serve_cmd(dir)?;
    }
    catch_interrupts();
    let work = private_dir()?;
    if work.path().to_string_lossy().contains(',') || opts.kiln_exe.to_string_lossy().contains(',') {
        return Err("paths with commas cannot be passed to qemu".into());
    }
    let result = run_fleet(work.path(), hosts, plan, opts, fit);
    // The seeds' user-data holds the secrets: they never outlive the boot, kept or not.
    for h in hosts {
        super::seed::forget_secrets(&work.path().join(&h.name).join("seed"));
    }
    let (mut reports, mut kept) = result?;
    let mut report = FleetReport { system: opts.system.clone(), plan: plan.clone(), hosts: Vec::new(), workdir: None, state: None };
    if opts.keep && !kept.is_empty() {
        let workdir = work.keep();
        let state = State { system: opts.system.clone(), workdir: workdir.clone(), machines: std::mem::take(&mut kept) };
        let file = write_state(&opts.state_dir, &state_file(&opts.state_dir, &state.system), &state)?;
        report.workdir = Some(workdir);
        report.state = Some(file);
    }
    report.hosts = std::mem::take(&mut reports);
    Ok(report)
}

/// The state file of a fleet of `system` kept running.
fn state_file(dir: &Path, system: &str) -> PathBuf {
    dir.join(format!("{system}.json"))
}

/// The state file of one host of `system` booted alone and kept running (`kiln boot HOST
/// --keep`): beside its fleet's, so that the fleet and the lone machine never overwrite each
/// other's record. A system's name has no `+` (a name is letters, digits, `-` and `_`).
fn host_state_file(dir: &Path, system: &str, host: &str) -> PathBuf {
    dir.join(format!("{system}+{host}.json"))
}

/// `kiln boot HOST --keep`: records the machine left running (its qemu `pid` and QMP socket,
/// its work directory) for [`down`], as a kept fleet is recorded. Returns the state file.
pub fn keep_one(state_dir: &Path, system: &str, host: &str, workdir: &Path, pid: u32, qmp: &Path) -> Result<PathBuf, String> {
    let state = State {
        system: system.to_string(),
        workdir: workdir.to_path_buf(),
        machines: vec![KeptMachine { host: host.to_string(), pid, qmp: qmp.to_path_buf() }],
    };
    write_state(state_dir, &host_state_file(state_dir, system, host), &state)
}

fn write_state(dir: &Path, file: &Path, state: &State) -> Result<PathBuf, String> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| format!("{}: {e}", dir.display()))?;
    if file.exists() {
        // Machines of the same system (or host) kept earlier: recorded machines must not be forgotten.
        let old: Option<State> = std::fs::read(file).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if old.is_some_and(|o| o.machines.iter().any(|m| alive(m.pid, &m.host))) {
            return Err(format!(
                "{} still records running machines of `{}`; the new ones run on: stop them with QMP or `kiln boot --down` first next time",
                file.display(),
                state.system
            ));
        }
        let _ = std::fs::remove_file(file);
    }
    write_private(file, serde_json::to_string_pretty(state).expect("serialises").as_bytes())?;
    Ok(file.to_path_buf())
}

/// Whether `pid` is still the qemu kiln started for `host` (not a reused pid, not a zombie).
fn alive(pid: u32, host: &str) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z');
    !zombie && cmdline.split(|b| *b == 0).any(|a| a == format!("kiln-boot-{host}").as_bytes())
}

/// `kiln boot --down`: powers off the machines `--keep` left (of `system`, or of every
/// recorded system), waits for each to stop (killing one that does not in 90 s), removes their
/// work directory and the state file. Returns what it stopped, one line each.
pub fn down(state_dir: &Path, system: Option<&str>) -> Result<Vec<String>, String> {
    // The fleet's file and those of its hosts kept alone (`SYSTEM.json`, `SYSTEM+HOST.json`).
    let of_system = |p: &Path| {
        let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        system.is_none_or(|s| stem == s || stem.strip_prefix(s).is_some_and(|rest| rest.starts_with('+')))
    };
    let mut files: Vec<PathBuf> = match std::fs::read_dir(state_dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file() && of_system(p))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    let mut out = Vec::new();
    // A record that cannot be read holds back no other: the rest are stopped, then it is named.
    let mut unreadable = Vec::new();
    for file in files {
        let read = std::fs::read(&file).map_err(|e| e.to_string());
        let state: State = match read.and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())) {
            Ok(s) => s,
            Err(e) => {
                unreadable.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        for m in &state.machines {
            if !alive(m.pid, &m.host) {
                out.push(format!("{}/{}: not running", state.system, m.host));
                continue;
            }
            let _ = super::power_off(&m.qmp);
            let start = Instant::now();
            while alive(m.pid, &m.host) {
                if start.elapsed() > Duration::from_secs(90) {
                    // SAFETY: a plain kill(2) of the qemu this state file recorded (checked by name).
                    unsafe { libc::kill(m.pid as i32, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            out.push(format!("{}/{}: stopped (pid {})", state.system, m.host, m.pid));
        }
        // Only a directory kiln made: a private kiln-boot-* directory.
        if state.workdir.file_name().is_some_and(|n| n.to_string_lossy().starts_with("kiln-boot-")) {
            let _ = std::fs::remove_dir_all(&state.workdir);
        }
        if let Err(e) = std::fs::remove_file(&file) {
            unreadable.push(format!("{}: {e}", file.display()));
        }
    }
    if unreadable.is_empty() {
        return Ok(out);
    }
    let done = if out.is_empty() { String::new() } else { format!("; done before that: {}", out.join(", ")) };
    Err(format!("could not handle the record of kept machines {} (left in place){done}", unreadable.join("; ")))
}

/// The qemu arguments of one VM's NICs.
/// `apt` is the lab's apt repository's serve command ([`super::repo_serve_cmd`]): it answers on
/// the uplink only, so a host reaches it exactly when it has a way out (its own uplink, or a
/// route through a gateway that has one), never through a seed link.
fn nic_args(
    vm: &VmNet,
    plan: &Plan,
    seed_dir: &Path,
    kiln: &Path,
    ports: &BTreeMap<String, u16>,
    ssh_port: u16,
    apt: Option<&str>,
) -> Vec<String> {
    let mut args = Vec::new();
    for (i, nic) in vm.nics.iter().enumerate() {
        match &nic.role {
            Role::Uplink | Role::Seed => {
                let slirp = if nic.role == Role::Uplink { plan.uplink } else { plan.seed };
                let mut s = format!("user,model=virtio-net-pci,mac={},net={}", nic.mac, slirp.net());
                if nic.role == Role::Seed {
                    // No packet leaves it (IPv6 router advertisements included): only the
                    // seed server answers.
                    s.push_str(",restrict=on,ipv6=off");
                }
                for (name, guest) in [("ssh", ssh_port), ("http", 80), ("https", 443)] {
                    if let Some(p) = ports.get(name) {
                        s.push_str(&format!(",hostfwd=tcp:127.0.0.1:{p}-:{guest}"));
                    }
                }
                s.push_str(&format!(",guestfwd=tcp:{}:80-cmd:{} seed-serve {}", slirp.seed(), kiln.display(), seed_dir.display()));
                if let (Role::Uplink, Some(cmd)) = (&nic.role, apt) {
                    s.push_str(&format!(",guestfwd=tcp:{}:{}-cmd:{} {cmd}", slirp.seed(), super::seed::APT_PORT, kiln.display()));
                }
                args.extend(["-nic".to_string(), s]);
            }
            Role::Lan { network } => {
                let lan = plan.lans.iter().find(|l| &l.network == network).expect("planned");
                let id = format!("lan{i}");
                args.extend([
                    "-netdev".to_string(),
                    format!("socket,id={id},mcast={}:{},localaddr=127.0.0.1", lan.group, lan.port),
                    "-device".to_string(),
                    format!("virtio-net-pci,netdev={id},mac={}", nic.mac),
                ]);
            }
        }
    }
    args
}

/// Writes one host's seed, overlay and (for a host with data) data disk under `dir`, and
/// starts its qemu.
fn start(dir: &Path, h: &FleetHost, vm: &VmNet, plan: &Plan, opts: &FleetOptions, ports: &BTreeMap<String, u16>) -> Result<Child, String> {
    let apt = opts.apt_repo.as_deref().map(super::repo_serve_cmd).transpose()?;
    let apt = apt.as_deref();
    std::fs::DirBuilder::new().mode(0o700).create(dir).map_err(|e| e.to_string())?;
    let seed = dir.join("seed");
    std::fs::DirBuilder::new().mode(0o700).create(&seed).map_err(|e| e.to_string())?;
    let netcfg = network_config(vm);
    let mut lab = vec![("kiln-boot-report.cfg", report_part())];
    if apt.is_some() {
        let url = format!("http://{}:{}/", plan.uplink.seed(), super::seed::APT_PORT);
        lab.push(("kiln-boot-apt.cfg", super::seed::apt_part(&url)));
    }
    super::seed::write_user_data(&seed, &h.user_data, &h.secrets, &lab, write_private)?;
    write_private(&seed.join("meta-data"), format!("instance-id: kiln-{}\nlocal-hostname: {}\n", &h.closure[..16], h.name).as_bytes())?;
    write_private(&seed.join("vendor-data"), b"")?;
    write_private(&seed.join("network-config"), netcfg.as_bytes())?;
    let overlay = dir.join("overlay.qcow2");
    super::create_overlay(&h.image_dir, &overlay)?;
    let serial = dir.join("serial.log");
    write_private(&serial, b"")?;
    let err = dir.join("qemu.err");
    write_private(&err, b"")?;
    // cloud-init reads a network configuration from the kernel command line in its local
    // stage, before any datasource; the seed's `network-config` says the same for NoCloud,
    // whose HTTP seed is read only once the network is up.
    use base64::Engine;
    let append = format!("network-config={}", base64::engine::general_purpose::STANDARD.encode(&netcfg));
    let mut qemu = qemu_command(&h.name, h.cpus, h.memory_mb.unwrap_or(opts.memory_mb), &h.image_dir, Some(&append), &overlay);
    if h.volume {
        let disk = dir.join("data.qcow2");
        let (format, _) = data_disk(&disk)?;
        qemu.arg("-drive")
            .arg(format!("file={},format={format},if=none,id=kiln-data,discard=unmap", disk.display()))
            .args(["-device", &format!("virtio-blk-pci,drive=kiln-data,serial={}", super::DATA_DISK_SERIAL)]);
    }
    if let Some(images) = &h.lab_images {
        qemu.arg("-drive")
            .arg(format!("file={},format=raw,if=none,id=kiln-lab-images,readonly=on", images.display()))
            .args(["-device", &format!("virtio-blk-pci,drive=kiln-lab-images,serial={}", super::LAB_IMAGES_SERIAL)]);
    }
    let seed_addr = if vm.uplink() { plan.uplink.seed() } else { plan.seed.seed() };
    qemu.args(nic_args(vm, plan, &seed, &opts.kiln_exe, ports, h.ssh_port, apt))
        .args(["-smbios", &format!("type=1,serial=ds={};s=http://{seed_addr}/", nocloud_name(&h.image_dir))]);
    spawn_qemu(qemu, &serial, &dir.join("qmp.sock"), &err)
}

/// Powers a machine off and reads cloud-init's result and the marker from its disk.
fn off_and_read(report: &mut HostReport, child: &mut Child, dir: &Path) {
    stop(child, &dir.join("qmp.sock"));
    let overlay = dir.join("overlay.qcow2");
    if let Ok(files) = read_from_disk(dir, &overlay, &["/var/lib/cloud/data/result.json", crate::render::MARKER]) {
        let result: serde_json::Value = serde_json::from_str(&files[0]).unwrap_or(serde_json::Value::Null);
        report.result_errors = result["v1"]["errors"].as_array().cloned();
        report.marker = Some(files[1].trim().to_string()).filter(|m| !m.is_empty());
    }
}

type Outcome = (Vec<HostReport>, Vec<KeptMachine>);

fn run_fleet(work: &Path, hosts: &[FleetHost], plan: &Plan, opts: &FleetOptions, fit: usize) -> Result<Outcome, String> {
    let mut reports: Vec<HostReport> = hosts
        .iter()
        .zip(&plan.vms)
        .map(|(h, vm)| HostReport {
            host: h.name.clone(),
            closure: h.closure.clone(),
            error: None,
            boot_seconds: None,
            datasource: None,
            warnings: Vec::new(),
            result_errors: None,
            provisioner: None,
            marker: None,
            containers: Vec::new(),
            crashes: Vec::new(),
            ports: BTreeMap::new(),
            network: vm.clone(),
            pid: None,
            qmp: None,
        })
        .collect();
    for r in &mut reports {
        if r.network.forwards {
            for name in ["ssh", "http", "https"] {
                r.ports.insert(name.to_string(), free_port()?);
            }
        }
    }
    // Gateways (hosts with an uplink) first, so that a wave holds them with their clients.
    let mut pending: Vec<usize> = (0..hosts.len()).collect();
    pending.sort_by_key(|i| !plan.vms[*i].uplink());
    pending.reverse();
    let mut running: Vec<Running> = Vec::new();
    let mut finished: Vec<(usize, Child)> = Vec::new();
    let mut kept = Vec::new();
    let all_stop = |running: &mut Vec<Running>, finished: &mut Vec<(usize, Child)>| {
        for r in running.iter_mut() {
            super::kill(&mut r.child);
        }
        for (_, c) in finished.iter_mut() {
            super::kill(c);
        }
    };
    loop {
        while running.len() < fit
            && let Some(i) = pending.pop()
        {
            let dir = work.join(&hosts[i].name);
            match start(&dir, &hosts[i], &plan.vms[i], plan, opts, &reports[i].ports) {
                Ok(child) => running.push(Running { index: i, child, started: Instant::now(), dir }),
                Err(e) => reports[i].error = Some(e),
            }
        }
        if running.is_empty() {
            break;
        }
        let mut still = Vec::new();
        for mut r in running.drain(..) {
            let serial = r.dir.join("serial.log");
            let log = std::fs::read_to_string(&serial).unwrap_or_default();
            let report = &mut reports[r.index];
            if let Some(line) = log.lines().find(|l| l.contains("Cloud-init v.") && l.contains(" finished at ")) {
                // cloud-init has read its seed: the secrets leave the disk now, also with --keep.
                super::seed::forget_secrets(&r.dir.join("seed"));
                report.boot_seconds = Some(r.started.elapsed().as_secs_f64());
                report.datasource = line.split("Datasource ").nth(1).map(|s| s.split_whitespace().next().unwrap_or("").to_string());
                report.warnings =
                    log.lines().filter(|l| l.contains("WARNING") || l.contains("Invalid cloud-config")).map(str::to_string).collect();
                let (marker, error, containers, _) = parse_report(&log);
                report.provisioner = Some(if marker.as_deref() == Some(hosts[r.index].closure.as_str()) {
                    "completed".to_string()
                } else {
                    error.unwrap_or_else(|| "did not complete (no marker, no error line)".into())
                });
                report.marker = marker;
                report.containers = containers;
                if opts.keep || pending.is_empty() {
                    // Running on until every machine has finished: a gateway serves its clients.
                    finished.push((r.index, r.child));
                } else {
                    // Its memory is needed for the next machine.
                    off_and_read(report, &mut r.child, &r.dir);
                }
                continue;
            }
            if let Ok(Some(status)) = r.child.try_wait() {
                let err = std::fs::read_to_string(r.dir.join("qemu.err")).unwrap_or_default();
                match super::crash::crash(status, r.started.elapsed(), &err) {
                    Some(line) if report.crashes.len() < super::crash::RESTARTS => {
                        // Started again from nothing: a new seed, root overlay and data disk.
                        report.crashes.push(line);
                        let _ = std::fs::remove_dir_all(&r.dir);
                        match start(&r.dir, &hosts[r.index], &plan.vms[r.index], plan, opts, &report.ports) {
                            Ok(child) => still.push(Running { index: r.index, child, started: Instant::now(), dir: r.dir }),
                            Err(e) => report.error = Some(e),
                        }
                    }
                    _ => {
                        report.error = Some(format!("qemu exited ({status}) before cloud-init finished: {err}\n{}", console_tail(&serial)))
                    }
                }
                continue;
            }
            if r.started.elapsed() > opts.timeout {
                super::kill(&mut r.child);
                report.error = Some(format!("cloud-init did not finish in {:?}; {}", opts.timeout, console_tail(&serial)));
                continue;
            }
            still.push(r);
        }
        running = still;
        if INTERRUPTED.load(Ordering::SeqCst) {
            all_stop(&mut running, &mut finished);
            return Err("interrupted; the machines were stopped and their work directory removed".into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if !opts.keep {
        for (i, mut child) in finished {
            off_and_read(&mut reports[i], &mut child, &work.join(&hosts[i].name));
        }
        return Ok((reports, kept));
    }
    // With --keep: every machine that finished runs on (its secrets are gone from the seed).
    for (i, child) in finished {
        let dir = work.join(&hosts[i].name);
        reports[i].pid = Some(child.id());
        reports[i].qmp = Some(dir.join("qmp.sock"));
        kept.push(KeptMachine { host: hosts[i].name.clone(), pid: child.id(), qmp: dir.join("qmp.sock") });
        std::mem::forget(child);
    }
    Ok((reports, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A public host's loopback SSH forward reaches the port its sshd listens on (`ssh_port`),
    /// not 22: `kiln boot` of maidan-cloud's hosts (2222) reaches them.
    #[test]
    fn the_ssh_forward_reaches_the_hosts_ssh_port() {
        let dir = tempfile::tempdir().unwrap();
        let toml = "[system]\nname = \"lab\"\n[providers.hetzner]\nkind = \"hetzner\"\n[hosts.edge]\nprovider = \"hetzner\"\nimage = \"debian-12\"\npublic = true\nssh_port = 2222\n";
        std::fs::write(dir.path().join("system.toml"), toml).unwrap();
        let sys = match crate::pipeline::compile(dir.path(), &crate::pipeline::Options::default()) {
            Ok(crate::pipeline::Outcome::Ok(c)) => c.system,
            _ => panic!("the system compiles"),
        };
        assert_eq!(sys.hosts["edge"].ssh_port, 2222);
        let plan = super::super::net::plan(&sys, &["edge".to_string()], 40000).unwrap();
        let ports: BTreeMap<String, u16> = [("ssh", 40022), ("http", 40080), ("https", 40443)].map(|(k, v)| (k.to_string(), v)).into();
        let args =
            nic_args(&plan.vms[0], &plan, Path::new("/seed"), Path::new("/kiln"), &ports, sys.hosts["edge"].ssh_port, None).join(" ");
        assert!(args.contains("hostfwd=tcp:127.0.0.1:40022-:2222,"), "{args}");
        assert!(!args.contains("-:22,"), "{args}");
    }

    #[test]
    fn the_report_part_lines_are_read_back() {
        let log = "[  1.0] noise\nkiln-boot: marker abc\r\nkiln-boot: provisioner-error \n[ 2.0] x kiln-boot: container db running healthy\nkiln-boot: container web exited\nkiln-boot: end\n";
        let (marker, error, containers, end) = parse_report(log);
        assert_eq!(marker.as_deref(), Some("abc"));
        assert_eq!(error, None);
        assert!(end);
        assert_eq!(
            containers,
            vec![
                Container { service: "db".into(), state: "running".into(), health: "healthy".into() },
                Container { service: "web".into(), state: "exited".into(), health: "".into() },
            ]
        );
        let (marker, error, _, end) = parse_report("kiln-boot: marker none\nkiln-boot: provisioner-error kiln: error: no data volume\n");
        assert_eq!((marker, error.as_deref(), end), (None, Some("kiln: error: no data volume"), false));
    }

    #[test]
    fn down_without_state_stops_nothing_and_a_dead_machine_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(down(dir.path(), None).unwrap().is_empty());
        let work = tempfile::Builder::new().prefix("kiln-boot-").tempdir().unwrap().keep();
        let state = State {
            system: "s".into(),
            workdir: work.clone(),
            machines: vec![KeptMachine { host: "h".into(), pid: std::process::id(), qmp: dir.path().join("none.sock") }],
        };
        let file = write_state(&dir.path().join("state"), &state_file(&dir.path().join("state"), "s"), &state).unwrap();
        assert_eq!(std::fs::metadata(dir.path().join("state")).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        // this test process is not a qemu named kiln-boot-h: never signalled
        assert_eq!(down(&dir.path().join("state"), Some("s")).unwrap(), ["s/h: not running"]);
        assert!(!file.exists() && !work.exists());
    }

    /// A host booted alone with `--keep` is recorded beside its system's fleet (neither
    /// overwrites the other), and `--down` of that system stops both; another system's are left.
    #[test]
    fn down_also_stops_a_host_kept_alone() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let work = || tempfile::Builder::new().prefix("kiln-boot-").tempdir().unwrap().keep();
        let (fleet_work, alone_work, other_work) = (work(), work(), work());
        let pid = std::process::id();
        let fleet = State {
            system: "s".into(),
            workdir: fleet_work.clone(),
            machines: vec![KeptMachine { host: "a".into(), pid, qmp: dir.path().join("a.sock") }],
        };
        write_state(&state, &state_file(&state, "s"), &fleet).unwrap();
        let alone = keep_one(&state, "s", "b", &alone_work, pid, &dir.path().join("b.sock")).unwrap();
        assert_eq!(alone, state.join("s+b.json"));
        assert_eq!(std::fs::metadata(&alone).unwrap().permissions().mode() & 0o777, 0o600);
        let other = keep_one(&state, "s-2", "b", &other_work, pid, &dir.path().join("c.sock")).unwrap();
        assert_eq!(down(&state, Some("s")).unwrap(), ["s/b: not running", "s/a: not running"]);
        assert!(!fleet_work.exists() && !alone_work.exists() && !alone.exists());
        assert!(other.exists() && other_work.exists(), "another system's machine stays recorded");
        assert_eq!(down(&state, None).unwrap(), ["s-2/b: not running"]);
        assert!(!other.exists() && !other_work.exists());

        // a record that cannot be read is named, and holds back none of the others
        let fleet_work = work();
        std::fs::write(state.join("s+a.json"), "{not json").unwrap();
        write_state(&state, &state_file(&state, "s"), &State { workdir: fleet_work.clone(), ..fleet }).unwrap();
        let err = down(&state, Some("s")).unwrap_err();
        assert!(err.contains("s+a.json") && err.contains("done before that: s/a: not running"), "{err}");
        assert!(!fleet_work.exists() && !state.join("s.json").exists() && state.join("s+a.json").exists());
    }
}
