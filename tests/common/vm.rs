//! VM test support shared by the tests that boot hosts under qemu (tests/boot.rs,
//! tests/deploy.rs, tests/deploy_cloud.rs, tests/lab.rs, tests/lab_network.rs): a fixture system with a fresh
//! admin key, SSH into the booted machine (directly, or to a private host through a jump
//! host), a kept machine that is powered off and cleaned up when dropped, and a kept fleet
//! (`kiln boot --all --keep`) that `kiln boot --down` stops when dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{copy_tree, text};

/// The comment that marks a fixture's admin key as the one a test replaces.
pub const PLACEHOLDER: &str = "kiln-boot-placeholder";

/// A fresh ed25519 key pair at `dir/key`; returns the private key's path and the public key.
pub fn fresh_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("key");
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-test", "-f"]).arg(&key).status().unwrap();
    assert!(st.success(), "ssh-keygen");
    let public = std::fs::read_to_string(dir.join("key.pub")).unwrap().trim().to_string();
    (key, public)
}

/// A copy of the fixture system `src` in `tmp/sys` whose admin key (the one commented
/// [`PLACEHOLDER`] in system.toml) is a fresh one; returns the system directory and the key.
pub fn fixture(src: &Path, tmp: &Path) -> (PathBuf, PathBuf) {
    let sys = tmp.join("sys");
    copy_tree(src, &sys);
    let (key, public) = fresh_key(tmp);
    let f = sys.join("system.toml");
    let text0 = std::fs::read_to_string(&f).unwrap();
    let start = text0.find("\"ssh-ed25519 ").unwrap();
    let end = text0[start..].find(&format!("{PLACEHOLDER}\"")).unwrap() + start + PLACEHOLDER.len() + 1;
    std::fs::write(&f, format!("{}\"{public}\"{}", &text0[..start], &text0[end..])).unwrap();
    (sys, key)
}

