//! The typed scalar values of the language: CIDR, address, port, domain, duration, size, image reference.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;

/// Why a string is not a valid value of a type, with an optional fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    pub message: String,
    pub help: Option<String>,
}

fn err<T>(message: impl Into<String>, help: Option<&str>) -> Result<T, TypeError> {
    Err(TypeError { message: message.into(), help: help.map(str::to_string) })
}

/// An IP network such as `10.0.0.0/24`; host bits must be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, TypeError> {
        let Some((a, p)) = s.split_once('/') else {
            return err(format!("`{s}` is not a CIDR"), Some("write an address and a prefix length, like `10.0.0.0/24`"));
        };
        let Ok(addr) = IpAddr::from_str(a) else {
            return err(format!("`{a}` is not an IP address"), Some("write it like `10.0.0.0/24`"));
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => {
                return err(format!("`{p}` is not a prefix length"), Some(&format!("use 0 to {max}")));
            }
        };
        let cidr = Cidr { addr, prefix };
        if cidr.network() != addr {
            return err(format!("`{s}` has host bits set"), Some(&format!("the network is `{}/{prefix}`", cidr.network())));
        }
        Ok(cidr)
    }

    fn mask_bits(&self) -> u128 {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == 0 { 0 } else { (!0u128 << (width - self.prefix as u32)) & width_mask(width) }
    }

    pub fn network(&self) -> IpAddr {
        let bits = ip_bits(self.addr) & self.mask_bits();
        from_bits(self.addr, bits)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && ip_bits(ip) & self.mask_bits() == ip_bits(self.addr) & self.mask_bits()
    }

    /// True for the network and broadcast addresses of an IPv4 network wider than /31.
    pub fn is_reserved(&self, ip: IpAddr) -> bool {
        if !self.addr.is_ipv4() || self.prefix >= 31 {
            return false;
        }
        let host = ip_bits(ip) & !self.mask_bits() & width_mask(32);
        host == 0 || host == !self.mask_bits() & width_mask(32)
    }
}

fn width_mask(width: u32) -> u128 {
    if width == 128 { !0 } else { (1u128 << width) - 1 }
}

fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_bits(like: IpAddr, bits: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((bits as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(bits.into()),
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An address, or a network, that traffic may come from.
pub fn parse_source(s: &str) -> Result<Cidr, TypeError> {
    if s.contains('/') {
        return Cidr::parse(s);
    }
    let ip = parse_ip(s)?;
    Ok(Cidr { addr: ip, prefix: if ip.is_ipv4() { 32 } else { 128 } })
}

pub fn parse_ip(s: &str) -> Result<IpAddr, TypeError> {
    IpAddr::from_str(s).or_else(|_| err(format!("`{s}` is not an IP address"), Some("write it like `10.0.0.2`")))
}

pub fn parse_port(n: i64) -> Result<u16, TypeError> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => err(format!("{n} is not a port"), Some("ports are 1 to 65535")),
    }
}

/// A DNS name: labels of letters, digits and hyphens; a leading `*.` only for wildcards.
pub fn parse_domain(s: &str, allow_wildcard: bool) -> Result<String, TypeError> {
    let body = match s.strip_prefix("*.") {
        Some(rest) if allow_wildcard => rest,
        Some(_) => {
            return err(format!("`{s}` is a wildcard, which is not allowed here"), None);
        }
        None => s,
    };
    let ok = !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && body.contains('.');
    if ok {
        Ok(s.to_string())
    } else {
        err(
            format!("`{s}` is not a domain name"),
            Some("use lowercase labels of letters, digits and hyphens separated by dots, like `app.example.com`"),
        )
    }
}

/// A name for hosts, services, networks, secrets: used in file names, shell and YAML keys.
pub fn parse_ident(s: &str) -> Result<String, TypeError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(s.to_string())
    } else {
        err(
            format!("`{s}` is not a valid name"),
            Some("names start with a lowercase letter and hold only `a-z`, `0-9`, `-` and `_` (at most 63)"),
        )
    }
}

/// A duration such as `30s`, `5m`, `1h30m`, kept in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Duration(pub u64);

