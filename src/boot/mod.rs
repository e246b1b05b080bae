//! `kiln boot`: one host's artifacts booted for real in qemu (TCG, or KVM where it works), seeded over NoCloud-net
//! through slirp's guestfwd (served by `kiln seed-serve`), with SSH and the edge's ports
//! forwarded to loopback; waits for cloud-init, reports what it saw, powers off unless kept.
//!
//! Secrets: the work directory is private (0700, files 0600); the seed's user-data, the one
//! file that holds secret values, is served once and then deleted (and deleted in any case
//! once cloud-init has finished or the boot failed). Without `--keep` the work directory is
//! removed on every way out, Ctrl-C included; with `--keep` it stays for the running machine,
//! holding nothing secret but the machine's own disk.
//!
//! `--data-disk FILE` attaches a second disk that is the caller's, not the work directory's:
//! it stands for a host's provider volume (a virtio disk with the serial
//! [`DATA_DISK_SERIAL`], which the provisioner accepts besides the providers' stable names),
//! is created empty when missing, and outlives the machine, so that a fresh machine booted
//! with it finds the data the last one left.
//!
//! `--lab-images FILE` (lab plumbing, docs/lab.md) attaches a `docker load` archive of
//! stand-in images read-only as a disk with the serial [`LAB_IMAGES_SERIAL`]; the lab's
//! debian-13 image loads it into Docker before the provisioner runs, so that `docker compose
//! up` finds every image it pins without a registry.
//!
//! A host whose user-data is the stage-0 loader (its payload is over the provider's limit and
//! fetched from the store by hash) boots with its full user-data instead ([`user_data`]):
//! the same payload, provisioner and closure; NoCloud has no size limit, and the VM cannot
//! reach the store.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

pub mod accel;
mod crash;
mod fleet;
pub mod net;
mod seed;
pub mod stand_in;

pub use fleet::{Container, FleetHost, FleetOptions, FleetReport, HostReport, boot_fleet, down, keep_one, lan_port};
pub use seed::{repo_serve, seed_serve};

/// The guest-side address of the seed server (slirp's guestfwd).
const SEED_ADDR: &str = "10.0.2.100";

/// The serial of the `--data-disk` disk: udev names a virtio disk `/dev/disk/by-id/virtio-<serial>`,
/// one of the names `render::data_volume` looks for.
pub const DATA_DISK_SERIAL: &str = "kiln-data";
/// The size of a data disk `kiln boot` creates (a sparse qcow2).
pub const DATA_DISK_SIZE: &str = "1G";
/// The serial of the `--lab-images` disk, which the lab image's kiln-lab-images.service
/// looks for (scripts/build-test-image).
pub const LAB_IMAGES_SERIAL: &str = "kiln-lab-images";

/// The user-data a local boot delivers: the host's own, or for a stage-0 host the full
/// user-data of the same payload (everything but the bundle and the loader), which cloud-init
/// reads from the seed as the provider would the loader.
pub fn user_data(sys: &crate::model::System, host: &str, artifacts: &crate::render::HostArtifacts) -> Option<Vec<u8>> {
    if artifacts.stage0 {
        let payload: Vec<crate::render::Artifact> =
            artifacts.artifacts.iter().filter(|a| a.path != "user-data" && a.path != "bundle.tar.gz").cloned().collect();
        return Some(
            crate::render::cloud_init::emit(sys, sys.hosts.get(host)?, &payload, crate::render::cloud_init::Files::Text).into_bytes(),
        );
    }
    artifacts.artifacts.iter().find(|a| a.path == "user-data").map(|a| a.bytes.clone())
}

