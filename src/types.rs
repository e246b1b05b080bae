//! The typed scalar values of the language: CIDR, address, port, domain, duration, size, image
//! reference, CPU count, systemd calendar expression, provider tokens.

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

mod csp;
pub use csp::{CSP_DIRECTIVES, parse_csp};

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

    /// True when the two networks share an address (one holds the other's network).
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network()) || other.contains(self.network())
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

/// An entry of an allow-list (`allow` on a route, in `[route_defaults]`, on a stream): an
/// address or a network, or the name of an `[admins.NAME]`, which stands for that admin's
/// `sources` (resolve/allow_lists.rs expands it), so the administrators' networks are written once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    Source(Cidr),
    Admin(String),
}

/// An allow-list entry: a name ([`parse_ident`]: a lowercase letter first, no `.`, `:` or `/`)
/// is an admin's; anything else must be an address or a network.
pub fn parse_allow_entry(s: &str) -> Result<AllowEntry, TypeError> {
    if parse_ident(s).is_ok() {
        return Ok(AllowEntry::Admin(s.to_string()));
    }
    parse_source(s).map(AllowEntry::Source).map_err(|e| TypeError {
        message: e.message,
        help: Some(format!(
            "{}; or name an admin (`[admins.NAME]`), whose `sources` the entry stands for",
            e.help.as_deref().unwrap_or("write an address like `203.0.113.7` or a network like `203.0.113.0/24`")
        )),
    })
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

/// A web origin, `scheme://host[:port]` with scheme `https` or `http`, a domain name (a leading
/// `*.` allowed, as CSP host sources allow) or an IPv4 address, and no path: what a CSP
/// `frame-ancestors` source or a CORS origin names. Nothing else can reach a header or a
/// Caddyfile token through it.
pub fn parse_origin(s: &str) -> Result<String, TypeError> {
    const HELP: &str = "write an origin like `https://chat.example.org` or `https://chat.example.org:8443`: scheme, host and port only";
    let Some((scheme, rest)) = s.split_once("://") else {
        return err(format!("`{}` is not an origin: no `https://`", visible(s)), Some(HELP));
    };
    if scheme != "https" && scheme != "http" {
        return err(format!("`{}` is not an origin: the scheme must be `https` or `http`", visible(s)), Some(HELP));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let host_ok = parse_domain(host, true).is_ok()
        || (host.bytes().all(|b| b.is_ascii_digit() || b == b'.') && host.parse::<std::net::Ipv4Addr>().is_ok());
    let port_ok = port
        .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0));
    if host_ok && port_ok { Ok(s.to_string()) } else { err(format!("`{}` is not an origin", visible(s)), Some(HELP)) }
}

/// A service's own environment value (`environment = { VAR = "value" }`): one line, as every
/// reader of an environment takes it (Compose escapes its `$`).
pub fn parse_env_value(s: &str) -> Result<String, TypeError> {
    match crate::render::quote::line_unsafe(s) {
        Some(why) => err(format!("`{}` cannot be an environment value: {why}", visible(s)), Some("write it on one line")),
        None => Ok(s.to_string()),
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
        if digits.is_empty() {
            return err(format!("`{s}` is not a size"), Some("write a number and a unit, like `512MiB`"));
        }
        match digits.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)) {
            Some(n) => Ok(Size(n)),
            None => err(format!("`{s}` is too large"), Some("sizes are at most 16 EiB; write a smaller one, like `2TiB`")),
        }
    }

    /// A size that must hold something: memory limits, disks.
    pub fn parse_positive(s: &str) -> Result<Size, TypeError> {
        match Size::parse(s)? {
            Size(0) => err(format!("`{s}` is zero bytes"), Some("give a size above zero, like `512MiB`")),
            size => Ok(size),
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

/// `s` with its control characters written as escapes (`\r`, `\0`, `\u{1b}`), for messages.
pub fn visible(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// A CPU limit: a finite number of CPUs above zero (`0.5`, `2`), at most 1024.
pub fn parse_cpus(n: f64) -> Result<f64, TypeError> {
    if n.is_finite() && n > 0.0 && n <= 1024.0 {
        Ok(n)
    } else {
        err(format!("{n} is not a CPU count"), Some("give a number of CPUs above 0 and at most 1024, like `0.5` or `2`"))
    }
}

/// Refuses control characters (C0, DEL, C1): `\n`, `\r` and NUL end a line in systemd units
/// and configuration files, and escapes rewrite terminals.
pub fn no_control(s: &str) -> Result<(), TypeError> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => err(
            format!("`{}` holds the control character {c:?}", visible(s)),
            Some("control characters (newlines, carriage returns, NUL, escapes) are not allowed here"),
        ),
        None => Ok(()),
    }
}

/// A value a cloud provider defines (a server type, location, region, engine, node type):
/// 1 to 63 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit. Nothing in it can be
/// read as an interpolation, a quote or a line break by any output.
pub fn parse_provider_token(s: &str) -> Result<String, TypeError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(s.to_string())
    } else {
        err(
            format!("`{}` is not a provider value", visible(s)),
            Some("provider types, locations and regions hold only letters, digits, `.`, `_` and `-`, like `cx22` or `fr-par-1`"),
        )
    }
}

