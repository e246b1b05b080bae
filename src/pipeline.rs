//! The build pipeline end to end: load → resolve/evaluate → check → render → manifest, and
//! writing the result into the store. Everything before `write` is pure given the inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::borrow::Cow;
use std::collections::BTreeSet;

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

pub enum Outcome {
    Ok(Box<Compiled>),
    Failed(Failed),
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

/// Loads and compiles a system. `Err` is for IO and usage failures, not for bad input.
pub fn compile(path: &Path, opts: &Options) -> Result<Outcome, IoError> {
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
        return Ok(Outcome::Failed(Failed { sources: inputs.sources, diagnostics: all.sorted() }));
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
    match system {
        Some(system) if !all.has_errors() && opts.check_only => {
            // Only a host whose user-data may be too large can add a diagnostic.
            let unsure: Vec<&crate::model::Host> =
                system.hosts.values().filter(|h| !render::user_data_fits_unrendered(&system, h)).collect();
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
            Ok(Outcome::Ok(Box::new(Compiled {
                sources,
                system,
                hosts,
                system_artifacts: Vec::new(),
                manifest,
                warnings: all.sorted(),
                read,
            })))
        }
        Some(system) if !all.has_errors() => {
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
            let system_artifacts = system_artifacts(&system, &hosts, &sources, doc);
            let manifest = manifest(&system, &hosts, &system_artifacts);
            Ok(Outcome::Ok(Box::new(Compiled { sources, system, hosts, system_artifacts, manifest, warnings: all.sorted(), read })))
        }
        _ => Ok(Outcome::Failed(Failed { sources, diagnostics: all.sorted() })),
    }
}

/// Renders `hosts`; hosts are independent, so they are spread over the machine's cores (the
/// result does not depend on how: a map by host name).
fn render_hosts(sys: &System, hosts: &[&crate::model::Host], opts: &render::RenderOptions) -> BTreeMap<String, HostArtifacts> {
    let index = &render::Index::new(sys);
    store::parallel(hosts, |h| (h.name.clone(), render::host(sys, index, h, opts))).into_iter().collect()
}

/// A host whose user-data exceeds its provider's limit, with no store to boot from instead.
fn user_data_budget(sys: &System, hosts: &BTreeMap<String, HostArtifacts>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (name, ha) in hosts {
        let h = &sys.hosts[name];
        let Some(limit) = h.provider_kind.user_data_limit() else { continue };
        let Some(ud) = ha.artifacts.iter().find(|a| a.path == "user-data") else { continue };
        if ud.bytes.len() <= limit {
            continue;
        }
        let mut largest: Vec<&Artifact> = ha.artifacts.iter().filter(|a| a.path != "user-data" && a.path != "bundle.tar.gz").collect();
        largest.sort_by(|a, b| b.bytes.len().cmp(&a.bytes.len()).then(a.path.cmp(&b.path)));
        let top: Vec<String> = largest.iter().take(3).map(|a| format!("{} ({} bytes)", a.path, a.bytes.len())).collect();
        out.push(
            Diagnostic::error(
                "user-data-too-large",
                format!("the user-data of host `{name}` is {} bytes, {} over the {} limit of {limit}", ud.bytes.len(), ud.bytes.len() - limit, h.provider_kind.name()),
            )
            .primary(h.span, "this host's artifacts do not fit")
            .note(format!("largest: {}", top.join(", ")))
            .help("set `store = \"https://…\"` in `[system]`: hosts over the limit then boot a small stage-0 user-data that fetches their bundle by hash"),
        );
    }
    out
}

/// The system's artifacts: `doc` (SYSTEM.md, made beside the hosts), the facts for `kiln plan`
/// and the OpenTofu root, the last two made side by side.
fn system_artifacts(sys: &System, hosts: &BTreeMap<String, HostArtifacts>, sources: &Sources, doc: String) -> Vec<Artifact> {
    let inputs: Vec<render::tofu::HostInput<'_>> = hosts
        .iter()
        .map(|(name, ha)| render::tofu::HostInput {
            host: &sys.hosts[name],
            closure: &ha.closure,
            user_data: ha
                .artifacts
                .iter()
                .find(|a| a.path == "user-data")
                .map(|a| std::str::from_utf8(&a.bytes).unwrap_or(""))
                .unwrap_or(""),
        })
        .collect();
    let (facts, tofu) = std::thread::scope(|scope| {
        let tofu = scope.spawn(|| render::tofu::emit(sys, &inputs));
        let facts = crate::plan_model::to_json(&crate::plan_model::facts(sys, hosts, sources));
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

fn manifest(sys: &System, hosts: &BTreeMap<String, HostArtifacts>, system_artifacts: &[Artifact]) -> Manifest {
    // Every artifact's sha256, host by host on all cores: the store names entries from these
    // (`host_nodes`), so each artifact is hashed here once.
    let listed: Vec<&HostArtifacts> = hosts.values().collect();
    let digests = store::parallel(&listed, |ha| ha.artifacts.iter().map(Artifact::sha256).collect::<Vec<_>>());
    let mut artifacts = Vec::new();
    let mut host_entries = BTreeMap::new();
    for ((name, ha), digests) in hosts.iter().zip(digests) {
        let h = &sys.hosts[name];
        for (a, sha256) in ha.artifacts.iter().zip(digests) {
            artifacts.push(ArtifactEntry {
                path: format!("hosts/{name}/{}", a.path),
                kind: a.kind.name().into(),
                mode: format!("{:04o}", a.mode),
                host: Some(name.clone()),
                sha256,
                size: a.bytes.len(),
            });
        }
        let ud = ha.artifacts.iter().find(|a| a.path == "user-data").map(|a| a.bytes.len()).unwrap_or(0);
        host_entries.insert(
            name.clone(),
            HostEntry {
                closure: ha.closure.clone(),
                provider: h.provider.clone(),
                image: h.image.name.clone(),
                public: h.public,
                addresses: h.addresses.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
                services: h.services.clone(),
                user_data: UserDataSize { size: ud, limit: h.provider_kind.user_data_limit() },
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
        SystemEntry::linking(c, host_entry_names(c))
    }
    /// The system entry given every host's entry name (host, entry), in host order.
    fn linking(c: &Compiled, host_entries: Vec<(String, String)>) -> SystemEntry {
        let links = host_entries.into_iter().map(|(h, e)| (format!("hosts/{h}"), format!("../../{e}"))).collect();
        SystemEntry { manifest: manifest_json(&c.manifest), links }
    }
    fn nodes<'a>(&'a self, c: &'a Compiled) -> Vec<store::Node<'a>> {
        let mut nodes = vec![store::Node::File { path: "manifest.json", mode: 0o644, bytes: self.manifest.as_bytes(), sha256: None }];
        // The system artifacts' manifest entries are the last ones.
        let listed = &c.manifest.artifacts[c.manifest.artifacts.len() - c.system_artifacts.len()..];
        nodes.extend(c.system_artifacts.iter().zip(listed).map(|(a, e)| store::Node::File {
            path: &a.path,
            mode: a.mode,
            bytes: &a.bytes,
            sha256: Some(&e.sha256),
        }));
        nodes.extend(self.links.iter().map(|(p, t)| store::Node::Link { path: p, target: t.clone() }));
        nodes
    }
    fn name(&self, c: &Compiled) -> String {
        Store::entry_name(&store::entry_hash(&self.nodes(c)), &c.system.name)
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
    let system = SystemEntry::linking(c, names);
    let nodes = system.nodes(c);
    entries.push(store::Entry { hash: store::entry_hash(&nodes), name: c.system.name.clone(), nodes });
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
    let entry = store.root.join(SystemEntry::of(c).name(c));
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

pub fn build_json(c: &Compiled, entry: &Path) -> String {
    build_json_of(&c.system.name, &c.manifest.hash, entry, c.hosts.iter().map(|(k, v)| (k.as_str(), v.closure.as_str())).collect())
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