pub struct BootOptions {
    /// Directory with `base.raw`, `vmlinuz`, `initrd.img` (scripts/build-test-image).
    pub image_dir: PathBuf,
    pub keep: bool,
    pub memory_mb: u32,
    pub timeout: Duration,
    /// The kiln binary, run by qemu to serve the seed.
    pub kiln_exe: PathBuf,
    /// Secret values to deliver (file name = secret name), never through the store.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// A second disk standing for the host's data volume (created when missing, never removed).
    pub data_disk: Option<PathBuf>,
    /// Lab plumbing: a `docker load` archive attached read-only (see [`LAB_IMAGES_SERIAL`]).
    pub lab_images: Option<PathBuf>,
    /// Lab plumbing: a flat apt repository served as the machine's only apt source
    /// ([`seed::apt_part`]).
    pub apt_repo: Option<PathBuf>,
    /// The port the host's sshd listens on (`ssh_port`), which the loopback SSH forward reaches.
    pub ssh_port: u16,
    /// Virtual CPUs ([`vcpus`]).
    pub cpus: u32,
}

/// The virtual CPUs a host's machine gets: two, or as many as its largest container CPU limit
/// needs (Docker refuses to create a container whose `cpus` is above the machine's count: "Range
/// of CPUs is from 0.01 to 2.00", seen on maidan-cloud's Ollama, limited to 4 on a 16-vCPU
/// server type). Under TCG more vCPUs than cores is slower, not wrong.
pub fn vcpus(sys: &crate::model::System, host: &crate::model::Host) -> u32 {
    let most = host.services.iter().filter_map(|s| sys.services.get(s)?.resources.cpus).fold(0.0_f64, f64::max);
    // a limit is at most a few hundred cores (types::parse_cpus), so the cast cannot wrap
    (most.ceil() as u32).max(2)
}

#[derive(Serialize, Debug)]
pub struct BootReport {
    pub host: String,
    pub closure: String,
    pub boot_seconds: f64,
    /// Loopback ports: `ssh`, `http`, `https`.
    pub ports: BTreeMap<&'static str, u16>,
    pub datasource: Option<String>,
    /// Lines of the serial console with `WARNING` or `Invalid cloud-config`.
    pub warnings: Vec<String>,
    /// From /var/lib/cloud/data/result.json and /var/lib/kiln/closure on the disk after
    /// power-off (not read when the machine is kept running).
    pub result_errors: Option<Vec<serde_json::Value>>,
    pub marker: Option<String>,
    /// With `--keep`: the machine's work directory (its disk, console log and QMP socket).
    /// Without, it is gone by the time the report is printed.
    pub workdir: Option<PathBuf>,
    /// With `--keep`: the qemu process and its QMP socket.
    pub pid: Option<u32>,
    pub qmp: Option<PathBuf>,
    /// With `--keep`: the file recording the machine for `kiln boot --down`
    /// ([`keep_one`]; written by the command line, which knows where).
    pub state: Option<PathBuf>,
    /// The data disk attached as the host's volume, and whether this boot created it.
    pub data_disk: Option<PathBuf>,
    pub data_disk_created: bool,
    /// Each time qemu crashed before cloud-init finished and the machine was started again
    /// from a fresh disk ([`crash`]).
    pub crashes: Vec<String>,
}

pub(crate) use crate::interrupt::{INTERRUPTED, catch as catch_interrupts};

