//! Docker Compose emitter: one compose-spec file per host that runs containers.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Host, Service, System};
use crate::render::{FILES_ROOT, service_env_file, service_secret_path, yaml};

#[derive(Serialize)]
struct File<'a> {
    name: String,
    services: BTreeMap<&'a str, Svc>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    volumes: BTreeMap<String, Empty>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    secrets: BTreeMap<String, SecretFile>,
    networks: BTreeMap<String, Network>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct SecretFile {
    file: String,
}

#[derive(Serialize)]
struct Network {
    name: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    internal: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipam: Option<Ipam>,
}

#[derive(Serialize)]
struct Ipam {
    config: Vec<IpamPool>,
}

#[derive(Serialize)]
struct IpamPool {
    subnet: String,
}

#[derive(Serialize)]
struct Svc {
    image: String,
    restart: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    read_only: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tmpfs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    environment: BTreeMap<String, String>,
    /// Secrets as environment variables: a root-only file the provisioner writes on the host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env_file: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<Port>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<Mount>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<SecretRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    depends_on: BTreeMap<String, DependsOn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deploy: Option<Deploy>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cap_add: Vec<String>,
    security_opt: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_grace_period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shm_size: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    init: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    ulimits: BTreeMap<String, Ulimit>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    devices: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    networks: Option<Vec<String>>,
    logging: Logging,
}

#[derive(Serialize)]
struct Logging {
    driver: &'static str,
    options: BTreeMap<&'static str, &'static str>,
}

#[derive(Serialize)]
struct Ulimit {
    soft: i64,
    hard: i64,
}

#[derive(Serialize)]
struct Port {
    target: u16,
    published: String,
    host_ip: String,
    protocol: &'static str,
}

#[derive(Serialize)]
struct Mount {
    #[serde(rename = "type")]
    kind: &'static str,
    source: String,
    target: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    read_only: bool,
}

#[derive(Serialize)]
struct SecretRef {
    source: String,
    target: String,
}

#[derive(Serialize)]
struct Healthcheck {
    test: Vec<String>,
    interval: String,
    timeout: String,
    retries: u32,
    start_period: String,
    /// Docker Engine 25 and later probe this often during `start_period`; Compose refuses it
    /// without a `start_period`, and (some versions) for an older engine, which the provisioner
    /// refuses first (`docker_new_enough`).
    #[serde(skip_serializing_if = "Option::is_none")]
    start_interval: Option<String>,
}

#[derive(Serialize)]
struct DependsOn {
    condition: &'static str,
    required: bool,
}

#[derive(Serialize)]
struct Deploy {
    resources: Resources,
}

#[derive(Serialize)]
struct Resources {
    limits: Limits,
}

#[derive(Serialize)]
struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    cpus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<String>,
}

/// Compose interpolates `$` everywhere; `$$` is a literal dollar.
fn lit(s: &str) -> String {
    s.replace('$', "$$")
}

fn lits(v: &[String]) -> Vec<String> {
    v.iter().map(|s| lit(s)).collect()
}

/// The container's `tmpfs` mounts, each owned by the container's user when that is a numeric
/// non-root `UID[:GID]`: `uid=UID` (and `gid=GID`) added to its options unless they name an owner.
///
/// runc mounts a tmpfs owned by root, and when its target exists in the container's file system
/// it gives the mount that directory's mode (libcontainer/rootfs_linux.go, `case "tmpfs"`). A
/// target the image lacks is made, 0755, at the first start, which mounts it with Docker's
/// default 1777; every later start (the restart policy, a daemon restart, a reboot) finds that
/// directory and mounts the tmpfs 0755, root's, so a process running as its own user can no
/// longer write there (moby/moby#20437, docker/for-linux#138). Seen in the lab on Docker 26: the
/// PostgreSQL stand-in (user 999, its socket directory a tmpfs the image lacked) started once and
/// crash-looped after the reboot on `could not create lock file "/var/run/postgresql/.s.PGSQL.5432.lock":
/// Permission denied`; with `uid=999,gid=999` the mount is the user's at every start. Docker
/// accepts `uid` and `gid` among a tmpfs's options (`ParseTmpfsOptions`'s valid flags).
fn tmpfs_owned(tmpfs: &[String], user: Option<&str>) -> Vec<String> {
    let owner = user.and_then(|u| {
        let (uid, gid) = u.split_once(':').map_or((u, None), |(a, b)| (a, Some(b)));
        let uid: u32 = uid.parse().ok().filter(|&n| n != 0)?;
        let gid = gid.and_then(|g| g.parse::<u32>().ok());
        Some(match gid {
            Some(g) => format!("uid={uid},gid={g}"),
            None => format!("uid={uid}"),
        })
    });
    let Some(owner) = owner else { return tmpfs.to_vec() };
    tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((_, opts)) if opts.split(',').any(|o| o.starts_with("uid=") || o.starts_with("gid=")) => t.clone(),
            Some((path, "")) => format!("{path}:{owner}"),
            Some((path, opts)) => format!("{path}:{opts},{owner}"),
            None => format!("{t}:{owner}"),
        })
        .collect()
}

