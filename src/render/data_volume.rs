//! Stateful hosts: the block volume that holds a host's data and outlives its servers.
//!
//! A host holds data when one of its services declares it (`Service::has_data`: a backed-up
//! volume or a dump) or is an edge (its certificates: Caddy's data directory, Traefik's
//! `acme.json` on its volume), or when the system gives it `disks`. On a provider with block
//! volumes (Hetzner, DigitalOcean, Scaleway) OpenTofu creates one (`tofu.rs`, with
//! `prevent_destroy`) and attaches it to whatever server currently is the host; the
//! provisioner finds it by its provider's stable name, makes an ext4 filesystem labelled
//! [`LABEL`] only when it has none, mounts it at [`MOUNT`] through a systemd mount unit, and
//! puts Docker's data root (every named volume) and Caddy's data directory on it.

use crate::model::{Host, System};
use crate::render::quote::sh;
use crate::syntax::system::ProviderKind;
use std::fmt::Write;

/// Where the data volume is mounted.
pub const MOUNT: &str = "/var/lib/kiln/data";
/// The filesystem label kiln gives the volume (at most 16 bytes for ext4).
pub const LABEL: &str = "kiln-data";
/// The volume's name in `[hosts.X] disks`, and its size when unset (GiB).
pub const DISK: &str = "data";
pub const DEFAULT_GIB: u64 = 10;
/// The mount unit for [`MOUNT`] (its name is the escaped path, as systemd requires).
pub const UNIT: &str = "data/var-lib-kiln-data.mount";
/// Docker's data root on the volume: images, containers and every named volume.
pub const DOCKER_ROOT: &str = "/var/lib/kiln/data/docker";
/// Caddy's data (certificates, ACME account): the Debian package's `caddy` user has its home
/// at /var/lib/caddy and Caddy keeps its data in `$HOME/.local/share/caddy` when
/// `XDG_DATA_HOME` is unset (https://caddyserver.com/docs/conventions#data-directory).
pub const CADDY_HOME: &str = "/var/lib/caddy";
const CADDY_UNIT: &str = "data/var-lib-caddy.mount";

/// What a host keeps that must survive its server, one line each (empty: stateless).
pub fn holdings(sys: &System, host: &Host) -> Vec<String> {
    let mut out = Vec::new();
    for name in &host.services {
        let s = &sys.services[name];
        let backed: Vec<&str> = s.volumes.iter().filter(|v| v.backup).map(|v| v.source.as_str()).collect();
        if !backed.is_empty() {
            out.push(format!("`{name}`: volume {}", backed.join(", ")));
        }
        if s.backup.as_ref().is_some_and(|b| b.dump.is_some()) && backed.is_empty() {
            out.push(format!("`{name}`: its database"));
        }
        match s.edge.as_deref() {
            Some("caddy") if s.native.is_some() => out.push(format!("`{name}`: certificates in {CADDY_HOME}")),
            Some(_) if backed.is_empty() => out.push(format!("`{name}`: certificates")),
            _ => {}
        }
    }
    out
}

/// Whether the host's provider can give it a block volume that outlives the server.
pub fn provider_has_volumes(kind: ProviderKind) -> bool {
    matches!(kind, ProviderKind::Hetzner | ProviderKind::DigitalOcean | ProviderKind::Scaleway)
}

/// Whether the host gets a data volume: it holds data (or asks for `disks`) and its provider
/// has volumes.
pub fn has_volume(sys: &System, host: &Host) -> bool {
    provider_has_volumes(host.provider_kind) && (!host.disks.is_empty() || !holdings(sys, host).is_empty())
}

/// The volume's size in GiB: `disks.data` rounded up, or the default.
pub fn size_gib(host: &Host) -> u64 {
    host.disks.get(DISK).map(|s| s.0.div_ceil(1 << 30)).unwrap_or(DEFAULT_GIB).max(1)
}

