//! The accelerator a local VM runs under, chosen by booting: KVM only where a probe kernel
//! actually boots under it, TCG otherwise. `/dev/kvm` being there proves nothing: in a nested
//! guest qemu may abort on the first MSR it cannot set, or the guest may hang without a word
//! on its console; both have been seen on the machines the lab runs on.
//!
//! The probe boots the image's own kernel and initrd with `rdinit=/bin/false panic=-1`: the
//! kernel comes up, init exits at once, the kernel panics and (with `-no-reboot`) qemu exits.
//! KVM is chosen only when that panic reaches the serial console within [`PROBE_TIMEOUT`].
//! The verdict is memoised for the process and, when the command line gives a cache directory,
//! on disk under a key of the qemu version, the kernel's bytes and the CPU, so that only the
//! first boot on a machine pays for the probe (at most [`PROBE_TIMEOUT`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long the probe may take. A kernel under KVM reaches its init in well under a second;
/// one under a hanging KVM prints nothing at all.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// What the probe kernel prints once it has booted far enough to run (and lose) its init.
const BOOTED: &str = "Attempted to kill init";

/// A VM's accelerator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation, shown to work by the probe.
    Kvm,
    /// qemu's emulator; `why` says why not KVM (empty when forced).
    Tcg { why: String },
}

impl Accel {
    /// qemu's `-accel` and `-cpu` arguments.
    pub fn qemu_args(&self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg { .. } => ["-accel", "tcg,thread=multi", "-cpu", "max"],
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg { .. } => "tcg",
        }
    }

    /// One line for the user: the choice and, for TCG, why.
    pub fn describe(&self) -> String {
        match self {
            Accel::Kvm => "accelerator: kvm (a probe kernel booted under it)".into(),
            Accel::Tcg { why } if why.is_empty() => "accelerator: tcg".into(),
            Accel::Tcg { why } => format!("accelerator: tcg ({why})"),
        }
    }
}

/// What the command line decided at its edge: a forced accelerator (`KILN_ACCEL=kvm|tcg`) and
/// where verdicts are cached.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub force: Option<Accel>,
    pub cache: Option<PathBuf>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();
static CHOSEN: Mutex<Option<(PathBuf, Accel)>> = Mutex::new(None);

/// Sets the command line's choices; the first call wins.
pub fn configure(config: Config) {
    let _ = CONFIG.set(config);
}

/// Parses `KILN_ACCEL`'s value.
pub fn parse_force(value: &str) -> Result<Accel, String> {
    match value {
        "kvm" => Ok(Accel::Kvm),
        "tcg" => Ok(Accel::Tcg { why: "KILN_ACCEL=tcg".into() }),
        other => Err(format!("KILN_ACCEL=`{other}`: expected `kvm` or `tcg`")),
    }
}

/// The accelerator for machines booting the kernel in `image_dir`: forced, memoised, cached
/// or probed, in that order. Prints the choice once on stderr when it was probed.
pub fn for_image(image_dir: &Path) -> Accel {
    let config = CONFIG.get().cloned().unwrap_or_default();
    if let Some(forced) = config.force {
        return forced;
    }
    let mut chosen = CHOSEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((dir, accel)) = chosen.as_ref()
        && dir == image_dir
    {
        return accel.clone();
    }
    let kernel = image_dir.join("vmlinuz");
    let key = cache_key(&kernel);
    let cached = key.as_ref().and_then(|k| config.cache.as_ref().map(|c| c.join(format!("accel-{k}"))));
    let accel = match cached.as_ref().and_then(|f| std::fs::read_to_string(f).ok()).and_then(|t| from_cache(&t)) {
        Some(a) => a,
        None => {
            let a = probe(&kernel, &image_dir.join("initrd.img"));
            eprintln!("kiln boot: {}", a.describe());
            if let Some(f) = &cached {
                let _ = f.parent().map(std::fs::create_dir_all);
                let _ = std::fs::write(f, to_cache(&a));
            }
            a
        }
    };
    *chosen = Some((image_dir.to_path_buf(), accel.clone()));
    accel
}

fn to_cache(a: &Accel) -> String {
    match a {
        Accel::Kvm => "kvm\n".into(),
        Accel::Tcg { why } => format!("tcg\n{why}\n"),
    }
}

