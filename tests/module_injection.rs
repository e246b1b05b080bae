//! The built-in modules' options cannot inject into what their templates write. Every string
//! option (and every `list` option's item) of every built-in module is fed hostile values; each
//! is either refused with a located error, or the build passes and every artifact it changed,
//! decoded by (a model of) its consumer — YAML and Compose, sh (tokens, and `dash -n`), INI-like
//! `key=value` files, systemd units, PHP evaluated by `php -r` — reads back as the build with a
//! harmless value did, with the hostile value in its place, literally.
//! `KILN_ONLY=a,b` limits the run to some modules.

#![allow(clippy::disallowed_methods)] // tests may read their own switches

mod module_system;

use std::collections::BTreeMap;
use std::process::Command;

use kiln::load::{Inputs, library};
use kiln::pipeline::{Options, Outcome, compile};
use kiln::syntax::module::OptType;
use serde_json::Value as J;

const PROBE: &str = "kilnprobe";

/// What an attacker puts in an option: shell, INI, systemd, PHP, YAML, Caddyfile and template
/// syntax, line breaks of every kind, and plain oddities a literal must survive. The default run
/// uses [`SHORT`]: one value holding every metacharacter, what matters only at an edge of the
/// value, and line breaks; `KILN_HOSTILE=all` feeds every value of this list on its own.
const HOSTILE: &[&str] = &[
    "$(touch /tmp/kiln-pwned)",
    "`touch /tmp/kiln-pwned`",
    "x'y",
    "x\"y",
    "x\\y",
    "x\\",
    "${HOME}",
    "x\nAllowKey=system.run[*]",
    "x\r[Unit]",
    "x\0y",
    "x\u{85}y",
    "x\u{2028}y",
    "x\u{2029}y",
    "x\ty",
    "\u{1b}[31mred",
    " lead",
    "trail ",
    "{{ 7 * 7 }}",
    "{% raw %}",
    "<?php system('id'); ?>",
    "'; system('id'); '",
    "x'); system('id'); ('",
    "a: b",
    "- item",
    "#comment",
    ";comment",
    "[section]",
    "key=value",
    "100%n",
    "a;b|c&d",
    "ünïcødé ✓",
];

const SHORT: &[&str] = &[
    "$(touch /tmp/kiln-pwned)`id`${HOME}'\"\\{{ 7 * 7 }}{% raw %}<?php x'); system('id'); ('?> 100%n a: b #c ;d [e] f=g h;i|j&k ünï ✓",
    " - #;lead",
    "trail ",
    "[s]x\\",
    "x\nAllowKey=system.run[*]",
    "x\r[Unit]",
    "x\0y",
    "x\u{2028}y",
];

/// Options whose value is, by design, code in the language it lands in (module, option, why).
const CODE: &[(&str, &str, &str)] = &[
    ("app", "health_command", "a shell command run by CMD-SHELL, as documented"),
    ("restic", "pre_backup_command", "a shell command run by `sh -c` before the backup, as documented"),
];

/// Options whose values have a shape: the hostile value goes where `{}` is, values holding the
/// shape's own separators are left out, and the module trims each part (so the value reads
/// back trimmed).
/// A Valkey ACL option is a list of rules split at blanks: the hostile value is a key pattern.
const SHAPE: &[(&str, &str, &str, &str)] =
    &[("homepage", "links", "Group|{}|https://example.com/", "|"), ("app", "cache_acl", "~{}", " "), ("redis-exporter", "acl", "~{}", " ")];

/// Options that open a template branch the defaults leave closed (module, option, TOML value).
const EXTRA: &[(&str, &str, &str)] = &[("pgbackrest", "repo_type", "\"s3\"")];

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn option_value(module: &str, opt: &str, ty: OptType, s: &str) -> String {
    let shaped;
    let s = match SHAPE.iter().find(|(m, o, _, _)| *m == module && *o == opt) {
        Some((_, _, shape, _)) => {
            shaped = shape.replace("{}", s);
            shaped.as_str()
        }
        None => s,
    };
    match ty {
        OptType::List => format!("[{}]", toml_str(s)),
        _ => toml_str(s),
    }
}

