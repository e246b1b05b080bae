//! Input loading, the only file reading before the store: system files (following imports),
//! built-in and user modules, base image definitions. Everything read lands in [`Sources`].
//! Files are read only when, with every symbolic link resolved, they are regular files inside
//! their directory and no larger than [`MAX_INPUT_BYTES`]; a refused file is never read.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
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
    /// Some input could not be read or parsed at all (a TOML syntax error, an import that
    /// cannot be read, a module that did not load): what resolve would say about the rest
    /// follows from that, so the pipeline stops after load.
    pub incomplete: bool,
    /// Every system file, import and secret file read, as [`crate::cache::Observed`] (the
    /// warm-build cache's key; module directories are keyed from the options).
    pub read: Vec<crate::cache::Observed>,
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
    /// The version of the built-in module of the same name this `--modules` module replaces.
    pub overrides: Option<String>,
}

#[derive(Debug, Clone, Default)]
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

/// An IO failure message, with control characters in the paths it names shown visibly (it
/// goes to the terminal as it is).
fn io_err(message: String) -> IoError {
    IoError(crate::diag::visible(&message).into_owned())
}

/// The most bytes kiln reads from any one input file (system file, module file, secret file).
pub const MAX_INPUT_BYTES: u64 = 4 << 20;

/// Why an input file was not read. Carries nothing of the file's content.
#[derive(Debug)]
pub enum ReadError {
    Missing,
    /// With every link resolved, the file lies outside the directory it must stay in.
    Outside,
    /// A directory, FIFO, socket or device: only regular files are read.
    NotRegular(&'static str),
    TooLarge,
    Io(std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Missing => write!(f, "no such file"),
            ReadError::Outside => write!(f, "it resolves to a file outside the system directory"),
            ReadError::NotRegular(kind) => write!(f, "it is {kind}, not a regular file"),
            ReadError::TooLarge => write!(f, "it is larger than {} MiB", MAX_INPUT_BYTES >> 20),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

fn io_read_error(e: std::io::Error) -> ReadError {
    if e.kind() == std::io::ErrorKind::NotFound { ReadError::Missing } else { ReadError::Io(e) }
}

fn kind_name(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a plain file"
    }
}

/// Reads `path` if it is a regular file of at most [`MAX_INPUT_BYTES`]. It is opened without
/// blocking (a FIFO swapped in after the check cannot hang the read) and checked again once open.
pub fn read_regular(path: &Path) -> Result<Vec<u8>, ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path).map_err(io_read_error)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind_name(meta.file_type())));
    }
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path).map_err(io_read_error)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind_name(meta.file_type())));
    }
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes).map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

/// Reads `path` if, with every symbolic link resolved, it lies inside `within` (a canonical
/// directory) and is a regular file ([`read_regular`]). Returns the resolved path too.
pub fn read_contained(within: &Path, path: &Path) -> Result<(PathBuf, Vec<u8>), ReadError> {
    let real = std::fs::canonicalize(path).map_err(io_read_error)?;
    if !real.starts_with(within) {
        return Err(ReadError::Outside);
    }
    let bytes = read_regular(&real)?;
    Ok((real, bytes))
}

/// A directory with every link resolved, for [`read_contained`].
pub fn canonical_dir(dir: &Path) -> Result<PathBuf, IoError> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    std::fs::canonicalize(dir).map_err(|e| io_err(format!("cannot read `{}`: {e}", dir.display())))
}

/// Where a system lives: a directory holding `system.toml`, or a `.toml` file.
pub fn system_root(path: &Path) -> Result<(PathBuf, PathBuf), IoError> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(format!("cannot read `{}`: {e}", path.display())))?;
    if meta.is_dir() {
        let f = path.join("system.toml");
        if !f.is_file() {
            return Err(io_err(format!("`{}` has no `system.toml`", path.display())));
        }
        Ok((path.to_path_buf(), f))
    } else {
        Ok((path.parent().map(Path::to_path_buf).unwrap_or_default(), path.to_path_buf()))
    }
}

