//! Provisioner emitter: one POSIX sh script per host that hardens the machine, installs what
//! its services need, writes the firewall, starts services in dependency order with health
//! waits and finally records the closure hash. Every step checks before it changes, so a second
//! run changes nothing. Every value is quoted with [`quote::sh`].

use std::fmt::Write;

use crate::model::{FirewallRule, Host, Service, System};
use crate::render::quote::{sh, sh_words};
use crate::render::{Artifact, KILN_ROOT, MARKER, SECRETS_DIR, SERVICE_SECRETS_DIR, service_env_file, service_secret_path};

/// The provisioner's helpers. Their comments ship in every user-data (at most 32 KiB on Hetzner,
/// 64 KiB on DigitalOcean before stage 0 is needed), so they stay short; the reasons live here:
/// - `apt_install` retries `apt-get update` for up to 5 minutes because a private host's NAT
///   gateway is up only once its own provisioner has run, and an attempt underway ends first
///   (names that do not resolve can take minutes each).
/// - `wait_for` waits for services on other hosts because the fleet's servers boot together and a
///   database may come up after its clients' host.
/// - `compose_up` looks again until its deadline because `up --wait` gives up at the first failed
///   healthcheck while Docker goes on checking: a slow first start (a database's initdb on a
///   loaded machine) can still turn healthy.
/// - `enable_now` does not enable again a unit that is `enabled` (their packages enable fail2ban
///   and Docker): for a unit that also ships a SysV script, `systemctl enable` runs
///   systemd-sysv-install, seconds on a small machine (7 s of a 26 s provisioner under TCG). Only
///   `enabled` counts (`enabled-runtime` is gone at the next boot); unlike `enable` it reloads no
///   unit files, so a drop-in written before it needs its own daemon-reload.
/// - `docker_new_enough` stops before any container starts on an engine older than 25 (API
///   1.44): the healthchecks carry `start_interval`, which Compose refuses to send to an older
///   one ("can't set healthcheck.start_interval as feature require Docker Engine v25 or later",
///   docker/compose pkg/compose/create.go before 2025). Only a docker-ce the machine already
///   had can be that old: Debian 13's and Ubuntu 24.04's docker.io are 26 and 27.
/// - `put_unit` and `reload_units`: a step writes its unit files, reloads the manager once and
///   starts them with `enable --no-reload` ([`start_units`]), because each daemon-reload runs every
///   generator and re-reads every unit: 3 s on a small machine, 8 s once its containers run (under
///   TCG; 13 reloads were 2 of maidan-cloud's 18 minutes when each file had its own).
const PRELUDE: &str = include_str!("provision.sh.in");

/// Docker's release signing key, checked before its apt repository is trusted.
const DOCKER_KEY_FINGERPRINT: &str = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88";

pub fn emit(sys: &System, host: &Host, payload: &[Artifact]) -> String {
    let services: Vec<&Service> = host.services.iter().map(|n| &sys.services[n]).collect();
    let containers = services.iter().any(|s| s.container.is_some());
    let mut o = String::new();
    let _ = writeln!(o, "#!/bin/sh");
    let _ = writeln!(o, "# kiln {} provisioner for host `{}` of system `{}`.", crate::pipeline::KILN_VERSION, host.name, sys.name);
    let _ = writeln!(o, "# Generated: do not edit. Idempotent: a second run changes nothing.");
    let _ = writeln!(o, "# Every literal below is single-quoted on purpose: nothing in it may expand.");
    let _ = writeln!(o, "# shellcheck disable=SC2016");
    let _ = writeln!(o, "KILN_ROOT={}", sh(KILN_ROOT));
    o.push_str(PRELUDE);

    super::egress::provision(&mut o, host);
    super::data_volume::provision(&mut o, sys, host);
    packages(&mut o, host, &services, containers, payload);
    super::data_volume::provision_owners(&mut o, sys, host);
    users(&mut o, sys);
    sshd(&mut o, host);
    upgrades(&mut o);
    fail2ban(&mut o, host, ban_edge(host, payload));
    super::egress::provision_gateway(&mut o, host);
    super::private_bind::provision(&mut o, &services);
    firewall(&mut o, host, containers);
    if containers {
        o.push_str("\n# Docker engine.\nenable_now docker\ndocker_new_enough\n");
    }
    secrets(&mut o, sys, host, &services);
    files(&mut o, &services, payload);
    start(&mut o, sys, &services);
    backups(&mut o, payload);
    super::jobs::provision(&mut o, sys, host);
    watchdog(&mut o, payload);
    egress_timer(&mut o, payload);

    o.push_str("\n# Done: record what this host runs.\n");
    let _ = writeln!(o, "install -d -m 0755 {}", sh(parent(MARKER)));
    let _ = writeln!(o, "put_text {} 0644 root:root \"$closure\n\" || true", sh(MARKER));
    o.push_str("log \"host is at closure $closure\"\n");
    o
}

