//! `kiln plan`/`kiln diff` list streams (issue 16): a stream added, removed or moved to another
//! port is a change of its own, in the text and the JSON, between two real builds of the
//! streams fixture.

mod common;

use common::*;

#[test]
fn a_moved_removed_or_added_stream_is_in_the_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let src = repo().join("tests/fixtures/edges/streams");
    let modules = repo().join("tests/fixtures/modules");
    let store = tmp.path().join("store");
    let old = build_with_modules(&modules, &src, &store, &tmp.path().join("old"));

    let dir = tmp.path().join("edited");
    copy_tree(&src, &dir);
    let text_in = read(&dir.join("system.toml"));
    let edited = text_in.replace("port = 5433", "port = 5434").replace("[streams.cache]", "[streams.kv]");
    assert_ne!(edited, text_in);
    std::fs::write(dir.join("system.toml"), edited).unwrap();
    let new = build_with_modules(&modules, &dir, &store, &tmp.path().join("new"));

    let out = run(kiln().arg("diff").arg(&old).arg(&new).arg("--json"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = &plan["streams"];
    assert!(streams["added"].as_array().unwrap().iter().any(|s| s.as_str().unwrap().starts_with("kv → 6380/tcp to ")), "{streams}");
    assert!(streams["removed"].as_array().unwrap().iter().any(|s| s.as_str().unwrap().starts_with("cache → 6380/tcp to ")), "{streams}");
    let moved = streams["retargeted"].as_array().unwrap();
    assert!(
        moved.iter().any(|s| s.as_str().unwrap().starts_with("sql: 5433/tcp") && s.as_str().unwrap().contains("→ 5434/tcp")),
        "{streams}"
    );

    let out = run(kiln().arg("diff").arg(&old).arg(&new));
    let shown = text(&out.stdout);
    assert!(shown.contains("streams"), "{shown}");
    assert!(shown.contains("5434/tcp"), "{shown}");
}