/// The compose file for a host, or `None` when it runs no containers.
pub fn emit(sys: &System, host: &Host) -> Option<String> {
    let services: Vec<&Service> = host.services.iter().map(|n| &sys.services[n]).filter(|s| s.container.is_some()).collect();
    if services.is_empty() {
        return None;
    }
    Some(yaml(&file(sys, host, &services, sys.name.clone(), false)))
}

/// The Compose project of a restore drill (`kiln-backup.sh drill`).
pub fn drill_project(sys: &System) -> String {
    format!("{}-drill", sys.name)
}

/// The compose file of a restore drill: `services` (container services on bridge networks) as a
/// project of their own, [`drill_project`], so their volumes are new and theirs alone; on one
/// network of their own, publishing no port, waiting for nothing, never restarted.
pub fn emit_drill(sys: &System, host: &Host, services: &[&Service]) -> String {
    yaml(&file(sys, host, services, drill_project(sys), true))
}

fn file<'a>(sys: &System, host: &Host, services: &[&'a Service], name: String, drill: bool) -> File<'a> {
    let mut file = File { name, services: BTreeMap::new(), volumes: BTreeMap::new(), secrets: BTreeMap::new(), networks: BTreeMap::new() };
    if drill {
        file.networks.insert("default".into(), Network { name: format!("{}-{}-drill", sys.name, host.name), internal: true, ipam: None });
    }
    let uses = |b: &str| !drill && services.iter().any(|s| s.bridges.iter().any(|x| x == b));
    if !drill && services.iter().any(|s| s.bridges.is_empty() && s.container.as_ref().is_some_and(|c| c.network_mode.is_none())) {
        file.networks.insert("default".into(), Network { name: format!("{}-{}", sys.name, host.name), internal: false, ipam: None });
    }
    for (name, b) in host.bridges.iter().filter(|(n, _)| uses(n)) {
        file.networks.insert(
            name.clone(),
            Network {
                name: format!("{}-{}-{name}", sys.name, host.name),
                internal: b.internal,
                ipam: b.subnet.map(|c| Ipam { config: vec![IpamPool { subnet: c.to_string() }] }),
            },
        );
    }
    for &s in services {
        let c = s.container.as_ref().unwrap();
        let host_net = c.network_mode.as_deref() == Some("host");
        let mut volumes: Vec<Mount> = s
            .volumes
            .iter()
            .map(|v| {
                file.volumes.insert(v.source.clone(), Empty {});
                Mount { kind: "volume", source: v.source.clone(), target: v.target.clone(), read_only: false }
            })
            .collect();
        for f in &s.files {
            volumes.push(Mount {
                kind: "bind",
                source: format!("{FILES_ROOT}/{}/{}", s.name, f.name),
                target: f.target.clone(),
                read_only: true,
            });
        }
        if let Some(target) = &s.rules {
            // The alerting rules kiln derives (`render::alerts`).
            let source = format!("{FILES_ROOT}/{}/{}", s.name, crate::render::alerts::FILE);
            volumes.push(Mount { kind: "bind", source, target: target.clone(), read_only: true });
        }
        if s.edge.as_deref() == Some("traefik") {
            volumes.push(Mount {
                kind: "bind",
                source: format!("{}/{}", crate::render::KILN_ROOT, crate::render::TRAEFIK_STATIC),
                target: crate::render::traefik::STATIC_PATH.into(),
                read_only: true,
            });
            volumes.push(Mount {
                kind: "bind",
                source: format!("{}/traefik/dynamic", crate::render::KILN_ROOT),
                target: crate::render::traefik::DYNAMIC_DIR.into(),
                read_only: true,
            });
        }
        for (source, target) in &c.host_mounts {
            // Module-declared host paths, always read-only (checked where the module is read);
            // Docker's data root where the data volume holds it.
            let source = crate::render::data_volume::host_path(sys, host, source);
            volumes.push(Mount { kind: "bind", source, target: target.clone(), read_only: true });
        }
        if c.docker_socket {
            volumes.push(Mount {
                kind: "bind",
                source: "/var/run/docker.sock".into(),
                target: "/var/run/docker.sock".into(),
                read_only: true,
            });
        }
        let secrets = s
            .secrets
            .iter()
            .map(|u| {
                let key = format!("{}_{}", s.name, u.secret);
                file.secrets.insert(key.clone(), SecretFile { file: service_secret_path(&s.name, &u.secret) });
                SecretRef { source: key, target: u.target.clone() }
            })
            .collect();
        let depends_on = if drill {
            BTreeMap::new()
        } else {
            s.deps
                .iter()
                .filter(|d| !d.derived && !d.no_wait && d.same_host && sys.services[&d.service].container.is_some())
                .map(|d| {
                    let healthy = sys.services[&d.service].health.is_some();
                    (
                        d.service.clone(),
                        DependsOn { condition: if healthy { "service_healthy" } else { "service_started" }, required: true },
                    )
                })
                .collect()
        };
        let ports = if host_net || drill {
            Vec::new()
        } else {
            s.published
                .iter()
                .map(|p| Port { target: p.target, published: p.port.to_string(), host_ip: p.bind.to_string(), protocol: p.protocol.name() })
                .collect()
        };
        let limits = Limits { cpus: s.resources.cpus.map(|c| format!("{c}")), memory: s.resources.memory.map(|m| m.compose()) };
        let svc = Svc {
            image: lit(&c.image.to_string()),
            restart: if drill { "no" } else { "unless-stopped" },
            user: c.user.as_deref().map(lit),
            read_only: c.read_only,
            tmpfs: lits(&tmpfs_owned(&c.tmpfs, c.user.as_deref())),
            entrypoint: c.entrypoint.as_deref().map(lits),
            command: c.command.as_deref().map(lits),
            environment: c.environment.iter().map(|(k, v)| (k.clone(), lit(v))).collect(),
            env_file: if c.env_secrets.is_empty() { Vec::new() } else { vec![service_env_file(&s.name)] },
            ports,
            volumes,
            secrets,
            healthcheck: s.health.as_ref().map(|h| Healthcheck {
                test: lits(&h.test),
                interval: h.interval.to_string(),
                timeout: h.timeout.to_string(),
                retries: h.retries,
                start_period: h.start_period.to_string(),
                start_interval: (h.start_period.0 > 0).then(|| h.start_interval().to_string()),
            }),
            depends_on,
            deploy: (limits.cpus.is_some() || limits.memory.is_some()).then_some(Deploy { resources: Resources { limits } }),
            cap_drop: c.cap_drop.clone(),
            cap_add: c.cap_add.clone(),
            security_opt: vec!["no-new-privileges:true"],
            stop_grace_period: c.stop_grace_period.map(|d| d.to_string()),
            network_mode: c.network_mode.clone(),
            shm_size: c.shm_size.map(|s| s.compose()),
            init: c.init,
            ulimits: c.ulimits.iter().map(|(k, (soft, hard))| (k.clone(), Ulimit { soft: *soft, hard: *hard })).collect(),
            devices: c.devices.clone(),
            networks: (!host_net && !drill).then(|| s.networks()),
            logging: if host.fail2ban_http && s.edge.is_some() && !drill {
                // fail2ban reads the edge's access log from the journal, by this tag.
                Logging { driver: "journald", options: BTreeMap::from([("tag", super::provision::EDGE_LOG_TAG)]) }
            } else {
                Logging { driver: "json-file", options: BTreeMap::from([("max-size", "10m"), ("max-file", "3")]) }
            },
        };
        file.services.insert(&s.name, svc);
    }
    file
}

