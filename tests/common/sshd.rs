//! Debian's OpenSSH server for tests on loopback (unpacked under .test-tools by
//! scripts/install-test-deps): the binary, ed25519 keys, and sshd started as Debian's packaging
//! would have it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{repo, run, text};

/// The unpacked sshd.
pub fn binary() -> PathBuf {
    let p = repo().join(".test-tools/openssh/usr/sbin/sshd");
    assert!(p.is_file(), "sshd is not unpacked (run scripts/install-test-deps): {}", p.display());
    p
}

/// A fresh ed25519 key pair at `path` (and `path.pub`) with no passphrase: its public key as
/// `ssh-ed25519 BASE64`.
pub fn keygen(path: &Path) -> String {
    let o = run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"]).arg(path));
    assert!(o.status.success(), "{}", text(&o.stderr));
    std::fs::read_to_string(path.with_extension("pub")).unwrap().split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    text(&run(Command::new("id").arg("-u")).stdout).trim() == "0"
}

/// sshd with `args`. As root it needs /run/sshd and its privilege-separation user, which
/// Debian's maintainer script would create: a private /run and a copy of /etc/passwd naming
/// the user (written in `dir`), bound over the original, in a mount namespace of its own.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    command_with_users(dir, args, "")
}

/// [`command`], with `users` (lines of /etc/passwd) added to the namespace's copy as root.
pub fn command_with_users(dir: &Path, args: &[&str], users: &str) -> Command {
    if !is_root() {
        let mut c = Command::new(binary());
        c.args(args);
        return c;
    }
    let passwd = dir.join("passwd");
    let extra = users;
    let mut users = std::fs::read_to_string("/etc/passwd").unwrap();
    if !users.lines().any(|l| l.starts_with("sshd:")) {
        users.push_str("sshd:x:65534:65534:sshd privilege separation:/run/sshd:/usr/sbin/nologin\n");
    }
    std::fs::write(&passwd, users + extra).unwrap();
    let mut c = Command::new("unshare");
    c.args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount -t tmpfs tmpfs /run && mkdir -m 0755 /run/sshd && mount --bind \"$1\" /etc/passwd && shift && exec \"$0\" \"$@\"",
    ])
    .arg(binary())
    .arg(&passwd)
    .args(args);
    c
}

/// sshd on 127.0.0.1:`port` with `host_key`, accepting `client_pub` for any user (no PAM, no
/// passwords), `config` appended to its configuration and `users` to the namespace's
/// /etc/passwd; its log in `dir/sshd-PORT.log`. Killed when dropped.
pub struct Loopback(std::process::Child);

impl Loopback {
    pub fn start(dir: &Path, port: u16, host_key: &Path, client_pub: &Path, config: &str, users: &str) -> Loopback {
        let file = dir.join(format!("sshd_config-{port}"));
        std::fs::write(
            &file,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nStrictModes no\nUsePAM no\n\
PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n{config}",
                host_key.display(),
                client_pub.display(),
                dir.join(format!("sshd-{port}.pid")).display()
            ),
        )
        .unwrap();
        let log = Loopback::log_file(dir, port);
        let mut cmd = command_with_users(dir, &["-D", "-e", "-f", file.to_str().unwrap()], users);
        cmd.stderr(std::fs::File::create(&log).unwrap());
        let server = Loopback(cmd.spawn().expect("start sshd"));
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("sshd did not listen: {}", std::fs::read_to_string(&log).unwrap_or_default());
    }

    /// Where sshd on `port` logs.
    pub fn log_file(dir: &Path, port: u16) -> PathBuf {
        dir.join(format!("sshd-{port}.log"))
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
