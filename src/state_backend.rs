//! Where a system's OpenTofu state lives (`[deploy] state`): the local state directory, or
//! an S3 object with S3-native locking. Pure: parsing the declaration and the backend
//! configuration kiln writes into the working directory (`src/tofu_workdir.rs` writes it).
//! Credentials never appear here: the backend reads them from the environment.

use serde::Serialize;
use serde_json::{Value, json};

use crate::types::TypeError;

/// The state file of the local backend, relative to the working directory `<state>/tofu/`:
/// it sits in the state directory itself, outside the working directory kiln replaces.
pub const LOCAL_STATE: &str = "../terraform.tfstate";

/// `[deploy] state = "s3://BUCKET/KEY"` with its region and endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct S3State {
    pub bucket: String,
    pub key: String,
    /// `[deploy] state_region`; without it the backend reads `AWS_REGION`.
    pub region: Option<String>,
    /// `[deploy] state_endpoint`: an S3-compatible service (MinIO, R2, Garage, …), addressed
    /// path-style; without it, AWS itself.
    pub endpoint: Option<String>,
}

/// Where the OpenTofu state of a system is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `<state>/terraform.tfstate`, next to the working directory.
    Local,
    S3(S3State),
}

impl Backend {
    /// The backend of a system: S3 when `[deploy] state` names one, else local.
    pub fn of(state: Option<&S3State>) -> Backend {
        state.map_or(Backend::Local, |s| Backend::S3(s.clone()))
    }

    /// Where the state is, for messages: the local file in `state_dir`, or the S3 URL with its
    /// endpoint; never a credential.
    pub fn describe(&self, state_dir: &std::path::Path) -> String {
        match self {
            Backend::Local => format!("the local state file {}", state_dir.join(LOCAL_STATE.trim_start_matches("../")).display()),
            Backend::S3(s) => match &s.endpoint {
                Some(e) => format!("s3://{}/{} at {e}", s.bucket, s.key),
                None => format!("s3://{}/{}", s.bucket, s.key),
            },
        }
    }
}

