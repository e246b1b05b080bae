//! Hostile input files: imports, secret files and module files that leave the system
//! directory (by `..` or a symbolic link), FIFOs, devices and oversized files. Each is refused
//! with a clear error, at once, without reading it, and nothing of its content is shown.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Text that stands for a private key outside the system directory: it must never be shown.
const PRIVATE: &str = "PRIVATE-KEY-MATERIAL-7f3a";

const SYSTEM: &str = "[system]\nname = \"hostile\"\ndomains = [\"example.com\"]\n";

/// Runs kiln with a deadline: a read that blocks (a FIFO) or never ends (`/dev/zero`) fails
/// the test instead of hanging it.
fn run_fast(cmd: &mut Command) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run kiln");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("kiln did not finish within 30 s (blocked on a special file?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// A directory holding `sys/` (the system) and `outside/key` (a private file next to it).
fn layout() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sys")).unwrap();
    std::fs::create_dir(tmp.path().join("outside")).unwrap();
    std::fs::write(tmp.path().join("outside/key"), format!("{PRIVATE} = 1\n{PRIVATE}\n")).unwrap();
    tmp
}

fn check_in(dir: &Path, arg: &str) -> (Option<i32>, String) {
    let out = run_fast(common::kiln().current_dir(dir).arg("check").arg(arg));
    (out.status.code(), common::text(&out.stderr))
}

/// `..` out of the directory is refused whether the system is named as `.`, as a relative
/// file or as an absolute path, and the target is never read.
#[test]
fn an_import_leaving_the_directory_is_refused_however_the_system_is_named() {
    let tmp = layout();
    let sys = tmp.path().join("sys");
    std::fs::write(sys.join("system.toml"), format!("imports = [\"../../../../../../etc/passwd\", \"../outside/key\"]\n{SYSTEM}")).unwrap();
    for arg in [".", "system.toml", "./system.toml", sys.to_str().unwrap()] {
        let (code, err) = check_in(&sys, arg);
        assert_eq!(code, Some(1), "{arg}: {err}");
        assert_eq!(err.matches("error[E0006]: import").count(), 2, "{arg}: {err}");
        assert!(err.contains("leaves the system directory"), "{arg}: {err}");
        assert!(!err.contains("root:") && !err.contains(PRIVATE), "{arg}: content shown:\n{err}");
    }
}

/// A symbolic link inside the directory that points out of it is refused like `..`.
#[test]
fn an_import_through_a_link_out_of_the_directory_is_refused() {
    let tmp = layout();
    let sys = tmp.path().join("sys");
    std::os::unix::fs::symlink("../outside/key", sys.join("hosts.toml")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("outside"), sys.join("more")).unwrap();
    std::fs::write(sys.join("system.toml"), format!("imports = [\"hosts.toml\", \"more/key\"]\n{SYSTEM}")).unwrap();
    let (code, err) = check_in(&sys, ".");
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.matches("a link to a file outside the system directory").count(), 2, "{err}");
    assert!(!err.contains(PRIVATE), "content shown:\n{err}");
    // A link that stays inside is followed.
    std::fs::write(sys.join("real.toml"), "[networks.private]\ncidr = \"10.0.0.0/24\"\n").unwrap();
    std::fs::remove_file(sys.join("hosts.toml")).unwrap();
    std::os::unix::fs::symlink("real.toml", sys.join("hosts.toml")).unwrap();
    std::fs::write(sys.join("system.toml"), format!("imports = [\"hosts.toml\"]\n{SYSTEM}")).unwrap();
    let (code, err) = check_in(&sys, ".");
    assert_eq!(code, Some(0), "{err}");
}

