//! The NoCloud seed `kiln boot` serves: user-data with the host's secrets (and, for a fleet,
//! the lab's report part) as extra cloud-config parts, and `kiln seed-serve`, which qemu runs
//! for each guest connection to the seed address and which hands user-data out once.

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
/// and the fleet's report part ([`report_part`]) when given.
pub(crate) fn seed_user_data(user_data: &[u8], secrets: &BTreeMap<String, Vec<u8>>, report: Option<&str>) -> Vec<u8> {
    let mut parts = vec![("host.cfg", String::from_utf8_lossy(user_data).into_owned())];
    if !secrets.is_empty() {
        parts.push(("secrets.cfg", secrets_part(secrets)));
    }
    if let Some(r) = report {
        parts.push(("kiln-boot-report.cfg", r.to_string()));
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

/// The prefix of the lines the report part writes to the serial console.
pub const REPORT_PREFIX: &str = "kiln-boot: ";

/// Lab plumbing for a fleet boot (never part of kiln's artifacts): a cloud-config part whose
/// command, appended to the host's `runcmd` and so run after the provisioner, writes what the
/// report needs to the serial console, where `kiln boot` reads it also from a machine it keeps
/// running: the closure marker, the provisioner's last error, and each container's state.
pub(crate) fn report_part() -> String {
    let script = format!(
        r#"{{
p='{REPORT_PREFIX}'
printf '%smarker %s\n' "$p" "$(cat {marker} 2>/dev/null || echo none)"
printf '%sprovisioner-error %s\n' "$p" "$(grep '^kiln: error:' /var/log/cloud-init-output.log 2>/dev/null | tail -n 1)"
if [ -f /opt/kiln/compose.yaml ] && command -v docker >/dev/null; then
  docker compose --file /opt/kiln/compose.yaml ps --all --format '{{{{.Service}}}} {{{{.State}}}} {{{{.Health}}}}' 2>&1 | sed "s/^/${{p}}container /"
fi
printf '%send\n' "$p"
}} >/dev/console 2>&1
"#,
        marker = crate::render::MARKER
    );
    let cfg = serde_json::json!({
        "merge_how": [{ "name": "list", "settings": ["append"] }, { "name": "dict", "settings": ["no_replace", "recurse_list"] }],
        "runcmd": [["sh", "-c", script]],
    });
    format!("#cloud-config\n{}", crate::render::yaml(&cfg))
}

/// `kiln seed-serve DIR`: answers one HTTP request on stdin/stdout with a file from DIR
/// (qemu runs it for each guest connection to the seed address).
pub fn seed_serve(dir: &Path) -> std::io::Result<()> {
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
    let name = path.split('?').next().unwrap_or("");
    let allowed = ["user-data", "meta-data", "vendor-data", "network-config"];
    let body = if allowed.contains(&name) { std::fs::read(dir.join(name)).ok() } else { None };
    let served_once = method == "GET" && name == "user-data";
    let mut out = std::io::stdout().lock();
    match body {
        Some(b) => {
            write!(out, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len())?;
            if method != "HEAD" {
                out.write_all(&b)?;
                out.flush()?;
            }
            if served_once {
                // It holds the secrets: cloud-init has it now, nobody else gets it.
                let _ = std::fs::remove_file(dir.join(name));
            }
        }
        None => write!(out, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?,
    }
    out.flush()?;
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    Ok(())
}