/// A database user name: a letter, then letters, digits, `_` and `-`, at most 63.
pub fn parse_user_name(s: &str) -> Result<String, TypeError> {
    let ok = s.len() <= 63
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    if ok {
        Ok(s.to_string())
    } else {
        err(
            format!("`{}` is not a user name", visible(s)),
            Some("user names start with a letter and hold only letters, digits, `_` and `-` (at most 63)"),
        )
    }
}

/// A systemd calendar expression (`OnCalendar=`), in the forms `systemd-analyze calendar`
/// accepts: a shorthand (`daily`, `weekly`, …) or `[WEEKDAYS] [[YEAR-]MONTH-DAY]
/// [HOUR:MINUTE[:SECOND]] [UTC]`, where weekdays are names, ranges `Mon..Fri` and lists, and
/// every other component is `*` or a comma list of numbers, ranges `a..b` and repetitions
/// `a/n` / `a..b/n`. Kept with single spaces; it can hold no control character.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Calendar(String);

const CALENDAR_SHORTHANDS: [&str; 9] =
    ["minutely", "hourly", "daily", "weekly", "monthly", "quarterly", "semiannually", "yearly", "annually"];
const WEEKDAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

impl Calendar {
    pub fn parse(s: &str) -> Result<Calendar, TypeError> {
        no_control(s)?;
        let help = Some("write it like `daily`, `*-*-* 03:00:00` or `Mon..Fri *-*-* 03:00` (see systemd.time(7))");
        let words: Vec<&str> = s.split(' ').filter(|w| !w.is_empty()).collect();
        if s.len() > 256 || !calendar_words(&words) {
            return err(format!("`{s}` is not a systemd calendar expression"), help);
        }
        Ok(Calendar(words.join(" ")))
    }

    /// Checked at compile time by the tests: kiln's own defaults are valid expressions.
    pub fn default_backup() -> Calendar {
        Calendar("*-*-* 03:00:00".into())
    }

    pub fn default_check() -> Calendar {
        Calendar("Sun *-*-* 05:00:00".into())
    }
}

