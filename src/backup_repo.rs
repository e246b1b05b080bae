//! What a restic repository string says about how to reach and authenticate to it: the
//! backend, and for SFTP the user, host and port kiln's own `ssh` command must dial.
//!
//! restic's forms (doc/030_preparing_a_new_repo.rst): `sftp:user@host:/path`,
//! `sftp://user@host:port//path`, `s3:https://endpoint/bucket/path`, `rest:https://…/`,
//! `b2:…`, `azure:…`, `gs:…`, `swift:…`, `rclone:…`, and a local path (`/srv/…`, `local:…`).

/// The backend of a restic repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sftp(Sftp),
    S3,
    Rest(Rest),
    Local,
    /// A backend kiln does not model credentials for (`b2`, `azure`, `gs`, `swift`, `rclone`):
    /// its settings come from `[backup] environment`.
    Other(String),
}

/// A REST server repository's login, as its URL carries it (`rest:https://user@host/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rest {
    pub user: Option<String>,
    /// The URL holds the password itself (`user:password@`), which would put it in the store.
    pub inline_password: bool,
}

/// An SFTP repository's server, as `ssh` dials it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sftp {
    pub user: Option<String>,
    /// A DNS name, an IPv4 address or a bracketed IPv6 address (`[::1]`).
    pub host: String,
    pub port: u16,
}

/// Hetzner Storage Boxes answer SFTP with OpenSSH-format keys (ed25519 included) on port 23;
/// port 22 takes only RFC 4716 keys (https://docs.hetzner.com/robot/storage-box/backup-space-ssh-keys/).
pub const STORAGE_BOX_SUFFIX: &str = ".your-storagebox.de";
pub const STORAGE_BOX_PORT: u16 = 23;

impl Sftp {
    /// The host as `known_hosts` names it: `[host]:port` unless the port is 22.
    pub fn known_hosts_name(&self) -> String {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        if self.port == 22 { bare.to_string() } else { format!("[{bare}]:{}", self.port) }
    }

    /// The host as `ssh` takes it on its command line (no brackets).
    pub fn ssh_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// The backend of `repo`; an error names what is wrong with an SFTP repository's server part
/// (kiln writes it into the `ssh` command restic runs, so only plain names pass).
pub fn backend(repo: &str) -> Result<Backend, String> {
    if let Some(rest) = repo.strip_prefix("sftp://") {
        let authority = rest.split('/').next().unwrap_or("");
        return sftp(authority, true).map(Backend::Sftp);
    }
    if let Some(rest) = repo.strip_prefix("sftp:") {
        // `[user@]host:path`; an IPv6 host is bracketed.
        let (user, hostpath) = match rest.split_once('@') {
            Some((u, h)) if !u.contains(':') && !u.contains('/') => (Some(u), h),
            _ => (None, rest),
        };
        let host = if hostpath.starts_with('[') {
            hostpath.find(']').map(|i| &hostpath[..=i]).ok_or("an unclosed `[` in the SFTP host")?
        } else {
            hostpath.split(':').next().unwrap_or("")
        };
        if !hostpath[host.len()..].starts_with(':') {
            return Err("an SFTP repository is `sftp:user@host:/path` or `sftp://user@host:port//path`".into());
        }
        let authority = match user {
            Some(u) => format!("{u}@{host}"),
            None => host.to_string(),
        };
        return sftp(&authority, false).map(Backend::Sftp);
    }
    if repo.starts_with('/') || repo.starts_with("local:") {
        return Ok(Backend::Local);
    }
    let scheme = repo.split(':').next().unwrap_or("");
    Ok(match scheme {
        "s3" => Backend::S3,
        "rest" => Backend::Rest(rest(repo)),
        "b2" | "azure" | "gs" | "swift" | "rclone" => Backend::Other(scheme.to_string()),
        _ => return Err(format!("`{scheme}` is not a restic backend")),
    })
}

/// The userinfo of `rest:SCHEME://[user[:password]@]host/…`.
fn rest(repo: &str) -> Rest {
    let after = repo.split_once("://").map_or("", |(_, a)| a);
    let authority = after.split('/').next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((info, _)) => match info.split_once(':') {
            Some((u, _)) => Rest { user: Some(u.to_string()), inline_password: true },
            None => Rest { user: Some(info.to_string()), inline_password: false },
        },
        None => Rest { user: None, inline_password: false },
    }
}

