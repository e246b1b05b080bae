//! Property tests: mutated input never panics and every span lies in its file; the order of
//! tables changes no hash; hostile strings never escape their quoting in sh, YAML or Caddyfile.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::pipeline::{Compiled, Options, Outcome, compile};
use proptest::prelude::*;

fn opts() -> Options {
    Options { module_dirs: vec![common::repo().join("tests/fixtures/modules")], ..Options::default() }
}

fn base() -> String {
    std::fs::read_to_string(common::repo().join("tests/fixtures/props/system.toml")).unwrap()
}

fn compile_text(dir: &Path, text: &str) -> Outcome {
    std::fs::write(dir.join("system.toml"), text).unwrap();
    compile(&dir.join("system.toml"), &opts()).expect("loads")
}

fn check_spans(o: &Outcome) {
    let (sources, diags) = match o {
        Outcome::Failed(f) => (&f.sources, &f.diagnostics),
        Outcome::Ok(c) => (&c.sources, &c.warnings),
    };
    for d in diags {
        for l in &d.labels {
            let text = sources.text(l.span.file);
            assert!(l.span.start <= l.span.end && l.span.end as usize <= text.len(), "span outside its file: {d:?}");
            assert!(text.is_char_boundary(l.span.start as usize) && text.is_char_boundary(l.span.end as usize), "{d:?}");
        }
        // the rendered form never panics either
        let _ = kiln::diag::render(sources, std::slice::from_ref(d), false);
    }
}