fn parent(p: &str) -> &str {
    p.rsplit_once('/').map(|(a, _)| a).unwrap_or("/")
}

fn packages(o: &mut String, host: &Host, services: &[&Service], containers: bool, payload: &[Artifact]) {
    o.push_str("\n# Packages.\nlog 'step: packages'\n");
    let mut pkgs: Vec<String> =
        ["ca-certificates", "ufw", "fail2ban", "python3-systemd", "unattended-upgrades"].iter().map(|s| s.to_string()).collect();
    let has = |path: &str| payload.iter().any(|a| a.path == path);
    if has(super::backup::SCRIPT) {
        pkgs.push("restic".into());
    }
    // The backup notice posts with curl, which a minimal image need not have.
    if has(super::backup::NOTICE_SCRIPT) {
        pkgs.push("curl".into());
    }
    for s in services {
        if let Some(n) = &s.native {
            pkgs.extend(n.packages.iter().cloned());
        }
    }
    pkgs.sort();
    pkgs.dedup();
    let _ = writeln!(o, "apt_install {}", sh_words(&pkgs));
    if !containers {
        return;
    }
    if host.image.docker_method == "docker-apt" {
        let _ = writeln!(
            o,
            r#"if [ ! -f /etc/apt/sources.list.d/docker.sources ]; then
	apt_install curl gnupg
	install -d -m 0755 /etc/apt/keyrings
	curl -fsSL https://download.docker.com/linux/debian/gpg -o /etc/apt/keyrings/docker.asc
	gpg --show-keys --with-colons /etc/apt/keyrings/docker.asc | grep -q {fp} || die "unexpected Docker signing key"
	put_text /etc/apt/sources.list.d/docker.sources 0644 root:root {src} || true
fi"#,
            fp = sh(&format!("fpr:::::::::{DOCKER_KEY_FINGERPRINT}:")),
            src = sh(&format!(
                "Types: deb\nURIs: https://download.docker.com/linux/debian\nSuites: {}\nComponents: stable\nSigned-By: /etc/apt/keyrings/docker.asc\n",
                host.image.codename
            )),
        );
    }
    if host.image.docker_method != "distro" {
        let _ = writeln!(o, "apt_install {}", sh_words(&host.image.docker_packages));
        return;
    }
    // A machine that runs Docker's own docker-ce (download.docker.com; an existing server, a
    // custom image) keeps it: the distribution's docker.io conflicts with it (Docker's install
    // guide removes docker.io, containerd and runc first), and replacing it would stop every
    // container on the machine. It is used as it is if it has Compose v2.
    let _ = writeln!(
        o,
        r#"if installed docker-ce; then
	docker compose version >/dev/null 2>&1 ||
		die "docker-ce (Docker's own package) is installed without Compose v2: install docker-compose-plugin from the same repository (the provisioner does not replace docker-ce with {}, which would stop every container)"
	log "docker-ce is installed: using it, not {}"
else
	apt_install {}
fi"#,
        host.image.docker_packages.join(" "),
        host.image.docker_packages.join(" "),
        sh_words(&host.image.docker_packages)
    );
}

