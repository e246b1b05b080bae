//! S3 on AWS without `--endpoint`: the bucket's URL, and credentials from the places the AWS
//! tools look, in their order: the environment, the shared profile files (`AWS_PROFILE`,
//! `~/.aws/credentials`, `~/.aws/config`), a web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` and
//! `AWS_ROLE_ARN`, through STS), the container's credentials (ECS, EKS Pod Identity) and the
//! instance's role (IMDSv2). The environment is read by `main` and handed in as a map.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Access key, secret and session token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    pub access: String,
    pub secret: String,
    pub token: Option<String>,
}

/// What the credential chain reads: `AWS_*` variables and the home directory.
#[derive(Clone, Debug, Default)]
pub struct AwsEnv {
    pub vars: BTreeMap<String, String>,
    pub home: Option<PathBuf>,
}

impl AwsEnv {
    fn var(&self, k: &str) -> Option<&str> {
        self.vars.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn profile(&self) -> &str {
        self.var("AWS_PROFILE").or_else(|| self.var("AWS_DEFAULT_PROFILE")).unwrap_or("default")
    }

    fn file(&self, var: &str, default: &str) -> Option<PathBuf> {
        self.var(var).map(PathBuf::from).or_else(|| self.home.as_ref().map(|h| h.join(".aws").join(default)))
    }

    /// The profile's section of `~/.aws/credentials` and of `~/.aws/config`, merged.
    fn profile_settings(&self) -> BTreeMap<String, String> {
        let name = self.profile();
        let mut out = BTreeMap::new();
        if let Some(p) = self.file("AWS_CONFIG_FILE", "config") {
            let section = if name == "default" { "default".to_string() } else { format!("profile {name}") };
            out.extend(ini_section(&read(&p), &section));
        }
        if let Some(p) = self.file("AWS_SHARED_CREDENTIALS_FILE", "credentials") {
            out.extend(ini_section(&read(&p), name));
        }
        out
    }

    /// The region: the environment, else the profile, else us-east-1.
    pub fn region(&self) -> String {
        self.var("AWS_REGION")
            .or_else(|| self.var("AWS_DEFAULT_REGION"))
            .map(str::to_string)
            .or_else(|| self.profile_settings().remove("region"))
            .unwrap_or_else(|| "us-east-1".into())
    }

    /// An endpoint the environment or profile names for S3 (`AWS_ENDPOINT_URL_S3`,
    /// `AWS_ENDPOINT_URL`, `endpoint_url`).
    pub fn endpoint(&self) -> Option<String> {
        self.var("AWS_ENDPOINT_URL_S3")
            .or_else(|| self.var("AWS_ENDPOINT_URL"))
            .map(str::to_string)
            .or_else(|| self.profile_settings().remove("endpoint_url"))
    }
}

#[allow(clippy::disallowed_methods)] // reading the credential files is this module's job
fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// `key = value` lines of one `[section]` of an INI file (the AWS shared files' format).
pub fn ini_section(text: &str, section: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    out
}

/// The bucket's base URL on AWS: virtual-hosted style where the bucket name allows it, path
/// style otherwise (names with dots break TLS on the wildcard certificate).
pub fn aws_base_url(bucket: &str, region: &str) -> String {
    let virtual_ok = bucket.len() >= 3
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !bucket.starts_with('-')
        && !bucket.ends_with('-');
    if virtual_ok { format!("https://{bucket}.s3.{region}.amazonaws.com") } else { format!("https://s3.{region}.amazonaws.com/{bucket}") }
}

/// Finds credentials, trying each source in turn; says which sources it tried when none has any.
pub fn credentials(env: &AwsEnv) -> Result<Keys, String> {
    if let (Some(a), Some(s)) = (env.var("AWS_ACCESS_KEY_ID"), env.var("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Keys { access: a.into(), secret: s.into(), token: env.var("AWS_SESSION_TOKEN").map(str::to_string) });
    }
    let profile = env.profile_settings();
    if let (Some(a), Some(s)) = (profile.get("aws_access_key_id"), profile.get("aws_secret_access_key")) {
        return Ok(Keys { access: a.clone(), secret: s.clone(), token: profile.get("aws_session_token").cloned() });
    }
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let token_file = env.var("AWS_WEB_IDENTITY_TOKEN_FILE").map(str::to_string).or_else(|| profile.get("web_identity_token_file").cloned());
    let role = env.var("AWS_ROLE_ARN").map(str::to_string).or_else(|| profile.get("role_arn").cloned());
    if let (Some(file), Some(role)) = (token_file, role) {
        return web_identity(&http, env, &file, &role);
    }
    if env.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some() || env.var("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some() {
        return container(&http, env);
    }
    if env.var("AWS_EC2_METADATA_DISABLED").is_none_or(|v| !v.eq_ignore_ascii_case("true")) {
        let quick = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| e.to_string())?;
        if let Ok(k) = instance_role(&quick, env) {
            return Ok(k);
        }
    }
    Err(format!(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile `{}` with keys in ~/.aws/credentials (AWS_PROFILE), or AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, or run where a container or instance role is available",
        env.profile()
    ))
}

/// STS AssumeRoleWithWebIdentity (an unsigned request: the token is the proof).
fn web_identity(http: &reqwest::blocking::Client, env: &AwsEnv, file: &str, role: &str) -> Result<Keys, String> {
    let token = read(Path::new(file));
    if token.trim().is_empty() {
        return Err(format!("web identity: cannot read a token from {file}"));
    }
    let region = env.region();
    let sts = env.var("AWS_ENDPOINT_URL_STS").map(str::to_string).unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
    let session = env.var("AWS_ROLE_SESSION_NAME").unwrap_or("kiln");
    let resp = http
        .post(sts.trim_end_matches('/').to_string() + "/")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role),
            ("RoleSessionName", session),
            ("WebIdentityToken", token.trim()),
        ]))
        .send()
        .map_err(|e| format!("web identity: {sts}: {e}"))?;
    let status = resp.status();
    let body = resp.text().unwrap_or_default();
    if !status.is_success() {
        return Err(format!("web identity: {sts} answered {status}: {}", xml_value(&body, "Message").unwrap_or_default()));
    }
    let get = |tag: &str| xml_value(&body, tag).ok_or_else(|| format!("web identity: no {tag} in the STS answer"));
    Ok(Keys { access: get("AccessKeyId")?, secret: get("SecretAccessKey")?, token: Some(get("SessionToken")?).filter(|t| !t.is_empty()) })
}

