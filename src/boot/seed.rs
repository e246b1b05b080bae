//! The NoCloud seed `kiln boot` serves: user-data with the host's secrets (and, for a fleet,
//! the lab's report part; with `--apt-repo`, the lab's apt source) as extra cloud-config parts,
//! and `kiln seed-serve`, which qemu runs for each guest connection to the seed address and
//! which hands the secrets out once (later requests get the host's user-data without them);
//! `kiln repo-serve` serves the lab's apt repository the same way.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::Path;

/// The secrets as a second cloud-config part: root-only files in /etc/kiln/secrets, merged
/// into the host's own `write_files` (appended, not replacing them).
pub(crate) fn secrets_part(secrets: &BTreeMap<String, Vec<u8>>) -> String {
    use base64::Engine;
    let encode = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    let files: Vec<serde_json::Value> = secrets
        .iter()
        .map(|(name, value)| {
            serde_json::json!({
                "path": format!("{}/{name}", crate::render::SECRETS_DIR),
                "owner": "root:root",
                "permissions": "0400",
                "encoding": "b64",
                "content": encode(value),
            })
        })
        .collect();
    let cfg = serde_json::json!({
        "merge_how": [{ "name": "list", "settings": ["append"] }, { "name": "dict", "settings": ["no_replace", "recurse_list"] }],
        "write_files": files,
    });
    format!("#cloud-config\n{}", crate::render::yaml(&cfg))
}

/// user-data as cloud-init receives it: the host's own, plus a secrets part when there are any
/// and the lab's own parts (file name, cloud-config: [`report_part`], [`apt_part`]).
pub(crate) fn seed_user_data(user_data: &[u8], secrets: &BTreeMap<String, Vec<u8>>, lab: &[(&str, String)]) -> Vec<u8> {
    let mut parts = vec![("host.cfg", String::from_utf8_lossy(user_data).into_owned())];
    if !secrets.is_empty() {
        parts.push(("secrets.cfg", secrets_part(secrets)));
    }
    for (name, part) in lab {
        parts.push((name, part.clone()));
    }
    if parts.len() == 1 {
        return user_data.to_vec();
    }
    let boundary = "==kiln-boot-boundary==";
    let mut out = format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n");
    for (name, body) in parts {
        out.push_str(&format!(
            "--{boundary}\nContent-Type: text/cloud-config; charset=\"utf-8\"\nMIME-Version: 1.0\nContent-Disposition: attachment; filename=\"{name}\"\n\n{body}\n"
        ));
    }
    out.push_str(&format!("--{boundary}--\n"));
    out.into_bytes()
}

/// The seed's user-data with the secrets, served instead of `user-data` while it exists.
const WITH_SECRETS: &str = "user-data.with-secrets";

/// Writes the seed's user-data twice: [`seed_user_data`] with the secrets, handed out once
/// ([`forget_secrets`]), and `user-data`, the same without them, answered to every later
/// request, as a provider's metadata service keeps serving a server's own user-data. cloud-init
/// asks again at every boot: answered 404 after a reboot, it would fall back to
/// DataSourceNone, take the host for a new instance and run its per-instance modules again
/// (new SSH host keys among them).
pub(crate) fn write_user_data(
    seed: &Path,
    user_data: &[u8],
    secrets: &BTreeMap<String, Vec<u8>>,
    lab: &[(&str, String)],
    write: impl Fn(&Path, &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    write(&seed.join("user-data"), &seed_user_data(user_data, &BTreeMap::new(), lab))?;
    write(&seed.join(WITH_SECRETS), &seed_user_data(user_data, secrets, lab))
}

/// The secrets leave the seed (its `user-data` stays, without them). Idempotent.
pub(crate) fn forget_secrets(seed: &Path) {
    let _ = std::fs::remove_file(seed.join(WITH_SECRETS));
}

/// The prefix of the lines the report part writes to the serial console.
pub const REPORT_PREFIX: &str = "kiln-boot: ";

/// How long the report part waits for the containers' health to settle (checked every 10 s).
pub const REPORT_SETTLE_SECONDS: u32 = 300;

/// Lab plumbing for a fleet boot (never part of kiln's artifacts): a cloud-config part whose
/// command, appended to the host's `runcmd` and so run after the provisioner, writes what the
/// report needs to the serial console, where `kiln boot` reads it also from a machine it keeps
/// running: the closure marker, the provisioner's last error, and each container's state. The
/// states are read once no container is `starting` or `unhealthy`, or after
/// [`REPORT_SETTLE_SECONDS`]: a container whose healthcheck timed out while the host was busy
/// starting the others (Docker's "timed out starting health check") recovers by itself, one
/// that stays unhealthy is reported so.
pub(crate) fn report_part() -> String {
    let script = report_script("/dev/console", "/opt/kiln/compose.yaml");
    let cfg = serde_json::json!({
        "merge_how": [{ "name": "list", "settings": ["append"] }, { "name": "dict", "settings": ["no_replace", "recurse_list"] }],
        "runcmd": [["sh", "-c", script]],
    });
    format!("#cloud-config\n{}", crate::render::yaml(&cfg))
}

/// The report part's shell script, writing to `console`, the host's containers from `compose`.
fn report_script(console: &str, compose: &str) -> String {
    use crate::render::quote::sh;
    format!(
        r#"{{
p='{REPORT_PREFIX}'
compose={compose}
printf '%smarker %s\n' "$p" "$(cat {marker} 2>/dev/null || echo none)"
printf '%sprovisioner-error %s\n' "$p" "$(grep '^kiln: error:' /var/log/cloud-init-output.log 2>/dev/null | tail -n 1)"
if [ -f "$compose" ] && command -v docker >/dev/null; then
  i=0
  while [ "$i" -lt {settle} ] && docker compose --file "$compose" ps --format '{{{{.Health}}}}' 2>/dev/null | grep -qE '^(starting|unhealthy)$'; do
    sleep 10
    i=$((i + 1))
  done
  docker compose --file "$compose" ps --all --format '{{{{.Service}}}} {{{{.State}}}} {{{{.Health}}}}' 2>&1 | sed "s/^/${{p}}container /"
fi
printf '%send\n' "$p"
}} >{console} 2>&1
"#,
        marker = crate::render::MARKER,
        settle = REPORT_SETTLE_SECONDS / 10,
        compose = sh(compose),
        console = sh(console),
    )
}

