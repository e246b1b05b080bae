//! Hosts that boot through stage 0 (their user-data would exceed the provider's limit, so it
//! only fetches the bundle from `[system] store` by sha256): before OpenTofu creates or replaces
//! their servers, the build is pushed to that store (`kiln push`'s code) and each such host's
//! bundle is fetched back from the URL its stage-0 loader will use, unauthenticated as the host
//! fetches it. A store that cannot take the build or does not serve the bundle stops the deploy
//! with nothing applied: a server booted now could not get its bundle.

use std::path::Path;
use std::time::Duration;

use crate::pipeline::Manifest;
use crate::render::cloud_init::STAGE0_LOADER;

/// The hosts among `hosts` whose stored user-data is a stage-0 loader, with their bundle's
/// sha256. Pure but for reading the entry.
pub fn stage0_hosts(entry: &Path, manifest: &Manifest, hosts: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for h in hosts {
        let path = entry.join(format!("hosts/{h}/user-data"));
        let Ok(ud) = std::fs::read_to_string(&path) else { continue };
        if !ud.contains(STAGE0_LOADER) {
            continue;
        }
        let rel = format!("hosts/{h}/bundle.tar.gz");
        let sha = manifest.artifacts.iter().find(|a| a.path == rel).map(|a| a.sha256.clone());
        out.push((h.clone(), sha.ok_or_else(|| format!("the manifest lists no `{rel}`"))?));
    }
    Ok(out)
}

/// Where the stage-0 loader of a host fetches its bundle (the layout `kiln push` writes).
pub fn bundle_url(store_url: &str, sha256: &str) -> String {
    format!("{}/objects/{sha256}", store_url.trim_end_matches('/'))
}

/// Pushes the build in `entry` to `store_url` and checks every stage-0 host's bundle is served
/// there; `Ok(n)`: objects uploaded. Errors name the store and the host.
pub fn publish(store_url: &str, creds: &crate::push::Credentials, entry: &Path, hosts: &[(String, String)]) -> Result<usize, String> {
    let target = crate::push::Target::parse(store_url, None, creds).map_err(|e| format!("`[system] store`: {}", e.0))?;
    let pushed = crate::push::push(&target, entry, 4, crate::push::Feedback::default())
        .map_err(|e| format!("the build could not be pushed to the store {store_url}: {}", e.0))?;
    for (host, sha) in hosts {
        let url = bundle_url(store_url, sha);
        served(&url, sha).map_err(|e| format!("host `{host}` boots through stage 0 from {url}, which {e}"))?;
    }
    Ok(pushed.uploaded)
}

/// Whether `url` serves the bytes with `sha256`, fetched as the host's loader fetches them (no
/// credentials; a `file://` store is read from its directory).
fn served(url: &str, sha256: &str) -> Result<(), String> {
    let bytes = if let Some(p) = url.strip_prefix("file://") {
        std::fs::read(p).map_err(|e| format!("cannot be read: {e}"))?
    } else {
        let client =
            reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| format!("cannot be fetched: {e}"))?;
        let res = client.get(url).send().map_err(|e| format!("does not answer: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("answers {} without credentials (the host fetches it without any)", res.status()));
        }
        res.bytes().map_err(|e| format!("broke off: {e}"))?.to_vec()
    };
    use sha2::{Digest, Sha256};
    let got = crate::render::hex(&Sha256::digest(&bytes));
    if got != sha256 {
        return Err(format!("serves other bytes (sha256 {got})"));
    }
    Ok(())
}
