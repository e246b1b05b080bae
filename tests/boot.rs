//! End to end: a host that runs Caddy natively, serving a page and proxying to a local
//! service, booted with `kiln boot` in qemu from the test base image
//! (scripts/build-test-image). Cloud-init must finish from NoCloud with no warning and no
//! error, the provisioner's marker must hold the closure, the firewall must hold exactly the
//! derived rules, sshd must refuse passwords, and the route must answer through the
//! forwarded port; its data volume (`--data-disk`) must outlive the machine: a replacement
//! booted from a clean disk finds it, not formatted again.

mod common;
#[path = "common/vm.rs"]
mod vm;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;
use vm::ssh;

/// The fixture system with a fresh admin key; returns the system directory and the key.
fn fixture(tmp: &Path) -> (PathBuf, PathBuf) {
    vm::fixture(&repo().join("tests/fixtures/boot/web"), tmp)
}

fn modules() -> PathBuf {
    repo().join("tests/fixtures/boot/modules")
}

fn identity() -> PathBuf {
    repo().join("tests/fixtures/keys/examples.agekey")
}

/// The host's one secret value, and how it travels in user-data.
fn secret_forms(sys: &Path) -> Vec<Vec<u8>> {
    use base64::Engine;
    let ids = kiln::sops::load_identities(&std::fs::read_to_string(identity()).unwrap()).unwrap();
    let sops = std::fs::read_to_string(sys.join("secrets.sops.yaml")).unwrap();
    let token = kiln::sops::decrypt(&sops, kiln::sops::Format::Yaml, &ids).unwrap().remove("hello_token").unwrap();
    assert!(token.len() >= 8, "a secret long enough to search for");
    vec![token.clone().into_bytes(), base64::engine::general_purpose::STANDARD.encode(&token).into_bytes()]
}

/// Files under `dir` (but the machine's own disk) that hold a secret, and files or
/// directories others could read.
fn exposed(dir: &Path, secrets: &[Vec<u8>]) -> Vec<String> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).min_depth(1).into_iter().filter_map(|e| e.ok()) {
        let meta = match e.path().symlink_metadata() {
            Ok(m) => m,
            Err(_) => continue, // removed meanwhile
        };
        if meta.permissions().mode() & 0o077 != 0 && !meta.file_type().is_socket() {
            out.push(format!("{} is mode {:o}", e.path().display(), meta.permissions().mode() & 0o777));
        }
        // the machine's own disk (and its raw copy, read after power-off) holds its secrets
        if !meta.is_file() || e.file_name() == "overlay.qcow2" || e.file_name() == "disk.raw" {
            continue;
        }
        let bytes = std::fs::read(e.path()).unwrap_or_default();
        if secrets.iter().any(|s| bytes.windows(s.len()).any(|w| w == &s[..])) {
            out.push(format!("{} holds a secret", e.path().display()));
        }
    }
    out
}

fn temp_is_empty(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
}

const MOUNT: &str = "/var/lib/kiln/data";
const KEPT: &str = "/var/lib/kiln/data/kept-by-test";
/// Caddy's internal CA (tls = "internal"), under its home as the Debian package sets it.
const CADDY_ROOT: &str = "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt";

/// `kiln boot web SYS --keep --json --state STATE --data-disk DISK` with `TMPDIR=temp`,
/// started (its output piped), under `path` when given.
fn boot_kept(sys: &Path, state: &Path, disk: &Path, temp: &Path, path: Option<&std::ffi::OsStr>) -> std::process::Child {
    let mut c = kiln();
    if let Some(p) = path {
        c.env("PATH", p);
    }
    c.env("TMPDIR", temp).arg("--modules").arg(modules()).arg("--identity").arg(identity());
    c.arg("boot").arg("web").arg(sys).args(["--keep", "--json", "--timeout", "600"]).arg("--state").arg(state).arg("--data-disk").arg(disk);
    c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    c.spawn().unwrap()
}

/// What the machine says about its data volume: the mount's source and type, the volume's
/// label and UUID, and what holds Caddy's home (with the disk's device name as `DISK`).
fn volume(key: &Path, port: u64) -> (String, String, String, String) {
    let sh = |cmd: &str| ssh(key, port, cmd).trim().to_string();
    let dev = sh("readlink -f /dev/disk/by-id/virtio-kiln-data");
    assert!(dev.starts_with("/dev/vd"), "the data disk by its serial: {dev}");
    let mount = sh(&format!("findmnt -no SOURCE,FSTYPE {MOUNT}")).replace(&dev, "DISK");
    let label = sh("sudo blkid -o value -s LABEL /dev/disk/by-id/virtio-kiln-data");
    let uuid = sh("sudo blkid -o value -s UUID /dev/disk/by-id/virtio-kiln-data");
    let caddy = sh("findmnt -no SOURCE /var/lib/caddy").replace(&dev, "DISK");
    (mount, label, uuid, caddy)
}

