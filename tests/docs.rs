//! Documentation that cannot rot: the module pages in docs/modules are what the code
//! generates, `kiln schema` accepts every example and rejects mistakes (judged by
//! check-jsonschema), and errors in module files point into the module file.

mod common;

use common::*;

#[test]
fn docs_modules_match_what_kiln_generates() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(kiln().arg("modules").arg("docs").arg(tmp.path()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let generated = files(tmp.path());
    let checked_in = files(&repo().join("docs/modules"));
    let names = |v: &[(String, Vec<u8>, u32)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&generated), names(&checked_in), "run `cargo run -- modules docs docs/modules`");
    for (g, c) in generated.iter().zip(&checked_in) {
        assert!(g.1 == c.1, "docs/modules/{} is stale: run `cargo run -- modules docs docs/modules`", g.0);
    }
}

#[test]
fn modules_list_and_show() {
    let out = run(kiln().arg("modules").arg("list"));
    assert!(out.status.success());
    let list = text(&out.stdout);
    let lib = kiln::load::library(&[]).unwrap();
    assert_eq!(list.lines().count(), lib.modules.len());
    for name in lib.modules.keys() {
        assert!(list.lines().any(|l| l.starts_with(&format!("{name} "))), "{name} missing from the list");
    }
    let out = run(kiln().arg("modules").arg("show").arg("postgres"));
    assert!(out.status.success());
    let page = text(&out.stdout);
    for o in &lib.modules["postgres"].decl.options {
        assert!(page.contains(&format!("`{}`", o.name.value)), "option {} not shown", o.name.value);
    }
    let out = run(kiln().arg("modules").arg("show").arg("postgre"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("did you mean `postgres`?"));
}

#[test]
fn errors_in_a_module_file_point_into_it() {
    let dir = repo().join("tests/fixtures/bad-modules");
    let out = run(kiln().arg("--modules").arg(&dir).arg("modules").arg("list"));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for (loc, what) in [
        ("broken/module.toml:6:8", "`contaner` is not a module kind"),
        ("broken/module.toml:9:8", "`integer` is not a option type"),
        ("broken/module.toml:14:1", "unknown key `environmnet`"),
        ("broken/module.toml:17:8", "70000 is not a port"),
        ("broken/module.toml:21:10", "`etc/app.conf` is not an absolute path"),
        ("refs/module.toml:24:13", "option `replicas` is not a string"),
        ("refs/module.toml:25:12", "the module has no option `dbname`"),
        ("refs/module.toml:28:17", "the module has no option `issuer`"),
        ("refs/module.toml:30:17", "the module has no secret slot `oidc_secret`"),
    ] {
        assert!(err.contains(loc), "expected an error at {loc}:\n{err}");
        assert!(err.contains(what), "expected `{what}`:\n{err}");
    }
}

#[test]
fn the_schema_accepts_the_examples_and_rejects_mistakes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(kiln().arg("schema"));
    assert!(out.status.success());
    let schema = tmp.path().join("system.schema.json");
    std::fs::write(&schema, &out.stdout).unwrap();
    let check = |file: &std::path::Path| {
        std::process::Command::new(repo().join(".venv-oracles/bin/check-jsonschema"))
            .arg("--force-filetype")
            .arg("toml")
            .arg("--schemafile")
            .arg(&schema)
            .arg(file)
            .output()
            .unwrap()
    };
    let meta = std::process::Command::new(repo().join(".venv-oracles/bin/check-jsonschema"))
        .arg("--check-metaschema")
        .arg(&schema)
        .output()
        .unwrap();
    assert!(meta.status.success(), "the schema is not a valid JSON Schema:\n{}", text(&meta.stdout));
    let mut checked = 0;
    for ex in examples() {
        for e in std::fs::read_dir(&ex).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let out = check(&p);
                assert!(out.status.success(), "{} fails the schema:\n{}", p.display(), text(&out.stdout));
                checked += 1;
            }
        }
    }
    assert!(checked >= 2);
    // What kiln accepts the schema accepts too (never stricter): a policy whose sources are
    // separated by a tab, as `types::parse_csp` reads it.
    let tab = tmp.path().join("csp-tab.toml");
    std::fs::write(&tab, "[routes.\"a.example.com\"]\nservice = \"s\"\ncsp = \"default-src\\t'self'\"\n").unwrap();
    assert!(check(&tab).status.success(), "the schema refuses a policy kiln reads: {}", text(&check(&tab).stdout));
    for (name, body) in [
        ("unknown-key.toml", "[hosts.a]\nprovider = \"hetzner\"\nimage = \"debian-12\"\nhots = 1\n"),
        ("bad-option.toml", "[services.v]\nmodule = \"valkey\"\nhost = \"a\"\noptions = { maxmemory_policy = \"sometimes\" }\n"),
        ("missing-secret.toml", "[services.p]\nmodule = \"postgres\"\nhost = \"a\"\n"),
        // The types the key table gives (src/schema.rs), judged by the same validator.
        ("bad-cidr.toml", "[networks.lan]\ncidr = \"10.0.0.0\"\n"),
        ("bad-name.toml", "[hosts.Web]\nprovider = \"h\"\nimage = \"debian-12\"\n"),
        ("bad-cpus.toml", "[services.c]\nmodule = \"caddy\"\nhost = \"a\"\ncpus = 0\n"),
        ("bad-tls.toml", "[routes.\"a.example.com\"]\nservice = \"s\"\ntls = \"acmee\"\n"),
        ("bad-server-type.toml", "[hosts.a]\nprovider = \"h\"\nimage = \"debian-12\"\ntype = \"${file(\\\"/etc/hostname\\\")}\"\n"),
        ("bad-schedule.toml", "[backup]\nrepository = \"r\"\npassword = \"p\"\nkeep = { daily = 1 }\nschedule = \"daily\\r[Unit]\"\n"),
        ("bad-route-name.toml", "[routes.\"App.example.com\"]\nservice = \"s\"\n"),
        ("bad-csp.toml", "[routes.\"a.example.com\"]\nservice = \"s\"\ncsp = \"default-src {x}\"\n"),
    ] {
        let f = tmp.path().join(name);
        std::fs::write(&f, body).unwrap();
        assert!(!check(&f).status.success(), "the schema accepted {name}");
    }
}

