//! The module language: a module's `module.toml` read into a typed, spanned declaration.

use crate::diag::Span;
use crate::render::quote;
use crate::syntax::decode::{Sink, Sp, TableReader, as_str, as_str_list, typed};
use crate::syntax::system::one_of;
use crate::syntax::tree::{Node, Value};
use crate::types::{self, Duration, Size};

#[derive(Debug, Clone)]
pub struct ModuleDecl {
    pub name: Sp<String>,
    pub version: Sp<String>,
    pub summary: Sp<String>,
    pub description: Option<Sp<String>>,
    pub kind: Sp<ModuleKind>,
    pub edge: Option<Sp<String>>,
    pub options: Vec<OptionDecl>,
    pub container: Option<ContainerDecl>,
    pub native: Option<NativeDecl>,
    pub endpoints: Vec<EndpointDecl>,
    pub volumes: Vec<VolumeDecl>,
    pub healthcheck: Option<HealthDecl>,
    pub requires: Vec<RequireDecl>,
    pub secrets: Vec<SecretSlotDecl>,
    pub metrics: Option<MetricsDecl>,
    pub backup: Option<BackupDecl>,
    pub resources: Option<ResourcesDecl>,
    pub files: Vec<FileDecl>,
    pub forward_auth: Option<ForwardAuthDecl>,
    /// `[jobs.NAME]`: commands run on a schedule (systemd timers).
    pub jobs: Vec<JobDecl>,
    /// `[collect] metrics = true`: the service scrapes every metrics endpoint of the system
    /// (Prometheus); kiln connects it to each and hands the list to its templates as `scrape`.
    pub collect_metrics: bool,
    /// `[collect] rules = "PATH"`: the service evaluates Prometheus alerting rules; kiln derives
    /// them from the system and mounts them at PATH.
    pub collect_rules: Option<Sp<String>>,
    /// `[collect] alerts = true`: the service delivers the system's alerts to the receivers of
    /// `[alerts.receivers]` (Alertmanager); its templates see `receivers`.
    pub collect_alerts: bool,
    /// `[module] first_run_setup`: how a fresh instance hands out its administrator (its first
    /// visitor creates the account, or a default login); a public route to it needs forward
    /// auth or an allow-list (`public-first-run-setup`).
    pub first_run_setup: Option<Sp<String>>,
    /// `[module] first_run_bootstrap = "MODULE.SLOT"`: binding that secret slot on a service
    /// of MODULE (this module, or a companion sharing a connection target with it, such as
    /// authentik's worker) sets the administrator's credential and closes the setup.
    pub first_run_bootstrap: Option<Sp<(String, String)>>,
    /// `[module] embeddable = true`: other applications frame it (an editor, a conference):
    /// the public routes of a service that connects to it may embed it (`frame-ancestors`).
    pub embeddable: bool,
}

