//! Where deploy's commands run: the `Host` trait (a shell script as root with stdin bytes, its
//! status and output, all bounded by a timeout) and two implementations — `Ssh`, through the
//! OpenSSH client binary (as colmena does: the user's agent, keys and `ssh_config` work as they
//! do for `ssh`), and `Local`, the machine kiln runs on.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::render::quote::sh;

/// What a command left: exit status (`None` when a signal ended it), stdout, stderr.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.status == Some(0)
    }
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// The last lines of stderr, control characters shown visibly.
    pub fn stderr_tail(&self, lines: usize) -> String {
        tail(&String::from_utf8_lossy(&self.stderr), lines)
    }
}

/// The last `n` lines of `text`, trimmed, control characters shown visibly.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(n);
    crate::diag::visible(&lines[start..].join("\n")).into_owned()
}

/// A machine deploy works on. Scripts run as root under POSIX `sh`.
pub trait Host: Send + Sync {
    /// Runs `script` with `stdin` as its standard input; an error only when it could not be run
    /// or did not finish within `timeout` (then it is killed).
    fn run(&self, script: &str, stdin: &[u8], timeout: Duration) -> Result<Output, String>;

    /// Writes `bytes` to `path` with `mode`, atomically (a temporary file beside it, renamed).
    fn copy(&self, bytes: &[u8], path: &str, mode: u32, timeout: Duration) -> Result<(), String> {
        let out = self.run(&copy_script(path, mode), bytes, timeout)?;
        if out.ok() { Ok(()) } else { Err(format!("cannot write `{path}`: {}", out.stderr_tail(5))) }
    }
}

/// The script behind [`Host::copy`]: stdin into a private temporary file next to `path`, then
/// the mode, then a rename.
pub fn copy_script(path: &str, mode: u32) -> String {
    let dir = path.rsplit_once('/').map(|(d, _)| if d.is_empty() { "/" } else { d }).unwrap_or(".");
    format!(
        "set -eu\numask 077\nmkdir -p {dir}\nt=$(mktemp {tmp})\ntrap 'rm -f \"$t\"' EXIT\ncat >\"$t\"\nchmod {mode:o} \"$t\"\nmv -f \"$t\" {path}\ntrap - EXIT\n",
        dir = sh(dir),
        tmp = sh(&format!("{path}.XXXXXX")),
        path = sh(path),
    )
}

pub use crate::interrupt::{INTERRUPTED, catch as catch_signals};

/// Runs `cmd` with `stdin`, collecting its output, killed after `timeout` or on an interrupt.
pub fn run_command(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Result<Output, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    let mut input = child.stdin.take().expect("piped");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let reader_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let reader_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) => {}
            Err(e) => break Err(format!("waiting for `{program}`: {e}")),
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            let _ = child.kill();
            let _ = child.wait();
            break Err("interrupted".to_string());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break Err(format!("timed out after {} s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    let stdout = reader_out.join().unwrap_or_default();
    let stderr = reader_err.join().unwrap_or_default();
    let status = status?;
    Ok(Output { status: status.code(), stdout, stderr })
}

/// The machine kiln runs on: scripts run under `sh` as the user running kiln (root for a real
/// deploy). Tests point its paths at a temporary directory.
pub struct Local;

impl Host for Local {
    fn run(&self, script: &str, stdin: &[u8], timeout: Duration) -> Result<Output, String> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        run_command(cmd, stdin, timeout)
    }
}

/// How kiln reaches one host over SSH.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// The name its key is pinned under (`HostKeyAlias`): the host's name in the system.
    pub alias: String,
    /// What ssh connects to (an address, or a name the ssh config maps).
    pub destination: String,
    /// The port sshd listens on (the host's `ssh_port`), passed as `-o Port=` unless 22: it
    /// reaches `-G` (so ssh-keyscan), `-O exit` and, through `%p`, a bastion's `-W`.
    pub port: u16,
    pub user: String,
    /// A bastion to reach it through (its own alias, destination and user).
    pub bastion: Option<Box<SshTarget>>,
}

/// What every ssh invocation shares: the pinned keys, the connection socket directory and an
/// optional ssh config file.
#[derive(Debug, Clone)]
pub struct SshSettings {
    pub known_hosts: PathBuf,
    /// A private (0700) directory for the ControlMaster sockets; the caller removes it.
    pub control_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub connect_timeout: Duration,
}

