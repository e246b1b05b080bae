//! `kiln push` and `kiln pull`: a build's closure to and from an artifact store, by content
//! hash. The only code that talks to the network. Remote layout: `objects/<sha256>` for every
//! artifact, `manifests/<system hash>.json` written last, so a manifest never names a missing
//! object.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::pipeline::Manifest;
use crate::render::hex;

#[path = "push_aws.rs"]
pub mod aws;

/// Credentials and settings from the environment, read by `main` and passed in.
#[derive(Default, Clone)]
pub struct Credentials {
    pub bearer: Option<String>,
    pub basic: Option<(String, String)>,
    /// `AWS_*` variables and the home directory, for S3's credential chain.
    pub aws: aws::AwsEnv,
}

/// Where objects go.
pub enum Target {
    Dir(PathBuf),
    Http {
        base: String,
        creds: Credentials,
    },
    /// `base` is the bucket's URL: `ENDPOINT/BUCKET` (path style) or AWS's own.
    S3 {
        base: String,
        prefix: String,
        region: String,
        keys: aws::Keys,
    },
}

#[derive(Debug)]
pub struct PushError(pub String);

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(s: impl Into<String>) -> PushError {
    PushError(s.into())
}

impl Target {
    pub fn parse(url: &str, endpoint: Option<&str>, creds: &Credentials) -> Result<Target, PushError> {
        if let Some(p) = url.strip_prefix("file://") {
            return Ok(Target::Dir(PathBuf::from(p)));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(Target::Http { base: url.trim_end_matches('/').to_string(), creds: creds.clone() });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(err(format!("`{url}` names no bucket: write `s3://BUCKET/PREFIX`")));
            }
            let region = creds.aws.region();
            let base = match endpoint.map(str::to_string).or_else(|| creds.aws.endpoint()) {
                Some(e) => format!("{}/{bucket}", e.trim_end_matches('/')),
                None => aws::aws_base_url(bucket, &region),
            };
            let keys = aws::credentials(&creds.aws).map_err(err)?;
            return Ok(Target::S3 { base, prefix: prefix.trim_matches('/').to_string(), region, keys });
        }
        Err(err(format!("`{url}` is not a store URL: use file://DIR, http(s)://… or s3://BUCKET/PREFIX")))
    }
}

/// One request's outcome: retry on transient failures, stop on the rest.
enum Failure {
    Transient(String),
    Fatal(String),
}

/// What a push or pull tells the operator on stderr while it runs.
#[derive(Clone, Copy, Default)]
pub struct Feedback {
    /// A progress bar (only on a terminal).
    pub bar: bool,
    /// A line for every retry and what caused it.
    pub retries: bool,
    /// A line for every request and its answer (`-vv`).
    pub trace: bool,
}

struct Remote<'a> {
    target: &'a Target,
    http: reqwest::blocking::Client,
    bar: indicatif::ProgressBar,
    feedback: Feedback,
}

