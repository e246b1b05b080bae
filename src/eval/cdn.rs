//! The address ranges a CDN connects to origins from (published by the CDN; kiln ships them as
//! data so builds stay offline and reproducible).

use crate::types::Cidr;

/// Cloudflare's published ranges (https://www.cloudflare.com/ips-v4 and ips-v6).
const CLOUDFLARE: &[&str] = &[
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "108.162.192.0/18",
    "131.0.72.0/22",
    "141.101.64.0/18",
    "162.158.0.0/15",
    "172.64.0.0/13",
    "173.245.48.0/20",
    "188.114.96.0/20",
    "190.93.240.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "2400:cb00::/32",
    "2405:8100::/32",
    "2405:b500::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
];

pub fn ranges(cdn: &str) -> Vec<Cidr> {
    match cdn {
        "cloudflare" => CLOUDFLARE.iter().filter_map(|c| Cidr::parse(c).ok()).collect(),
        _ => Vec::new(),
    }
}