/// `s3://BUCKET/KEY`: a bucket name as S3 allows it and the object key of the state file.
pub fn parse_url(s: &str) -> Result<(String, String), TypeError> {
    let hint = "write the bucket and the state file's key, like `s3://acme-tofu-state/kiln/prod.tfstate`; the region and an S3-compatible endpoint go in `state_region` and `state_endpoint`";
    let bad = |what: String| Err(TypeError { message: what, help: Some(hint.into()) });
    let Some(rest) = s.strip_prefix("s3://") else {
        return bad(format!("`{}` is not an `s3://` URL", s.escape_debug()));
    };
    let Some((bucket, key)) = rest.split_once('/') else {
        return bad(format!("`{}` names a bucket but no state file in it", s.escape_debug()));
    };
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bucket.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        && !bucket.contains("..");
    if !bucket_ok {
        return bad(format!(
            "`{}` is not an S3 bucket name (3 to 63 of `a-z`, `0-9`, `.`, `-`, starting and ending with a letter or digit)",
            bucket.escape_debug()
        ));
    }
    if key.is_empty() || key.ends_with('/') {
        return bad(format!("`{}` names a folder, not the state file", s.escape_debug()));
    }
    if key.contains(['?', '#']) {
        return bad(format!("`{}` has a query or fragment; the key is everything after the bucket", s.escape_debug()));
    }
    if key.starts_with('/') || key.split('/').any(|p| p.is_empty() || p == "." || p == "..") || key.chars().any(char::is_control) {
        return bad(format!("`{}` is not an object key (empty, `.` or `..` segments, or control characters)", key.escape_debug()));
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// `state_endpoint`: an `http(s)://` URL without spaces, quotes or credentials.
pub fn parse_endpoint(s: &str) -> Result<String, TypeError> {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    let host = rest.map(|r| r.split('/').next().unwrap_or_default());
    if host.is_some_and(|h| h.contains('@')) {
        // not echoed: the part before `@` is a credential
        return Err(TypeError {
            message: "the endpoint holds credentials (`USER:PASSWORD@`), which would be written to disk".into(),
            help: Some("write only the URL, like `https://minio.example.com:9000`; the backend reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment".into()),
        });
    }
    let ok = host.is_some_and(|h| !h.is_empty() && !h.contains('@'))
        && !s.contains(char::is_whitespace)
        && !s.contains(['\'', '"', '$', '`', '\\']);
    if ok {
        Ok(s.trim_end_matches('/').to_string())
    } else {
        Err(TypeError {
            message: format!("`{}` is not an http(s) endpoint", s.escape_debug()),
            help: Some(
                "write it like `https://s3.eu-central-003.backblazeb2.com` (credentials come from the environment, never the URL)".into(),
            ),
        })
    }
}

/// The file kiln writes into the working directory: `terraform { backend … }` as JSON
/// configuration syntax, merged by OpenTofu with the root's own `terraform` block.
pub fn backend_config(backend: &Backend) -> Value {
    let b = match backend {
        Backend::Local => json!({ "local": { "path": LOCAL_STATE } }),
        Backend::S3(s) => {
            let mut c = serde_json::Map::new();
            c.insert("bucket".into(), json!(s.bucket));
            c.insert("key".into(), json!(s.key));
            // S3-native locking: a `.tflock` object next to the state (OpenTofu and
            // Terraform >= 1.10); no DynamoDB table to provision.
            c.insert("use_lockfile".into(), json!(true));
            if let Some(r) = &s.region {
                c.insert("region".into(), json!(r));
            }
            match &s.endpoint {
                None => {
                    c.insert("encrypt".into(), json!(true));
                }
                Some(e) => {
                    // An S3-compatible service: path-style requests, no AWS account or STS
                    // lookups, and a region it does not validate.
                    c.insert("endpoints".into(), json!({ "s3": e }));
                    c.insert("use_path_style".into(), json!(true));
                    c.insert("skip_credentials_validation".into(), json!(true));
                    c.insert("skip_requesting_account_id".into(), json!(true));
                    c.insert("skip_region_validation".into(), json!(true));
                }
            }
            json!({ "s3": Value::Object(c) })
        }
    };
    json!({ "terraform": { "backend": b } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_state_file() {
        assert_eq!(parse_url("s3://acme-state/kiln/prod.tfstate").unwrap(), ("acme-state".into(), "kiln/prod.tfstate".into()));
        for bad in [
            "acme/prod.tfstate",
            "s3://acme-state",
            "s3://acme-state/",
            "s3://Acme/x",
            "s3://ab/x",
            "s3://acme-state/a//b",
            "s3://acme-state/x?region=eu",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(e.help.is_some(), "{bad}: {}", e.message);
        }
        assert!(parse_endpoint("http://user:pw@127.0.0.1:9000").is_err(), "no credentials in the URL");
        assert_eq!(parse_endpoint("http://127.0.0.1:9000/").unwrap(), "http://127.0.0.1:9000");
    }

    #[test]
    fn the_backend_configuration_is_local_or_s3_with_locking() {
        assert_eq!(backend_config(&Backend::Local)["terraform"]["backend"]["local"]["path"], LOCAL_STATE);
        let s3 = S3State { bucket: "b-1".into(), key: "k/s.tfstate".into(), region: None, endpoint: Some("http://127.0.0.1:1".into()) };
        let v = backend_config(&Backend::S3(s3));
        let c = &v["terraform"]["backend"]["s3"];
        assert_eq!(c["use_lockfile"], true);
        assert_eq!(c["endpoints"]["s3"], "http://127.0.0.1:1");
        assert!(c.get("region").is_none() && c.get("access_key").is_none() && c.get("secret_key").is_none());
    }
}