pub fn load(path: &Path, module_dirs: &[PathBuf], identities: Option<&crate::sops::Identities>) -> Result<Inputs, IoError> {
    let (root, main) = system_root(path)?;
    let real_root = canonical_dir(&root)?;
    let mut inputs = library(module_dirs)?;
    load_system_files(&mut inputs, &real_root, &main)?;
    let files: std::collections::BTreeSet<String> =
        inputs.files.iter().flat_map(|f| &f.secrets).filter_map(|s| s.file.as_ref()).map(|f| f.value.clone()).collect();
    inputs.secret_files = crate::secrets::inspect(&real_root, &files, identities);
    inputs.read.extend(files.iter().map(|f| crate::cache::Observed::secret_file(&real_root, f)));
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
        incomplete: false,
        read: Vec::new(),
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

/// A system file to read: its name as shown (relative where it was given relative) and its
/// path with every link resolved.
struct Pending {
    shown: PathBuf,
    real: PathBuf,
    bytes: Vec<u8>,
}

/// Reads the system file and, transitively, its imports. `root` is canonical; every file must
/// resolve inside it. A file that cannot be read or parsed leaves the inputs `incomplete`, and
/// then nothing is decoded: what the other files would report could be its consequence.
fn load_system_files(inputs: &mut Inputs, root: &Path, main: &Path) -> Result<(), IoError> {
    let (real, bytes) = read_contained(root, main).map_err(|e| match e {
        ReadError::Outside => io_err(format!(
            "`{}` resolves to a file outside its directory `{}`; name the system's real directory",
            main.display(),
            root.display()
        )),
        e => io_err(format!("cannot read `{}`: {e}", main.display())),
    })?;
    inputs.read.push(crate::cache::Observed::file(main, &real, &bytes));
    let mut queue = vec![Pending { shown: main.to_path_buf(), real: real.clone(), bytes }];
    let mut seen: Vec<PathBuf> = vec![real];
    let mut trees = Vec::new();
    while let Some(file) = queue.pop() {
        let Some(id) = add_source(inputs, display(&file.shown), file.shown.clone(), file.bytes) else { continue };
        let node = match tree::parse(id, inputs.sources.text(id)) {
            Ok(n) => n,
            Err(ds) => {
                inputs.diags.extend(ds);
                inputs.incomplete = true;
                continue;
            }
        };
        let shown_dir = file.shown.parent().map(Path::to_path_buf).unwrap_or_default();
        let real_dir = file.real.parent().map(Path::to_path_buf).unwrap_or_default();
        for imp in imports(&node) {
            match read_import(root, &real_dir, &imp) {
                Err(d) => {
                    inputs.diags.push(*d);
                    inputs.incomplete = true;
                }
                Ok((real, bytes)) => {
                    inputs.read.push(crate::cache::Observed::file(&real_dir.join(&imp.value), &real, &bytes));
                    if seen.contains(&real) {
                        continue;
                    }
                    seen.push(real.clone());
                    queue.push(Pending { shown: shown_dir.join(&imp.value), real, bytes });
                }
            }
        }
        trees.push(node);
    }
    if inputs.incomplete {
        return Ok(());
    }
    let sink = Sink::default();
    let stamped = expand::expand(&mut trees, &sink);
    for node in trees.iter().chain(&stamped) {
        inputs.files.push(system::read(node, &sink));
    }
    inputs.diags.extend(sink.take());
    Ok(())
}

/// Adds a file's text to the sources. Text that is not UTF-8 is added with the bad bytes
/// replaced, and reported where the first one is; then the file is not parsed (`None`).
fn add_source(inputs: &mut Inputs, name: String, path: PathBuf, bytes: Vec<u8>) -> Option<FileId> {
    match String::from_utf8(bytes) {
        Ok(text) => Some(inputs.sources.add(name, path, text)),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let id = inputs.sources.add(name, path, text);
            inputs.diags.push(not_utf8(id, at));
            inputs.incomplete = true;
            None
        }
    }
}

fn not_utf8(id: FileId, at: usize) -> Diagnostic {
    Diagnostic::error("E0001", "invalid TOML: the file is not UTF-8 text")
        .primary(Span::new(id, at..at + '\u{fffd}'.len_utf8()), "not UTF-8")
        .help("save the file as UTF-8")
}