/// Caddy makes its internal CA when it first manages the route's certificate.
fn caddy_root(key: &Path, port: u64) -> String {
    let start = std::time::Instant::now();
    loop {
        let out = ssh(key, port, &format!("sudo sha256sum {CADDY_ROOT} 2>/dev/null || true")).trim().to_string();
        if !out.is_empty() {
            return out;
        }
        assert!(start.elapsed().as_secs() < 90, "Caddy made no internal CA under {CADDY_ROOT}");
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
}

/// How often the provisioner formatted the data volume, by its log.
fn formatted(key: &Path, port: u64) -> usize {
    ssh(key, port, "sudo cat /var/log/cloud-init-output.log").lines().filter(|l| l.contains("kiln: formatting the data volume")).count()
}

/// A stateful host (the `boot/data` fixture: the `web` host on Hetzner, so with a data
/// volume) booted for real, then replaced. Each boot is minutes under TCG, so one test holds
/// what the two boots prove:
/// - the first boot, watched from outside until kiln returns: its first qemu crashes (a
///   stand-in qemu aborts it, as TCG's own assertions have) and kiln starts the machine again
///   from a fresh disk and says so; until cloud-init has fetched it, the seed's user-data with
///   the secrets (private) is the one file of the work directory that may hold a secret;
/// - cloud-init finishes from NoCloud with no warning and no error, the provisioner's marker
///   holds the closure, the secret reached the service (mode 400), the firewall holds exactly
///   the derived rules, sshd refuses passwords, fail2ban runs, the route answers through the
///   forwarded port;
/// - the empty data disk (`--data-disk`, a file kiln creates) is formatted once (ext4
///   labelled `kiln-data`), mounted at /var/lib/kiln/data, Caddy's home bound onto it;
/// - `kiln boot --down` powers the kept machine off, forgets it and removes its work directory;
/// - a fresh machine (a new overlay on the base image, as a replaced server starts from a
///   clean disk) with the same data disk mounts it again without formatting it (same UUID) and
///   finds the file written on the first and Caddy's certificate authority from the first.
#[test]
fn a_host_boots_clean_in_a_vm_and_its_replacement_finds_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let (sys, key) = vm::fixture(&repo().join("tests/fixtures/boot/data"), tmp.path());
    let modules = modules();
    let secrets = secret_forms(&sys);
    let temp = tmp.path().join("temp");
    std::fs::create_dir(&temp).unwrap();
    let state_dir = tmp.path().join("state");
    let disk = tmp.path().join("data.qcow2");
    let crashing = vm::path_with_crashing_qemu(tmp.path(), "kiln-boot-web", 0);

    // The first boot, watched from outside.
    let mut child = boot_kept(&sys, &state_dir, &disk, &temp, Some(&crashing));
    let mut seen = Vec::new();
    while child.try_wait().unwrap().is_none() {
        seen.extend(exposed(&temp, &secrets).into_iter().filter(|e| !e.ends_with("/seed/user-data.with-secrets holds a secret")));
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let out = child.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("kiln boot: {}", text(&out.stderr)));
    eprintln!("boot: cloud-init finished after {:.1} s", report["boot_seconds"].as_f64().unwrap());
    let machine = vm::Machine::from_report(&report);
    let workdir = machine.workdir.clone();
    assert!(out.status.success(), "kiln boot reported problems: {report}\n{}", text(&out.stderr));
    seen.dedup();
    assert_eq!(seen, Vec::<String>::new(), "secrets or open permissions seen during the boot");
    let crashes = report["crashes"].as_array().unwrap();
    assert_eq!(crashes.len(), 1, "the stand-in qemu crashed once: {report}");
    assert!(crashes[0].as_str().unwrap().starts_with("qemu crashed (SIGABRT) "), "{report}");
    assert!(crashes[0].as_str().unwrap().contains("stand-in qemu: Assertion failed"), "{report}");
    assert_eq!(report["data_disk"].as_str(), Some(disk.to_str().unwrap()), "{report}");
    assert_eq!(report["data_disk_created"], true, "{report}");
    // the machine runs on; its work directory holds no secret outside the machine's own disk
    assert_eq!(exposed(&workdir, &secrets), Vec::<String>::new());
    // the secrets were served once; the host's own user-data stays for its next boot
    assert!(!workdir.join("seed/user-data.with-secrets").exists(), "the seed's secrets were served once and removed");
    assert!(workdir.join("seed/user-data").exists(), "the seed keeps the user-data without the secrets (a reboot asks again)");
    assert!(report["datasource"].as_str().unwrap().starts_with("DataSourceNoCloud"), "{report}");
    assert_eq!(report["warnings"], serde_json::json!([]), "warnings on the serial console");

    let port = report["ports"]["ssh"].as_u64().unwrap();
    let closure = report["closure"].as_str().unwrap();
    assert_eq!(ssh(&key, port, "sudo cat /var/lib/kiln/closure").trim(), closure, "the provisioner's marker");
    let ids = kiln::sops::load_identities(&std::fs::read_to_string(identity()).unwrap()).unwrap();
    let sops = std::fs::read_to_string(sys.join("secrets.sops.yaml")).unwrap();
    let token = kiln::sops::decrypt(&sops, kiln::sops::Format::Yaml, &ids).unwrap().remove("hello_token").unwrap();
    assert_eq!(ssh(&key, port, "sudo cat /etc/hello/token"), token, "the secret reached the host");
    assert_eq!(ssh(&key, port, "sudo stat -c '%a %U' /etc/hello/token /etc/kiln/secrets/hello_token").trim(), "400 root\n400 root");
    let result: Value = serde_json::from_str(&ssh(&key, port, "sudo cat /var/lib/cloud/data/result.json")).unwrap();
    assert_eq!(result["v1"]["errors"], serde_json::json!([]), "cloud-init errors: {result}");

    // the firewall holds exactly the rules kiln derived
    let show = run(kiln().arg("--modules").arg(&modules).arg("show").arg(&sys).arg("--json"));
    let show: Value = serde_json::from_slice(&show.stdout).unwrap();
    let mut expected: Vec<String> = Vec::new();
    for r in show["hosts"]["web"]["firewall"].as_array().unwrap() {
        let port = format!("{}/{}", r["port"], r["protocol"].as_str().unwrap());
        let sources = r["sources"].as_array().unwrap();
        if sources.is_empty() {
            expected.push(format!("{port} Anywhere"));
            expected.push(format!("{port} Anywhere (v6)"));
        }
        for s in sources {
            expected.push(format!("{port} {}", s.as_str().unwrap().trim_end_matches("/32")));
        }
    }
    let status = ssh(&key, port, "sudo ufw status");
    assert!(status.contains("Status: active"), "{status}");
    let mut got: Vec<String> = status
        .lines()
        .filter(|l| l.contains("ALLOW"))
        .map(|l| {
            let (to, from) = l.split_once("ALLOW").unwrap();
            let from = from.split('#').next().unwrap().trim().trim_start_matches("IN").trim();
            let to = to.trim().trim_end_matches(" (v6)");
            format!("{to} {from}")
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "ufw rules:\n{status}");

    let sshd = ssh(&key, port, "sudo sshd -T");
    assert!(sshd.lines().any(|l| l == "passwordauthentication no"), "{sshd}");
    assert!(sshd.lines().any(|l| l == "permitrootlogin no"));
    // fail2ban runs and starts at boot (`enable_now`: enabled by its package, started by kiln)
    assert_eq!(ssh(&key, port, "systemctl is-enabled fail2ban; systemctl is-active fail2ban").trim(), "enabled\nactive");

    let https = report["ports"]["https"].as_u64().unwrap();
    let page = Command::new("curl")
        .args(["-sk", "--max-time", "20", "--resolve", &format!("hello.test:{https}:127.0.0.1")])
        .arg(format!("https://hello.test:{https}/"))
        .output()
        .unwrap();
    assert!(text(&page.stdout).contains("hello from kiln"), "the route answers: {}", text(&page.stdout));

    // the data volume: formatted once, mounted, Caddy's home on it; a file written onto it
    let (mount, label, uuid, caddy) = volume(&key, port);
    assert_eq!(mount, "DISK ext4", "the data disk is mounted at {MOUNT}");
    assert_eq!(label, "kiln-data");
    assert!(!uuid.is_empty());
    assert_eq!(caddy, "DISK[/caddy]", "Caddy's home is bound onto the volume");
    assert_eq!(formatted(&key, port), 1, "the provisioner formatted the empty disk");
    let ca = caddy_root(&key, port);
    assert!(ssh(&key, port, "sudo ls -A /var/lib/kiln/data/caddy/.local/share/caddy/pki").contains("authorities"));
    ssh(&key, port, &format!("echo written-by-the-first-server | sudo tee {KEPT} >/dev/null && sync"));

    // the machine left running is recorded for `kiln boot --down`
    let state: Value =
        serde_json::from_slice(&std::fs::read(report["state"].as_str().expect("a kept machine's state file")).unwrap()).unwrap();
    assert_eq!(state["machines"][0]["pid"], report["pid"], "{state}");
    assert_eq!(state["workdir"].as_str(), workdir.to_str());

    // `kiln boot --down` powers the running machine off, forgets it and removes its work
    // directory
    let state_file = PathBuf::from(report["state"].as_str().unwrap());
    let down = run(kiln().arg("--modules").arg(&modules).arg("boot").arg("--down").arg(&sys).arg("--state").arg(&state_dir));
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert_eq!(text(&down.stdout).trim(), format!("boot-data/web: stopped (pid {})", machine.pid));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", machine.pid)).unwrap_or_default();
    assert!(!text(&cmdline).contains("kiln-boot-web"), "qemu is gone");
    assert!(!workdir.exists());
    assert!(!state_file.exists());
    // stopped and removed by `--down`: nothing left for the guard to power off
    std::mem::forget(machine);
    assert!(disk.is_file(), "the data disk is the caller's: kept");

    // The replacement: a clean overlay on the base image, the same disk.
    let out = boot_kept(&sys, &state_dir, &disk, &temp, None).wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("kiln boot: {}", text(&out.stderr)));
    let second = vm::Machine::from_report(&report);
    assert!(out.status.success(), "kiln boot reported problems: {report}");
    assert_eq!(report["data_disk_created"], false, "{report}");
    let port = second.ssh;
    let again = volume(&key, port);
    assert_eq!(
        again,
        ("DISK ext4".to_string(), "kiln-data".to_string(), uuid, "DISK[/caddy]".to_string()),
        "mounted again, the same filesystem"
    );
    assert_eq!(formatted(&key, port), 0, "the labelled volume is not formatted again");
    assert_eq!(ssh(&key, port, &format!("sudo cat {KEPT}")).trim(), "written-by-the-first-server");
    assert_eq!(caddy_root(&key, port), ca, "Caddy keeps the certificate authority it made on the first server");
    drop(second);
    assert!(disk.is_file());
}

