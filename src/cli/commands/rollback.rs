//! `kiln rollback [GENERATION]`: deploys a recorded generation's build again (default: the one
//! before the last) through `kiln deploy`'s path, recorded as a new generation marked
//! `rollback_of`.

use std::path::Path;
use std::process::ExitCode;

use kiln::pipeline::Options;

use crate::cli::args::{DeployArgs, RolloutArgs};
use crate::cli::commands::deploy::{self, What};
use crate::cli::ui::{Ui, usage_error};

/// `kiln rollback [GENERATION] --system PATH`.
pub(crate) fn rollback(path: &Path, generation: Option<u64>, opts: &Options, ui: Ui, a: &DeployArgs, r: &RolloutArgs) -> ExitCode {
    crate::cli::with_compiled(path, opts, ui, |c| {
        let state = deploy::state_dir(a, &c.system.name);
        match kiln::generations::pick(&state, generation) {
            Ok(g) => deploy::rollout(path, opts, ui, a, r, c, What::Generation(g)),
            Err(e) => usage_error(&format!("rollback: {e}")),
        }
    })
}
