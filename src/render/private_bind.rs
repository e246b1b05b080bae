//! Ports published on a private address bind even before that address is up: the provisioner
//! turns on the kernel's non-local bind for the address families a host publishes on.
//!
//! A service published for peers on other hosts binds the host's private address (Docker's
//! `host_ip`, or a native service's listen address). At boot Docker starts the containers of
//! its last run as soon as it is up, which can be before the private network's interface has
//! its address (a DHCP lease, a NIC attached after the server started): the bind then fails with
//! "cannot assign requested address", and Docker does not try again, so the service stays down
//! until someone starts it. With `net.ipv4.ip_nonlocal_bind` (and its IPv6 twin) the bind
//! succeeds and the port answers as soon as the address arrives. The setting lives in
//! `/etc/sysctl.d`, so `systemd-sysctl` applies it at every boot, before Docker starts.

use std::fmt::Write;
use std::net::IpAddr;

use crate::model::Service;
use crate::render::quote::sh;

/// The sysctl file the provisioner writes.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/60-kiln-nonlocal-bind.conf";

/// Whether a published port binds an address that may not be up yet: not a wildcard, not
/// loopback.
fn needs_nonlocal(bind: &IpAddr) -> bool {
    !bind.is_unspecified() && !bind.is_loopback()
}

/// The sysctl keys the host's services need set to 1, `None` when every port binds a wildcard
/// or loopback (IPv4 first).
fn keys(services: &[&Service]) -> Option<Vec<&'static str>> {
    let binds: Vec<IpAddr> = services.iter().flat_map(|s| s.published.iter()).map(|p| p.bind).filter(needs_nonlocal).collect();
    let keys: Vec<&'static str> =
        [(IpAddr::is_ipv4 as fn(&IpAddr) -> bool, "net.ipv4.ip_nonlocal_bind"), (IpAddr::is_ipv6, "net.ipv6.ip_nonlocal_bind")]
            .into_iter()
            .filter(|(family, _)| binds.iter().any(family))
            .map(|(_, key)| key)
            .collect();
    (!keys.is_empty()).then_some(keys)
}

/// The provisioner's step, before Docker or any native service starts: the file written (and
/// loaded when it changed, or when the kernel's values differ from it).
pub fn provision(o: &mut String, services: &[&Service]) {
    let Some(keys) = keys(services) else { return };
    o.push_str("\n# Ports on private addresses bind even before the address is up (at boot Docker may start first).\n");
    o.push_str("log 'step: private binds'\n");
    let text: String = keys.iter().map(|k| format!("{k} = 1\n")).collect();
    let current: Vec<String> = keys.iter().map(|k| format!("[ \"$(cat /proc/sys/{})\" != 1 ]", k.replace('.', "/"))).collect();
    let _ = writeln!(
        o,
        "if put_text {file} 0644 root:root {text} || {current}; then\n\tsysctl -q -p {file}\nfi",
        file = sh(SYSCTL_FILE),
        text = sh(&text),
        current = current.join(" || "),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_specific_addresses_need_a_nonlocal_bind() {
        for (bind, needs) in
            [("10.0.0.6", true), ("fd00::6", true), ("0.0.0.0", false), ("::", false), ("127.0.0.1", false), ("::1", false)]
        {
            assert_eq!(needs_nonlocal(&bind.parse().unwrap()), needs, "{bind}");
        }
    }
}