/// How an edge asks this service whether a request may pass (Authentik's outposts, oauth2-proxy).
#[derive(Debug, Clone)]
pub struct ForwardAuthDecl {
    pub endpoint: Sp<String>,
    pub uri: Sp<String>,
    /// The path Traefik asks, where it differs from `uri` (Authentik: `/outpost.goauthentik.io/auth/traefik`).
    pub traefik_uri: Option<Sp<String>>,
    /// Request paths the edge sends to this service itself, unchecked (its login callbacks).
    pub paths: Vec<Sp<String>>,
    pub copy_headers: Vec<Sp<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleKind {
    Container,
    Native,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptType {
    String,
    Int,
    Bool,
    Port,
    Duration,
    Size,
    Domain,
    Image,
    Ip,
    Cidr,
    List,
}

impl OptType {
    const NAMES: [&'static str; 11] = ["string", "int", "bool", "port", "duration", "size", "domain", "image", "ip", "cidr", "list"];
    fn parse(s: &str) -> Result<OptType, types::TypeError> {
        Ok(match s {
            "string" => OptType::String,
            "int" => OptType::Int,
            "bool" => OptType::Bool,
            "port" => OptType::Port,
            "duration" => OptType::Duration,
            "size" => OptType::Size,
            "domain" => OptType::Domain,
            "image" => OptType::Image,
            "ip" => OptType::Ip,
            "cidr" => OptType::Cidr,
            "list" => OptType::List,
            _ => return Err(one_of(s, "option type", &OptType::NAMES)),
        })
    }
    pub fn name(self) -> &'static str {
        OptType::NAMES[self as usize]
    }
}

#[derive(Debug, Clone)]
pub struct OptionDecl {
    pub name: Sp<String>,
    pub ty: Sp<OptType>,
    pub default: Option<Node>,
    pub values: Vec<Sp<String>>,
    pub description: Option<Sp<String>>,
    pub example: Option<Node>,
}

/// An integer, or a template string that renders to one (`"{{ options.port }}"`).
#[derive(Debug, Clone)]
pub enum IntOrTpl {
    Int(i64),
    Tpl(String),
}

#[derive(Debug, Clone)]
pub struct ContainerDecl {
    pub span: Span,
    pub image: Option<Sp<String>>,
    pub user: Option<Sp<String>>,
    pub read_only: Option<Sp<bool>>,
    pub tmpfs: Vec<Sp<String>>,
    pub command: Option<Vec<Sp<String>>>,
    pub entrypoint: Option<Vec<Sp<String>>>,
    pub environment: Vec<(Sp<String>, Sp<String>)>,
    pub cap_drop: Vec<Sp<String>>,
    pub cap_add: Vec<Sp<String>>,
    pub stop_grace_period: Option<Sp<Duration>>,
    pub network_mode: Option<Sp<String>>,
    pub docker_socket: Option<Sp<bool>>,
    pub shm_size: Option<Sp<Size>>,
    pub init: Option<Sp<bool>>,
    /// `[container.env_secrets]`: environment variable → secret slot, for images that read a
    /// key only from the environment; delivered through a root-only `env_file` on the host.
    pub env_secrets: Vec<(Sp<String>, Sp<String>)>,
    /// `[container.ulimits]`: name → (soft, hard); -1 is unlimited.
    pub ulimits: Vec<(Sp<String>, i64, i64)>,
    /// Host devices passed in (`/dev/kmsg`, `/dev/dri:/dev/dri:rw`).
    pub devices: Vec<Sp<String>>,
    /// Read-only bind mounts of host paths: (source on the host, target in the container).
    pub host_mounts: Vec<Sp<(String, String)>>,
}

#[derive(Debug, Clone)]
pub struct NativeDecl {
    pub span: Span,
    pub packages: Vec<Sp<String>>,
    pub unit: Option<Sp<String>>,
}

#[derive(Debug, Clone)]
pub struct EndpointDecl {
    pub name: Sp<String>,
    pub port: Sp<IntOrTpl>,
    /// The port published on the host, when it differs from `port` (the container's).
    pub host_port: Option<Sp<IntOrTpl>>,
    pub protocol: Sp<Protocol>,
    pub http: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone)]
pub struct VolumeDecl {
    pub name: Sp<String>,
    pub target: Sp<String>,
    pub backup: bool,
    /// `uid:gid` the volume's directory is given before the service starts.
    pub owner: Option<Sp<(u32, u32)>>,
}

/// `[jobs.NAME]`: a command run on a schedule by a systemd timer.
#[derive(Debug, Clone)]
pub struct JobDecl {
    pub name: Sp<String>,
    pub schedule: Sp<types::Calendar>,
    /// Words, each a template.
    pub command: Vec<Sp<String>>,
    /// The user the command runs as (in the container, or on the host for native modules).
    pub user: Option<Sp<String>>,
    /// Container modules: `exec` in the running container (default) or `run` a one-off
    /// container of the service (same image, volumes, secrets and networks).
    pub container: Sp<JobContainer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobContainer {
    Exec,
    Run,
}

#[derive(Debug, Clone)]
pub struct HealthDecl {
    pub span: Span,
    pub test: Vec<Sp<String>>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

#[derive(Debug, Clone)]
pub struct RequireDecl {
    pub slot: Sp<String>,
    pub modules: Vec<Sp<String>>,
    pub endpoint: Option<Sp<String>>,
    pub optional: bool,
    pub description: Option<Sp<String>>,
    /// What the consumer keeps there: `cache`, `queue`, `session` or `data`.
    pub usage: Option<Sp<String>>,
    /// The consumer's driver uses server-side prepared statements.
    pub prepared_statements: bool,
}

#[derive(Debug, Clone)]
pub struct SecretSlotDecl {
    pub slot: Sp<String>,
    pub description: Option<Sp<String>>,
    pub target: Option<Sp<String>>,
    pub uid: Option<u32>,
    pub optional: bool,
    /// `dns01 = "PROVIDER"`: an edge's credential for DNS-01 in zones at that DNS provider
    /// (lego's provider names, which are kiln's provider kinds).
    pub dns01: Option<Sp<String>>,
    /// `required_when = "OPTION"`: the slot may be left unbound unless that option is set (a
    /// non-empty string or list, `true`, a non-zero number); `"OPTION=VALUE"`: unless it has
    /// that value. Implies `optional`.
    pub required_when: Option<Sp<String>>,
}

#[derive(Debug, Clone)]
pub struct MetricsDecl {
    pub endpoint: Sp<String>,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct BackupDecl {
    pub span: Span,
    pub dump: Option<Vec<Sp<String>>>,
    pub volumes: Vec<Sp<String>>,
}

#[derive(Debug, Clone)]
pub struct ResourcesDecl {
    pub memory: Option<Sp<Size>>,
    pub cpus: Option<Sp<f64>>,
    /// `[resources.fit.OPTION]`: options that size memory inside the service.
    pub fit: Vec<super::memory_fit::FitDecl>,
}

#[derive(Debug, Clone)]
pub struct FileDecl {
    pub name: Sp<String>,
    pub template: Sp<String>,
    pub target: Sp<String>,
    pub mode: u32,
    /// The real program that judges this file in kiln's tests (see `FILE_JUDGES`).
    pub judge: Option<Sp<String>>,
}

/// Judges a module file may name: each is a real tool run by the test suite.
pub const FILE_JUDGES: &[&str] = &["yaml", "json", "toml", "sh", "promtool", "caddy", "traefik-static", "traefik-dynamic"];

fn dur(t: &mut TableReader<'_>, key: &'static str, default: u64) -> Duration {
    let sink = t.sink();
    typed(t.str(key), sink, Duration::parse).map(|d| d.value).unwrap_or(Duration(default))
}

fn str_list_node(n: Option<&Node>, sink: &Sink) -> Option<Vec<Sp<String>>> {
    n.map(|n| as_str_list(n, sink))
}

fn absolute(v: Option<Sp<String>>, sink: &Sink) -> Option<Sp<String>> {
    typed(v, sink, |s| {
        if s.starts_with('/') && !s.split('/').any(|c| c == "..") && !s.contains('\n') {
            Ok(s.to_string())
        } else {
            Err(types::TypeError {
                message: format!("`{s}` is not an absolute path"),
                help: Some("write it like `/etc/app/config.yaml`".into()),
            })
        }
    })
}

fn bad(message: String, help: &str) -> types::TypeError {
    types::TypeError { message, help: Some(help.into()) }
}

/// The name of a module file (`[files.NAME]`), installed as `files/<service>/NAME` and listed
/// in `SHA256SUMS`: a relative, normalised path (no empty, `.` or `..` component) without
/// control characters or backslashes, each component at most 255 bytes.
pub fn parse_file_name(s: &str) -> Result<String, types::TypeError> {
    let help = "name it like `config.yaml` or `conf.d/app.conf`";
    if s.starts_with('/') {
        return Err(bad(format!("file name `{}` is absolute", s.escape_debug()), help));
    }
    if let Some(why) = quote::line_unsafe(s) {
        return Err(bad(format!("file name `{}` is not allowed: {why}", s.escape_debug()), help));
    }
    if s.contains('\\') {
        return Err(bad(format!("file name `{}` contains a backslash", s.escape_debug()), help));
    }
    for c in s.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(bad(format!("file name `{}` is not a normalised relative path (a component is `{c}`)", s.escape_debug()), help));
        }
        if c.len() > 255 {
            return Err(bad(
                format!(
                    "a component of file name `{}…` is {} bytes long; the limit is 255",
                    s.chars().take(40).collect::<String>(),
                    c.len()
                ),
                help,
            ));
        }
    }
    Ok(s.to_string())
}

/// A request path an edge matches or asks (`forward_auth` `uri`, `traefik_uri`, `paths`): `/`
/// then RFC 3986 path characters, with `*` for a prefix. It is written into Caddyfile tokens and
/// Traefik rules, so nothing that could end a token, a rule or a line is allowed.
pub fn parse_url_path(s: &str) -> Result<String, types::TypeError> {
    let ok = s.starts_with('/') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&()*+,;=:@/%?".contains(&b));
    if ok && quote::caddy_unsafe(s).is_none() {
        Ok(s.to_string())
    } else {
        Err(bad(
            format!("`{}` is not a request path", s.escape_debug()),
            "write it like `/oauth2/*`: `/`, then letters, digits and `-._~!$&()*+,;=:@/%?`",
        ))
    }
}

/// An HTTP header name (`forward_auth` `copy_headers`): letters, digits and `-`.
pub fn parse_header_name(s: &str) -> Result<String, types::TypeError> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(s.to_string())
    } else {
        Err(bad(
            format!("`{}` is not an HTTP header name", s.escape_debug()),
            "write it like `X-Auth-Request-User`: letters, digits and `-`",
        ))
    }
}

