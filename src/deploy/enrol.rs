//! The enrolment of a cloud server's SSH host key (docs/deploy.md, "Cloud hosts"): the one-time
//! token per host (`<state>/enrol/<host>.token`), the user-data part that has the server publish
//! `HMAC-SHA256(token, "kiln-enrol-v1 HOST ssh-ed25519 KEY")` as its pre-authentication banner,
//! the OpenTofu override file that adds the part to each server, the proof's check, and
//! [`probe`], the one connection (offering no credential) that reads a server's key and banner,
//! and [`wait_and_pin`], which waits for a new server's proof and pins its key.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use serde_json::Value;

use super::cloud_plan::unpinned;
use super::host::{self, Host, Ssh, SshSettings};
use super::progress::{Progress, State};
use super::{Failure, Step};
use crate::types::SshHostKey;

/// The override file kiln adds to the working copy: each cloud server's user-data with the
/// enrolment part.
pub const OVERRIDE_FILE: &str = "kiln_enrol_override.tf.json";
/// The enrolment tokens and the server each pin belongs to, inside the state directory.
pub const ENROL_DIR: &str = "enrol";
pub(super) const PROOF_PREFIX: &str = "kiln-enrol-v1";
/// The file on the server whose presence stops the enrolment from being published again.
pub(super) const ENROLLED_MARK: &str = "/var/lib/kiln/enrolled";

/// The cloud servers of an OpenTofu root: host name (the `kiln-host` label) → (resource
/// type, resource name, user_data).
pub fn servers_of_root(root: &Value) -> BTreeMap<String, (String, String, String)> {
    let mut out = BTreeMap::new();
    for ty in ["hcloud_server", "digitalocean_droplet", "scaleway_instance_server"] {
        for (name, r) in root["resource"][ty].as_object().into_iter().flatten() {
            let host = r["labels"]["kiln-host"].as_str().map(str::to_string).unwrap_or_else(|| name.clone());
            if let Some(ud) = r["user_data"].as_str() {
                out.insert(host, (ty.to_string(), name.clone(), ud.to_string()));
            }
        }
    }
    out
}

/// The message the server's proof is the HMAC of.
pub fn proof_message(host: &str, key: &SshHostKey) -> String {
    format!("{PROOF_PREFIX} {host} {}", key.line())
}

/// `HMAC-SHA256(token, proof_message)`, hex. `token` is the hex the server gets.
pub fn proof(token_hex: &str, host: &str, key: &SshHostKey) -> String {
    let key_bytes = hex::decode(token_hex).unwrap_or_default();
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key_bytes).expect("HMAC takes any key length");
    m.update(proof_message(host, key).as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Whether `claimed` (hex, from the banner) is the proof for `key`: compared in constant time.
pub fn proof_matches(token_hex: &str, host: &str, key: &SshHostKey, claimed: &str) -> bool {
    let Ok(claimed) = hex::decode(claimed.trim()) else { return false };
    let key_bytes = hex::decode(token_hex).unwrap_or_default();
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key_bytes).expect("HMAC takes any key length");
    m.update(proof_message(host, key).as_bytes());
    m.verify_slice(&claimed).is_ok()
}

/// The proof in ssh's output (the banner's line), if any.
pub fn proof_in(ssh_stderr: &str) -> Option<String> {
    ssh_stderr.lines().find_map(|l| l.trim().strip_prefix(PROOF_PREFIX).map(|r| r.trim().to_string())).filter(|p| !p.is_empty())
}

/// Where the server keeps the publisher script (with the token: root-only, on tmpfs, removed
/// when the key is pinned) and the banner.
pub const RUN_DIR: &str = "/run/kiln-enrol";
/// The publisher's systemd unit: a runtime unit (`/run/systemd/system`), gone at reboot.
pub const UNIT_NAME: &str = "kiln-enrol.service";
pub const UNIT_PATH: &str = "/run/systemd/system/kiln-enrol.service";

