//! DNS zone ownership and Hetzner Object Storage buckets, judged by Terraform against the
//! stand-in providers of tests/tofu/ (the real providers' resource and data-source schemas):
//! a zone that exists already is read by a data source and never enters the state as a
//! resource, so no `destroy` can delete it; a zone kiln creates refuses to be destroyed; a
//! Hetzner bucket is created through the S3 API of its location, with credentials only ever in
//! variables.

mod common;

use std::path::Path;

use common::terraform::{applied, read_plan, root_of, tofu_check};
use common::*;
use serde_json::Value;

const HEAD: &str = r#"
[system]
name = "shop"
domains = ["shop.example", "ocean.example"]

[providers.hz]
kind = "hetzner"

[providers.do]
kind = "digitalocean"

[providers.own]
kind = "existing"

[admins.ops]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKey000000000000000000000000000000 ops@laptop"]
sources = ["198.51.100.0/24"]

[hosts.web]
provider = "own"
image = "debian-12"
public = true
address = "203.0.113.10"

[services.caddy]
module = "caddy"
host = "web"

[services.app]
module = "app"
host = "web"
options = { image = "ghcr.io/example/app:1.0.0", port = 8080 }

[routes."www.shop.example"]
service = "app"

[routes."www.ocean.example"]
service = "app"
"#;

/// A system of HEAD and `rest`, written to `tmp/src`.
fn system(tmp: &Path, rest: &str) -> std::path::PathBuf {
    let dir = tmp.join("src");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("system.toml"), format!("{HEAD}{rest}")).unwrap();
    dir
}

fn root(result: &Path) -> Value {
    serde_json::from_str(&read(&result.join("tofu/main.tf.json"))).unwrap()
}

/// The addresses of a plan's resource changes (no-ops included) whose type is one of `types`.
fn changes_of(plan: &Value, types: &[&str]) -> Vec<String> {
    plan["resource_changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| types.contains(&c["type"].as_str().unwrap_or("")))
        .map(|c| format!("{} {}", c["address"].as_str().unwrap(), c["change"]["actions"]))
        .collect()
}

const ZONE_TYPES: &[&str] = &["hcloud_zone", "digitalocean_domain"];

#[test]
fn an_existing_zone_is_read_by_a_data_source_and_never_owned() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(
        tmp.path(),
        "\n[dns.\"shop.example\"]\nprovider = \"hz\"\nexisting = true\n\n[dns.\"ocean.example\"]\nprovider = \"do\"\nexisting = true\n",
    );
    let result = build(&sys, &tmp.path().join("store"), &tmp.path().join("r"));
    let v = root(&result);
    assert_eq!(v["data"]["hcloud_zone"]["shop_example"]["name"], "shop.example");
    assert_eq!(v["data"]["digitalocean_domain"]["ocean_example"]["name"], "ocean.example");
    for ty in ZONE_TYPES {
        assert!(v["resource"][ty].is_null(), "an existing zone is a {ty} resource: {}", v["resource"][ty]);
    }
    assert_eq!(v["resource"]["hcloud_zone_rrset"]["www_shop_example_a"]["zone"], "${data.hcloud_zone.shop_example.name}");
    assert_eq!(v["resource"]["digitalocean_record"]["www_ocean_example_a"]["domain"], "${data.digitalocean_domain.ocean_example.name}");

    // Terraform reads the zones, creates the records in them, and holds no zone it could delete.
    let tf = applied(&sys, &tmp.path().join("tf"));
    let again = tf.plan(&tf.root, "again");
    assert!(changes_of(&again, ZONE_TYPES).is_empty(), "the plan after apply has a zone resource: {:?}", changes_of(&again, ZONE_TYPES));
    let records = changes_of(&again, &["hcloud_zone_rrset", "digitalocean_record"]);
    assert_eq!(records.len(), 2, "the records are managed: {records:?}");
    assert!(records.iter().all(|r| r.ends_with("[\"no-op\"]")), "an applied root plans no change: {records:?}");
    let state: Vec<(String, String)> = again["prior_state"]["values"]["root_module"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["mode"].as_str().unwrap().to_string(), r["type"].as_str().unwrap().to_string()))
        .collect();
    assert!(state.contains(&("data".into(), "hcloud_zone".into())), "the zone was read: {state:?}");
    assert!(state.contains(&("data".into(), "digitalocean_domain".into())), "the domain was read: {state:?}");
    assert!(!state.iter().any(|(mode, ty)| mode == "managed" && ZONE_TYPES.contains(&ty.as_str())), "a zone is managed: {state:?}");

    // Destroying the whole root deletes the records kiln made and not the zones.
    let out = tmp.path().join("destroy.json");
    tofu_check(
        &tf.root,
        &["--state", tmp.path().join("tf/terraform.tfstate").to_str().unwrap(), "--destroy", "--plan-out", out.to_str().unwrap()],
    )
    .unwrap_or_else(|e| panic!("destroy plan:\n{e}"));
    let destroy = read_plan(&out);
    let deleted = changes_of(&destroy, &["hcloud_zone_rrset", "digitalocean_record"]);
    assert!(deleted.len() == 2 && deleted.iter().all(|d| d.ends_with("[\"delete\"]")), "{deleted:?}");
    assert!(changes_of(&destroy, ZONE_TYPES).is_empty(), "destroy touches a zone: {:?}", changes_of(&destroy, ZONE_TYPES));
}