/// The artifacts of host `h1` that an option can reach, by path.
type Files = BTreeMap<String, String>;

enum Built {
    Ok(Files),
    Refused(String),
}

fn build(lib_dirs: &[std::path::PathBuf], dir: &std::path::Path, system: &str) -> Built {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("system.toml"), system).unwrap();
    match compile(dir, &Options { module_dirs: lib_dirs.to_vec(), ..Options::default() }).unwrap() {
        Outcome::Ok(c) => Built::Ok(
            c.hosts["h1"]
                .artifacts
                .iter()
                .filter(|a| !matches!(a.kind.name(), "checksums" | "cloud-init" | "bundle"))
                .map(|a| (a.path.clone(), String::from_utf8_lossy(&a.bytes).into_owned()))
                .collect(),
        ),
        Outcome::Failed(f) => Built::Refused(kiln::diag::render(&f.sources, &f.diagnostics, false)),
    }
}

// --- consumers ------------------------------------------------------------------------------

/// sh words as the shell sees them: characters the shell acts on (outside quotes, or `$` and
/// `` ` `` inside double quotes) are marked `⟦c⟧`, literal characters are themselves. A `$(…)`
/// inside double quotes is parsed afresh, as the shell does.
fn sh_tokens(script: &str) -> Vec<String> {
    #[derive(PartialEq)]
    enum Mode {
        Double,
        Subst,
    }
    let mut out = Vec::new();
    let mut word = String::new();
    let mut stack: Vec<Mode> = Vec::new();
    let mut chars = script.chars().peekable();
    let active = |w: &mut String, c: char| {
        w.push('⟦');
        w.push(c);
        w.push('⟧');
    };
    while let Some(c) = chars.next() {
        if stack.last() == Some(&Mode::Double) {
            match c {
                '"' => {
                    stack.pop();
                }
                '\\' if chars.peek().is_some_and(|n| "$`\"\\\n".contains(*n)) => word.push(chars.next().unwrap()),
                '$' if chars.peek() == Some(&'(') => {
                    active(&mut word, '$');
                    active(&mut word, chars.next().unwrap());
                    stack.push(Mode::Subst);
                }
                '$' | '`' => active(&mut word, c),
                c => word.push(c),
            }
            continue;
        }
        match c {
            ' ' | '\t' => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            '\n' => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                out.push("⏎".into());
            }
            '#' if word.is_empty() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push("⏎".into());
                        break;
                    }
                }
            }
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => stack.push(Mode::Double),
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(n) => word.push(n),
            },
            '$' if chars.peek() == Some(&'(') => {
                active(&mut word, '$');
                active(&mut word, chars.next().unwrap());
                stack.push(Mode::Subst);
            }
            ')' if stack.last() == Some(&Mode::Subst) => {
                active(&mut word, ')');
                stack.pop();
            }
            c if "$`;&|<>()*?[]{}~".contains(c) => active(&mut word, c),
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

fn dash_syntax(script: &str) -> Result<(), String> {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), script).unwrap();
    let o = Command::new("dash").arg("-n").arg(f.path()).output().expect("dash");
    if o.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&o.stderr).into_owned()) }
}

/// A script's words; the word after `sh -c` (or bash, dash, ash) is itself a script and is
/// decoded as one, so a value quoted for the inner shell reads back as the inner shell sees it.
fn decode_sh(script: &str) -> J {
    if let Err(e) = dash_syntax(script) {
        return J::from(format!("dash -n: {e}"));
    }
    let words = sh_tokens(script);
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let shell = |j: usize| ["sh", "bash", "dash", "ash"].contains(&words[j].rsplit('/').next().unwrap_or(""));
        let inner = i >= 2 && words[i - 1] == "-c" && shell(i - 2);
        out.push(if inner { decode_sh(w) } else { J::from(w.clone()) });
    }
    J::from(out)
}