/// The shell script the publisher unit runs: once cloud-init's ssh module has made this
/// instance's keys, the proof over the ed25519 key is written to a root-only banner sshd shows
/// before authentication.
pub fn publish_script(host: &str, token_hex: &str) -> String {
    use crate::render::quote::sh;
    format!(
        "[ -e {mark} ] && exit 0\numask 077\ni=0\nwhile {{ [ ! -e /var/lib/cloud/instance/sem/config_ssh ] || [ ! -s /etc/ssh/ssh_host_ed25519_key.pub ]; }} && [ \"$i\" -lt 1800 ]; do sleep 1; i=$((i+1)); done\n\
         k=$(cut -d ' ' -f 1,2 /etc/ssh/ssh_host_ed25519_key.pub) || exit 1\nmkdir -p {run}\n\
         m=$(printf '%s %s %s' {prefix} {host} \"$k\" | openssl dgst -sha256 -mac HMAC -macopt hexkey:{token} -r | cut -d ' ' -f 1)\n\
         printf '%s %s\\n' {prefix} \"$m\" >{run}/banner.tmp\nmv -f {run}/banner.tmp {run}/banner\n\
         printf 'Banner %s\\n' {banner} >/etc/ssh/sshd_config.d/kiln-enrol.conf\n\
         systemctl reload ssh 2>/dev/null || systemctl reload sshd 2>/dev/null || true\n",
        mark = sh(ENROLLED_MARK),
        prefix = sh(PROOF_PREFIX),
        host = sh(host),
        token = sh(token_hex),
        run = sh(RUN_DIR),
        banner = sh(&format!("{RUN_DIR}/banner")),
    )
}

/// The publisher's unit: a oneshot that systemd runs once cloud-init's network stage (which
/// makes the host keys) and sshd are up, owned by systemd rather than by a cloud-init stage's
/// process tree (a background child of `bootcmd` could be lost with it). Never after
/// enrolment (the mark). Its wait is bounded below `TimeoutStartSec`.
pub fn publish_unit() -> String {
    format!(
        "[Unit]\nDescription=kiln: publish this server's SSH host-key enrolment proof as sshd's banner\n\
         After=cloud-init.service ssh.service sshd.service\nConditionPathExists=!{mark}\n\n\
         [Service]\nType=oneshot\nExecStart=/bin/sh {run}/publish\nTimeoutStartSec=1900\n",
        mark = ENROLLED_MARK,
        run = RUN_DIR,
    )
}

/// What `bootcmd` runs (as `sh -c BOOT kiln-enrol SCRIPT UNIT`): writes the publisher script
/// (0700 directory, 0600 file) and the runtime unit, reloads systemd and queues the unit's
/// start without waiting for it (`--no-block`: cloud-init's own stage is what the unit is
/// ordered after). Nothing when the server is enrolled already.
pub fn boot_command() -> String {
    use crate::render::quote::sh;
    format!(
        "[ -e {mark} ] && exit 0\nset -e\numask 077\nmkdir -p {run}\nprintf '%s' \"$1\" >{run}/publish\n\
         umask 022\nmkdir -p /run/systemd/system\nprintf '%s' \"$2\" >{unit}\n\
         systemctl daemon-reload\nsystemctl start --no-block {name}\n",
        mark = sh(ENROLLED_MARK),
        run = sh(RUN_DIR),
        unit = sh(UNIT_PATH),
        name = sh(UNIT_NAME),
    )
}

/// What kiln runs over the pinned connection once the key is pinned: the banner, the
/// publisher (and its token) go and are not published again.
pub fn retire_script() -> String {
    format!(
        "mkdir -p /var/lib/kiln\ntouch {}\nrm -f /etc/ssh/sshd_config.d/kiln-enrol.conf\nrm -rf {}\nsystemctl reload ssh 2>/dev/null || systemctl reload sshd 2>/dev/null || true\n",
        crate::render::quote::sh(ENROLLED_MARK),
        crate::render::quote::sh(RUN_DIR),
    )
}