/// The value of a `string` option (or an item of a `list` option): one line, since module
/// templates write options into line-based languages (INI-like configs, systemd units, sh).
pub fn parse_option_string(s: &str) -> Result<String, types::TypeError> {
    match quote::line_unsafe(s) {
        Some(why) => Err(bad(
            format!("option value `{}` is not allowed: {why}", s.escape_debug()),
            "write the value on one line, without control characters",
        )),
        None => Ok(s.to_string()),
    }
}

/// An environment variable's name (`[container.env_secrets]`): `[A-Za-z_][A-Za-z0-9_]*`, the
/// portable form, which every shell and Compose's env-file parser read as one name.
pub fn parse_env_name(s: &str) -> Result<String, types::TypeError> {
    let ok =
        s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(bad(format!("`{}` is not an environment variable name", s.escape_debug()), "write it like `API_KEY`: letters, digits and `_`"))
    }
}

/// A path on the host or in a container for a mount or a device: absolute, normalised, and
/// made of `A-Za-z0-9._/-` only (it reaches Compose and, for devices, the kernel).
fn plain_path(s: &str, what: &str) -> Result<String, types::TypeError> {
    let ok = s.starts_with('/')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
        && (s == "/" || s[1..].split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
    if ok {
        Ok(s.to_string())
    } else {
        Err(bad(
            format!("`{}` is not a plain absolute {what} path", s.escape_debug()),
            "write it like `/var/log`: `/`, then `A-Za-z0-9._-` components",
        ))
    }
}

/// A read-only host mount, `SOURCE:TARGET` (`/sys:/sys`, `/:/rootfs`).
pub fn parse_host_mount(s: &str) -> Result<(String, String), types::TypeError> {
    let Some((src, dst)) = s.split_once(':') else {
        return Err(bad(format!("`{}` is not `SOURCE:TARGET`", s.escape_debug()), "write it like `/var/log:/var/log` (always read-only)"));
    };
    let dst = plain_path(dst, "container")?;
    if dst == "/" {
        return Err(bad("a host mount cannot replace the container's root".into(), "mount it below, like `/:/rootfs`"));
    }
    Ok((plain_path(src, "host")?, dst))
}

/// Host paths that hand a container control of the host: the Docker socket (a read-only bind
/// mount still lets a process connect to a socket) and the secrets kiln delivers.
pub const SENSITIVE_HOST_PATHS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock", "/etc/kiln/secrets", "/etc/kiln/service-secrets"];

/// Whether mounting `src` exposes one of [`SENSITIVE_HOST_PATHS`] (it is one, or holds one).
pub fn exposes_sensitive(src: &str) -> Option<&'static str> {
    SENSITIVE_HOST_PATHS.iter().copied().find(|p| src == "/" || *p == src || p.starts_with(&format!("{src}/")))
}