#[test]
fn every_schema_property_has_a_description() {
    let lib = kiln::load::library(&[]).unwrap();
    let schema = kiln::schema::system_schema(lib.modules.values());
    let props = kiln::schema::properties(&schema);
    let bare: Vec<&str> = props.iter().filter(|p| !p.1).map(|p| p.0.as_str()).collect();
    assert!(props.len() > 1000, "only {} properties: is the walk broken?", props.len());
    assert!(
        bare.is_empty(),
        "{} of {} properties have no description, e.g.:\n{}",
        bare.len(),
        props.len(),
        bare[..bare.len().min(20)].join("\n")
    );
}

#[test]
fn docs_reference_matches_what_kiln_generates() {
    let out = run(kiln().arg("schema").arg("--markdown"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let generated = text(&out.stdout);
    assert_eq!(generated, kiln::schema::reference::markdown());
    let checked_in = std::fs::read_to_string(repo().join("docs/reference.md")).unwrap();
    assert!(generated == checked_in, "docs/reference.md is stale: run `cargo run -- schema --markdown > docs/reference.md`");
    for page in ["docs/system.md", "README.md"] {
        let body = std::fs::read_to_string(repo().join(page)).unwrap();
        assert!(body.contains("reference.md"), "{page} does not link the reference");
    }
}

/// Each table of the language, as a TOML snippet that opens it, with the keys the reference
/// documents for it.
fn documented_tables() -> Vec<(String, Vec<&'static str>)> {
    use kiln::schema::{Key, ROOT, Ty};
    fn walk(header: &str, keys: &[Key], out: &mut Vec<(String, Vec<&'static str>)>) {
        out.push((header.to_string(), keys.iter().map(|k| k.name).collect()));
        let sub = |name: &str| if header.is_empty() { name.to_string() } else { format!("{header}.{name}") };
        for k in keys {
            match &k.ty {
                Ty::Table(inner) => walk(&sub(k.name), inner, out),
                Ty::Map(_, _, Ty::Table(inner) | Ty::Service(inner)) => walk(&format!("{}.x", sub(k.name)), inner, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk("", ROOT, &mut out);
    for (h, _) in &mut out {
        *h = h.replace("routes.x", "routes.\"x.example.com\"").replace("dns.x", "dns.\"example.com\"");
    }
    out
}

/// The reference documents exactly the keys kiln reads: for every table, an unknown key's
/// error lists the keys the decoder knows, which must be the documented ones.
#[test]
fn the_reference_documents_exactly_the_keys_kiln_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let tables = documented_tables();
    assert!(tables.len() > 15, "{tables:?}");
    for (header, documented) in tables {
        let body = if header.is_empty() { "zqxv = 1\n".to_string() } else { format!("[{header}]\nzqxv = 1\n") };
        std::fs::write(tmp.path().join("system.toml"), &body).unwrap();
        let out = run(kiln().arg("check").arg(tmp.path()));
        let err = text(&out.stderr);
        let after = err.split("unknown key `zqxv`").nth(1).unwrap_or_else(|| panic!("no unknown-key error for [{header}]:\n{err}"));
        let help = after.lines().find(|l| l.contains("help:")).unwrap_or_else(|| panic!("no help for [{header}]:\n{err}"));
        let mut known: Vec<&str> = help.split('`').skip(1).step_by(2).collect();
        let mut documented = documented.clone();
        if header.is_empty() {
            // Expanded away before the file is decoded.
            documented.retain(|k| !["templates", "instances"].contains(k));
        }
        known.sort();
        documented.sort();
        assert_eq!(known, documented, "[{header}]: the keys kiln reads (left) differ from the documented ones (right)");
    }
}
