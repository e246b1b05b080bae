//! The kinds of string the language checks ([`Text`]), each with its reference text and the
//! pattern the schema gives editors.

/// A kind of string the language checks, with the pattern the schema gives editors (at least
/// as lenient as kiln, never stricter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text {
    /// What the reference calls it.
    pub name: &'static str,
    /// How to write it, for the reference's list of types.
    pub doc: &'static str,
    pub pattern: Option<&'static str>,
}

pub const STRING: Text = Text { name: "string", doc: "Any string.", pattern: None };
pub const NAME: Text = Text {
    name: "name",
    doc: "A lowercase letter, then up to 62 of `a-z`, `0-9`, `-` and `_`: hosts, services, networks, secrets and the like are named so, because names become file names, shell words and YAML keys.",
    pattern: Some("^[a-z][a-z0-9_-]{0,62}$"),
};
/// A service's host: a host's name, or `*` for every host.
pub const HOST_REF: Text = Text {
    name: "host name or `*`",
    doc: "A host's name, or `*` for one copy of the service on every host.",
    pattern: Some("^(\\*|[a-z][a-z0-9_-]{0,62})$"),
};
pub const DOMAIN: Text = Text {
    name: "domain",
    doc: "A DNS name of at least two lowercase labels (letters, digits, inner hyphens), like `example.com`.",
    pattern: Some("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"),
};
pub const HOSTNAME: Text = Text {
    name: "hostname",
    doc: "A domain, optionally a wildcard `*.example.com` (which needs `tls = \"dns\"`).",
    pattern: Some("^(\\*\\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"),
};
pub const ADDRESS: Text = Text {
    name: "IP address",
    doc: "An IPv4 or IPv6 address, like `10.0.0.2`.",
    pattern: Some("^([0-9]{1,3}(\\.[0-9]{1,3}){3}|[0-9a-fA-F.]*:[0-9a-fA-F:.]*)$"),
};
/// An SSH host public key, as in `known_hosts`.
pub const SSH_HOST_KEY: Text = Text {
    name: "SSH host key",
    doc: "An SSH public key as OpenSSH writes it: the algorithm (`ssh-ed25519`, `ecdsa-sha2-nistp256`/`384`/`521`, `ssh-rsa`), a space and the key in base64.",
    pattern: Some("^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,2}( .*)?$"),
};
pub const CIDR: Text = Text {
    name: "CIDR",
    doc: "An IP network with its prefix length and no host bits set, like `10.0.0.0/24`.",
    pattern: Some("^([0-9]{1,3}(\\.[0-9]{1,3}){3}|[0-9a-fA-F.]*:[0-9a-fA-F:.]*)/[0-9]{1,3}$"),
};
pub const SOURCE: Text = Text {
    name: "source",
    doc: "An address (`203.0.113.7`) or a network (`203.0.113.0/24`) traffic may come from.",
    pattern: Some("^([0-9]{1,3}(\\.[0-9]{1,3}){3}|[0-9a-fA-F.]*:[0-9a-fA-F:.]*)(/[0-9]{1,3})?$"),
};
/// An allow-list entry (`types::parse_allow_entry`).
pub const ALLOWED: Text = Text {
    name: "source or admin",
    doc: "A source (an address or a network) or the name of an `[admins.NAME]`, which stands for that admin's `sources`.",
    pattern: Some("^([0-9]{1,3}(\\.[0-9]{1,3}){3}|[0-9a-fA-F.]*:[0-9a-fA-F:.]*)(/[0-9]{1,3})?$|^[a-z][a-z0-9_-]{0,62}$"),
};
pub const ORIGIN: Text = Text {
    name: "origin",
    doc: "A web origin: `https://` or `http://`, a domain (a leading `*.` allowed) or an IPv4 address, and an optional port, with no path, like `https://chat.example.org`.",
    pattern: Some(
        "^https?://((\\*\\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?|[0-9]{1,3}(\\.[0-9]{1,3}){3})(:[0-9]{1,5})?$",
    ),
};
pub const CSP: Text = Text {
    name: "content security policy",
    doc: "Content-Security-Policy directives separated by `;`, like `default-src 'self'; img-src 'self' data:`: each a directive of CSP Level 3 (not `frame-ancestors`, which is `frame_ancestors`), set once, with sources of printable ASCII but `,`, `\"`, `\\`, `{` and `}`.",
    pattern: Some("^[\\t -!#-+\\--\\[\\]-z|~]+$"),
};
pub const SIZE: Text = Text {
    name: "size",
    doc: "A number and a unit: `B`, `K`/`KB`, `M`/`MB`, `G`/`GB` (powers of 1000), `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024), like `512MiB`.",
    pattern: Some("^[0-9]+(B|K|KB|M|MB|G|GB|KiB|MiB|GiB|TiB)?$"),
};
/// `[deploy] state`: an S3 bucket and the key of the state file in it.
pub const S3_STATE: Text = Text {
    name: "S3 state URL",
    doc: "`s3://`, a bucket name (3 to 63 of `a-z`, `0-9`, `.`, `-`), `/` and the object key of the state file, like `s3://acme-tofu-state/kiln/prod.tfstate`; no query: the region and an endpoint are keys of their own.",
    pattern: Some("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^?#\\s]*[^/?#\\s]$"),
};
pub const DURATION: Text =
    Text { name: "duration", doc: "Numbers with units `s`, `m`, `h`, `d`, like `30s` or `1h30m`.", pattern: Some("^([0-9]+[smhd])+$") };