/// The guest-side port of the lab's apt repository, on the seed address of a network with a
/// way out (`kiln boot --apt-repo`).
pub const APT_PORT: u16 = 8080;

/// Lab plumbing for `--apt-repo` (never part of kiln's artifacts): a cloud-config part whose
/// apt configuration, written before any module runs, makes the lab's repository at `url` apt's
/// only source (`Dir::Etc::SourceList` and `SourceParts` moved, so whatever the image or
/// cloud-init put in /etc/apt/sources.list* is not read: the test machines' VMs reach no
/// other archive). The repository is unsigned and marked trusted: scripts/lab-apt-repo verified
/// every package against Debian's signed index when it downloaded them.
pub(crate) fn apt_part(url: &str) -> String {
    let file =
        |path: &str, content: String| serde_json::json!({ "path": path, "owner": "root:root", "permissions": "0644", "content": content });
    let cfg = serde_json::json!({
        "merge_how": [{ "name": "list", "settings": ["append"] }, { "name": "dict", "settings": ["no_replace", "recurse_list"] }],
        "write_files": [
            file(
                "/etc/apt/apt.conf.d/00kiln-lab",
                "Dir::Etc::SourceList \"/etc/kiln-lab/apt/sources.list\";\nDir::Etc::SourceParts \"/etc/kiln-lab/apt/sources.list.d\";\n".into()
            ),
            file("/etc/kiln-lab/apt/sources.list", format!("deb [trusted=yes] {url} ./\n")),
        ],
    });
    format!("#cloud-config\n{}", crate::render::yaml(&cfg))
}

/// `kiln seed-serve DIR`: answers one HTTP request on stdin/stdout with a file from DIR
/// (qemu runs it for each guest connection to the seed address).
pub fn seed_serve(dir: &Path) -> std::io::Result<()> {
    let allowed = ["user-data", "meta-data", "vendor-data", "network-config"];
    serve_one(dir, |name| allowed.contains(&name), true)
}

/// `kiln repo-serve DIR`: answers one HTTP request on stdin/stdout with any regular file under
/// DIR (qemu runs it for each guest connection to the lab's apt repository).
pub fn repo_serve(dir: &Path) -> std::io::Result<()> {
    use std::path::Component::{CurDir, Normal};
    serve_one(dir, |name| !name.is_empty() && Path::new(name).components().all(|c| matches!(c, Normal(_) | CurDir)), false)
}

