//! CDN consistency: every Cloudflare zone with a proxied record gets SSL mode "strict" through
//! OpenTofu (`cloudflare_zone_setting`, served by the stand-in provider with v5.22.0's schema),
//! planned and applied by Terraform; a zone with nothing proxied gets no setting; a route the
//! strict mode would reject (`tls = "internal"`) is refused by `proxied-untrusted-origin`
//! (tests/fixtures/diagnostics/rule-proxied-untrusted-origin).

mod common;

use common::terraform::{applied, tofu_check};
use common::*;

#[test]
fn a_proxied_cloudflare_zone_is_strict() {
    let tmp = tempfile::tempdir().unwrap();
    // built, and applied by Terraform
    let applied = applied(&repo().join("flake-free-examples/five-vps-saas"), tmp.path());
    let root: serde_json::Value = serde_json::from_str(&read(&applied.first.join("tofu/main.tf.json"))).unwrap();
    let settings = root["resource"]["cloudflare_zone_setting"].as_object().expect("no zone setting for the proxied zone");
    assert_eq!(settings.len(), 1, "{settings:?}");
    let ssl = &settings["example_com_ssl"];
    assert_eq!(ssl["setting_id"], "ssl");
    assert_eq!(ssl["value"], "strict");
    assert_eq!(ssl["zone_id"], "${var.cloudflare_zone_id_example_com}", "the zone the records are in");

    // once applied, Terraform sees nothing left to do
    let plan = applied.plan(&applied.root, "plan");
    let c = plan["resource_changes"].as_array().unwrap().iter().find(|c| c["address"] == "cloudflare_zone_setting.example_com_ssl");
    let c = c.expect("the zone setting is not in the plan");
    assert_eq!(c["change"]["after"]["value"], "strict");
    assert_eq!(c["change"]["actions"], serde_json::json!(["no-op"]));

    // the stand-in serves the real schema: `value` is required
    let mut broken = root.clone();
    broken["resource"]["cloudflare_zone_setting"]["example_com_ssl"].as_object_mut().unwrap().remove("value");
    let dir2 = tmp.path().join("tf2");
    std::fs::create_dir_all(&dir2).unwrap();
    std::fs::write(dir2.join("main.tf.json"), serde_json::to_vec(&broken).unwrap()).unwrap();
    let err = tofu_check(&dir2, &["--validate-only"]).expect_err("a zone setting without a value validates");
    assert!(err.contains("value"), "{err}");
}

#[test]
fn a_zone_with_nothing_proxied_keeps_its_setting() {
    // civic-scaleway: two Cloudflare zones, DNS only
    let tmp = tempfile::tempdir().unwrap();
    let r = build(&repo().join("flake-free-examples/civic-scaleway"), &tmp.path().join("store"), &tmp.path().join("r"));
    let root = read(&r.join("tofu/main.tf.json"));
    assert!(root.contains("\"cloudflare_dns_record\""));
    assert!(!root.contains("cloudflare_zone_setting"), "a DNS-only zone got an SSL mode");
}