/// An INI-like file as its readers see it: sections, `key=value` pairs (trimmed), other lines.
fn decode_ini(text: &str, systemd: bool) -> J {
    let mut out = Vec::new();
    for line in text.split('\n') {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l.starts_with('[') && l.ends_with(']') {
            out.push(J::from(vec!["section".to_string(), l[1..l.len() - 1].to_string()]));
        } else if let Some((k, v)) = l.split_once('=') {
            let v = v.trim();
            let v = if systemd {
                if v.ends_with('\\') {
                    "⟦continued⟧".to_string()
                } else {
                    v.replace("%%", "\u{1}").replace('%', "⟦%⟧").replace('\u{1}', "%")
                }
            } else {
                v.to_string()
            };
            out.push(J::from(vec![k.trim().to_string(), v]));
        } else {
            out.push(J::from(vec!["line".to_string(), l.to_string()]));
        }
    }
    J::from(out)
}

/// PHP code (WordPress' `WORDPRESS_CONFIG_EXTRA`, evaluated by wp-config.php) as PHP runs it:
/// the constants it defines, or its error.
fn decode_php(code: &str) -> J {
    // PHP from .test-tools (scripts/test-tools.sh unpacks it, never installs it), else PATH.
    let unpacked = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-tools/bin/php");
    let o = Command::new(if unpacked.exists() { unpacked } else { "php".into() })
        .arg("-r")
        .arg("eval(getenv('KILN_PHP')); echo json_encode(get_defined_constants(true)['user'] ?? []);")
        .env("KILN_PHP", code)
        .output()
        .expect("php (scripts/install-test-deps unpacks it into .test-tools)");
    if !o.status.success() {
        return J::from(format!("php failed: {}", String::from_utf8_lossy(&o.stdout)));
    }
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| J::from(format!("php printed {}", String::from_utf8_lossy(&o.stdout))))
}

/// Compose as Docker reads it: `$$` is a literal `$`, `sh -c` and `CMD-SHELL` strings are sh,
/// `*_CONFIG_EXTRA` variables are PHP.
fn decode_compose_value(v: &J, key: Option<&str>) -> J {
    match v {
        J::String(s) => {
            let s = s.replace("$$", "$");
            if key.is_some_and(|k| k.ends_with("CONFIG_EXTRA")) && !s.is_empty() { decode_php(&s) } else { J::from(s) }
        }
        J::Array(items) => {
            let mut out = Vec::new();
            let mut shell_next = false;
            for i in items {
                let d = decode_compose_value(i, None);
                out.push(match (&d, shell_next) {
                    (J::String(s), true) => decode_sh(s),
                    _ => d.clone(),
                });
                let prev = out.len().checked_sub(2).and_then(|i| out[i].as_str()).unwrap_or("");
                let shell = ["sh", "bash", "dash", "ash"].contains(&prev.rsplit('/').next().unwrap_or(""));
                shell_next = d.as_str() == Some("CMD-SHELL") || (d.as_str() == Some("-c") && shell);
            }
            J::from(out)
        }
        J::Object(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), decode_compose_value(v, Some(k)))).collect()),
        other => other.clone(),
    }
}

fn yaml(text: &str) -> J {
    serde_saphyr::from_str::<J>(text).unwrap_or_else(|e| J::from(format!("YAML error: {e}")))
}