#[test]
fn a_zone_kiln_creates_refuses_to_be_destroyed() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(tmp.path(), "\n[dns.\"shop.example\"]\nprovider = \"hz\"\n\n[dns.\"ocean.example\"]\nprovider = \"do\"\n");
    let result = build(&sys, &tmp.path().join("store"), &tmp.path().join("r"));
    let v = root(&result);
    assert_eq!(v["resource"]["hcloud_zone"]["shop_example"]["lifecycle"]["prevent_destroy"], true);
    assert_eq!(v["resource"]["digitalocean_domain"]["ocean_example"]["lifecycle"]["prevent_destroy"], true);
    assert!(v["data"].is_null(), "a created zone is no lookup: {}", v["data"]);

    // (Terraform honours prevent_destroy while the resource is in the root: a zone dropped from
    // the system is deleted with it, which is why a zone with records of its own is `existing`.)
    let tf = applied(&sys, &tmp.path().join("tf"));
    let state = tmp.path().join("tf/terraform.tfstate");
    let refused =
        tofu_check(&tf.root, &["--state", state.to_str().unwrap(), "--destroy"]).expect_err("Terraform planned to destroy the zones");
    assert!(refused.contains("Instance cannot be destroyed"), "{refused}");
    for zone in ["hcloud_zone.shop_example", "digitalocean_domain.ocean_example"] {
        assert!(refused.contains(&format!("Resource {zone} has lifecycle.prevent_destroy set")), "{zone} not protected:\n{refused}");
    }
}

#[test]
fn cloudflare_zones_cannot_be_created() {
    let tmp = tempfile::tempdir().unwrap();
    let sys =
        system(tmp.path(), "\n[providers.cf]\nkind = \"cloudflare\"\n\n[dns.\"shop.example\"]\nprovider = \"cf\"\nexisting = false\n");
    let out = run(kiln().arg("check").arg(&sys));
    assert!(!out.status.success(), "existing = false accepted on Cloudflare");
    let err = text(&out.stderr);
    assert!(err.contains("kiln does not create Cloudflare zones"), "{err}");
    assert!(err.contains("system.toml:"), "the error is located: {err}");
}

const BUCKETS: &str = r#"
[buckets.backups]
provider = "hz"
region = "hel1"

# a service with a backed-up volume
[services.kuma]
module = "uptime-kuma"
host = "web"

[buckets.media]
provider = "hz"

[secrets.restic_password]
file = "secrets.sops.yaml"

[secrets.s3_key_id]
file = "secrets.sops.yaml"
key = "spaces_access_key_id"

[secrets.s3_secret]
file = "secrets.sops.yaml"
key = "spaces_secret_access_key"