/// A host reached with the OpenSSH client: `BatchMode=yes` (never a prompt),
/// `StrictHostKeyChecking=yes` against the state directory's `known_hosts` only, the key
/// pinned under the host's name (`HostKeyAlias`), one multiplexed connection per host. Commands
/// run as root: directly when the user is root, else through `sudo -n`.
pub struct Ssh {
    pub target: SshTarget,
    pub settings: SshSettings,
}

impl Ssh {
    /// The `-o` options for `t` (without the destination).
    pub fn options(settings: &SshSettings, t: &SshTarget) -> Vec<String> {
        Ssh::options_of(settings, t, true)
    }

    fn options_of(settings: &SshSettings, t: &SshTarget, control: bool) -> Vec<String> {
        let mut o: Vec<String> = Vec::new();
        if let Some(c) = &settings.config {
            o.push("-F".into());
            o.push(c.display().to_string());
        }
        for (k, v) in [
            ("BatchMode", "yes".to_string()),
            ("StrictHostKeyChecking", "yes".to_string()),
            ("UserKnownHostsFile", settings.known_hosts.display().to_string()),
            ("GlobalKnownHostsFile", "/dev/null".to_string()),
            ("HostKeyAlias", t.alias.clone()),
            ("CheckHostIP", "no".to_string()),
            ("UpdateHostKeys", "no".to_string()),
            ("ConnectTimeout", settings.connect_timeout.as_secs().max(1).to_string()),
            ("ServerAliveInterval", "15".to_string()),
            ("ServerAliveCountMax", "4".to_string()),
            ("User", t.user.clone()),
        ] {
            o.push("-o".into());
            o.push(format!("{k}={v}"));
        }
        // 22 is left to ssh and its config (`--ssh-config` may name another port for the host).
        if t.port != 22 {
            o.push("-o".into());
            o.push(format!("Port={}", t.port));
        }
        let control_options = [
            ("ControlMaster", "auto".to_string()),
            ("ControlPath", settings.control_dir.join("%C").display().to_string()),
            ("ControlPersist", "60".to_string()),
        ];
        for (k, v) in control_options.iter().filter(|_| control) {
            o.push("-o".into());
            o.push(format!("{k}={v}"));
        }
        if let Some(b) = &t.bastion {
            // `-J` would not carry these options to the bastion's connection (OpenSSH passes
            // only `-F` and the log level on): the bastion's key is pinned the same way.
            let mut inner = vec!["ssh".to_string()];
            inner.extend(Ssh::options_of(settings, b, false));
            inner.push("-W".into());
            inner.push("[%h]:%p".into());
            inner.push(b.destination.clone());
            let command: Vec<String> = inner.iter().map(|w| sh(&w.replace('%', "%%"))).collect();
            // `%h`/`%p` must reach ssh unescaped.
            let command = command.join(" ").replace("[%%h]:%%p", "[%h]:%p");
            o.push("-o".into());
            o.push(format!("ProxyCommand={command}"));
        }
        o
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(Ssh::options(&self.settings, &self.target));
        cmd.arg("--").arg(&self.target.destination);
        cmd
    }

    /// `ssh -G`: the host name and port ssh would connect to after its config.
    pub fn resolved(&self) -> Result<(String, u16), String> {
        let mut cmd = Command::new("ssh");
        cmd.args(Ssh::options(&self.settings, &self.target)).arg("-G").arg("--").arg(&self.target.destination);
        let out = run_command(cmd, b"", Duration::from_secs(10))?;
        if !out.ok() {
            return Err(format!("ssh -G: {}", out.stderr_tail(3)));
        }
        let text = out.stdout_text();
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k).map(str::trim).map(str::to_string));
        let host = field("hostname ").ok_or("ssh -G printed no hostname")?;
        let port = field("port ").and_then(|p| p.parse().ok()).unwrap_or(22);
        Ok((host, port))
    }

    /// Ends the multiplexed connection (the socket directory is the caller's to remove).
    pub fn close(&self) {
        let mut cmd = Command::new("ssh");
        cmd.args(Ssh::options(&self.settings, &self.target)).args(["-O", "exit", "--"]).arg(&self.target.destination);
        let _ = run_command(cmd, b"", Duration::from_secs(5));
    }
}

