//! Render: pure functions from the resolved model to artifacts, one emitter per output format.

pub mod alerts;
pub mod authentik;
pub mod backup;
pub mod backup_auth;
pub mod bundle;
pub mod caddyfile;
pub mod cloud_init;
pub mod compose;
pub mod data_volume;
pub mod egress;
pub mod frame;
pub mod jobs;
pub mod keycloak;
pub mod notice;
pub mod private_bind;
pub mod provision;
pub mod quote;
pub mod restore;
pub mod system_doc;
pub mod timer_unit;
pub mod tofu;
pub mod traefik;
pub mod watchdog;

use serde::Serialize;
use sha2::{Digest, Sha256};

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Host, Route, System};

/// Where a host's payload lives on the host itself (the same layout as `hosts/<host>/`).
pub const KILN_ROOT: &str = "/opt/kiln";
/// Module config files, `files/<service>/<name>` under the root.
pub const FILES_ROOT: &str = "/opt/kiln/files";
/// Secret values, delivered at deploy time, never in the store: root-only files.
pub const SECRETS_DIR: &str = "/etc/kiln/secrets";
/// Each service's own copy of the secrets it uses, owned by the user it runs as:
/// `<dir>/<service>/<secret>`, so two services may read one secret as different users.
pub const SERVICE_SECRETS_DIR: &str = "/etc/kiln/service-secrets";

/// Where a service's copy of a secret lives on the host.
pub fn service_secret_path(service: &str, secret: &str) -> String {
    format!("{SERVICE_SECRETS_DIR}/{service}/{secret}")
}
/// Env files written on the host from delivered secrets, one per service that takes a secret
/// as an environment variable (`[container.env_secrets]`); root-only, read by `docker compose`.
pub const ENV_SECRETS_DIR: &str = "/etc/kiln/env";

/// The env file (Compose `env_file`) holding a service's secret environment variables.
pub fn service_env_file(service: &str) -> String {
    format!("{ENV_SECRETS_DIR}/{service}.env")
}
/// Traefik's configuration in the payload (mounted into the Traefik container).
pub const TRAEFIK_STATIC: &str = "traefik/traefik.yml";
pub const TRAEFIK_DYNAMIC: &str = "traefik/dynamic/kiln.yml";
/// The provisioner writes the host's closure hash here when it has finished.
pub const MARKER: &str = "/var/lib/kiln/closure";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    CloudInit,
    Provisioner,
    Compose,
    Caddyfile,
    Config,
    Checksums,
    Doc,
    TraefikStatic,
    TraefikDynamic,
    OpenTofu,
    Bundle,
    /// A shell script run by a systemd unit (backups).
    Script,
    SystemdUnit,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::CloudInit => "cloud-init",
            Kind::Provisioner => "provisioner",
            Kind::Compose => "compose",
            Kind::Caddyfile => "caddyfile",
            Kind::Config => "config",
            Kind::Checksums => "checksums",
            Kind::Doc => "doc",
            Kind::TraefikStatic => "traefik-static",
            Kind::TraefikDynamic => "traefik-dynamic",
            Kind::OpenTofu => "opentofu",
            Kind::Bundle => "bundle",
            Kind::Script => "script",
            Kind::SystemdUnit => "systemd-unit",
        }
    }
}

/// One output file, its path relative to the host's directory (or the system root).
#[derive(Debug, Clone)]
pub struct Artifact {
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub bytes: Vec<u8>,
}

impl Artifact {
    fn new(path: impl Into<String>, kind: Kind, mode: u32, text: String) -> Artifact {
        Artifact { path: path.into(), kind, mode, bytes: text.into_bytes() }
    }
    pub fn sha256(&self) -> String {
        hex(&Sha256::digest(&self.bytes))
    }
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

/// What rendering takes besides the model: inputs from the edge, never from the environment.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// The mtime of every bundle entry (`SOURCE_DATE_EPOCH`, else 0).
    pub mtime: u64,
}

