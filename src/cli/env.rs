//! The edge where the command line reads its environment (KILN_STORE, SOURCE_DATE_EPOCH,
//! credentials, the image cache, the state directories) and passes values down.

use std::path::PathBuf;

/// Where `kiln boot --keep` records a fleet's machines: `$XDG_RUNTIME_DIR/kiln-boot` (private
/// to the user, gone at logout, like the machines' sockets), else `~/.cache/kiln/boot`.
#[allow(clippy::disallowed_methods)] // the edge: where kept machines are recorded
pub(crate) fn boot_state_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("kiln-boot"),
        None => image_cache().parent().map(|p| p.join("boot")).unwrap_or_else(|| PathBuf::from(".kiln-boot")),
    }
}

#[allow(clippy::disallowed_methods)] // the edge: where base images are cached
pub(crate) fn image_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("kiln/images")
}

/// Store credentials from the environment (the standard AWS variables for S3).
#[allow(clippy::disallowed_methods)] // the edge: credentials are read here and passed down
pub(crate) fn credentials() -> kiln::push::Credentials {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    kiln::push::Credentials {
        bearer: var("KILN_STORE_TOKEN"),
        basic: var("KILN_STORE_USER").map(|u| (u, var("KILN_STORE_PASSWORD").unwrap_or_default())),
        aws: kiln::push::aws::AwsEnv {
            vars: std::env::vars().filter(|(k, _)| k.starts_with("AWS_")).collect(),
            home: std::env::var_os("HOME").map(PathBuf::from),
        },
    }
}

/// `SOURCE_DATE_EPOCH` (the reproducible-builds convention) sets the mtime inside bundles.
#[allow(clippy::disallowed_methods)] // the edge: read here and passed down as an input
pub(crate) fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

#[allow(clippy::disallowed_methods)] // the edge: KILN_STORE is read here and only here
pub(crate) fn store_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("KILN_STORE").filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".kiln/store"))
}

/// Every system's state directory under the default `.kiln/state`.
pub(crate) fn every_state_dir() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(".kiln/state")
        .map(|r| r.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// `PATH`, where `tofu` or `terraform` is looked for.
#[allow(clippy::disallowed_methods)] // the edge: PATH is read here and passed down
pub(crate) fn search_path() -> Option<std::ffi::OsString> {
    std::env::var_os("PATH")
}

/// Values OpenTofu's messages must never show: the AWS credentials and every `TF_VAR_*`
/// (provider tokens), whatever the backend or provider echoes.
#[allow(clippy::disallowed_methods)] // the edge: read here, only to be redacted
pub(crate) fn secret_values() -> Vec<String> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("TF_VAR_") || matches!(k.as_str(), "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" | "AWS_SESSION_TOKEN")
        })
        .map(|(_, v)| v)
        .collect()
}

/// The VM accelerator's settings: `KILN_ACCEL=kvm|tcg` forces one; verdicts of the probe are
/// cached beside the images (`~/.cache/kiln`).
#[allow(clippy::disallowed_methods)] // the edge: KILN_ACCEL is read here
pub(crate) fn accel_config() -> Result<kiln::boot::accel::Config, String> {
    let force = match std::env::var("KILN_ACCEL").ok().filter(|v| !v.is_empty()) {
        Some(v) => Some(kiln::boot::accel::parse_force(&v)?),
        None => None,
    };
    Ok(kiln::boot::accel::Config { force, cache: image_cache().parent().map(std::path::Path::to_path_buf) })
}
