//! The build pipeline end to end: load → resolve/evaluate → check → render → manifest, and
//! writing the result into the store. Everything before `write` is pure given the inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::diag::{Diagnostic, Severity, Sources};
use crate::load::{self, IoError};
use crate::model::System;
use crate::render::{self, Artifact, HostArtifacts, hex};
use crate::store::{self, Store};

pub const KILN_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Default)]
pub struct Options {
    pub module_dirs: Vec<PathBuf>,
    pub render: render::RenderOptions,
    /// An age identity file's text (`--identity`): secret files are then decrypted and their
    /// MACs verified during the build (values dropped at once).
    pub identity: Option<String>,
    /// Compile for `kiln check`: every diagnostic, and nothing else. Hosts are rendered only
    /// where that can report something (a user-data that may not fit its provider's limit), no
    /// bundle, system artifact or manifest is made: the [`Compiled`] it returns has only the
    /// model, the sources and the warnings, and must not be written.
    pub check_only: bool,
}

/// A successful compile: the model, every host's artifacts and the manifest.
pub struct Compiled {
    pub sources: Sources,
    pub system: System,
    pub hosts: BTreeMap<String, HostArtifacts>,
    /// Artifacts of the whole system (the OpenTofu root), paths relative to the result.
    pub system_artifacts: Vec<Artifact>,
    pub manifest: Manifest,
    pub warnings: Vec<Diagnostic>,
    /// The files the build read (system files, imports, secret files), for the warm-build cache.
    pub read: Vec<crate::cache::Observed>,
}

/// A compile that found errors in the input (all of them).
pub struct Failed {
    pub sources: Sources,
    pub diagnostics: Vec<Diagnostic>,
}

/// What a compile (or a build into the store, [`build`]) came to.
pub enum Outcome<T = Compiled> {
    Ok(Box<T>),
    Failed(Failed),
}

/// A system built straight into the store by [`build`]: what a [`Compiled`] holds but the
/// artifacts' bytes, which went into the store as each host was rendered.
pub struct Stored {
    pub sources: Sources,
    pub system: System,
    pub manifest: Manifest,
    pub warnings: Vec<Diagnostic>,
    /// The files the build read, for the warm-build cache.
    pub read: Vec<crate::cache::Observed>,
    pub store: Store,
    /// The system entry's path.
    pub entry: PathBuf,
    /// The store held as a writer, from before the first entry was staged: keep it until the
    /// entry's root is registered (`kiln gc` cannot take the entry between).
    pub held: store::WriterLock,
}