impl std::ops::Deref for Calendar {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A test on one word of a calendar expression.
type Test = fn(&str) -> bool;

fn calendar_words(words: &[&str]) -> bool {
    if let [one] = words
        && CALENDAR_SHORTHANDS.contains(&one.to_ascii_lowercase().as_str())
    {
        return true;
    }
    let words = match words {
        [head @ .., tz] if tz.eq_ignore_ascii_case("utc") => head,
        _ => words,
    };
    // weekdays, date and time, each optional but in this order, at least one of them
    let parts: [(Test, Test); 3] =
        [(|w| w.starts_with(|c: char| c.is_ascii_alphabetic()), weekdays), (|w| w.contains('-'), date), (|w| w.contains(':'), time)];
    let mut rest = words;
    for (looks, parse) in parts {
        if let [w, tail @ ..] = rest
            && looks(w)
        {
            if !parse(w) {
                return false;
            }
            rest = tail;
        }
    }
    rest.is_empty() && !words.is_empty()
}

/// Monday is 0.
fn weekday(w: &str) -> Option<usize> {
    let w = w.to_ascii_lowercase();
    WEEKDAYS.iter().position(|d| *d == w || d[..3] == w)
}

/// Names, ranges (`Mon..Fri`, in week order from Monday) and lists of them.
fn weekdays(s: &str) -> bool {
    s.split(',').all(|item| match item.split_once("..") {
        Some((a, b)) => matches!((weekday(a), weekday(b)), (Some(a), Some(b)) if a <= b),
        None => weekday(item).is_some(),
    })
}

fn date(s: &str) -> bool {
    match s.split('-').collect::<Vec<_>>()[..] {
        [y, m, d] => component(y, 1970, 2199, 4) && component(m, 1, 12, 2) && component(d, 1, 31, 2),
        [m, d] => component(m, 1, 12, 2) && component(d, 1, 31, 2),
        _ => false,
    }
}

fn time(s: &str) -> bool {
    match s.split(':').collect::<Vec<_>>()[..] {
        [h, m] => component(h, 0, 23, 2) && component(m, 0, 59, 2),
        [h, m, sec] => component(h, 0, 23, 2) && component(m, 0, 59, 2) && component(sec, 0, 59, 2),
        _ => false,
    }
}

/// `*`, or a comma list of `n`, `a..b`, `n/r`, `a..b/r` within `lo..=hi`, numbers of at most
/// `digits` digits. As systemd has it, a repetition from a single value must stay in range
/// once (`n + r <= hi`); from a range it may be any positive step.
fn component(s: &str, lo: u32, hi: u32, digits: usize) -> bool {
    let num = |t: &str| {
        (!t.is_empty() && t.len() <= digits && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<u32>().ok())
            .flatten()
            .filter(|n| (lo..=hi).contains(n))
    };
    let step = |r: &str| (!r.is_empty() && r.len() <= 4 && r.bytes().all(|b| b.is_ascii_digit())).then(|| r.parse::<u32>().ok()).flatten();
    s == "*"
        || s.split(',').all(|item| {
            let (base, rep) = match item.split_once('/') {
                Some((b, r)) => (b, Some(step(r))),
                None => (item, None),
            };
            match (base.split_once(".."), rep) {
                (Some((a, b)), rep) => {
                    matches!((num(a), num(b)), (Some(a), Some(b)) if a <= b) && rep.is_none_or(|r| r.is_some_and(|r| r >= 1))
                }
                (None, None) => num(base).is_some(),
                (None, Some(r)) => matches!((num(base), r), (Some(n), Some(r)) if r >= 1 && n + r <= hi),
            }
        })
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
        self.digest.is_some() || self.tag.as_deref().is_some_and(|t| !matches!(t, "latest" | "stable" | "main" | "edge") && !major_only(t))
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

/// A tag naming only a major version (`16`, `v3`, `16-alpine`): it moves to every minor and patch
/// release of that major.
fn major_only(tag: &str) -> bool {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && !t[digits..].starts_with('.')
}

/// The major and minor number of a version or image tag: `1.20.1`, `v1.24.1-p1` → (1, 20).
pub fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.trim_start_matches('v').split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// An SSH host public key as `ssh-keyscan` and `known_hosts` write it: `ALGORITHM BASE64`,
/// whose blob names the same algorithm (RFC 4253 §6.6). `kiln deploy` pins it in the state
/// directory's `known_hosts` on first contact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SshHostKey {
    pub algorithm: String,
    /// The key blob, base64 as written.
    pub base64: String,
}

impl SshHostKey {
    /// The key as one `known_hosts` field pair: `ALGORITHM BASE64`.
    pub fn line(&self) -> String {
        format!("{} {}", self.algorithm, self.base64)
    }

    /// OpenSSH's fingerprint (`ssh-keygen -l`): `SHA256:` and the unpadded base64 of the blob's sha256.
    pub fn fingerprint(&self) -> String {
        use base64::Engine;
        use sha2::Digest;
        let blob = base64::engine::general_purpose::STANDARD.decode(&self.base64).unwrap_or_default();
        format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha2::Sha256::digest(&blob)))
    }
}