impl Remote<'_> {
    /// Says why a request is tried again, above the progress bar when there is one.
    fn retrying(&self, what: &str, attempt: usize, why: &str) {
        if !self.feedback.retries {
            return;
        }
        self.say(format!("retrying {what} (attempt {attempt} of {ATTEMPTS}): {why}"));
    }

    /// One line on stderr, above the progress bar when there is one.
    fn say(&self, line: String) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    fn url(&self, key: &str) -> String {
        match self.target {
            Target::Dir(d) => d.join(key).display().to_string(),
            Target::Http { base, .. } => format!("{base}/{key}"),
            Target::S3 { base, prefix, .. } => {
                if prefix.is_empty() {
                    format!("{base}/{key}")
                } else {
                    format!("{base}/{prefix}/{key}")
                }
            }
        }
    }

    fn request(&self, method: reqwest::Method, key: &str, body: Option<&[u8]>) -> Result<reqwest::blocking::Response, Failure> {
        let url = self.url(key);
        let mut req = self.http.request(method.clone(), &url);
        match self.target {
            Target::Dir(_) => unreachable!("directories are not requested over HTTP"),
            Target::Http { creds, .. } => {
                if let Some(t) = &creds.bearer {
                    req = req.bearer_auth(t);
                } else if let Some((u, p)) = &creds.basic {
                    req = req.basic_auth(u, Some(p));
                }
            }
            Target::S3 { region, keys, .. } => {
                for (name, value) in sign_s3(method.as_str(), &url, body.unwrap_or(&[]), region, keys)? {
                    req = req.header(name, value);
                }
            }
        }
        if let Some(b) = body {
            req = req.body(b.to_vec());
        }
        let resp = req.send().map_err(|e| send_failure(&method, &url, &e))?;
        let status = resp.status();
        if self.feedback.trace {
            self.say(format!("{method} {url} -> {status}"));
        }
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(Failure::Transient(format!("{method} {url}: {status}")));
        }
        if status.as_u16() == 301
            && let Some(r) = resp.headers().get("x-amz-bucket-region").and_then(|v| v.to_str().ok())
        {
            return Err(Failure::Fatal(format!("{method} {url}: {status}: the bucket is in region {r}: set AWS_REGION={r}")));
        }
        if let Some(why) = refusal(status.as_u16()) {
            return Err(Failure::Fatal(format!("{method} {url}: {status}: {why}")));
        }
        Ok(resp)
    }

    /// The size of the object, if the store has it.
    fn head(&self, key: &str) -> Result<Option<u64>, Failure> {
        if let Target::Dir(d) = self.target {
            return Ok(std::fs::metadata(d.join(key)).ok().map(|m| m.len()));
        }
        let resp = self.request(reqwest::Method::HEAD, key, None)?;
        match resp.status().as_u16() {
            200 => Ok(resp.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok())),
            404 => Ok(None),
            s => Err(Failure::Fatal(format!("HEAD {}: {s}", self.url(key)))),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Failure> {
        if let Target::Dir(d) = self.target {
            return Ok(std::fs::read(d.join(key)).ok());
        }
        let resp = self.request(reqwest::Method::GET, key, None)?;
        match resp.status().as_u16() {
            200 => resp.bytes().map(|b| Some(b.to_vec())).map_err(|e| Failure::Transient(format!("GET {}: {e}", self.url(key)))),
            404 => Ok(None),
            s => Err(Failure::Fatal(format!("GET {}: {s}", self.url(key)))),
        }
    }

    /// One PUT (a directory store writes a temporary file and renames it into place).
    fn put_once(&self, key: &str, bytes: &[u8]) -> Result<(), Failure> {
        if let Target::Dir(d) = self.target {
            let path = d.join(key);
            let dir = path.parent().unwrap();
            std::fs::create_dir_all(dir).map_err(|e| Failure::Fatal(format!("{}: {e}", dir.display())))?;
            let tmp = dir.join(format!(".{}.tmp-{}", path.file_name().unwrap().to_string_lossy(), std::process::id()));
            return std::fs::write(&tmp, bytes)
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|e| Failure::Fatal(format!("{}: {e}", path.display())));
        }
        let resp = self.request(reqwest::Method::PUT, key, Some(bytes))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().unwrap_or_default();
        let msg = format!("PUT {}: {status} {}", self.url(key), text.chars().take(200).collect::<String>());
        // a body cut short makes some servers answer 400: try again
        Err(if status.as_u16() == 400 { Failure::Transient(msg) } else { Failure::Fatal(msg) })
    }

    /// Whether the store holds exactly these bytes. S3 has already checked the signed payload
    /// hash, so its size suffices; other stores are read back and hashed.
    fn holds(&self, key: &str, bytes: &[u8], sha: &str) -> Result<bool, Failure> {
        match self.target {
            Target::S3 { .. } => Ok(self.head(key)? == Some(bytes.len() as u64)),
            _ => Ok(self.get(key)?.is_some_and(|back| hex(&Sha256::digest(&back)) == sha)),
        }
    }
}

/// Uploads one object and verifies it, each step retried on its own; a verification that
/// finds other bytes uploads again.
fn upload(remote: &Remote<'_>, key: &str, bytes: &[u8], sha: &str) -> Result<(), PushError> {
    for _ in 0..3 {
        with_retries(remote, key, || remote.put_once(key, bytes))?;
        if with_retries(remote, key, || remote.holds(key, bytes, sha))? {
            return Ok(());
        }
    }
    Err(err(format!("{key}: the store keeps answering with other bytes than were uploaded")))
}

/// A request that could not be sent: a name that does not resolve or a port nobody listens
/// on will not answer the next time either, so those stop the push at once; the rest (resets,
/// timeouts, cut connections) are retried.
fn send_failure(method: &reqwest::Method, url: &str, e: &reqwest::Error) -> Failure {
    let text = chain(e);
    let msg = format!("{method} {url}: {text}");
    if is_unfixable(e, &text) { Failure::Fatal(msg) } else { Failure::Transient(msg) }
}

fn is_unfixable(e: &reqwest::Error, text: &str) -> bool {
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cur = c.source();
    }
    e.is_connect() && !e.is_timeout() && (text.contains("dns error") || text.contains("lookup address") || text.contains("certificate"))
}