/// `manifest.json`: what a build produced. Its `hash` is [`manifest_hash`]; `kiln pull` reads
/// one back with [`verify_manifest`], which accepts only the exact bytes kiln writes.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub system: String,
    pub hash: String,
    pub kiln: String,
    pub hosts: BTreeMap<String, HostEntry>,
    pub artifacts: Vec<ArtifactEntry>,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub closure: String,
    pub provider: String,
    pub image: String,
    pub public: bool,
    pub addresses: BTreeMap<String, String>,
    pub services: Vec<String>,
    pub user_data: UserDataSize,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct UserDataSize {
    pub size: usize,
    pub limit: Option<usize>,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct ArtifactEntry {
    pub path: String,
    pub kind: Cow<'static, str>,
    /// File mode as octal (`"0755"` for executables).
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub sha256: String,
    pub size: usize,
}

/// A system loaded, resolved and checked without errors: what rendering starts from.
struct Front {
    sources: Sources,
    system: System,
    diags: crate::diag::Diagnostics,
    read: Vec<crate::cache::Observed>,
}

/// Loads, resolves and checks a system: `Err(Failed)` with every diagnostic when it has errors.
fn front(path: &Path, opts: &Options) -> Result<Result<Front, Failed>, IoError> {
    let identities = match &opts.identity {
        Some(text) => Some(crate::sops::load_identities(text).map_err(|e| IoError(format!("identity: {e}")))?),
        None => None,
    };
    let mut inputs = load::load(path, &opts.module_dirs, identities.as_ref())?;
    let read = std::mem::take(&mut inputs.read);
    if inputs.incomplete {
        // A file that did not parse (or could not be read) is the cause of whatever resolve
        // would say next, as after a syntax error in rustc: report it alone.
        let mut all = crate::diag::Diagnostics::default();
        all.extend(inputs.diags);
        return Ok(Err(Failed { sources: inputs.sources, diagnostics: all.sorted() }));
    }
    let mut diags = inputs.diags.clone();
    let (system, resolve_diags) = crate::resolve::resolve(&inputs);
    diags.extend(resolve_diags);
    if let Some(sys) = &system {
        let checked = !diags.iter().any(|d| d.severity == Severity::Error);
        if checked {
            diags.extend(crate::check::run(sys, &inputs));
        }
        diags = crate::check::apply_allows(sys, diags, checked);
    }
    let mut all = crate::diag::Diagnostics::default();
    all.extend(diags);
    let sources = inputs.sources;
    Ok(match system {
        Some(system) if !all.has_errors() => Ok(Front { sources, system, diags: all, read }),
        _ => Err(Failed { sources, diagnostics: all.sorted() }),
    })
}

/// Loads and compiles a system. `Err` is for IO and usage failures, not for bad input.
pub fn compile(path: &Path, opts: &Options) -> Result<Outcome, IoError> {
    let Front { sources, system, diags: mut all, read } = match front(path, opts)? {
        Ok(f) => f,
        Err(failed) => return Ok(Outcome::Failed(failed)),
    };
    if opts.check_only {
        // Only a host whose user-data may be too large can add a diagnostic.
        // (on both cores: the stage-0 user-data of a thousand hosts is a thousand YAML documents)
        let hosts: Vec<&crate::model::Host> = system.hosts.values().collect();
        let fits = crate::store::parallel(&hosts, |h| render::user_data_fits_unrendered(&system, h));
        let unsure: Vec<&crate::model::Host> = hosts.iter().zip(fits).filter(|(_, fits)| !fits).map(|(h, _)| *h).collect();
        all.extend(user_data_budget(&system, &render_hosts(&system, &unsure, &opts.render)));
        if all.has_errors() {
            return Ok(Outcome::Failed(Failed { sources, diagnostics: all.sorted() }));
        }
        let manifest = Manifest {
            system: system.name.clone(),
            hash: String::new(),
            kiln: KILN_VERSION.into(),
            hosts: BTreeMap::new(),
            artifacts: Vec::new(),
        };
        let hosts = BTreeMap::new();
        return Ok(Outcome::Ok(Box::new(Compiled {
            sources,
            system,
            hosts,
            system_artifacts: Vec::new(),
            manifest,
            warnings: all.sorted(),
            read,
        })));
    }
    // SYSTEM.md needs no host's artifacts: it is written while the hosts render.
    let (hosts, doc) = std::thread::scope(|scope| {
        let doc = scope.spawn(|| render::system_doc::emit(&system));
        let hosts = render_hosts(&system, &system.hosts.values().collect::<Vec<_>>(), &opts.render);
        (hosts, doc.join().expect("SYSTEM.md does not panic"))
    });
    let budget = user_data_budget(&system, &hosts);
    if !budget.is_empty() {
        all.extend(budget);
        return Ok(Outcome::Failed(Failed { sources, diagnostics: all.sorted() }));
    }
    // Every artifact's sha256, host by host on all cores: the store names entries from these
    // (`host_nodes`), so each artifact is hashed here once.
    let listed: Vec<(&String, &HostArtifacts)> = hosts.iter().collect();
    let summaries: BTreeMap<String, HostSummary> =
        store::parallel(&listed, |(name, ha)| ((*name).clone(), HostSummary::of(name, ha))).into_iter().collect();
    let system_artifacts = system_artifacts(&system, &summaries, &sources, doc);
    let manifest = manifest(&system, summaries, &system_artifacts);
    Ok(Outcome::Ok(Box::new(Compiled { sources, system, hosts, system_artifacts, manifest, warnings: all.sorted(), read })))
}

/// Loads, compiles and writes a system into the store at `store_dir`, as [`compile`] then
/// [`write`] would, but each host's entry is hashed and staged as soon as the host is rendered
/// and its bytes dropped: memory does not grow with the artifacts of the fleet. Nothing is
/// visible in the store until every entry is staged: they are then renamed into place, host
/// entries before the system entry that links them. On an error (a user-data over its limit, a
/// store that cannot be written) every staged entry is removed. The store is opened only once
/// the system has no errors.
pub fn build(path: &Path, opts: &Options, store_dir: &Path) -> Result<Outcome<Stored>, IoError> {
    debug_assert!(!opts.check_only, "a check writes nothing");
    let Front { sources, system, diags: mut all, read } = match front(path, opts)? {
        Ok(f) => f,
        Err(failed) => return Ok(Outcome::Failed(failed)),
    };
    let store = Store::open(store_dir).map_err(|e| IoError(format!("cannot open store `{}`: {e}", store_dir.display())))?;
    let write_error = |e: std::io::Error| IoError(format!("cannot write to store `{}`: {e}", store_dir.display()));
    let held = store.writer().map_err(write_error)?;
    let staging = store.staging().map_err(write_error)?;
    let index = &render::Index::new(&system);
    // Set when a host's user-data is over its limit (the build fails: nothing more is staged)
    // or staging failed (nothing more is rendered).
    let (over, broken) = (AtomicBool::new(false), AtomicBool::new(false));
    let hosts: Vec<&crate::model::Host> = system.hosts.values().collect();
    // `Ok(None)`: not rendered, as another host's entry could not be staged.
    let stream = |h: &&crate::model::Host| -> std::io::Result<Option<Streamed>> {
        if broken.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let ha = render::host(&system, index, h, &opts.render);
        let summary = HostSummary::of(&h.name, &ha);
        let budget = host_budget(h, &ha);
        let entry =
            store::Entry { hash: String::new(), name: format!("{}-{}", system.name, h.name), nodes: host_nodes(&ha, &summary.entries) };
        let entry = store::Entry { hash: store::entry_hash(&entry.nodes), ..entry };
        let entry_name = Store::entry_name(&entry.hash, &entry.name);
        if budget.is_some() {
            over.store(true, Ordering::Relaxed);
        }
        let pending = if over.load(Ordering::Relaxed) {
            None
        } else {
            staging.prepare(&entry).inspect_err(|_| broken.store(true, Ordering::Relaxed))?
        };
        Ok(Some(Streamed { summary, entry_name, pending, budget }))
    };
    // SYSTEM.md needs no host's artifacts: it is written while the hosts render.
    let (streamed, doc) = std::thread::scope(|scope| {
        let doc = scope.spawn(|| render::system_doc::emit(&system));
        let streamed = store::parallel(&hosts, stream);
        (streamed, doc.join().expect("SYSTEM.md does not panic"))
    });
    // On an error the pending entries are dropped here, which removes their staging directories.
    let streamed = streamed.into_iter().collect::<std::io::Result<Vec<Option<Streamed>>>>().map_err(write_error)?;
    let streamed: Vec<Streamed> = streamed.into_iter().flatten().collect();
    debug_assert_eq!(streamed.len(), hosts.len(), "a host is skipped only after an error");
    let budget: Vec<Diagnostic> = streamed.iter().filter_map(|s| s.budget.clone()).collect();
    if !budget.is_empty() {
        all.extend(budget);
        return Ok(Outcome::Failed(Failed { sources, diagnostics: all.sorted() }));
    }
    let mut summaries = BTreeMap::new();
    let mut links = Vec::new();
    let mut pending = Vec::new();
    for (h, s) in hosts.iter().zip(streamed) {
        summaries.insert(h.name.clone(), s.summary);
        links.push((h.name.clone(), s.entry_name));
        pending.extend(s.pending);
    }
    let system_artifacts = system_artifacts(&system, &summaries, &sources, doc);
    let manifest = manifest(&system, summaries, &system_artifacts);
    let system_entry = SystemEntry::linking(&manifest, links);
    let entry = system_entry.entry(&manifest, &system_artifacts);
    let path = store.entry_path(&entry);
    pending.extend(staging.prepare(&entry).map_err(write_error)?);
    drop(entry);
    staging.commit(pending).map_err(write_error)?;
    Ok(Outcome::Ok(Box::new(Stored { sources, system, manifest, warnings: all.sorted(), read, store, entry: path, held })))
}

/// A host as [`build`] keeps it once its entry is staged.
struct Streamed {
    summary: HostSummary,
    /// Its store entry's name.
    entry_name: String,
    /// Its staged entry, `None` when the store has it already (or the build fails).
    pending: Option<store::Pending>,
    /// Its user-data over its provider's limit.
    budget: Option<Diagnostic>,
}

/// What the manifest and the system artifacts need of a rendered host: its closure, its
/// user-data (the OpenTofu root holds it) and its artifacts' manifest entries (path, digest,
/// size), in the order rendered.
struct HostSummary {
    closure: String,
    user_data: String,
    user_data_size: usize,
    entries: Vec<ArtifactEntry>,
}

impl HostSummary {
    /// Hashes every artifact of the host `name`.
    fn of(name: &str, ha: &HostArtifacts) -> HostSummary {
        let ud = ha.artifacts.iter().find(|a| a.path == "user-data");
        HostSummary {
            closure: ha.closure.clone(),
            user_data: ud.map(|a| std::str::from_utf8(&a.bytes).unwrap_or("")).unwrap_or("").to_string(),
            user_data_size: ud.map_or(0, |a| a.bytes.len()),
            entries: ha
                .artifacts
                .iter()
                .map(|a| ArtifactEntry {
                    path: format!("hosts/{name}/{}", a.path),
                    kind: a.kind.name().into(),
                    mode: format!("{:04o}", a.mode),
                    host: Some(name.to_string()),
                    sha256: a.sha256(),
                    size: a.bytes.len(),
                })
                .collect(),
        }
    }
}

/// Renders `hosts`; hosts are independent, so they are spread over the machine's cores (the
/// result does not depend on how: a map by host name).
fn render_hosts(sys: &System, hosts: &[&crate::model::Host], opts: &render::RenderOptions) -> BTreeMap<String, HostArtifacts> {
    let index = &render::Index::new(sys);
    store::parallel(hosts, |h| (h.name.clone(), render::host(sys, index, h, opts))).into_iter().collect()
}

/// Hosts whose user-data exceeds their provider's limit, with no store to boot from instead.
fn user_data_budget(sys: &System, hosts: &BTreeMap<String, HostArtifacts>) -> Vec<Diagnostic> {
    hosts.iter().filter_map(|(name, ha)| host_budget(&sys.hosts[name], ha)).collect()
}

/// The error of a host whose user-data exceeds its provider's limit, if it does.
fn host_budget(h: &crate::model::Host, ha: &HostArtifacts) -> Option<Diagnostic> {
    let name = &h.name;
    let limit = h.provider_kind.user_data_limit()?;
    let budget = ha.user_data_budget?;
    let ud = ha.artifacts.iter().find(|a| a.path == "user-data")?;
    if ud.bytes.len() <= budget {
        return None;
    }
    let mut largest: Vec<&Artifact> = ha.artifacts.iter().filter(|a| a.path != "user-data" && a.path != "bundle.tar.gz").collect();
    largest.sort_by(|a, b| b.bytes.len().cmp(&a.bytes.len()).then(a.path.cmp(&b.path)));
    let top: Vec<String> = largest.iter().take(3).map(|a| format!("{} ({} bytes)", a.path, a.bytes.len())).collect();
    Some(
        Diagnostic::error(
            "user-data-too-large",
            format!(
                "the user-data of host `{name}` is {} bytes, {} over the {budget} it may have (the {} limit of {limit}, less {} for the enrolment part `kiln deploy` adds)",
                ud.bytes.len(),
                ud.bytes.len() - budget,
                h.provider_kind.name(),
                limit - budget
            ),
        )
        .primary(h.span, "this host's artifacts do not fit")
        .note(format!("largest: {}{}", top.join(", "), if ha.stage0 { "" } else { "; the user-data carries them gzip-compressed, and is still too large" }))
        .help("set `store = \"https://…\"` in `[system]`: hosts over the limit then boot a small stage-0 user-data that fetches their bundle by hash"),
    )
}

/// The system's artifacts: `doc` (SYSTEM.md, made beside the hosts), the facts for `kiln plan`
/// and the OpenTofu root, the last two made side by side.
fn system_artifacts(sys: &System, hosts: &BTreeMap<String, HostSummary>, sources: &Sources, doc: String) -> Vec<Artifact> {
    let inputs: Vec<render::tofu::HostInput<'_>> = hosts
        .iter()
        .map(|(name, s)| render::tofu::HostInput { host: &sys.hosts[name], closure: &s.closure, user_data: &s.user_data })
        .collect();
    let (facts, tofu) = std::thread::scope(|scope| {
        let tofu = scope.spawn(|| render::tofu::emit(sys, &inputs));
        let closure = |h: &str| hosts.get(h).map(|s| s.closure.as_str());
        let facts = crate::plan_model::to_json(&crate::plan_model::facts_by(sys, closure, sources));
        (facts, tofu.join().expect("the OpenTofu root does not panic"))
    });
    let mut out = vec![Artifact { path: "SYSTEM.md".into(), kind: render::Kind::Doc, mode: 0o644, bytes: doc.into_bytes() }];
    // The facts `kiln plan` and `kiln diff` compare (src/plan_model.rs).
    out.push(Artifact { path: crate::plan_model::MODEL_JSON.into(), kind: render::Kind::Config, mode: 0o644, bytes: facts.into_bytes() });
    if let Some(tf) = tofu {
        out.push(Artifact { path: "tofu/main.tf.json".into(), kind: render::Kind::OpenTofu, mode: 0o644, bytes: tf.into_bytes() });
    }
    out
}

/// The manifest: host artifacts host by host, in host order, each host's in the order rendered,
/// then the system's.
fn manifest(sys: &System, hosts: BTreeMap<String, HostSummary>, system_artifacts: &[Artifact]) -> Manifest {
    let mut artifacts = Vec::new();
    let mut host_entries = BTreeMap::new();
    for (name, s) in hosts {
        let h = &sys.hosts[&name];
        artifacts.extend(s.entries);
        host_entries.insert(
            name,
            HostEntry {
                closure: s.closure,
                provider: h.provider.clone(),
                image: h.image.name.clone(),
                public: h.public,
                addresses: h.addresses.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
                services: h.services.clone(),
                user_data: UserDataSize { size: s.user_data_size, limit: h.provider_kind.user_data_limit() },
            },
        );
    }
    for a in system_artifacts {
        artifacts.push(ArtifactEntry {
            path: a.path.clone(),
            kind: a.kind.name().into(),
            mode: format!("{:04o}", a.mode),
            host: None,
            sha256: a.sha256(),
            size: a.bytes.len(),
        });
    }
    let mut m = Manifest { system: sys.name.clone(), hash: String::new(), kiln: KILN_VERSION.to_string(), hosts: host_entries, artifacts };
    m.hash = manifest_hash(&m);
    m
}

/// The system hash: sha256 of the manifest's compact JSON with an empty `hash`.
pub fn manifest_hash(m: &Manifest) -> String {
    let blank = Manifest { hash: String::new(), ..m.clone() };
    hex(&Sha256::digest(serde_json::to_vec(&blank).expect("manifest serialises")))
}

pub fn manifest_json(m: &Manifest) -> String {
    let mut s = serde_json::to_string_pretty(m).expect("manifest serialises");
    s.push('\n');
    s
}

/// A host's store nodes: its artifacts, each with the sha256 `entries` (its manifest entries,
/// in the same order) give it.
fn host_nodes<'a>(ha: &'a HostArtifacts, entries: &'a [ArtifactEntry]) -> Vec<store::Node<'a>> {
    debug_assert_eq!(ha.artifacts.len(), entries.len());
    ha.artifacts
        .iter()
        .zip(entries)
        .map(|(a, e)| store::Node::File { path: &a.path, mode: a.mode, bytes: &a.bytes, sha256: Some(&e.sha256) })
        .collect()
}

/// Every host with its artifacts and their manifest entries (the manifest lists host artifacts
/// host by host, in host order, each host's in the order rendered).
fn hosts_with_entries(c: &Compiled) -> Vec<(&String, &HostArtifacts, &[ArtifactEntry])> {
    let mut rest = c.manifest.artifacts.as_slice();
    c.hosts
        .iter()
        .map(|(name, ha)| {
            let (mine, after) = rest.split_at(ha.artifacts.len());
            rest = after;
            debug_assert!(mine.iter().all(|e| e.host.as_ref() == Some(name)));
            (name, ha, mine)
        })
        .collect()
}

/// Store entry names of every host, in host order: named by a hash over all their artifacts.
fn host_entry_names(c: &Compiled) -> Vec<(String, String)> {
    hosts_with_entries(c)
        .into_iter()
        .map(|(name, ha, entries)| {
            (name.clone(), Store::entry_name(&store::entry_hash(&host_nodes(ha, entries)), &format!("{}-{name}", c.system.name)))
        })
        .collect()
}

/// The system entry's contents: `manifest.json` and, per host, a link `hosts/<host>` to that
/// host's entry.
struct SystemEntry {
    manifest: String,
    links: Vec<(String, String)>,
}

impl SystemEntry {
    fn of(c: &Compiled) -> SystemEntry {
        SystemEntry::linking(&c.manifest, host_entry_names(c))
    }
    /// The system entry given every host's entry name (host, entry), in host order.
    fn linking(m: &Manifest, host_entries: Vec<(String, String)>) -> SystemEntry {
        let links = host_entries.into_iter().map(|(h, e)| (format!("hosts/{h}"), format!("../../{e}"))).collect();
        SystemEntry { manifest: manifest_json(m), links }
    }
    /// Its nodes, the system's artifacts those `m` lists last.
    fn nodes<'a>(&'a self, m: &'a Manifest, system_artifacts: &'a [Artifact]) -> Vec<store::Node<'a>> {
        let mut nodes = vec![store::Node::File { path: "manifest.json", mode: 0o644, bytes: self.manifest.as_bytes(), sha256: None }];
        // The system artifacts' manifest entries are the last ones.
        let listed = &m.artifacts[m.artifacts.len() - system_artifacts.len()..];
        nodes.extend(system_artifacts.iter().zip(listed).map(|(a, e)| store::Node::File {
            path: &a.path,
            mode: a.mode,
            bytes: &a.bytes,
            sha256: Some(&e.sha256),
        }));
        nodes.extend(self.links.iter().map(|(p, t)| store::Node::Link { path: p, target: t.clone() }));
        nodes
    }
    fn entry<'a>(&'a self, m: &'a Manifest, system_artifacts: &'a [Artifact]) -> store::Entry<'a> {
        let nodes = self.nodes(m, system_artifacts);
        store::Entry { hash: store::entry_hash(&nodes), name: m.system.clone(), nodes }
    }
}

