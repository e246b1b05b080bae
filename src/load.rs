//! Input loading, the only file reading before the store: system files (following imports),
//! built-in and user modules, base image definitions. Everything read lands in [`Sources`].

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::diag::{Diagnostic, FileId, Sources, Span};
use crate::syntax::decode::{Sink, Sp, TableReader};
use crate::syntax::module::{self, ModuleDecl};
use crate::syntax::system::{self, SystemFile};
use crate::syntax::{expand, tree};

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// Everything a build reads, parsed; the resolver needs nothing else.
pub struct Inputs {
    pub sources: Sources,
    pub files: Vec<SystemFile>,
    pub modules: BTreeMap<String, LoadedModule>,
    pub images: BTreeMap<String, ImageDef>,
    pub diags: Vec<Diagnostic>,
    /// Each secret file the system names, as declared → what its reading found.
    pub secret_files: BTreeMap<String, crate::secrets::FileStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    Dir(PathBuf),
}

pub struct LoadedModule {
    pub decl: ModuleDecl,
    pub file: FileId,
    /// template file name → (file id, text); only files inside the module directory.
    pub templates: BTreeMap<String, (FileId, String)>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct ImageDef {
    pub name: String,
    pub family: String,
    pub codename: String,
    pub description: String,
    pub providers: BTreeMap<String, String>,
    pub docker_method: String,
    pub docker_packages: Vec<String>,
}

/// Fatal input problems that are not about the content (missing path, unreadable file).
#[derive(Debug)]
pub struct IoError(pub String);

/// Where a system lives: a directory holding `system.toml`, or a `.toml` file.
pub fn system_root(path: &Path) -> Result<(PathBuf, PathBuf), IoError> {
    let meta = std::fs::metadata(path).map_err(|e| IoError(format!("cannot read `{}`: {e}", path.display())))?;
    if meta.is_dir() {
        let f = path.join("system.toml");
        if !f.is_file() {
            return Err(IoError(format!("`{}` has no `system.toml`", path.display())));
        }
        Ok((path.to_path_buf(), f))
    } else {
        Ok((path.parent().map(Path::to_path_buf).unwrap_or_default(), path.to_path_buf()))
    }
}

pub fn load(path: &Path, module_dirs: &[PathBuf], identities: Option<&crate::sops::Identities>) -> Result<Inputs, IoError> {
    let (root, main) = system_root(path)?;
    let mut inputs = library(module_dirs)?;
    load_system_files(&mut inputs, &root, &main)?;
    let files: std::collections::BTreeSet<String> =
        inputs.files.iter().flat_map(|f| &f.secrets).filter_map(|s| s.file.as_ref()).map(|f| f.value.clone()).collect();
    inputs.secret_files = crate::secrets::inspect(&root, &files, identities);
    Ok(inputs)
}

/// The images and modules (built-in, then each `--modules` directory) without a system.
pub fn library(module_dirs: &[PathBuf]) -> Result<Inputs, IoError> {
    let mut inputs = Inputs {
        sources: Sources::default(),
        files: Vec::new(),
        modules: BTreeMap::new(),
        images: BTreeMap::new(),
        diags: Vec::new(),
        secret_files: BTreeMap::new(),
    };
    load_images(&mut inputs);
    load_builtin_modules(&mut inputs);
    for dir in module_dirs {
        load_module_dir(&mut inputs, dir)?;
    }
    Ok(inputs)
}

fn display(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn load_system_files(inputs: &mut Inputs, root: &Path, main: &Path) -> Result<(), IoError> {
    let text = std::fs::read_to_string(main).map_err(|e| IoError(format!("cannot read `{}`: {e}", main.display())))?;
    let mut queue: Vec<(PathBuf, String)> = vec![(main.to_path_buf(), text)];
    let mut seen: Vec<PathBuf> = vec![normal(main)];
    let mut trees = Vec::new();
    while let Some((path, text)) = queue.pop() {
        let id = inputs.sources.add(display(&path), path.clone(), text);
        let node = match tree::parse(id, inputs.sources.text(id)) {
            Ok(n) => n,
            Err(ds) => {
                inputs.diags.extend(ds);
                continue;
            }
        };
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for imp in imports(&node) {
            match import_path(root, &dir, &imp) {
                Err(d) => inputs.diags.push(*d),
                Ok(p) => {
                    if seen.contains(&normal(&p)) {
                        continue;
                    }
                    seen.push(normal(&p));
                    match std::fs::read_to_string(&p) {
                        Ok(t) => queue.push((p, t)),
                        Err(e) => inputs.diags.push(
                            Diagnostic::error("E0006", format!("cannot read imported file `{}`", imp.value))
                                .primary(imp.span, e.to_string()),
                        ),
                    }
                }
            }
        }
        trees.push(node);
    }
    let sink = Sink::default();
    let stamped = expand::expand(&mut trees, &sink);
    for node in trees.iter().chain(&stamped) {
        inputs.files.push(system::read(node, &sink));
    }
    inputs.diags.extend(sink.take());
    Ok(())
}

/// The `imports` of a file, as far as they are strings (`system::read` reports the rest).
fn imports(node: &tree::Node) -> Vec<Sp<String>> {
    let tree::Value::Table(t) = &node.value else { return Vec::new() };
    let Some(e) = t.get("imports") else { return Vec::new() };
    let tree::Value::Array(items) = &e.value.value else { return Vec::new() };
    items
        .iter()
        .filter_map(|i| match &i.value {
            tree::Value::Str(s) => Some(Sp::new(s.clone(), i.span)),
            _ => None,
        })
        .collect()
}

fn normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Imports are relative to the importing file and may not leave the system directory.
fn import_path(root: &Path, dir: &Path, imp: &Sp<String>) -> Result<PathBuf, Box<Diagnostic>> {
    let rel = Path::new(&imp.value);
    let joined = dir.join(rel);
    let escapes = rel.is_absolute() || !normal(&joined).starts_with(normal(root));
    if escapes {
        return Err(Box::new(
            Diagnostic::error("E0006", format!("import `{}` leaves the system directory", imp.value))
                .primary(imp.span, "outside the system directory")
                .help("a build reads only its declared inputs: keep imported files next to `system.toml`"),
        ));
    }
    Ok(joined)
}

fn load_images(inputs: &mut Inputs) {
    for (path, text) in EMBEDDED.iter().filter(|(p, _)| p.starts_with("images/") && p.ends_with(".toml")) {
        let id = inputs.sources.add(path.to_string(), PathBuf::from(path), text.to_string());
        let node = match tree::parse(id, text) {
            Ok(n) => n,
            Err(ds) => {
                inputs.diags.extend(ds);
                continue;
            }
        };
        let sink = Sink::default();
        if let Some(img) = read_image(&node, &sink) {
            inputs.images.insert(img.name.clone(), img);
        }
        inputs.diags.extend(sink.take());
    }
}

fn read_image(node: &tree::Node, sink: &Sink) -> Option<ImageDef> {
    let mut r = TableReader::new(node, sink, "an image definition")?;
    let head = r.table("image", |mut t| {
        let v = (
            t.req_str("name", "\"debian-12\""),
            t.req_str("family", "\"debian\""),
            t.req_str("codename", "\"bookworm\""),
            t.str("description"),
        );
        t.finish();
        v
    })?;
    let providers = r
        .table("providers", |t| {
            t.entries().iter().filter_map(|e| Some((e.key.clone(), crate::syntax::decode::as_str(&e.value, sink)?.value))).collect()
        })
        .unwrap_or_default();
    let docker = r.table("docker", |mut t| {
        let v = (t.req_str("method", "\"distro\""), t.str_list("packages"));
        t.finish();
        v
    })?;
    r.finish();
    Some(ImageDef {
        name: head.0?.value,
        family: head.1?.value,
        codename: head.2?.value,
        description: head.3.map(|d| d.value).unwrap_or_default(),
        providers,
        docker_method: docker.0?.value,
        docker_packages: docker.1.into_iter().map(|p| p.value).collect(),
    })
}

fn load_builtin_modules(inputs: &mut Inputs) {
    let mut by_module: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (path, text) in EMBEDDED {
        if let Some(rest) = path.strip_prefix("modules/")
            && let Some((name, file)) = rest.split_once('/')
        {
            by_module.entry(name).or_default().push((file, text));
        }
    }
    for (name, files) in by_module {
        let files: Vec<(String, PathBuf, String)> =
            files.into_iter().map(|(f, t)| (f.to_string(), PathBuf::from(format!("modules/{name}/{f}")), t.to_string())).collect();
        add_module(inputs, name, files, Origin::Builtin);
    }
}

/// A user module directory: either one module (holding `module.toml`) or a directory of modules.
fn load_module_dir(inputs: &mut Inputs, dir: &Path) -> Result<(), IoError> {
    if !dir.is_dir() {
        return Err(IoError(format!("module directory `{}` does not exist", dir.display())));
    }
    let mut module_dirs = Vec::new();
    if dir.join("module.toml").is_file() {
        module_dirs.push(dir.to_path_buf());
    } else {
        let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| IoError(format!("cannot read `{}`: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("module.toml").is_file())
            .collect();
        subs.sort();
        module_dirs.extend(subs);
    }
    for mdir in module_dirs {
        let name = mdir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(&mdir).sort_by_file_name().follow_links(false) {
            let entry = entry.map_err(|e| IoError(format!("cannot read `{}`: {e}", mdir.display())))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(&mdir).unwrap().to_string_lossy().replace('\\', "/");
            let text =
                std::fs::read_to_string(entry.path()).map_err(|e| IoError(format!("cannot read `{}`: {e}", entry.path().display())))?;
            files.push((rel, entry.path().to_path_buf(), text));
        }
        add_module(inputs, &name, files, Origin::Dir(mdir.clone()));
    }
    Ok(())
}

fn add_module(inputs: &mut Inputs, dir_name: &str, files: Vec<(String, PathBuf, String)>, origin: Origin) {
    let mut manifest = None;
    let mut templates = BTreeMap::new();
    for (rel, path, text) in files {
        let id = inputs.sources.add(display(&path), path, text.clone());
        if rel == "module.toml" {
            manifest = Some(id);
        } else {
            templates.insert(rel, (id, text));
        }
    }
    let Some(file) = manifest else { return };
    let node = match tree::parse(file, inputs.sources.text(file)) {
        Ok(n) => n,
        Err(ds) => {
            inputs.diags.extend(ds);
            return;
        }
    };
    let sink = Sink::default();
    let decl = module::read(&node, &sink);
    inputs.diags.extend(sink.take());
    let Some(decl) = decl else { return };
    if decl.name.value != dir_name {
        inputs.diags.push(
            Diagnostic::error("E0007", format!("module `{}` lives in a directory named `{dir_name}`", decl.name.value))
                .primary(decl.name.span, "does not match the directory")
                .help(format!("rename the module to `{dir_name}` or its directory to `{}`", decl.name.value)),
        );
        return;
    }
    for f in &decl.files {
        if !templates.contains_key(&f.template.value) {
            inputs.diags.push(
                Diagnostic::error("E0008", format!("template `{}` is not in the module directory", f.template.value))
                    .primary(f.template.span, "no such file in this module"),
            );
        }
    }
    inputs.modules.insert(dir_name.to_string(), LoadedModule { decl, file, templates, origin });
}

/// A span covering nothing, for diagnostics about whole files.
pub fn file_span(id: FileId) -> Span {
    Span { file: id, start: 0, end: 0 }
}
