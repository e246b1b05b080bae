//! A server that already runs Docker's own docker-ce (an existing server, a custom image) keeps
//! it: the provisioner's packages step, run by dash, uses docker-ce when it has Compose v2 and
//! stops with a clear error when it has not, and apt is never allowed to remove a package to
//! make room for the distribution's docker.io.
//!
//! Judged by the real apt-get (simulating, `APT_CONFIG` pointing at a dpkg status and a flat
//! repository of this test's own): Debian's docker.io needs containerd and runc, which docker-ce's
//! containerd.io conflicts with (docker-ce-packaging's control files; Docker's install guide
//! has users remove docker.io, containerd and runc first), so plain `apt-get install -y
//! docker.io` would remove docker-ce and containerd.io, stopping every container. Stand-ins,
//! named: `dpkg-query` answers from the same status file's package list (the real one reads
//! /var/lib/dpkg, this machine's), `docker` answers `compose version` as told.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const SYSTEM: &str = r#"
[system]
name = "byo"
[providers.own]
kind = "existing"
[admins.ops]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO1pQ0a1vd3dDd8kS9vX2qf1tS2V7yY3mJcW7dQp0Kz ops@example.org"]
sources = ["198.51.100.0/24"]
[hosts.old]
provider = "own"
image = "debian-13"
public = true
address = "203.0.113.7"
[services.shop]
module = "app"
host = "old"
options = { image = "ghcr.io/example/shop:1.4.2" }
"#;

/// docker-ce and containerd.io as Docker's repository installs them (the relations that
/// matter here, from docker-ce-packaging's deb/common/control).
const DOCKER_CE: &str = "Package: containerd.io
Status: install ok installed
Architecture: amd64
Version: 1.7.22-1
Provides: containerd, runc
Conflicts: containerd, runc
Replaces: containerd, runc
Description: An open and reliable container runtime

Package: docker-ce
Status: install ok installed
Architecture: amd64
Version: 5:27.3.1-1~debian.13~trixie
Depends: containerd.io (>= 1.6.24)
Conflicts: docker.io
Replaces: docker.io
Description: Docker: the open-source application container engine
";

/// trixie's Docker packages as the image declares them, with their relations to the above.
const REPOSITORY: &str = "Package: docker.io
Version: 26.1.5+dfsg1-9+b9
Architecture: amd64
Depends: containerd (>= 1.6~), runc (>= 1.1~)
Filename: ./docker.io.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000000
Description: Linux container runtime

Package: docker-cli
Version: 26.1.5+dfsg1-9+b9
Architecture: amd64
Filename: ./docker-cli.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000000
Description: Linux container runtime -- client

Package: docker-compose
Version: 2.26.1-4
Architecture: amd64
Filename: ./docker-compose.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000000
Description: define and run multi-container Docker applications with YAML

Package: containerd
Version: 1.7.24~ds1-6+b4
Architecture: amd64
Filename: ./containerd.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000000
Description: daemon to control runC

Package: runc
Version: 1.1.15+ds1-2+b4
Architecture: amd64
Filename: ./runc.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000000
Description: Open Container Project - runtime
";

/// The provisioner's shell functions and its packages step, from the built provision.sh.
fn packages_step() -> (String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(sys.join("system.toml"), SYSTEM).unwrap();
    let result = build(&sys, &tmp.path().join("store"), &tmp.path().join("result"));
    let script = std::fs::read_to_string(result.join("hosts/old/provision.sh")).unwrap();
    // log and die, then every function (the payload check between them needs the payload)
    let logging = script.lines().filter(|l| l.starts_with("log() {") || l.starts_with("die() {")).collect::<Vec<_>>().join("\n");
    let start = script.find("\n# installed PACKAGE").expect("the functions");
    let packages = script.find("\n# Packages.\n").expect("the packages step");
    let end = packages + 1 + script[packages + 1..].find("\n# ").expect("the next step");
    (format!("{logging}\n{}", &script[start..packages]), script[packages..end].to_string())
}

