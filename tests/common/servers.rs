//! The stores of scripts/test-servers (s3s-fs with real SigV4 checks; nginx as a WebDAV store
//! whose `/store/` takes writes with basic auth and serves reads to anyone, and whose
//! `/bearer-store/` needs a bearer token for everything), started for one test and stopped
//! when dropped.

use std::process::{Command, Stdio};

use serde_json::Value;

use super::{repo, text};

pub struct Servers {
    pub dir: tempfile::TempDir,
    pub info: Value,
}

impl Servers {
    pub fn start() -> Servers {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(repo().join("scripts/test-servers"))
            .arg("start")
            .arg(dir.path())
            .arg("--watch-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .output()
            .expect("scripts/test-servers (run scripts/install-push-test-deps)");
        assert!(out.status.success(), "test servers did not start:\n{}{}", text(&out.stdout), text(&out.stderr));
        let info = serde_json::from_slice(&std::fs::read(dir.path().join("servers.json")).unwrap()).unwrap();
        Servers { dir, info }
    }

    /// `servers.json`'s `a.b` (a URL, a user, a password, a token, a directory).
    pub fn s(&self, a: &str, b: &str) -> String {
        self.info[a][b].as_str().unwrap_or_else(|| panic!("servers.json {a}.{b}")).to_string()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/test-servers")).arg("stop").arg(self.dir.path()).output();
    }
}