fn users(o: &mut String, sys: &System) {
    o.push_str("\n# Admins: key-only logins with sudo.\nlog 'step: admins'\n");
    for a in &sys.admins {
        let name = sh(&a.name);
        let _ = writeln!(o, "id -u {name} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --groups sudo {name}");
        let _ = writeln!(o, "passwd --lock {name} >/dev/null");
        let _ = writeln!(o, "install -d -m 0700 -o {name} -g {name} /home/{}/.ssh", a.name);
        let keys: String = a.keys.iter().map(|k| format!("{k}\n")).collect();
        let _ = writeln!(
            o,
            "put_text /home/{}/.ssh/authorized_keys 0600 {} {} || true",
            a.name,
            sh(&format!("{}:{}", a.name, a.name)),
            sh(&keys)
        );
        let _ = writeln!(
            o,
            "put_text /etc/sudoers.d/{} 0440 root:root {} || true",
            sh(&format!("90-kiln-{}", a.name)),
            sh(&format!("{} ALL=(ALL) NOPASSWD:ALL\n", a.name))
        );
    }
}

fn sshd(o: &mut String, host: &Host) {
    o.push_str("\n# sshd: keys only, no root, no passwords (first match wins, so this file sorts first).\nlog 'step: sshd'\n");
    // Passwords only where an `[allow.password-ssh]` waived the rule, with its reason.
    let passwords = if host.password_ssh { "yes" } else { "no" };
    let mut conf = format!(
        "PasswordAuthentication {passwords}\nKbdInteractiveAuthentication no\nPermitRootLogin no\nPubkeyAuthentication yes\nPermitEmptyPasswords no\nX11Forwarding no\nMaxAuthTries 3\n"
    );
    // `ssh_port`: Debian's sshd_config includes the drop-ins before its own (commented) Port.
    // sshd re-executes on reload and binds the new port; where ssh.socket is what listens
    // (Ubuntu 22.10+), its generator reads the port at daemon-reload and the socket restarts.
    let port = host.ssh_port != 22;
    if port {
        let _ = writeln!(conf, "Port {}", host.ssh_port);
    }
    let socket = if port {
        "\n\tif systemctl is-active --quiet ssh.socket; then systemctl daemon-reload; systemctl restart ssh.socket; fi"
    } else {
        ""
    };
    let _ = writeln!(
        o,
        "if put_text /etc/ssh/sshd_config.d/00-kiln.conf 0644 root:root {}; then\n\tsshd -t || die \"sshd rejects its configuration\"{socket}\n\tsystemctl reload ssh 2>/dev/null || systemctl reload sshd 2>/dev/null || true\nfi",
        sh(&conf)
    );
}

fn upgrades(o: &mut String) {
    o.push_str("\n# Unattended security upgrades.\nlog 'step: unattended upgrades'\n");
    let conf = "APT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\n";
    let _ = writeln!(o, "put_text /etc/apt/apt.conf.d/20auto-upgrades 0644 root:root {} || true", sh(conf));
}

/// The edge whose log `fail2ban_http` watches on this host, if any.
pub fn ban_edge(host: &Host, payload: &[Artifact]) -> Option<BanEdge> {
    if !host.fail2ban_http {
        return None;
    }
    if payload.iter().any(|a| a.path == "Caddyfile") {
        Some(BanEdge::Caddy)
    } else if payload.iter().any(|a| a.path == crate::render::TRAEFIK_STATIC) {
        Some(BanEdge::Traefik)
    } else {
        None
    }
}

/// The fail2ban filter for clients failing the edge's authentication (in the payload).
pub const FAIL2BAN_HTTP_FILTER: &str = "fail2ban/kiln-http.conf";
/// The journal tag of a containerised edge's log (`fail2ban_http`).
pub const EDGE_LOG_TAG: &str = "kiln-edge";

/// Which edge a host's HTTP bans watch.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BanEdge {
    /// Native Caddy: JSON access log in the journal of caddy.service.
    Caddy,
    /// Traefik in a container: JSON access log in the journal under [`EDGE_LOG_TAG`].
    Traefik,
}

