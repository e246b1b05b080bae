//! The system language: reads one parsed TOML file into declarations, typed and spanned.

use crate::diag::Span;
use crate::syntax::decode::{Sink, Sp, TableReader, as_str, typed};
use crate::syntax::tree::Node;
use crate::types::{self, Calendar, Cidr};

/// Everything one system file declares; several files (imports) are merged by `load`.
#[derive(Default, Debug)]
pub struct SystemFile {
    pub system: Option<SystemDecl>,
    pub imports: Vec<Sp<String>>,
    pub providers: Vec<ProviderDecl>,
    pub networks: Vec<NetworkDecl>,
    pub zones: Vec<ZoneDecl>,
    pub admins: Vec<AdminDecl>,
    pub hosts: Vec<HostDecl>,
    pub services: Vec<ServiceDecl>,
    pub routes: Vec<RouteDecl>,
    /// `[streams.NAME]`: TCP/UDP ports the edge forwards (`crate::syntax::streams`).
    pub streams: Vec<crate::syntax::streams::StreamDecl>,
    /// `[route_defaults]`: what every route gets unless it says otherwise.
    pub route_defaults: Option<crate::syntax::route_defaults::RouteDefaultsDecl>,
    /// `[certificates.NAME]`: certificates routes share (`crate::syntax::certificates`).
    pub certificates: Vec<crate::syntax::certificates::CertificateDecl>,
    pub secrets: Vec<SecretDecl>,
    pub cdn: Option<CdnDecl>,
    pub dns: Vec<DnsZoneDecl>,
    pub buckets: Vec<BucketDecl>,
    pub databases: Vec<DatabaseDecl>,
    pub allows: Vec<AllowDecl>,
    pub backup: Option<BackupDecl>,
    /// `[alerts.receivers.NAME]`: who is told when an alert fires.
    pub receivers: Vec<ReceiverDecl>,
    /// `[deploy]`: where the OpenTofu state lives.
    pub deploy: Option<crate::syntax::deploy::DeployDecl>,
}

/// `[alerts.receivers.NAME]`: one destination of the system's alerts; exactly one of `email`,
/// `slack` (a secret holding a Slack-compatible incoming-webhook URL: Slack, Mattermost) or
/// `webhook` (a secret holding a URL that takes Alertmanager's webhook JSON).
#[derive(Debug)]
pub struct ReceiverDecl {
    pub name: Sp<String>,
    pub span: Span,
    pub email: Option<Sp<String>>,
    pub slack: Option<Sp<String>>,
    pub channel: Option<Sp<String>>,
    pub webhook: Option<Sp<String>>,
}

/// `[allow.RULE]`: a rule waived for named hosts, services or routes, with the reason.
#[derive(Debug)]
pub struct AllowDecl {
    pub rule: Sp<String>,
    pub span: Span,
    pub hosts: Vec<Sp<String>>,
    pub services: Vec<Sp<String>>,
    pub routes: Vec<Sp<String>>,
    pub reason: Option<Sp<String>>,
}

/// `[backup]`: where and when every host backs up the data its services declare.
#[derive(Debug)]
pub struct BackupDecl {
    pub span: Span,
    /// A restic repository; `{host}` becomes the host's name.
    pub repository: Option<Sp<String>>,
    /// The secret holding the repository password.
    pub password: Option<Sp<String>>,
    /// A secret holding `KEY=value` lines for the repository backend's other settings.
    pub environment: Option<Sp<String>>,
    /// SFTP: the secret holding the private SSH key, and the server's public host key.
    pub ssh_key: Option<Sp<String>>,
    pub host_key: Option<Sp<String>>,
    /// S3: the secrets holding the access key id and the secret access key.
    pub access_key_id: Option<Sp<String>>,
    pub secret_access_key: Option<Sp<String>>,
    /// REST server: the secret holding the password of the URL's user.
    pub rest_password: Option<Sp<String>>,
    /// systemd calendar expressions.
    pub schedule: Option<Sp<Calendar>>,
    pub check: Option<Sp<Calendar>>,
    /// When `kiln-backup.sh drill` runs on its own; none: only by hand.
    pub drill: Option<Sp<Calendar>>,
    /// keep-daily, keep-weekly, keep-monthly, keep-yearly
    pub keep: Vec<(Sp<String>, Sp<i64>)>,
}

