//! The runtime lab (docs/lab.md): a seed system's host booted under qemu on the lab's
//! Debian 13 image, with stand-in container images (scripts/lab-images) loaded into its Docker
//! before the provisioner runs, and everything a failure needs to be diagnosed.
//!
//! A lab copy of a seed differs from the seed in four declared ways, each needed to run it
//! here and none touching what is under test: the admins' keys are the test's own; the
//! admins' SSH sources also name 10.0.2.2, the address qemu's user network forwards the
//! test's SSH from; hosts declared on ubuntu-24.04 run on debian-13 (Ubuntu's archive is not
//! reachable from the test machines; both images install Docker from their distribution); an
//! image pinned by digest (`name:tag@sha256:…`) keeps its tag only (an image `docker load`ed
//! from an archive has no registry digest, so Docker would pull a reference naming one).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{copy_tree, kiln, repo, run, text};
use crate::vm::{self, Machine};

/// The address the lab's SSH comes from (qemu user networking's host side).
pub const LAB_SSH_SOURCE: &str = "10.0.2.2/32";
/// The image the lab boots container hosts on.
pub const LAB_IMAGE: &str = "debian-13";

/// The lab copy of `flake-free-examples/<example>` in `tmp/sys`: see the module docs.
/// Returns the system directory, the private key and the first admin's name.
pub fn lab_copy(example: &str, tmp: &Path) -> (PathBuf, PathBuf, String) {
    let sys = tmp.join("sys");
    copy_tree(&repo().join("flake-free-examples").join(example), &sys);
    let (key, public) = vm::fresh_key(tmp);
    let mut admin = None;
    for entry in walkdir::WalkDir::new(&sys).into_iter().filter_map(|e| e.ok()) {
        if entry.path().extension().is_some_and(|e| e == "toml") {
            let before = std::fs::read_to_string(entry.path()).unwrap();
            let (after, name) = rewrite(&before, &public);
            admin = admin.or(name);
            if after != before {
                std::fs::write(entry.path(), after).unwrap();
            }
        }
    }
    (sys, key, admin.expect("the seed declares an admin"))
}

/// One file of the lab copy, line by line (so every other line keeps its number): in
/// `[admins.X]`, `keys` is the test's key and `sources` gains [`LAB_SSH_SOURCE`]; an
/// `image = "ubuntu-24.04"` becomes [`LAB_IMAGE`]; an `image = "…@sha256:…"` loses its digest.
/// Returns the first admin's name too.
fn rewrite(toml: &str, public: &str) -> (String, Option<String>) {
    let mut admin = None;
    let mut in_admin = false;
    let mut out = String::new();
    for line in toml.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            let name = t.trim_matches(|c| c == '[' || c == ']');
            in_admin = name.starts_with("admins.");
            if in_admin && admin.is_none() {
                admin = Some(name.trim_start_matches("admins.").to_string());
            }
        }
        let new = if in_admin && t.starts_with("keys = [") {
            format!("keys = [\"{public}\"]")
        } else if in_admin && t.starts_with("sources = [") && t.ends_with(']') {
            format!("{}, \"{LAB_SSH_SOURCE}\"]", t.trim_end_matches(']'))
        } else if t == "image = \"ubuntu-24.04\"" {
            format!("image = \"{LAB_IMAGE}\"")
        } else if let Some((pinned, _digest)) = t.strip_prefix("image = \"").and_then(|r| r.split_once("@sha256:")) {
            format!("image = \"{pinned}\"")
        } else {
            line.to_string()
        };
        out.push_str(&new);
        out.push('\n');
    }
    (out, admin)
}

/// The cached base image a host boots on (scripts/build-test-image, run by scripts/test).
#[allow(clippy::disallowed_methods)] // where scripts/build-test-image put it: the user's cache
pub fn image_dir(image: &str) -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    let dir = cache.join("kiln/images").join(image);
    assert!(dir.join("base.raw").is_file(), "no {image} base image in {} (run scripts/build-test-image {image})", dir.display());
    dir
}

/// Builds the lab copy; returns the result link.
pub fn build(sys: &Path, tmp: &Path) -> PathBuf {
    crate::common::build(sys, &tmp.join("store"), &tmp.join("result"))
}

/// The memory a lab VM is given (`kiln boot --memory`), in MiB.
pub const LAB_MEMORY_MIB: u64 = 3072;