/// What an answer that no retry changes means for the operator.
fn refusal(status: u16) -> Option<&'static str> {
    match status {
        401 => Some("the store wants credentials (KILN_STORE_USER/KILN_STORE_PASSWORD or KILN_STORE_TOKEN; for S3 the AWS credentials)"),
        403 => Some("the store refused these credentials (wrong secret, or no permission on this bucket or path)"),
        _ => None,
    }
}

/// An error with its causes, which is where reqwest says what actually happened.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn verify(bytes: &[u8], sha: &str, key: &str) -> Result<(), Failure> {
    let got = hex(&Sha256::digest(bytes));
    if got == sha { Ok(()) } else { Err(Failure::Fatal(format!("{key}: the store's copy hashes to {got}, not {sha}: it was altered"))) }
}

/// SigV4 headers for one path-style S3 request, with the payload's sha256 signed.
#[allow(clippy::disallowed_methods)] // signing needs the current time: this is the network edge
fn sign_s3(method: &str, url: &str, body: &[u8], region: &str, keys: &aws::Keys) -> Result<Vec<(String, String)>, Failure> {
    use aws_sigv4::http_request::{PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign};
    let identity = aws_credential_types::Credentials::new(&keys.access, &keys.secret, keys.token.clone(), None, "kiln").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| Failure::Fatal(format!("signing: {e}")))?
        .into();
    let req = SignableRequest::new(method, url, std::iter::empty(), SignableBody::Bytes(body))
        .map_err(|e| Failure::Fatal(format!("signing: {e}")))?;
    let (instructions, _) = sign(req, &params).map_err(|e| Failure::Fatal(format!("signing: {e}")))?.into_parts();
    Ok(instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

const ATTEMPTS: usize = 10;

/// Retries transient failures with exponential backoff (10 attempts, at most 10 s apart);
/// a fatal one ends at once.
fn with_retries<T>(remote: &Remote<'_>, what: &str, mut f: impl FnMut() -> Result<T, Failure>) -> Result<T, PushError> {
    let mut delay = Duration::from_millis(200);
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match f() {
            Ok(v) => return Ok(v),
            Err(Failure::Fatal(e)) => return Err(err(e)),
            Err(Failure::Transient(e)) => {
                if attempt < ATTEMPTS {
                    remote.retrying(what, attempt + 1, &e);
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                last = e;
            }
        }
    }
    Err(err(format!("{what}: gave up after {ATTEMPTS} attempts: {last}")))
}

fn remote(target: &Target, feedback: Feedback, objects: usize) -> Remote<'_> {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        // A fresh connection per request: a pooled one a proxy or server has closed would turn
        // into a failed request, and retries would keep meeting it.
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");
    let bar = if feedback.bar { indicatif::ProgressBar::new(objects as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} objects {msg}").expect("a valid template"));
    Remote { target, http, bar, feedback }
}

pub struct Object {
    pub path: String,
    pub sha256: String,
}

/// What `kiln push --json` prints.
#[derive(Debug, Default, serde::Serialize, PartialEq, Eq)]
pub struct PushSummary {
    /// The system hash: `kiln pull URL HASH` fetches this closure.
    pub hash: String,
    /// Where the manifest now is.
    pub manifest: String,
    pub uploaded: usize,
    pub skipped: usize,
    pub bytes: u64,
}

/// The objects of a result directory, from its manifest; every file is checked against its
/// recorded hash before anything is sent.
pub fn closure(result: &Path) -> Result<(String, serde_json::Value, Vec<Object>), PushError> {
    let text = std::fs::read_to_string(result.join("manifest.json"))
        .map_err(|e| err(format!("{}: {e}", result.join("manifest.json").display())))?;
    let m: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(format!("manifest.json: {e}")))?;
    let mut objects: BTreeMap<String, Object> = BTreeMap::new();
    for a in m["artifacts"].as_array().ok_or_else(|| err("manifest.json has no artifacts"))? {
        let (Some(path), Some(sha)) = (a["path"].as_str(), a["sha256"].as_str()) else {
            return Err(err("manifest.json: an artifact without path or sha256"));
        };
        objects.entry(sha.to_string()).or_insert(Object { path: path.to_string(), sha256: sha.to_string() });
    }
    Ok((text, m, objects.into_values().collect()))
}