/// Everything one host needs, plus its closure hash.
pub struct HostArtifacts {
    pub closure: String,
    /// True when `user-data` is the stage-0 loader that fetches the bundle from the store.
    pub stage0: bool,
    /// The most bytes its user-data may have ([`user_data_budget`], taken once per host).
    pub user_data_budget: Option<usize>,
    /// The payload (every file installed under [`KILN_ROOT`]) then `user-data`.
    pub artifacts: Vec<Artifact>,
}

/// Serialises structured data as YAML; the data types here cannot fail to serialise.
pub fn yaml<T: Serialize>(v: &T) -> String {
    let opts = serde_saphyr::ser_options! { prefer_block_scalars: false, indent_step: 2 };
    serde_saphyr::to_string_with_options(v, opts).expect("YAML serialisation of plain data")
}

/// Lookups that rendering a host needs from the whole system, built once per system: a scan of
/// every route for every host made rendering quadratic in the fleet's size.
pub struct Index<'a> {
    /// Host name → the routes whose edge runs on it, in the system's route order.
    routes_by_edge_host: BTreeMap<&'a str, Vec<&'a Route>>,
    /// (service, endpoint) of every endpoint some service connects to (collectors' scrapes
    /// included).
    connected: BTreeSet<(&'a str, &'a str)>,
}

