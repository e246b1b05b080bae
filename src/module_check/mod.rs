//! `kiln modules check DIR…`: each module of the given module directories is dropped into a
//! minimal system ([`system`]), compiled as a build would, and the files it renders are handed
//! to the judges they name ([`judge`]) — so a module with broken shell, YAML or Caddyfile is
//! caught before a system uses it. IO (a temporary directory, the judges' programs) happens
//! here; what the system looks like and what a judge said are plain data.

pub mod judge;
pub mod system;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::load::{IoError, Origin, library};
use crate::pipeline::{Options, Outcome, compile};
use judge::{Judgement, Verdict};

/// The check of every module in the directories.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Errors in the module files themselves (rendered diagnostics); nothing else was checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_errors: Option<String>,
    pub modules: Vec<ModuleReport>,
}

#[derive(Debug, Serialize)]
pub struct ModuleReport {
    pub name: String,
    pub dir: PathBuf,
    /// Why the module could not be rendered (no system for it, or the build's diagnostics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Built-in module this one replaces, when it has a built-in's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overrides: Option<String>,
    pub files: Vec<FileReport>,
}

/// One rendered file and what its judges said.
#[derive(Debug, Serialize)]
pub struct FileReport {
    /// The path in the host's payload (`files/svc/NAME`, `jobs/…`, `compose.yaml`).
    pub path: String,
    pub judgements: Vec<Judgement>,
}

impl Report {
    /// Some module failed to render or some judge refused a file.
    pub fn failed(&self) -> bool {
        self.load_errors.is_some()
            || self
                .modules
                .iter()
                .any(|m| m.error.is_some() || m.files.iter().flat_map(|f| &f.judgements).any(|j| matches!(j.verdict, Verdict::Fail(_))))
    }
}

/// Checks every module found in `dirs` (each a module directory or a directory of them).
pub fn check(dirs: &[PathBuf]) -> Result<Report, IoError> {
    let lib = library(dirs)?;
    if !lib.diags.is_empty() {
        return Ok(Report { load_errors: Some(crate::diag::render(&lib.sources, &lib.diags, false)), modules: Vec::new() });
    }
    let builtins = library(&[])?;
    let tmp = tempfile::tempdir().map_err(|e| IoError(format!("cannot make a temporary directory: {e}")))?;
    let mut modules = Vec::new();
    for (name, m) in &lib.modules {
        let Origin::Dir(dir) = &m.origin else { continue };
        let work = tmp.path().join(name);
        std::fs::create_dir_all(&work).map_err(|e| IoError(format!("cannot write `{}`: {e}", work.display())))?;
        let mut report = ModuleReport {
            name: name.clone(),
            dir: dir.clone(),
            error: None,
            overrides: builtins.modules.contains_key(name).then(|| name.clone()),
            files: Vec::new(),
        };
        match render_and_judge(&lib, name, dirs, &work) {
            Ok(files) => report.files = files,
            Err(e) => report.error = Some(e),
        }
        modules.push(report);
    }
    Ok(Report { load_errors: None, modules })
}

/// Compiles the module's minimal system in `work`, writes host `h1`'s payload under
/// `work/out` and judges the module's files, its job scripts and the Compose file.
fn render_and_judge(lib: &crate::load::Inputs, name: &str, dirs: &[PathBuf], work: &Path) -> Result<Vec<FileReport>, String> {
    let text = system::system_for(lib, name)?;
    std::fs::write(work.join("system.toml"), &text).map_err(|e| format!("cannot write the check's system: {e}"))?;
    let opts = Options { module_dirs: dirs.to_vec(), ..Options::default() };
    let compiled = match compile(work, &opts).map_err(|e| e.0)? {
        Outcome::Ok(c) => c,
        Outcome::Failed(f) => {
            return Err(format!(
                "the module does not build in a minimal system:\n{text}\n{}",
                crate::diag::render(&f.sources, &f.diagnostics, false)
            ));
        }
    };
    let out = work.join("out");
    let host = compiled.hosts.get("h1").ok_or("the check's host `h1` was not rendered")?;
    for a in &host.artifacts {
        let path = out.join(&a.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot write `{}`: {e}", parent.display()))?;
        }
        std::fs::write(&path, &a.bytes).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    }
    let decl = &lib.modules[name].decl;
    let mut files = Vec::new();
    for f in &decl.files {
        let Some(j) = &f.judge else { continue };
        let path = format!("files/svc/{}", f.name.value);
        files.push(FileReport { judgements: judge::judge(&j.value, &out.join(&path)), path });
    }
    for a in host.artifacts.iter().filter(|a| a.path.starts_with("jobs/kiln-job-svc-") && a.path.ends_with(".sh")) {
        files.push(FileReport { judgements: judge::judge("sh", &out.join(&a.path)), path: a.path.clone() });
    }
    if host.artifacts.iter().any(|a| a.path == "compose.yaml") {
        files.push(FileReport { judgements: vec![judge::compose(&out.join("compose.yaml"))], path: "compose.yaml".into() });
    }
    Ok(files)
}

/// The report as text: a line per module, then each refused file with its judge's words, and
/// the judges that could not run.
pub fn render_text(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    if let Some(e) = &r.load_errors {
        let _ = writeln!(o, "{e}");
        return o;
    }
    for m in &r.modules {
        let judged = m.files.iter().flat_map(|f| &f.judgements);
        let failed = m.error.is_some() || judged.clone().any(|j| matches!(j.verdict, Verdict::Fail(_)));
        let passed = judged.clone().filter(|j| j.verdict == Verdict::Pass).count();
        let _ = writeln!(
            o,
            "{} {} ({}, {passed} judgement{} passed){}",
            if failed { "FAIL" } else { "ok  " },
            m.name,
            m.dir.display(),
            if passed == 1 { "" } else { "s" },
            m.overrides.as_ref().map(|b| format!(" — replaces the built-in module `{b}`")).unwrap_or_default()
        );
        if let Some(e) = &m.error {
            for line in e.lines() {
                let _ = writeln!(o, "    {line}");
            }
        }
        for f in &m.files {
            for j in &f.judgements {
                match &j.verdict {
                    Verdict::Pass => {}
                    Verdict::Fail(said) => {
                        let _ = writeln!(o, "    {}: {} refuses it:", f.path, j.judge);
                        for line in said.lines() {
                            let _ = writeln!(o, "        {line}");
                        }
                    }
                    Verdict::NotRun(why) => {
                        let _ = writeln!(o, "    {}: {} not run ({why})", f.path, j.judge);
                    }
                }
            }
        }
    }
    if r.modules.is_empty() {
        o.push_str("no modules found (a module is a directory holding module.toml)\n");
    }
    o
}