/// One HTTP/1.0 exchange on stdin/stdout: a GET or HEAD of a file under `dir` whose name
/// `allowed` accepts, else 404; with `once`, user-data loses its secrets once it has been sent
/// ([`forget_secrets`]).
fn serve_one(dir: &Path, allowed: impl Fn(&str) -> bool, once: bool) -> std::io::Result<()> {
    let stdin = std::io::stdin();
    let mut r = std::io::BufReader::new(stdin.lock());
    let mut first = String::new();
    r.read_line(&mut first)?;
    let mut line = String::new();
    while r.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("/").trim_start_matches('/');
    // apt escapes `+` and `~` in file names (`%2b`): the name on disk is the decoded path.
    let raw = path.split('?').next().unwrap_or("");
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    let name: &str = &decoded;
    // The seed's user-data: with the secrets while they are there (`once`), else without.
    let with_secrets = once && name == "user-data" && dir.join(WITH_SECRETS).exists();
    let file = if with_secrets { WITH_SECRETS } else { name };
    let body = if allowed(name) { std::fs::read(dir.join(file)).ok() } else { None };
    let served_once = with_secrets && method == "GET";
    let mut out = std::io::stdout().lock();
    match body {
        Some(b) => {
            write!(out, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len())?;
            if method != "HEAD" {
                out.write_all(&b)?;
                out.flush()?;
            }
            if served_once {
                // It holds the secrets: cloud-init has it now, nobody else gets them.
                forget_secrets(dir);
            }
        }
        None => write!(out, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?,
    }
    out.flush()?;
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The report script run by dash with stand-ins for `docker` (its health answers
    /// `unhealthy` for the first `recovers_after` asks, `healthy` after; -1: never) and `sleep`;
    /// returns what it wrote to its console and how often it asked.
    fn report(recovers_after: i32) -> (String, usize) {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let asks = dir.path().join("asks");
        let docker = format!(
            "#!/bin/sh\n# stand-in for docker compose ps\ncase \"$*\" in *--all*) h=$(cat {h} 2>/dev/null || echo healthy); echo \"app running $h\"; exit 0 ;; esac\necho x >> {asks}\nn=$(wc -l < {asks})\nif [ {r} -ge 0 ] && [ \"$n\" -gt {r} ]; then h=healthy; else h=unhealthy; fi\necho \"$h\" > {h}\necho \"$h\"\n",
            asks = asks.display(),
            h = dir.path().join("health").display(),
            r = recovers_after
        );
        std::fs::write(bin.join("docker"), docker).unwrap();
        std::fs::write(bin.join("sleep"), "#!/bin/sh\n# stand-in: the test does not wait\n").unwrap();
        for f in ["docker", "sleep"] {
            std::fs::set_permissions(bin.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let compose = dir.path().join("compose.yaml");
        std::fs::write(&compose, "services: {}\n").unwrap();
        let console = dir.path().join("console");
        let script = report_script(console.to_str().unwrap(), compose.to_str().unwrap());
        let path = format!("{}:/usr/bin:/bin", bin.display());
        let st = std::process::Command::new("dash").arg("-c").arg(&script).env("PATH", path).status().unwrap();
        assert!(st.success());
        let asked = std::fs::read_to_string(&asks).map(|a| a.lines().count()).unwrap_or(0);
        (std::fs::read_to_string(console).unwrap(), asked)
    }

    #[test]
    fn the_report_waits_for_health_to_settle_and_then_says_what_is() {
        let (out, asked) = report(2);
        assert!(out.contains("kiln-boot: container app running healthy\n"), "{out}");
        assert_eq!(asked, 3, "asked until no container was unhealthy");
        let (out, asked) = report(-1);
        assert!(out.contains("kiln-boot: container app running unhealthy\n"), "{out}");
        assert_eq!(asked as u32, REPORT_SETTLE_SECONDS / 10, "gave up after the settle time");
        assert!(out.ends_with("kiln-boot: end\n"), "{out}");
    }

    #[test]
    fn the_seed_holds_the_secrets_until_forgotten_and_the_hosts_own_user_data_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = BTreeMap::from([("db_password".to_string(), b"hunter2".to_vec())]);
        let write = |p: &Path, b: &[u8]| std::fs::write(p, b).map_err(|e| e.to_string());
        write_user_data(dir.path(), b"#cloud-config\nruncmd: []\n", &secrets, &[], write).unwrap();
        let first = std::fs::read_to_string(dir.path().join(WITH_SECRETS)).unwrap();
        let secret = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"hunter2");
        assert!(first.contains(&secret) && first.contains("runcmd: []"), "{first}");
        for _ in 0..2 {
            forget_secrets(dir.path());
            let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names, ["user-data"], "nothing with the secrets is left, and the user-data stays");
            let later = std::fs::read_to_string(dir.path().join("user-data")).unwrap();
            assert_eq!(later, "#cloud-config\nruncmd: []\n", "the host's own user-data, nothing else");
        }
    }
}
