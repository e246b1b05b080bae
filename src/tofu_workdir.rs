//! The OpenTofu working directory of a system, `<state>/tofu/`: the build's OpenTofu root
//! copied in, plus the backend configuration kiln writes (`src/state_backend.rs`). `prepare`
//! stages it in a fresh directory inside the state directory, `plan` runs `init` and
//! `plan -detailed-exitcode` there, and `Staged::install` puts it in place only once both
//! succeeded: a backend that cannot be reached, or a plan that fails, leaves the state
//! directory as it was. `kiln plan --tofu` uses it; `kiln deploy` applies in it.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde_json::Value;

use crate::state_backend::{self, Backend};

/// The file holding kiln's backend configuration, next to the root's `main.tf.json`.
pub const BACKEND_FILE: &str = "kiln_backend.tf.json";
/// The working directory's name inside the state directory.
pub const WORKDIR: &str = "tofu";
const PLAN_FILE: &str = "kiln.tfplan";
const LOCK_FILE: &str = ".terraform.lock.hcl";

/// The files of the working directory, by name: every artifact of the build's `tofu/`
/// directory (`(path in the build, bytes)`), and the backend configuration. Pure.
pub fn files(build_artifacts: &[(String, Vec<u8>)], backend: &Backend) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = build_artifacts
        .iter()
        .filter_map(|(path, bytes)| Some((path.strip_prefix("tofu/")?.to_string(), bytes.clone())))
        .filter(|(name, _)| !name.contains('/') && name != BACKEND_FILE)
        .collect();
    let mut config = serde_json::to_vec_pretty(&state_backend::backend_config(backend)).expect("serialises");
    config.push(b'\n');
    out.push((BACKEND_FILE.to_string(), config));
    out.sort();
    out
}

/// The OpenTofu (or Terraform) program: `flag` when given (a bare name is looked up on
/// `path_var`, the value of `PATH`), else `tofu` on `path_var`, else `terraform`.
pub fn find_program(flag: Option<&Path>, path_var: Option<&OsStr>) -> Result<PathBuf, String> {
    let dirs: Vec<PathBuf> = path_var.map(|p| std::env::split_paths(p).collect()).unwrap_or_default();
    let on_path = |name: &OsStr| dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p));
    if let Some(p) = flag {
        let bare = p.components().count() == 1 && !p.has_root();
        let found = if bare { on_path(p.as_os_str()) } else { is_executable(p).then(|| p.to_path_buf()) };
        return found.ok_or_else(|| format!("no OpenTofu program at `{}`", p.display()));
    }
    ["tofu", "terraform"]
        .iter()
        .find_map(|name| on_path(OsStr::new(name)))
        .ok_or_else(|| "neither `tofu` nor `terraform` is on PATH: install OpenTofu, or name the program with `--tofu=PATH`".to_string())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A working directory written but not yet in place. Dropped without `install`, it is
/// removed, and so is the state directory if staging created it.
pub struct Staged {
    state: PathBuf,
    dir: Option<tempfile::TempDir>,
    created_state: bool,
}

impl Staged {
    /// Where the staged working directory is.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).expect("staged until installed")
    }

    /// Replaces `<state>/tofu/` with the staged directory; returns its path.
    pub fn install(mut self) -> Result<PathBuf, String> {
        let dir = self.dir.take().expect("staged until installed").keep();
        let target = self.state.join(WORKDIR);
        let io = |what: &str, e: std::io::Error| format!("cannot {what} in `{}`: {e}", self.state.display());
        if target.exists() {
            let old = tempfile::Builder::new()
                .prefix(".tofu-old-")
                .tempdir_in(&self.state)
                .map_err(|e| io("move the old working directory", e))?;
            std::fs::rename(&target, old.path().join(WORKDIR)).map_err(|e| io("move the old working directory", e))?;
        }
        std::fs::rename(&dir, &target).map_err(|e| io("put the new working directory in place", e))?;
        self.created_state = false;
        Ok(target)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = d.close();
        }
        if self.created_state {
            let _ = std::fs::remove_dir(&self.state);
        }
    }
}

/// Writes the working directory's files into a fresh directory inside `state` (created when
/// missing), with the provider lock file of the working directory it replaces. The files are
/// plain, writable copies: the store's are read-only.
pub fn prepare(state: &Path, files: &[(String, Vec<u8>)]) -> Result<Staged, String> {
    let created_state = !state.exists();
    std::fs::create_dir_all(state).map_err(|e| format!("cannot create the state directory `{}`: {e}", state.display()))?;
    let mut staged = Staged { state: state.to_path_buf(), dir: None, created_state };
    let dir = tempfile::Builder::new()
        .prefix(".tofu-new-")
        .tempdir_in(state)
        .map_err(|e| format!("cannot create a working directory in `{}`: {e}", state.display()))?;
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).map_err(|e| format!("cannot write `{name}` in `{}`: {e}", dir.path().display()))?;
    }
    // The provider lock file `init` wrote last time: the same provider builds, checksums
    // checked, as OpenTofu recommends committing it.
    let lock = state.join(WORKDIR).join(LOCK_FILE);
    if lock.is_file() {
        std::fs::copy(&lock, dir.path().join(LOCK_FILE)).map_err(|e| format!("cannot copy `{}`: {e}", lock.display()))?;
    }
    staged.dir = Some(dir);
    Ok(staged)
}