/// An object-storage bucket the provider creates.
#[derive(Debug)]
pub struct BucketDecl {
    pub name: Sp<String>,
    pub provider: Option<Sp<String>>,
    pub region: Option<Sp<String>>,
}

/// A managed database the provider runs (its password comes from a sensitive variable).
#[derive(Debug)]
pub struct DatabaseDecl {
    pub name: Sp<String>,
    pub provider: Option<Sp<String>>,
    pub engine: Option<Sp<String>>,
    pub node_type: Option<Sp<String>>,
    pub user: Option<Sp<String>>,
    pub region: Option<Sp<String>>,
}

#[derive(Debug)]
pub struct SystemDecl {
    pub span: Span,
    pub name: Option<Sp<String>>,
    pub domains: Vec<Sp<String>>,
    pub store: Option<Sp<String>>,
}

#[derive(Debug)]
pub struct ProviderDecl {
    pub name: Sp<String>,
    pub kind: Option<Sp<ProviderKind>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Hetzner,
    DigitalOcean,
    Scaleway,
    Existing,
    /// DNS, CDN and tunnels only: hosts cannot run on it.
    Cloudflare,
}

impl ProviderKind {
    pub const NAMES: [&'static str; 5] = ["hetzner", "digitalocean", "scaleway", "existing", "cloudflare"];
    pub fn parse(s: &str) -> Result<ProviderKind, types::TypeError> {
        match s {
            "hetzner" => Ok(ProviderKind::Hetzner),
            "digitalocean" => Ok(ProviderKind::DigitalOcean),
            "scaleway" => Ok(ProviderKind::Scaleway),
            "existing" => Ok(ProviderKind::Existing),
            "cloudflare" => Ok(ProviderKind::Cloudflare),
            _ => Err(one_of(s, "provider kind", &ProviderKind::NAMES)),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Hetzner => "hetzner",
            ProviderKind::DigitalOcean => "digitalocean",
            ProviderKind::Scaleway => "scaleway",
            ProviderKind::Existing => "existing",
            ProviderKind::Cloudflare => "cloudflare",
        }
    }
    /// The largest user-data the provider accepts, in bytes.
    pub fn user_data_limit(self) -> Option<usize> {
        match self {
            ProviderKind::Hetzner => Some(32 * 1024),
            ProviderKind::DigitalOcean => Some(64 * 1024),
            ProviderKind::Scaleway => Some(127 * 1024),
            ProviderKind::Existing | ProviderKind::Cloudflare => None,
        }
    }
}

pub fn one_of(s: &str, what: &str, names: &[&str]) -> types::TypeError {
    let help = match crate::diag::did_you_mean(s, names.iter().copied()) {
        Some(m) => format!("did you mean `{m}`?"),
        None => format!("expected one of {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
    };
    types::TypeError { message: format!("`{s}` is not a {what}"), help: Some(help) }
}

#[derive(Debug)]
pub struct NetworkDecl {
    pub name: Sp<String>,
    pub cidr: Option<Sp<Cidr>>,
}

#[derive(Debug)]
pub struct ZoneDecl {
    pub name: Sp<String>,
    pub description: Option<Sp<String>>,
    /// The zones whose hosts may connect to services in this one (`public` for the internet);
    /// absent, any zone may.
    pub accepts: Option<Vec<Sp<String>>>,
}

#[derive(Debug)]
pub struct AdminDecl {
    pub name: Sp<String>,
    pub keys: Vec<Sp<String>>,
    pub sources: Vec<Sp<Cidr>>,
}

#[derive(Debug)]
pub struct HostDecl {
    pub name: Sp<String>,
    pub span: Span,
    pub provider: Option<Sp<String>>,
    pub server_type: Option<Sp<String>>,
    pub location: Option<Sp<String>>,
    pub image: Option<Sp<String>>,
    pub zone: Option<Sp<String>>,
    pub public: Option<Sp<bool>>,
    pub bastion: Option<Sp<bool>>,
    /// network name → private address
    pub networks: Vec<(Sp<String>, Sp<std::net::IpAddr>)>,
    /// Block volumes attached to the server: name → size.
    pub disks: Vec<(Sp<String>, Sp<crate::types::Size>)>,
    /// The public address of a host that already exists (provider kind `existing`).
    pub address: Option<Sp<std::net::IpAddr>>,
    /// The server's SSH host key, which `kiln deploy` pins on first contact.
    pub ssh_host_key: Option<Sp<crate::types::SshHostKey>>,
    /// The provider's automated server backups (`server_backups`).
    pub server_backups: Option<Sp<bool>>,
    /// The port sshd listens on (`ssh_port`, default 22).
    pub ssh_port: Option<Sp<u16>>,
    /// A rollout group (`canary`): labels the server, selects hosts in `kiln show`.
    pub group: Option<Sp<String>>,
    pub password_ssh: Option<Sp<bool>>,
    /// fail2ban also bans clients that fail the edge's authentication (HTTP 401/403 floods).
    pub fail2ban_http: Option<Sp<bool>>,
    /// How a host without a public address reaches the internet: `via:GATEWAY` or `none`
    /// (unset: the one candidate gateway host, or on Scaleway the network's Public Gateway).
    pub egress: Option<Sp<String>>,
    /// Docker networks on this host: name → fixed subnet and whether it reaches outside.
    pub bridges: Vec<BridgeDecl>,
}

#[derive(Debug)]
pub struct BridgeDecl {
    pub name: Sp<String>,
    pub subnet: Option<Sp<Cidr>>,
    pub internal: Option<Sp<bool>>,
}

#[derive(Debug)]
pub struct ServiceDecl {
    pub name: Sp<String>,
    pub span: Span,
    pub module: Option<Sp<String>>,
    pub host: Option<Sp<String>>,
    /// `connects`, in list or table form (slot → service).
    pub connects: Vec<crate::syntax::connects::ConnectDecl>,
    /// option name → raw value node (typed against the module's declaration during resolve)
    pub options: Vec<(Sp<String>, Node)>,
    /// module secret slot → system secret name
    pub secrets: Vec<(Sp<String>, Sp<String>)>,
    /// module volume → the volume's name on the host (services naming one volume share it)
    pub volumes: Vec<(Sp<String>, Sp<String>)>,
    pub memory: Option<Sp<crate::types::Size>>,
    pub cpus: Option<Sp<f64>>,
    /// The host's Docker networks this service joins (none: the host's default network).
    pub bridges: Vec<Sp<String>>,
    /// Start phase: every service of a phase is up before the next phase starts.
    pub phase: Option<Sp<i64>>,
    /// Endpoints opened to the internet on the host's public address (not through an edge).
    pub expose: Vec<Sp<String>>,
    /// endpoint → the port it is published on, on the host (the container keeps its own).
    pub ports: Vec<(Sp<String>, Sp<i64>)>,
    /// `version = "…"`: the tag of the module's image replaced (a canary runs a newer one).
    pub version: Option<Sp<String>>,
    /// `image = "REGISTRY/REPO:TAG"`: the module's image replaced whole.
    pub image: Option<Sp<String>>,
    /// `login = "IDP"`: the service signs users in through this identity provider service
    /// (its module declares `[oidc]`; kiln registers it with the provider).
    pub login: Option<Sp<String>>,
    /// `environment = { VAR = "value" }`: variables of its own, for a module that takes them
    /// (`[container] user_environment`); names typed, values one line.
    pub environment: Vec<(Sp<String>, Sp<String>)>,
    /// `env_secrets = { VAR = "SECRET" }`: variables fed by `[secrets]` entries, likewise.
    pub env_secrets: Vec<(Sp<String>, Sp<String>)>,
    /// `[services.IDP.social_logins.KIND]`: upstream identity providers users may sign in with
    /// at this identity provider (authentik OAuth sources), each with its client id and the
    /// `[secrets]` entry holding its client secret.
    pub social_logins: Vec<SocialLoginDecl>,
}

/// One social login of an identity provider service (`social_logins.KIND`).
#[derive(Debug)]
pub struct SocialLoginDecl {
    /// The upstream provider's kind (`google`, `github`, `entraid`, `apple`, …).
    pub kind: Sp<String>,
    pub client_id: Option<Sp<String>>,
    /// The `[secrets]` entry holding the client secret (Apple: the private key).
    pub client_secret: Option<Sp<String>>,
}

#[derive(Debug, Clone)]
pub struct RouteDecl {
    pub hostname: Sp<String>,
    pub span: Span,
    pub service: Option<Sp<String>>,
    pub endpoint: Option<Sp<String>>,
    pub tls: Option<Sp<TlsMode>>,
    pub auth: Option<Sp<String>>,
    pub edge: Option<Sp<String>>,
    /// Requests per second on average, and the burst above it.
    pub rate_limit: Option<(Sp<i64>, Option<Sp<i64>>, Span)>,
    /// Origins allowed by CORS.
    pub cors: Vec<Sp<String>>,
    /// Only these sources may reach the route (addresses, networks, admins' names).
    pub allow: Vec<Sp<types::AllowEntry>>,
    /// A CrowdSec bouncer service that vets every request.
    pub crowdsec: Option<Sp<String>>,
    /// Origins that may frame the route (CSP `frame-ancestors`, besides its own).
    pub frame_ancestors: Vec<Sp<String>>,
    /// The `[certificates.NAME]` the route is served with.
    pub certificate: Option<Sp<String>>,
    /// The Content-Security-Policy the edge answers with (`types::parse_csp`).
    pub csp: Option<Sp<String>>,
    /// The list keys written on the route (`cors`, `allow`, `frame_ancestors`): an empty list
    /// written replaces a `[route_defaults]` list.
    pub written: Vec<&'static str>,
}

/// A DNS zone kiln manages records in.
#[derive(Debug)]
pub struct DnsZoneDecl {
    pub zone: Sp<String>,
    pub provider: Option<Sp<String>>,
    /// Whether the CDN proxies the records (Cloudflare's orange cloud).
    pub proxied: Option<Sp<bool>>,
    /// The zone exists already: looked up, never created or destroyed by kiln's root.
    pub existing: Option<Sp<bool>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Publicly trusted certificate over HTTP-01/TLS-ALPN.
    Acme,
    /// A wildcard or DNS-validated certificate (DNS-01).
    Dns,
    /// The edge's own local CA (internal names, tests).
    Internal,
}

impl TlsMode {
    pub fn parse(s: &str) -> Result<TlsMode, types::TypeError> {
        match s {
            "acme" => Ok(TlsMode::Acme),
            "dns" => Ok(TlsMode::Dns),
            "internal" => Ok(TlsMode::Internal),
            _ => Err(one_of(s, "TLS mode", &["acme", "dns", "internal"])),
        }
    }
}

#[derive(Debug)]
pub struct SecretDecl {
    pub name: Sp<String>,
    pub file: Option<Sp<String>>,
    pub key: Option<Sp<String>>,
}

#[derive(Debug)]
pub struct CdnDecl {
    pub span: Span,
    pub provider: Option<Sp<String>>,
}

/// Reads one file's root table.
pub fn read(root: &Node, sink: &Sink) -> SystemFile {
    let mut out = SystemFile::default();
    let Some(mut r) = TableReader::new(root, sink, "the system file") else {
        return out;
    };
    out.imports = r.str_list("imports");
    out.system = r.table("system", |mut t| {
        let d = SystemDecl {
            span: t.span,
            name: typed(t.req_str("name", "\"my-system\""), sink, types::parse_ident),
            domains: t.str_list("domains").into_iter().filter_map(|d| typed(Some(d), sink, |s| types::parse_domain(s, false))).collect(),
            store: typed(t.str("store"), sink, |s| {
                let ok = (s.starts_with("https://") || s.starts_with("http://"))
                    && !s.contains(char::is_whitespace)
                    && !s.contains(['\'', '"', '$', '`', '\\']);
                if ok {
                    Ok(s.to_string())
                } else {
                    Err(types::TypeError {
                        message: format!("`{s}` is not an http(s) URL"),
                        help: Some("write it like `https://artifacts.example.com/kiln`".into()),
                    })
                }
            }),
        };
        t.finish();
        d
    });
    out.cdn = r.table("cdn", |mut t| {
        let d = CdnDecl {
            span: t.span,
            provider: typed(t.req_str("provider", "\"cloudflare\""), sink, |s| {
                if s == "cloudflare" { Ok(s.to_string()) } else { Err(one_of(s, "CDN", &["cloudflare"])) }
            }),
        };
        t.finish();
        d
    });
    out.providers = r.named("providers", |name, mut t| {
        let d = ProviderDecl { name: ident(name, sink)?, kind: typed(t.req_str("kind", "\"hetzner\""), sink, ProviderKind::parse) };
        t.finish();
        Some(d)
    });
    out.networks = r.named("networks", |name, mut t| {
        let d = NetworkDecl { name: ident(name, sink)?, cidr: typed(t.req_str("cidr", "\"10.0.0.0/24\""), sink, Cidr::parse) };
        t.finish();
        Some(d)
    });
    out.zones = r.named("zones", |name, mut t| {
        let accepts = t.node("accepts").map(|n| crate::syntax::decode::as_str_list(n, sink));
        let d = ZoneDecl { name: ident(name, sink)?, description: t.str("description"), accepts };
        t.finish();
        Some(d)
    });
    out.admins = r.named("admins", |name, mut t| {
        let keys = t.str_list("keys");
        for k in &keys {
            if let Err(e) = check_ssh_key(k) {
                sink.type_error(k.span, e);
            }
        }
        let sources = t.str_list("sources").into_iter().filter_map(|s| typed(Some(s), sink, types::parse_source)).collect();
        let d = AdminDecl { name: ident(name, sink)?, keys, sources };
        t.finish();
        Some(d)
    });
    out.hosts = r.named("hosts", |name, mut t| {
        let networks = t
            .table("networks", |nt| {
                let v: Vec<_> = nt
                    .entries()
                    .iter()
                    .filter_map(|e| {
                        let addr = typed(as_str(&e.value, sink), sink, types::parse_ip)?;
                        Some((Sp::new(e.key.clone(), e.key_span), addr))
                    })
                    .collect();
                v
            })
            .unwrap_or_default();
        let disks = t
            .table("disks", |dt| {
                let v: Vec<_> = dt
                    .entries()
                    .iter()
                    .filter_map(|e| {
                        let size = typed(as_str(&e.value, sink), sink, crate::types::Size::parse_positive)?;
                        if e.key != "data" {
                            unknown_disk(&e.key, e.key_span, sink);
                            return None;
                        }
                        Some((ident(Sp::new(e.key.clone(), e.key_span), sink)?, size))
                    })
                    .collect();
                v
            })
            .unwrap_or_default();
        let address = typed(t.str("address"), sink, types::parse_ip);
        let bridges = t
            .table("bridges", |bt| {
                let v: Vec<_> = bt
                    .entries()
                    .iter()
                    .filter_map(|e| {
                        let mut r = TableReader::new(&e.value, sink, format!("bridge `{}`", e.key))?;
                        let d = BridgeDecl {
                            name: ident(Sp::new(e.key.clone(), e.key_span), sink)?,
                            subnet: typed(r.str("subnet"), sink, Cidr::parse),
                            internal: r.bool("internal"),
                        };
                        r.finish();
                        Some(d)
                    })
                    .collect();
                overlapping_bridges(&v, sink);
                v
            })
            .unwrap_or_default();
        let d = HostDecl {
            ssh_host_key: typed(t.str("ssh_host_key"), sink, types::parse_ssh_host_key),
            server_backups: t.bool("server_backups"),
            ssh_port: t.int("ssh_port").and_then(|p| match types::parse_port(p.value) {
                Ok(v) => Some(Sp::new(v, p.span)),
                Err(e) => {
                    sink.type_error(p.span, e);
                    None
                }
            }),
            group: typed(t.str("group"), sink, types::parse_ident),
            password_ssh: t.bool("password_ssh"),
            fail2ban_http: t.bool("fail2ban_http"),
            egress: t.str("egress"),
            bridges,
            disks,
            address,
            span: t.span,
            provider: t.req_str("provider", "\"hetzner\""),
            server_type: typed(t.str("type"), sink, types::parse_provider_token),
            location: typed(t.str("location"), sink, types::parse_provider_token),
            image: t.req_str("image", "\"ubuntu-24.04\""),
            zone: t.str("zone"),
            public: t.bool("public"),
            bastion: t.bool("bastion"),
            networks,
            name: ident(name, sink)?,
        };
        t.finish();
        Some(d)
    });
    out.services = crate::syntax::services::read(&mut r, sink);
    out.routes = r.named("routes", |name, mut t| {
        let hostname = typed(Some(name), sink, |s| types::parse_domain(s, true))?;
        let d = RouteDecl {
            hostname,
            span: t.span,
            service: t.req_str("service", "\"app\""),
            endpoint: t.str("endpoint"),
            tls: typed(t.str("tls"), sink, TlsMode::parse),
            auth: t.str("auth"),
            edge: t.str("edge"),
            rate_limit: crate::syntax::route_defaults::rate_limit(&mut t),
            written: ["cors", "allow", "frame_ancestors"].into_iter().filter(|k| t.node(k).is_some()).collect(),
            cors: t.str_list("cors"),
            allow: t.str_list("allow").into_iter().filter_map(|s| typed(Some(s), sink, types::parse_allow_entry)).collect(),
            crowdsec: t.str("crowdsec"),
            frame_ancestors: t.str_list("frame_ancestors").into_iter().filter_map(|s| typed(Some(s), sink, types::parse_origin)).collect(),
            certificate: t.str("certificate"),
            csp: typed(t.str("csp"), sink, types::parse_csp),
        };
        t.finish();
        Some(d)
    });
    out.streams = crate::syntax::streams::read(&mut r, sink);
    out.route_defaults = crate::syntax::route_defaults::read(&mut r, sink);
    out.certificates = crate::syntax::certificates::read(&mut r, sink);
    out.dns = r.named("dns", |name, mut t| {
        let zone = typed(Some(name), sink, |s| types::parse_domain(s, false))?;
        let d = DnsZoneDecl {
            zone,
            provider: t.req_str("provider", "\"cloudflare\""),
            proxied: t.bool("proxied"),
            existing: t.bool("existing"),
        };
        t.finish();
        Some(d)
    });
    out.buckets = r.named("buckets", |name, mut t| {
        let d = BucketDecl {
            name: ident(name, sink)?,
            provider: t.req_str("provider", "\"digitalocean\""),
            region: typed(t.str("region"), sink, types::parse_provider_token),
        };
        t.finish();
        Some(d)
    });
    out.databases = r.named("databases", |name, mut t| {
        let d = DatabaseDecl {
            name: ident(name, sink)?,
            provider: t.req_str("provider", "\"scaleway\""),
            engine: typed(t.str("engine"), sink, types::parse_provider_token),
            node_type: typed(t.str("node_type"), sink, types::parse_provider_token),
            user: typed(t.str("user"), sink, types::parse_user_name),
            region: typed(t.str("region"), sink, types::parse_provider_token),
        };
        t.finish();
        Some(d)
    });
    out.secrets = r.named("secrets", |name, mut t| {
        let d = SecretDecl { name: ident(name, sink)?, file: t.req_str("file", "\"secrets.sops.yaml\""), key: t.str("key") };
        t.finish();
        Some(d)
    });
    out.allows = r.named("allow", |rule, mut t| {
        let d = AllowDecl {
            rule,
            span: t.span,
            hosts: t.str_list("hosts"),
            services: t.str_list("services"),
            routes: t.str_list("routes"),
            reason: t.req_str("reason", "\"why this exception is safe here\""),
        };
        t.finish();
        Some(d)
    });
    out.backup = r.table("backup", |mut t| {
        let keep = t
            .table("keep", |mut kt| {
                let mut v = Vec::new();
                for k in ["daily", "weekly", "monthly", "yearly", "last"] {
                    let span = kt.table.get(k).map(|e| e.key_span);
                    if let (Some(n), Some(span)) = (kt.int(k), span) {
                        v.push((Sp::new(k.to_string(), span), n));
                    }
                }
                kt.finish();
                v
            })
            .unwrap_or_default();
        let d = BackupDecl {
            span: t.span,
            repository: t.req_str("repository", "\"sftp:u1@u1.your-storagebox.de:/restic/{host}\""),
            password: t.req_str("password", "\"restic_password\""),
            environment: t.str("environment"),
            ssh_key: t.str("ssh_key"),
            host_key: typed(t.str("host_key"), sink, |k| check_ssh_key(k).map(|()| k.to_string())),
            access_key_id: t.str("access_key_id"),
            secret_access_key: t.str("secret_access_key"),
            rest_password: t.str("rest_password"),
            schedule: typed(t.str("schedule"), sink, Calendar::parse),
            check: typed(t.str("check"), sink, Calendar::parse),
            drill: typed(t.str("drill"), sink, Calendar::parse),
            keep,
        };
        t.finish();
        d
    });
    out.receivers = r
        .table("alerts", |mut t| {
            let v = t.named("receivers", |name, mut rt| {
                let d = ReceiverDecl {
                    span: rt.span,
                    email: typed(rt.str("email"), sink, parse_email),
                    slack: typed(rt.str("slack"), sink, types::parse_ident),
                    channel: typed(rt.str("channel"), sink, parse_channel),
                    webhook: typed(rt.str("webhook"), sink, types::parse_ident),
                    name: ident(name, sink)?,
                };
                let kinds = [&d.email, &d.slack, &d.webhook].iter().filter(|k| k.is_some()).count();
                if kinds != 1 {
                    sink.push(
                        crate::diag::Diagnostic::error(
                            "E0003",
                            format!("receiver `{}` needs exactly one of `email`, `slack`, `webhook`", d.name.value),
                        )
                        .primary(d.name.span, if kinds == 0 { "says nowhere to send" } else { "names more than one destination" })
                        .help("declare one receiver per destination, e.g. `[alerts.receivers.ops] email = \"ops@example.com\"`"),
                    );
                }
                rt.finish();
                Some(d)
            });
            t.finish();
            v
        })
        .unwrap_or_default();
    out.deploy = crate::syntax::deploy::read(&mut r, sink);
    r.finish();
    out
}

/// An e-mail address alerts are mailed to: `local@domain`, printable ASCII without spaces,
/// quotes, commas or angle brackets (one address; several receivers for several addresses).
fn parse_email(s: &str) -> Result<String, types::TypeError> {
    let ok = s.split_once('@').is_some_and(|(l, d)| !l.is_empty() && types::parse_domain(d, false).is_ok())
        && s.bytes().all(|b| b.is_ascii_graphic() && !b"\"'<>,;\\`".contains(&b));
    if ok {
        Ok(s.to_string())
    } else {
        Err(types::TypeError {
            message: format!("`{}` is not an e-mail address", s.escape_debug()),
            help: Some("write `ops@example.com`".into()),
        })
    }
}

/// A chat channel a Slack-compatible webhook posts to: `#name` or `@user`, no spaces.
fn parse_channel(s: &str) -> Result<String, types::TypeError> {
    let ok = (s.starts_with('#') || s.starts_with('@')) && s.len() > 1 && s[1..].chars().all(|c| c.is_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(types::TypeError {
            message: format!("`{}` is not a channel", s.escape_debug()),
            help: Some("write `#alerts` or `@user`".into()),
        })
    }
}

/// Two bridges of one host whose subnets overlap: Docker would refuse the second network,
/// or route its traffic to the first.
fn overlapping_bridges(bridges: &[BridgeDecl], sink: &Sink) {
    let subnets: Vec<(&str, &Sp<Cidr>)> = bridges.iter().filter_map(|b| Some((b.name.value.as_str(), b.subnet.as_ref()?))).collect();
    for (i, (name, subnet)) in subnets.iter().enumerate() {
        if let Some((other, o)) = subnets[..i].iter().find(|(_, o)| o.value.overlaps(&subnet.value)) {
            sink.type_error(
                subnet.span,
                types::TypeError {
                    message: format!("bridge `{name}`'s subnet `{}` overlaps bridge `{other}`'s `{}`", subnet.value, o.value),
                    help: Some("give every bridge of a host its own subnet, like `172.20.1.0/24` and `172.20.2.0/24`".into()),
                },
            );
        }
    }
}

/// A `cpus` key: a finite number above zero (services here, module resources in module files).
pub fn read_cpus(t: &mut TableReader<'_>, sink: &Sink) -> Option<Sp<f64>> {
    let c = t.float("cpus")?;
    match types::parse_cpus(c.value) {
        Ok(_) => Some(c),
        Err(e) => {
            sink.type_error(c.span, e);
            None
        }
    }
}

/// A `[hosts.NAME] disks` entry other than `data`: a host has one data volume, which holds
/// every volume its services mark as data; other names would be silently ignored.
fn unknown_disk(name: &str, span: Span, sink: &Sink) {
    sink.push(
        crate::diag::Diagnostic::error("E0005", format!("unknown disk `{}`: a host has one data volume, `data`", name.escape_debug()))
            .primary(span, "only `data` is accepted here")
            .help("size the host's data volume with `disks = { data = \"50GiB\" }`; every volume a module marks as data lives on it"),
    );
}

pub(crate) fn ident(name: Sp<String>, sink: &Sink) -> Option<Sp<String>> {
    typed(Some(name), sink, types::parse_ident)
}

/// An OpenSSH public key line: `type base64 [comment]`, one line, no options.
pub fn check_ssh_key(k: &str) -> Result<(), types::TypeError> {
    const TYPES: [&str; 6] =
        ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com"];
    let mut parts = k.split(' ');
    let ty = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("");
    let ok = TYPES.contains(&ty)
        && body.len() >= 16
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        && !k.contains('\n')
        && !k.contains('\r');
    if ok {
        Ok(())
    } else {
        Err(types::TypeError {
            message: "not an OpenSSH public key".into(),
            help: Some("paste one line of a `.pub` file, like `ssh-ed25519 AAAAC3Nz… you@laptop`".into()),
        })
    }
}