/// A device passed into a container: `HOST[:CONTAINER[:PERMISSIONS]]`, the host side under
/// `/dev/`, permissions from `rwm`.
pub fn parse_device(s: &str) -> Result<String, types::TypeError> {
    let parts: Vec<&str> = s.split(':').collect();
    let help = "write it like `/dev/kmsg` or `/dev/dri:/dev/dri:rw`";
    if parts.len() > 3 || !parts[0].starts_with("/dev/") {
        return Err(bad(format!("`{}` is not a device (`/dev/…[:TARGET[:rwm]]`)", s.escape_debug()), help));
    }
    plain_path(parts[0], "device")?;
    if let Some(t) = parts.get(1) {
        plain_path(t, "device")?;
    }
    if let Some(p) = parts.get(2)
        && (p.is_empty() || !p.bytes().all(|b| b"rwm".contains(&b)))
    {
        return Err(bad(format!("device permissions `{p}` are not drawn from `rwm`"), help));
    }
    Ok(s.to_string())
}

/// The resource limits Docker passes to `setrlimit` (Compose `ulimits`).
pub const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `uid:gid`, numeric (the image's user need not exist on the host).
pub fn parse_owner(s: &str) -> Result<(u32, u32), types::TypeError> {
    let parse = |x: &str| x.parse::<u32>().ok().filter(|_| x.bytes().all(|b| b.is_ascii_digit()));
    match s.split_once(':').and_then(|(u, g)| Some((parse(u)?, parse(g)?))) {
        Some(o) => Ok(o),
        None => Err(bad(format!("`{}` is not `UID:GID`", s.escape_debug()), "write it like `1000:1000` (numbers, as the image runs)")),
    }
}

/// A user a job runs as: a name (`www-data`) or `UID[:GID]`.
pub fn parse_user(s: &str) -> Result<String, types::TypeError> {
    let name = |x: &str| {
        !x.is_empty()
            && x.len() <= 32
            && (x.bytes().all(|b| b.is_ascii_digit())
                || (x.as_bytes()[0].is_ascii_lowercase() || x.as_bytes()[0] == b'_')
                    && x.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b)))
    };
    let ok = match s.split_once(':') {
        Some((u, g)) => name(u) && name(g),
        None => name(s),
    };
    if ok { Ok(s.to_string()) } else { Err(bad(format!("`{}` is not a user", s.escape_debug()), "write it like `www-data` or `33:33`")) }
}

