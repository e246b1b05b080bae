//! The test command's own scripts: installing the test dependencies enables, starts, stops or
//! disables no service on the machine, writes nothing to /etc but what dpkg writes for plain
//! packages, and a second run changes nothing (scripts/check-host-untouched).

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The scripts that install what the tests need (not build-test-image, whose `systemctl`
/// calls run inside the image it builds).
const INSTALLERS: &[&str] = &[
    "scripts/test",
    "scripts/install-test-deps",
    "scripts/install-push-test-deps",
    "scripts/install-tofu-test-deps",
    "scripts/test-tools.sh",
];

/// Commands that enable, start, stop or disable services, or keep a package's service from
/// running (which it would otherwise).
const SERVICE_MANAGERS: &[&str] =
    &["systemctl", "update-rc.d", "invoke-rc.d", "policy-rc.d", "deb-systemd", "service ", "cloud-init.disabled", "nginx -s"];

#[test]
fn installers_never_manage_services() {
    let mut found = Vec::new();
    for script in INSTALLERS {
        let text = std::fs::read_to_string(repo().join(script)).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with('#') {
                continue;
            }
            found.extend(SERVICE_MANAGERS.iter().filter(|m| code.contains(*m)).map(|m| format!("{script}:{}: {m}: {line}", n + 1)));
        }
    }
    assert!(found.is_empty(), "the install scripts manage services:\n{}", found.join("\n"));
}

/// Runs the install chain of scripts/test twice (under scripts/test both runs are no-ops:
/// the first install already happened) and checks the machine's services, /etc and packages.
#[test]
fn installing_test_dependencies_leaves_the_host_alone() {
    let out = Command::new(repo().join("scripts/check-host-untouched")).output().expect("run scripts/check-host-untouched");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scripts/check-host-untouched failed:\n{text}");
    assert!(text.contains("run 2: ") && text.contains("static: "), "both runs and the static check ran:\n{text}");
}