/// Lab VMs running at once in this test process (tests run on several threads, and
/// [`concurrently`] boots several hosts of one test): a VM boots only while the memory
/// available when the first one started holds one more, each counted at its memory plus qemu's
/// own (512 MiB); at least one always runs. The slot is held until the [`LabHost`] is dropped.
static RUNNING: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
static FREED: std::sync::Condvar = std::sync::Condvar::new();

fn slots() -> u64 {
    static SLOTS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SLOTS.get_or_init(|| {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        (kib / 1024 / (LAB_MEMORY_MIB + 512)).max(1)
    })
}

/// A running VM's share of the memory gate, released when dropped.
pub struct Slot(());

impl Slot {
    fn take() -> Slot {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= slots() {
            running = FREED.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        Slot(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        FREED.notify_one();
    }
}

/// Runs `jobs` (each typically a [`boot`] of one host and its checks) at once on threads of
/// their own, as many VMs at a time as memory allows ([`Slot`]); returns their results in order.
/// A panicking job panics the caller after every job has ended (each [`LabHost`] printing its
/// diagnostics as it unwinds).
pub fn concurrently<T: Send>(jobs: Vec<Box<dyn FnOnce() -> T + Send + '_>>) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs.into_iter().map(|job| s.spawn(job)).collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        results.into_iter().map(|r| r.unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// A booted lab host: prints what a failure needs (serial console, cloud-init, the
/// provisioner's log, the containers) when dropped during a panic, then powers off.
pub struct LabHost {
    pub name: String,
    pub key: PathBuf,
    pub admin: String,
    pub report: Value,
    pub machine: Machine,
    /// Its place in the memory gate, given back when the host is dropped (after `machine`).
    pub slot: Slot,
}

impl LabHost {
    /// A root shell command in the guest; stdout, or stderr as the error.
    pub fn sh(&self, cmd: &str) -> Result<String, String> {
        vm::try_ssh(&self.key, self.machine.ssh, &self.admin, &format!("sudo sh -c {}", kiln::render::quote::sh(cmd)))
    }

    /// [`LabHost::sh`], panicking with the command's output on failure.
    pub fn must(&self, cmd: &str) -> String {
        self.sh(cmd).unwrap_or_else(|e| panic!("`{cmd}` on {}: {e}", self.name))
    }

    pub fn diagnose(&self) -> String {
        let mut out = format!("=== {}: serial console (last 40 lines)\n{}\n", self.name, self.machine.serial_tail(40));
        for (what, cmd) in [
            ("cloud-init status --long", "cloud-init status --long"),
            ("provisioner log (cloud-init-output.log, last 60 lines)", "tail -n 60 /var/log/cloud-init-output.log"),
            ("docker compose ps", "docker compose --file /opt/kiln/compose.yaml ps --all"),
            ("docker compose logs (last 15 lines per service)", "docker compose --file /opt/kiln/compose.yaml logs --no-color --tail 15"),
            (
                "healthchecks (last result per container)",
                "docker ps --all --quiet | xargs --no-run-if-empty docker inspect --format '{{.Name}}: {{json .State.Health}}'",
            ),
            ("stand-in images", "docker image ls"),
        ] {
            // bounded: `docker compose logs` was seen to hang on a container in a restart loop
            let r = self.sh(&format!("timeout 90 sh -c {} 2>&1", kiln::render::quote::sh(cmd)));
            out.push_str(&format!("=== {}: {what}\n{}\n", self.name, r.unwrap_or_else(|e| format!("(unavailable: {e})"))));
        }
        out
    }
}

impl LabHost {
    /// Where the boot's time went, from the guest's own clocks (printed by every lab test, so
    /// `--nocapture` and scripts/bench --lab show it): systemd's and cloud-init's analyses,
    /// and the provisioner's steps, the stand-in images' load and Docker's start with the
    /// journal's monotonic timestamps (seconds since the kernel started).
    pub fn timings(&self) -> String {
        let mut out = String::new();
        for (what, cmd) in [
            ("systemd-analyze", "systemd-analyze time; systemd-analyze blame | head -n 12"),
            (
                "cloud-init analyze show (stages)",
                "cloud-init analyze show | grep -E '^(Starting stage|Finished stage|Total Time)|finished running'",
            ),
            (
                "journal: images load, docker, provisioner steps",
                "journalctl -b -o short-monotonic --no-pager -t cloud-init -t kiln-lab-load-images -t systemd \
                 | grep -E 'kiln: |kiln lab|Loaded image|Started docker|Starting docker|Finished cloud' | grep -v 'kiln: wrote' | cut -c1-160",
            ),
        ] {
            let r = self.sh(&format!("{cmd} 2>&1"));
            out.push_str(&format!("=== {}: {what}\n{}\n", self.name, r.unwrap_or_else(|e| format!("(unavailable: {e})"))));
        }
        out
    }
}

impl Drop for LabHost {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnose());
        }
    }
}

