//! cloud-init emitter: `#cloud-config` user-data that creates the admins, writes the host's
//! payload under the kiln root and runs the provisioner. A payload too large for the provider's
//! user-data limit as text is written packed: each file gzip-compressed and in base64
//! (cloud-init's `encoding: gz+b64`), a third to a half of the size.

use base64::Engine as _;
use serde::Serialize;

use crate::model::{Host, System};
use crate::render::{Artifact, KILN_ROOT, yaml};

#[derive(Serialize)]
struct CloudConfig<'a> {
    hostname: &'a str,
    preserve_hostname: bool,
    disable_root: bool,
    ssh_pwauth: bool,
    /// Modern host keys only (RSA 3072 and DSA keys cost seconds at first boot, DSA is unused).
    ssh_genkeytypes: [&'static str; 2],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    users: Vec<User>,
    /// Run on every boot, before `runcmd`: a private host's route out (`render::egress`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bootcmd: Vec<Vec<String>>,
    write_files: Vec<WriteFile>,
    runcmd: Vec<Vec<String>>,
}

#[derive(Serialize)]
struct User {
    name: String,
    groups: String,
    shell: &'static str,
    sudo: &'static str,
    lock_passwd: bool,
    ssh_authorized_keys: Vec<String>,
}

#[derive(Serialize)]
struct WriteFile {
    path: String,
    owner: &'static str,
    permissions: String,
    /// `gz+b64` for a packed file; absent for text.
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    content: Content,
}

/// How the payload's files are written into the user-data.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Files {
    /// As text, readable in the user-data.
    Text,
    /// Gzip-compressed, in base64 (`encoding: gz+b64`): for a payload over the provider's limit.
    Packed,
}

/// File content: a literal block where that reads back exactly, else a quoted scalar.
#[derive(Serialize)]
#[serde(untagged)]
enum Content {
    Block(serde_saphyr::LitString),
    Quoted(String),
}

fn content(s: String) -> Content {
    let block_safe = s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
        && !s.lines().any(|l| l.ends_with([' ', '\t']))
        && !s.contains('\u{feff}');
    if block_safe { Content::Block(serde_saphyr::LitString(s)) } else { Content::Quoted(s) }
}

fn users(sys: &System) -> Vec<User> {
    sys.admins
        .iter()
        .map(|a| User {
            name: a.name.clone(),
            groups: "sudo".into(),
            shell: "/bin/bash",
            sudo: "ALL=(ALL) NOPASSWD:ALL",
            lock_passwd: true,
            ssh_authorized_keys: a.keys.clone(),
        })
        .collect()
}

/// The user-data of a host: the admins, the files, one command.
fn render(sys: &System, host: &Host, write_files: Vec<WriteFile>, run: String) -> String {
    let cfg = CloudConfig {
        hostname: &host.name,
        preserve_hostname: false,
        disable_root: true,
        ssh_pwauth: false,
        ssh_genkeytypes: ["ed25519", "ecdsa"],
        users: users(sys),
        bootcmd: crate::render::egress::client_script(host).map(|s| vec!["sh".to_string(), "-c".to_string(), s]).into_iter().collect(),
        write_files,
        runcmd: vec![vec!["sh".into(), run]],
    };
    format!("#cloud-config\n{}", yaml(&cfg))
}

/// `bytes` gzip-compressed (best compression, the same bytes every build) in base64, as
/// cloud-init's `gz+b64` reads them back.
fn packed(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(super::bundle::gzip(bytes, flate2::Compression::best()))
}

/// The full user-data: the payload written under the kiln root, then the provisioner.
pub fn emit(sys: &System, host: &Host, payload: &[Artifact], files: Files) -> String {
    let write_files = payload
        .iter()
        .map(|a| {
            let (encoding, content) = match files {
                Files::Text => (None, content(String::from_utf8_lossy(&a.bytes).into_owned())),
                Files::Packed => (Some("gz+b64"), Content::Quoted(packed(&a.bytes))),
            };
            WriteFile {
                path: format!("{KILN_ROOT}/{}", a.path),
                owner: "root:root",
                permissions: format!("{:#o}", a.mode).replace("0o", "0"),
                encoding,
                content,
            }
        })
        .collect();
    render(sys, host, write_files, format!("{KILN_ROOT}/provision.sh"))
}

/// The stage-0 user-data: the admins and a loader that fetches the host's bundle by hash.
/// Where the stage-0 user-data writes its loader (deploy recognises a stage-0 host by it).
pub const STAGE0_LOADER: &str = "/var/lib/kiln-stage0.sh";

pub fn emit_stage0(sys: &System, host: &Host, script: &str) -> String {
    let loader = STAGE0_LOADER;
    let file = WriteFile {
        path: loader.into(),
        owner: "root:root",
        permissions: "0700".into(),
        encoding: None,
        content: content(script.to_string()),
    };
    render(sys, host, vec![file], loader.into())
}