/// Runs `f` on every item with `jobs` threads and collects the results in item order; stops
/// handing out work at the first error, which it returns.
fn parallel<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> Result<R, PushError> + Sync) -> Result<Vec<R>, PushError> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let failure: Mutex<Option<PushError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, 64) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= items.len() || failure.lock().unwrap().is_some() {
                        break;
                    }
                    match f(&items[i]) {
                        Ok(r) => results.lock().unwrap()[i] = Some(r),
                        Err(e) => {
                            failure.lock().unwrap().get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap() {
        return Err(e);
    }
    Ok(results.into_inner().unwrap().into_iter().map(|r| r.expect("every item ran")).collect())
}

/// Uploads every object the store lacks, in parallel, then the manifest.
pub fn push(target: &Target, result: &Path, jobs: usize, feedback: Feedback) -> Result<PushSummary, PushError> {
    let (manifest_text, m, objects) = closure(result)?;
    let hash = m["hash"].as_str().ok_or_else(|| err("manifest.json has no hash"))?.to_string();
    let remote = &remote(target, feedback, objects.len() + 1);
    let sizes = parallel(&objects, jobs, |o| {
        let bytes = std::fs::read(result.join(&o.path)).map_err(|e| err(format!("{}: {e}", o.path)))?;
        if hex(&Sha256::digest(&bytes)) != o.sha256 {
            return Err(err(format!("{} does not match its hash in manifest.json", o.path)));
        }
        let key = format!("objects/{}", o.sha256);
        let uploaded = if with_retries(remote, &key, || remote.head(&key))? == Some(bytes.len() as u64) {
            None
        } else {
            upload(remote, &key, &bytes, &o.sha256)?;
            Some(bytes.len() as u64)
        };
        remote.bar.inc(1);
        Ok(uploaded)
    });
    let mut summary = PushSummary { hash: hash.clone(), ..PushSummary::default() };
    let sizes = sizes.inspect_err(|_| remote.bar.abandon())?;
    for s in sizes {
        match s {
            None => summary.skipped += 1,
            Some(n) => {
                summary.uploaded += 1;
                summary.bytes += n;
            }
        }
    }
    // The manifest goes last: whoever can read it finds every object it names.
    let key = format!("manifests/{hash}.json");
    summary.manifest = remote.url(&key);
    let bytes = manifest_text.into_bytes();
    let sha = hex(&Sha256::digest(&bytes));
    if with_retries(remote, &key, || remote.head(&key))? != Some(bytes.len() as u64) {
        upload(remote, &key, &bytes, &sha)?;
        summary.uploaded += 1;
        summary.bytes += bytes.len() as u64;
    } else {
        summary.skipped += 1;
    }
    remote.bar.finish_and_clear();
    Ok(summary)
}

/// Fetches a system's manifest and every object it names. The manifest is trusted only once
/// its content hashes to `hash` (see `pipeline::verify_manifest`); every object is then
/// verified against the sha256 that manifest records for it.
pub fn pull(target: &Target, hash: &str, jobs: usize, feedback: Feedback) -> Result<(Manifest, BTreeMap<String, Vec<u8>>), PushError> {
    if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(err(format!("`{hash}` is not a system hash (64 lowercase hex digits, from manifest.json or `kiln build --json`)")));
    }
    let remote = &remote(target, Feedback { bar: false, ..feedback }, 0);
    let key = format!("manifests/{hash}.json");
    let text = with_retries(remote, &key, || remote.get(&key))?.ok_or_else(|| err(format!("the store has no manifest {hash}")))?;
    let text = String::from_utf8(text).map_err(|_| err(format!("{key}: the manifest is not UTF-8")))?;
    let m = crate::pipeline::verify_manifest(&text, hash).map_err(|e| err(format!("{key}: {e}")))?;
    let wanted: Vec<(String, String)> = m.artifacts.iter().map(|a| (a.path.clone(), a.sha256.clone())).collect();
    if feedback.bar {
        remote.bar.set_length(wanted.len() as u64);
        remote.bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    let fetched = parallel(&wanted, jobs, |(path, sha)| {
        let key = format!("objects/{sha}");
        let b = with_retries(remote, &key, || match remote.get(&key)? {
            Some(b) => verify(&b, sha, &key).map(|_| b),
            None => Err(Failure::Fatal(format!("the store lacks {key} ({path})"))),
        })?;
        remote.bar.inc(1);
        Ok(b)
    })
    .inspect_err(|_| remote.bar.abandon())?;
    remote.bar.finish_and_clear();
    let files: BTreeMap<String, Vec<u8>> = wanted.into_iter().map(|(p, _)| p).zip(fetched).collect();
    Ok((m, files))
}