/// A FIFO, a link to `/dev/zero` and a file over the size limit: each a located error, fast.
#[test]
fn special_and_oversized_imports_are_refused_fast() {
    let tmp = layout();
    let sys = tmp.path().join("sys");
    mkfifo(&sys.join("fifo.toml"));
    std::os::unix::fs::symlink("/dev/zero", sys.join("zero.toml")).unwrap();
    std::fs::create_dir(sys.join("dir.toml")).unwrap();
    let big = vec![b'#'; kiln::load::MAX_INPUT_BYTES as usize + 1];
    std::fs::write(sys.join("big.toml"), big).unwrap();
    std::fs::write(sys.join("system.toml"), format!("imports = [\"fifo.toml\", \"zero.toml\", \"big.toml\", \"dir.toml\"]\n{SYSTEM}"))
        .unwrap();
    let start = Instant::now();
    let (code, err) = check_in(&sys, ".");
    assert_eq!(code, Some(1), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    assert!(err.contains("system.toml:1:12") && err.contains("it is a FIFO, not a regular file"), "{err}");
    assert!(err.contains("import `zero.toml` leaves the system directory"), "{err}");
    assert!(err.contains("it is larger than 4 MiB"), "{err}");
    assert!(err.contains("it is a directory, not a regular file"), "{err}");
    assert_eq!(err.matches("error[E0006]").count(), 4, "one error each, nothing after: {err}");
}

/// The system file itself: a device, a FIFO or a link out of its directory is refused.
#[test]
fn the_system_file_itself_must_be_a_regular_file_inside_its_directory() {
    let tmp = layout();
    let sys = tmp.path().join("sys");
    let (code, err) = check_in(&sys, "/dev/zero");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    mkfifo(&sys.join("fifo.toml"));
    let (code, err) = check_in(&sys, "fifo.toml");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("it is a FIFO"), "{err}");
    std::os::unix::fs::symlink("../outside/key", sys.join("system.toml")).unwrap();
    for arg in [".", "system.toml"] {
        let (code, err) = check_in(&sys, arg);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("outside its directory") && !err.contains(PRIVATE), "{err}");
    }
}

/// Secret files: a link to a private key outside, a FIFO, `/dev/zero` and an oversized file
/// are refused without being read, and nothing of them is shown.
#[test]
fn secret_files_are_read_only_as_regular_files_inside_the_directory() {
    let tmp = layout();
    let sys = tmp.path().join("sys");
    std::os::unix::fs::symlink("../outside/key", sys.join("key.sops.yaml")).unwrap();
    mkfifo(&sys.join("fifo.sops.yaml"));
    std::os::unix::fs::symlink("/dev/zero", sys.join("zero.age")).unwrap();
    std::fs::write(sys.join("big.sops.json"), vec![b' '; kiln::load::MAX_INPUT_BYTES as usize + 1]).unwrap();
    let mut system = SYSTEM.to_string();
    for (name, file) in [("key", "key.sops.yaml"), ("fifo", "fifo.sops.yaml"), ("zero", "zero.age"), ("big", "big.sops.json")] {
        system.push_str(&format!("\n[secrets.{name}]\nfile = \"{file}\"\n"));
    }
    std::fs::write(sys.join("system.toml"), system).unwrap();
    let (code, err) = check_in(&sys, ".");
    assert_eq!(code, Some(1), "{err}");
    assert!(!err.contains(PRIVATE), "content shown:\n{err}");
    assert!(err.contains("secret file `key.sops.yaml` is refused: a secret file must lie inside the system directory"), "{err}");
    assert!(err.contains("secret file `fifo.sops.yaml` is refused: cannot read it: it is a FIFO"), "{err}");
    assert!(err.contains("secret file `zero.age` is refused: a secret file must lie inside"), "{err}");
    assert!(err.contains("secret file `big.sops.json` is refused: cannot read it: it is larger than 4 MiB"), "{err}");
}

/// Module directories: module files are read bounded and only as regular files; a FIFO or a
/// link in a module directory is not read.
#[test]
fn module_files_are_bounded_and_special_files_skipped() {
    let tmp = layout();
    let modules = tmp.path().join("modules");
    let m = modules.join("tiny");
    std::fs::create_dir_all(&m).unwrap();
    for f in ["module.toml", "index.html.j2"] {
        std::fs::copy(common::repo().join("tests/fixtures/modules/web").join(f), m.join(f)).unwrap();
    }
    let text = std::fs::read_to_string(m.join("module.toml")).unwrap().replace("name = \"web\"", "name = \"tiny\"");
    std::fs::write(m.join("module.toml"), text).unwrap();
    mkfifo(&m.join("fifo.j2"));
    std::os::unix::fs::symlink("../../outside/key", m.join("key.j2")).unwrap();
    let out = run_fast(common::kiln().arg("--modules").arg(&modules).args(["modules", "show", "tiny"]));
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    // Oversized, and named with an escape sequence: refused, the name shown visibly.
    std::fs::write(m.join("\u{1b}[2Jbig.j2"), vec![b'x'; kiln::load::MAX_INPUT_BYTES as usize + 1]).unwrap();
    let out = run_fast(common::kiln().arg("--modules").arg(&modules).args(["modules", "list"]));
    let err = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\u{241b}[2Jbig.j2") && err.contains("larger than 4 MiB"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}
