//! `kiln schema`: a JSON Schema of the system file (and of each imported file), generated from
//! the language and the available modules, so editors (taplo, Even Better TOML) complete and
//! check systems. [`ROOT`] documents every key of the language once: this schema and the
//! reference page (`kiln reference`, `src/reference.rs`) are both generated from it.

mod json;
pub mod reference;
mod texts;

pub use json::{properties, system_schema};
pub use texts::*;

use serde_json::Value;

use crate::load::LoadedModule;
use crate::syntax::module::OptType;
use crate::syntax::system::ProviderKind;
use crate::syntax::tree::{Node, Value as TomlValue};

/// The type of a key's value.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Text(Text),
    Enum(&'static [&'static str]),
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    /// A positive number (integer or float).
    Number,
    List(&'static Ty),
    /// A table with exactly these keys.
    Table(&'static [Key]),
    /// A table of entries: the keys are of the given type, named like the placeholder in the
    /// reference (`[hosts.NAME]`), each value of the given type.
    Map(Text, &'static str, &'static Ty),
    /// The name of a module (`kiln modules list`).
    Module,
    /// A service table: the keys, and what the chosen module adds (its options, secret slots
    /// and volumes).
    Service(&'static [Key]),
    /// A module's options: what they are depends on the module.
    Options,
    /// In a template: an entry of the named top-level table, whose strings may hold
    /// `{instance}` and variables, plus `feature`.
    Featured(&'static str),
    /// A service's `connects`: a list of services, a table slot → service, or a list mixing
    /// both (src/syntax/connects.rs).
    Connects,
}

/// What a key is when it is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// Optional, nothing in its place (or an empty table or list).
    Absent,
    Required,
    /// This TOML value.
    Value(&'static str),
    /// Said in words (derived from other keys).
    Says(&'static str),
}

/// One key of the system language.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub ty: Ty,
    pub doc: &'static str,
    pub default: Default,
    /// A TOML value.
    pub example: Option<&'static str>,
}

const fn key(name: &'static str, ty: Ty, doc: &'static str) -> Key {
    Key { name, ty, doc, default: Default::Absent, example: None }
}

impl Key {
    const fn req(mut self) -> Key {
        self.default = Default::Required;
        self
    }
    const fn or(mut self, value: &'static str) -> Key {
        self.default = Default::Value(value);
        self
    }
    const fn says(mut self, words: &'static str) -> Key {
        self.default = Default::Says(words);
        self
    }
    const fn eg(mut self, example: &'static str) -> Key {
        self.example = Some(example);
        self
    }
}

const STR: Ty = Ty::Text(STRING);
const NAME_T: Ty = Ty::Text(NAME);
const PROVIDER_T: Ty = Ty::Text(PROVIDER_VALUE);
const STRS: Ty = Ty::List(&STR);
const NAMES_T: Ty = Ty::List(&NAME_T);
const COUNT: Ty = Ty::Int { min: 1, max: i64::MAX };

const SYSTEM: &[Key] = &[
    key("name", NAME_T, "The system's name: it prefixes the provider's resources and labels every server.").req().eg("\"shop\""),
    key(
        "domains",
        Ty::List(&Ty::Text(DOMAIN)),
        "The domains the system serves; module templates see them as `system.domains`.",
    )
    .eg("[\"example.com\"]"),
    key(
        "store",
        Ty::Text(URL),
        "Where `kiln push` publishes bundles over HTTP(S): a host whose user-data would exceed its provider's limit then boots a small stage-0 user-data that fetches its bundle from here by sha256.",
    )
    .eg("\"https://artifacts.example.com/kiln\""),
];

const PROVIDER: &[Key] = &[key(
    "kind",
    Ty::Enum(&ProviderKind::NAMES),
    "Which provider this is. `existing` is for servers that already exist (give their `address`); `cloudflare` runs DNS, the CDN and tunnels, never hosts.",
)
.req()
.eg("\"hetzner\"")];

const NETWORK: &[Key] =
    &[key("cidr", Ty::Text(CIDR), "The private network's range; hosts join it with an address inside it.").req().eg("\"10.0.0.0/24\"")];

const ZONE: &[Key] = &[
    key("description", STR, "What the zone holds, for `SYSTEM.md`.").eg("\"databases\""),
    key(
        "accepts",
        NAMES_T,
        "The zones whose hosts may connect to services in this zone; `public` is the internet. A connection from any other zone is an error (`zone-crossing`).",
    )
    .says("any zone may connect")
    .eg("[\"app\"]"),
];

const ADMIN: &[Key] = &[
    key("keys", Ty::List(&Ty::Text(SSH_KEY)), "The admin's SSH public keys.")
        .eg("[\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4rT3vTt99Ox5kndS4HmgTrKBT8SKzhK4rhGkEVGlCI ops@laptop\"]"),
    key("sources", Ty::List(&Ty::Text(SOURCE)), "Where SSH is open from, on public hosts (private hosts take SSH from the bastions).")
        .says("SSH open to any source")
        .eg("[\"203.0.113.0/24\"]"),
];

const BRIDGE: &[Key] = &[
    key("subnet", Ty::Text(CIDR), "The Docker network's fixed subnet.").says("Docker picks one").eg("\"172.30.1.0/24\""),
    key("internal", Ty::Bool, "Whether the network is cut off from outside the host (Compose `internal`).").or("false"),
];

const HOST: &[Key] = &[
    key("provider", NAME_T, "The `[providers]` entry that runs the server.").req().eg("\"hetzner\""),
    key(
        "type",
        PROVIDER_T,
        "The provider's server type (size).",
    )
    .says("`cx22` on Hetzner, `s-1vcpu-2gb` on DigitalOcean, `DEV1-S` on Scaleway")
    .eg("\"cx32\""),
    key("location", PROVIDER_T, "The provider's location or region.").says("the provider's choice (`fra1` on DigitalOcean)").eg("\"nbg1\""),
    key("image", STR, "The base image, one of `images/` (e.g. `debian-12`, `debian-13`, `ubuntu-24.04`).").req().eg("\"debian-12\""),
    key("zone", NAME_T, "The `[zones]` entry (trust zone) the host belongs to.").eg("\"app\""),
    key("public", Ty::Bool, "Whether the server gets a public address (IPv4 and IPv6). Edges need one.").or("false"),
    key("bastion", Ty::Bool, "Whether this host is a bastion: private hosts then take SSH only from the bastions' private addresses.")
        .or("false"),
    key("networks", Ty::Map(NAME, "NETWORK", &Ty::Text(ADDRESS)), "The private networks the host joins: network name → its address there.")
        .eg("{ lan = \"10.0.0.2\" }"),
    key("disks", Ty::Map(NAME, "DISK", &Ty::Text(SIZE)), "The host's data volume: `data` → its size (above zero; default 10 GiB, at least 10 GB on Hetzner). A host that holds data (backed-up volumes, dumps, an edge's certificates) gets it anyway; OpenTofu creates it with `prevent_destroy` and attaches it to whichever server is the host, the provisioner mounts it at /var/lib/kiln/data with Docker's data root and Caddy's data on it. `data` is the only name accepted (a host has one data volume); any other is an error.").eg("{ data = \"50GiB\" }"),
    key("address", Ty::Text(ADDRESS), "The public address of a server that already exists (provider kind `existing`).")
        .eg("\"203.0.113.10\""),
    key(
        "ssh_host_key",
        Ty::Text(SSH_HOST_KEY),
        "The server's SSH host public key (an existing server's `/etc/ssh/ssh_host_ed25519_key.pub`). `kiln deploy` pins it in the state directory's `known_hosts` on first contact and refuses a server that presents another; without it, the first deploy needs `--trust-host-key HOST=SHA256:…`.",
    )
    .eg("\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG…\""),
    key(
        "server_backups",
        Ty::Bool,
        "The provider's automated backups of the whole server (OpenTofu's `backups` on the server): Hetzner takes one a day into seven slots (a flat fee per server, https://docs.hetzner.com/cloud/general/faq/), DigitalOcean at its default backup policy. Crash-consistent images of the server's own disk, not its attached volumes: data volumes are backed up by `[backup]`. Hetzner and DigitalOcean only.",
    )
    .or("false"),
    key(
        "ssh_port",
        Ty::Int { min: 1, max: 65535 },
        "The port sshd listens on. The provisioner's sshd drop-in (`Port`), ufw, fail2ban's `sshd` jail, the provider firewall (OpenTofu) and `kiln deploy`'s connections (also through a bastion) all use it; stream ports and published ports may not take it.",
    )
    .or("22")
    .eg("2222"),
    key("group", NAME_T, "A rollout group: labels the server, selects hosts in `kiln show` and `kiln deploy --group`, and orders the rollout (`canary` first, or `[deploy] order`).").eg("\"canary\""),
    key("password_ssh", Ty::Bool, "Allow SSH password logins (the `password-ssh` rule warns).").or("false"),
    key(
        "fail2ban_http",
        Ty::Bool,
        "fail2ban also bans clients that fail the edge's authentication (HTTP 401/403 floods); needs a native `caddy` or a `traefik` edge on the host.",
    )
    .or("false"),
    key(
        "egress",
        STR,
        "How a host without a public address reaches the internet (packages, images, its bundle): `via:GATEWAY`, a public host on a common private network that NATs for it (derived when there is exactly one), or `none` (the `no-egress` rule then needs an `[allow.no-egress]`). Public hosts, DigitalOcean droplets and existing hosts use their own address; a private Scaleway host without it, its network's Public Gateway (kiln creates it).",
    )
    .says("the one public host on a common private network")
    .eg("\"via:edge\""),
    key(
        "bridges",
        Ty::Map(NAME, "BRIDGE", &Ty::Table(BRIDGE)),
        "Docker networks on this host, which services join with their `bridges`.",
    ),
];

const SERVICE: &[Key] = &[
    key("module", Ty::Module, "The module this service instantiates (`kiln modules list`, docs/modules/).").req().eg("\"postgres\""),
    key("host", Ty::Text(HOST_REF), "The host it runs on; `\"*\"` puts one copy on every host, named `SERVICE-HOST`.").req().eg("\"db\""),
    key(
        "connects",
        Ty::Connects,
        "Services (or `service.endpoint`) it connects to: fills the module's requirement slots, opens firewall ports and orders start-up. A list entry fills the one slot its module matches; when the module has two slots of one kind (sessions and a cache, both Valkey) name them with a table, `{ sessions = \"valkey-a\", cache = \"valkey-b\" }` (one service may fill several), or mix both forms: `[\"editor\", { cache = \"valkey\" }]`. Each service is named once, each slot filled once.",
    )
    .eg("[\"db\", \"cache\"]"),
    key("options", Ty::Options, "Values for the module's options; each module's page in docs/modules/ lists them with types and defaults.")
        .says("the module's defaults")
        .eg("{ version = \"17\" }"),
    key("secrets", Ty::Map(NAME, "SLOT", &NAME_T), "The module's secret slots, each bound to a `[secrets]` entry: slot → secret name.")
        .eg("{ password = \"db_password\" }"),
    key(
        "volumes",
        Ty::Map(NAME, "VOLUME", &NAME_T),
        "The module's volumes, each given its name on the host: services naming one volume share it.",
    )
    .says("`SERVICE-VOLUME`")
    .eg("{ data = \"pgdata\" }"),
    key(
        "environment",
        Ty::Map(STRING, "VAR", &Ty::Text(STRING)),
        "Environment variables of the service's own, for a module that takes them (`[container] user_environment`: the `app` module): added to the module's, never one it sets (E0024). One-line values; they are in the build's artifacts, so a secret goes in `env_secrets`.",
    )
    .says("the module's variables only")
    .eg("{ FEATURE_FLAGS = \"checkout,search\" }"),
    key(
        "env_secrets",
        Ty::Map(STRING, "VAR", &NAME_T),
        "Environment variables fed by `[secrets]` entries, likewise: the provisioner writes them from the delivered secret into a root-only env file the Compose service reads; the value is never in the store.",
    )
    .says("none")
    .eg("{ STRIPE_API_KEY = \"stripe_api_key\" }"),
    key("memory", Ty::Text(SIZE), "The memory limit (above zero).").says("the module's default limit").eg("\"1GiB\""),
    key("cpus", Ty::Number, "The CPU limit, in cores.").says("the module's default limit").eg("1.5"),
    key("bridges", NAMES_T, "The host's Docker networks (`[hosts.NAME.bridges]`) this service joins.")
        .says("the host's default network")
        .eg("[\"front\"]"),
    key("phase", Ty::Int { min: 0, max: 99 }, "The start phase: every service of a phase is up before the next phase starts.").or("0"),
    key("expose", STRS, "Endpoints opened to the internet on the host's public address, not through an edge.").eg("[\"smtp\"]"),
    key(
        "ports",
        Ty::Map(NAME, "ENDPOINT", &Ty::Int { min: 1, max: 65535 }),
        "Host ports for a container's endpoints, where the published port differs from the container's: peers on other hosts, the edge and the firewall use it.",
    )
    .says("the module's `host_port`, else the endpoint's port")
    .eg("{ metrics = 9301 }"),
    key(
        "version",
        Ty::Text(IMAGE_TAG),
        "Run this tag of the module's image instead of the module's pinned one (registry and repository kept, a digest dropped): a canary host or group runs a newer release first, also through a template instance's `vars`. Container modules only; not with `image`.",
    )
    .says("the module's pinned image")
    .eg("\"v4.17.3\""),
    key(
        "image",
        Ty::Text(IMAGE),
        "Run this image instead of the module's (another registry or a mirror, a tag with its digest). Container modules only; not with `version`.",
    )
    .says("the module's pinned image")
    .eg("\"registry.example.com/mirror/postgres:18.6-trixie\""),
    key(
        "login",
        NAME_T,
        "Sign users in through this identity provider service (module `authentik` or `keycloak`, with a route): kiln registers the service there as an OpenID Connect client (an OAuth2 provider and application in authentik's blueprint; a client in the Keycloak realm it imports, named after the Keycloak service) and fills the module's `[oidc]` options, the issuer URL (and the endpoints, where the module asks for them) and a client id derived from the service's name; bind the module's client-secret slot to a secret, which the provider reads from a file. The module must declare `[oidc]`.",
    )
    .says("no single sign-on wiring")
    .eg("\"authentik\""),
    key(
        "social_logins",
        Ty::Map(NAME, "KIND", &Ty::Table(SOCIAL_LOGIN)),
        "On an `authentik` service: upstream identity providers users may sign in with (authentik OAuth sources in its blueprint, shown on its login page), by kind: `google`, `github`, `entraid` (Microsoft), `apple`, `discord`, `gitlab`, `facebook`, `twitch`, `slack`, `reddit`, `patreon`, `twitter`, `wechat`. The client secret is a `[secrets]` entry, delivered as a file to the worker applying the blueprint and read there with `!File`.",
    )
    .says("no social logins")
    .eg("{ google = { client_id = \"1234.apps.googleusercontent.com\", client_secret = \"google_client_secret\" } }"),
];

const SOCIAL_LOGIN: &[Key] = &[
    key("client_id", STR, "The client id registered at the provider (Apple: `SERVICES_ID;TEAM_ID;KEY_ID`).")
        .req()
        .eg("\"1234.apps.googleusercontent.com\""),
    key("client_secret", NAME_T, "The `[secrets]` entry holding the client secret (Apple: the ES256 private key, PEM).")
        .req()
        .eg("\"google_client_secret\""),
];

const RATE_LIMIT: &[Key] = &[
    key("average", COUNT, "Requests per second on average.").req().eg("100"),
    key("burst", COUNT, "Requests allowed in a burst above the average.").says("the average").eg("200"),
];

const ROUTE: &[Key] = &[
    key("service", NAME_T, "The service the route reaches.").req().eg("\"app\""),
    key("endpoint", STR, "The service's HTTP endpoint the route reaches.").says("the module's only HTTP endpoint").eg("\"http\""),
    key(
        "tls",
        Ty::Enum(&["acme", "dns", "internal"]),
        "How the edge gets a certificate: `acme` (publicly trusted over HTTP-01/TLS-ALPN), `dns` (DNS-01, for wildcards; Traefik edges), `internal` (the edge's own CA, for internal names and tests).",
    )
    .or("\"acme\""),
    key("auth", NAME_T, "A forward-auth service (module `authentik` or `oauth2-proxy`) that authenticates every request; `\"none\"`: none, whatever `[route_defaults]` says.")
        .eg("\"sso\""),
    key("edge", NAME_T, "The edge proxy service (module `caddy` or `traefik`) that terminates the route.")
        .says("the system's only edge")
        .eg("\"proxy\""),
    key("rate_limit", Ty::Table(RATE_LIMIT), "Limits requests per client (Traefik edges).").eg("{ average = 100, burst = 200 }"),
    key("cors", STRS, "Origins allowed by CORS.").eg("[\"https://app.example.com\"]"),
    key("allow", Ty::List(&Ty::Text(ALLOWED)), "Only these sources may reach the route; an admin's name stands for the admin's `sources`.").says("any source").eg("[\"203.0.113.0/24\", \"ops\"]"),
    key("crowdsec", NAME_T, "A CrowdSec bouncer service (module `crowdsec-bouncer-traefik`) that vets every request (Traefik edges).")
        .eg("\"bouncer\""),
    key(
        "frame_ancestors",
        Ty::List(&Ty::Text(ORIGIN)),
        "Origins besides the route's own that may show it in a frame: the edge answers with `Content-Security-Policy: frame-ancestors 'self' ORIGIN…` (replacing any the application sends) instead of `X-Frame-Options: SAMEORIGIN`. A route to an embeddable module (`[module] embeddable`) also gets the routes of the services that connect to it.",
    )
    .says("the routes of the services connecting to an embeddable module; else none (`X-Frame-Options: SAMEORIGIN`)")
    .eg("[\"https://chat.example.org\"]"),
    key(
        "csp",
        Ty::Text(CSP),
        "The Content-Security-Policy the edge answers with, replacing the application's own; `frame_ancestors` adds its `frame-ancestors` directive. An edge's policy is the whole policy the browser sees: set one for routes whose application sends none, or one at least as open as the application's.",
    )
    .says("none: the application's own (with `frame_ancestors`, only the `frame-ancestors` directive)")
    .eg("\"default-src 'self'; img-src 'self' data:; object-src 'none'\""),
    key(
        "certificate",
        NAME_T,
        "A `[certificates.NAME]` the route is served with: it must cover the route's hostname and be held by the route's edge; the certificate's `dns01` then decides the challenge (set no `tls`).",
    )
    .says("the first certificate (by name) on the route's edge that covers its hostname, unless the route sets `tls`; else a certificate of its own")
    .eg("\"wildcard\""),
];

const ROUTE_DEFAULTS: &[Key] = &[
    key("tls", Ty::Enum(&["acme", "dns", "internal"]), "The TLS mode of every route that sets none.").eg("\"dns\""),
    key("auth", NAME_T, "The forward-auth service of every route that names none; a route takes it away with `auth = \"none\"`.")
        .eg("\"sso\""),
    key("edge", NAME_T, "The edge of every route that names none.").eg("\"proxy\""),
    key("rate_limit", Ty::Table(RATE_LIMIT), "The rate limit of every route that sets none.").eg("{ average = 50, burst = 100 }"),
    key("cors", STRS, "CORS origins of every route that writes no `cors`.").eg("[\"https://home.example.com\"]"),
    key("allow", Ty::List(&Ty::Text(ALLOWED)), "The allow-list of every route that writes no `allow` (`allow = []` on a route opens it).")
        .eg("[\"203.0.113.0/24\"]"),
    key("crowdsec", NAME_T, "The CrowdSec bouncer of every route that names none; a route takes it away with `crowdsec = \"none\"`.")
        .eg("\"bouncer\""),
    key("frame_ancestors", Ty::List(&Ty::Text(ORIGIN)), "Frame ancestors of every route that writes no `frame_ancestors`.")
        .eg("[\"https://chat.example.org\"]"),
    key("csp", Ty::Text(CSP), "The Content-Security-Policy of every route that sets none.").eg("\"default-src 'self'; object-src 'none'\""),
];

const CERTIFICATE: &[Key] = &[
    key(
        "names",
        Ty::List(&Ty::Text(HOSTNAME)),
        "The names the one certificate holds, the first its subject and the rest its alternative names; a wildcard `*.example.com` covers one label under `example.com` (not `example.com` itself) and needs `dns01`.",
    )
    .req()
    .eg("[\"example.com\", \"*.example.com\"]"),
    key(
        "dns01",
        Ty::Enum(&crate::syntax::certificates::DNS_PROVIDERS),
        "The DNS provider that hosts the names' zone and answers the DNS-01 challenge; the edge must hold its API token (a module secret slot with `dns01 = \"PROVIDER\"`, bound).",
    )
    .says("HTTP-01 (no wildcard)")
    .eg("\"cloudflare\""),
    key("edge", NAME_T, "The edge service (module `traefik`: Caddy requests one certificate per name) that requests and serves it.")
        .says("the system's only edge")
        .eg("\"traefik\""),
];

const STREAM: &[Key] = &[
    key("service", NAME_T, "The service the edge forwards to.").req().eg("\"forge\""),
    key("endpoint", STR, "The service's endpoint the edge forwards to.")
        .says("the module's only endpoint of the stream's protocol that is not HTTP")
        .eg("\"ssh\""),
    key(
        "port",
        Ty::Int { min: 1, max: 65535 },
        "The public port the edge listens on; not 22/tcp (sshd), 80/tcp, 443 or 8082/tcp (the edge's own).",
    )
    .req()
    .eg("2222"),
    key(
        "protocol",
        Ty::Enum(&["tcp", "udp"]),
        "`tcp`: each connection is forwarded as it is (a Traefik TCP router that takes every connection on the port); `udp`: each datagram. Must be the endpoint's.",
    )
    .says("the endpoint's"),
    key("edge", NAME_T, "The edge service (module `traefik`: Caddy forwards HTTP only) that listens on the port.")
        .says("the system's only edge")
        .eg("\"traefik\""),
    key(
        "hostname",
        Ty::Text(DOMAIN),
        "A DNS name for the edge host, given an A record in its `[dns]` zone like a route's (not proxied: a CDN forwards HTTP only).",
    )
    .says("no name of its own")
    .eg("\"git.example.com\""),
    key(
        "allow",
        Ty::List(&Ty::Text(ALLOWED)),
        "Only these sources may connect: the firewall opens the port to them alone (and a TCP stream's Traefik router refuses others).",
    )
    .says("any source")
    .eg("[\"203.0.113.0/24\"]"),
];

const SECRET: &[Key] = &[
    key(
        "file",
        STR,
        "The file holding it, next to the system: a SOPS file (YAML, JSON or dotenv) or a plain age file (`.age`, one secret).",
    )
    .req()
    .eg("\"secrets.sops.yaml\""),
    key("key", STR, "Its key in a SOPS file.").says("the secret's name").eg("\"postgres_password\""),
];

const DNS: &[Key] = &[
    key("provider", NAME_T, "The `[providers]` entry that hosts the zone (kind `cloudflare`, `hetzner` or `digitalocean`).")
        .req()
        .eg("\"cloudflare\""),
    key("proxied", Ty::Bool, "Whether the CDN proxies the records (Cloudflare's orange cloud). A proxied zone gets SSL mode `strict`: every route in it needs a publicly trusted certificate (`tls = \"acme\"` or `\"dns\"`).").or("false"),
    key(
        "existing",
        Ty::Bool,
        "The zone exists already at the provider (with records kiln does not manage, such as mail): the OpenTofu root looks it up (`data \"hcloud_zone\"`, `data \"digitalocean_domain\"`) and only adds the routes' records, so neither `apply` fails on it nor `destroy` deletes it. A zone kiln creates (`false`) is `prevent_destroy`: a `destroy` of the root is refused (but a zone removed from the system is deleted with its records: Terraform honours `prevent_destroy` only for resources still in the root). Cloudflare zones always exist (their id is a variable).",
    )
    .says("`false` (kiln creates the zone); always `true` on Cloudflare"),
];

const DEPLOY: &[Key] = &[
    key(
        "state",
        Ty::Text(S3_STATE),
        "The S3 object holding the OpenTofu state, locked while OpenTofu works by a `.tflock` object next to it (S3-native locking: OpenTofu or Terraform 1.10 and later). Credentials are never written: the backend reads them from the environment (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, a role).",
    )
    .says("a local state file in the state directory")
    .eg("\"s3://acme-tofu-state/kiln/prod.tfstate\""),
    key("state_region", PROVIDER_T, "The bucket's region.").says("`AWS_REGION` from the environment").eg("\"eu-central-1\""),
    key(
        "state_endpoint",
        Ty::Text(URL),
        "An S3-compatible service holding the bucket (MinIO, R2, Garage, Backblaze B2), addressed path-style, without AWS account or region checks.",
    )
    .says("AWS S3")
    .eg("\"https://s3.eu-central-003.backblazeb2.com\""),
    key(
        "order",
        NAMES_T,
        "The rollout groups (hosts' `group`) in the order `kiln deploy` takes them, one wave per group; a failing wave stops the rollout, leaving the later groups untouched. Each name must be some host's group, and every host's group must be listed; hosts without a group deploy last.",
    )
    .says("`canary` first, then every other host")
    .eg("[\"canary\", \"production\"]"),
];

const CDN: &[Key] =
    &[key("provider", Ty::Enum(&["cloudflare"]), "The CDN in front of the edges: edges then trust exactly its address ranges.")
        .req()
        .eg("\"cloudflare\"")];

const BUCKET: &[Key] = &[
    key("provider", NAME_T, "The `[providers]` entry that creates it (kind `digitalocean`, `hetzner` or `scaleway`). A Hetzner Object Storage bucket is created through its S3 API with the `aminueza/minio` provider; its access and secret key are the sensitive variables `hetzner_s3_access_key` and `hetzner_s3_secret_key`. The bucket is named `SYSTEM-NAME`; a restic repository in it is `s3:https://ENDPOINT/SYSTEM-NAME/PATH`.").req().eg("\"do\""),
    key("region", PROVIDER_T, "The provider's region; on Hetzner the Object Storage location (`fsn1`, `nbg1`, `hel1`), whose endpoint is `https://LOCATION.your-objectstorage.com`.").says("`fra1` on DigitalOcean, `fsn1` on Hetzner, the provider's default on Scaleway").eg("\"ams3\""),
];

const DATABASE: &[Key] = &[
    key("provider", NAME_T, "The `[providers]` entry that runs it (kind `scaleway`).").req().eg("\"scw\""),
    key("engine", PROVIDER_T, "The database engine and version.").or("\"PostgreSQL-16\""),
    key("node_type", PROVIDER_T, "The provider's node type.").or("\"DB-DEV-S\""),
    key("user", Ty::Text(USER), "The database user; its password is a sensitive OpenTofu variable.").or("\"app\""),
    key("region", PROVIDER_T, "The provider's region.").says("the provider's default").eg("\"fr-par\""),
];

const ALLOW: &[Key] = &[
    key("hosts", NAMES_T, "The hosts the rule is waived for.").eg("[\"edge\"]"),
    key("services", NAMES_T, "The services the rule is waived for.").eg("[\"app\"]"),
    key("routes", Ty::List(&Ty::Text(HOSTNAME)), "The routes the rule is waived for.").eg("[\"app.example.com\"]"),
    key("reason", STR, "Why the exception is safe here: at least a sentence.")
        .req()
        .eg("\"The VPN in front of this host already restricts who can reach it.\""),
];

const KEEP: &[Key] = &[
    key("daily", COUNT, "Daily snapshots to keep.").eg("7"),
    key("weekly", COUNT, "Weekly snapshots to keep.").eg("4"),
    key("monthly", COUNT, "Monthly snapshots to keep.").eg("6"),
    key("yearly", COUNT, "Yearly snapshots to keep.").eg("2"),
    key("last", COUNT, "The most recent snapshots to keep.").eg("3"),
];

const BACKUP: &[Key] = &[
    key("repository", STR, "The restic repository; `{host}` becomes the host's name.")
        .req()
        .eg("\"sftp:u1@u1.your-storagebox.de:/restic/{host}\""),
    key("password", STR, "The `[secrets]` entry holding the repository password (`{host}` gives every host its own).")
        .req()
        .eg("\"restic_password\""),
    key("environment", STR, "A `[secrets]` entry holding `KEY=value` lines for the repository backend's settings (B2, Azure, GCS, Swift, rclone credentials; an S3 region).")
        .eg("\"restic_env\""),
    key(
        "ssh_key",
        STR,
        "SFTP: the `[secrets]` entry holding the private SSH key the server accepts (`{host}` gives every host its own). A Hetzner Storage Box (`*.your-storagebox.de`) is dialled on port 23 unless the `sftp://` URL names a port.",
    )
    .eg("\"storagebox_ssh_key\""),
    key(
        "host_key",
        STR,
        "SFTP: the server's public host key (`TYPE BASE64`, as `ssh-keyscan` prints it), pinned in the backup's own `known_hosts`; any other key is refused.",
    )
    .eg("\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA…\""),
    key("access_key_id", STR, "S3: the `[secrets]` entry holding the access key id (`AWS_ACCESS_KEY_ID`).").eg("\"spaces_access_key_id\""),
    key("secret_access_key", STR, "S3: the `[secrets]` entry holding the secret access key (`AWS_SECRET_ACCESS_KEY`).")
        .eg("\"spaces_secret_access_key\""),
    key(
        "rest_password",
        STR,
        "REST server (`rest:https://USER@HOST/`): the `[secrets]` entry holding USER's password, put into the URL restic reads when the script runs (a password written in `repository` would be in the store).",
    )
    .eg("\"rest_password\""),
    key("schedule", Ty::Text(CALENDAR), "When backups run.").or("\"*-*-* 03:00:00\""),
    key("check", Ty::Text(CALENDAR), "When the repository is checked.").or("\"Sun *-*-* 05:00:00\""),
    key("drill", Ty::Text(CALENDAR), "When a restore drill runs (`kiln-backup.sh drill`: the latest snapshot restored into a scratch directory and verified, each database dump loaded into a throw-away copy of its service; its failure alerts like a failed backup). Unset: only by hand.").eg("\"*-*-01 05:30:00\""),
    key("keep", Ty::Table(KEEP), "Which snapshots to keep; at least one count.").req().eg("{ daily = 7, weekly = 4, monthly = 6 }"),
];

const RECEIVER: &[Key] = &[
    key("email", STR, "Mail every alert to this address (one address; the SMTP relay is the `alertmanager` service's options).")
        .eg("\"ops@example.com\""),
    key(
        "slack",
        NAME_T,
        "The `[secrets]` entry holding a Slack-compatible incoming-webhook URL (Slack, Mattermost): alerts are posted in Slack's format.",
    )
    .eg("\"alert_webhook_url\""),
    key("channel", STR, "With `slack`: the channel (`#name`) or user (`@name`) to post to; empty posts to the webhook's own.")
        .eg("\"#alerts\""),
    key("webhook", NAME_T, "The `[secrets]` entry holding a URL that receives Alertmanager's webhook JSON.").eg("\"alert_bridge_url\""),
];

const ALERTS: &[Key] = &[key(
    "receivers",
    Ty::Map(NAME, "NAME", &Ty::Table(RECEIVER)),
    "Who is told when a derived alert fires: each receiver has exactly one of `email`, `slack`, `webhook`. The `alertmanager` service a Prometheus connects to delivers every alert to every receiver.",
)];

const TEMPLATE: &[Key] = &[
    key("hosts", Ty::Map(STRING, "HOST", &Ty::Featured("hosts")), "Hosts each instance gets."),
    key("services", Ty::Map(STRING, "SERVICE", &Ty::Featured("services")), "Services each instance gets."),
    key("routes", Ty::Map(STRING, "HOSTNAME", &Ty::Featured("routes")), "Routes each instance gets."),
    key("streams", Ty::Map(STRING, "NAME", &Ty::Featured("streams")), "Streams each instance gets."),
    key("secrets", Ty::Map(STRING, "SECRET", &Ty::Featured("secrets")), "Secrets each instance gets."),
    key("dns", Ty::Map(STRING, "ZONE", &Ty::Featured("dns")), "DNS zones each instance gets."),
];

const INSTANCE: &[Key] = &[
    key("template", NAME_T, "The `[templates]` entry to stamp out.").req().eg("\"client\""),
    key("features", STRS, "The features this instance has: template entries with a `feature` are kept only if it is listed here.")
        .eg("[\"pretix\"]"),
    key("vars", Ty::Map(STRING, "VAR", &STR), "Variables substituted for `{VAR}` in the template's keys and strings.")
        .eg("{ group = \"canary\" }"),
];

/// The top level of a system file: every key of the language is reachable from here.
pub const ROOT: &[Key] = &[
    key("imports", STRS, "Other system files merged into this one, relative to this file; they may not leave the system directory.")
        .eg("[\"hosts.toml\", \"services.toml\"]"),
    key("system", Ty::Table(SYSTEM), "The system itself: exactly one file of the system declares it."),
    key("providers", Ty::Map(NAME, "NAME", &Ty::Table(PROVIDER)), "The clouds and services kiln creates resources with."),
    key("networks", Ty::Map(NAME, "NAME", &Ty::Table(NETWORK)), "Private networks between hosts."),
    key(
        "zones",
        Ty::Map(NAME, "NAME", &Ty::Table(ZONE)),
        "Trust zones: which hosts may connect to which (checked by the `zone-crossing` rule).",
    ),
    key(
        "admins",
        Ty::Map(NAME, "NAME", &Ty::Table(ADMIN)),
        "People who log in over SSH: each gets a user of that name on every host (in `sudo`, no password), and SSH opens to their `sources`.",
    ),
    key("hosts", Ty::Map(NAME, "NAME", &Ty::Table(HOST)), "Servers: created by their provider, or existing ones."),
    key("services", Ty::Map(NAME, "NAME", &Ty::Service(SERVICE)), "Instances of modules, each on a host."),
    key(
        "routes",
        Ty::Map(HOSTNAME, "HOSTNAME", &Ty::Table(ROUTE)),
        "Public HTTPS hostnames, each terminated by an edge proxy and reaching one service; kiln derives their DNS records, firewall rules and probes.",
    ),
    key(
        "route_defaults",
        Ty::Table(ROUTE_DEFAULTS),
        "What every route gets unless it says otherwise (forward auth, a bouncer, a rate limit, an allow-list…), so many routes do not repeat the same lines. A route's own value replaces the default, a list the whole list (`allow = []` included); `auth = \"none\"` and `crowdsec = \"none\"` take a default away.",
    ),
    key(
        "streams",
        Ty::Map(NAME, "NAME", &Ty::Table(STREAM)),
        "TCP and UDP ports a Traefik edge forwards as they are to a service's endpoint (Git over SSH, a game server, an SMTP relay): an entry point and a TCP/UDP router each; kiln derives the firewall, the edge's published port and the DNS record of its `hostname`.",
    ),
    key(
        "secrets",
        Ty::Map(NAME, "NAME", &Ty::Table(SECRET)),
        "Secrets services and backups name; artifacts hold references, never values.",
    ),
    key("dns", Ty::Map(DOMAIN, "ZONE", &Ty::Table(DNS)), "DNS zones kiln manages records in, for the routes under them."),
    key("cdn", Ty::Table(CDN), "A CDN in front of every edge."),
    key("buckets", Ty::Map(NAME, "NAME", &Ty::Table(BUCKET)), "Object-storage buckets the provider creates."),
    key(
        "databases",
        Ty::Map(NAME, "NAME", &Ty::Table(DATABASE)),
        "Managed databases the provider runs (the password is an OpenTofu variable).",
    ),
    key(
        "allow",
        Ty::Map(STRING, "RULE", &Ty::Table(ALLOW)),
        "Waives a rule (`kiln explain` lists them) for the named hosts, services or routes, with a reason. Correctness rules cannot be waived.",
    ),
    key(
        "certificates",
        Ty::Map(NAME, "NAME", &Ty::Table(CERTIFICATE)),
        "Certificates for several names (a wildcard with its apex) that a Traefik edge requests once and serves on every route they cover, instead of one certificate per route: the routes' routers ask the same resolver for the same domains.",
    ),
    key(
        "backup",
        Ty::Table(BACKUP),
        "Backs up, with restic, every volume a module marks as data on every host (database dumps first), on a systemd timer.",
    ),
    key(
        "alerts",
        Ty::Table(ALERTS),
        "Alerting: kiln derives Prometheus alert rules from what is scraped (targets down, disks, memory, backups, unhealthy containers, route probes, certificates); this says who is told.",
    ),
    key(
        "templates",
        Ty::Map(NAME, "NAME", &Ty::Table(TEMPLATE)),
        "Groups of hosts, services, routes, streams, secrets and DNS zones written once and stamped out by `[instances]`: `{instance}` and the instance's `vars` are substituted in every key and string.",
    ),
    key("instances", Ty::Map(NAME, "NAME", &Ty::Table(INSTANCE)), "Copies of a template; the instance's name is `{instance}`."),
    key(
        "deploy",
        Ty::Table(DEPLOY),
        "How the system is deployed: the order of its rollout groups, and where its OpenTofu state lives. Without it, the state is a local file in the state directory (`.kiln/state/<system>/terraform.tfstate`, `--state DIR`).",
    ),
];

/// The top-level key `name`.
pub fn root_key(name: &str) -> &'static Key {
    ROOT.iter().find(|k| k.name == name).expect("a top-level key")
}

/// A TOML value written in the table, as JSON.
pub fn toml_json(text: &str) -> Value {
    let doc: toml::Table = toml::from_str(&format!("v = {text}")).expect("examples in the key table are TOML values");
    serde_json::to_value(&doc["v"]).expect("TOML is JSON")
}

/// The key every template entry may carry.
pub const FEATURE: Key =
    key("feature", STR, "Keeps this entry only for instances that list this feature in their `features`.").eg("\"pretix\"");