/// Writes host entries and the system entry into the store; returns the system entry's path.
pub fn write(c: &Compiled, store: &Store) -> std::io::Result<PathBuf> {
    let mut entries: Vec<store::Entry<'_>> = hosts_with_entries(c)
        .into_iter()
        .map(|(name, ha, manifest_entries)| {
            let nodes = host_nodes(ha, manifest_entries);
            store::Entry { hash: store::entry_hash(&nodes), name: format!("{}-{name}", c.system.name), nodes }
        })
        .collect();
    // The links name the host entries just named (from the manifest's sha256 of each artifact:
    // no artifact is hashed here).
    let names = c.hosts.keys().zip(&entries).map(|(h, e)| (h.clone(), Store::entry_name(&e.hash, &e.name))).collect();
    let system = SystemEntry::linking(&c.manifest, names);
    entries.push(system.entry(&c.manifest, &c.system_artifacts));
    let paths = store.add_all(&entries)?;
    Ok(paths.last().expect("the system entry").clone())
}

/// The first artifact that differs between two compiles, if any.
pub fn difference(a: &Compiled, b: &Compiled) -> Option<String> {
    if a.manifest == b.manifest {
        return None;
    }
    for (x, y) in a.manifest.artifacts.iter().zip(&b.manifest.artifacts) {
        if x != y {
            return Some(format!("`{}` ({} vs {})", x.path, x.sha256, y.sha256));
        }
    }
    Some("the manifests differ".into())
}

