//! The module language's typed strings: values a module writes that reach an artifact
//! (file names, request paths, header names, option strings, mounts, devices, users), checked
//! where the module is loaded.

use crate::render::quote;
use crate::syntax::decode::{Sink, Sp, typed};
use crate::types;

/// An absolute path in a container, without a `..` component or a newline (`target`, `rules`).
pub(super) fn absolute(v: Option<Sp<String>>, sink: &Sink) -> Option<Sp<String>> {
    typed(v, sink, |s| {
        if s.starts_with('/') && !s.split('/').any(|c| c == "..") && !s.contains('\n') {
            Ok(s.to_string())
        } else {
            Err(types::TypeError {
                message: format!("`{s}` is not an absolute path"),
                help: Some("write it like `/etc/app/config.yaml`".into()),
            })
        }
    })
}

/// A type error with its hint.
pub(super) fn bad(message: String, help: &str) -> types::TypeError {
    types::TypeError { message, help: Some(help.into()) }
}

/// The name of a module file (`[files.NAME]`), installed as `files/<service>/NAME` and listed
/// in `SHA256SUMS`: a relative, normalised path (no empty, `.` or `..` component) without
/// control characters or backslashes, each component at most 255 bytes.
pub fn parse_file_name(s: &str) -> Result<String, types::TypeError> {
    let help = "name it like `config.yaml` or `conf.d/app.conf`";
    if s.starts_with('/') {
        return Err(bad(format!("file name `{}` is absolute", s.escape_debug()), help));
    }
    if let Some(why) = quote::line_unsafe(s) {
        return Err(bad(format!("file name `{}` is not allowed: {why}", s.escape_debug()), help));
    }
    if s.contains('\\') {
        return Err(bad(format!("file name `{}` contains a backslash", s.escape_debug()), help));
    }
    for c in s.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(bad(format!("file name `{}` is not a normalised relative path (a component is `{c}`)", s.escape_debug()), help));
        }
        if c.len() > 255 {
            return Err(bad(
                format!(
                    "a component of file name `{}…` is {} bytes long; the limit is 255",
                    s.chars().take(40).collect::<String>(),
                    c.len()
                ),
                help,
            ));
        }
    }
    Ok(s.to_string())
}

/// A request path an edge matches or asks (`forward_auth` `uri`, `traefik_uri`, `paths`): `/`
/// then RFC 3986 path characters, with `*` for a prefix. It is written into Caddyfile tokens and
/// Traefik rules, so nothing that could end a token, a rule or a line is allowed.
pub fn parse_url_path(s: &str) -> Result<String, types::TypeError> {
    let ok = s.starts_with('/') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&()*+,;=:@/%?".contains(&b));
    if ok && quote::caddy_unsafe(s).is_none() {
        Ok(s.to_string())
    } else {
        Err(bad(
            format!("`{}` is not a request path", s.escape_debug()),
            "write it like `/oauth2/*`: `/`, then letters, digits and `-._~!$&()*+,;=:@/%?`",
        ))
    }
}

/// An HTTP header name (`forward_auth` `copy_headers`): letters, digits and `-`.
pub fn parse_header_name(s: &str) -> Result<String, types::TypeError> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(s.to_string())
    } else {
        Err(bad(
            format!("`{}` is not an HTTP header name", s.escape_debug()),
            "write it like `X-Auth-Request-User`: letters, digits and `-`",
        ))
    }
}

/// The value of a `string` option (or an item of a `list` option): one line, since module
/// templates write options into line-based languages (INI-like configs, systemd units, sh).
pub fn parse_option_string(s: &str) -> Result<String, types::TypeError> {
    match quote::line_unsafe(s) {
        Some(why) => Err(bad(
            format!("option value `{}` is not allowed: {why}", s.escape_debug()),
            "write the value on one line, without control characters",
        )),
        None => Ok(s.to_string()),
    }
}

/// An environment variable's name (`[container.env_secrets]`): `[A-Za-z_][A-Za-z0-9_]*`, the
/// portable form, which every shell and Compose's env-file parser read as one name.
pub fn parse_env_name(s: &str) -> Result<String, types::TypeError> {
    let ok =
        s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(bad(format!("`{}` is not an environment variable name", s.escape_debug()), "write it like `API_KEY`: letters, digits and `_`"))
    }
}

