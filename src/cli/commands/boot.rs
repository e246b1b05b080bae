//! `kiln boot`: one host's artifacts in a local VM, with its secrets and data disk; or several
//! hosts together on the system's private networks (`--all`, `--hosts`), and `--down`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kiln::diag;
use kiln::pipeline::{Compiled, Options};

pub(crate) use crate::cli::env::boot_state_dir as state_dir;
use crate::cli::env::image_cache;
use crate::cli::ui::{io_error, usage_error};

/// The machine's shape: memory, and the disks attached besides its root.
pub(crate) struct Machine {
    pub(crate) memory: u32,
    pub(crate) data_disk: Option<PathBuf>,
    pub(crate) lab_images: Option<PathBuf>,
    pub(crate) apt_repo: Option<PathBuf>,
    /// Where `--keep` records the machine for `kiln boot --down`.
    pub(crate) state: PathBuf,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn boot(
    c: &Compiled,
    path: &Path,
    opts: &Options,
    host: &str,
    image: Option<PathBuf>,
    keep: bool,
    secrets: Option<PathBuf>,
    timeout: u64,
    machine: Machine,
    json: bool,
) -> ExitCode {
    let Machine { memory, data_disk, lab_images, apt_repo, state } = machine;
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
    let values = match host_secrets(c, path, opts, host, secrets.as_deref()) {
        Ok(v) => v,
        Err(e) => return io_error(&e),
    };
    let Some(user_data) = kiln::boot::user_data(&c.system, host, ha) else { return io_error("the host has no user-data") };
    let down = down_command(&opts.module_dirs, &state, path);
    let opts = kiln::boot::BootOptions {
        image_dir,
        keep,
        memory_mb: memory,
        timeout: std::time::Duration::from_secs(timeout),
        kiln_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("kiln")),
        secrets: values,
        data_disk,
        lab_images,
        apt_repo,
        ssh_port: c.system.hosts[host].ssh_port,
        cpus: kiln::boot::vcpus(&c.system, &c.system.hosts[host]),
    };
    if !json {
        eprintln!("booting `{host}` (closure {}) under qemu; this takes a minute or two", &ha.closure[..16]);
        if ha.stage0 {
            eprintln!(
                "its user-data is the stage-0 loader: booting the full user-data of the same payload (the VM cannot reach the store)"
            );
        }
    }
    match kiln::boot::boot(host, &ha.closure, &user_data, &opts) {
        Err(e) => io_error(&e),
        Ok(mut r) => {
            // A machine left running is recorded, so that `kiln boot --down` stops it as it
            // stops a kept fleet.
            let mut unrecorded = None;
            if let (Some(pid), Some(qmp), Some(work)) = (r.pid, r.qmp.as_ref(), r.workdir.as_ref()) {
                match kiln::boot::keep_one(&state, &c.system.name, host, work, pid, qmp) {
                    Ok(file) => r.state = Some(file),
                    Err(e) => unrecorded = Some(e),
                }
            }
            let clean = r.datasource.as_deref().is_some_and(|d| d.starts_with("DataSourceNoCloud"))
                && r.warnings.is_empty()
                && r.result_errors.as_ref().is_none_or(|e| e.is_empty())
                && (keep || r.marker.as_deref() == Some(ha.closure.as_str()));
            if json {
                println!("{}", serde_json::to_string_pretty(&r).expect("serialises"));
            } else {
                for c in &r.crashes {
                    eprintln!("note: {c}");
                }
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
                if let Some(s) = &r.state {
                    println!("kept running; stop with: {down} (state: {})", s.display());
                }
            }
            if let Some(e) = unrecorded {
                eprintln!("warning: the machine runs on but is not recorded for `kiln boot --down`: {e}");
            }
            if clean { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
    }
}

/// The secret values to deliver to `host`: decrypted with `--identity`, or read from a
/// directory with one file per secret (`--secrets`).
fn host_secrets(c: &Compiled, path: &Path, opts: &Options, host: &str, dir: Option<&Path>) -> Result<BTreeMap<String, Vec<u8>>, String> {
    secret_values(c, path, opts, &c.system.host_secrets(&c.system.hosts[host]), dir)
}

/// The values of the secrets `wanted`, as [`host_secrets`] reads them.
fn secret_values(
    c: &Compiled,
    path: &Path,
    opts: &Options,
    wanted: &std::collections::BTreeSet<String>,
    dir: Option<&Path>,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut values = BTreeMap::new();
    if let (None, Some(text)) = (dir, &opts.identity) {
        let ids = kiln::sops::load_identities(text).map_err(|e| format!("identity: {e}"))?;
        let root = kiln::load::system_root(path).map(|(r, _)| r).unwrap_or_default();
        values = kiln::secrets::values(&root, &c.system, wanted, &ids)?;
    }
    if let Some(dir) = dir {
        for name in wanted {
            let v = std::fs::read(dir.join(name)).map_err(|e| format!("secret `{name}`: {}: {e}", dir.join(name).display()))?;
            values.insert(name.clone(), v);
        }
    }
    Ok(values)
}

/// What `--all`/`--hosts` boots, and how.
pub(crate) struct Fleet {
    pub(crate) hosts: Vec<String>,
    pub(crate) image: Option<PathBuf>,
    pub(crate) keep: bool,
    pub(crate) secrets: Option<PathBuf>,
    pub(crate) timeout: u64,
    pub(crate) memory: u32,
    pub(crate) state: PathBuf,
    pub(crate) apt_repo: Option<PathBuf>,
    /// A directory of stand-in image archives, `HOST.tar` for each host that gets one.
    pub(crate) lab_images: Option<PathBuf>,
}

/// `kiln boot --all PATH` / `--hosts A,B PATH`.
pub(crate) fn fleet(c: &Compiled, path: &Path, opts: &Options, f: Fleet, json: bool) -> ExitCode {
    let mut names: Vec<String> = Vec::new();
    for h in &f.hosts {
        if !c.hosts.contains_key(h) {
            let hint =
                diag::did_you_mean(h, c.hosts.keys().map(String::as_str)).map(|m| format!(" (did you mean `{m}`?)")).unwrap_or_default();
            return io_error(&format!("no host `{h}` in system `{}`{hint}", c.system.name));
        }
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    if names.is_empty() {
        return usage_error("no host to boot");
    }
    if let Some(d) = f.lab_images.as_ref().filter(|d| !d.is_dir()) {
        return usage_error(&format!("--lab-images {} with --all/--hosts names a directory of HOST.tar archives", d.display()));
    }
    let mut hosts = Vec::new();
    for name in &names {
        let host = &c.system.hosts[name];
        let secrets = match host_secrets(c, path, opts, name, f.secrets.as_deref()) {
            Ok(v) => v,
            Err(e) => return io_error(&e),
        };
        let Some(user_data) = kiln::boot::user_data(&c.system, name, &c.hosts[name]) else {
            return io_error(&format!("host `{name}` has no user-data"));
        };
        hosts.push(kiln::boot::FleetHost {
            name: name.clone(),
            closure: c.hosts[name].closure.clone(),
            user_data,
            // --image names one directory for every host; without it, each host's own image.
            image_dir: f.image.clone().unwrap_or_else(|| image_cache().join(&host.image.name)),
            secrets,
            volume: kiln::render::data_volume::has_volume(&c.system, host),
            ssh_port: host.ssh_port,
            cpus: kiln::boot::vcpus(&c.system, host),
            lab_images: f.lab_images.as_ref().map(|d| d.join(format!("{name}.tar"))).filter(|p| p.is_file()),
            memory_mb: None,
        });
    }
    let networks = c.system.networks.len();
    let plan = match kiln::boot::lan_port(networks).and_then(|port| kiln::boot::net::plan(&c.system, &names, port)) {
        Ok(p) => p,
        Err(e) => return io_error(&e),
    };
    // The managed databases' stand-ins boot first (`plan.vms` starts with them).
    let mut stand_ins = Vec::new();
    for s in &plan.databases {
        let db = c.system.databases.iter().find(|d| d.name == s.database).expect("planned from the system");
        let secrets = match secret_values(c, path, opts, &kiln::boot::stand_in::secrets(db), f.secrets.as_deref()) {
            Ok(v) => v,
            Err(e) => return io_error(&format!("the stand-in for database `{}`: {e}", db.name)),
        };
        let (user_data, closure) = kiln::boot::stand_in::user_data(s, db, plan.uplink.dns());
        stand_ins.push(kiln::boot::FleetHost {
            name: s.machine.clone(),
            closure,
            user_data,
            image_dir: f.image.clone().unwrap_or_else(|| image_cache().join(kiln::boot::stand_in::IMAGE)),
            secrets,
            volume: false,
            ssh_port: 22,
            cpus: 1,
            lab_images: None,
            memory_mb: Some(kiln::boot::stand_in::MEMORY_MIB),
        });
    }
    stand_ins.append(&mut hosts);
    let hosts = stand_ins;
    let down = down_command(&opts.module_dirs, &f.state, path);
    let fopts = kiln::boot::FleetOptions {
        system: c.system.name.clone(),
        keep: f.keep,
        memory_mb: f.memory,
        timeout: std::time::Duration::from_secs(f.timeout),
        kiln_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("kiln")),
        state_dir: f.state,
        apt_repo: f.apt_repo,
    };
    if !json {
        eprintln!("booting {} under qemu ({} MiB each); this takes a few minutes", names.join(", "), f.memory);
        for n in &plan.notes {
            eprintln!("note: {n}");
        }
        for vm in &plan.vms {
            if let Some(s) = &vm.stand_in {
                eprintln!("note: `{}` stands in for the {s}", vm.host);
            }
            for n in &vm.notes {
                eprintln!("note: `{}`: {n}", vm.host);
            }
        }
    }
    let report = match kiln::boot::boot_fleet(&hosts, &plan, &fopts) {
        Ok(r) => r,
        Err(e) => return io_error(&e),
    };
    let clean = report.hosts.iter().all(|h| h.clean());
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("serialises"));
    } else {
        print!("{}", fleet_text(&report, &down));
    }
    if clean { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// The fleet report as text, one block per host.
fn fleet_text(r: &kiln::boot::FleetReport, down: &str) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    for h in &r.hosts {
        let _ = writeln!(o, "{}:", h.host);
        if let Some(s) = &h.network.stand_in {
            let _ = writeln!(o, "  stands in for the {s}");
        }
        for c in &h.crashes {
            let _ = writeln!(o, "  note: {c}");
        }
        if let Some(e) = &h.error {
            let _ = writeln!(o, "  error: {e}");
            continue;
        }
        let errors = match &h.result_errors {
            Some(e) if e.is_empty() => ", no errors".to_string(),
            Some(e) => format!(", {} errors: {}", e.len(), serde_json::Value::from(e.clone())),
            None => String::new(),
        };
        let _ = writeln!(
            o,
            "  cloud-init:  finished after {:.0} s ({}), {} warnings{errors}",
            h.boot_seconds.unwrap_or(0.0),
            h.datasource.as_deref().unwrap_or("no datasource"),
            h.warnings.len()
        );
        for w in &h.warnings {
            let _ = writeln!(o, "    warning: {w}");
        }
        let _ = writeln!(o, "  provisioner: {}", h.provisioner.as_deref().unwrap_or("unknown"));
        let marker = match h.marker.as_deref() {
            Some(m) if m == h.closure => "= closure".to_string(),
            Some(m) => format!("{m} (not the closure {})", h.closure),
            None => "none".to_string(),
        };
        let _ = writeln!(o, "  marker:      {marker}");
        if h.containers.is_empty() {
            let _ = writeln!(o, "  containers:  none");
        }
        for ct in &h.containers {
            let health = if ct.health.is_empty() { String::new() } else { format!(" ({})", ct.health) };
            let _ = writeln!(o, "  container:   {} {}{health}", ct.service, ct.state);
        }
        for nic in &h.network.nics {
            let what = match &nic.role {
                kiln::boot::net::Role::Uplink => "uplink (NAT by qemu)".to_string(),
                kiln::boot::net::Role::Seed => "seed link only".to_string(),
                kiln::boot::net::Role::Lan { network } => format!("network `{network}`"),
            };
            let addrs = if nic.addresses.is_empty() { "DHCP".to_string() } else { nic.addresses.join(", ") };
            let router = nic.router_stand_in.map(|a| format!(" ({a} stands in for the provider's router)")).unwrap_or_default();
            let _ = writeln!(o, "  {:<12} {what}: {addrs}, {}{router}", format!("{}:", nic.name), nic.mac);
        }
        // How to reach a machine that runs on.
        if let (Some(pid), Some(q)) = (h.pid, &h.qmp) {
            for (name, port) in &h.ports {
                let _ = writeln!(o, "  {:<12} 127.0.0.1:{port}", format!("{name}:"));
            }
            let _ = writeln!(o, "  running:     pid {pid}, QMP {}", q.display());
        }
    }
    if let Some(s) = &r.state {
        let _ = writeln!(o, "kept running; stop with: {down} (state: {})", s.display());
    }
    o
}

/// The command that stops a machine kept for the system at `path`, as the shell reads it: with
/// the `--modules` the system compiled with (`--down PATH` compiles it for its name) and the
/// `--state` directory when it is not the default.
fn down_command(module_dirs: &[PathBuf], state: &Path, path: &Path) -> String {
    let mut words = vec!["kiln".to_string()];
    for d in module_dirs {
        words.extend(["--modules".to_string(), d.display().to_string()]);
    }
    words.extend(["boot".to_string(), "--down".to_string()]);
    if state != state_dir() {
        words.extend(["--state".to_string(), state.display().to_string()]);
    }
    words.push(path.display().to_string());
    kiln::render::quote::sh_words(&words)
}

/// `kiln boot --down [PATH]`.
pub(crate) fn down(state: &Path, system: Option<&str>, json: bool) -> ExitCode {
    match kiln::boot::down(state, system) {
        Err(e) => io_error(&e),
        Ok(lines) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&lines).expect("serialises"));
            } else if lines.is_empty() {
                eprintln!("no kept machines recorded in {}", state.display());
            } else {
                for l in lines {
                    println!("{l}");
                }
            }
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hint a kept machine prints runs as it reads: `--down PATH` compiles the system, so it
    /// needs the boot's `--modules`; a `--state` away from the default is named; a path the shell
    /// would split or expand is quoted.
    #[test]
    fn the_down_hint_carries_the_modules_and_state_the_boot_had() {
        let path = Path::new("/srv/my system");
        assert_eq!(down_command(&[], &state_dir(), path), "kiln boot --down '/srv/my system'");
        let modules = [PathBuf::from("mods"), PathBuf::from("more mods")];
        assert_eq!(
            down_command(&modules, Path::new("/tmp/st$x"), path),
            "kiln --modules mods --modules 'more mods' boot --down --state '/tmp/st$x' '/srv/my system'"
        );
    }
}
