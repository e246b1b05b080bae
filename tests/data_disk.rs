//! What `kiln boot --data-disk` takes, checked without booting. (A stateful host's data
//! outliving its machine, for real — the `boot/data` fixture booted twice on one data disk,
//! formatted once, found again by the replacement — is tests/boot.rs, which shares its boot
//! with the other boot checks: each boot is minutes under TCG.)

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

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