impl<'a> Index<'a> {
    pub fn new(sys: &'a System) -> Index<'a> {
        let mut routes_by_edge_host: BTreeMap<&str, Vec<&Route>> = BTreeMap::new();
        for r in &sys.routes {
            routes_by_edge_host.entry(r.edge_host.as_str()).or_default().push(r);
        }
        let connected = sys.services.values().flat_map(|s| &s.deps).map(|d| (d.service.as_str(), d.endpoint.as_str())).collect();
        Index { routes_by_edge_host, connected }
    }

    /// Whether some service connects to `endpoint` of `service` (a collector scraping it too).
    pub fn connected(&self, service: &str, endpoint: &str) -> bool {
        self.connected.contains(&(service, endpoint))
    }

    /// The routes whose edge runs on `host`.
    pub fn edge_routes(&self, host: &str) -> &[&'a Route] {
        self.routes_by_edge_host.get(host).map_or(&[], Vec::as_slice)
    }
}

/// Renders one host. The closure hash is the sha256 of `SHA256SUMS`, which lists every payload
/// file; `user-data` is derived from the payload alone, so it changes exactly when the closure does.
pub fn host(sys: &System, index: &Index<'_>, host: &Host, opts: &RenderOptions) -> HostArtifacts {
    let mut payload = Vec::new();
    let here = index.edge_routes(&host.name);
    if let Some(c) = compose::emit(sys, host) {
        payload.push(Artifact::new("compose.yaml", Kind::Compose, 0o644, c));
    }
    if let Some(c) = caddyfile::emit(sys, host, here, index) {
        payload.push(Artifact::new("Caddyfile", Kind::Caddyfile, 0o644, c));
    }
    if let Some(c) = traefik::emit_static(sys, host, here) {
        payload.push(Artifact::new(TRAEFIK_STATIC, Kind::TraefikStatic, 0o644, c));
    }
    if let Some(c) = traefik::emit_dynamic(sys, host, here) {
        payload.push(Artifact::new(TRAEFIK_DYNAMIC, Kind::TraefikDynamic, 0o644, c));
    }
    for name in &host.services {
        for f in &sys.services[name].files {
            payload.push(Artifact::new(format!("files/{name}/{}", f.name), Kind::Config, f.mode, f.content.clone()));
        }
    }
    if let Some(edge) = provision::ban_edge(host, &payload) {
        payload.push(Artifact::new(provision::FAIL2BAN_HTTP_FILTER, Kind::Config, 0o644, provision::fail2ban_http_filter(edge)));
    }
    for name in &host.services {
        if sys.services[name].rules.is_some() {
            let rules = alerts::emit(sys, &sys.services[name]);
            payload.push(Artifact::new(format!("files/{name}/{}", alerts::FILE), Kind::Config, 0o644, rules));
        }
    }
    for (path, content) in backup::emit(sys, host)
        .into_iter()
        .chain(data_volume::emit(sys, host))
        .chain(watchdog::emit(sys, host))
        .chain(egress::emit(host))
        .chain(jobs::emit(sys, host))
    {
        let (kind, mode) = if path.ends_with(".sh") {
            (Kind::Script, 0o755)
        } else if path == restore::DRILL_COMPOSE {
            (Kind::Compose, 0o644)
        } else if path == backup_auth::KNOWN_HOSTS || path.ends_with(".json") {
            (Kind::Config, 0o644)
        } else {
            (Kind::SystemdUnit, 0o644)
        };
        payload.push(Artifact::new(path, kind, mode, content));
    }
    payload.push(Artifact::new("provision.sh", Kind::Provisioner, 0o755, provision::emit(sys, host, &payload)));
    payload.sort_by(|a, b| a.path.cmp(&b.path));
    let sums: String = payload.iter().map(|a| format!("{}  {}\n", a.sha256(), a.path)).collect();
    let sums = Artifact::new("SHA256SUMS", Kind::Checksums, 0o644, sums);
    let closure = sums.sha256();
    payload.push(sums);
    let bundle = bundle::bundle(&payload, opts.mtime);
    // As text while that fits the provider's limit; over it, the stage-0 loader when the system
    // names a store (the user chose to boot from it), else the payload packed (the budget check
    // names a host that does not fit even so).
    let mut user_data = cloud_init::emit(sys, host, &payload, cloud_init::Files::Text);
    let budget = user_data_budget(host);
    let over = |ud: &str| budget.is_some_and(|b| ud.len() > b);
    let stage0 = over(&user_data) && sys.store_url.is_some();
    if stage0 {
        // Only the stage-0 loader names the bundle's hash.
        user_data = stage0_user_data(sys, host, &hex(&Sha256::digest(&bundle))).unwrap_or(user_data);
    } else if over(&user_data) {
        user_data = cloud_init::emit(sys, host, &payload, cloud_init::Files::Packed);
    }
    payload.push(Artifact { path: "bundle.tar.gz".into(), kind: Kind::Bundle, mode: 0o644, bytes: bundle });
    payload.push(Artifact::new("user-data", Kind::CloudInit, 0o644, user_data));
    HostArtifacts { closure, stage0, user_data_budget: budget, artifacts: payload }
}

/// The stage-0 user-data that fetches the bundle `bundle_sha` from the system's store, if it
/// names one.
fn stage0_user_data(sys: &System, host: &Host, bundle_sha: &str) -> Option<String> {
    // The layout `kiln push` writes: every artifact under objects/<sha256>.
    let url = format!("{}/objects/{bundle_sha}", sys.store_url.as_deref()?.trim_end_matches('/'));
    Some(cloud_init::emit_stage0(sys, host, &bundle::stage0_script(&url, bundle_sha)))
}

/// Whether the host's user-data fits its provider's limit whatever its payload, without
/// rendering it: there is no limit, or the system names a store and the stage-0 user-data fits
/// (the full user-data then fits, or is replaced by the stage-0 one). Its size does not depend on
/// the bundle's hash, all of whose 64 hex digits stand bare in the script. `kiln check` renders
/// only the hosts for which this is false.
pub fn user_data_fits_unrendered(sys: &System, host: &Host) -> bool {
    let Some(budget) = user_data_budget(host) else { return true };
    stage0_user_data(sys, host, &"0".repeat(64)).is_some_and(|ud| ud.len() <= budget)
}

/// The most bytes the user-data of `host` may have: its provider's limit less the enrolment part
/// `kiln deploy` adds to it (`deploy::enrol::overhead`); `None` where the provider sets no limit.
pub fn user_data_budget(host: &Host) -> Option<usize> {
    host.provider_kind.user_data_limit().map(|limit| limit.saturating_sub(crate::deploy::enrol::overhead(&host.name)))
}