/// The enrolment part: cloud-config whose `bootcmd` (appended to the host's own, never
/// replacing it) installs and queues the publisher unit ([`boot_command`]).
pub fn enrol_part(host: &str, token_hex: &str) -> String {
    let cfg = serde_json::json!({
        "merge_how": [{ "name": "list", "settings": ["append"] }, { "name": "dict", "settings": ["no_replace", "recurse_list"] }],
        "bootcmd": [["sh", "-c", boot_command(), "kiln-enrol", publish_script(host, token_hex), publish_unit()]],
    });
    format!("#cloud-config\n{}", crate::render::yaml(&cfg))
}

/// How many bytes `kiln deploy` adds to the cloud-config user-data of `host` ([`enrol_part`]
/// wrapped with it by [`with_part`]): what the provider receives is that much larger than the
/// build's user-data, so the build keeps it free of the provider's limit
/// (`render::user_data_budget`). Exact: the token is always 64 hex digits, the boundary 16.
pub fn overhead(host: &str) -> usize {
    let bare = "#cloud-config\n";
    with_part(bare, &enrol_part(host, &"0".repeat(64))).map_or(0, |whole| whole.len() - bare.len())
}

/// `user_data` and `part` as one MIME multipart user-data (cloud-init's format for several
/// parts). The host's own user-data must be cloud-config or a shell script.
pub fn with_part(user_data: &str, part: &str) -> Result<String, String> {
    let kind = if user_data.starts_with("#cloud-config") {
        "text/cloud-config"
    } else if user_data.starts_with("#!") {
        "text/x-shellscript"
    } else {
        return Err("the user-data is neither cloud-config nor a shell script: the enrolment part cannot be added to it".into());
    };
    let boundary = format!("==kiln-enrol-{}==", &crate::render::hex(&<sha2::Sha256 as sha2::Digest>::digest(user_data.as_bytes()))[..16]);
    let mut out = format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n");
    for (k, name, body) in [(kind, "host", user_data), ("text/cloud-config", "kiln-enrol.cfg", part)] {
        out.push_str(&format!(
            "--{boundary}\nContent-Type: {k}; charset=\"utf-8\"\nMIME-Version: 1.0\nContent-Disposition: attachment; filename=\"{name}\"\n\n{body}\n"
        ));
    }
    out.push_str(&format!("--{boundary}--\n"));
    Ok(out)
}

/// The override file: every cloud server's user-data with its host's enrolment part.
pub fn override_file(root: &Value, tokens: &BTreeMap<String, String>) -> Result<Vec<u8>, String> {
    let mut resource = serde_json::Map::new();
    for (host, (ty, name, ud)) in servers_of_root(root) {
        let Some(token) = tokens.get(&host) else { continue };
        let ud = with_part(&ud, &enrol_part(&host, token)).map_err(|e| format!("host `{host}`: {e}"))?;
        let by_type = resource.entry(ty).or_insert_with(|| Value::Object(Default::default()));
        by_type[&name] = serde_json::json!({ "user_data": ud });
    }
    let mut bytes = serde_json::to_vec_pretty(&serde_json::json!({ "resource": resource })).expect("serialises");
    bytes.push(b'\n');
    Ok(bytes)
}

/// The enrolment tokens hosts already have in `<state>/enrol/` (none are made): what `kiln plan
/// --tofu` needs to stage the same override as the last deploy, so that it does not see every
/// enrolled server's user-data as changed.
pub fn enrolled_tokens(state: &Path) -> BTreeMap<String, String> {
    let Ok(dir) = std::fs::read_dir(state.join(ENROL_DIR)) else { return BTreeMap::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".token")?.to_string();
            let t = std::fs::read_to_string(e.path()).ok()?;
            (t.trim().len() == 64).then(|| (name, t.trim().to_string()))
        })
        .collect()
}