fn port_node(n: Option<&Node>, sink: &Sink) -> Option<Sp<IntOrTpl>> {
    let port = match n? {
        Node { value: Value::Int(i), span } => Sp::new(IntOrTpl::Int(*i), *span),
        Node { value: Value::Str(s), span } => Sp::new(IntOrTpl::Tpl(s.clone()), *span),
        n => {
            sink.expected(n, "a port number or a template");
            return None;
        }
    };
    if let IntOrTpl::Int(i) = port.value
        && let Err(e) = types::parse_port(i)
    {
        sink.type_error(port.span, e);
    }
    Some(port)
}

fn ulimits(t: TableReader<'_>, sink: &Sink) -> Vec<(Sp<String>, i64, i64)> {
    let mut out = Vec::new();
    for e in t.entries() {
        let name = Sp::new(e.key.clone(), e.key_span);
        if !ULIMITS.contains(&e.key.as_str()) {
            sink.type_error(e.key_span, one_of(&e.key, "ulimit", ULIMITS));
            continue;
        }
        let limits = match &e.value.value {
            Value::Int(i) => Some((*i, *i)),
            Value::Table(_) => TableReader::new(&e.value, sink, format!("`ulimits.{}`", e.key)).and_then(|mut l| {
                let (soft, hard) = (l.int("soft"), l.int("hard"));
                if soft.is_none() {
                    l.missing("soft", "65536");
                }
                if hard.is_none() {
                    l.missing("hard", "65536");
                }
                l.finish();
                Some((soft?.value, hard?.value))
            }),
            _ => {
                sink.expected(&e.value, "a limit or `{ soft = …, hard = … }`");
                None
            }
        };
        let Some((soft, hard)) = limits else { continue };
        let unlimited = |v: i64| v == -1;
        if soft < -1 || hard < -1 || (!unlimited(hard) && (unlimited(soft) || soft > hard)) {
            sink.type_error(
                e.value.span,
                bad(
                    format!("ulimit `{}` soft {soft} / hard {hard} is not a limit", e.key),
                    "limits are at least 0 (-1: unlimited), soft ≤ hard",
                ),
            );
            continue;
        }
        out.push((name, soft, hard));
    }
    out
}

