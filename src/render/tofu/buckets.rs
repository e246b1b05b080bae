//! Object-storage buckets in the OpenTofu root: DigitalOcean Spaces and Scaleway buckets
//! through their providers; Hetzner Object Storage, which the hcloud provider does not
//! manage, through its S3 API with the `aminueza/minio` provider (the S3-compatible tools
//! Hetzner's documentation points to), one provider configuration per location, the access
//! and secret key as sensitive variables.

use serde_json::{Map, Value, json};

use super::{add, expr, rname};
use crate::model::System;
use crate::provider_values::{HCLOUD_OBJECT_STORAGE_LOCATIONS, hcloud_object_storage_endpoint};
use crate::syntax::system::ProviderKind;

/// The S3-compatible provider and the version kiln's buckets are written (and tested) against.
pub const MINIO: (&str, &str, &str) = ("minio", "aminueza/minio", "3.40.1");

/// The variables holding Hetzner Object Storage's S3 credentials (created in the Cloud
/// Console, per project); never written into the root.
const ACCESS_KEY: &str = "hetzner_s3_access_key";
const SECRET_KEY: &str = "hetzner_s3_secret_key";

/// A Hetzner bucket's location: as written, else the first Object Storage location.
fn location(region: Option<&str>) -> &str {
    region.unwrap_or(HCLOUD_OBJECT_STORAGE_LOCATIONS[0])
}

/// Whether any bucket lives in Hetzner Object Storage (the root then needs the S3 provider).
pub(super) fn any_hetzner(sys: &System) -> bool {
    sys.buckets.iter().any(|b| b.provider_kind == ProviderKind::Hetzner)
}

pub(super) struct Sections<'a> {
    pub required: &'a mut Map<String, Value>,
    pub variables: &'a mut Map<String, Value>,
    pub providers: &'a mut Map<String, Value>,
    pub resources: &'a mut Map<String, Value>,
    pub outputs: &'a mut Map<String, Value>,
}

/// Every bucket of the system, named `SYSTEM-NAME`.
pub(super) fn buckets(sys: &System, out: Sections<'_>) {
    let mut locations: Vec<&str> = Vec::new();
    for b in &sys.buckets {
        let name = format!("{}-{}", sys.name, b.name);
        match b.provider_kind {
            ProviderKind::DigitalOcean => add(
                out.resources,
                "digitalocean_spaces_bucket",
                &b.name,
                json!({ "name": name, "region": b.region.clone().unwrap_or_else(|| "fra1".into()), "acl": "private" }),
            ),
            ProviderKind::Scaleway => {
                let mut body = json!({ "name": name, "tags": { "kiln-system": sys.name } });
                if let Some(r) = &b.region {
                    body["region"] = json!(r);
                }
                add(out.resources, "scaleway_object_bucket", &b.name, body);
            }
            ProviderKind::Hetzner => {
                let loc = location(b.region.as_deref());
                locations.push(loc);
                add(
                    out.resources,
                    "minio_s3_bucket",
                    &b.name,
                    json!({ "provider": format!("{}.{loc}", MINIO.0), "bucket": name, "acl": "private", "force_destroy": false }),
                );
                // Where a restic repository (`s3:URL/PATH`) or an application finds the bucket.
                out.outputs.insert(
                    format!("{}_bucket_url", rname(&b.name)),
                    json!({ "value": expr(format!("https://{}/${{minio_s3_bucket.{}.bucket}}", hcloud_object_storage_endpoint(loc), rname(&b.name))) }),
                );
            }
            _ => {}
        }
    }
    if locations.is_empty() {
        return;
    }
    locations.sort_unstable();
    locations.dedup();
    let (local, source, version) = MINIO;
    out.required.insert(local.into(), json!({ "source": source, "version": version }));
    for (var, what) in [(ACCESS_KEY, "access key"), (SECRET_KEY, "secret key")] {
        out.variables.insert(
            var.into(),
            json!({ "type": "string", "sensitive": true, "description": format!("Hetzner Object Storage S3 {what} (Cloud Console, Security, S3 credentials)") }),
        );
    }
    // One configuration per location: the S3 endpoint is per location, and Hetzner checks
    // that requests are signed for the location's region.
    let configs: Vec<Value> = locations
        .iter()
        .map(|loc| {
            json!({
                "alias": loc,
                "minio_server": hcloud_object_storage_endpoint(loc),
                "minio_region": loc,
                "minio_ssl": true,
                "minio_user": expr(format!("${{var.{ACCESS_KEY}}}")),
                "minio_password": expr(format!("${{var.{SECRET_KEY}}}")),
                "s3_compat_mode": true,
            })
        })
        .collect();
    out.providers.insert(local.into(), Value::Array(configs));
}
