//! The values each cloud provider defines — server types, locations, regions, database engines
//! and node types — as data, and the check that a system names one of them (located, with a
//! did-you-mean). Syntax already limits them to `[A-Za-z0-9._-]` (`types::parse_provider_token`);
//! this is the provider's own vocabulary, as far as kiln can know it.
//!
//! Sources (update the lists here when a provider adds an offer):
//! - Hetzner Cloud: server types and locations of the Cloud API (`GET /v1/server_types`,
//!   `GET /v1/locations`; https://docs.hetzner.cloud/), locations fsn1, nbg1, hel1, ash, hil,
//!   sin; server types of the cx (shared Intel, 2nd and 3rd generation), cpx (shared AMD, both
//!   generations), cax (Arm64) and ccx (dedicated) lines.
//! - Hetzner Object Storage: the locations of its S3 endpoints `<location>.your-objectstorage.com`
//!   (https://docs.hetzner.com/storage/object-storage/overview, "Available endpoints"): fsn1,
//!   nbg1, hel1.
//! - DigitalOcean: region slugs of `GET /v2/regions` (https://docs.digitalocean.com/products/platform/availability-matrix/);
//!   Droplet size slugs change too often to list, so a size is checked by its family prefix
//!   (`s-`, `c-`, `c2-`, `g-`, `gd-`, `m-`, `m3-`, `m6-`, `so-`, `so1_5-`, `gpu-`), as listed
//!   by `GET /v2/sizes`.
//! - Scaleway: zones and regions of the Instance and Managed Database APIs
//!   (https://www.scaleway.com/en/developers/api/instance/, `…/managed-database-postgre-mysql/`);
//!   engines `PostgreSQL-N` / `MySQL-8` (`GET /rdb/v1/regions/{region}/database-engines`);
//!   instance types (`DEV1-S`, `POP2-4C-16G`, …) and node types (`DB-DEV-S`, `DB-PRO2-XXS`,
//!   `DB-POP2-2C-8G`, …) are checked by shape: upper-case words joined by `-`, node types
//!   starting `DB-`.

use crate::diag::{Diagnostic, did_you_mean};
use crate::syntax::decode::Sp;
use crate::syntax::system::{BucketDecl, DatabaseDecl, HostDecl, ProviderKind};
use crate::types::Size;

const HCLOUD_LOCATIONS: &[&str] = &["fsn1", "nbg1", "hel1", "ash", "hil", "sin"];
/// Where Hetzner Object Storage keeps buckets; the first is where a bucket naming none goes.
pub const HCLOUD_OBJECT_STORAGE_LOCATIONS: &[&str] = &["fsn1", "nbg1", "hel1"];
const HCLOUD_SERVER_TYPES: &[&str] = &[
    "cx11", "cx21", "cx31", "cx41", "cx51", "cx22", "cx32", "cx42", "cx52", "cx23", "cx33", "cx43", "cx53", "cpx11", "cpx21", "cpx31",
    "cpx41", "cpx51", "cpx12", "cpx22", "cpx32", "cpx42", "cpx52", "cpx62", "cax11", "cax21", "cax31", "cax41", "ccx13", "ccx23", "ccx33",
    "ccx43", "ccx53", "ccx63",
];
const DO_REGIONS: &[&str] =
    &["nyc1", "nyc2", "nyc3", "sfo1", "sfo2", "sfo3", "ams2", "ams3", "sgp1", "lon1", "fra1", "tor1", "blr1", "syd1", "atl1", "ric1"];
const DO_SIZE_FAMILIES: &[&str] = &["s", "c", "c2", "g", "gd", "m", "m3", "m6", "so", "so1_5", "gpu"];
const DO_SIZE_EXAMPLES: &[&str] = &["s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-4gb", "s-4vcpu-8gb", "c-2", "g-2vcpu-8gb", "m-2vcpu-16gb"];
const SCW_ZONES: &[&str] = &["fr-par-1", "fr-par-2", "fr-par-3", "nl-ams-1", "nl-ams-2", "nl-ams-3", "pl-waw-1", "pl-waw-2", "pl-waw-3"];
const SCW_REGIONS: &[&str] = &["fr-par", "nl-ams", "pl-waw"];
const SCW_ENGINES: &[&str] =
    &["PostgreSQL-11", "PostgreSQL-12", "PostgreSQL-13", "PostgreSQL-14", "PostgreSQL-15", "PostgreSQL-16", "PostgreSQL-17", "MySQL-8"];
