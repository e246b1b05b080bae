//! The enrolment of a cloud server's SSH host key (docs/deploy.md, "Cloud hosts"): the one-time
//! token per host (`<state>/enrol/<host>.token`), the user-data part that has the server publish
//! `HMAC-SHA256(token, "kiln-enrol-v1 HOST ssh-ed25519 KEY")` as its pre-authentication banner,
//! the OpenTofu override file that adds the part to each server, and the proof's check. The
//! connection that reads the banner and pins the key is `super::cloud`'s.

use std::collections::BTreeMap;
use std::path::Path;

use hmac::{KeyInit, Mac};
use serde_json::Value;

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