/// A machine for apt and the stand-ins: `installed` is dpkg's status (apt's and `dpkg-query`'s),
/// `compose` whether `docker compose version` works.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new(installed: &str, compose: bool) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["lists/partial", "cache/archives/partial", "repo", "etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "bin"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("status"), installed).unwrap();
        std::fs::write(d.join("repo/Packages"), REPOSITORY).unwrap();
        std::fs::write(d.join("etc/sources.list"), format!("deb [trusted=yes] file:{} ./\n", d.join("repo").display())).unwrap();
        let p = |s: &str| d.join(s).display().to_string();
        std::fs::write(
            d.join("apt.conf"),
            format!(
                "Dir::State::status \"{}\";\nDir::State::Lists \"{}\";\nDir::Cache \"{}\";\nDir::Etc \"{}\";\n\
                 Dir::Etc::SourceList \"{}\";\nDir::Etc::SourceParts \"{}\";\nDir::Etc::Parts \"{}\";\n\
                 Dir::Etc::PreferencesParts \"{}\";\nDebug::NoLocking \"true\";\nAPT::Get::Simulate \"true\";\n\
                 APT::Architecture \"amd64\";\nAPT::Architectures {{ \"amd64\"; }};\n",
                p("status"),
                p("lists"),
                p("cache"),
                p("etc"),
                p("etc/sources.list"),
                p("etc/sources.list.d"),
                p("etc/apt.conf.d"),
                p("etc/preferences.d"),
            ),
        )
        .unwrap();
        // Stand-in: dpkg-query -W -f '${Status}' PACKAGE, answered from the status file (every
        // base package counts as installed: only Docker's are under test).
        let status = p("status");
        write_exe(
            &d.join("bin/dpkg-query"),
            &format!(
                "#!/bin/sh\nfor last; do :; done\ncase $last in docker*|containerd*|runc) grep -qx \"Package: $last\" {status} || exit 1 ;; esac\nprintf 'install ok installed'\n"
            ),
        );
        // Stand-in: docker compose version.
        write_exe(&d.join("bin/docker"), &format!("#!/bin/sh\n[ \"$1 $2\" = 'compose version' ] && exit {}\nexit 2\n", u8::from(!compose)));
        Machine { dir }
    }

    /// Runs `functions` and then `body` under dash; (success, stdout + stderr).
    #[allow(clippy::disallowed_methods)] // the stand-ins go before the test's own PATH
    fn run(&self, functions: &str, body: &str) -> (bool, String) {
        let d = self.dir.path();
        let path = format!("{}:{}", d.join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let out = run(Command::new("dash")
            .arg("-c")
            .arg(format!("set -eu\n{functions}\n{body}"))
            .env("PATH", path)
            .env("APT_CONFIG", d.join("apt.conf"))
            .env("LC_ALL", "C"));
        (out.status.success(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
    }
}

fn write_exe(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_server_running_docker_ce_keeps_it() {
    let (functions, step) = packages_step();
    let (ok, out) = Machine::new(DOCKER_CE, true).run(&functions, &step);
    assert!(ok, "{out}");
    assert!(out.contains("kiln: docker-ce is installed: using it, not docker.io docker-cli docker-compose"), "{out}");
    assert!(!out.contains("installing:"), "apt is not asked for Docker: {out}");
}

#[test]
fn docker_ce_without_compose_v2_stops_the_provisioner_saying_why() {
    let (functions, step) = packages_step();
    let (ok, out) = Machine::new(DOCKER_CE, false).run(&functions, &step);
    assert!(!ok, "{out}");
    assert!(
        out.contains("kiln: error: docker-ce (Docker's own package) is installed without Compose v2: install docker-compose-plugin"),
        "{out}"
    );
    assert!(!out.contains("installing:"), "{out}");
}

/// apt_install never lets apt remove a package: asked for docker.io beside docker-ce, real apt
/// says it would have to remove docker-ce and containerd.io, and the provisioner stops.
#[test]
fn apt_removes_nothing_to_install_a_conflicting_package() {
    let (functions, _) = packages_step();
    let machine = Machine::new(DOCKER_CE, true);
    let (ok, out) = machine.run(&functions, "apt_install docker.io");
    assert!(!ok, "{out}");
    assert!(out.contains("Packages need to be removed but remove is disabled"), "apt's own word: {out}");
    assert!(out.contains("kiln: error: apt-get install docker.io failed (above); the provisioner lets apt remove no package"), "{out}");
    // what the flag prevents: the same install without it removes docker-ce
    let (plain, out) = machine.run("", "apt-get update -q && apt-get install -y -q --no-install-recommends docker.io");
    assert!(plain && out.contains("Remv docker-ce"), "{out}");
}

/// Without docker-ce the distribution's Docker is installed as before.
#[test]
fn a_server_without_docker_gets_the_distributions() {
    let (functions, step) = packages_step();
    let (ok, out) = Machine::new("", true).run(&functions, &step);
    assert!(ok, "{out}");
    assert!(out.contains("kiln: installing: docker.io docker-cli docker-compose"), "{out}");
    assert!(out.contains("Inst docker.io"), "apt (simulating) installs it: {out}");
}