/// How [`Ssh`]'s errors start when ssh itself failed (connection, authentication, host key),
/// as opposed to the command timing out or not starting.
pub const SSH_FAILED: &str = "ssh failed";

/// `script` as the remote command: `sh -c` directly for root, else through `sudo -n`.
pub fn remote_command(user: &str, script: &str) -> String {
    let run = format!("sh -c {}", sh(script));
    if user == "root" { run } else { format!("sudo -n {run}") }
}

impl Host for Ssh {
    fn run(&self, script: &str, stdin: &[u8], timeout: Duration) -> Result<Output, String> {
        let mut cmd = self.command();
        cmd.arg(remote_command(&self.target.user, script));
        let out = run_command(cmd, stdin, timeout)?;
        // 255 is ssh's own failure (connection, authentication, host key), not the script's.
        if out.status == Some(255) {
            return Err(format!("{SSH_FAILED}: {}", out.stderr_tail(6)));
        }
        Ok(out)
    }
}

/// A private (0700) directory for ControlMaster sockets in the temporary directory, removed
/// when dropped (every exit of deploy: errors, success and — through [`INTERRUPTED`] — Ctrl-C).
/// A socket path is limited to 107 bytes, and ssh's is this directory (the base, then
/// `/kiln-ssh-XXXXXX/`, 17 bytes), `%C` (40) and, while it binds, a `.` and 16 random
/// characters: a temporary directory longer than 33 bytes is passed over for /tmp.
pub fn control_dir() -> Result<tempfile::TempDir, String> {
    let mut base = std::env::temp_dir();
    if base.as_os_str().len() > 33 {
        base = PathBuf::from("/tmp");
    }
    tempfile::Builder::new().prefix("kiln-ssh-").tempdir_in(base).map_err(|e| format!("cannot create a socket directory: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssh_port_reaches_openssh() {
        let settings = SshSettings {
            known_hosts: "/s/known_hosts".into(),
            control_dir: "/s/ctl".into(),
            config: None,
            connect_timeout: Duration::from_secs(5),
        };
        let t = SshTarget { alias: "db".into(), destination: "2001:db8::5".into(), port: 2222, user: "ops".into(), bastion: None };
        // What OpenSSH makes of the options (`ssh -G` parses without connecting).
        let out = Command::new("ssh").args(Ssh::options(&settings, &t)).args(["-G", "--", "2001:db8::5"]).output().expect("ssh");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.lines().any(|l| l == "port 2222"), "{text}");
    }

    #[test]
    fn local_runs_with_stdin_and_timeout() {
        let out = Local.run("cat; echo err >&2; exit 3", b"hello", Duration::from_secs(5)).unwrap();
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.status, Some(3));
        assert_eq!(out.stderr_tail(1), "err");
        let e = Local.run("sleep 5", b"", Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("timed out"), "{e}");
    }

    #[test]
    fn copy_is_atomic_and_sets_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/file");
        Local.copy(b"bytes", p.to_str().unwrap(), 0o640, Duration::from_secs(5)).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"bytes");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn ssh_options_pin_and_never_prompt() {
        let s = SshSettings {
            known_hosts: "/s/known_hosts".into(),
            control_dir: "/tmp/c".into(),
            config: Some("/cfg".into()),
            connect_timeout: Duration::from_secs(10),
        };
        let b = SshTarget { alias: "bastion".into(), destination: "203.0.113.1".into(), port: 22, user: "ops".into(), bastion: None };
        let t = SshTarget { alias: "db".into(), destination: "10.0.0.3".into(), port: 22, user: "ops".into(), bastion: Some(Box::new(b)) };
        let o = Ssh::options(&s, &t).join(" ");
        for want in ["-F /cfg", "BatchMode=yes", "StrictHostKeyChecking=yes", "UserKnownHostsFile=/s/known_hosts", "HostKeyAlias=db"] {
            assert!(o.contains(want), "{want} in {o}");
        }
        assert!(o.contains("ProxyCommand=") && o.contains("HostKeyAlias=bastion") && o.contains("-W '[%h]:%p'"), "{o}");
    }
}
