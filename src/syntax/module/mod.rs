//! The module language: a module's `module.toml` read into a typed, spanned declaration.
//!
//! One file per table (or family of tables) reads it; `strings.rs` holds the typed strings
//! that reach artifacts.

mod accounts;
mod container;
mod databases;
mod endpoints;
mod forward_auth;
mod header;
mod jobs;
mod oidc;
mod refs;
mod requires;
mod secrets;
mod storage;
pub(crate) mod strings;

pub use accounts::{AccountDecl, AccountsDecl};
pub use container::ULIMITS;
pub use databases::{DatabasesDecl, ProvisionDecl};
pub use requires::USAGES;
pub use strings::{
    SENSITIVE_HOST_PATHS, exposes_sensitive, parse_device, parse_env_name, parse_file_name, parse_header_name, parse_host_mount,
    parse_option_string, parse_owner, parse_url_path, parse_user,
};

use crate::diag::Span;
use crate::syntax::decode::{Sink, Sp, TableReader, as_str_list};
use crate::syntax::system::one_of;
use crate::syntax::tree::Node;
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
    /// `[oidc]`: the application signs in through an OpenID Connect provider (`login = "IDP"`).
    pub oidc: Option<OidcDecl>,
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
    /// `[databases]`: the server creates a database and owner role for each client whose
    /// requirement slot says `provision` (PostgreSQL); its templates see them as `databases`.
    pub databases: Option<DatabasesDecl>,
    /// `[accounts]`: the server makes a user for each client whose requirement slot says
    /// `account` (Valkey's ACL users); its templates see them as `accounts`.
    pub accounts: Option<AccountsDecl>,
}

/// How an edge asks this service whether a request may pass (Authentik's outposts, oauth2-proxy).
/// `[oidc]`: which option takes the provider's issuer URL, which the client id, which secret
/// slot the client secret, and the path the provider redirects back to on the app's route.
#[derive(Debug, Clone)]
pub struct OidcDecl {
    /// The option taking the issuer URL (discovery); absent when the module takes the endpoints.
    pub issuer_option: Option<Sp<String>>,
    pub client_id_option: Sp<String>,
    pub client_secret: Sp<String>,
    pub redirect_path: Sp<String>,
    /// Options taking the provider's endpoints, for applications without discovery (Grafana):
    /// authorization, token, userinfo and JWKS URLs, in that order; each optional.
    pub endpoint_options: [Option<Sp<String>>; 4],
}

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
    /// `from_route`: left out, the option is the service's own first route.
    pub from_route: Option<Sp<FromRoute>>,
    pub values: Vec<Sp<String>>,
    pub description: Option<Sp<String>>,
    pub example: Option<Node>,
}

/// What an option left out takes from its service's first route (by name, wildcards aside):
/// the public URL an application must know itself by, written once, on the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromRoute {
    /// `https://HOSTNAME`.
    Url,
    /// `HOSTNAME`.
    Hostname,
}

impl FromRoute {
    /// The option's value for a route to `hostname`.
    pub fn value(self, hostname: &str) -> String {
        match self {
            FromRoute::Url => format!("https://{hostname}"),
            FromRoute::Hostname => hostname.to_string(),
        }
    }

    /// As the module's file spells it.
    pub fn name(self) -> &'static str {
        match self {
            FromRoute::Url => "url",
            FromRoute::Hostname => "hostname",
        }
    }
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
    /// `[container.secret_paths]`: environment variable → secret slot; the variable is the
    /// secret file's path in the container (for `*_FILE` settings), set only when the slot is
    /// bound (an optional slot left unbound sets nothing).
    pub secret_paths: Vec<(Sp<String>, Sp<String>)>,
    /// `user_environment = true`: a service may add its own `environment` and `env_secrets`
    /// (a module for the user's own image, whose variables no upstream defines).
    pub user_environment: Option<Sp<bool>>,
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
    /// The edge speaks HTTP/2 without TLS (h2c) to it: gRPC needs HTTP/2 end to end.
    pub h2c: bool,
    /// Whether it speaks TLS (clients see `requires.SLOT.tls`): `true`, or a template that
    /// renders to `true` or `false` (`"{{ options.tls }}"`); absent, plain TCP.
    pub tls: Option<Sp<String>>,
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
    /// `provision = { … }`: the server makes this client's database and role.
    pub provision: Option<ProvisionDecl>,
    /// `account = { … }`: the server makes a user for this client.
    pub account: Option<AccountDecl>,
    /// `wait = false`: the consumer neither starts after this service nor waits for it (an
    /// exporter that retries or drops while its collector is away).
    pub wait: bool,
    /// `public = true`: the consumer hands the service's public URL to browsers
    /// (`requires.SLOT.public_url`): filled by a service without a route, warning
    /// `public-slot-unrouted`.
    pub public: bool,
    /// `instead_of_docker_socket = true`: filled (by a socket proxy), the container reaches
    /// Docker through it and is not given the socket its `docker_socket = true` asks for.
    pub instead_of_docker_socket: Option<Sp<bool>>,
    /// `same_secrets = { SLOT = "SERVER_SLOT" }`: the consumer's secret `SLOT` is the secret the
    /// filled service binds to its `SERVER_SLOT` (an API key both ends hold, a role's password):
    /// taken from it when the system leaves `SLOT` unbound, refused when bound to another.
    pub same_secrets: Vec<(Sp<String>, Sp<String>)>,
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
    /// `required_when`: the slot may be left unbound unless it holds. Implies `optional`.
    pub required_when: Option<Sp<RequiredWhen>>,
}

