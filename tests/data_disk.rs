//! A stateful host's data outlives its server, for real: the `boot/data` fixture (a Hetzner
//! host with a native Caddy edge and `disks`) is booted under qemu with `kiln boot
//! --data-disk` and a fresh, empty disk. The provisioner must find the disk, format it once
//! (ext4 labelled `kiln-data`), mount it at /var/lib/kiln/data and bind Caddy's home onto it.
//! A file is written onto the mount over SSH, the machine is powered off, and a fresh machine
//! (a new overlay on the base image, as a replaced server starts from a clean disk) boots with
//! the same data disk: it is mounted again, not formatted again (same filesystem UUID), and
//! holds the file and Caddy's certificate authority from the first machine.

mod common;
#[path = "common/vm.rs"]
mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use vm::Machine;

const MOUNT: &str = "/var/lib/kiln/data";
const KEPT: &str = "/var/lib/kiln/data/kept-by-test";
/// Caddy's internal CA (tls = "internal"), under its home as the Debian package sets it.
const CADDY_ROOT: &str = "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt";

fn ssh(key: &Path, port: u64, cmd: &str) -> String {
    vm::ssh(key, port, cmd).trim().to_string()
}

/// The fixture system with a fresh admin key; returns the system directory and the key.
fn fixture(tmp: &Path) -> (PathBuf, PathBuf) {
    vm::fixture(&repo().join("tests/fixtures/boot/data"), tmp)
}

fn boot(sys: &Path, disk: &Path) -> (Machine, Value) {
    let out = run(kiln()
        .arg("--modules")
        .arg(repo().join("tests/fixtures/boot/modules"))
        .arg("--identity")
        .arg(repo().join("tests/fixtures/keys/examples.agekey"))
        .arg("boot")
        .arg("web")
        .arg(sys)
        .arg("--data-disk")
        .arg(disk)
        .args(["--keep", "--json", "--timeout", "600", "--state"])
        .arg(disk.with_extension("state")));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("kiln boot: {}", text(&out.stderr)));
    let machine = Machine::from_report(&report);
    eprintln!("boot: cloud-init finished after {:.1} s", report["boot_seconds"].as_f64().unwrap());
    assert!(out.status.success(), "kiln boot reported problems: {report}");
    assert_eq!(report["data_disk"].as_str(), Some(disk.to_str().unwrap()), "{report}");
    (machine, report)
}

/// What the machine says about its data volume: the mount's source and type, the volume's
/// label and UUID, and what holds Caddy's home (with the disk's device name as `DISK`).
fn volume(key: &Path, m: &Machine) -> (String, String, String, String) {
    let dev = ssh(key, m.ssh, "readlink -f /dev/disk/by-id/virtio-kiln-data");
    assert!(dev.starts_with("/dev/vd"), "the data disk by its serial: {dev}");
    let mount = ssh(key, m.ssh, &format!("findmnt -no SOURCE,FSTYPE {MOUNT}")).replace(&dev, "DISK");
    let label = ssh(key, m.ssh, "sudo blkid -o value -s LABEL /dev/disk/by-id/virtio-kiln-data");
    let uuid = ssh(key, m.ssh, "sudo blkid -o value -s UUID /dev/disk/by-id/virtio-kiln-data");
    let caddy = ssh(key, m.ssh, "findmnt -no SOURCE /var/lib/caddy").replace(&dev, "DISK");
    (mount, label, uuid, caddy)
}

/// Caddy makes its internal CA when it first manages the route's certificate.
fn caddy_root(key: &Path, m: &Machine) -> String {
    let start = Instant::now();
    loop {
        let out = ssh(key, m.ssh, &format!("sudo sha256sum {CADDY_ROOT} 2>/dev/null || true"));
        if !out.is_empty() {
            return out;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "Caddy made no internal CA under {CADDY_ROOT}");
        std::thread::sleep(Duration::from_secs(3));
    }
}

fn formatted(key: &Path, m: &Machine) -> usize {
    ssh(key, m.ssh, "sudo cat /var/log/cloud-init-output.log").lines().filter(|l| l.contains("kiln: formatting the data volume")).count()
}