pub const URL: Text =
    Text { name: "URL", doc: "An `http://` or `https://` URL without spaces or quotes.", pattern: Some("^https?://[^\\s'\"$`\\\\]+$") };
pub const SSH_KEY: Text = Text {
    name: "SSH public key",
    doc: "One line of a `.pub` file: `ssh-ed25519 AAAA… comment` (also `ssh-rsa`, `ecdsa-sha2-nistp256/384/521`, `sk-ssh-ed25519@openssh.com`).",
    pattern: Some(
        "^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|sk-ssh-ed25519@openssh\\.com) [A-Za-z0-9+/=]{16,}( [^\\r\\n]*)?$",
    ),
};
pub const CALENDAR: Text = Text {
    name: "calendar",
    doc: "A systemd calendar expression (`systemd-analyze calendar` reads it), like `*-*-* 03:00:00`, `daily` or `Sun *-*-* 05:00`.",
    pattern: Some("^[^\\r\\n\\u0000'\"\\\\]+$"),
};

pub const PROVIDER_VALUE: Text = Text {
    name: "provider value",
    doc: "A value the provider defines (server type, location, region, engine, node type): 1 to 63 of `A-Z`, `a-z`, `0-9`, `.`, `_`, `-`, starting with a letter or digit, like `cx22` or `fr-par-1`.",
    pattern: Some("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"),
};
pub const USER: Text = Text {
    name: "user name",
    doc: "A letter, then up to 62 letters, digits, `_` and `-`.",
    pattern: Some("^[A-Za-z][A-Za-z0-9_-]{0,62}$"),
};
pub const IMAGE_TAG: Text = Text {
    name: "image tag",
    doc: "A container image tag naming one release: up to 128 letters, digits, `.`, `_` and `-`, like `9.2.0` or `v4.17.3` (`latest` and a major version alone, `16`, are refused by `unpinned-image`).",
    pattern: Some("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"),
};
pub const IMAGE: Text = Text {
    name: "image reference",
    doc: "A container image: registry and repository, a tag and optionally a digest, like `docker.io/library/postgres:18.1` or `ghcr.io/org/app:1.2.3@sha256:…` (it must be pinned: `unpinned-image`).",
    pattern: Some("^[a-z0-9._/:-]+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$"),
};

/// The types [`Text`] names, in the order the reference lists them.
pub const TEXTS: [Text; 21] = [
    STRING,
    NAME,
    HOST_REF,
    DOMAIN,
    HOSTNAME,
    ADDRESS,
    CIDR,
    SOURCE,
    ALLOWED,
    ORIGIN,
    CSP,
    SIZE,
    DURATION,
    CALENDAR,
    URL,
    SSH_KEY,
    PROVIDER_VALUE,
    USER,
    IMAGE_TAG,
    IMAGE,
    S3_STATE,
];