/// When a secret slot that may be left unbound is needed after all (`required_when`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequiredWhen {
    /// `"OPTION"`: once the option is set (a non-empty string or list, `true`, a non-zero
    /// number); `"OPTION=VALUE"`: once it has that value.
    Option { name: String, equals: Option<String> },
    /// `"requires.SLOT"`: once `connects` fills that requirement slot.
    Slot(String),
}

impl RequiredWhen {
    /// Reads `"requires.SLOT"`, `"OPTION=VALUE"` or `"OPTION"`.
    pub fn parse(s: &str) -> RequiredWhen {
        match s.strip_prefix("requires.") {
            Some(slot) => RequiredWhen::Slot(slot.to_string()),
            None => match s.split_once('=') {
                Some((name, value)) => RequiredWhen::Option { name: name.to_string(), equals: Some(value.to_string()) },
                None => RequiredWhen::Option { name: s.to_string(), equals: None },
            },
        }
    }
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
    /// Loads the dump (on standard input) into the service after a restore.
    pub restore: Option<Vec<Sp<String>>>,
    /// `restore_when = "stopped"`: `restore` runs in a one-off container of the service over its
    /// volumes' files as snapshotted, before it starts (a database in a file: SQLite); else in the
    /// running service, started on empty volumes.
    pub restore_stopped: bool,
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

fn str_list_node(n: Option<&Node>, sink: &Sink) -> Option<Vec<Sp<String>>> {
    n.map(|n| as_str_list(n, sink))
}

/// Reads a module's root table; `None` when the required header is unusable.
pub fn read(root: &Node, sink: &Sink) -> Option<ModuleDecl> {
    let mut r = TableReader::new(root, sink, "the module file")?;
    let Some(header) = r.table("module", |t| header::header(t, sink)) else {
        r.missing("module", "{ name = \"…\", version = \"…\", summary = \"…\", kind = \"container\" }");
        return None;
    };
    let options = r.named("options", |name, t| header::option(name, t, sink));
    let container = r.table("container", |t| container::container(t, sink));
    let native = r.table("native", container::native);
    let endpoints = r.named("endpoints", |name, t| endpoints::endpoint(name, t, sink));
    let volumes = r.named("volumes", |name, t| storage::volume(name, t, sink));
    let healthcheck = r.table("healthcheck", |t| endpoints::healthcheck(t, sink));
    let requires = r.named("requires", |slot, t| requires::require(slot, t, sink));
    let secrets = r.named("secrets", |slot, t| secrets::secret(slot, t, &options, &requires, sink));
    let metrics = r.table("metrics", endpoints::metrics);
    let backup = r.table("backup", |t| storage::backup(t, sink));
    let resources = r.table("resources", |t| storage::resources(t, &options, sink));
    let files = r.named("files", |name, t| storage::file(name, t, sink));
    let forward_auth = r.table("forward_auth", |t| forward_auth::forward_auth(t, sink));
    let oidc = r.table("oidc", |t| oidc::oidc(t, &options, &secrets, sink));
    let jobs = r.named("jobs", |name, t| jobs::job(name, t, sink));
    let databases = r.table("databases", |t| databases::server(t, &options, sink)).flatten();
    databases::check_provisions(&requires, &options, &secrets, sink);
    let accounts = r.table("accounts", accounts::server).flatten();
    accounts::check_accounts(&requires, &options, &secrets, sink);
    let (collect_metrics, collect_rules, collect_alerts) = r.table("collect", |t| header::collect(t, sink)).unwrap_or((false, None, false));
    if let Some(c) = &container {
        container::env_secret_slots(c, &secrets, sink);
    }
    requires::check_socket_replacements(&requires, container.as_ref(), sink);
    requires::check_same_secrets(&requires, &secrets, sink);
    r.finish();
    let h = header;
    Some(ModuleDecl {
        name: h.name?,
        version: h.version?,
        summary: h.summary?,
        description: h.description,
        kind: h.kind?,
        edge: h.edge,
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
        oidc: oidc.flatten(),
        jobs,
        collect_metrics,
        collect_rules,
        collect_alerts,
        first_run_setup: h.first_run_setup,
        first_run_bootstrap: h.first_run_bootstrap,
        embeddable: h.embeddable,
        databases,
        accounts,
    })
}