/// An artifact as its consumer reads it.
fn decode(path: &str, text: &str) -> J {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let sh_like = text.starts_with("#!/bin/sh") || text.contains("# shellcheck shell=sh") || text.contains("(EnvironmentFile)");
    match ext {
        _ if path == "compose.yaml" => decode_compose_value(&yaml(text), None),
        "yaml" | "yml" => yaml(text),
        "json" => serde_json::from_str(text).unwrap_or_else(|e| J::from(format!("JSON error: {e}"))),
        "toml" => toml::from_str::<toml::Value>(text)
            .map(|t| serde_json::to_value(t).unwrap())
            .unwrap_or_else(|e| J::from(format!("TOML error: {e}"))),
        _ if sh_like || ext == "sh" => decode_sh(text),
        "service" | "timer" => decode_ini(text, true),
        // oauth2-proxy's `.cfg` is TOML; pretix's is INI.
        "cfg" if toml::from_str::<toml::Value>(text).is_ok() => serde_json::to_value(toml::from_str::<toml::Value>(text).unwrap()).unwrap(),
        "conf" | "cfg" | "ini" => decode_ini(text, false),
        _ => J::from(text.split('\n').map(str::to_string).collect::<Vec<_>>()),
    }
}

fn replace_all(v: &J, from: &str, to: &str) -> J {
    match v {
        J::String(s) => J::from(s.replace(from, to)),
        J::Array(a) => J::from(a.iter().map(|x| replace_all(x, from, to)).collect::<Vec<_>>()),
        J::Object(m) => J::Object(m.iter().map(|(k, x)| (k.replace(from, to), replace_all(x, from, to))).collect()),
        other => other.clone(),
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Why the hostile build's `path` does not read back as the harmless one with `value` in
/// place of the probe, if it does not.
fn judge(path: &str, benign: &str, hostile: &str, value: &str, trimmed: bool) -> Option<String> {
    let got = decode(path, hostile);
    let base = decode(path, benign);
    let value = if trimmed { value.trim() } else { value };
    let forms = [value.to_string(), percent_encode(value)];
    if forms.iter().any(|f| replace_all(&base, PROBE, f) == got) {
        return None;
    }
    Some(format!("{path} does not read back literally:\n  expected {}\n  got      {}", replace_all(&base, PROBE, value), got))
}

// --- the audit ------------------------------------------------------------------------------

fn string_options(lib: &Inputs, module: &str) -> Vec<(String, OptType)> {
    lib.modules[module]
        .decl
        .options
        .iter()
        .filter(|o| matches!(o.ty.value, OptType::String | OptType::List) && o.values.is_empty())
        .filter(|o| !CODE.iter().any(|(m, n, _)| *m == module && *n == o.name.value))
        // `[resources.fit]` options are sizes: memory-over-limit refuses anything else at the
        // option, so no text reaches a template through them.
        .filter(|o| !fit_options(lib, module).contains(&o.name.value))
        .map(|o| (o.name.value.clone(), o.ty.value))
        .collect()
}

/// The options a module sizes memory with (`[resources.fit.OPTION]`).
fn fit_options(lib: &Inputs, module: &str) -> Vec<String> {
    lib.modules[module].decl.resources.as_ref().map(|r| r.fit.iter().map(|f| f.option.value.clone()).collect()).unwrap_or_default()
}

/// Feeds every hostile value to every string option of `module`; failures are returned.
fn audit_module(
    lib: &Inputs,
    dirs: &[std::path::PathBuf],
    module: &str,
    values: &[&str],
    tmp: &std::path::Path,
) -> (Vec<String>, usize, usize) {
    let (mut failures, mut refused, mut read_back) = (Vec::new(), 0, 0);
    for (opt, ty) in string_options(lib, module) {
        let dir = tmp.join(format!("{module}-{opt}"));
        let mut overrides: Vec<(&str, String)> =
            EXTRA.iter().filter(|(m, _, _)| *m == module).map(|(_, o, v)| (*o, v.to_string())).collect();
        overrides.push((opt.as_str(), String::new()));
        let mut sys = |v: &str| {
            overrides.last_mut().unwrap().1 = option_value(module, &opt, ty, v);
            module_system::system_with(lib, module, &overrides, true).unwrap()
        };
        let benign = match build(dirs, &dir, &sys(PROBE)) {
            Built::Ok(f) => f,
            Built::Refused(d) => {
                failures.push(format!("{module}.{opt} = {PROBE:?} does not build:\n{d}"));
                continue;
            }
        };
        let separators = SHAPE.iter().find(|(m, o, _, _)| *m == module && *o == opt).map_or("", |s| s.3);
        for v in values.iter().filter(|v| !v.contains(|c| separators.contains(c))) {
            match build(dirs, &dir, &sys(v)) {
                Built::Refused(d) => {
                    refused += 1;
                    if !d.contains("system.toml:") {
                        failures.push(format!("{module}.{opt} = {v:?} is refused without a location in system.toml:\n{d}"));
                    }
                }
                Built::Ok(hostile) => {
                    read_back += 1;
                    for (path, text) in &hostile {
                        let base = benign.get(path).map(String::as_str).unwrap_or("");
                        if base == text {
                            continue;
                        }
                        if let Some(why) = judge(path, base, text, v, !separators.is_empty()) {
                            failures.push(format!("{module}.{opt} = {v:?}: {why}"));
                        }
                    }
                }
            }
        }
    }
    (failures, refused, read_back)
}

#[test]
fn no_module_option_injects_into_what_its_templates_write() {
    // KILN_MODULE_DIR=DIR audits modules from DIR (over the built-in ones).
    let dirs: Vec<std::path::PathBuf> = std::env::var_os("KILN_MODULE_DIR").map(|d| vec![d.into()]).unwrap_or_default();
    let lib = library(&dirs).unwrap();
    let only: Option<Vec<String>> = std::env::var("KILN_ONLY").ok().map(|s| s.split(',').map(str::to_string).collect());
    let values = if std::env::var("KILN_HOSTILE").is_ok_and(|v| v == "all") { HOSTILE } else { SHORT };
    let modules: Vec<&String> = lib.modules.keys().filter(|m| only.as_ref().is_none_or(|o| o.contains(m))).collect();
    let tmp = tempfile::tempdir().unwrap();
    // Two workers: the machines that run this have two cores.
    let results: Vec<(Vec<String>, usize, usize)> = std::thread::scope(|s| {
        let workers: Vec<_> = [0, 1]
            .map(|k| {
                let (lib, dirs, modules, tmp) = (&lib, &dirs, &modules, tmp.path());
                s.spawn(move || modules.iter().skip(k).step_by(2).map(|m| audit_module(lib, dirs, m, values, tmp)).collect::<Vec<_>>())
            })
            .into_iter()
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let failures: Vec<String> = results.iter().flat_map(|r| r.0.clone()).collect();
    let (refused, read_back): (usize, usize) = (results.iter().map(|r| r.1).sum(), results.iter().map(|r| r.2).sum());
    eprintln!("{refused} hostile values refused with a located error, {read_back} built and read back literally");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n\n"));
    assert!(refused > 0 && read_back > 0);
}

#[test]
fn the_sh_model_sees_what_dash_sees() {
    // The tokens mark exactly what the shell would act on.
    assert_eq!(sh_tokens("a='x$(y)' b"), vec!["a=x$(y)", "b"]);
    assert_eq!(sh_tokens("a=x$(y)"), vec!["a=x⟦$⟧⟦(⟧y⟦)⟧"]);
    assert_eq!(sh_tokens("\"a`b\""), vec!["a⟦`⟧b"]);
    assert_eq!(sh_tokens("'it'\\''s'"), vec!["it's"]);
    assert_eq!(sh_tokens("\"$(f 'a b')\""), vec!["⟦$⟧⟦(⟧f", "a b⟦)⟧"]);
    // And a value the quoting filter wrote reads back through dash as itself.
    for v in HOSTILE.iter().chain(SHORT).filter(|v| !v.contains('\0')) {
        let q = kiln::render::quote::sh(v);
        let o = Command::new("dash").arg("-c").arg(format!("printf '%s' {q}")).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), *v);
        assert_eq!(sh_tokens(&q), vec![v.to_string()], "{q}");
    }
}