/// The working copy's extra file for `tokens` (`None` when no host has one). Pure.
pub fn override_for(artifacts: &[(String, Vec<u8>)], tokens: &BTreeMap<String, String>) -> Result<Option<(String, Vec<u8>)>, String> {
    if tokens.is_empty() {
        return Ok(None);
    }
    let Some((_, main)) = artifacts.iter().find(|(p, _)| p == "tofu/main.tf.json") else { return Ok(None) };
    let root: Value = serde_json::from_slice(main).map_err(|e| format!("tofu/main.tf.json: {e}"))?;
    Ok(Some((OVERRIDE_FILE.to_string(), override_file(&root, tokens)?)))
}

/// The enrolment tokens of `hosts`: read from `<state>/enrol/`, a fresh random one (0600)
/// for a host that has none.
pub(super) fn tokens(state: &Path, hosts: &[String]) -> Result<BTreeMap<String, String>, String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = state.join(ENROL_DIR);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let mut out = BTreeMap::new();
    for h in hosts {
        let f = dir.join(format!("{h}.token"));
        let token = match std::fs::read_to_string(&f) {
            Ok(t) if t.trim().len() == 64 => t.trim().to_string(),
            _ => {
                let mut b = [0u8; 32];
                getrandom::fill(&mut b).map_err(|e| format!("no randomness for an enrolment token: {e}"))?;
                let t = hex::encode(b);
                let _ = std::fs::remove_file(&f);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&f)
                    .map_err(|e| format!("cannot write `{}`: {e}", f.display()))?;
                file.write_all(t.as_bytes()).map_err(|e| format!("cannot write `{}`: {e}", f.display()))?;
                t
            }
        };
        out.insert(h.clone(), token);
    }
    Ok(out)
}

pub(super) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// One connection offering no credential: the key the server proved it holds (recorded by
/// ssh in a private copy of `known_hosts`) and the proof in its banner.
pub(super) fn probe(settings: &SshSettings, ssh: &Ssh) -> Result<(SshHostKey, Option<String>), String> {
    let tmp = tempfile::Builder::new().prefix("kiln-enrol-").tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let file = tmp.path().join("known_hosts");
    // The bastion's pin (the ProxyCommand still checks it strictly); the host's own line is
    // what ssh adds.
    let text = std::fs::read_to_string(&settings.known_hosts).unwrap_or_default();
    std::fs::write(&file, super::cloud_plan::unpinned(&text, &ssh.target.alias)).map_err(|e| e.to_string())?;
    let probe_settings = SshSettings { known_hosts: file.clone(), ..settings.clone() };
    let mut cmd = Command::new("ssh");
    // The first value of an option wins: these come before the shared ones.
    for o in [
        "StrictHostKeyChecking=accept-new",
        "HashKnownHosts=no",
        "PreferredAuthentications=none",
        "HostKeyAlgorithms=ssh-ed25519",
        "ControlMaster=no",
        "ControlPath=none",
        "IdentitiesOnly=yes",
        "IdentityAgent=none",
        "LogLevel=INFO",
    ] {
        cmd.arg("-o").arg(o);
    }
    cmd.args(Ssh::options(&probe_settings, &ssh.target)).arg("--").arg(&ssh.target.destination).arg("true");
    let out = host::run_command(cmd, b"", settings.connect_timeout + Duration::from_secs(10))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let seen = std::fs::read_to_string(&file).unwrap_or_default();
    let key = super::known_hosts::pinned(&seen, &ssh.target.alias)
        .into_iter()
        .find(|k| k.algorithm == "ssh-ed25519")
        .ok_or_else(|| format!("no SSH host key yet: {}", host::tail(&stderr, 2)))?;
    Ok((key, proof_in(&stderr)))
}

/// What the wait for a new server's proof needs from the deploy.
fn fail(host: &str, step: Step, message: impl Into<String>) -> Failure {
    Failure { host: host.to_string(), step, message: message.into(), log_tail: None, details: None }
}

pub(super) struct Waits<'a> {
    pub state: &'a Path,
    /// How long a new server may take to prove its key.
    pub boot_timeout: Duration,
    pub timeouts: &'a super::Timeouts,
}