const SCW_TYPE_EXAMPLES: &[&str] = &["DEV1-S", "DEV1-M", "GP1-XS", "PLAY2-PICO", "PRO2-S", "POP2-2C-8G", "POP2-4C-16G"];
const SCW_NODE_EXAMPLES: &[&str] = &["DB-DEV-S", "DB-DEV-M", "DB-PRO2-XXS", "DB-POP2-2C-8G", "DB-GP-XS"];

/// What one field may hold on one provider.
enum Known {
    /// Exactly these values.
    List(&'static [&'static str]),
    /// Values of this shape (described, with examples for the hint).
    Shape(fn(&str) -> bool, &'static str, &'static [&'static str]),
}

/// Upper-case words of letters and digits joined by `-`, at least two: `POP2-4C-16G`.
fn scaleway_type(s: &str) -> bool {
    let words: Vec<&str> = s.split('-').collect();
    words.len() >= 2 && words.iter().all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
}

fn scaleway_node_type(s: &str) -> bool {
    s.starts_with("DB-") && scaleway_type(s)
}

/// A family prefix, then lower-case words: `s-2vcpu-4gb`, `c-2`.
fn digitalocean_size(s: &str) -> bool {
    s.split_once('-').is_some_and(|(family, rest)| {
        DO_SIZE_FAMILIES.contains(&family)
            && rest.split('-').all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    })
}

fn server_types(kind: ProviderKind) -> Option<Known> {
    match kind {
        ProviderKind::Hetzner => Some(Known::List(HCLOUD_SERVER_TYPES)),
        ProviderKind::DigitalOcean => Some(Known::Shape(
            digitalocean_size,
            "a DigitalOcean Droplet size slug (`s-…`, `c-…`, `g-…`, `m-…`, `so-…`, `gpu-…`)",
            DO_SIZE_EXAMPLES,
        )),
        ProviderKind::Scaleway => {
            Some(Known::Shape(scaleway_type, "a Scaleway Instance type (upper-case words joined by `-`)", SCW_TYPE_EXAMPLES))
        }
        ProviderKind::Existing | ProviderKind::Cloudflare => None,
    }
}

fn locations(kind: ProviderKind) -> Option<Known> {
    match kind {
        ProviderKind::Hetzner => Some(Known::List(HCLOUD_LOCATIONS)),
        ProviderKind::DigitalOcean => Some(Known::List(DO_REGIONS)),
        ProviderKind::Scaleway => Some(Known::List(SCW_ZONES)),
        ProviderKind::Existing | ProviderKind::Cloudflare => None,
    }
}

fn regions(kind: ProviderKind) -> Option<Known> {
    match kind {
        ProviderKind::DigitalOcean => Some(Known::List(DO_REGIONS)),
        ProviderKind::Scaleway => Some(Known::List(SCW_REGIONS)),
        _ => None,
    }
}

/// The error for `value` when it is not one `known` allows.
fn check(kind: ProviderKind, what: &str, value: &Sp<String>, known: Option<Known>) -> Option<Diagnostic> {
    let v = value.value.as_str();
    let (ok, candidates, expected) = match known? {
        Known::List(list) => (list.contains(&v), list, format!("one of {}", quoted(list))),
        Known::Shape(shape, description, examples) => (shape(v), examples, format!("{description}, like {}", quoted(examples))),
    };
    if ok {
        return None;
    }
    let help = match candidates.iter().copied().find(|c| c.eq_ignore_ascii_case(v)).or_else(|| did_you_mean(v, candidates.iter().copied()))
    {
        Some(m) => format!("did you mean `{m}`?"),
        None => format!("{what}s are {expected}"),
    };
    Some(
        Diagnostic::error("E0003", format!("`{v}` is not a {} {what}", kind.name()))
            .primary(value.span, format!("unknown {what}"))
            .help(help),
    )
}

fn quoted(list: &[&str]) -> String {
    list.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
}

/// Memory (GiB) of each Hetzner Cloud server type, as `GET /v1/server_types` reports it
/// (`memory`) and https://www.hetzner.com/cloud/ lists it: cx23–cx53, cax11–cax41, cpx12–cpx62,
/// cpx11–cpx51, ccx13–ccx63 from the current price list; cx11–cx51 and cx22–cx52 as the list had
/// them before those lines were retired (the API keeps them as deprecated types).
const HCLOUD_MEMORY_GIB: &[(&str, u64)] = &[
    ("cx11", 2),
    ("cx21", 4),
    ("cx31", 8),
    ("cx41", 16),
    ("cx51", 32),
    ("cx22", 4),
    ("cx32", 8),
    ("cx42", 16),
    ("cx52", 32),
    ("cx23", 4),
    ("cx33", 8),
    ("cx43", 16),
    ("cx53", 32),
    ("cpx11", 2),
    ("cpx21", 4),
    ("cpx31", 8),
    ("cpx41", 16),
    ("cpx51", 32),
    ("cpx12", 2),
    ("cpx22", 4),
    ("cpx32", 8),
    ("cpx42", 16),
    ("cpx52", 24),
    ("cpx62", 32),
    ("cax11", 4),
    ("cax21", 8),
    ("cax31", 16),
    ("cax41", 32),
    ("ccx13", 8),
    ("ccx23", 16),
    ("ccx33", 32),
    ("ccx43", 64),
    ("ccx53", 128),
    ("ccx63", 192),
];

/// The memory of a server type, where the provider's type says it: Hetzner's list; a
/// DigitalOcean slug's first `<n>gb`/`<n>mb` word after the family (`s-2vcpu-4gb`,
/// `s-1vcpu-512mb-10gb`, where the last word is the disk); a Scaleway type's `<n>G` word after
/// its `<n>C` word (`POP2-4C-16G`). `None` when kiln cannot know (`c-2`, `DEV1-S`).
pub fn server_memory(kind: ProviderKind, server_type: &str) -> Option<Size> {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    let num = |w: &str, suffix: &str| w.strip_suffix(suffix).and_then(|n| n.parse::<u64>().ok());
    match kind {
        ProviderKind::Hetzner => HCLOUD_MEMORY_GIB.iter().find(|(t, _)| *t == server_type).map(|(_, g)| Size(g * GIB)),
        ProviderKind::DigitalOcean => {
            // A GPU slug's size is the GPU's memory (`gpu-h100x1-80gb`), not the Droplet's.
            let mut words = server_type.split('-');
            if words.next() == Some("gpu") {
                return None;
            }
            words.take(2).find_map(|w| num(w, "gb").map(|g| g * GIB).or_else(|| num(w, "mb").map(|m| m * MIB))).map(Size)
        }
        ProviderKind::Scaleway => {
            let words: Vec<&str> = server_type.split('-').collect();
            let cpus = words.iter().position(|w| num(w, "C").is_some())?;
            words.get(cpus + 1).and_then(|w| num(w, "G")).map(|g| Size(g * GIB))
        }
        ProviderKind::Existing | ProviderKind::Cloudflare => None,
    }
}

/// The virtual CPUs of a server type, where its name says them: a DigitalOcean slug's
/// `<n>vcpu` word (`s-2vcpu-4gb`, `g-16vcpu-64gb`), a Scaleway type's `<n>C` word
/// (`POP2-8C-32G`). `None` otherwise (Hetzner's names do not say it; `c-2`, `DEV1-S`).
pub fn server_cpus(kind: ProviderKind, server_type: &str) -> Option<u32> {
    let num = |w: &str, suffix: &str| w.strip_suffix(suffix).and_then(|n| n.parse::<u32>().ok()).filter(|n| *n > 0);
    match kind {
        ProviderKind::DigitalOcean => server_type.split('-').take(2).find_map(|w| num(w, "vcpu")),
        ProviderKind::Scaleway => server_type.split('-').find_map(|w| num(w, "C")),
        _ => None,
    }
}

/// A host's `type`, `location` and disk sizes against its provider's.
pub fn host(kind: Option<ProviderKind>, h: &HostDecl) -> Vec<Diagnostic> {
    let Some(kind) = kind else { return Vec::new() };
    let ty = h.server_type.as_ref().and_then(|v| check(kind, "server type", v, server_types(kind)));
    let location = h.location.as_ref().and_then(|v| check(kind, "location", v, locations(kind)));
    let disks = h.disks.iter().filter_map(|(_, size)| disk_size(kind, size));
    ty.into_iter().chain(location).chain(disks).collect()
}

/// Hetzner volumes hold 10 to 10,240 GB (kiln rounds a size up to whole GiB): a smaller or
/// larger disk is an error, not a silent 10 GB.
fn disk_size(kind: ProviderKind, size: &Sp<Size>) -> Option<Diagnostic> {
    const GIB: u64 = 1 << 30;
    let ok = kind != ProviderKind::Hetzner || (10 * GIB..=10_240 * GIB).contains(&size.value.0);
    (!ok).then(|| {
        Diagnostic::error("E0003", format!("a {} volume of {} bytes is outside what the provider offers", kind.name(), size.value.0))
            .primary(size.span, "not a volume size")
            .help("Hetzner volumes hold 10GiB to 10240GiB")
    })
}

/// A bucket's `region` (on Hetzner, an Object Storage location).
pub fn bucket(kind: ProviderKind, b: &BucketDecl) -> Vec<Diagnostic> {
    let (what, known) = match kind {
        ProviderKind::Hetzner => ("Object Storage location", Some(Known::List(HCLOUD_OBJECT_STORAGE_LOCATIONS))),
        _ => ("region", regions(kind)),
    };
    b.region.as_ref().and_then(|v| check(kind, what, v, known)).into_iter().collect()
}

/// The S3 endpoint of a Hetzner Object Storage location.
pub fn hcloud_object_storage_endpoint(location: &str) -> String {
    format!("{location}.your-objectstorage.com")
}

/// A managed database's `engine`, `node_type` and `region` (Scaleway's are the only ones kiln
/// creates).
pub fn database(kind: ProviderKind, d: &DatabaseDecl) -> Vec<Diagnostic> {
    let scaleway = kind == ProviderKind::Scaleway;
    let engines = || scaleway.then_some(Known::List(SCW_ENGINES));
    let node_types = || {
        scaleway.then_some(Known::Shape(
            scaleway_node_type,
            "a Scaleway database node type (`DB-` and upper-case words)",
            SCW_NODE_EXAMPLES,
        ))
    };
    [
        d.engine.as_ref().and_then(|v| check(kind, "database engine", v, engines())),
        d.node_type.as_ref().and_then(|v| check(kind, "database node type", v, node_types())),
        d.region.as_ref().and_then(|v| check(kind, "region", v, regions(kind))),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        for ok in ["s-1vcpu-2gb", "g-8vcpu-32gb", "c-2", "so1_5-2vcpu-16gb"] {
            assert!(digitalocean_size(ok), "{ok}");
        }
        for bad in ["cx22", "s-", "S-1VCPU", "x-1vcpu-1gb"] {
            assert!(!digitalocean_size(bad), "{bad}");
        }
        for ok in ["DEV1-S", "POP2-4C-16G", "PLAY2-PICO"] {
            assert!(scaleway_type(ok), "{ok}");
        }
        for bad in ["dev1-s", "DEV1", "DEV1--S"] {
            assert!(!scaleway_type(bad), "{bad}");
        }
        assert!(scaleway_node_type("DB-DEV-S") && !scaleway_node_type("DEV1-S"));
    }

    #[test]
    fn server_memory_is_known_for_every_hetzner_type_and_read_from_slugs() {
        for t in HCLOUD_SERVER_TYPES {
            assert!(server_memory(ProviderKind::Hetzner, t).is_some(), "{t}");
        }
        let gib = |g: u64| Some(Size(g << 30));
        assert_eq!(server_memory(ProviderKind::Hetzner, "cx22"), gib(4));
        assert_eq!(server_memory(ProviderKind::Hetzner, "cpx52"), gib(24));
        assert_eq!(server_memory(ProviderKind::DigitalOcean, "s-2vcpu-4gb"), gib(4));
        assert_eq!(server_cpus(ProviderKind::DigitalOcean, "s-2vcpu-4gb"), Some(2));
        assert_eq!(server_cpus(ProviderKind::DigitalOcean, "g-16vcpu-64gb"), Some(16));
        assert_eq!(server_cpus(ProviderKind::DigitalOcean, "c-2"), None);
        assert_eq!(server_cpus(ProviderKind::Scaleway, "POP2-8C-32G"), Some(8));
        assert_eq!(server_cpus(ProviderKind::Scaleway, "DEV1-S"), None);
        assert_eq!(server_cpus(ProviderKind::Hetzner, "cx22"), None);
        assert_eq!(server_memory(ProviderKind::DigitalOcean, "s-1vcpu-512mb-10gb"), Some(Size(512 << 20)));
        assert_eq!(server_memory(ProviderKind::DigitalOcean, "c-2"), None);
        assert_eq!(server_memory(ProviderKind::DigitalOcean, "gpu-h100x1-80gb"), None);
        assert_eq!(server_memory(ProviderKind::Scaleway, "POP2-4C-16G"), gib(16));
        assert_eq!(server_memory(ProviderKind::Scaleway, "DEV1-S"), None);
    }

    #[test]
    fn every_list_value_is_a_provider_token() {
        for list in [HCLOUD_LOCATIONS, HCLOUD_SERVER_TYPES, DO_REGIONS, SCW_ZONES, SCW_REGIONS, SCW_ENGINES] {
            for v in list {
                assert!(crate::types::parse_provider_token(v).is_ok(), "{v}");
            }
        }
    }
}