#[cfg(test)]
mod tests {
    use super::tmpfs_owned;

    fn owned(tmpfs: &[&str], user: Option<&str>) -> Vec<String> {
        tmpfs_owned(&tmpfs.iter().map(|t| t.to_string()).collect::<Vec<_>>(), user)
    }

    #[test]
    fn a_tmpfs_belongs_to_the_containers_numeric_user() {
        assert_eq!(
            owned(&["/var/run/postgresql", "/dev/shm:size=256m"], Some("999:999")),
            ["/var/run/postgresql:uid=999,gid=999", "/dev/shm:size=256m,uid=999,gid=999"]
        );
        assert_eq!(owned(&["/tmp"], Some("1000")), ["/tmp:uid=1000"]);
        assert_eq!(owned(&["/tmp:"], Some("1000")), ["/tmp:uid=1000"], "no empty option");
        assert_eq!(owned(&["/tmp"], Some("472:0")), ["/tmp:uid=472,gid=0"]);
    }

    #[test]
    fn root_a_named_user_or_an_owner_already_given_leave_it_alone() {
        for user in [None, Some("0:0"), Some("0"), Some("www-data"), Some("node:node")] {
            assert_eq!(owned(&["/tmp", "/run:size=1m"], user), ["/tmp", "/run:size=1m"], "{user:?}");
        }
        assert_eq!(owned(&["/cache:uid=33"], Some("1000:1000")), ["/cache:uid=33"]);
    }
}