/// Reads a module's root table; `None` when the required header is unusable.
pub fn read(root: &Node, sink: &Sink) -> Option<ModuleDecl> {
    let mut r = TableReader::new(root, sink, "the module file")?;
    let header = r.table("module", |mut t| {
        let name = typed(t.req_str("name", "\"postgres\""), sink, types::parse_ident);
        let version = t.req_str("version", "\"1.0.0\"");
        let summary = t.req_str("summary", "\"what it is, in one line\"");
        let description = t.str("description");
        let kind = typed(t.req_str("kind", "\"container\""), sink, |s| match s {
            "container" => Ok(ModuleKind::Container),
            "native" => Ok(ModuleKind::Native),
            _ => Err(one_of(s, "module kind", &["container", "native"])),
        });
        let edge = typed(t.str("edge"), sink, |s| match s {
            "caddy" | "traefik" => Ok(s.to_string()),
            _ => Err(one_of(s, "edge server", &["caddy", "traefik"])),
        });
        let first_run_setup = t.str("first_run_setup");
        let first_run_bootstrap = typed(t.str("first_run_bootstrap"), sink, |s| match s.split_once('.') {
            Some((m, slot)) if types::parse_ident(m).is_ok() && types::parse_ident(slot).is_ok() => Ok((m.to_string(), slot.to_string())),
            _ => Err(bad(
                format!("`{s}` is not MODULE.SLOT"),
                "name a module and one of its secret slots: \"authentik-worker.bootstrap_password\"",
            )),
        });
        let embeddable = t.bool("embeddable").is_some_and(|b| b.value);
        t.finish();
        (name, version, summary, description, kind, edge, first_run_setup, first_run_bootstrap, embeddable)
    });
    let Some(header) = header else {
        r.missing("module", "{ name = \"…\", version = \"…\", summary = \"…\", kind = \"container\" }");
        return None;
    };
    let options = r.named("options", |name, mut t| {
        let ty = typed(t.req_str("type", "\"string\""), sink, OptType::parse)?;
        let d = OptionDecl {
            ty,
            default: t.node("default").cloned(),
            values: t.str_list("values"),
            description: t.str("description"),
            example: t.node("example").cloned(),
            name: typed(Some(name), sink, types::parse_ident)?,
        };
        t.finish();
        Some(d)
    });
    let container = r.table("container", |mut t| {
        let environment = t
            .table("environment", |et| {
                et.entries().iter().filter_map(|e| Some((Sp::new(e.key.clone(), e.key_span), as_str(&e.value, sink)?))).collect()
            })
            .unwrap_or_default();
        let env_secrets = t
            .table("env_secrets", |et| {
                et.entries()
                    .iter()
                    .filter_map(|e| {
                        let var = typed(Some(Sp::new(e.key.clone(), e.key_span)), sink, parse_env_name)?;
                        Some((var, as_str(&e.value, sink)?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let command = t.node("command");
        let entrypoint = t.node("entrypoint");
        let d = ContainerDecl {
            span: t.span,
            image: t.req_str("image", "\"docker.io/library/postgres:18.1\""),
            user: t.str("user"),
            read_only: t.bool("read_only"),
            tmpfs: t.str_list("tmpfs"),
            command: str_list_node(command, sink),
            entrypoint: str_list_node(entrypoint, sink),
            environment,
            cap_drop: t.str_list("cap_drop"),
            cap_add: t.str_list("cap_add"),
            stop_grace_period: typed(t.str("stop_grace_period"), sink, Duration::parse),
            network_mode: t.str("network_mode"),
            docker_socket: t.bool("docker_socket"),
            shm_size: typed(t.str("shm_size"), sink, Size::parse),
            init: t.bool("init"),
            env_secrets,
            ulimits: t.table("ulimits", |u| ulimits(u, sink)).unwrap_or_default(),
            devices: t.str_list("devices").into_iter().filter_map(|x| typed(Some(x), sink, parse_device)).collect(),
            host_mounts: t.str_list("host_mounts").into_iter().filter_map(|x| typed(Some(x), sink, parse_host_mount)).collect(),
        };
        if !d.docker_socket.as_ref().is_some_and(|b| b.value) {
            for m in &d.host_mounts {
                if let Some(p) = exposes_sensitive(&m.value.0) {
                    sink.push(
                        crate::diag::Diagnostic::error("E0003", format!("host mount `{}` exposes `{p}`", m.value.0))
                            .primary(m.span, "this mount hands the container control of the host")
                            .note("a read-only bind mount still lets a process connect to a socket in it")
                            .help("declare `docker_socket = true` as well, so kiln treats the service as holding the Docker socket"),
                    );
                }
            }
        }
        t.finish();
        d
    });
    let native = r.table("native", |mut t| {
        let d = NativeDecl { span: t.span, packages: t.str_list("packages"), unit: t.str("unit") };
        t.finish();
        d
    });
    let endpoints = r.named("endpoints", |name, mut t| {
        let host_port = port_node(t.node("host_port"), sink);
        let Some(port) = port_node(t.node("port"), sink) else {
            if t.node("port").is_none() {
                t.missing("port", "8080");
            }
            return None;
        };
        let protocol = typed(t.str("protocol"), sink, |s| match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(one_of(s, "protocol", &["tcp", "udp"])),
        })
        .unwrap_or(Sp::new(Protocol::Tcp, port.span));
        let d = EndpointDecl {
            port,
            host_port,
            protocol,
            http: t.bool("http").is_some_and(|b| b.value),
            name: typed(Some(name), sink, types::parse_ident)?,
        };
        t.finish();
        Some(d)
    });
    let volumes = r.named("volumes", |name, mut t| {
        let d = VolumeDecl {
            target: absolute(t.req_str("target", "\"/var/lib/app\""), sink)?,
            backup: t.bool("backup").is_some_and(|b| b.value),
            owner: typed(t.str("owner"), sink, parse_owner),
            name: typed(Some(name), sink, types::parse_ident)?,
        };
        t.finish();
        Some(d)
    });
    let healthcheck = r.table("healthcheck", |mut t| {
        let test = t.node("test");
        let test = match test {
            Some(n) => as_str_list(n, sink),
            None => {
                t.missing("test", "[\"CMD\", \"pg_isready\"]");
                Vec::new()
            }
        };
        if let Some(first) = test.first()
            && !matches!(first.value.as_str(), "CMD" | "CMD-SHELL")
        {
            sink.push(
                crate::diag::Diagnostic::error("E0003", "a healthcheck test starts with `CMD` or `CMD-SHELL`")
                    .primary(first.span, "not `CMD` or `CMD-SHELL`"),
            );
        }
        let d = HealthDecl {
            span: t.span,
            test,
            interval: dur(&mut t, "interval", 10),
            timeout: dur(&mut t, "timeout", 5),
            retries: t.int("retries").map(|i| i.value.clamp(1, 1000) as u32).unwrap_or(5),
            start_period: dur(&mut t, "start_period", 30),
        };
        t.finish();
        d
    });
    let requires = r.named("requires", |slot, mut t| {
        let d = RequireDecl {
            modules: t.str_list("modules"),
            endpoint: t.str("endpoint"),
            optional: t.bool("optional").is_some_and(|b| b.value),
            description: t.str("description"),
            usage: typed(t.str("usage"), sink, |s| if USAGES.contains(&s) { Ok(s.to_string()) } else { Err(one_of(s, "usage", USAGES)) }),
            prepared_statements: t.bool("prepared_statements").is_some_and(|b| b.value),
            slot: typed(Some(slot), sink, types::parse_ident)?,
        };
        if d.modules.is_empty() {
            t.missing("modules", "[\"postgres\"]");
        }
        t.finish();
        Some(d)
    });
    let secrets = r.named("secrets", |slot, mut t| {
        let required_when = t.str("required_when");
        let d = SecretSlotDecl {
            description: t.str("description"),
            target: absolute(t.str("target"), sink),
            uid: t.int("uid").and_then(|i| u32::try_from(i.value).ok()),
            optional: t.bool("optional").is_some_and(|b| b.value) || required_when.is_some(),
            dns01: typed(t.str("dns01"), sink, |s| crate::syntax::system::ProviderKind::parse(s).map(|k| k.name().to_string())),
            required_when,
            slot: typed(Some(slot), sink, types::parse_ident)?,
        };
        t.finish();
        // The option it names must be one of the module's.
        if let Some(o) = &d.required_when
            && let name = o.value.split_once('=').map_or(o.value.as_str(), |(n, _)| n)
            && !options.iter().any(|x| x.name.value == name)
        {
            sink.push(
                crate::diag::Diagnostic::error("E0021", format!("`required_when` names no option `{name}` of this module"))
                    .primary(o.span, "not declared in `[options]`"),
            );
        }
        Some(d)
    });
    let metrics = r.table("metrics", |mut t| {
        let endpoint = t.req_str("endpoint", "\"metrics\"");
        let path = t.str("path").map(|p| p.value).unwrap_or_else(|| "/metrics".into());
        t.finish();
        endpoint.map(|endpoint| MetricsDecl { endpoint, path })
    });
    let backup = r.table("backup", |mut t| {
        let dump = t.node("dump");
        let d = BackupDecl { span: t.span, dump: str_list_node(dump, sink), volumes: t.str_list("volumes") };
        t.finish();
        d
    });
    let resources = r.table("resources", |mut t| {
        let d = ResourcesDecl {
            memory: typed(t.str("memory"), sink, Size::parse_positive),
            cpus: super::system::read_cpus(&mut t, sink),
            fit: super::memory_fit::read(&mut t, &options, sink),
        };
        t.finish();
        d
    });
    let files = r.named("files", |name, mut t| {
        let mode = t.str("mode").map(|m| m.value).unwrap_or_else(|| "0644".into());
        let d = FileDecl {
            template: t.req_str("template", "\"config.yaml.j2\"")?,
            target: absolute(t.req_str("target", "\"/etc/app/config.yaml\""), sink)?,
            mode: u32::from_str_radix(&mode, 8).unwrap_or(0o644) & 0o777,
            judge: typed(t.str("judge"), sink, |s| {
                if FILE_JUDGES.contains(&s) { Ok(s.to_string()) } else { Err(one_of(s, "file judge", FILE_JUDGES)) }
            }),
            name: typed(Some(name), sink, parse_file_name)?,
        };
        t.finish();
        Some(d)
    });
    let forward_auth = r.table("forward_auth", |mut t| {
        let d = (
            t.req_str("endpoint", "\"http\""),
            typed(t.req_str("uri", "\"/auth\""), sink, parse_url_path),
            t.str_list("copy_headers").into_iter().filter_map(|h| typed(Some(h), sink, parse_header_name)).collect(),
            typed(t.str("traefik_uri"), sink, parse_url_path),
            t.str_list("paths").into_iter().filter_map(|p| typed(Some(p), sink, parse_url_path)).collect(),
        );
        t.finish();
        Some(ForwardAuthDecl { endpoint: d.0?, uri: d.1?, copy_headers: d.2, traefik_uri: d.3, paths: d.4 })
    });
    let jobs = r.named("jobs", |name, mut t| {
        let schedule = typed(t.req_str("schedule", "\"*:0/5\""), sink, types::Calendar::parse);
        let command = match t.node("command") {
            Some(n) => as_str_list(n, sink),
            None => {
                t.missing("command", "[\"php\", \"-f\", \"/var/www/html/cron.php\"]");
                Vec::new()
            }
        };
        let user = typed(t.str("user"), sink, parse_user);
        let container = typed(t.str("container"), sink, |s| match s {
            "exec" => Ok(JobContainer::Exec),
            "run" => Ok(JobContainer::Run),
            _ => Err(one_of(s, "job container", &["exec", "run"])),
        })
        .unwrap_or(Sp::new(JobContainer::Exec, t.span));
        t.finish();
        if command.is_empty() {
            return None;
        }
        Some(JobDecl { schedule: schedule?, command, user, container, name: typed(Some(name), sink, types::parse_ident)? })
    });
    let (collect_metrics, collect_rules, collect_alerts) = r
        .table("collect", |mut t| {
            let m = t.bool("metrics").is_some_and(|b| b.value);
            let rules = absolute(t.str("rules"), sink);
            let alerts = t.bool("alerts").is_some_and(|b| b.value);
            t.finish();
            (m, rules, alerts)
        })
        .unwrap_or((false, None, false));
    if let Some(c) = &container {
        env_secret_slots(c, &secrets, sink);
    }
    r.finish();
    let (name, version, summary, description, kind, edge, first_run_setup, first_run_bootstrap, embeddable) = header;
    Some(ModuleDecl {
        name: name?,
        version: version?,
        summary: summary?,
        description,
        kind: kind?,
        edge,
        options,
        container,
        native,
        endpoints,
        volumes,
        healthcheck,
        requires,
        secrets,
        metrics: metrics.flatten(),
        backup,
        resources,
        files,
        forward_auth: forward_auth.flatten(),
        jobs,
        collect_metrics,
        collect_rules,
        collect_alerts,
        first_run_setup,
        first_run_bootstrap,
        embeddable,
    })
}

/// Every `[container.env_secrets]` entry names a declared secret slot, once, and no variable is
/// also a plain `[container.environment]` value.
fn env_secret_slots(c: &ContainerDecl, secrets: &[SecretSlotDecl], sink: &Sink) {
    for (var, slot) in &c.env_secrets {
        if !secrets.iter().any(|s| s.slot.value == slot.value) {
            let mut d = crate::diag::Diagnostic::error(
                "E0023",
                format!("environment variable `{}` names no secret slot `{}`", var.value, slot.value),
            )
            .primary(slot.span, "not a `[secrets.SLOT]` of this module");
            if let Some(x) = crate::diag::did_you_mean(&slot.value, secrets.iter().map(|s| s.slot.value.as_str())) {
                d = d.help(format!("did you mean `{x}`?"));
            } else {
                d = d.help(format!("declare the slot: `[secrets.{}]` with a `description`", slot.value));
            }
            sink.push(d);
        }
        if let Some((k, _)) = c.environment.iter().find(|(k, _)| k.value == var.value) {
            sink.push(
                crate::diag::Diagnostic::error("E0011", format!("environment variable `{}` is set twice", var.value))
                    .primary(var.span, "fed by a secret here")
                    .secondary(k.span, "and set in `[container.environment]` here"),
            );
        }
    }
}

/// What a consumer keeps in a requirement (`[requires.SLOT] usage`).
pub const USAGES: &[&str] = &["cache", "queue", "session", "data"];