/// `ssh-ed25519 AAAA…` (an optional trailing comment is dropped): the algorithm must be one
/// OpenSSH uses for host keys (`ssh-rsa` keys are written `ssh-rsa`), and the blob must be
/// base64 whose first field names that algorithm.
pub fn parse_ssh_host_key(s: &str) -> Result<SshHostKey, TypeError> {
    use base64::Engine;
    const HELP: &str =
        "copy it from the server's `/etc/ssh/ssh_host_ed25519_key.pub` or `ssh-keyscan -t ed25519 HOST`: `ssh-ed25519 AAAA…`";
    let mut words = s.split_whitespace();
    let (Some(algorithm), Some(b64)) = (words.next(), words.next()) else {
        return err(format!("`{}` is not an SSH host key", s.escape_debug()), Some(HELP));
    };
    let known = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"];
    if !known.contains(&algorithm) {
        return err(format!("`{}` is not an SSH host key algorithm", algorithm.escape_debug()), Some(HELP));
    }
    let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return err("the SSH host key is not base64", Some(HELP));
    };
    let named = blob
        .get(..4)
        .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n))
        .map(|n| n == algorithm.as_bytes());
    if named != Some(true) {
        return err(format!("the key blob is not an `{algorithm}` key"), Some(HELP));
    }
    Ok(SshHostKey { algorithm: algorithm.to_string(), base64: b64.to_string() })
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
    fn allow_entries_are_addresses_networks_or_admins_names() {
        let source = |s: &str| AllowEntry::Source(parse_source(s).unwrap());
        assert_eq!(parse_allow_entry("203.0.113.7"), Ok(source("203.0.113.7")));
        assert_eq!(parse_allow_entry("203.0.113.0/24"), Ok(source("203.0.113.0/24")));
        assert_eq!(parse_allow_entry("2001:db8::/32"), Ok(source("2001:db8::/32")));
        // a name starts with a lowercase letter; hexadecimal IPv6 groups hold a colon
        assert_eq!(parse_allow_entry("ops"), Ok(AllowEntry::Admin("ops".into())));
        assert_eq!(parse_allow_entry("fe80::1"), Ok(source("fe80::1")));
        for bad in ["Ops", "10.0.0.0/33", "10.0.0.1/24", "", "ops team", "-ops"] {
            let e = parse_allow_entry(bad).unwrap_err();
            assert!(e.help.is_some_and(|h| h.contains("[admins.NAME]")), "{bad}: the help names both forms");
        }
    }

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for ok in ["https://chat.example.org", "http://chat.example.org:8080", "https://*.example.org", "https://203.0.113.7:8443"] {
            assert_eq!(parse_origin(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "chat.example.org",
            "ftp://chat.example.org",
            "https://chat.example.org/",
            "https://chat.example.org/path",
            "https://chat.example.org:0",
            "https://chat.example.org:99999",
            "https://Chat.example.org",
            "https://chat.example.org; script-src *",
            "https://chat.example.org\r\nX-Evil: 1",
            "https://chat.example.org\"",
            "https://chat.example.org 'unsafe-inline'",
            "https://chat.example.org}",
            "'none'",
            "*",
            "https://",
            "https://[::1]",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad:?} accepted");
        }
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
        for moving in ["1", "v3", "16-alpine"] {
            assert!(!ImageRef::parse(&format!("postgres:{moving}")).unwrap().is_pinned(), "{moving}");
        }
        assert!(ImageRef::parse("postgres:18.6-trixie").unwrap().is_pinned());
        assert!(ImageRef::parse("jitsi/web:stable-11248").unwrap().is_pinned());
        assert!(ImageRef::parse("localhost:5000/app").unwrap().tag.is_none());
        assert!(ImageRef::parse("Bad Image").is_err());
    }

    #[test]
    fn nonsense_numbers_are_refused() {
        assert!(Size::parse("16EiB").is_err());
        assert!(Size::parse("17179869184GiB").is_err(), "saturating at u64::MAX is an error");
        assert!(Size::parse("18446744073709551615").is_ok());
        assert!(Size::parse("18446744073709551616").is_err());
        assert!(Size::parse("GiB").is_err());
        assert!(Size::parse_positive("0").is_err() && Size::parse_positive("0GiB").is_err());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 0.0, 1e9] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
        assert!(parse_cpus(0.5).is_ok() && parse_cpus(2.0).is_ok());
    }

    #[test]
    fn overlapping_networks() {
        let c = |s| Cidr::parse(s).unwrap();
        assert!(c("172.20.0.0/16").overlaps(&c("172.20.5.0/24")));
        assert!(c("172.20.5.0/24").overlaps(&c("172.20.0.0/16")));
        assert!(!c("172.20.0.0/24").overlaps(&c("172.20.1.0/24")));
        assert!(!c("10.0.0.0/8").overlaps(&c("fd00::/8")));
    }

    #[test]
    fn calendars_and_tokens() {
        assert_eq!(Calendar::parse("Mon..Fri  *-*-*   03:00").unwrap().to_string(), "Mon..Fri *-*-* 03:00");
        assert!(Calendar::parse("daily\r[Unit]").is_err());
        assert!(Calendar::parse("daily\0").is_err());
        assert!(Calendar::parse(&Calendar::default_backup()).is_ok() && Calendar::parse(&Calendar::default_check()).is_ok());
        assert!(parse_provider_token("fr-par-1").is_ok() && parse_provider_token("DB-DEV-S").is_ok());
        for bad in ["", "${x}", "%{x}", "a b", "fra1\0", "-x", "a\"b"] {
            assert!(parse_provider_token(bad).is_err(), "{bad:?}");
        }
        assert_eq!(visible("a\rb\0"), "a\\rb\\u{0}");
    }

    #[test]
    fn domains() {
        assert!(parse_domain("app.example.com", false).is_ok());
        assert!(parse_domain("*.example.com", false).is_err());
        assert!(parse_domain("*.example.com", true).is_ok());
        assert!(parse_domain("exa mple.com", false).is_err());
    }
}
