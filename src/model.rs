//! The resolved model: one fully bound description of the system. Emitters read only this.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::diag::Span;
use crate::syntax::module::{ModuleKind, Protocol};
use crate::syntax::system::{ProviderKind, TlsMode};
use crate::types::{Cidr, Duration, ImageRef, Size};

#[derive(Debug, Serialize)]
pub struct System {
    pub name: String,
    pub domains: Vec<String>,
    pub cdn: Option<String>,
    pub networks: BTreeMap<String, Cidr>,
    pub admins: Vec<Admin>,
    pub hosts: BTreeMap<String, Host>,
    pub services: BTreeMap<String, Service>,
    pub routes: Vec<Route>,
    /// `[streams.NAME]`: TCP/UDP ports edges forward as they are, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<Stream>,
    /// `[certificates.NAME]`: certificates routes share, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub certificates: BTreeMap<String, Certificate>,
    pub secrets: BTreeMap<String, Secret>,
    /// Every service, dependencies first (ties broken by name).
    pub start_order: Vec<String>,
    /// provider name → kind
    pub providers: BTreeMap<String, ProviderKind>,
    pub dns: Vec<DnsZone>,
    /// Where bundles are published (`[system] store`), for hosts that boot through stage 0.
    pub store_url: Option<String>,
    pub buckets: Vec<Bucket>,
    pub databases: Vec<ManagedDatabase>,
    pub zones: BTreeMap<String, Zone>,
    /// Rules waived, for whom, and why (`[allow.RULE]`).
    pub allows: Vec<Allow>,
    pub backup: Option<BackupPlan>,
    /// `[alerts.receivers]`: who is told when an alert fires, by name.
    pub receivers: Vec<Receiver>,
    /// `[deploy] state`: the S3 object holding the OpenTofu state (absent: a local file in the
    /// state directory). Not an input of any artifact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_state: Option<crate::state_backend::S3State>,
    /// `[deploy] order`: the rollout groups in the order `kiln deploy` runs them (checked: each
    /// names a group some host is in, and every host's group is listed). Empty: `canary` first,
    /// then the rest. Not an input of any artifact.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deploy_order: Vec<String>,
}

/// One destination of the system's alerts (`[alerts.receivers.NAME]`).
#[derive(Clone, Debug, Serialize)]
pub struct Receiver {
    pub name: String,
    pub kind: ReceiverKind,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    Email {
        to: String,
    },
    /// A Slack-compatible incoming webhook (Slack, Mattermost): its URL in the named secret.
    Slack {
        secret: String,
        channel: Option<String>,
    },
    /// Alertmanager's own webhook JSON, to the URL in the named secret.
    Webhook {
        secret: String,
    },
}

impl Receiver {
    /// The secret holding the destination's URL, for the kinds that have one.
    pub fn secret(&self) -> Option<&str> {
        match &self.kind {
            ReceiverKind::Email { .. } => None,
            ReceiverKind::Slack { secret, .. } | ReceiverKind::Webhook { secret } => Some(secret),
        }
    }
}

/// `[backup]`: every host backs up the data its services declare to one restic repository.
#[derive(Debug, Serialize)]
pub struct BackupPlan {
    /// The restic repository with `{host}` already replaced per host by the renderer.
    pub repository: String,
    /// Secret holding the repository password (`{host}` becomes the host's name).
    pub password: String,
    /// Secret holding `KEY=value` lines for the repository backend (`{host}` likewise).
    pub environment: Option<String>,
    /// SFTP: the secret holding the private SSH key (`{host}` likewise) and the server's
    /// public host key (`TYPE BASE64`), pinned in the script's `known_hosts`.
    pub ssh_key: Option<String>,
    pub host_key: Option<String>,
    /// S3: the secrets holding `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (`{host}` likewise).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// REST server: the secret holding the password of the URL's user (`{host}` likewise).
    pub rest_password: Option<String>,
    /// `[backup]` and its `repository` value, for diagnostics.
    #[serde(skip)]
    pub span: crate::diag::Span,
    #[serde(skip)]
    pub repository_span: crate::diag::Span,
    /// systemd calendar expressions.
    pub schedule: crate::types::Calendar,
    pub check: crate::types::Calendar,
    /// When the restore drill runs (`kiln-backup.sh drill`), if it is scheduled.
    pub drill: Option<crate::types::Calendar>,
    /// (`daily`, 7), (`weekly`, 4) …
    pub keep: Vec<(String, i64)>,
}