/// What OpenTofu plans to do, by resource address.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct TofuPlan {
    /// `plan -detailed-exitcode` said 2.
    pub changes: bool,
    pub create: BTreeSet<String>,
    pub replace: BTreeSet<String>,
    pub update: BTreeSet<String>,
    pub destroy: BTreeSet<String>,
}

/// The resource changes of `tofu show -json PLAN`. Pure.
pub fn parse_plan(show: &Value, changes: bool) -> TofuPlan {
    let mut p = TofuPlan { changes, ..TofuPlan::default() };
    for ch in show["resource_changes"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some(addr) = ch["address"].as_str() else { continue };
        let actions: Vec<&str> =
            ch["change"]["actions"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let set = match (actions.contains(&"create"), actions.contains(&"delete"), actions.contains(&"update")) {
            (true, true, _) => &mut p.replace,
            (true, false, _) => &mut p.create,
            (false, true, _) => &mut p.destroy,
            (false, false, true) => &mut p.update,
            _ => continue,
        };
        set.insert(addr.to_string());
    }
    p
}

/// The resource types that hold data a server's replacement must not take along: volumes,
/// DNS zones (with records kiln does not manage), buckets and managed databases.
pub const DATA_TYPES: &[&str] = &[
    "digitalocean_domain",
    "digitalocean_spaces_bucket",
    "digitalocean_volume",
    "hcloud_volume",
    "hcloud_zone",
    "minio_s3_bucket",
    "scaleway_block_volume",
    "scaleway_object_bucket",
    "scaleway_rdb_database",
    "scaleway_rdb_instance",
];

/// The data-holding resources (`DATA_TYPES`) the plan destroys or replaces, by address. Such a
/// plan is never applied unasked: `prevent_destroy` guards a resource only while the root
/// declares it, so a host or zone removed from the system would otherwise take its data along.
/// Pure.
pub fn data_losses(p: &TofuPlan) -> Vec<String> {
    // `module.NAME.TYPE.NAME`: the type follows the module path.
    let ty = |addr: &str| {
        let mut parts = addr.split('.');
        while let Some(part) = parts.next() {
            if part != "module" {
                return part.to_string();
            }
            parts.next();
        }
        String::new()
    };
    p.destroy
        .iter()
        .chain(&p.replace)
        .filter(|a| DATA_TYPES.contains(&ty(a).as_str()))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Replaces every occurrence of each secret (four characters or longer) in OpenTofu's output
/// with `***`, so an error message never carries a credential. Pure.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

/// OpenTofu's own words, indented: from its first `Error:` (else the last lines), at most 16
/// lines, credentials redacted. Pure.
pub fn excerpt(stdout: &[u8], stderr: &[u8], secrets: &[String]) -> String {
    let text = redact(&format!("{}{}", String::from_utf8_lossy(stderr), String::from_utf8_lossy(stdout)), secrets);
    let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    let start = lines.iter().position(|l| l.trim_start().starts_with("Error:")).unwrap_or(lines.len().saturating_sub(12));
    lines[start..].iter().take(16).map(|l| format!("\n  {l}")).collect()
}

/// Runs `program ARGS` in `dir` as automation (no prompts, no version check) and collects its
/// output.
pub fn run_in(program: &Path, dir: &Path, args: &[&str]) -> Result<std::process::Output, String> {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", program.display()))
}

/// Runs `program init` and `program plan -detailed-exitcode` in the staged directory, and
/// reads the plan back with `show -json` (the saved plan file is removed: it may hold
/// variable values). `secrets` are redacted from any error.
pub fn plan(program: &Path, staged: &Staged, backend: &Backend, secrets: &[String]) -> Result<TofuPlan, String> {
    let dir = staged.path();
    let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "tofu".into());
    let run = |args: &[&str]| run_in(program, dir, args);
    let init = run(&["init", "-input=false", "-no-color"])?;
    if !init.status.success() {
        let what = match backend {
            Backend::Local => format!("could not read {}", backend.describe(&staged.state)),
            Backend::S3(_) => format!(
                "could not reach the state backend {}: is it up, does the bucket exist, are the credentials in the environment?",
                backend.describe(&staged.state)
            ),
        };
        return Err(format!("`{name} init` {what}{}", excerpt(&init.stdout, &init.stderr, secrets)));
    }
    let plan = run(&["plan", "-input=false", "-no-color", "-detailed-exitcode", &format!("-out={PLAN_FILE}")])?;
    let changes = match plan.status.code() {
        Some(0) => false,
        Some(2) => true,
        _ => return Err(format!("`{name} plan` failed{}", excerpt(&plan.stdout, &plan.stderr, secrets))),
    };
    let show = run(&["show", "-json", "-no-color", PLAN_FILE]);
    let _ = std::fs::remove_file(dir.join(PLAN_FILE));
    let show = show?;
    if !show.status.success() {
        return Err(format!("`{name} show -json` failed{}", excerpt(&show.stdout, &show.stderr, secrets)));
    }
    let v: Value = serde_json::from_slice(&show.stdout).map_err(|e| format!("`{name} show -json` printed no JSON: {e}"))?;
    Ok(parse_plan(&v, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workdir_holds_the_root_and_the_backend() {
        let art = vec![("tofu/main.tf.json".to_string(), b"{}".to_vec()), ("hosts/a/user-data".to_string(), b"x".to_vec())];
        let f = files(&art, &Backend::Local);
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [BACKEND_FILE, "main.tf.json"]);
        let v: Value = serde_json::from_slice(&f[0].1).unwrap();
        assert_eq!(v["terraform"]["backend"]["local"]["path"], state_backend::LOCAL_STATE);
    }

    #[test]
    fn plans_are_read_by_action() {
        let show = serde_json::json!({ "resource_changes": [
            { "address": "hcloud_server.a", "change": { "actions": ["delete", "create"] } },
            { "address": "hcloud_server.b", "change": { "actions": ["create"] } },
            { "address": "hcloud_volume.a", "change": { "actions": ["no-op"] } },
            { "address": "hcloud_firewall.a", "change": { "actions": ["update"] } },
            { "address": "hcloud_server.c", "change": { "actions": ["delete"] } },
        ]});
        let p = parse_plan(&show, true);
        assert_eq!(p.replace.iter().collect::<Vec<_>>(), ["hcloud_server.a"]);
        assert_eq!(p.create.iter().collect::<Vec<_>>(), ["hcloud_server.b"]);
        assert_eq!(p.update.iter().collect::<Vec<_>>(), ["hcloud_firewall.a"]);
        assert_eq!(p.destroy.iter().collect::<Vec<_>>(), ["hcloud_server.c"]);
    }

    #[test]
    fn the_program_is_tofu_before_terraform_and_a_bare_name_is_looked_up() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        for p in [a.join("terraform"), b.join("tofu")] {
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(find_program(None, Some(&path)).unwrap(), b.join("tofu"));
        assert_eq!(find_program(Some(Path::new("terraform")), Some(&path)).unwrap(), a.join("terraform"));
        assert!(find_program(Some(&a.join("tofu")), Some(&path)).unwrap_err().contains("no OpenTofu program"));
        assert!(find_program(None, None).unwrap_err().contains("--tofu=PATH"));
    }

    #[test]
    fn destroying_or_replacing_data_is_a_loss_and_servers_are_not() {
        let show = serde_json::json!({ "resource_changes": [
            { "address": "hcloud_server.db", "change": { "actions": ["delete", "create"] } },
            { "address": "hcloud_volume.db", "change": { "actions": ["delete"] } },
            { "address": "hcloud_zone.example_org", "change": { "actions": ["create", "delete"] } },
            { "address": "hcloud_volume_attachment.db", "change": { "actions": ["delete"] } },
            { "address": "scaleway_rdb_instance.main", "change": { "actions": ["update"] } },
            { "address": "minio_s3_bucket.media[\"x\"]", "change": { "actions": ["delete"] } },
        ]});
        assert_eq!(data_losses(&parse_plan(&show, true)), ["hcloud_volume.db", "hcloud_zone.example_org", "minio_s3_bucket.media[\"x\"]"]);
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(redact("key AKIAXYZ secret s3cr3t!", &["s3cr3t!".into(), "AKIAXYZ".into(), "x".into()]), "key *** secret ***");
    }

    #[test]
    fn a_failed_staging_leaves_no_trace() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let staged = prepare(&state, &files(&[], &Backend::Local)).unwrap();
        assert!(staged.path().join(BACKEND_FILE).is_file());
        drop(staged);
        assert!(!state.exists(), "the state directory staging created is gone again");
        std::fs::create_dir_all(state.join("generations")).unwrap();
        let staged = prepare(&state, &files(&[], &Backend::Local)).unwrap();
        let installed = staged.install().unwrap();
        assert!(installed.join(BACKEND_FILE).is_file());
        let again = prepare(&state, &files(&[("tofu/main.tf.json".into(), b"{}".to_vec())], &Backend::Local)).unwrap().install().unwrap();
        assert!(again.join("main.tf.json").is_file());
        let left: Vec<_> = std::fs::read_dir(&state).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "generations and tofu, nothing staged left over: {left:?}");
    }
}