fn from_cache(text: &str) -> Option<Accel> {
    let mut lines = text.lines();
    match lines.next()? {
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg { why: format!("{} (cached)", lines.next().unwrap_or("")) }),
        _ => None,
    }
}

/// The cache key: qemu's version, the kernel's bytes, the CPU's model and the running kernel
/// (any of which may change whether KVM works). `None` when the kernel cannot be read.
fn cache_key(kernel: &Path) -> Option<String> {
    let mut h = Sha256::new();
    h.update(std::fs::read(kernel).ok()?);
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output().ok()?;
    h.update(&qemu.stdout);
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    h.update(cpu.lines().find(|l| l.starts_with("model name")).unwrap_or("").as_bytes());
    h.update(std::fs::read("/proc/sys/kernel/osrelease").unwrap_or_default());
    Some(h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect())
}

/// Whether KVM can be opened at all; when it cannot, there is nothing to probe.
fn kvm_openable() -> Result<(), String> {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map(|_| ()).map_err(|e| format!("/dev/kvm: {e}"))
}

/// Boots `kernel` under KVM and reports what happened.
pub fn probe(kernel: &Path, initrd: &Path) -> Accel {
    if let Err(e) = kvm_openable() {
        return Accel::Tcg { why: e };
    }
    match probe_under(&Accel::Kvm, kernel, initrd, PROBE_TIMEOUT) {
        Ok(()) => Accel::Kvm,
        Err(why) => Accel::Tcg { why: format!("a probe kernel did not boot under kvm: {why}") },
    }
}

/// Boots `kernel` under `accel` until its init panics; `Err` says what went wrong instead.
pub fn probe_under(accel: &Accel, kernel: &Path, initrd: &Path, timeout: Duration) -> Result<(), String> {
    let dir = tempfile::Builder::new().prefix("kiln-accel-").tempdir().map_err(|e| e.to_string())?;
    let serial = dir.path().join("serial");
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(accel.qemu_args())
        .args(["-m", "256", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 rdinit=/bin/false no_timer_check"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = qemu.spawn().map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let console = std::fs::read_to_string(&serial).unwrap_or_default();
    verdict(status.map(|s| s.to_string()), &console, &err, timeout)
}

/// The probe's verdict from qemu's exit (`None`: killed at the timeout), the console and
/// qemu's stderr. Pure.
fn verdict(exit: Option<String>, console: &str, stderr: &str, timeout: Duration) -> Result<(), String> {
    if console.contains(BOOTED) {
        return Ok(());
    }
    let last = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).find(|l| !l.starts_with("qemu-system-x86_64: warning"));
    match (exit, last) {
        (None, _) if console.is_empty() => Err(format!("no output on its console in {}s", timeout.as_secs())),
        (None, _) => Err(format!("it did not reach its init in {}s", timeout.as_secs())),
        (Some(status), Some(line)) => Err(format!("qemu exited ({status}): {line}")),
        (Some(status), None) => Err(format!("qemu exited ({status}) before the kernel reached its init")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_kernel_that_reached_its_init_counts() {
        let t = Duration::from_secs(15);
        let panicked = "[ 0.9] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n";
        assert_eq!(verdict(Some("exit status: 0".into()), panicked, "", t), Ok(()));
        let aborted = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0xc000069\nAssertion failed";
        assert_eq!(
            verdict(Some("signal: 6 (SIGABRT)".into()), "", aborted, t),
            Err("qemu exited (signal: 6 (SIGABRT)): qemu-system-x86_64: error: failed to set MSR 0x10a to 0xc000069".into())
        );
        assert_eq!(
            verdict(None, "", "qemu-system-x86_64: warning: host doesn't support", t),
            Err("no output on its console in 15s".into())
        );
        assert_eq!(verdict(None, "[ 0.1] Linux version", "", t), Err("it did not reach its init in 15s".into()));
    }

    #[test]
    fn cached_verdicts_read_back() {
        assert_eq!(from_cache(&to_cache(&Accel::Kvm)), Some(Accel::Kvm));
        assert_eq!(from_cache(&to_cache(&Accel::Tcg { why: "x".into() })), Some(Accel::Tcg { why: "x (cached)".into() }));
        assert_eq!(from_cache("garbage"), None);
        assert!(parse_force("qemu").is_err());
    }
}