impl BackupPlan {
    /// The secrets besides the password the backup reads (`{host}` not yet replaced).
    pub fn credential_secrets(&self) -> impl Iterator<Item = &String> {
        [&self.environment, &self.ssh_key, &self.access_key_id, &self.secret_access_key, &self.rest_password].into_iter().flatten()
    }
}

impl System {
    /// The DNS zone that holds `name` (the longest matching one); a wildcard is looked up by
    /// its base.
    pub fn zone_of(&self, name: &str) -> Option<&DnsZone> {
        let name = name.trim_start_matches("*.");
        self.dns.iter().filter(|z| name == z.zone || name.ends_with(&format!(".{}", z.zone))).max_by_key(|z| z.zone.len())
    }

    /// Every name that points at an edge host, with that host and the edge service: routes'
    /// hostnames, then streams' (`hostname`) not already a route's. The DNS records kiln manages.
    pub fn edge_names(&self) -> Vec<(&str, &str, &str)> {
        let mut out: Vec<(&str, &str, &str)> =
            self.routes.iter().map(|r| (r.hostname.as_str(), r.edge_host.as_str(), r.edge_service.as_str())).collect();
        for st in &self.streams {
            if let Some(h) = st.hostname.as_deref().filter(|h| !out.iter().any(|(n, _, _)| n == h)) {
                out.push((h, st.edge_host.as_str(), st.edge_service.as_str()));
            }
        }
        out
    }

    /// The node exporters `collector` scrapes (its derived connections): the hosts whose
    /// disks, memory and textfile metrics (backups, the watchdog) it sees.
    pub fn scraped_node_exporters<'a>(&'a self, collector: &'a Service) -> impl Iterator<Item = &'a Service> + 'a {
        collector.deps.iter().filter(|d| d.derived).filter_map(|d| self.services.get(&d.service)).filter(|s| s.module == "node-exporter")
    }

    /// Every secret a host needs: its services' and, where it backs up data, the backup's.
    pub fn host_secrets(&self, host: &Host) -> std::collections::BTreeSet<String> {
        let mut out: std::collections::BTreeSet<String> =
            host.services.iter().flat_map(|s| self.services[s].secrets.iter().map(|u| u.secret.clone())).collect();
        // A service's own variables fed by secrets (`env_secrets` on the service): read from the
        // delivered secret by the provisioner, mounted nowhere.
        out.extend(host.services.iter().filter_map(|s| self.services[s].container.as_ref()).flat_map(|c| c.env_secrets.values().cloned()));
        if let Some(b) = &self.backup
            && host.services.iter().any(|s| self.services[s].has_data())
        {
            out.insert(b.password.replace("{host}", &host.name));
            out.extend(b.credential_secrets().map(|e| e.replace("{host}", &host.name)));
        }
        // A backup failure it reports itself: the receivers' webhook URLs.
        for r in self.receivers.iter().filter(|r| host.backup_notify.contains(&r.name)) {
            if let ReceiverKind::Slack { secret, .. } = &r.kind {
                out.insert(secret.clone());
            }
        }
        out
    }
}