/// The volume's name at the provider (DigitalOcean: lowercase letters, digits and hyphens).
pub fn volume_name(sys: &System, host: &Host) -> String {
    let raw = format!("{}-{}-{DISK}", sys.name, host.name);
    raw.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// Where the provider's volume appears on the server, by a name that does not depend on the
/// order of disks (never `/dev/sdb`). Hetzner: `scsi-0HC_Volume_<id>` (the id is only known
/// after apply; the host has one volume); DigitalOcean: `scsi-0DO_Volume_<name>`; Scaleway
/// Block Storage: `scsi-0SCW_sbs_volume-<id>`.
fn device_globs(sys: &System, host: &Host) -> Vec<String> {
    match host.provider_kind {
        ProviderKind::Hetzner => vec!["/dev/disk/by-id/scsi-0HC_Volume_*".into()],
        ProviderKind::DigitalOcean => vec![format!("/dev/disk/by-id/scsi-0DO_Volume_{}", volume_name(sys, host))],
        ProviderKind::Scaleway => vec!["/dev/disk/by-id/scsi-0SCW_sbs_volume-*".into()],
        _ => vec![],
    }
    .into_iter()
    // a VM with a disk whose serial is `kiln-data` (`kiln boot --data-disk`)
    .chain([format!("/dev/disk/by-id/virtio-{}", crate::boot::DATA_DISK_SERIAL)])
    .collect()
}

fn caddy(sys: &System, host: &Host) -> bool {
    host.services.iter().any(|n| sys.services[n].edge.as_deref() == Some("caddy") && sys.services[n].native.is_some())
}

/// A host path a module mounts (`host_mounts`) as it is on this host: Docker's default data root
/// (`/var/lib/docker`, cAdvisor reads it) is [`DOCKER_ROOT`] where the data volume holds Docker's
/// data, and does not exist there.
pub fn host_path(sys: &System, host: &Host, path: &str) -> String {
    const DEFAULT_ROOT: &str = "/var/lib/docker";
    match path.strip_prefix(DEFAULT_ROOT) {
        Some(rest) if (rest.is_empty() || rest.starts_with('/')) && docker(sys, host) && has_volume(sys, host) => {
            format!("{DOCKER_ROOT}{rest}")
        }
        _ => path.to_string(),
    }
}

fn docker(sys: &System, host: &Host) -> bool {
    host.services.iter().any(|n| sys.services[n].container.is_some())
}

/// The mount units the host installs: the volume, and Caddy's home bound onto it.
pub fn emit(sys: &System, host: &Host) -> Vec<(String, String)> {
    if !has_volume(sys, host) {
        return Vec::new();
    }
    let mut required_by = Vec::new();
    if docker(sys, host) {
        required_by.push("docker.service");
    }
    let mut out = vec![(
        UNIT.to_string(),
        unit(
            "kiln data volume: survives server replacement",
            &format!("/dev/disk/by-label/{LABEL}"),
            MOUNT,
            "ext4",
            "nofail,noatime",
            &required_by,
            None,
        ),
    )];
    if caddy(sys, host) {
        out.push((
            CADDY_UNIT.to_string(),
            unit(
                "Caddy's data (certificates) on the kiln data volume",
                &format!("{MOUNT}/caddy"),
                CADDY_HOME,
                "none",
                "bind,nofail",
                &["caddy.service"],
                Some(MOUNT),
            ),
        ));
    }
    out
}

fn unit(what_for: &str, what: &str, at: &str, ty: &str, options: &str, required_by: &[&str], needs: Option<&str>) -> String {
    let mut u = format!("[Unit]\nDescription={what_for}\n");
    if let Some(n) = needs {
        let _ = writeln!(u, "RequiresMountsFor={n}");
    }
    if !required_by.is_empty() {
        let _ = writeln!(u, "Before={}", required_by.join(" "));
    }
    let _ = write!(u, "\n[Mount]\nWhat={what}\nWhere={at}\nType={ty}\nOptions={options}\n\n[Install]\nWantedBy=local-fs.target\n");
    if !required_by.is_empty() {
        let _ = writeln!(u, "RequiredBy={}", required_by.join(" "));
    }
    u
}

const FIND: &str = include_str!("data_volume.sh.in");

/// Provisioner step, before packages: find the volume, give it a filesystem once, mount it,
/// and put Docker's data root and Caddy's home on it before either is installed.
pub fn provision(o: &mut String, sys: &System, host: &Host) {
    if !has_volume(sys, host) {
        return;
    }
    o.push_str("\n# Data volume: found by its provider's stable name, formatted once, mounted for good.\nlog 'step: data volume'\n");
    o.push_str(FIND);
    let _ = writeln!(o, "data_volume {} {}", sh(LABEL), crate::render::quote::sh_words(&device_globs(sys, host)));
    let unit_name = UNIT.rsplit('/').next().unwrap_or(UNIT);
    let _ = writeln!(o, "install -d -m 0755 {}", sh(MOUNT));
    super::provision::put_unit(o, UNIT, unit_name);
    o.push_str("reload_units\n");
    let _ = writeln!(o, "systemctl --no-reload enable {} >/dev/null 2>&1", sh(unit_name));
    let _ = writeln!(
        o,
        "mountpoint -q {m} || systemctl start {u} || die {e}",
        m = sh(MOUNT),
        u = sh(unit_name),
        e = sh(&format!("cannot mount {MOUNT}"))
    );
    if docker(sys, host) {
        let _ = writeln!(o, "install -d -m 0710 {}", sh(DOCKER_ROOT));
        let _ = writeln!(
            o,
            "if put_text /etc/docker/daemon.json 0644 root:root {}; then systemctl try-restart docker 2>/dev/null || true; fi",
            sh(&format!("{{\"data-root\": \"{DOCKER_ROOT}\"}}\n"))
        );
    }
    if caddy(sys, host) {
        let name = CADDY_UNIT.rsplit('/').next().unwrap_or(CADDY_UNIT);
        let _ = writeln!(o, "install -d -m 0750 {} {}", sh(&format!("{MOUNT}/caddy")), sh(CADDY_HOME));
        super::provision::put_unit(o, CADDY_UNIT, name);
        o.push_str("reload_units\n");
        let _ = writeln!(o, "systemctl --no-reload enable {} >/dev/null 2>&1", sh(name));
        let _ = writeln!(
            o,
            "mountpoint -q {h} || systemctl start {n} || die {e}",
            h = sh(CADDY_HOME),
            n = sh(name),
            e = sh(&format!("cannot bind {CADDY_HOME}"))
        );
    }
}

/// Provisioner step, after packages: the directories on the volume belong to their users.
pub fn provision_owners(o: &mut String, sys: &System, host: &Host) {
    if has_volume(sys, host) && caddy(sys, host) {
        let _ = writeln!(o, "[ \"$(stat -c %U {h})\" = caddy ] || chown caddy:caddy {h}", h = sh(CADDY_HOME));
    }
}

/// Where the host's data lives, in one line (`kiln show`, SYSTEM.md).
pub fn describe(sys: &System, host: &Host) -> String {
    let holds = holdings(sys, host);
    if has_volume(sys, host) {
        format!(
            "volume `{}` ({} GiB) at {MOUNT}: kept and re-attached when the server is replaced (the old server is destroyed first)",
            volume_name(sys, host),
            size_gib(host)
        )
    } else if holds.is_empty() {
        "none: stateless".to_string()
    } else if host.provider_kind == ProviderKind::Existing {
        "its own disk: an existing host is never replaced by kiln".to_string()
    } else {
        "the server's own disk: lost when the server is replaced".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_unit_names_match_their_paths() {
        // systemd requires a mount unit's name to be its escaped Where=
        assert_eq!(UNIT.rsplit('/').next().unwrap(), format!("{}.mount", MOUNT.trim_start_matches('/').replace('/', "-")));
        assert_eq!(CADDY_UNIT.rsplit('/').next().unwrap(), format!("{}.mount", CADDY_HOME.trim_start_matches('/').replace('/', "-")));
        assert!(LABEL.len() <= 16);
    }
}