/// A boot that fails or is interrupted leaves nothing behind: the work directory (which held
/// the seed's secrets) is gone when kiln exits, after a boot that timed out and after a Ctrl-C.
/// (A kept machine's work directory, removed by `kiln boot --down`: the test above.)
#[test]
fn a_failed_or_interrupted_boot_leaves_no_work_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (sys, _key) = fixture(tmp.path());
    let temp = tmp.path().join("temp");
    std::fs::create_dir(&temp).unwrap();
    let boot = |extra: &[&str]| {
        let mut c = kiln();
        c.env("TMPDIR", &temp).arg("boot").arg("web").arg(&sys).arg("--modules").arg(modules()).arg("--identity").arg(identity());
        c.args(extra).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };

    // a boot that times out
    let out = boot(&["--timeout", "3"]).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("did not finish"), "{}", text(&out.stderr));
    assert_eq!(temp_is_empty(&temp), Vec::<PathBuf>::new(), "a failed boot leaves its work directory");

    // Ctrl-C while the machine boots
    let child = boot(&[]);
    let start = std::time::Instant::now();
    while temp_is_empty(&temp).first().is_none_or(|w| !w.join("serial.log").exists()) {
        assert!(start.elapsed().as_secs() < 60, "the boot did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("interrupted"), "{}", text(&out.stderr));
    assert_eq!(temp_is_empty(&temp), Vec::<PathBuf>::new(), "an interrupted boot leaves its work directory");
}

/// The accelerator is chosen by booting (src/boot/accel.rs): the probe must see a kernel reach
/// its init under TCG, which always works, and must refuse a kernel that cannot boot — so a
/// KVM that aborts or hangs is never taken for a working one. (Whether KVM itself works
/// depends on the machine; here, a nested guest, it does not.)
#[test]
fn the_accelerator_probe_needs_a_kernel_that_boots() {
    use kiln::boot::accel::{Accel, probe_under};
    #[allow(clippy::disallowed_methods)] // the test finds the image cache as the command line does
    let home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    let image = home.join("kiln/images/debian-12");
    let (kernel, initrd) = (image.join("vmlinuz"), image.join("initrd.img"));
    let tcg = Accel::Tcg { why: String::new() };
    let timeout = std::time::Duration::from_secs(120);
    assert_eq!(probe_under(&tcg, &kernel, &initrd, timeout), Ok(()), "the image's kernel boots to its init under TCG");
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("vmlinuz");
    std::fs::write(&broken, &std::fs::read(&kernel).unwrap()[..4096]).unwrap();
    let err = probe_under(&tcg, &broken, &initrd, timeout).unwrap_err();
    assert!(err.contains("qemu exited"), "a kernel that cannot boot is refused, with qemu's reason: {err}");
    // The verdict on this machine, whichever it is, names its reason when it is not KVM.
    if let Accel::Tcg { why } = kiln::boot::accel::probe(&kernel, &initrd) {
        assert!(!why.is_empty());
        eprintln!("kvm here: {why}");
    }
}