#[derive(Debug, Serialize)]
pub struct Zone {
    pub description: Option<String>,
    /// Zones whose hosts may connect in (`public`: the internet); `None` accepts every zone.
    pub accepts: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct Allow {
    pub rule: String,
    pub hosts: Vec<String>,
    pub services: Vec<String>,
    pub routes: Vec<String>,
    pub reason: String,
    #[serde(skip)]
    pub span: Span,
}

impl Allow {
    pub fn names(&self, kind: &str) -> &[String] {
        match kind {
            "hosts" => &self.hosts,
            "services" => &self.services,
            "routes" => &self.routes,
            _ => &[],
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Bucket {
    pub name: String,
    pub provider_kind: ProviderKind,
    /// The region (a location on Hetzner) as written; the provider's default when `None`.
    pub region: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManagedDatabase {
    pub name: String,
    pub provider_kind: ProviderKind,
    pub engine: String,
    pub node_type: String,
    pub user: String,
    pub region: Option<String>,
    /// The private network it is attached to: the first one with hosts of its provider.
    pub network: Option<String>,
    /// Where services reach it: its name in the private network's DNS
    /// (`<instance>.<private network>.internal`, both names as kiln gives them).
    pub host: Option<String>,
    /// The services that connect to it (`connects = ["NAME"]`), each with its own database
    /// and role, in service order.
    pub clients: Vec<ManagedClient>,
}

/// A service's database and role on a managed database, named by its requirement slot's
/// `provision` (the same options a `postgres` service would create them from).
#[derive(Debug, Clone, Serialize)]
pub struct ManagedClient {
    pub service: String,
    pub database: String,
    pub role: String,
    /// The secret holding the role's password (the service reads the same one).
    pub secret: String,
    /// Other services of the same application that use this database and role with the same
    /// password secret (a web process and its worker), in service order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DnsZone {
    pub zone: String,
    pub provider: String,
    pub provider_kind: ProviderKind,
    pub proxied: bool,
    /// The zone exists already (always so on Cloudflare): OpenTofu looks it up with the
    /// provider's data source; a zone kiln creates is `prevent_destroy`.
    pub existing: bool,
}

#[derive(Debug, Serialize)]
pub struct Admin {
    pub name: String,
    pub keys: Vec<String>,
    pub sources: Vec<Cidr>,
}

#[derive(Debug, Serialize)]
pub struct Host {
    pub name: String,
    pub provider: String,
    pub provider_kind: ProviderKind,
    pub server_type: Option<String>,
    pub location: Option<String>,
    pub image: BaseImage,
    pub zone: Option<String>,
    pub public: bool,
    pub bastion: bool,
    /// network name → this host's address on it
    pub addresses: BTreeMap<String, IpAddr>,
    /// Services placed here, in start order.
    pub services: Vec<String>,
    pub firewall: Vec<FirewallRule>,
    /// Block volumes: name → size.
    pub disks: BTreeMap<String, Size>,
    /// The public address of an existing host.
    pub address: Option<IpAddr>,
    /// The server's SSH host key as declared (`ssh_host_key`), pinned by `kiln deploy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_host_key: Option<crate::types::SshHostKey>,
    /// The provider's automated server backups (`server_backups`: Hetzner, DigitalOcean).
    pub server_backups: bool,
    /// The port sshd listens on (`ssh_port`): the provisioner's drop-in, ufw, fail2ban, the
    /// provider firewall and `kiln deploy` all use it.
    pub ssh_port: u16,
    /// Rollout group (`canary`).
    pub group: Option<String>,
    /// sshd accepts passwords (only with an `[allow.password-ssh]`).
    pub password_ssh: bool,
    /// fail2ban also watches the edge's access log for failed authentication.
    pub fail2ban_http: bool,
    /// Docker networks declared on this host (besides the default one).
    pub bridges: BTreeMap<String, Bridge>,
    /// `egress` as written (`via:GATEWAY`, `none`) and where.
    #[serde(skip)]
    pub egress_decl: Option<(String, Span)>,
    /// How the host reaches the internet (derived by `eval::egress`).
    pub egress: Egress,
    /// Private networks whose hosts reach the internet through this one (NAT): name → CIDR.
    pub nat_for: BTreeMap<String, Cidr>,
    /// The alert receivers a failed backup task of this host tells itself (derived by
    /// `eval::backup_notice`): it backs up data, and no Prometheus with alert rules scrapes its
    /// node exporter, so the derived backup alerts cannot fire for it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backup_notify: Vec<String>,
    #[serde(skip)]
    pub span: Span,
}

/// How a host reaches the internet: packages, images and (stage 0) its bundle come from there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Egress {
    /// Its own public address: public hosts, DigitalOcean droplets (which always keep a public
    /// IPv4; the cloud firewall closes it inbound) and existing hosts.
    #[default]
    Direct,
    /// Through `gateway`, a public host on `network` that masquerades for the network; the
    /// host's default route goes to `next_hop` (on Hetzner the network's own gateway, the
    /// first address, which a provider route sends on to the gateway host).
    Via { gateway: String, network: String, gateway_address: IpAddr, next_hop: IpAddr },
    /// `egress = "none"`: no route out (the `no-egress` rule says what then fails).
    None,
    /// No route out could be derived: why, and the public hosts that could be the gateway.
    Missing { problem: String, candidates: Vec<String> },
}

impl Host {
    /// The address other hosts reach this one at: its first private network address.
    pub fn private_address(&self) -> Option<IpAddr> {
        self.addresses.values().next().copied()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Bridge {
    pub subnet: Option<Cidr>,
    /// No route out of the host: members talk only to each other.
    pub internal: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaseImage {
    pub name: String,
    pub family: String,
    pub codename: String,
    pub provider_image: Option<String>,
    pub docker_method: String,
    pub docker_packages: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FirewallRule {
    pub port: u16,
    pub protocol: Protocol,
    /// Empty means "from anywhere".
    pub sources: Vec<Cidr>,
    /// Why the port is open: the connection or route that needs it.
    pub reason: String,
    /// The container port Docker forwards `port` to, where they differ: forwarded packets are
    /// matched after Docker's DNAT, so the route rule names this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_port: Option<u16>,
    /// Docker forwards the port to a container (a container service publishes it): the rule is
    /// also needed for forwarded traffic (`ufw route`). A native service's port is the host's
    /// own and takes the input rule only.
    pub forwarded: bool,
}

/// Where a service's module came from, when it is not built in.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleSource {
    pub dir: String,
    pub replaces_builtin: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Service {
    pub name: String,
    pub module: String,
    pub module_version: String,
    /// A module not built in: the `--modules` directory it came from, and the version of the
    /// built-in module of the same name it replaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_source: Option<ModuleSource>,
    pub host: String,
    pub kind: ModuleKind,
    pub edge: Option<String>,
    pub container: Option<Container>,
    pub native: Option<Native>,
    pub endpoints: Vec<Endpoint>,
    pub volumes: Vec<Volume>,
    pub health: Option<Health>,
    pub deps: Vec<Dependency>,
    pub secrets: Vec<SecretUse>,
    pub files: Vec<ConfigFile>,
    pub metrics: Option<Metrics>,
    pub backup: Option<Backup>,
    pub resources: Resources,
    /// Ports published on the host: for peers on other hosts (private address) and for an
    /// edge on the same host (loopback).
    pub published: Vec<Publish>,
    /// Bridges joined; empty means the host's default network.
    pub bridges: Vec<String>,
    /// Start phase (0 first).
    pub phase: u32,
    /// Endpoints opened to the internet on the host's public address.
    pub expose: Vec<String>,
    /// The module options as given or defaulted, as text (for checks and documentation).
    pub options: BTreeMap<String, String>,
    /// DNS provider → the module's DNS-01 slot for it and the secret bound there (`None`:
    /// unbound): what an edge can present for `tls = "dns"` routes.
    pub dns01: BTreeMap<String, (String, Option<String>)>,
    /// Commands run on a schedule (`[jobs.NAME]`), by name.
    pub jobs: Vec<Job>,
    /// Where it reads the alerting rules kiln derives (`[collect] rules`: Prometheus).
    pub rules: Option<String>,
    /// It delivers the system's alerts to `[alerts.receivers]` (`[collect] alerts`: Alertmanager).
    pub notifies: bool,
    #[serde(skip)]
    pub span: Span,
}

impl Service {
    /// The Docker networks it joins: its bridges, or the host's default network.
    pub fn networks(&self) -> Vec<String> {
        if self.bridges.is_empty() { vec!["default".to_string()] } else { self.bridges.clone() }
    }

    /// Whether the service declares data worth backing up (a dump or a backed-up volume).
    pub fn has_data(&self) -> bool {
        self.volumes.iter().any(|v| v.backup) || self.backup.as_ref().is_some_and(|b| b.dump.is_some())
    }

    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Publish {
    pub bind: IpAddr,
    /// The port on the host.
    pub port: u16,
    pub protocol: Protocol,
    /// The port inside the container (the endpoint's own).
    pub target: u16,
}

/// `[jobs.NAME]`: a command a systemd timer runs.
#[derive(Debug, Serialize)]
pub struct Job {
    pub name: String,
    pub schedule: crate::types::Calendar,
    pub command: Vec<String>,
    pub user: Option<String>,
    /// For containers: in the running one (`exec`) or a one-off one (`run`).
    pub container: crate::syntax::module::JobContainer,
}

#[derive(Debug, Serialize)]
pub struct Container {
    pub image: ImageRef,
    /// Who chose the image: the module, or the system's `version`/`image` on the service.
    pub image_from: ImageFrom,
    /// Where the system's `version`/`image` value is (for diagnostics about the image).
    #[serde(skip)]
    pub image_span: Option<Span>,
    pub user: Option<String>,
    pub read_only: bool,
    pub tmpfs: Vec<String>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub stop_grace_period: Option<Duration>,
    pub network_mode: Option<String>,
    pub docker_socket: bool,
    pub shm_size: Option<Size>,
    pub init: bool,
    /// name → (soft, hard); -1 is unlimited.
    pub ulimits: BTreeMap<String, (i64, i64)>,
    pub devices: Vec<String>,
    /// Read-only bind mounts of host paths: (source, target).
    pub host_mounts: Vec<(String, String)>,
    /// Environment variable → the secret that feeds it (`[container.env_secrets]`): written on
    /// the host into a root-only env file (`render::service_env_file`), never into the store.
    pub env_secrets: BTreeMap<String, String>,
}

/// Where a container's image reference comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFrom {
    /// The module's pinned `[container] image`.
    Module,
    /// The module's image with the tag the service's `version` names (and no digest).
    Version,
    /// The service's own `image` reference.
    Image,
}

#[derive(Debug, Serialize)]
pub struct Native {
    pub packages: Vec<String>,
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    pub name: String,
    /// The port the service listens on (inside its container).
    pub port: u16,
    /// The port published on the host (equal to `port` unless the module or the system says).
    pub host_port: u16,
    pub protocol: Protocol,
    pub http: bool,
    /// The edge proxies to it over HTTP/2 without TLS (module `h2c = true`).
    pub h2c: bool,
    /// It speaks TLS (module `tls`, rendered per service): its clients' `requires.SLOT.tls`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

#[derive(Debug, Serialize)]
pub struct Volume {
    pub name: String,
    /// The volume's name on the host; services that name the same volume share it.
    pub source: String,
    pub target: String,
    pub backup: bool,
    /// `(uid, gid)` the volume's directory is given before the service starts.
    pub owner: Option<(u32, u32)>,
}

#[derive(Debug, Serialize)]
pub struct Health {
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl Health {
    /// How often the service is probed during its start period: every 5 s (Docker's default
    /// `start_interval`), or every `interval` when that is shorter. A service is healthy at the
    /// first probe that passes, so a start group waits seconds for a quick service, not a whole
    /// `interval` (30 s in most modules) before its first probe.
    pub fn start_interval(&self) -> Duration {
        Duration(self.interval.0.clamp(1, 5))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Dependency {
    /// The module's requirement slot this connection fills, if any.
    pub slot: Option<String>,
    pub service: String,
    pub endpoint: String,
    pub port: u16,
    pub protocol: Protocol,
    /// How this service reaches it: the compose service name on the same host, else the
    /// target host's private address.
    pub address: String,
    pub same_host: bool,
    /// What the consumer keeps there (`cache`, `queue`, `session`, `data`), from its slot.
    pub usage: Option<String>,
    /// The consumer's driver uses server-side prepared statements.
    pub prepared_statements: bool,
    /// Added by kiln (a collector scraping metrics), not written in `connects`.
    pub derived: bool,
    /// The slot says `wait = false`: no start order and no Compose `depends_on` (the consumer
    /// sends when the service is there, as a tracing exporter does).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_wait: bool,
    /// The HTTP path of a derived metrics connection.
    pub path: Option<String>,
    /// A connection through a public route (`connects = ["route:HOST"]`): the URL it uses. It
    /// leaves the host through its egress to the edge's 443; no private network carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The service's endpoint speaks TLS (its module's `tls`), so the consumer connects with
    /// TLS. A managed database and a route are TLS too, which the templates' `tls` adds.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Debug, Serialize)]
pub struct SecretUse {
    pub slot: String,
    pub secret: String,
    /// Path inside the container (or on the host for native services).
    pub target: String,
    pub uid: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct ConfigFile {
    pub name: String,
    pub target: String,
    pub mode: u32,
    pub content: String,
}

#[derive(Debug, Serialize)]
pub struct Metrics {
    pub endpoint: String,
    pub port: u16,
    pub path: String,
}

#[derive(Debug, Serialize)]
pub struct Backup {
    pub dump: Option<Vec<String>>,
    /// Run in the service's container with the dump on standard input (`kiln-backup.sh restore`).
    pub restore: Option<Vec<String>>,
    /// `restore` runs in a one-off container before the service starts, over its volumes' files
    /// as snapshotted (`[backup] restore_when = "stopped"`), not in the running service.
    pub restore_stopped: bool,
    pub volumes: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Resources {
    pub memory: Option<Size>,
    pub cpus: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Route {
    pub hostname: String,
    pub service: String,
    pub endpoint: String,
    /// Where the edge sends requests: `address:port`.
    pub upstream: String,
    /// The edge speaks h2c (HTTP/2 without TLS) to the upstream, as its endpoint asks.
    pub h2c: bool,
    pub tls: TlsMode,
    pub auth: Option<ForwardAuth>,
    pub crowdsec: Option<ForwardAuth>,
    /// (average per second, burst)
    pub rate_limit: Option<(u32, u32)>,
    pub cors: Vec<String>,
    pub allow: Vec<Cidr>,
    /// Origins besides its own that may frame the route (CSP `frame-ancestors`; the route then
    /// answers without `X-Frame-Options`): declared, and derived for an embeddable module from
    /// the public routes of the services that connect to it. Sorted, no duplicates.
    pub frame_ancestors: Vec<String>,
    /// The Content-Security-Policy the edge answers with, normalised (`types::parse_csp`); the
    /// `frame-ancestors` directive is added from `frame_ancestors` (`render::frame::policy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csp: Option<String>,
    pub edge_service: String,
    pub edge_host: String,
    /// The `[certificates.NAME]` it is served with: named, or the one on its edge covering its
    /// hostname; `tls` is then the certificate's challenge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(skip)]
    pub span: Span,
}

/// One certificate for several names (`[certificates.NAME]`), requested once by its edge and
/// shared by every route it covers.
#[derive(Debug, Serialize)]
pub struct Certificate {
    pub name: String,
    /// Its names, the first the subject (`main`), the rest subject alternative names.
    pub names: Vec<String>,
    /// The DNS provider answering DNS-01; `None`: HTTP-01.
    pub dns01: Option<ProviderKind>,
    pub edge_service: String,
    pub edge_host: String,
    #[serde(skip)]
    pub span: Span,
}

/// A TCP or UDP port an edge (Traefik) listens on and forwards, connection by connection or
/// datagram by datagram, to a service's endpoint (`[streams.NAME]`).
#[derive(Debug, Serialize)]
pub struct Stream {
    pub name: String,
    pub protocol: Protocol,
    /// The public port on the edge host.
    pub port: u16,
    pub service: String,
    pub endpoint: String,
    /// Where the edge forwards: `address:port`.
    pub upstream: String,
    /// Only these sources may connect; empty: anyone.
    pub allow: Vec<Cidr>,
    /// A DNS name pointing at the edge host, if the stream has one.
    pub hostname: Option<String>,
    pub edge_service: String,
    pub edge_host: String,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Debug, Serialize)]
pub struct ForwardAuth {
    pub service: String,
    pub endpoint: String,
    /// `address:port` of the auth server as seen from the edge.
    pub upstream: String,
    pub uri: String,
    pub traefik_uri: String,
    pub copy_headers: Vec<String>,
    /// Paths proxied to the auth service itself (its sign-in endpoints), e.g. `/outpost.goauthentik.io/*`.
    pub paths: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Secret {
    pub name: String,
    pub file: String,
    pub key: String,
}

/// The objects kiln declares in one authentik service (rendered by `render::authentik` as a
/// blueprint the worker applies at start): a proxy provider and application per route that
/// service authenticates, and an OAuth2 provider and application per service that logs in
/// through it (`login`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Blueprint {
    /// The authentik service.
    pub idp: String,
    pub proxies: Vec<ProxyApp>,
    pub clients: Vec<OidcClient>,
    /// Social logins declared on the authentik service (`social_logins`): OAuth sources.
    pub sources: Vec<SocialSource>,
}

/// An upstream identity provider users may sign in with at authentik (an OAuth source).
#[derive(Debug, Clone, Serialize)]
pub struct SocialSource {
    /// authentik's `provider_type` (`google`, `github`, `entraid`, `apple`, …); also the slug.
    pub kind: String,
    pub client_id: String,
    /// Where the client secret is mounted in the container applying the blueprint (`!File`).
    pub secret_file: String,
}

/// The realm kiln declares in one Keycloak service (rendered by `render::keycloak` as the JSON
/// Keycloak imports with `--import-realm`): named after the service, a confidential client per
/// service that logs in through it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Realm {
    pub name: String,
    pub clients: Vec<OidcClient>,
}

/// A route behind the embedded outpost's forward auth (single application).
#[derive(Debug, Clone, Serialize)]
pub struct ProxyApp {
    /// The application's slug and the provider's name, derived from the route's hostname.
    pub slug: String,
    /// `https://` + the route's hostname: where the outpost sends users back after sign-in.
    pub external_host: String,
}

/// A service signing in through the provider over OpenID Connect.
#[derive(Debug, Clone, Serialize)]
pub struct OidcClient {
    /// The application's slug (also in the issuer URL `…/application/o/SLUG/`).
    pub slug: String,
    pub client_id: String,
    /// The app's routes with the module's `[oidc] redirect_path`.
    pub redirect_uris: Vec<String>,
    /// Where the client secret is mounted in the container applying the blueprint (read with
    /// `!File`: the value never enters the blueprint).
    pub secret_file: String,
}