/// Compares a compile with an existing store entry of the same hash, byte for byte.
pub fn differs_from_store(c: &Compiled, store: &Store) -> Option<String> {
    let entry = store.entry_path(&SystemEntry::of(c).entry(&c.manifest, &c.system_artifacts));
    if !entry.exists() {
        return None;
    }
    let m = std::fs::read(entry.join("manifest.json")).ok()?;
    if m != manifest_json(&c.manifest).as_bytes() {
        return Some("manifest.json".into());
    }
    for (name, ha) in &c.hosts {
        for a in &ha.artifacts {
            let p = entry.join("hosts").join(name).join(&a.path);
            if std::fs::read(&p).ok().as_deref() != Some(&a.bytes[..]) {
                return Some(format!("hosts/{name}/{}", a.path));
            }
        }
    }
    None
}

#[derive(Serialize)]
struct BuildJson<'a> {
    system: &'a str,
    hash: &'a str,
    path: String,
    hosts: BTreeMap<&'a str, &'a str>,
}

pub fn build_json(m: &Manifest, entry: &Path) -> String {
    build_json_of(&m.system, &m.hash, entry, m.hosts.iter().map(|(k, v)| (k.as_str(), v.closure.as_str())).collect())
}

/// `kiln build --json`'s line from its parts (a build answered from the cache has no compile).
pub fn build_json_of(system: &str, hash: &str, entry: &Path, hosts: BTreeMap<&str, &str>) -> String {
    serde_json::to_string(&BuildJson { system, hash, path: entry.display().to_string(), hosts }).expect("serialises")
}