/// Boots `host` of the lab copy `sys` with its secrets (the examples' test identity), its
/// stand-in images and, when it holds data, a fresh data disk; kept running for the checks.
pub fn boot(sys: &Path, host: &str, key: &Path, admin: &str, images: &Path, data_disk: Option<&Path>) -> LabHost {
    let mut cmd = kiln();
    cmd.arg("--identity").arg(repo().join("tests/fixtures/keys/examples.agekey")).arg("boot").arg(host).arg(sys);
    cmd.arg("--apt-repo").arg(vm::lab_apt_repo("trixie"));
    cmd.arg("--lab-images").arg(images).arg("--memory").arg(LAB_MEMORY_MIB.to_string()).args(["--keep", "--json", "--timeout", "1500"]);
    if let Some(d) = data_disk {
        cmd.arg("--data-disk").arg(d);
    }
    // the record of the kept machine stays with the test, beside its system
    cmd.arg("--state").arg(sys.with_extension("state"));
    let slot = Slot::take();
    let started = std::time::Instant::now();
    let out = run(&mut cmd);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("kiln boot {host}: {}", text(&out.stderr)));
    let lab = LabHost {
        name: host.to_string(),
        key: key.to_path_buf(),
        admin: admin.to_string(),
        machine: Machine::from_report(&report),
        report,
        slot,
    };
    eprintln!(
        "lab: {host}: cloud-init finished after {:.0} s (kiln boot took {:.0} s)",
        lab.report["boot_seconds"],
        started.elapsed().as_secs_f64()
    );
    assert!(out.status.success(), "kiln boot {host} reported problems: {}\n{}", lab.report, text(&out.stderr));
    lab
}

/// Boots `hosts` of the lab copy `sys` (built in `result`) together on their private networks
/// (`kiln boot --hosts`), each host that runs containers with its stand-in images, all with the
/// lab's apt repository; kept running (stopped when the fleet is dropped). Returns the fleet
/// and each container host's Compose file.
pub fn boot_fleet(
    sys: &Path,
    result: &Path,
    hosts: &[&str],
    key: &Path,
    admin: &str,
    tmp: &Path,
) -> (vm::Fleet, std::collections::BTreeMap<String, Value>) {
    let dir = tmp.join("lab-images");
    std::fs::create_dir_all(&dir).unwrap();
    let mut composes = std::collections::BTreeMap::new();
    for host in hosts {
        if !result.join("hosts").join(host).join("compose.yaml").is_file() {
            continue;
        }
        let (archive, compose) = crate::common::lab_images(result, host, tmp);
        std::fs::rename(&archive, dir.join(format!("{host}.tar"))).unwrap();
        composes.insert(host.to_string(), compose);
    }
    let state = tmp.join("state");
    let mut cmd = kiln();
    cmd.arg("--identity").arg(repo().join("tests/fixtures/keys/examples.agekey")).arg("boot").arg("--hosts").arg(hosts.join(",")).arg(sys);
    cmd.arg("--apt-repo").arg(vm::lab_apt_repo("trixie")).arg("--lab-images").arg(&dir);
    // Under TCG the VMs share two cores: each host's time grows with the fleet's size.
    let timeout = (500 * hosts.len()).max(2400).to_string();
    cmd.arg("--memory").arg(LAB_MEMORY_MIB.to_string()).args(["--keep", "--json", "--timeout", &timeout, "--state"]).arg(&state);
    let started = std::time::Instant::now();
    let out = run(&mut cmd);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let fleet = vm::Fleet::new(report, &state, key, hosts[0]).logged_in_as(admin);
    assert!(!fleet.report.is_null(), "kiln boot printed no report: {}", text(&out.stderr));
    eprintln!("lab: {} booted together in {:.0} s", hosts.join(", "), started.elapsed().as_secs_f64());
    assert!(out.status.success(), "kiln boot reported problems: {:#}\n{}", fleet.report, text(&out.stderr));
    (fleet, composes)
}
