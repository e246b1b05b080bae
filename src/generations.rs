//! Deployment state outside the store: a system's generations (`<state>/generations/<n>.json`,
//! default state `.kiln/state/<system>`), each recording what was deployed — number, time (read
//! by the command line, never by a build), system hash, store entry, per-host closures, and for
//! a rollback the generation it returned to (`rollback_of`). `kiln plan`
//! compares with the last one, `kiln gc` keeps their entries. Also reads builds back from
//! result links, store entries and manifest or model files for `kiln diff`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pipeline::Manifest;
use crate::plan::Build;
use crate::plan_model::{Facts, MODEL_JSON};

pub const DIR: &str = "generations";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Generation {
    pub number: u64,
    /// When it was recorded, seconds since the Unix epoch.
    pub time: u64,
    pub system: String,
    /// The system hash (`manifest.json`'s `hash`).
    pub hash: String,
    /// The system's store entry (a directory name in the store).
    pub entry: String,
    /// Host → closure hash.
    pub hosts: BTreeMap<String, String>,
    /// `kiln rollback`: the generation whose build this one deployed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
}

/// The file a generation lives in.
pub fn file_of(state: &Path, number: u64) -> PathBuf {
    state.join(DIR).join(format!("{number}.json"))
}

/// Every generation in `state`, oldest first. A file that is not `<n>.json` holding a
/// generation numbered `n` of one system is an error naming it.
pub fn list(state: &Path) -> Result<Vec<Generation>, String> {
    let dir = state.join(DIR);
    let read = match fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read `{}`: {e}", dir.display())),
    };
    let mut out: Vec<Generation> = Vec::new();
    for e in read {
        let e = e.map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // one being written
        }
        let Some(n) = name.strip_suffix(".json").and_then(|n| n.parse::<u64>().ok()) else {
            return Err(format!("`{}` is not a generation file (expected `<number>.json`)", path.display()));
        };
        let text = fs::read_to_string(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let g: Generation = serde_json::from_str(&text).map_err(|e| format!("`{}` is not a valid generation: {e}", path.display()))?;
        if g.number != n {
            return Err(format!("`{}` holds generation {}, not {n}", path.display(), g.number));
        }
        if let Some(first) = out.first()
            && first.system != g.system
        {
            return Err(format!(
                "`{}` records system `{}`, but `{}` records `{}`: one state directory holds one system",
                path.display(),
                g.system,
                file_of(state, first.number).display(),
                first.system
            ));
        }
        out.push(g);
    }
    out.sort_by_key(|g| g.number);
    Ok(out)
}

/// Records `manifest` (whose system entry is `entry`) as the next generation, at `time`.
pub fn add(state: &Path, manifest: &Manifest, entry: &str, time: u64) -> Result<Generation, String> {
    add_marked(state, manifest, entry, time, None)
}

/// [`add`], marking the new generation as a rollback to generation `rollback_of`.
pub fn add_marked(state: &Path, manifest: &Manifest, entry: &str, time: u64, rollback_of: Option<u64>) -> Result<Generation, String> {
    let existing = list(state)?;
    if let Some(last) = existing.last()
        && last.system != manifest.system
    {
        return Err(format!("`{}` holds generations of system `{}`, not `{}`", state.display(), last.system, manifest.system));
    }
    let g = Generation {
        number: existing.last().map_or(1, |g| g.number + 1),
        time,
        system: manifest.system.clone(),
        hash: manifest.hash.clone(),
        entry: entry.to_string(),
        hosts: manifest.hosts.iter().map(|(k, h)| (k.clone(), h.closure.clone())).collect(),
        rollback_of,
    };
    let dir = state.join(DIR);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let path = file_of(state, g.number);
    let tmp = dir.join(format!(".{}.json.tmp", g.number));
    let mut text = serde_json::to_string_pretty(&g).expect("serialises");
    text.push('\n');
    fs::write(&tmp, text)
        .and_then(|()| fs::File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    Ok(g)
}

/// The generation numbered `n`, or the one before the last when `n` is `None` (what `kiln
/// rollback` returns to). An error names what is there.
pub fn pick(state: &Path, n: Option<u64>) -> Result<Generation, String> {
    let gens = list(state)?;
    if gens.is_empty() {
        return Err(format!("`{}` records no generation: nothing was deployed from here yet", state.join(DIR).display()));
    }
    let numbers = || gens.iter().map(|g| g.number.to_string()).collect::<Vec<_>>().join(", ");
    match n {
        Some(n) => gens
            .iter()
            .find(|g| g.number == n)
            .cloned()
            .ok_or_else(|| format!("no generation {n} in `{}` (there are {})", state.join(DIR).display(), numbers())),
        None if gens.len() < 2 => Err(format!(
            "only generation {} is recorded in `{}`: there is no earlier one to return to",
            gens[0].number,
            state.join(DIR).display()
        )),
        None => Ok(gens[gens.len() - 2].clone()),
    }
}

/// The build a generation deployed, read from its entry in the store at `store`.
pub fn build_of(store: &Path, state: &Path, g: &Generation) -> Result<Build, String> {
    let entry = store.join(&g.entry);
    if !entry.is_dir() {
        return Err(format!(
            "`{}` points at store entry `{}`, which is not in `{}` (collected, or another store?)",
            file_of(state, g.number).display(),
            g.entry,
            store.display()
        ));
    }
    let b = read_build(&entry)?;
    if b.manifest.hash != g.hash || b.manifest.system != g.system {
        return Err(format!(
            "`{}` records system `{}` {}, but its entry `{}` holds `{}` {}",
            file_of(state, g.number).display(),
            g.system,
            g.hash,
            entry.display(),
            b.manifest.system,
            b.manifest.hash
        ));
    }
    Ok(b)
}

/// A build from a result link, a store entry, or a `manifest.json` / `model.json` file (the
/// other is read from the same directory).
pub fn read_build(path: &Path) -> Result<Build, String> {
    let dir = if path.is_dir() { path.to_path_buf() } else { path.parent().map(Path::to_path_buf).unwrap_or_default() };
    if !path.exists() {
        return Err(format!("`{}` does not exist", path.display()));
    }
    let manifest_path = dir.join("manifest.json");
    let model_path = dir.join(MODEL_JSON);
    let text = fs::read_to_string(&manifest_path).map_err(|e| format!("cannot read `{}`: {e}", manifest_path.display()))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| format!("`{}` is not a kiln manifest: {e}", manifest_path.display()))?;
    let text = fs::read_to_string(&model_path).map_err(|e| {
        format!("cannot read `{}`: {e} (a build by a kiln without model.json: rebuild it to compare)", model_path.display())
    })?;
    let facts: Facts = serde_json::from_str(&text).map_err(|e| format!("`{}` is not a kiln model: {e}", model_path.display()))?;
    if facts.system != manifest.system {
        return Err(format!("`{}` and `{}` describe different systems", manifest_path.display(), model_path.display()));
    }
    Ok(Build { manifest, facts })
}

/// The entries the last `keep` generations of every state directory deployed (all of them
/// with `None`), for `kiln gc`.
pub fn kept_entries(states: &[PathBuf], keep: Option<usize>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for s in states {
        let gens = list(s)?;
        let skip = keep.map_or(0, |k| gens.len().saturating_sub(k));
        out.extend(gens.into_iter().skip(skip).map(|g| g.entry));
    }
    out.sort();
    out.dedup();
    Ok(out)
}
