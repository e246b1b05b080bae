//! Egress on the host (`eval::egress` decides who is whose gateway): a private host's default
//! route through its gateway, run by cloud-init on every boot (`bootcmd`, before stage 0 fetches
//! the bundle), again by the provisioner, and every minute by a timer (systemd-networkd drops
//! routes it did not make when it restarts); on a gateway, IP forwarding and a masquerade for
//! each private network it serves, in ufw's `before.init` hook so that ufw's own start, stop,
//! reload and reset keep it, and a ufw route rule that forwards only from those networks to the
//! public interface.

use std::fmt::Write;

use crate::model::{Egress, Host};
use crate::render::quote::sh;
use crate::syntax::system::ProviderKind;

/// Hetzner's recursive resolvers, reachable through the gateway; used only as a fallback when
/// the host has no resolver of its own ("Hetzner recursive name servers",
/// https://docs.hetzner.com/networking/dns/faq/nameservers).
const HETZNER_RESOLVERS: [&str; 2] = ["185.12.64.1", "185.12.64.2"];

/// The sh that gives a private host its route out, or `None` when it needs none. Idempotent.
pub fn client_script(host: &Host) -> Option<String> {
    let Egress::Via { gateway, network, next_hop, .. } = &host.egress else { return None };
    let mut s = format!("# kiln egress: the internet through `{gateway}` (NAT) on network `{network}`.\n");
    let _ = writeln!(s, "ip route replace default via {}", sh(&next_hop.to_string()));
    if host.provider_kind == ProviderKind::Hetzner {
        let list = HETZNER_RESOLVERS.join(" ");
        let _ = write!(
            s,
            "if [ -d /run/systemd/resolve ]; then\n\tinstall -d -m 0755 /etc/systemd/resolved.conf.d\n\tprintf '[Resolve]\\nFallbackDNS={list}\\n' >/etc/systemd/resolved.conf.d/60-kiln-egress.conf\n\tsystemctl try-restart systemd-resolved || true\nelif ! grep -q '^nameserver' /etc/resolv.conf 2>/dev/null; then\n\tprintf 'nameserver %s\\n' {list} >>/etc/resolv.conf\nfi\n"
        );
    }
    Some(s)
}

/// The units that put a private host's route out back every minute, `egress/kiln-egress.*`:
/// systemd-networkd removes the routes it did not configure whenever it starts
/// (`ManageForeignRoutes=`, on by default; an upgrade of systemd restarts it), and `bootcmd` runs
/// at boot only, so the host would be cut off until it rebooted. `ip route replace` is a no-op
/// while the route is there. Empty for a host without a gateway.
pub const UNITS: [&str; 2] = ["kiln-egress.service", "kiln-egress.timer"];

pub fn emit(host: &Host) -> Vec<(String, String)> {
    let Egress::Via { gateway, next_hop, .. } = &host.egress else { return Vec::new() };
    let exec = format!("/sbin/ip route replace default via {next_hop}");
    let description = format!("keep the route out through gateway {gateway}");
    let units = super::timer_unit::TimedService {
        name: UNITS[0],
        description: &description,
        after: &[("After", "network.target")],
        exec: &exec,
        service: &[],
        timer_description: "the route out, every minute",
        schedule: &[("OnBootSec", "1min"), ("OnUnitActiveSec", "1min"), ("AccuracySec", "10s")],
    }
    .units();
    UNITS.iter().zip(units).map(|(name, text)| (format!("egress/{name}"), text)).collect()
}

/// The provisioner's egress step (before anything is installed). On Scaleway it first waits
/// for the host's pinned private addresses: the private NIC is attached after the server has
/// started (`scaleway_instance_private_nic`), and both the route out and the ports published
/// on those addresses need them.
pub fn provision(o: &mut String, host: &Host) {
    if host.provider_kind == ProviderKind::Scaleway && !host.addresses.is_empty() {
        o.push_str(
            "\n# Private network: the NIC is attached after the server starts; wait for its pinned address.\nlog 'step: private address'\n",
        );
        for ip in host.addresses.values() {
            let _ = writeln!(
                o,
                "i=0\nuntil ip -o addr show | awk '{{split($4, a, \"/\"); print a[1]}}' | grep -qxF {}; do\n\ti=$((i + 1))\n\t[ \"$i\" -le 150 ] || die {}\n\tsleep 2\ndone",
                sh(&ip.to_string()),
                sh(&format!("private address {ip} did not appear on any interface in 300 s (is the private NIC attached?)"))
            );
        }
    }
    if let Some(script) = client_script(host) {
        o.push_str("\n# Egress: no public address of its own (cloud-init runs this on every boot too).\nlog 'step: egress'\n");
        o.push_str(&script);
    }
}

/// The provisioner's NAT step on a gateway: after the packages (ufw owns `/etc/ufw`), before
/// the firewall, whose route rules name `$pub_if`.
pub fn provision_gateway(o: &mut String, host: &Host) {
    if host.nat_for.is_empty() {
        return;
    }
    let nets: Vec<String> = host.nat_for.iter().map(|(n, c)| format!("`{n}` ({c})")).collect();
    let _ = writeln!(o, "\n# NAT gateway for {}: forwarding on, masquerade out of the public interface.", nets.join(", "));
    o.push_str("log 'step: nat gateway'\n");
    o.push_str("pub_if=$(ip -o -4 route show default | awk '{print $5; exit}')\n");
    o.push_str("case $pub_if in '' | *[!A-Za-z0-9._-]*) die \"no usable default route on this NAT gateway: '$pub_if'\" ;; esac\n");
    o.push_str(
        "if put_text /etc/sysctl.d/60-kiln-nat.conf 0644 root:root 'net.ipv4.ip_forward = 1\n' || [ \"$(cat /proc/sys/net/ipv4/ip_forward)\" != 1 ]; then\n\tsysctl -q -p /etc/sysctl.d/60-kiln-nat.conf\nfi\n",
    );
    let mut start = String::new();
    let mut stop = String::new();
    for cidr in host.nat_for.values() {
        let rule = format!("POSTROUTING -s {cidr} -o @IF@ -j MASQUERADE");
        let _ = writeln!(start, "\tiptables -t nat -C {rule} 2>/dev/null || iptables -t nat -A {rule}");
        let _ = writeln!(stop, "\tiptables -t nat -D {rule} 2>/dev/null || true");
    }
    let init = format!(
        "#!/bin/sh\n# Generated by kiln: masquerade for the private networks this host is the NAT gateway of.\n# ufw runs it with start and stop around its own rules.\ncase \"$1\" in\nstart)\n{start}\t;;\nstop)\n{stop}\t;;\nesac\nexit 0\n"
    );
    let _ = writeln!(o, "nat_init=$(printf '%s' {} | sed \"s/@IF@/$pub_if/g\")", sh(&init));
    o.push_str("put_text /etc/ufw/before.init 0755 root:root \"$nat_init\n\" || true\n/etc/ufw/before.init start\n");
}

/// The ufw route rules of a gateway: forwarding from its private networks out of the public
/// interface only (so they open nothing towards the host's own containers).
pub fn ufw_route_rules(host: &Host) -> Vec<String> {
    host.nat_for
        .iter()
        .map(|(n, c)| {
            format!(
                "{} route allow out on \"$pub_if\" from {} comment {} ';'",
                super::provision::UFW_ADD,
                sh(&c.to_string()),
                sh(&format!("NAT for network {n}"))
            )
        })
        .collect()
}