/// `rest:` with the password spliced in after the user name: the URL's text before and after
/// the place it goes (`rest:https://user` and `@host/path`), for a URL with a user and no password.
pub fn rest_password_split(repo: &str) -> Option<(&str, &str)> {
    let scheme_end = repo.find("://")? + 3;
    let authority_end = repo[scheme_end..].find('/').map_or(repo.len(), |i| scheme_end + i);
    let at = scheme_end + repo[scheme_end..authority_end].rfind('@')?;
    (!repo[scheme_end..at].contains(':')).then(|| (&repo[..at], &repo[at..]))
}

/// `[user@]host[:port]` (the port only in the URL form).
fn sftp(authority: &str, url: bool) -> Result<Sftp, String> {
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = if hostport.starts_with('[') {
        let end = hostport.find(']').ok_or("an unclosed `[` in the SFTP host")?;
        let (h, p) = hostport.split_at(end + 1);
        (h, p.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) if url => (h, Some(p)),
            Some(_) => return Err("a port goes in the URL form: `sftp://user@host:port//path`".into()),
            None => (hostport, None),
        }
    };
    if let Some(u) = user
        && (u.is_empty() || !u.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) || u.starts_with('-'))
    {
        return Err(format!("`{u}` is not a plain user name"));
    }
    let plain_host = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !inner.is_empty() && inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty() && !host.starts_with('-') && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
    };
    if !plain_host {
        return Err(format!("`{host}` is not a host name or address"));
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("`{p}` is not a port"))?,
        None if host.to_ascii_lowercase().ends_with(STORAGE_BOX_SUFFIX) => STORAGE_BOX_PORT,
        None => 22,
    };
    Ok(Sftp { user: user.map(str::to_string), host: host.to_string(), port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sftp(user: Option<&str>, host: &str, port: u16) -> Backend {
        Backend::Sftp(Sftp { user: user.map(Into::into), host: host.into(), port })
    }

    #[test]
    fn forms() {
        assert_eq!(backend("sftp:u1@u1.your-storagebox.de:/restic/{host}"), Ok(sftp(Some("u1"), "u1.your-storagebox.de", 23)));
        assert_eq!(backend("sftp:backup@nas.example:/srv/r"), Ok(sftp(Some("backup"), "nas.example", 22)));
        assert_eq!(backend("sftp://b@nas.example:2222//srv/r"), Ok(sftp(Some("b"), "nas.example", 2222)));
        assert_eq!(backend("sftp://b@[::1]:2222//srv/r"), Ok(sftp(Some("b"), "[::1]", 2222)));
        assert_eq!(backend("sftp:nas:/r"), Ok(sftp(None, "nas", 22)));
        assert_eq!(backend("s3:https://fra1.digitaloceanspaces.com/b/x"), Ok(Backend::S3));
        assert_eq!(backend("rest:https://h/"), Ok(Backend::Rest(Rest { user: None, inline_password: false })));
        assert_eq!(backend("rest:https://u@h:8000/r"), Ok(Backend::Rest(Rest { user: Some("u".into()), inline_password: false })));
        assert_eq!(backend("rest:https://u:pw@h/"), Ok(Backend::Rest(Rest { user: Some("u".into()), inline_password: true })));
        assert_eq!(rest_password_split("rest:https://u@h:8000/r/{host}"), Some(("rest:https://u", "@h:8000/r/{host}")));
        assert_eq!(rest_password_split("rest:https://h/"), None);
        assert_eq!(backend("/srv/restic"), Ok(Backend::Local));
        assert_eq!(backend("b2:bucket:path"), Ok(Backend::Other("b2".into())));
        for bad in ["sftp:u@h;rm:/x", "sftp:-oProxyCommand=x@h:/r", "sftp://u@h:99999//r", "sftp:u@h", "ftp:x"] {
            assert!(backend(bad).is_err(), "{bad}");
        }
        let s = Sftp { user: None, host: "[::1]".into(), port: 2222 };
        assert_eq!((s.known_hosts_name(), s.ssh_host()), ("[::1]:2222".to_string(), "::1"));
    }
}