pub use crate::show::{show_json, show_text};

/// Reads a manifest fetched from a store and trusts it only as far as it can be checked: it
/// must be exactly the bytes kiln writes for it, its content must hash to `expected` (the
/// system hash asked for, computed as the build computes it, never read from the manifest),
/// and every path must be one `write_pulled` can place without leaving its entry.
pub fn verify_manifest(text: &str, expected: &str) -> Result<Manifest, String> {
    let m: Manifest = serde_json::from_str(text).map_err(|e| format!("the manifest is not one kiln wrote: {e}"))?;
    if manifest_json(&m) != text {
        return Err("the manifest is not in the form kiln writes (reformatted or edited)".into());
    }
    let actual = manifest_hash(&m);
    if actual != expected || m.hash != expected {
        return Err(format!("the manifest's content hashes to {actual}, not the {expected} asked for: the store's copy was altered"));
    }
    check_manifest_paths(&m)?;
    Ok(m)
}

/// Whether `path` is a plain relative path: non-empty components, none `.` or `..`, no
/// control characters, each at most 255 bytes.
pub fn plain_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.chars().any(char::is_control)
        && path.split('/').all(|c| !c.is_empty() && c != "." && c != ".." && c.len() <= 255)
}

/// Every artifact path is plain, unique, not a directory of another, and lies where it belongs:
/// a host's under `hosts/<host>/`, the system's outside `hosts/` and not `manifest.json`.
fn check_manifest_paths(m: &Manifest) -> Result<(), String> {
    let component = |n: &str| plain_relative_path(n) && !n.contains('/');
    if let Some(bad) = std::iter::once(&m.system).chain(m.hosts.keys()).find(|n| !component(n)) {
        return Err(format!("the manifest names {bad:?} as a system or host, which is not a plain name"));
    }
    let mut seen = BTreeSet::new();
    for a in &m.artifacts {
        let p = a.path.as_str();
        if !plain_relative_path(p) {
            return Err(format!("the manifest names {p:?}, which is not a plain relative path"));
        }
        if u32::from_str_radix(&a.mode, 8).map_or(true, |mode| mode & !0o777 != 0) {
            return Err(format!("the manifest gives {p:?} the mode {:?}", a.mode));
        }
        let placed = match &a.host {
            Some(h) => {
                m.hosts.contains_key(h)
                    && p.strip_prefix("hosts/").and_then(|r| r.strip_prefix(h.as_str())).is_some_and(|r| r.starts_with('/'))
            }
            None => !p.starts_with("hosts/") && p != "hosts" && p != "manifest.json",
        };
        if !placed {
            return Err(format!("the manifest places {p:?} outside its entry"));
        }
        if !seen.insert(p) {
            return Err(format!("the manifest names {p:?} twice"));
        }
    }
    for p in &seen {
        let dir = format!("{p}/");
        if seen.range(dir.as_str()..).next().is_some_and(|q| q.starts_with(&dir)) {
            return Err(format!("the manifest names {p:?} both as a file and as a directory"));
        }
    }
    Ok(())
}