/// A path on the host or in a container for a mount or a device: absolute, normalised, and
/// made of `A-Za-z0-9._/-` only (it reaches Compose and, for devices, the kernel).
fn plain_path(s: &str, what: &str) -> Result<String, types::TypeError> {
    let ok = s.starts_with('/')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
        && (s == "/" || s[1..].split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
    if ok {
        Ok(s.to_string())
    } else {
        Err(bad(
            format!("`{}` is not a plain absolute {what} path", s.escape_debug()),
            "write it like `/var/log`: `/`, then `A-Za-z0-9._-` components",
        ))
    }
}

/// A read-only host mount, `SOURCE:TARGET` (`/sys:/sys`, `/:/rootfs`).
pub fn parse_host_mount(s: &str) -> Result<(String, String), types::TypeError> {
    let Some((src, dst)) = s.split_once(':') else {
        return Err(bad(format!("`{}` is not `SOURCE:TARGET`", s.escape_debug()), "write it like `/var/log:/var/log` (always read-only)"));
    };
    let dst = plain_path(dst, "container")?;
    if dst == "/" {
        return Err(bad("a host mount cannot replace the container's root".into(), "mount it below, like `/:/rootfs`"));
    }
    Ok((plain_path(src, "host")?, dst))
}

/// Host paths that hand a container control of the host: the Docker socket (a read-only bind
/// mount still lets a process connect to a socket) and the secrets kiln delivers.
pub const SENSITIVE_HOST_PATHS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock", "/etc/kiln/secrets", "/etc/kiln/service-secrets"];

/// Whether mounting `src` exposes one of [`SENSITIVE_HOST_PATHS`] (it is one, or holds one).
pub fn exposes_sensitive(src: &str) -> Option<&'static str> {
    SENSITIVE_HOST_PATHS.iter().copied().find(|p| src == "/" || *p == src || p.starts_with(&format!("{src}/")))
}

/// A device passed into a container: `HOST[:CONTAINER[:PERMISSIONS]]`, the host side under
/// `/dev/`, permissions from `rwm`.
pub fn parse_device(s: &str) -> Result<String, types::TypeError> {
    let parts: Vec<&str> = s.split(':').collect();
    let help = "write it like `/dev/kmsg` or `/dev/dri:/dev/dri:rw`";
    if parts.len() > 3 || !parts[0].starts_with("/dev/") {
        return Err(bad(format!("`{}` is not a device (`/dev/…[:TARGET[:rwm]]`)", s.escape_debug()), help));
    }
    plain_path(parts[0], "device")?;
    if let Some(t) = parts.get(1) {
        plain_path(t, "device")?;
    }
    if let Some(p) = parts.get(2)
        && (p.is_empty() || !p.bytes().all(|b| b"rwm".contains(&b)))
    {
        return Err(bad(format!("device permissions `{p}` are not drawn from `rwm`"), help));
    }
    Ok(s.to_string())
}

/// `uid:gid`, numeric (the image's user need not exist on the host).
pub fn parse_owner(s: &str) -> Result<(u32, u32), types::TypeError> {
    let parse = |x: &str| x.parse::<u32>().ok().filter(|_| x.bytes().all(|b| b.is_ascii_digit()));
    match s.split_once(':').and_then(|(u, g)| Some((parse(u)?, parse(g)?))) {
        Some(o) => Ok(o),
        None => Err(bad(format!("`{}` is not `UID:GID`", s.escape_debug()), "write it like `1000:1000` (numbers, as the image runs)")),
    }
}

/// A user a job runs as: a name (`www-data`) or `UID[:GID]`.
pub fn parse_user(s: &str) -> Result<String, types::TypeError> {
    let name = |x: &str| {
        !x.is_empty()
            && x.len() <= 32
            && (x.bytes().all(|b| b.is_ascii_digit())
                || (x.as_bytes()[0].is_ascii_lowercase() || x.as_bytes()[0] == b'_')
                    && x.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b)))
    };
    let ok = match s.split_once(':') {
        Some((u, g)) => name(u) && name(g),
        None => name(s),
    };
    if ok { Ok(s.to_string()) } else { Err(bad(format!("`{}` is not a user", s.escape_debug()), "write it like `www-data` or `33:33`")) }
}
