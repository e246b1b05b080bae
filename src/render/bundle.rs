//! Host bundles: a deterministic `tar.gz` of a host's payload under one root (`kiln/`) —
//! entries sorted, uid/gid 0, normalised modes, one fixed mtime, gzip without name or time,
//! the gzip backend pinned — and the small stage-0 user-data that fetches one by hash.

use std::io::Write;

use flate2::{Compression, GzBuilder};

use crate::render::{Artifact, KILN_ROOT};

/// The directory every bundle entry lives under; unpacked into the parent of [`KILN_ROOT`].
pub const ROOT: &str = "kiln";

/// The bundle of `payload` (sorted by path), with every entry's mtime set to `mtime`.
pub fn bundle(payload: &[Artifact], mtime: u64) -> Vec<u8> {
    let mut entries: Vec<&Artifact> = payload.iter().collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let mut dirs: Vec<String> = vec![ROOT.to_string()];
    for a in &entries {
        let mut parts: Vec<&str> = a.path.split('/').collect();
        parts.pop();
        for i in 1..=parts.len() {
            let d = format!("{ROOT}/{}", parts[..i].join("/"));
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    dirs.sort();
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        h.set_size(size);
        h
    };
    // Directories first, then files, each group in path order: a stable, sorted stream.
    for d in &dirs {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, format!("{d}/"), std::io::empty()).expect("writing to memory");
    }
    for a in entries {
        let mode = if a.mode & 0o111 != 0 { 0o755 } else { 0o644 };
        let mut h = header(tar::EntryType::Regular, mode, a.bytes.len() as u64);
        tar.append_data(&mut h, format!("{ROOT}/{}", a.path), &a.bytes[..]).expect("writing to memory");
    }
    gzip(&tar.into_inner().expect("writing to memory"), Compression::fast())
}

/// `bytes` gzip-compressed with no name and no time in the header: the same bytes every build.
pub fn gzip(bytes: &[u8], level: Compression) -> Vec<u8> {
    let mut gz = GzBuilder::new().mtime(0).operating_system(255).write(Vec::new(), level);
    gz.write_all(bytes).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

/// The stage-0 provisioner: fetch the bundle by hash, verify it, unpack it, run it. POSIX sh.
pub fn stage0_script(url: &str, sha256: &str) -> String {
    use crate::render::quote::sh;
    let parent = KILN_ROOT.rsplit_once('/').map(|(p, _)| p).unwrap_or("/");
    format!(
        r#"#!/bin/sh
# kiln stage 0: fetch this host's bundle by hash, verify it, unpack it and run its provisioner.
set -eu
url={url}
sum={sum}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
n=0
until curl -fsSL --retry 5 --retry-delay 3 -o "$tmp" "$url"; do
	n=$((n + 1))
	[ "$n" -lt 10 ] || {{ echo "kiln: cannot fetch $url" >&2; exit 1; }}
	sleep 10
done
printf '%s  %s\n' "$sum" "$tmp" | sha256sum --check --quiet --strict || {{ echo "kiln: bundle hash mismatch" >&2; exit 1; }}
rm -rf {root}
tar -xzf "$tmp" -C {parent} --no-same-owner
exec sh {root}/provision.sh
"#,
        url = sh(url),
        sum = sh(sha256),
        root = sh(KILN_ROOT),
        parent = sh(parent),
    )
}
