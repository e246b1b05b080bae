//! The judges a module file names (`judge = "…"`), run on the file a module check rendered:
//! parsers kiln carries (YAML, JSON, TOML) in process, and the real programs (shellcheck and
//! dash, promtool, caddy, docker compose) when they are installed. A judge whose program is
//! missing is reported as not run, never as passed.

use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

/// What one judge said of one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", content = "detail", rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    /// The judge refused the file: its own words.
    Fail(String),
    /// The judge's program is not installed: which, and what to install.
    NotRun(String),
}

/// One judge's verdict on one file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Judgement {
    /// The judge's name as the check shows it (`yaml`, `shellcheck`, `dash -n`, …).
    pub judge: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

fn one(judge: &str, verdict: Verdict) -> Judgement {
    Judgement { judge: judge.to_string(), verdict }
}

/// Runs every judge `name` stands for on `path` (its bytes already written there).
pub fn judge(name: &str, path: &Path) -> Vec<Judgement> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return vec![one(name, Verdict::Fail(format!("cannot read the rendered file: {e}")))],
    };
    match name {
        "yaml" => vec![one("yaml", parse_yaml(&bytes))],
        "traefik-static" | "traefik-dynamic" => vec![one("yaml", parse_yaml(&bytes))],
        "json" => vec![one(
            "json",
            serde_json::from_slice::<serde_json::Value>(&bytes).map_or_else(|e| Verdict::Fail(e.to_string()), |_| Verdict::Pass),
        )],
        "toml" => vec![one(
            "toml",
            std::str::from_utf8(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|t| toml::from_str::<toml::Value>(t).map_err(|e| e.to_string()))
                .map_or_else(Verdict::Fail, |_| Verdict::Pass),
        )],
        "sh" => vec![
            one("shellcheck", program(Command::new("shellcheck").args(["--norc", "--color=never", "-s", "sh"]).arg(path), "shellcheck")),
            one("dash -n", program(Command::new("dash").arg("-n").arg(path), "dash")),
        ],
        "promtool" => vec![one("promtool", program(Command::new("promtool").args(["check", "config"]).arg(path), "prometheus (promtool)"))],
        "caddy" => vec![one("caddy", caddy(path))],
        other => vec![one(other, Verdict::NotRun(format!("kiln has no judge named `{other}`")))],
    }
}

/// The Compose file of the check's system, read as the engine would: `docker compose config`
/// where the Compose plugin is installed, else the standalone `docker-compose`.
pub fn compose(path: &Path) -> Judgement {
    let plugin = Command::new("docker").args(["compose", "version"]).output().is_ok_and(|o| o.status.success());
    let mut cmd = if plugin {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new("docker-compose")
    };
    cmd.arg("-f").arg(path).args(["config", "-q", "--no-env-resolution"]);
    one("compose", program(&mut cmd, "docker compose (the Compose plugin) or docker-compose"))
}

fn parse_yaml(bytes: &[u8]) -> Verdict {
    match std::str::from_utf8(bytes) {
        Err(e) => Verdict::Fail(format!("not UTF-8: {e}")),
        Ok(text) => serde_saphyr::from_str::<serde_json::Value>(text).map_or_else(|e| Verdict::Fail(e.to_string()), |_| Verdict::Pass),
    }
}

/// Runs a judge program: exit 0 passes, any other exit fails with its output, a program that
/// is not installed is not run (`install` says what provides it).
fn program(cmd: &mut Command, install: &str) -> Verdict {
    match cmd.env("LC_ALL", "C").output() {
        Ok(out) if out.status.success() => Verdict::Pass,
        Ok(out) => {
            let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
            said.push_str(&String::from_utf8_lossy(&out.stderr));
            Verdict::Fail(said.trim_end().to_string())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Verdict::NotRun(format!("not installed: {install}")),
        Err(e) => Verdict::Fail(format!("cannot run the judge: {e}")),
    }
}

/// `caddy validate` with throw-away state directories: it provisions every module but starts
/// no server and asks no CA.
fn caddy(path: &Path) -> Verdict {
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => return Verdict::Fail(format!("cannot make a directory for caddy: {e}")),
    };
    let mut cmd = Command::new("caddy");
    cmd.args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(path)
        .env("HOME", tmp.path())
        .env("XDG_DATA_HOME", tmp.path().join("data"))
        .env("XDG_CONFIG_HOME", tmp.path().join("config"));
    program(&mut cmd, "caddy")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers_refuse_what_they_cannot_read() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        for (judge_name, good, bad) in
            [("yaml", "a: [1, 2]\n", "a: [1, 2\n"), ("json", "{\"a\": 1}", "{\"a\": }"), ("toml", "a = 1\n", "a = \n")]
        {
            std::fs::write(&f, good).unwrap();
            assert_eq!(judge(judge_name, &f)[0].verdict, Verdict::Pass, "{judge_name} good");
            std::fs::write(&f, bad).unwrap();
            assert!(matches!(judge(judge_name, &f)[0].verdict, Verdict::Fail(_)), "{judge_name} bad");
        }
    }

    #[test]
    fn a_missing_program_is_not_run_rather_than_passed() {
        let v = program(&mut Command::new("kiln-no-such-judge-program"), "nothing");
        assert_eq!(v, Verdict::NotRun("not installed: nothing".into()));
    }
}