/// A fresh work directory only its owner can enter.
pub(crate) fn private_dir() -> Result<tempfile::TempDir, String> {
    let dir = tempfile::Builder::new()
        .prefix("kiln-boot-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .map_err(|e| format!("cannot create a work directory: {e}"))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// Writes a file only its owner can read (created so, never widened afterwards).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// A machine's root disk: a qcow2 overlay over the image's `base.raw`, private from the start
/// (qemu-img keeps the mode of the file it writes over), since the guest writes its secrets there.
pub(crate) fn create_overlay(image_dir: &Path, overlay: &Path) -> Result<(), String> {
    write_private(overlay, b"")?;
    run(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"]).arg(image_dir.join("base.raw")).arg(overlay))?;
    std::fs::set_permissions(overlay, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())
}

/// The last lines of the serial console, for an error message (the log goes with the work
/// directory).
pub(crate) fn console_tail(serial: &Path) -> String {
    let log = std::fs::read_to_string(serial).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    if tail.is_empty() { "the serial console is empty".into() } else { format!("the serial console ended with:\n{tail}") }
}

pub(crate) fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| format!("no free port: {e}"))
}

pub(crate) fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!("{:?} failed: {}", cmd.get_program(), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn qmp(sock: &Path, command: &str) -> Result<(), String> {
    let mut s = std::os::unix::net::UnixStream::connect(sock).map_err(|e| format!("QMP: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut r = std::io::BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| format!("QMP greeting: {e}"))?;
    for cmd in ["qmp_capabilities", command] {
        writeln!(s, "{{\"execute\": \"{cmd}\"}}").map_err(|e| format!("QMP: {e}"))?;
        line.clear();
        r.read_line(&mut line).map_err(|e| format!("QMP {cmd}: {e}"))?;
    }
    Ok(())
}

/// Powers a kept machine off (QMP `system_powerdown`), as a user would after `--keep`.
pub fn power_off(sock: &Path) -> Result<(), String> {
    qmp(sock, "system_powerdown")
}

pub(crate) fn stop(child: &mut Child, sock: &Path) {
    if qmp(sock, "system_powerdown").is_ok() {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(90) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads files out of the guest's ext4 root after power-off, without mounting it (the
/// journal is replayed first, in case the machine did not stop cleanly).
pub fn read_from_disk(work: &Path, overlay: &Path, paths: &[&str]) -> Result<Vec<String>, String> {
    let raw = work.join("disk.raw");
    // The machine's disk holds its secrets: private like the overlay it comes from.
    let _ = std::fs::remove_file(&raw);
    write_private(&raw, b"")?;
    run(Command::new("qemu-img").args(["convert", "-O", "raw"]).arg(overlay).arg(&raw))?;
    let _ = Command::new("e2fsck").args(["-E", "journal_only", "-y"]).arg(&raw).stdout(Stdio::null()).stderr(Stdio::null()).status();
    let out =
        paths.iter().map(|p| run(Command::new("debugfs").arg("-R").arg(format!("cat {p}")).arg(&raw).stderr(Stdio::null()))).collect();
    let _ = std::fs::remove_file(&raw);
    out
}

/// The arguments qemu's guestfwd gives `kiln` to serve the lab's apt repository `dir`: a
/// directory with a `Packages` index (scripts/lab-apt-repo), by its absolute path, quoted for
/// the shell-like splitting slirp applies; qemu's option syntax takes no comma.
pub(crate) fn repo_serve_cmd(dir: &Path) -> Result<String, String> {
    let abs = std::fs::canonicalize(dir).map_err(|e| format!("--apt-repo {}: {e}", dir.display()))?;
    if !abs.join("Packages").is_file() {
        return Err(format!("--apt-repo {}: no Packages index (make the repository with scripts/lab-apt-repo)", dir.display()));
    }
    let text = abs
        .to_str()
        .filter(|t| !t.contains(','))
        .ok_or_else(|| format!("--apt-repo {}: qemu cannot take a path with a comma or that is not UTF-8", dir.display()))?;
    Ok(format!("repo-serve {}", crate::render::quote::sh(text)))
}

pub fn boot(host: &str, closure: &str, user_data: &[u8], opts: &BootOptions) -> Result<BootReport, String> {
    for f in ["base.raw", "vmlinuz", "initrd.img"] {
        if !opts.image_dir.join(f).is_file() {
            return Err(format!("no {f} in {} (build the base image with scripts/build-test-image)", opts.image_dir.display()));
        }
    }
    // Before anything else: a file that is not a disk for kiln is refused untouched.
    let data = opts.data_disk.as_deref().map(data_disk).transpose()?;
    if let Some(images) = opts.lab_images.as_ref().filter(|i| !i.is_file() || i.to_string_lossy().contains(',')) {
        return Err(format!("{}: no such file (or a path with a comma, which qemu cannot take)", images.display()));
    }
    let apt = opts.apt_repo.as_deref().map(repo_serve_cmd).transpose()?;
    catch_interrupts();
    // Dropped (removed) on every return below unless the machine is kept running.
    let work = private_dir()?;
    let result = run_machine(work.path(), host, closure, user_data, data, apt.as_deref(), opts);
    // The seed's user-data holds the secrets: they never outlive the boot, kept or not.
    seed::forget_secrets(&work.path().join("seed"));
    let mut report = result?;
    if opts.keep {
        report.workdir = Some(work.keep());
    }
    Ok(report)
}

/// The data disk's format, creating it (an empty qcow2 of [`DATA_DISK_SIZE`], private) when
/// missing; returns whether it was created. Its format is named to qemu, never probed.
/// The provisioner formats a disk without a filesystem, and qemu takes any file as a raw
/// disk: an existing file is used only when it is a qcow2 image or already holds the
/// `kiln-data` filesystem, so that a mistyped path never formats a file of the caller's.
pub(crate) fn data_disk(path: &Path) -> Result<(String, bool), String> {
    if path.to_string_lossy().contains(',') {
        return Err(format!("{}: paths with commas cannot be passed to qemu", path.display()));
    }
    let created = !path.exists();
    if created {
        write_private(path, b"")?;
        run(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(path).arg(DATA_DISK_SIZE)).inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })?;
    }
    let info = run(Command::new("qemu-img").args(["info", "--output=json", "-U"]).arg(path))?;
    let info: serde_json::Value = serde_json::from_str(&info).map_err(|e| format!("qemu-img info {}: {e}", path.display()))?;
    match info["format"].as_str() {
        Some("qcow2") => Ok(("qcow2".to_string(), created)),
        Some("raw") if labelled(path) => Ok(("raw".to_string(), created)),
        other => Err(format!(
            "{}: not a data disk (a {} file without the {} filesystem); kiln boot creates one when the file is missing",
            path.display(),
            other.unwrap_or("unknown"),
            crate::render::data_volume::LABEL
        )),
    }
}

/// Whether a raw image holds the data volume's filesystem (`render::data_volume::LABEL`).
fn labelled(path: &Path) -> bool {
    run(Command::new("blkid").args(["-p", "-o", "value", "-s", "LABEL"]).arg(path))
        .is_ok_and(|l| l.trim() == crate::render::data_volume::LABEL)
}

/// The NoCloud datasource's name in the SMBIOS serial: cloud-init 22.4 (Debian 12) fetches an
/// HTTP seed only as `nocloud-net`, which 24.1 and later deprecate (a warning in `cloud-init
/// status`) for `nocloud`. The image says which cloud-init it carries (scripts/build-test-image
/// writes `cloud-init.version`); without that file, the older name.
pub(crate) fn nocloud_name(image_dir: &Path) -> &'static str {
    let version = std::fs::read_to_string(image_dir.join("cloud-init.version")).unwrap_or_default();
    let mut parts = version.trim().split(['.', '-', '~', '+']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) >= (24, 1) { "nocloud" } else { "nocloud-net" }
}

/// The qemu command line every machine shares: the accelerator ([`accel::for_image`]: KVM
/// where a probe boots under it, else TCG), memory, the image's kernel and initrd
/// (with `append` added to the kernel command line), the root overlay.
pub(crate) fn qemu_command(host: &str, cpus: u32, memory_mb: u32, image_dir: &Path, append: Option<&str>, overlay: &Path) -> Command {
    let mut qemu = Command::new("qemu-system-x86_64");
    // no_timer_check: on a loaded host TCG is too slow for the kernel's IO-APIC timer check,
    // which then panics ("IO-APIC + timer doesn't work").
    let mut cmdline = "root=LABEL=kiln-root ro console=ttyS0 no_timer_check".to_string();
    if let Some(extra) = append {
        cmdline.push(' ');
        cmdline.push_str(extra);
    }
    qemu.args(["-name", &format!("kiln-boot-{host}")])
        .args(accel::for_image(image_dir).qemu_args())
        .args(["-smp", &cpus.to_string()])
        .args(["-m", &memory_mb.to_string(), "-nodefaults", "-no-user-config", "-display", "none"])
        .arg("-kernel")
        .arg(image_dir.join("vmlinuz"))
        .arg("-initrd")
        .arg(image_dir.join("initrd.img"))
        .args(["-append", &cmdline])
        .arg("-drive")
        .arg(format!("file={},format=qcow2,if=virtio", overlay.display()));
    qemu
}

/// Starts `qemu` with a random-number device, its serial console in `serial`, its QMP socket
/// at `sock` and its errors in `err`, in a process group of its own (a Ctrl-C reaches kiln,
/// which then stops the machine itself).
pub(crate) fn spawn_qemu(mut qemu: Command, serial: &Path, sock: &Path, err: &Path) -> Result<Child, String> {
    qemu.args(["-device", "virtio-rng-pci"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().append(true).open(err).map_err(|e| e.to_string())?)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))
}

/// Boots the machine with its files in `work` and waits for cloud-init.
fn run_machine(
    work: &Path,
    host: &str,
    closure: &str,
    user_data: &[u8],
    data: Option<(String, bool)>,
    apt: Option<&str>,
    opts: &BootOptions,
) -> Result<BootReport, String> {
    if work.to_string_lossy().contains(',') || opts.kiln_exe.to_string_lossy().contains(',') {
        return Err("paths with commas cannot be passed to qemu".into());
    }
    let seed = work.join("seed");
    std::fs::DirBuilder::new().mode(0o700).create(&seed).map_err(|e| e.to_string())?;
    let lab: Vec<(&str, String)> =
        apt.iter().map(|_| ("kiln-boot-apt.cfg", seed::apt_part(&format!("http://{SEED_ADDR}:{}/", seed::APT_PORT)))).collect();
    write_private(&seed.join("meta-data"), format!("instance-id: kiln-{}\nlocal-hostname: {host}\n", &closure[..16]).as_bytes())?;
    // Empty but present: otherwise cloud-init retries it ten times.
    write_private(&seed.join("vendor-data"), b"")?;
    let overlay = work.join("overlay.qcow2");
    let mut ports = BTreeMap::new();
    ports.insert("ssh", free_port()?);
    ports.insert("http", free_port()?);
    ports.insert("https", free_port()?);
    let serial = work.join("serial.log");
    let sock = work.join("qmp.sock");
    let qemu_err = work.join("qemu.err");
    let mut nic = format!(
        "user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:{}-:{},hostfwd=tcp:127.0.0.1:{}-:80,hostfwd=tcp:127.0.0.1:{}-:443,guestfwd=tcp:{SEED_ADDR}:80-cmd:{} seed-serve {}",
        ports["ssh"],
        opts.ssh_port,
        ports["http"],
        ports["https"],
        opts.kiln_exe.display(),
        seed.display()
    );
    if let Some(cmd) = apt {
        nic.push_str(&format!(",guestfwd=tcp:{SEED_ADDR}:{}-cmd:{} {cmd}", seed::APT_PORT, opts.kiln_exe.display()));
    }
    // A fresh root overlay, empty logs, the user-data with the secrets (a machine that crashed
    // after cloud-init fetched it boots anew) and a started qemu: once, and again after a crash.
    let start = || -> Result<Child, String> {
        seed::forget_secrets(&seed);
        for old in [&overlay, &serial, &qemu_err, &sock, &seed.join("user-data")] {
            let _ = std::fs::remove_file(old);
        }
        seed::write_user_data(&seed, user_data, &opts.secrets, &lab, write_private)?;
        create_overlay(&opts.image_dir, &overlay)?;
        write_private(&serial, b"")?;
        write_private(&qemu_err, b"")?;
        let mut qemu = qemu_command(host, opts.cpus, opts.memory_mb, &opts.image_dir, None, &overlay);
        if let (Some(path), Some((format, _))) = (&opts.data_disk, &data) {
            // After the root disk (vda); qemu locks the image, so a disk another machine uses is
            // refused, not shared.
            qemu.arg("-drive")
                .arg(format!("file={},format={format},if=none,id=kiln-data,discard=unmap", path.display()))
                .args(["-device", &format!("virtio-blk-pci,drive=kiln-data,serial={DATA_DISK_SERIAL}")]);
        }
        if let Some(images) = &opts.lab_images {
            qemu.arg("-drive")
                .arg(format!("file={},format=raw,if=none,id=kiln-lab-images,readonly=on", images.display()))
                .args(["-device", &format!("virtio-blk-pci,drive=kiln-lab-images,serial={LAB_IMAGES_SERIAL}")]);
        }
        qemu.args(["-nic", &nic]).args(["-smbios", &format!("type=1,serial=ds={};s=http://{SEED_ADDR}/", nocloud_name(&opts.image_dir))]);
        spawn_qemu(qemu, &serial, &sock, &qemu_err)
    };
    let mut child = start()?;
    let mut started = Instant::now();
    let mut crashes = Vec::new();
    let finished = loop {
        let log = std::fs::read_to_string(&serial).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("Cloud-init v.") && l.contains(" finished at ")) {
            break line.to_string();
        }
        if let Ok(Some(status)) = child.try_wait() {
            let err = std::fs::read_to_string(&qemu_err).unwrap_or_default();
            match crash::crash(status, started.elapsed(), &err) {
                Some(line) if crashes.len() < crash::RESTARTS => {
                    crashes.push(line);
                    child = start()?;
                    started = Instant::now();
                    continue;
                }
                _ => return Err(format!("qemu exited ({status}) before cloud-init finished: {err}\n{}", console_tail(&serial))),
            }
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            kill(&mut child);
            return Err("interrupted; the machine was stopped and its work directory removed".into());
        }
        if started.elapsed() > opts.timeout {
            kill(&mut child);
            return Err(format!("cloud-init did not finish in {:?}; {}", opts.timeout, console_tail(&serial)));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    // cloud-init has read its seed: the secrets leave the host's disk now, also with --keep.
    seed::forget_secrets(&seed);
    let boot_seconds = started.elapsed().as_secs_f64();
    let log = std::fs::read_to_string(&serial).unwrap_or_default();
    let warnings = log.lines().filter(|l| l.contains("WARNING") || l.contains("Invalid cloud-config")).map(str::to_string).collect();
    let datasource = finished.split("Datasource ").nth(1).map(|s| s.split_whitespace().next().unwrap_or("").to_string());
    let mut report = BootReport {
        host: host.to_string(),
        closure: closure.to_string(),
        boot_seconds,
        ports,
        datasource,
        warnings,
        result_errors: None,
        marker: None,
        workdir: None,
        pid: None,
        qmp: None,
        state: None,
        data_disk: opts.data_disk.clone(),
        data_disk_created: data.is_some_and(|(_, created)| created),
        crashes,
    };
    if opts.keep {
        report.pid = Some(child.id());
        report.qmp = Some(sock);
        std::mem::forget(child);
        return Ok(report);
    }
    stop(&mut child, &sock);
    if let Ok(files) = read_from_disk(work, &overlay, &["/var/lib/cloud/data/result.json", crate::render::MARKER]) {
        let result: serde_json::Value = serde_json::from_str(&files[0]).unwrap_or(serde_json::Value::Null);
        report.result_errors = result["v1"]["errors"].as_array().cloned();
        report.marker = Some(files[1].trim().to_string()).filter(|m| !m.is_empty());
    }
    Ok(report)
}

pub(crate) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_datasource_is_named_for_the_image_cloud_init() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(nocloud_name(dir.path()), "nocloud-net", "an image without the file");
        for (version, name) in
            [("22.4.2-1+deb12u3", "nocloud-net"), ("25.1.4-1", "nocloud"), ("24.1-0ubuntu1", "nocloud"), ("23.4.4", "nocloud-net")]
        {
            std::fs::write(dir.path().join("cloud-init.version"), format!("{version}\n")).unwrap();
            assert_eq!(nocloud_name(dir.path()), name, "{version}");
        }
    }

    #[test]
    fn work_files_are_private_and_removed_on_drop() {
        let dir = private_dir().unwrap();
        assert_eq!(std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777, 0o700);
        let f = dir.path().join("user-data");
        write_private(&f, b"secret").unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(write_private(&f, b"again").is_err(), "an existing file is never reused");
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists(), "dropping the work directory removes it");
    }
}