fn ok(o: Outcome) -> Box<Compiled> {
    match o {
        Outcome::Ok(c) => c,
        Outcome::Failed(f) => panic!("{}", kiln::diag::render(&f.sources, &f.diagnostics, false)),
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    SwapLines(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), "[\\[\\]{}=\"'.,#\\n a-z0-9é\\\\]{1,12}").prop_map(|(a, s)| Mutation::Insert(a, s)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let floor = |s: &str, mut i: usize| {
        i %= s.len() + 1;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match m {
        Mutation::Delete(a, n) => {
            let a = floor(text, *a);
            let b = floor(text, (a + n).min(text.len()));
            format!("{}{}", &text[..a], &text[b.max(a)..])
        }
        Mutation::Insert(a, s) => {
            let a = floor(text, *a);
            format!("{}{s}{}", &text[..a], &text[a..])
        }
        Mutation::SwapLines(a, b) => {
            let mut lines: Vec<&str> = text.lines().collect();
            let (a, b) = (a % lines.len(), b % lines.len());
            lines.swap(a, b);
            lines.join("\n")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_input_never_panics_and_spans_stay_in_their_file(ms in proptest::collection::vec(mutation(), 1..4)) {
        let tmp = tempfile::tempdir().unwrap();
        let mut text = base();
        for m in &ms {
            text = apply(&text, m);
        }
        let o = compile_text(tmp.path(), &text);
        check_spans(&o);
    }

    #[test]
    fn the_order_of_tables_changes_no_hash(seed in any::<u64>()) {
        let tmp = tempfile::tempdir().unwrap();
        let text = base();
        let reference = ok(compile_text(tmp.path(), &text)).manifest.hash.clone();
        // split into table sections and shuffle them (a TOML file means the same in any order)
        let mut sections: Vec<String> = Vec::new();
        for line in text.lines() {
            if line.starts_with('[') || sections.is_empty() {
                sections.push(String::new());
            }
            let last = sections.last_mut().unwrap();
            last.push_str(line);
            last.push('\n');
        }
        let mut rng = seed;
        for i in (1..sections.len()).rev() {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = (rng >> 33) as usize % (i + 1);
            sections.swap(i, j);
        }
        let shuffled = sections.concat();
        let again = ok(compile_text(tmp.path(), &shuffled)).manifest.hash.clone();
        prop_assert_eq!(reference, again);
    }
}

/// Strings that break naive quoting in sh, YAML, Compose and Caddyfile.
fn hostile() -> impl Strategy<Value = String> {
    let atoms = prop_oneof![
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("$HOME".to_string()),
        Just("${X:-y}".to_string()),
        Just("$(reboot)".to_string()),
        Just("`id`".to_string()),
        Just("\\".to_string()),
        Just("\n".to_string()),
        Just("\t".to_string()),
        Just("{{ x }}".to_string()),
        Just("{$HOME}".to_string()),
        Just("# c".to_string()),
        Just(": ".to_string()),
        Just("- ".to_string()),
        Just("yes".to_string()),
        Just("null".to_string()),
        Just("0x1F".to_string()),
        Just("*a &b !c |d >e %f @g".to_string()),
        Just("---".to_string()),
        Just(" ".to_string()),
        Just("é😀".to_string()),
        "[a-z]{1,5}",
    ];
    proptest::collection::vec(atoms, 1..6).prop_map(|v| v.concat())
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKey000000000000000000000000000000";

fn hostile_system(message: &str, comment: &str) -> String {
    let key = format!("{KEY} {}", comment.replace(['\n', '\r'], " "));
    base()
        .replace("message = \"hello from props\"", &format!("message = {}", toml_str(message)))
        .replace(&format!("\"{KEY} ops@laptop\""), &toml_str(&key))
}

fn artifact<'a>(c: &'a Compiled, host: &str, path: &str) -> &'a [u8] {
    &c.hosts[host].artifacts.iter().find(|a| a.path == path).unwrap_or_else(|| panic!("{host}/{path}")).bytes
}

fn sh_put_text_arg(script: &str, target: &str) -> String {
    let start = script.find(&format!("\nput_text {target} ")).expect("put_text line") + 1;
    let len = script[start..].find(" || true\n").expect("end of the put_text statement");
    let line = &script[start..start + len];
    let out = Command::new("dash").arg("-c").arg(format!("put_text() {{ printf '%s' \"$4\"; }}\n{line}")).output().expect("dash");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_strings_round_trip_through_yaml_and_sh(message in hostile(), comment in hostile()) {
        let tmp = tempfile::tempdir().unwrap();
        let text = hostile_system(&message, &comment);
        // A module option is one line: a control character is refused where it is written.
        if message.chars().any(kiln::render::quote::is_line_breaking) {
            let Outcome::Failed(f) = compile_text(tmp.path(), &text) else {
                return Err(TestCaseError::fail(format!("option value {message:?} with a control character was accepted")));
            };
            prop_assert!(f.diagnostics.iter().any(|d| d.code == "E0003" && d.primary_span().is_some()), "{:?}", f.diagnostics);
            return Ok(());
        }
        let c = ok(compile_text(tmp.path(), &text));
        let key = format!("{KEY} {}", comment.replace(['\n', '\r'], " "));

        // Compose: YAML reads back to the value with `$` doubled, which Compose turns back into `$`.
        let compose: serde_json::Value = serde_saphyr::from_slice(artifact(&c, "app", "compose.yaml")).unwrap();
        prop_assert_eq!(compose["services"]["web"]["environment"]["MESSAGE"].as_str().unwrap(), message.replace('$', "$$"));

        // cloud-init: every written file reads back byte for byte, and the key is intact.
        let ud: serde_json::Value = serde_saphyr::from_slice(artifact(&c, "app", "user-data")).unwrap();
        for wf in ud["write_files"].as_array().unwrap() {
            let rel = wf["path"].as_str().unwrap().strip_prefix("/opt/kiln/").unwrap();
            prop_assert_eq!(wf["content"].as_str().unwrap().as_bytes(), artifact(&c, "app", rel));
        }
        prop_assert_eq!(ud["users"][0]["ssh_authorized_keys"][0].as_str().unwrap(), key.as_str());

        // sh: the authorized_keys text, run through a real shell, is exactly the key.
        let script = String::from_utf8(artifact(&c, "app", "provision.sh").to_vec()).unwrap();
        prop_assert_eq!(sh_put_text_arg(&script, "/home/ops/.ssh/authorized_keys"), format!("{key}\n"));
    }

    #[test]
    fn hostile_route_names_are_rejected_not_emitted(name in hostile()) {
        let tmp = tempfile::tempdir().unwrap();
        let text = base().replace("[routes.\"www.example.com\"]", &format!("[routes.{}]", toml_str(&format!("{name}.example.com"))));
        let o = compile_text(tmp.path(), &text);
        check_spans(&o);
        if let Outcome::Ok(c) = o {
            // only a valid domain can get through, and then it appears verbatim
            let caddy = String::from_utf8(artifact(&c, "edge", "Caddyfile").to_vec()).unwrap();
            let site = format!("\n{name}.example.com {{\n");
            prop_assert!(caddy.contains(&site));
        }
    }
}

/// The real consumers read the hostile value back: PyYAML (what cloud-init uses) for
/// user-data, Compose itself for the environment (after its own `$$` unescaping).
#[test]
fn real_consumers_read_hostile_values_back() {
    let message = "it's \"$HOME\" `id` $(reboot) ${X:-y} {{ x }} # not a comment - yes: null é😀 \\";
    let tmp = tempfile::tempdir().unwrap();
    let c = ok(compile_text(tmp.path(), &hostile_system(message, "o'p$s \"x\" `y`")));
    let dir = tmp.path().join("out");
    std::fs::create_dir_all(&dir).unwrap();
    let compose = dir.join("compose.yaml");
    std::fs::write(&compose, artifact(&c, "app", "compose.yaml")).unwrap();
    let ud = dir.join("user-data");
    std::fs::write(&ud, artifact(&c, "app", "user-data")).unwrap();
    common::oracle("compose", &compose).unwrap();
    common::oracle("cloud-init", &ud).unwrap();

    let out = Command::new(venv_bin("docker-compose")).arg("-f").arg(&compose).arg("config").arg("--format").arg("json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["services"]["web"]["environment"]["MESSAGE"].as_str().unwrap().replace("$$", "$"), message);

    let parsed = common::yaml_to_json(&ud);
    for wf in parsed["write_files"].as_array().unwrap() {
        let rel = wf["path"].as_str().unwrap().strip_prefix("/opt/kiln/").unwrap();
        assert_eq!(wf["content"].as_str().unwrap().as_bytes(), artifact(&c, "app", rel), "{rel}");
    }
}

fn venv_bin(name: &str) -> PathBuf {
    common::repo().join(".venv-oracles/bin").join(name)
}