/// Runs `cmd` over SSH as `user` on the forwarded port; stdout, or stderr as the error.
pub fn try_ssh(key: &Path, port: u64, user: &str, cmd: &str) -> Result<String, String> {
    let out = Command::new("ssh")
        .arg("-i")
        .arg(key)
        .args(["-p", &port.to_string(), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"])
        .arg(format!("{user}@127.0.0.1"))
        .arg(cmd)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() { Ok(text(&out.stdout)) } else { Err(format!("{}{}", text(&out.stdout), text(&out.stderr))) }
}

/// Runs `cmd` over SSH as `user` on `address`, a private host reached through the host whose
/// SSH is forwarded to `jump_port` (`ssh -W` there: the bastion); stdout, or stderr as the error.
pub fn try_ssh_via(key: &Path, jump_port: u64, address: &str, user: &str, cmd: &str) -> Result<String, String> {
    let opts = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=20 -o LogLevel=ERROR -o IdentitiesOnly=yes";
    let proxy = format!("ssh -i {} -p {jump_port} {opts} -W %h:%p {user}@127.0.0.1", kiln::render::quote::sh(&key.to_string_lossy()));
    let out = Command::new("ssh")
        .arg("-i")
        .arg(key)
        .args(opts.split(' '))
        .arg("-o")
        .arg(format!("ProxyCommand={proxy}"))
        .arg(format!("{user}@{address}"))
        .arg(cmd)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() { Ok(text(&out.stdout)) } else { Err(format!("{}{}", text(&out.stdout), text(&out.stderr))) }
}

/// [`try_ssh`] as the fixtures' admin `kiln`, panicking on failure.
pub fn ssh(key: &Path, port: u64, cmd: &str) -> String {
    try_ssh(key, port, "kiln", cmd).unwrap_or_else(|e| panic!("ssh `{cmd}`: {e}"))
}

/// A machine `kiln boot --keep` left running: powered off (QMP, else killed) and its work
/// directory removed when dropped, also when an assertion fails.
pub struct Machine {
    pub qmp: PathBuf,
    pub pid: i32,
    pub workdir: PathBuf,
    pub ssh: u64,
    pub https: u64,
    pub http: u64,
    stopped: std::cell::Cell<bool>,
}

impl Machine {
    /// The machine a `kiln boot --keep --json` report describes.
    pub fn from_report(report: &Value) -> Machine {
        Machine {
            qmp: PathBuf::from(report["qmp"].as_str().expect("a kept machine's QMP socket")),
            pid: report["pid"].as_i64().expect("a kept machine's pid") as i32,
            workdir: PathBuf::from(report["workdir"].as_str().expect("a kept machine's work directory")),
            ssh: report["ports"]["ssh"].as_u64().unwrap(),
            https: report["ports"]["https"].as_u64().unwrap(),
            http: report["ports"]["http"].as_u64().unwrap(),
            stopped: std::cell::Cell::new(false),
        }
    }

    /// The last `lines` lines of the serial console.
    pub fn serial_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.workdir.join("serial.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Powers the machine off and waits until qemu has exited (and released its disks).
    pub fn off(&self) {
        if self.stopped.replace(true) {
            return;
        }
        if kiln::boot::power_off(&self.qmp).is_err() {
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        let start = Instant::now();
        // qemu was left to init by the exited kiln, which reaps it
        while Path::new(&format!("/proc/{}", self.pid)).exists() && !zombie(self.pid) {
            if start.elapsed() > Duration::from_secs(90) {
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.off();
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// A fleet `kiln boot --all --keep --json --state STATE` left running: on drop (also when an
/// assertion fails) each host's diagnostics are printed when the test is panicking (serial
/// tail, `cloud-init status --long`, the provisioner's log: over SSH, private hosts through
/// `jump`), then `kiln boot --down --state STATE` stops every machine.
pub struct Fleet {
    pub report: Value,
    pub state: PathBuf,
    pub key: PathBuf,
    /// The host whose forwarded SSH port reaches the private hosts (the bastion).
    pub jump: String,
    /// The admin the test logs in as (`kiln` unless [`Fleet::logged_in_as`]).
    pub admin: String,
    down: std::cell::Cell<bool>,
}

impl Fleet {
    pub fn new(report: Value, state: &Path, key: &Path, jump: &str) -> Fleet {
        Fleet {
            report,
            state: state.to_path_buf(),
            key: key.to_path_buf(),
            jump: jump.to_string(),
            admin: "kiln".into(),
            down: std::cell::Cell::new(false),
        }
    }

    /// The same fleet, logged into as `admin`.
    pub fn logged_in_as(mut self, admin: &str) -> Fleet {
        self.admin = admin.to_string();
        self
    }

    /// One host's part of the report.
    pub fn host(&self, name: &str) -> &Value {
        self.report["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .unwrap_or_else(|| panic!("no host {name} in {}", self.report))
    }

    /// A forwarded loopback port of a public host (`ssh`, `http`, `https`).
    pub fn port(&self, host: &str, name: &str) -> u64 {
        self.host(host)["ports"][name].as_u64().unwrap_or_else(|| panic!("{host} has no forwarded {name} port"))
    }

    /// The host's address on the network `network`, as the plan gave its NIC.
    pub fn address(&self, host: &str, network: &str) -> String {
        let nic = self.host(host)["network"]["nics"].as_array().unwrap().iter().find(|n| n["network"] == network).unwrap().clone();
        nic["addresses"][0].as_str().unwrap().split('/').next().unwrap().to_string()
    }

    /// Runs `cmd` as `kiln` on `host`: directly when it has a forwarded SSH port, else through
    /// the jump host at its first private address.
    pub fn try_sh(&self, host: &str, cmd: &str) -> Result<String, String> {
        let h = self.host(host);
        if let Some(port) = h["ports"]["ssh"].as_u64() {
            return try_ssh(&self.key, port, &self.admin, cmd);
        }
        let nic = h["network"]["nics"].as_array().unwrap().iter().find(|n| n["kind"] == "lan").expect("a private address").clone();
        let address = nic["addresses"][0].as_str().unwrap().split('/').next().unwrap().to_string();
        try_ssh_via(&self.key, self.port(&self.jump, "ssh"), &address, &self.admin, cmd)
    }

    pub fn sh(&self, host: &str, cmd: &str) -> String {
        self.try_sh(host, cmd).unwrap_or_else(|e| panic!("{host}: `{cmd}`: {e}"))
    }

    /// The last `lines` lines of a host's serial console.
    pub fn serial_tail(&self, host: &str, lines: usize) -> String {
        let dir = PathBuf::from(self.report["workdir"].as_str().unwrap_or_default()).join(host);
        let log = std::fs::read_to_string(dir.join("serial.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Everything a failure needs, per host.
    pub fn diagnose(&self) -> String {
        let mut out = String::new();
        for h in self.report["hosts"].as_array().into_iter().flatten() {
            let name = h["host"].as_str().unwrap_or("?");
            out.push_str(&format!("==== {name}: serial console (last 40 lines)\n{}\n", self.serial_tail(name, 40)));
            for (what, cmd) in [
                ("cloud-init status --long", "cloud-init status --long"),
                ("provisioner log (cloud-init-output.log, last 60 lines)", "sudo tail -n 60 /var/log/cloud-init-output.log"),
            ] {
                let got = self.try_sh(name, cmd).unwrap_or_else(|e| format!("(not reachable over SSH: {e})"));
                out.push_str(&format!("==== {name}: {what}\n{got}\n"));
            }
        }
        out
    }

    /// `kiln boot --down --state STATE`; its output.
    pub fn down(&self) -> String {
        self.down.set(true);
        let out = crate::common::kiln().args(["boot", "--down", "--state"]).arg(&self.state).output().unwrap();
        assert!(out.status.success(), "kiln boot --down: {}", text(&out.stderr));
        text(&out.stdout)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnose());
        }
        if !self.down.get() {
            let _ = crate::common::kiln().args(["boot", "--down", "--state"]).arg(&self.state).output();
        }
    }
}

/// The packages the lab's images do not carry and kiln's provisioners install (restic for
/// backups; node-exporter's and zabbix-agent's native packages): the lab's apt repository.
pub const LAB_APT_PACKAGES: &[&str] = &["prometheus-node-exporter", "restic", "zabbix-agent2", "postgresql", "ssl-cert", "dnsmasq"];

/// The lab's apt repository for a Debian `suite` (scripts/lab-apt-repo: downloaded once,
/// verified, cached in ~/.cache/kiln/lab-apt/SUITE), for `kiln boot --apt-repo`.
#[allow(clippy::disallowed_methods)] // where the lab's downloads are cached: the user's cache
pub fn lab_apt_repo(suite: &str) -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    let dir = cache.join("kiln/lab-apt").join(suite);
    let out = Command::new(crate::common::repo().join("scripts/lab-apt-repo"))
        .args(["--suite", suite])
        .arg(&dir)
        .args(LAB_APT_PACKAGES)
        .output()
        .expect("run scripts/lab-apt-repo");
    assert!(out.status.success(), "scripts/lab-apt-repo {suite}: {}", text(&out.stderr));
    dir
}

/// A `PATH` under which `qemu-system-x86_64` is a stand-in (named as one, for tests only):
/// the first start of the machine named `machine` (qemu's `-name`: `kiln-boot-HOST` for
/// `kiln boot`, `kiln-test-cloud-SERVER` for the test cloud) dies of SIGABRT, as qemu's own
/// assertions do under TCG: at once when `after_seconds` is 0, else after the real qemu has
/// run that long (the machine already booting, its volumes attached). Every other call (that
/// machine's restart, other machines, the accelerator probe) runs the real qemu. It proves
/// that kiln and the test cloud start a crashed machine again, not anything about qemu.
#[allow(clippy::disallowed_methods)] // the test process's own PATH, extended for kiln
pub fn path_with_crashing_qemu(dir: &Path, machine: &str, after_seconds: u32) -> std::ffi::OsString {
    let real = Command::new("sh").args(["-c", "command -v qemu-system-x86_64"]).output().unwrap();
    let real = text(&real.stdout).trim().to_string();
    assert!(!real.is_empty(), "qemu-system-x86_64 is not on PATH");
    let bin = dir.join("crashing-qemu");
    std::fs::create_dir_all(&bin).unwrap();
    let once = dir.join("crashed-once");
    let run_first = if after_seconds == 0 {
        String::new()
    } else {
        format!("      '{real}' \"$@\" &\n      q=$!\n      sleep {after_seconds}\n      kill -ABRT $q\n      wait $q\n")
    };
    let script = format!(
        "#!/bin/sh\n# Stand-in (tests only): the first start of {machine} aborts like a qemu assertion.\ncase \" $* \" in\n  *' {machine} '*)\n    if mkdir '{}' 2>/dev/null; then\n      ulimit -c 0\n{run_first}      echo 'stand-in qemu: Assertion failed (SIGABRT on purpose)' >&2\n      kill -ABRT $$\n    fi ;;\nesac\nexec '{real}' \"$@\"\n",
        once.display()
    );
    let path = bin.join("qemu-system-x86_64");
    std::fs::write(&path, script).unwrap();
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&path, perm).unwrap();
    let mut paths = vec![bin];
    paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(paths).unwrap()
}
