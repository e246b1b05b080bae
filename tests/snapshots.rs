//! Snapshots of every artifact of every example: a change in output shows up as a reviewed
//! diff (`cargo insta review`), never silently.

mod common;

use kiln::pipeline::{Options, Outcome, compile, manifest_json};

#[test]
fn example_artifacts_match_their_snapshots() {
    for ex in common::examples() {
        let name = ex.file_name().unwrap().to_string_lossy().into_owned();
        let c = match compile(&ex, &Options::default()).expect("loads") {
            Outcome::Ok(c) => c,
            Outcome::Failed(f) => panic!("{}", kiln::diag::render(&f.sources, &f.diagnostics, false)),
        };
        let mut settings = insta::Settings::clone_current();
        settings.set_prepend_module_to_snapshot(false);
        settings.set_snapshot_path("snapshots");
        settings.bind(|| {
            insta::assert_snapshot!(format!("{name}__manifest.json"), manifest_json(&c.manifest));
            for (host, ha) in &c.hosts {
                for a in &ha.artifacts {
                    // Binary bundles are pinned by their hash: a golden hash that fails when a byte drifts.
                    let text = match a.kind.name() {
                        "bundle" => format!("sha256 {}\nsize {}\n", a.sha256(), a.bytes.len()),
                        _ => String::from_utf8(a.bytes.clone()).expect("text artifact"),
                    };
                    insta::assert_snapshot!(format!("{name}__{host}__{}", a.path.replace('/', "__")), text);
                }
            }
            for a in &c.system_artifacts {
                let text = String::from_utf8(a.bytes.clone()).expect("text artifact");
                insta::assert_snapshot!(format!("{name}__{}", a.path.replace('/', "__")), text);
            }
        });
    }
}