/// The filter: failed logins, by client address as the edge logs it — a 401 answer to a request
/// that carried credentials, as fail2ban's stock `traefik-auth` filter counts them. A 401 to a
/// request without credentials is the challenge every WebDAV and sync client gets before it
/// authenticates, and a 403 is an application refusing a signed-in user: counting those banned
/// offices full of syncing devices. Traefik logs the Basic user name in `ClientUsername` (`-`
/// without one); Caddy logs request headers with `Authorization` present (its value redacted).
pub fn fail2ban_http_filter(edge: BanEdge) -> String {
    let (what, regex) = match edge {
        BanEdge::Caddy => ("Caddy", r#""remote_ip":"<HOST>".*"headers":\{[^}]*"Authorization":\[.*"status":401\b"#),
        BanEdge::Traefik => ("Traefik", r#""ClientHost":"<HOST>".*"ClientUsername":"(?!-")[^"]+".*"DownstreamStatus":401\b"#),
    };
    format!(
        "# Generated by kiln: failed logins, 401 answers to requests with credentials ({what} JSON access log).\n[Definition]\nfailregex = {regex}\nignoreregex =\n"
    )
}

fn fail2ban(o: &mut String, host: &Host, http: Option<BanEdge>) {
    o.push_str("\n# fail2ban: ban repeated SSH failures (journal backend: no auth.log on minimal images).\nlog 'step: fail2ban'\n");
    let mut conf = "[DEFAULT]\nbantime = 1h\nfindtime = 10m\nmaxretry = 5\nbackend = systemd\n\n[sshd]\nenabled = true\n".to_string();
    if host.ssh_port != 22 {
        // The stock jail bans on `port = ssh` (22): the ban must close the port sshd is on.
        let _ = writeln!(conf, "port = {}", host.ssh_port);
    }
    if let Some(edge) = http {
        // `fail2ban_http`: also ban clients whose logins keep failing at the edge. A
        // containerised edge is reached through Docker's forwarding: bans go in DOCKER-USER.
        let (matcher, chain) = match edge {
            BanEdge::Caddy => ("_SYSTEMD_UNIT=caddy.service".to_string(), ""),
            BanEdge::Traefik => (format!("CONTAINER_TAG={EDGE_LOG_TAG}"), "chain = DOCKER-USER\n"),
        };
        let _ = write!(
            conf,
            "\n[kiln-http]\nenabled = true\nfilter = kiln-http\njournalmatch = {matcher}\nport = http,https\n{chain}maxretry = 10\n"
        );
        let _ = writeln!(
            o,
            "if put {} /etc/fail2ban/filter.d/kiln-http.conf 0644 root:root; then systemctl restart fail2ban 2>/dev/null || true; fi",
            sh(&format!("{KILN_ROOT}/{FAIL2BAN_HTTP_FILTER}"))
        );
    }
    let _ = writeln!(
        o,
        "if put_text /etc/fail2ban/jail.d/kiln.local 0644 root:root {}; then\n\tsystemctl restart fail2ban\nfi\nenable_now fail2ban",
        sh(&conf)
    );
}

/// One rule's ufw command, added to the firewall step's batch (`set -- "$@" ... ';'`, run by
/// `ufw_batch`). Several sources become a loop over one of the step's source lists
/// (`$sources_N`, numbered from 1 in `lists`): the Cloudflare edge ranges, say, are written once
/// for all the ports they reach.
fn ufw_command(r: &FirewallRule, route: bool, lists: &[Vec<String>]) -> String {
    let verb = if route { "route allow" } else { "allow" };
    // ufw refuses quotes in comments: keep a plain subset of the reason (without `;`, which
    // ends a command of the batch when it stands alone).
    let comment: String = r.reason.chars().filter(|c| c.is_ascii_alphanumeric() || " ._:/()=+@,-".contains(*c)).take(200).collect();
    let comment = sh(&comment);
    let proto = r.protocol.name();
    // Forwarded (Docker) traffic is matched after DNAT, on the container's port.
    let port = if route { r.forwarded_port.unwrap_or(r.port) } else { r.port };
    match r.sources.as_slice() {
        [] => format!("{UFW_ADD} {verb} proto {proto} to any port {port} comment {comment} ';'"),
        [one] => format!("{UFW_ADD} {verb} proto {proto} from {} to any port {port} comment {comment} ';'", sh(&one.to_string())),
        many => {
            let list: Vec<String> = many.iter().map(|c| c.to_string()).collect();
            let n = lists.iter().position(|l| *l == list).expect("source_lists holds every list of several sources") + 1;
            format!(
                "for src in $sources_{n}; do {UFW_ADD} {verb} proto {proto} from \"$src\" to any port {port} comment {comment} ';'; done"
            )
        }
    }
}

/// The distinct lists of several sources among the host's rules, in the order they first appear.
fn source_lists(host: &Host) -> Vec<Vec<String>> {
    let mut lists: Vec<Vec<String>> = Vec::new();
    for r in host.firewall.iter().filter(|r| r.sources.len() > 1) {
        let list: Vec<String> = r.sources.iter().map(|c| c.to_string()).collect();
        if !lists.contains(&list) {
            lists.push(list);
        }
    }
    lists
}

/// What adds a ufw command to the firewall step's batch: its words, then `;`.
pub(crate) const UFW_ADD: &str = "set -- \"$@\"";

/// Docker publishes ports through FORWARD, past ufw's INPUT rules: send new forwarded
/// connections through ufw's route rules and drop the rest. ufw-init restores after.rules
/// before user.rules, which declares `ufw-user-forward`: declared here too, or the restore
/// (and so `ufw enable`) fails with "Chain 'ufw-user-forward' does not exist".
const DOCKER_USER_RULES: &str = "\n# BEGIN kiln docker\n*filter\n:DOCKER-USER - [0:0]\n:ufw-user-forward - [0:0]\n-F DOCKER-USER\n-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n-A DOCKER-USER -i docker0 -j RETURN\n-A DOCKER-USER -i br-+ -j RETURN\n-A DOCKER-USER -j ufw-user-forward\n-A DOCKER-USER -m conntrack --ctstate NEW -j DROP\n-A DOCKER-USER -j RETURN\nCOMMIT\n# END kiln docker\n";

fn firewall(o: &mut String, host: &Host, containers: bool) {
    o.push_str("\n# Firewall: default deny; each rule names the connection that needs it.\nlog 'step: firewall'\n");
    let lists = source_lists(host);
    // Addresses and networks only: nothing in them that word splitting or globbing would change.
    let mut lines: Vec<String> = lists.iter().enumerate().map(|(i, l)| format!("sources_{}={}", i + 1, sh(&l.join(" ")))).collect();
    lines.push(format!("{UFW_ADD} default deny incoming ';'"));
    lines.push(format!("{UFW_ADD} default allow outgoing ';'"));
    for r in &host.firewall {
        lines.push(ufw_command(r, false, &lists));
        if r.forwarded {
            lines.push(ufw_command(r, true, &lists));
        }
    }
    lines.extend(super::egress::ufw_route_rules(host));
    // The rules are applied again only when they differ from what this host last applied.
    let stamp = crate::render::hex(&<sha2::Sha256 as sha2::Digest>::digest(lines.concat().as_bytes()));
    if containers {
        // `ufw reset` puts the stock after.rules back: the block goes in after a reset, and a
        // missing block means the rules are applied again.
        o.push_str("grep -q 'BEGIN kiln docker' /etc/ufw/after.rules || rm -f /var/lib/kiln/ufw.rules\n");
    }
    let _ = writeln!(o, "ufw_stamp={stamp}");
    if !lists.is_empty() {
        o.push_str("# shellcheck disable=SC2086 # $sources_N: a list of addresses, split into words\n");
    }
    o.push_str("if [ \"$(cat /var/lib/kiln/ufw.rules 2>/dev/null || true)\" != \"$ufw_stamp\" ] || ! ufw status | grep -q '^Status: active'; then\n");
    o.push_str("\t[ ! -f /var/lib/kiln/ufw.rules ] || ufw --force reset >/dev/null\n");
    if containers {
        let _ = writeln!(
            o,
            "\tgrep -q 'BEGIN kiln docker' /etc/ufw/after.rules || printf '%s' {} >>/etc/ufw/after.rules",
            sh(DOCKER_USER_RULES)
        );
    }
    // One ufw process for every command: each `ufw` is a Python start, seconds on a small VM.
    o.push_str("\tset --\n");
    for l in &lines {
        let _ = writeln!(o, "\t{l}");
    }
    let _ = writeln!(o, "\t{UFW_ADD} --force enable ';'\n\tufw_batch \"$@\"");
    o.push_str("\tinstall -d -m 0755 /var/lib/kiln\n");
    o.push_str("\tprintf '%s\\n' \"$ufw_stamp\" >/var/lib/kiln/ufw.rules\n");
    o.push_str("\tlog \"firewall rules written\"\n");
    o.push_str("fi\n");
}

/// How long the provisioner waits for its secrets, in seconds.
const SECRETS_WAIT: u32 = 30 * 60;

fn secrets(o: &mut String, sys: &System, host: &Host, services: &[&Service]) {
    // The services' secrets and the backup's: exactly what `kiln boot` delivers.
    let names = sys.host_secrets(host);
    if names.is_empty() {
        return;
    }
    o.push_str("\n# Secrets: delivered at deploy time into a root-only directory, never in the payload;\n");
    o.push_str("# each service gets its own copy, readable only by the user it runs as.\nlog 'step: secrets'\n");
    let _ = writeln!(o, "install -d -m 0700 -o root -g root {} {}", sh(SECRETS_DIR), sh(SERVICE_SECRETS_DIR));
    // A cloud host runs this from cloud-init before `kiln deploy` has delivered its secrets:
    // wait for them (bounded, saying what is missing every 30 s) instead of failing.
    o.push_str("waited=0\nwhile :; do\n\tmissing=\"\"\n");
    for name in &names {
        let _ = writeln!(o, "\t[ -s {} ] || missing=\"$missing {name}\"", sh(&format!("{SECRETS_DIR}/{name}")));
    }
    o.push_str("\t[ -n \"$missing\" ] || break\n");
    let _ = writeln!(
        o,
        "\t[ \"$waited\" -lt {SECRETS_WAIT} ] || die \"secrets missing from {SECRETS_DIR} after {} minutes:$missing\"",
        SECRETS_WAIT / 60
    );
    let _ =
        writeln!(o, "\t[ $((waited % 30)) -ne 0 ] || log \"waiting for secrets in {SECRETS_DIR} (kiln deploy delivers them):$missing\"");
    o.push_str("\tsleep 5\n\twaited=$((waited + 5))\ndone\n");
    for name in &names {
        let _ = writeln!(o, "chmod 0400 {}", sh(&format!("{SECRETS_DIR}/{name}")));
    }
    for s in services {
        for u in &s.secrets {
            let owner = u.uid.map(|u| format!("{u}:{u}")).unwrap_or_else(|| "root:root".into());
            let dest = if s.native.is_some() { u.target.clone() } else { service_secret_path(&s.name, &u.secret) };
            let _ = writeln!(o, "put {} {} 0400 {owner} || true", sh(&format!("{SECRETS_DIR}/{}", u.secret)), sh(&dest));
        }
    }
    env_secrets(o, services);
}

/// The shell function that writes a Compose env file from secret files (`env_secrets`).
pub const ENV_SECRETS_FN: &str = include_str!("env_secrets.sh.in");

/// Secrets a container reads only from its environment (`[container.env_secrets]`): one
/// root-only env file per service, written from the delivered secrets, named by the Compose
/// file's `env_file`; the values never pass through kiln.
fn env_secrets(o: &mut String, services: &[&Service]) {
    let with: Vec<(&str, &std::collections::BTreeMap<String, String>)> = services
        .iter()
        .filter_map(|s| s.container.as_ref().filter(|c| !c.env_secrets.is_empty()).map(|c| (s.name.as_str(), &c.env_secrets)))
        .collect();
    if with.is_empty() {
        return;
    }
    o.push_str(ENV_SECRETS_FN);
    for (name, vars) in with {
        let mut args = vec![sh(&service_env_file(name))];
        for (var, secret) in vars {
            args.push(sh(var));
            args.push(sh(&format!("{SECRETS_DIR}/{secret}")));
        }
        let _ = writeln!(o, "env_secrets {} || true", args.join(" "));
    }
}

fn files(o: &mut String, services: &[&Service], payload: &[Artifact]) {
    let natives: Vec<&&Service> = services.iter().filter(|s| s.native.is_some()).collect();
    let caddy = payload.iter().any(|a| a.path == "Caddyfile");
    if natives.is_empty() && !caddy {
        return;
    }
    o.push_str("\n# Configuration of native services.\nlog 'step: configuration'\n");
    for s in &natives {
        let unit = s.native.as_ref().and_then(|n| n.unit.clone());
        for f in &s.files {
            let src = sh(&format!("{KILN_ROOT}/files/{}/{}", s.name, f.name));
            let mut then = Vec::new();
            if f.target.starts_with("/etc/systemd/") || f.target.starts_with("/lib/systemd/") {
                then.push("systemctl daemon-reload".to_string());
            }
            // try-restart fails for a unit whose file is not installed yet (a later file)
            then.push(
                unit.as_ref().map(|u| format!("{{ systemctl try-restart {} 2>/dev/null || true; }}", sh(u))).unwrap_or_else(|| ":".into()),
            );
            let _ = writeln!(o, "if put {src} {} {:04o} root:root; then {}; fi", sh(&f.target), f.mode, then.join("; "));
        }
    }
    if caddy {
        o.push_str(
            // Caddy's verdict (its `Error:` line, without the JSON log lines) goes to the log before
            // the provisioner stops: the reason is the first thing an operator needs.
            "if put \"$KILN_ROOT/Caddyfile\" /etc/caddy/Caddyfile 0644 root:root; then\n\tif ! caddy_out=$(caddy validate --adapter caddyfile --config /etc/caddy/Caddyfile 2>&1); then\n\t\tprintf '%s\\n' \"$caddy_out\" | grep -v '^{' >&2 || :\n\t\tdie \"caddy rejects /etc/caddy/Caddyfile\"\n\tfi\n\tsystemctl reload-or-restart caddy\nfi\n",
        );
    }
}

/// Installs the derived backup units and starts their timers (the first backup runs on schedule).
fn backups(o: &mut String, payload: &[Artifact]) {
    if !payload.iter().any(|a| a.path == super::backup::SCRIPT) {
        return;
    }
    o.push_str("\n# Backups: restic on a timer, dumps first; a second timer checks the repository.\nlog 'step: backups'\n");
    for unit in super::backup::UNITS {
        put_unit(o, &format!("backup/{unit}"), unit);
    }
    // A host no Prometheus watches tells the receivers itself (`eval::backup_notice`).
    if payload.iter().any(|a| a.path == super::backup::NOTICE_SCRIPT) {
        put_unit(o, &format!("backup/{}", super::backup::NOTICE_UNIT), super::backup::NOTICE_UNIT);
    }
    // The restore drill's timer where `[backup] drill` schedules it; retired where it no longer does.
    let [service, timer] = super::backup::DRILL_UNITS;
    let drill = payload.iter().any(|a| a.path == format!("backup/{timer}"));
    if drill {
        for unit in super::backup::DRILL_UNITS {
            put_unit(o, &format!("backup/{unit}"), unit);
        }
    } else {
        let _ = writeln!(
            o,
            "if [ -e {t} ]; then systemctl disable --now {timer} >/dev/null 2>&1 || true; rm -f {t} {s}; units_changed=1; fi",
            t = sh(&format!("/etc/systemd/system/{timer}")),
            s = sh(&format!("/etc/systemd/system/{service}")),
            timer = sh(timer)
        );
    }
    o.push_str("reload_units\n");
    let mut timers = vec!["kiln-backup.timer", "kiln-backup-check.timer"];
    if drill {
        timers.push(timer);
    }
    start_units(o, &timers);
}

/// `put_unit`: the payload's file `path` (under the payload's root) into /etc/systemd/system as
/// `unit`, for the step's one `reload_units`.
pub(super) fn put_unit(o: &mut String, path: &str, unit: &str) {
    let _ = writeln!(o, "put_unit {} {}", sh(&format!("{KILN_ROOT}/{path}")), sh(unit));
}

/// Enables and starts `units` after the step's `reload_units` has loaded them: `--no-reload`, as
/// `enable` would otherwise reload the manager once more.
pub(super) fn start_units(o: &mut String, units: &[&str]) {
    let units: Vec<String> = units.iter().map(|u| sh(u)).collect();
    let _ = writeln!(o, "systemctl --no-reload enable --now {} >/dev/null", units.join(" "));
}

/// Installs the container watchdog's units and starts its timer (`render::watchdog`).
fn watchdog(o: &mut String, payload: &[Artifact]) {
    if payload.iter().any(|a| a.path == super::watchdog::SCRIPT) {
        timer(o, "Watchdog: restart containers that stay unhealthy (Docker does not).", "watchdog", super::watchdog::UNITS);
    }
}

/// Installs a private host's route-out timer and starts it (`render::egress::emit`).
fn egress_timer(o: &mut String, payload: &[Artifact]) {
    let [service, _] = super::egress::UNITS;
    if payload.iter().any(|a| a.path == format!("egress/{service}")) {
        timer(o, "Egress: the route out, put back every minute (networkd drops it when it restarts).", "egress", super::egress::UNITS);
    }
}

/// A step installing a service and its timer from the payload's `dir` and starting the timer.
fn timer(o: &mut String, comment: &str, dir: &str, [service, timer]: [&str; 2]) {
    let _ = writeln!(o, "\n# {comment}\nlog {}", sh(&format!("step: {dir}")));
    for unit in [service, timer] {
        put_unit(o, &format!("{dir}/{unit}"), unit);
    }
    o.push_str("reload_units\n");
    start_units(o, &[timer]);
}

fn start(o: &mut String, sys: &System, services: &[&Service]) {
    if services.is_empty() {
        return;
    }
    o.push_str("\n# Services in groups (eval::order::start_groups): a group starts once every service it\n# waits for is healthy; its containers start together and are all healthy before the next.\nlog 'step: services'\n");
    for group in crate::eval::order::start_groups(services) {
        remote_waits(o, sys, &group);
        let containers: Vec<&&Service> = group.iter().filter(|s| s.container.is_some()).collect();
        if !containers.is_empty() {
            for s in &containers {
                super::jobs::volume_owners(o, sys, s);
            }
            let names: Vec<String> = containers.iter().map(|s| sh(&s.name)).collect();
            let _ = writeln!(o, "compose_up {COMPOSE_UP_SECONDS} {}", names.join(" "));
            for s in &containers {
                let _ = writeln!(o, "log {}", sh(&format!("{} is up", s.name)));
            }
        }
        for s in group.iter().filter(|s| s.container.is_none()) {
            let Some(n) = &s.native else { continue };
            if let Some(unit) = &n.unit {
                let _ = writeln!(o, "systemctl enable --now {} >/dev/null", sh(unit));
            }
            if let Some(h) = &s.health {
                let cmd = match h.test.first().map(String::as_str) {
                    Some("CMD-SHELL") => format!("sh -c {}", sh(&h.test[1..].join(" "))),
                    _ => sh_words(&h.test[1.min(h.test.len())..]),
                };
                // Probed every start interval (Docker's pace while a container starts) for the
                // whole wait, as long as Docker would wait: the start period and `retries` intervals.
                let pause = h.start_interval().0;
                let budget = h.start_period.0 + u64::from(h.retries.max(1)) * h.interval.0.max(1);
                let tries = budget.div_ceil(pause);
                let _ = writeln!(o, "wait_healthy {} {tries} {pause} {cmd}", sh(&s.name));
            }
        }
    }
}

/// How long a group's containers have to become healthy (10 minutes).
const COMPOSE_UP_SECONDS: u32 = 600;

/// How long a group waits for a service on another host it connects to (20 minutes: a fleet
/// booting together, under emulation too).
const REMOTE_WAIT_SECONDS: u32 = 1200;

/// Before a group starts: a wait for each service on another host of the system that its
/// services connect to over TCP and wait for (not a derived scrape, not `wait = false`, not a
/// public route), by address and port.
fn remote_waits(o: &mut String, sys: &System, group: &[&Service]) {
    let mut waits: std::collections::BTreeMap<(&str, u16), String> = std::collections::BTreeMap::new();
    for d in group.iter().flat_map(|s| &s.deps) {
        if d.same_host || d.derived || d.no_wait || d.route.is_some() || d.protocol != crate::syntax::module::Protocol::Tcp {
            continue;
        }
        let what = match sys.services.get(&d.service) {
            Some(s) => format!("{} on {}", d.service, s.host),
            None => d.service.clone(),
        };
        waits.entry((d.address.as_str(), d.port)).or_insert(what);
    }
    for ((address, port), what) in waits {
        let _ = writeln!(o, "wait_for {} {} {port} {REMOTE_WAIT_SECONDS}", sh(&what), sh(address));
    }
}