/// An import, read: relative to the importing file's directory (`dir`, resolved), and, with
/// every link resolved, a regular file inside the system directory.
fn read_import(root: &Path, dir: &Path, imp: &Sp<String>) -> Result<(PathBuf, Vec<u8>), Box<Diagnostic>> {
    let rel = Path::new(&imp.value);
    let joined = dir.join(rel);
    if rel.is_absolute() || !normal(&joined).starts_with(root) {
        return Err(Box::new(leaves(imp, "outside the system directory")));
    }
    read_contained(root, &joined).map_err(|e| {
        Box::new(match e {
            ReadError::Outside => leaves(imp, "a link to a file outside the system directory"),
            e => Diagnostic::error("E0006", format!("cannot read imported file `{}`", imp.value)).primary(imp.span, e.to_string()),
        })
    })
}

fn leaves(imp: &Sp<String>, label: &str) -> Diagnostic {
    Diagnostic::error("E0006", format!("import `{}` leaves the system directory", imp.value))
        .primary(imp.span, label)
        .help("a build reads only its declared inputs: keep imported files next to `system.toml`")
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
        let files: Vec<(String, PathBuf, Vec<u8>)> =
            files.into_iter().map(|(f, t)| (f.to_string(), PathBuf::from(format!("modules/{name}/{f}")), t.as_bytes().to_vec())).collect();
        add_module(inputs, name, files, Origin::Builtin);
    }
}

/// A user module directory: either one module (holding `module.toml`) or a directory of modules.
fn load_module_dir(inputs: &mut Inputs, dir: &Path) -> Result<(), IoError> {
    if !dir.is_dir() {
        return Err(io_err(format!("module directory `{}` does not exist", dir.display())));
    }
    let mut module_dirs = Vec::new();
    if dir.join("module.toml").is_file() {
        module_dirs.push(dir.to_path_buf());
    } else {
        let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io_err(format!("cannot read `{}`: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("module.toml").is_file())
            .collect();
        subs.sort();
        module_dirs.extend(subs);
    }
    for mdir in module_dirs {
        let name = mdir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let real = canonical_dir(&mdir)?;
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(&mdir).sort_by_file_name().follow_links(false) {
            let entry = entry.map_err(|e| io_err(format!("cannot read `{}`: {e}", mdir.display())))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(&mdir).unwrap().to_string_lossy().replace('\\', "/");
            let (_, bytes) =
                read_contained(&real, entry.path()).map_err(|e| io_err(format!("cannot read `{}`: {e}", entry.path().display())))?;
            files.push((rel, entry.path().to_path_buf(), bytes));
        }
        add_module(inputs, &name, files, Origin::Dir(mdir.clone()));
    }
    Ok(())
}

/// A module from its files (path relative to the module directory, path as shown, bytes).
/// A module that does not load leaves the inputs `incomplete`: services using it would only
/// report that it is unknown.
fn add_module(inputs: &mut Inputs, dir_name: &str, files: Vec<(String, PathBuf, Vec<u8>)>, origin: Origin) {
    let mut manifest = None;
    let mut templates = BTreeMap::new();
    for (rel, path, bytes) in files {
        let Some(id) = add_source(inputs, display(&path), path, bytes) else { continue };
        if rel == "module.toml" {
            manifest = Some(id);
        } else {
            templates.insert(rel, (id, inputs.sources.text(id).to_string()));
        }
    }
    let Some(file) = manifest else { return };
    let node = match tree::parse(file, inputs.sources.text(file)) {
        Ok(n) => n,
        Err(ds) => {
            inputs.diags.extend(ds);
            inputs.incomplete = true;
            return;
        }
    };
    let sink = Sink::default();
    let decl = module::read(&node, &sink);
    inputs.diags.extend(sink.take());
    let Some(decl) = decl else {
        inputs.incomplete = true;
        return;
    };
    if decl.name.value != dir_name {
        inputs.diags.push(
            Diagnostic::error("E0007", format!("module `{}` lives in a directory named `{dir_name}`", decl.name.value))
                .primary(decl.name.span, "does not match the directory")
                .help(format!("rename the module to `{dir_name}` or its directory to `{}`", decl.name.value)),
        );
        inputs.incomplete = true;
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
    let overrides = inputs.modules.get(dir_name).filter(|m| m.origin == Origin::Builtin).map(|m| m.decl.version.value.clone());
    inputs.modules.insert(dir_name.to_string(), LoadedModule { decl, file, templates, origin, overrides });
}

/// A span covering nothing, for diagnostics about whole files.
pub fn file_span(id: FileId) -> Span {
    Span { file: id, start: 0, end: 0 }
}