[backup]
repository = "s3:https://hel1.your-objectstorage.com/shop-backups/{host}"
password = "restic_password"
access_key_id = "s3_key_id"
secret_access_key = "s3_secret"
keep = { daily = 7 }
"#;

#[test]
fn a_hetzner_bucket_is_created_through_the_s3_api_of_its_location() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(tmp.path(), BUCKETS);
    std::fs::copy(repo().join("flake-free-examples/maidan-cloud/secrets.sops.yaml"), sys.join("secrets.sops.yaml")).unwrap();
    let result = build(&sys, &tmp.path().join("store"), &tmp.path().join("r"));
    let text = read(&result.join("tofu/main.tf.json"));
    let v: Value = serde_json::from_str(&text).unwrap();

    assert_eq!(v["terraform"]["required_providers"]["minio"]["source"], "aminueza/minio");
    assert!(v["terraform"]["required_providers"]["hcloud"].is_null(), "buckets alone need no hcloud provider");
    let configs = v["provider"]["minio"].as_array().expect("one minio configuration per location");
    let servers: Vec<(&str, &str, &str)> = configs
        .iter()
        .map(|c| (c["alias"].as_str().unwrap(), c["minio_server"].as_str().unwrap(), c["minio_region"].as_str().unwrap()))
        .collect();
    assert_eq!(servers, [("fsn1", "fsn1.your-objectstorage.com", "fsn1"), ("hel1", "hel1.your-objectstorage.com", "hel1")]);
    for c in configs {
        assert_eq!(c["minio_ssl"], true);
        assert_eq!(c["minio_user"], "${var.hetzner_s3_access_key}");
        assert_eq!(c["minio_password"], "${var.hetzner_s3_secret_key}");
    }
    for var in ["hetzner_s3_access_key", "hetzner_s3_secret_key"] {
        assert_eq!(v["variable"][var]["sensitive"], true, "{var}");
        assert!(v["variable"][var]["default"].is_null(), "{var} has a value in the root");
    }
    let bucket = &v["resource"]["minio_s3_bucket"]["backups"];
    assert_eq!(bucket["bucket"], "shop-backups");
    assert_eq!(bucket["provider"], "minio.hel1");
    assert_eq!(v["resource"]["minio_s3_bucket"]["media"]["provider"], "minio.fsn1", "fsn1 is the default location");

    // Terraform validates, plans and applies it; the credentials given to it stay out of the
    // root and the state.
    let (key, secret) = ("AKIAKILNTESTACCESS", "kiln-test-secret-value-4711");
    let dir = root_of(&result, &tmp.path().join("tf"));
    let state = tmp.path().join("terraform.tfstate");
    tofu_check(
        &dir,
        &[
            "--apply",
            "--state",
            state.to_str().unwrap(),
            "--var",
            &format!("hetzner_s3_access_key={key}"),
            "--var",
            &format!("hetzner_s3_secret_key={secret}"),
        ],
    )
    .unwrap_or_else(|e| panic!("terraform refuses the bucket:\n{e}"));
    let applied = read(&state);
    for value in [key, secret] {
        assert!(!text.contains(value) && !applied.contains(value), "{value} was written down");
    }
    let s: Value = serde_json::from_str(&applied).unwrap();
    assert_eq!(s["outputs"]["backups_bucket_url"]["value"], "https://hel1.your-objectstorage.com/shop-backups");
    // the backup repository names that bucket
    let script = read(&result.join("hosts/web/backup/kiln-backup.sh"));
    assert!(script.contains("s3:https://hel1.your-objectstorage.com/shop-backups/web"), "the repository is the bucket's URL");
}

#[test]
fn a_hetzner_bucket_location_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = system(tmp.path(), "\n[buckets.media]\nprovider = \"hz\"\nregion = \"nbg\"\n");
    let out = run(kiln().arg("check").arg(&sys));
    assert!(!out.status.success(), "an unknown location accepted");
    let err = text(&out.stderr);
    assert!(err.contains("`nbg` is not a hetzner Object Storage location"), "{err}");
    assert!(err.contains("system.toml:"), "the error is located: {err}");
    assert!(err.contains("did you mean `nbg1`?"), "{err}");
}