/// Pins the server's key when its enrolment proof checks out (see the module's comment); a
/// server already enrolled (its id recorded beside the pin) is left as pinned (`false`). A
/// replaced server's old pin is dropped first.
pub(super) fn wait_and_pin(
    w: &Waits<'_>,
    settings: &SshSettings,
    ssh: &Ssh,
    server: &super::cloud_plan::Server,
    token: &str,
    p: &Progress,
) -> Result<bool, Failure> {
    let name = ssh.target.alias.as_str();
    let record = w.state.join(ENROL_DIR).join(format!("{name}.server"));
    let known = std::fs::read_to_string(&settings.known_hosts).unwrap_or_default();
    if std::fs::read_to_string(&record).ok().as_deref().map(str::trim) == Some(server.id.as_str())
        && !super::known_hosts::pinned(&known, name).is_empty()
    {
        return Ok(false);
    }
    let io = |e: std::io::Error| fail(name, Step::Connect, format!("`{}`: {e}", settings.known_hosts.display()));
    if !super::known_hosts::pinned(&known, name).is_empty() {
        write_private(&settings.known_hosts, unpinned(&known, name).as_bytes()).map_err(io)?;
    }
    p.emit(name, Step::Connect, State::Waiting, format!("waiting for server {} to prove its host key", server.id));
    let start = Instant::now();
    let mut last_note = Instant::now();
    let mut last;
    let key = loop {
        match probe(settings, ssh) {
            Ok((key, Some(claimed))) => {
                if !proof_matches(token, name, &key, &claimed) {
                    return Err(fail(
                        name,
                        Step::Connect,
                        format!(
                            "the server at {} presents host key {} with an enrolment proof that does not match: refused (a different server, or a man in the middle)",
                            ssh.target.destination,
                            key.fingerprint()
                        ),
                    ));
                }
                break key;
            }
            Ok((key, None)) => last = format!("it presents {} but no enrolment proof yet", key.fingerprint()),
            Err(e) => last = e,
        }
        if host::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(fail(name, Step::Connect, "interrupted"));
        }
        if start.elapsed() >= w.boot_timeout {
            return Err(fail(
                name,
                Step::Connect,
                format!("unreachable: no verified host key within {} s ({last})", w.boot_timeout.as_secs()),
            ));
        }
        if last_note.elapsed() >= w.timeouts.note_every {
            last_note = Instant::now();
            p.emit(name, Step::Connect, State::Waiting, format!("{} s: {last}", start.elapsed().as_secs()));
        }
        std::thread::sleep(Duration::from_secs(5));
    };
    super::known_hosts::pin(&settings.known_hosts, name, &key).map_err(|e| fail(name, Step::Connect, e))?;
    write_private(&record, server.id.as_bytes()).map_err(io)?;
    p.emit(name, Step::Connect, State::Waiting, format!("host key {} proven by enrolment and pinned", key.fingerprint()));
    // The admin's account may not be there yet (cloud-init is still running): a refused login
    // is waited out, with the key already pinned and checked strictly.
    loop {
        match ssh.run(&retire_script(), b"", w.timeouts.connect) {
            Ok(out) if out.ok() => return Ok(true),
            Ok(out) => return Err(fail(name, Step::Connect, format!("cannot run commands as root: {}", out.stderr_tail(3)))),
            Err(e) if start.elapsed() < w.boot_timeout && !host::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) => {
                if last_note.elapsed() >= w.timeouts.note_every {
                    last_note = Instant::now();
                    p.emit(
                        name,
                        Step::Connect,
                        State::Waiting,
                        format!("{} s: not logged in yet: {}", start.elapsed().as_secs(), host::tail(&e, 1)),
                    );
                }
                std::thread::sleep(Duration::from_secs(5));
            }
            Err(e) => return Err(fail(name, Step::Connect, format!("unreachable over SSH after its key was pinned: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::parse_ssh_host_key;

    fn key(line: &str) -> Option<SshHostKey> {
        parse_ssh_host_key(line).ok()
    }

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINGu/19U9LmMSakf0i3kdYq7lwBm6tImdo3nSx6IH9kN";

    #[test]
    fn the_proof_binds_token_host_and_key() {
        let k = key(KEY).unwrap();
        let token = "11".repeat(32);
        let p = proof(&token, "edge", &k);
        assert!(proof_matches(&token, "edge", &k, &p));
        assert!(!proof_matches(&token, "db", &k, &p), "another host's proof");
        assert!(!proof_matches(&"22".repeat(32), "edge", &k, &p), "another token");
        let other = key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC2dx5tDzGtxT8Vfw8b8Rk5l1r7jGZbUB1Ll0cKlL3sK").unwrap();
        assert!(!proof_matches(&token, "edge", &other, &p), "another key");
        assert!(!proof_matches(&token, "edge", &k, "not hex"));
        assert_eq!(proof_in(&format!("Warning: x\n{PROOF_PREFIX} {p}\nPermission denied (publickey).\n")), Some(p));
        assert_eq!(proof_in("Permission denied\n"), None);
    }

    /// The script the server runs computes the very proof kiln checks (dash and openssl on
    /// this machine, with a fake key file standing in for sshd's).
    #[test]
    fn the_servers_script_computes_the_proof_kiln_checks() {
        let k = key(KEY).unwrap();
        let token = "ab".repeat(32);
        let script = publish_script("edge", &token);
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_str().unwrap();
        let script = script
            .replace(ENROLLED_MARK, &format!("{root}/enrolled"))
            .replace("/var/lib/cloud/instance/sem/config_ssh", &format!("{root}/sem"))
            .replace("/etc/ssh/ssh_host_ed25519_key.pub", &format!("{root}/key.pub"))
            .replace("/run/kiln-enrol", &format!("{root}/run"))
            .replace("/etc/ssh/sshd_config.d", root)
            .replace("systemctl", "true");
        std::fs::write(d.path().join("sem"), "").unwrap();
        std::fs::write(d.path().join("key.pub"), format!("{KEY} root@edge\n")).unwrap();
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let banner = std::fs::read_to_string(d.path().join("run/banner")).unwrap();
        let claimed = proof_in(&banner).unwrap();
        assert!(proof_matches(&token, "edge", &k, &claimed), "{banner}");
        assert_eq!(std::fs::read_to_string(d.path().join("kiln-enrol.conf")).unwrap().trim(), format!("Banner {root}/run/banner"));
    }

    #[test]
    fn the_override_adds_the_part_to_each_server() {
        let root = serde_json::json!({ "resource": {
            "hcloud_server": {
                "edge": { "labels": { "kiln-host": "edge" }, "user_data": "#cloud-config\nhostname: edge\n" },
                "db": { "labels": { "kiln-host": "db" }, "user_data": "#!/bin/sh\necho hi\n" },
            },
            "hcloud_volume": { "db": { "size": 10 } },
        }});
        let tokens: BTreeMap<String, String> = [("edge".to_string(), "aa".repeat(32)), ("db".to_string(), "bb".repeat(32))].into();
        let o: Value = serde_json::from_slice(&override_file(&root, &tokens).unwrap()).unwrap();
        let edge = o["resource"]["hcloud_server"]["edge"]["user_data"].as_str().unwrap();
        assert!(edge.starts_with("Content-Type: multipart/mixed"), "{edge}");
        assert!(edge.contains("Content-Type: text/cloud-config") && edge.contains("hostname: edge") && edge.contains(&"aa".repeat(32)));
        let db = o["resource"]["hcloud_server"]["db"]["user_data"].as_str().unwrap();
        assert!(db.contains("Content-Type: text/x-shellscript") && db.contains(&"bb".repeat(32)) && !db.contains(&"aa".repeat(32)));
        assert_eq!(o["resource"].as_object().unwrap().len(), 1, "only servers");
        assert!(with_part("Content-Type: multipart/mixed", "x").is_err());
    }
}