impl Duration {
    pub fn parse(s: &str) -> Result<Duration, TypeError> {
        let help = Some("write a number and a unit (`s`, `m`, `h`, `d`), like `30s` or `1h30m`");
        if s.is_empty() {
            return err("empty duration", help);
        }
        let mut total: u64 = 0;
        let mut num = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86400,
                _ => return err(format!("`{s}` is not a duration"), help),
            };
            let Ok(n) = num.parse::<u64>() else {
                return err(format!("`{s}` is not a duration"), help);
            };
            total = total.saturating_add(n.saturating_mul(unit));
            num.clear();
        }
        if !num.is_empty() {
            return err(format!("`{s}` has no unit"), help);
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    /// The form Compose and systemd both read: `1h30m`, `45s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, self.0 % 3600 / 60, self.0 % 60);
        if self.0 == 0 {
            return write!(f, "0s");
        }
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

/// A size in bytes, written `512MiB`, `2GiB`, `100M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(s: &str) -> Result<Size, TypeError> {
        let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
        let unit = &s[digits.len()..];
        let mult: u64 = match unit {
            "" | "B" => 1,
            "K" | "KB" => 1000,
            "M" | "MB" => 1_000_000,
            "G" | "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => {
                return err(format!("`{s}` is not a size"), Some("write a number and a unit, like `512MiB` or `2GiB`"));
            }
        };
        match digits.parse::<u64>() {
            Ok(n) => Ok(Size(n.saturating_mul(mult))),
            Err(_) => err(format!("`{s}` is not a size"), Some("write a number and a unit, like `512MiB`")),
        }
    }

    /// Compose's byte-value form, in the largest whole binary unit.
    pub fn compose(&self) -> String {
        for (unit, shift) in [("g", 30), ("m", 20), ("k", 10)] {
            if self.0 >= 1 << shift && self.0.is_multiple_of(1 << shift) {
                return format!("{}{unit}", self.0 >> shift);
            }
        }
        format!("{}b", self.0)
    }
}

/// A container image reference: `registry/repo:tag`, optionally `@sha256:…`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ImageRef {
    pub name: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, TypeError> {
        let help = Some("write it like `docker.io/library/postgres:18.1` (a `@sha256:…` digest may follow)");
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d.strip_prefix("sha256:").unwrap_or("");
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                    return err(format!("`{d}` is not a sha256 digest"), Some("digests look like `sha256:` and 64 hex digits"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(rest[last_slash + i + 1..].to_string())),
            None => (rest, None),
        };
        let name_ok = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b))
            && !name.starts_with('/')
            && !name.ends_with('/');
        let tag_ok = tag
            .as_deref()
            .is_none_or(|t| !t.is_empty() && t.len() <= 128 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        if !name_ok || !tag_ok {
            return err(format!("`{s}` is not an image reference"), help);
        }
        Ok(ImageRef { name: name.to_string(), tag, digest })
    }

    /// Pinned: a digest, or an explicit tag that is not a moving one.
    pub fn is_pinned(&self) -> bool {
        self.digest.is_some() || self.tag.as_deref().is_some_and(|t| !matches!(t, "latest" | "stable" | "main" | "edge"))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The major and minor number of a version or image tag: `1.20.1`, `v1.24.1-p1` → (1, 20).
pub fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.trim_start_matches('v').split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains_and_rejects_host_bits() {
        let c = Cidr::parse("10.0.0.0/24").unwrap();
        assert!(c.contains("10.0.0.7".parse().unwrap()));
        assert!(!c.contains("10.0.1.7".parse().unwrap()));
        assert!(c.is_reserved("10.0.0.255".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.1/24").unwrap_err().help.unwrap().contains("10.0.0.0/24"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(Duration::parse("1h30m").unwrap(), Duration(5400));
        assert_eq!(Duration(5400).to_string(), "1h30m");
        assert!(Duration::parse("10").is_err());
        assert_eq!(Size::parse("512MiB").unwrap().compose(), "512m");
        assert!(Size::parse("12 parsecs").is_err());
    }

    #[test]
    fn image_refs() {
        let i = ImageRef::parse("ghcr.io/goauthentik/server:2025.10.2").unwrap();
        assert_eq!(i.tag.as_deref(), Some("2025.10.2"));
        assert!(i.is_pinned());
        assert!(!ImageRef::parse("valkey/valkey").unwrap().is_pinned());
        assert!(!ImageRef::parse("valkey/valkey:latest").unwrap().is_pinned());
        assert!(ImageRef::parse("localhost:5000/app").unwrap().tag.is_none());
        assert!(ImageRef::parse("Bad Image").is_err());
    }

    #[test]
    fn domains() {
        assert!(parse_domain("app.example.com", false).is_ok());
        assert!(parse_domain("*.example.com", false).is_err());
        assert!(parse_domain("*.example.com", true).is_ok());
        assert!(parse_domain("exa mple.com", false).is_err());
    }
}