/// Writes a pulled closure into the store exactly as `write` does for a build: host entries,
/// then the system entry. `m` comes from [`verify_manifest`]; `files` maps its paths to their
/// (verified) bytes.
pub fn write_pulled(m: &Manifest, files: &BTreeMap<String, Vec<u8>>, store: &Store) -> std::io::Result<PathBuf> {
    let bad = |msg: &str| std::io::Error::other(format!("manifest: {msg}"));
    let manifest_text = manifest_json(m);
    let mode = |a: &ArtifactEntry| u32::from_str_radix(&a.mode, 8).unwrap_or(0o644);
    let mut hosts: BTreeMap<String, Vec<store::Node<'_>>> = BTreeMap::new();
    let mut system_files = Vec::new();
    for a in &m.artifacts {
        let path = a.path.as_str();
        let bytes = files.get(path).ok_or_else(|| bad(&format!("{path} was not fetched")))?;
        match &a.host {
            Some(h) => {
                let rel = path.strip_prefix(&format!("hosts/{h}/")).ok_or_else(|| bad(&format!("{path} is not under its host")))?;
                hosts.entry(h.clone()).or_default().push(store::Node::File { path: rel, mode: mode(a), bytes, sha256: None });
            }
            None => system_files.push(store::Node::File { path, mode: mode(a), bytes, sha256: None }),
        }
    }
    let system = m.system.clone();
    let mut entries = Vec::new();
    let mut links = Vec::new();
    for (h, nodes) in hosts {
        let hash = store::entry_hash(&nodes);
        let name = format!("{system}-{h}");
        links.push((format!("hosts/{h}"), format!("../../{}", Store::entry_name(&hash, &name))));
        entries.push(store::Entry { hash, name, nodes });
    }
    let mut nodes = vec![store::Node::File { path: "manifest.json", mode: 0o644, bytes: manifest_text.as_bytes(), sha256: None }];
    nodes.extend(system_files);
    nodes.extend(links.iter().map(|(p, t)| store::Node::Link { path: p, target: t.clone() }));
    entries.push(store::Entry { hash: store::entry_hash(&nodes), name: system, nodes });
    let paths = store.add_all(&entries)?;
    Ok(paths.last().expect("the system entry").clone())
}