#[test]
fn a_replaced_machine_finds_its_data_on_the_same_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let (sys, key) = fixture(tmp.path());
    let disk = tmp.path().join("data.qcow2");

    // first server: an empty disk, created by kiln, formatted and mounted by the provisioner
    let (first, report) = boot(&sys, &disk);
    assert_eq!(report["data_disk_created"], true, "{report}");
    let (mount, label, uuid, caddy) = volume(&key, &first);
    assert_eq!(mount, "DISK ext4", "the data disk is mounted at {MOUNT}");
    assert_eq!(label, "kiln-data");
    assert!(!uuid.is_empty());
    assert_eq!(caddy, "DISK[/caddy]", "Caddy's home is bound onto the volume");
    assert_eq!(formatted(&key, &first), 1, "the provisioner formatted the empty disk");
    let ca = caddy_root(&key, &first);
    assert!(ssh(&key, first.ssh, "sudo ls -A /var/lib/kiln/data/caddy/.local/share/caddy/pki").contains("authorities"));
    ssh(&key, first.ssh, &format!("echo written-by-the-first-server | sudo tee {KEPT} >/dev/null && sync"));
    drop(first);
    assert!(disk.is_file(), "the data disk is the caller's: kept");

    // second server: a clean overlay on the base image, the same disk
    let (second, report) = boot(&sys, &disk);
    assert_eq!(report["data_disk_created"], false, "{report}");
    let again = volume(&key, &second);
    assert_eq!(
        again,
        ("DISK ext4".to_string(), "kiln-data".to_string(), uuid, "DISK[/caddy]".to_string()),
        "mounted again, the same filesystem"
    );
    assert_eq!(formatted(&key, &second), 0, "the labelled volume is not formatted again");
    assert_eq!(ssh(&key, second.ssh, &format!("sudo cat {KEPT}")), "written-by-the-first-server");
    assert_eq!(caddy_root(&key, &second), ca, "Caddy keeps the certificate authority it made on the first server");
    drop(second);
    assert!(disk.is_file());
}

/// What `--data-disk` takes, checked without booting (a stand-in image directory whose kernel
/// qemu cannot load): a missing file is created as an empty qcow2, private; a file that is
/// neither a qcow2 image nor a raw one holding the `kiln-data` filesystem is refused and left
/// as it was (the provisioner would format it); a host without a data volume refuses the flag.
#[test]
fn data_disk_takes_only_disks() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("image");
    std::fs::create_dir(&image).unwrap();
    for f in ["base.raw", "vmlinuz", "initrd.img"] {
        std::fs::write(image.join(f), b"").unwrap();
    }
    let boot = |system: &str, disk: &Path| {
        run(kiln()
            .arg("--modules")
            .arg(repo().join("tests/fixtures/boot/modules"))
            .arg("--identity")
            .arg(repo().join("tests/fixtures/keys/examples.agekey"))
            .arg("boot")
            .arg("web")
            .arg(repo().join("tests/fixtures/boot").join(system))
            .arg("--image")
            .arg(&image)
            .arg("--data-disk")
            .arg(disk))
    };
    let reached_qemu = |out: &std::process::Output| text(&out.stderr).contains("qemu exited");

    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, "the caller's own file\n").unwrap();
    let out = boot("data", &notes);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a data disk"), "{}", text(&out.stderr));
    assert!(!reached_qemu(&out));
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "the caller's own file\n", "left as it was");

    let fresh = tmp.path().join("fresh.qcow2");
    let out = boot("data", &fresh);
    assert!(reached_qemu(&out), "{}", text(&out.stderr));
    let info = run(Command::new("qemu-img").args(["info", "--output=json"]).arg(&fresh));
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], 1u64 << 30);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600, "the host's data is private");

    let raw = tmp.path().join("volume.raw");
    let st =
        Command::new("mkfs.ext4").args(["-q", "-L", "kiln-data"]).arg(&raw).arg("8M").stdout(std::process::Stdio::null()).status().unwrap();
    assert!(st.success());
    assert!(reached_qemu(&boot("data", &raw)), "a raw image of the data volume is taken");

    let out = boot("data", &tmp.path().join("a,b.qcow2"));
    assert!(text(&out.stderr).contains("commas"), "{}", text(&out.stderr));

    let out = boot("web", &tmp.path().join("unused.qcow2"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("has no data volume"), "{}", text(&out.stderr));
    assert!(!tmp.path().join("unused.qcow2").exists());
}
