//! Terraform on a built system's OpenTofu root, through scripts/tofu-check: `init`, `validate`
//! and `plan` (or `apply`) against the stand-in providers of tests/tofu/, which serve the real
//! providers' schemas, so Terraform itself type-checks what kiln wrote.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{build, copy_tree, repo, text};

/// Runs scripts/tofu-check on the root in `dir` with `args`: Terraform's output, or `Err` with
/// it when Terraform refuses the root.
pub fn tofu_check(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(repo().join("scripts/tofu-check")).arg(dir).args(args).output().expect("run scripts/tofu-check");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    if out.status.success() { Ok(all) } else { Err(all) }
}

/// Copies a build result's `tofu/main.tf.json` alone into `into` (created), the directory
/// Terraform then runs in.
pub fn root_of(result: &Path, into: &Path) -> PathBuf {
    std::fs::create_dir_all(into).unwrap();
    std::fs::copy(result.join("tofu/main.tf.json"), into.join("main.tf.json")).unwrap();
    into.to_path_buf()
}

/// Terraform's plan of a build result's root (run in `tmp/tf`, written to `tmp/plan.json`), as
/// JSON; panics with Terraform's complaint when it refuses the root.
pub fn plan(result: &Path, tmp: &Path) -> serde_json::Value {
    let dir = root_of(result, &tmp.join("tf"));
    let plan = tmp.join("plan.json");
    if let Err(e) = tofu_check(&dir, &["--plan-out", plan.to_str().unwrap()]) {
        panic!("terraform rejects the root:\n{e}");
    }
    read_plan(&plan)
}

/// A plan file written by `--plan-out`, as JSON.
pub fn read_plan(plan: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(plan).unwrap_or_else(|e| panic!("{}: {e}", plan.display()))).unwrap()
}

/// A system copied into `tmp/sys`, built (`tmp/first`) and applied by Terraform with the
/// stand-in providers (state in `tmp/terraform.tfstate`): ready to be changed, built again
/// and planned from that state.
pub struct Applied {
    /// The system's copy, which a test may change.
    pub sys: PathBuf,
    /// The build that was applied.
    pub first: PathBuf,
    /// The directory Terraform applied its root in.
    pub root: PathBuf,
    state: PathBuf,
    tmp: PathBuf,
}

/// Copies `system` into `tmp/sys`, builds it and has Terraform apply its root.
pub fn applied(system: &Path, tmp: &Path) -> Applied {
    let sys = tmp.join("sys");
    copy_tree(system, &sys);
    let first = build(&sys, &tmp.join("store"), &tmp.join("first"));
    let state = tmp.join("terraform.tfstate");
    let root = root_of(&first, &tmp.join("tf1"));
    tofu_check(&root, &["--apply", "--state", state.to_str().unwrap()]).unwrap_or_else(|e| panic!("apply:\n{e}"));
    Applied { sys, first, root, state, tmp: tmp.to_path_buf() }
}

impl Applied {
    /// Replaces `from` (which must be there) with `to` in the system's `file`, and builds the
    /// system again into `tmp/second`.
    pub fn rebuild_with(&self, file: &str, from: &str, to: &str) -> PathBuf {
        let f = self.sys.join(file);
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains(from), "{file} has no `{from}`");
        std::fs::write(&f, text.replace(from, to)).unwrap();
        build(&self.sys, &self.tmp.join("store"), &self.tmp.join("second"))
    }

    /// Terraform's plan from the applied state to the root in `dir`, kept as `tmp/<name>.json`,
    /// as JSON; panics with Terraform's complaint when it refuses.
    pub fn plan(&self, dir: &Path, name: &str) -> serde_json::Value {
        let out = self.tmp.join(format!("{name}.json"));
        tofu_check(dir, &["--state", self.state.to_str().unwrap(), "--plan-out", out.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("plan:\n{e}"));
        read_plan(&out)
    }
}