/// An `application/x-www-form-urlencoded` body.
fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// The text of the first `<tag>…</tag>` in an XML document.
fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..end].trim().to_string())
}

/// ECS task roles and EKS Pod Identity: a JSON document from a local endpoint.
fn container(http: &reqwest::blocking::Client, env: &AwsEnv) -> Result<Keys, String> {
    let url = match env.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        Some(rel) => format!("http://169.254.170.2{rel}"),
        None => env.var("AWS_CONTAINER_CREDENTIALS_FULL_URI").unwrap_or_default().to_string(),
    };
    let mut req = http.get(&url);
    let auth = env
        .var("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        .map(str::to_string)
        .or_else(|| env.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(|f| read(Path::new(f)).trim().to_string()));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let text =
        req.send().and_then(|r| r.error_for_status()).and_then(|r| r.text()).map_err(|e| format!("container credentials: {url}: {e}"))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("container credentials: {url}: {e}"))?;
    keys_from_json(&doc).ok_or_else(|| format!("container credentials: {url} gave no keys"))
}

/// The instance's role through IMDSv2 (a session token first, then the role's keys).
fn instance_role(http: &reqwest::blocking::Client, env: &AwsEnv) -> Result<Keys, String> {
    let base = env.var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or("http://169.254.169.254").trim_end_matches('/').to_string();
    let e = |e: reqwest::Error| format!("instance metadata: {e}");
    let token = http
        .put(format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "300")
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.text())
        .map_err(e)?;
    let get = |path: &str| {
        http.get(format!("{base}/latest/meta-data/iam/security-credentials/{path}"))
            .header("X-aws-ec2-metadata-token", &token)
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.text())
            .map_err(e)
    };
    let role = get("")?.lines().next().unwrap_or("").trim().to_string();
    if role.is_empty() {
        return Err("instance metadata: the instance has no role".into());
    }
    let doc: serde_json::Value = serde_json::from_str(&get(&role)?).map_err(|e| format!("instance metadata: {e}"))?;
    keys_from_json(&doc).ok_or_else(|| "instance metadata: no keys for the role".into())
}

fn keys_from_json(doc: &serde_json::Value) -> Option<Keys> {
    Some(Keys {
        access: doc["AccessKeyId"].as_str()?.to_string(),
        secret: doc["SecretAccessKey"].as_str()?.to_string(),
        token: doc["Token"].as_str().filter(|t| !t.is_empty()).map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_urls_are_virtual_hosted_where_the_name_allows() {
        assert_eq!(aws_base_url("kiln-artifacts", "eu-central-1"), "https://kiln-artifacts.s3.eu-central-1.amazonaws.com");
        assert_eq!(aws_base_url("my.bucket", "us-east-1"), "https://s3.us-east-1.amazonaws.com/my.bucket");
    }

    #[test]
    fn profiles_come_from_the_shared_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::write(
            dir.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n[ops]\naws_access_key_id = AK\naws_secret_access_key = SK\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".aws/config"), "[profile ops]\nregion = eu-west-3\n").unwrap();
        let mut env = AwsEnv { vars: BTreeMap::new(), home: Some(dir.path().to_path_buf()) };
        env.vars.insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
        assert_eq!(credentials(&env).unwrap().access, "D");
        env.vars.insert("AWS_PROFILE".into(), "ops".into());
        assert_eq!(credentials(&env).unwrap(), Keys { access: "AK".into(), secret: "SK".into(), token: None });
        assert_eq!(env.region(), "eu-west-3");
        env.vars.insert("AWS_PROFILE".into(), "none".into());
        let e = credentials(&env).unwrap_err();
        assert!(e.contains("profile `none`"), "{e}");
    }
}
