//! A fleet boot's stand-in for a managed database (`[databases.NAME]`, a PostgreSQL the
//! provider runs on a private network): one more small VM on that network's segment, never part
//! of kiln's artifacts. It runs Debian's PostgreSQL (the distribution's version, with the
//! snakeoil certificate Debian makes at install, so clients' `sslmode=require` holds) and makes
//! every client's role (with its delivered password secret) and database, as OpenTofu would on
//! the provider; and it answers the database's name on the private network
//! (`<instance>.<network>.internal`, [`crate::model::ManagedDatabase::host`]) with dnsmasq,
//! forwarding every other name to its own uplink's resolver, as the provider's VPC DNS does.
//! The hosts on that network take it as their only resolver (their uplink's DNS is not used):
//! Docker's embedded DNS forwards to the host's resolvers in order and stops at the first
//! "no such name", so a second resolver that does not know the `.internal` name would hide it.
//!
//! What it proves: the clients find the database by the name kiln wrote into their
//! configuration, reach it across the private network through their hosts' firewalls, and log
//! in over TLS with the password secret delivered to them. What it does not: the provider's
//! engine version, its backups, its access rules.
//!
//! Its setup runs in cloud-init's `runcmd`, reads the passwords from the secrets delivered to
//! it (`/etc/kiln/secrets`, as on a host), logs in once as every client over TLS at its own
//! address, and only then writes the closure marker (the sha256 of its user-data), so that the
//! fleet's report says `completed` exactly when the database is ready for every client.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::{ManagedDatabase, System};
use crate::render::quote::sh;

/// The image a stand-in boots (its setup installs Debian's packages).
pub const IMAGE: &str = "debian-13";
/// Its memory, in MiB: PostgreSQL with a handful of idle clients.
pub const MEMORY_MIB: u32 = 1024;

/// One managed database's stand-in, as planned on its network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatabaseStandIn {
    /// The `[databases.NAME]` it stands for.
    pub database: String,
    /// The VM's name in the fleet (no host of a system has a dot in its name).
    pub machine: String,
    pub network: String,
    /// The name its clients reach it by.
    pub dns_name: String,
    /// Its address on the network (the highest one no host of the system holds) and the
    /// network's prefix length.
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub cidr: String,
}

/// The machine name of database `name`'s stand-in.
pub fn machine_name(name: &str) -> String {
    format!("{name}.database")
}

/// The stand-in for `db`, if it is a PostgreSQL on `network` (an IPv4 network of the system)
/// with a name its clients use; otherwise why the lab has none.
pub fn plan(sys: &System, db: &ManagedDatabase) -> Result<Option<DatabaseStandIn>, String> {
    let (Some(network), Some(dns_name)) = (&db.network, &db.host) else { return Ok(None) };
    if !db.engine.starts_with("PostgreSQL") {
        return Err(format!("database `{}`: the lab stands in for PostgreSQL only, not {}", db.name, db.engine));
    }
    if !dns_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err(format!("database `{}`: `{dns_name}` is not a name dnsmasq can answer", db.name));
    }
    let cidr = sys.networks[network];
    let std::net::IpAddr::V4(net) = cidr.network() else {
        return Err(format!("database `{}`: network `{network}` is IPv6; the lab's stand-in needs IPv4", db.name));
    };
    let held: BTreeSet<std::net::IpAddr> = sys.hosts.values().filter_map(|h| h.addresses.get(network).copied()).collect();
    let size = 1u32.checked_shl(32 - u32::from(cidr.prefix)).unwrap_or(0);
    // The highest usable address down from the broadcast's neighbour, skipping hosts' addresses.
    let base = u32::from(net);
    let address = (1..size.saturating_sub(1))
        .rev()
        .map(|i| Ipv4Addr::from(base + i))
        .find(|a| !held.contains(&std::net::IpAddr::V4(*a)))
        .ok_or_else(|| format!("database `{}`: no free address on network `{network}` for its stand-in", db.name))?;
    Ok(Some(DatabaseStandIn {
        database: db.name.clone(),
        machine: machine_name(&db.name),
        network: network.clone(),
        dns_name: dns_name.clone(),
        address,
        prefix: cidr.prefix,
        cidr: cidr.to_string(),
    }))
}

/// The secrets the stand-in needs: every client's password secret.
pub fn secrets(db: &ManagedDatabase) -> BTreeSet<String> {
    db.clients.iter().map(|c| c.secret.clone()).collect()
}

/// The dnsmasq configuration: the database's name, and every other name forwarded to `upstream`.
fn dnsmasq_conf(s: &DatabaseStandIn, upstream: Ipv4Addr) -> String {
    format!(
        "# kiln boot: the managed database's name on network `{network}` (the provider's VPC DNS, stood in for)\n\
         bind-interfaces\nlisten-address={addr}\nno-resolv\nserver={upstream}\naddress=/{name}/{addr}\n",
        network = s.network,
        addr = s.address,
        name = s.dns_name,
    )
}

/// The setup script: install, configure, make each client's role and database, check each
/// login over TLS, write the marker. Failures print `kiln: error:` lines, which the fleet's
/// report picks up as a provisioner's.
fn setup_script(s: &DatabaseStandIn, db: &ManagedDatabase, marker: &str) -> String {
    let mut o = String::new();
    o.push_str(
        r#"#!/bin/sh
# kiln boot: a managed database's stand-in (src/boot/stand_in.rs); not a kiln artifact.
set -u
fail() { echo "kiln: error: database stand-in: $*"; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -q || fail "apt-get update failed"
apt-get install -y -q postgresql ssl-cert dnsmasq || fail "apt-get install postgresql ssl-cert dnsmasq failed"
conf=$(ls -d /etc/postgresql/*/main | head -n 1)
[ -d "$conf" ] || fail "no PostgreSQL cluster in /etc/postgresql"
printf "listen_addresses = '*'\nssl = on\n" >"$conf/conf.d/kiln-lab.conf"
"#,
    );
    o.push_str(&format!("printf 'hostssl all all %s scram-sha-256\\n' {} >>\"$conf/pg_hba.conf\"\n", sh(&s.cidr)));
    o.push_str(
        r#"systemctl restart postgresql || fail "PostgreSQL did not restart"
i=0
until pg_isready -q -h 127.0.0.1; do
  i=$((i + 1)); [ "$i" -lt 60 ] || fail "PostgreSQL is not ready"; sleep 1
done
# psql quotes the names (%I) and the password (%L); the password reaches psql in its environment.
client() {
  KILN_PW=$(cat "/etc/kiln/secrets/$3") || fail "secret $3 was not delivered"
  KILN_PW=$KILN_PW runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -v role="$1" -v db="$2" <<'SQL' || fail "role $1, database $2"
\getenv pw KILN_PW
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'role', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
}
login() {
  got=$(PGPASSWORD=$(cat "/etc/kiln/secrets/$3") psql "host=$4 dbname=$2 user=$1 sslmode=require" -Atc 'select current_user') \
    || fail "no TLS password login as $1 to $2"
  [ "$got" = "$1" ] || fail "logged in as $got, not $1"
}
"#,
    );
    let mut made = BTreeSet::new();
    for c in &db.clients {
        if made.insert((&c.role, &c.database)) {
            o.push_str(&format!("client {} {} {}\n", sh(&c.role), sh(&c.database), sh(&c.secret)));
        }
    }
    for c in &db.clients {
        o.push_str(&format!("login {} {} {} {}\n", sh(&c.role), sh(&c.database), sh(&c.secret), sh(&s.address.to_string())));
    }
    o.push_str(&format!(
        "systemctl is-active --quiet dnsmasq || systemctl restart dnsmasq || fail \"dnsmasq is not running\"\nmkdir -p \"$(dirname {m})\"\nprintf '%s\\n' \"$1\" >{m}\n",
        m = sh(marker)
    ));
    o
}

/// The stand-in's cloud-config (without its marker's value, which is this text's hash: the
/// setup takes it as its argument from `runcmd`), and that hash.
pub fn user_data(s: &DatabaseStandIn, db: &ManagedDatabase, upstream: Ipv4Addr) -> (Vec<u8>, String) {
    let file = |path: &str, mode: &str, content: String| serde_json::json!({ "path": path, "owner": "root:root", "permissions": mode, "content": content });
    let setup = "/usr/local/sbin/kiln-lab-database";
    let body = serde_json::json!({
        "hostname": s.machine.replace('.', "-"),
        "write_files": [
            file("/etc/dnsmasq.d/kiln-lab.conf", "0644", dnsmasq_conf(s, upstream)),
            file(setup, "0700", setup_script(s, db, crate::render::MARKER)),
        ],
    });
    let text = format!("#cloud-config\n{}", crate::render::yaml(&body));
    let closure = crate::render::hex(&Sha256::digest(text.as_bytes()));
    let mut with_run = body;
    with_run["runcmd"] = serde_json::json!([["sh", setup, closure]]);
    (format!("#cloud-config\n{}", crate::render::yaml(&with_run)).into_bytes(), closure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> ManagedDatabase {
        ManagedDatabase {
            name: "main".into(),
            provider_kind: crate::syntax::system::ProviderKind::Scaleway,
            engine: "PostgreSQL-16".into(),
            node_type: "DB-DEV-S".into(),
            user: "civic".into(),
            region: None,
            network: Some("vpc".into()),
            host: Some("sys-main.sys-vpc.internal".into()),
            clients: vec![crate::model::ManagedClient {
                service: "app".into(),
                database: "it's".into(),
                role: "r$(reboot)".into(),
                secret: "app_db_password".into(),
                shared_with: vec![],
            }],
        }
    }

    fn stand_in() -> DatabaseStandIn {
        DatabaseStandIn {
            database: "main".into(),
            machine: machine_name("main"),
            network: "vpc".into(),
            dns_name: "sys-main.sys-vpc.internal".into(),
            address: Ipv4Addr::new(10, 0, 0, 254),
            prefix: 24,
            cidr: "10.0.0.0/24".into(),
        }
    }

    /// The setup script is valid POSIX shell (dash parses it), quotes the model's names, and
    /// never holds a password.
    #[test]
    fn the_setup_script_parses_and_quotes_names() {
        let script = setup_script(&stand_in(), &db(), crate::render::MARKER);
        let out = std::process::Command::new("dash").args(["-n", "-c", &script]).output().expect("dash");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(script.contains("client 'r$(reboot)' 'it'\\''s' app_db_password"), "{script}");
        assert!(script.contains("login 'r$(reboot)' 'it'\\''s' app_db_password 10.0.0.254"), "{script}");
    }

    #[test]
    fn dnsmasq_answers_the_name_and_forwards_the_rest() {
        let conf = dnsmasq_conf(&stand_in(), Ipv4Addr::new(10, 0, 2, 3));
        assert!(conf.contains("\naddress=/sys-main.sys-vpc.internal/10.0.0.254\n"), "{conf}");
        assert!(conf.contains("\nserver=10.0.2.3\n") && conf.contains("\nno-resolv\n"), "{conf}");
        assert!(conf.contains("\nlisten-address=10.0.0.254\n"), "{conf}");
    }

    /// The closure is the hash of the cloud-config without its `runcmd`, passed to the setup.
    #[test]
    fn the_marker_is_the_hash_of_the_configuration() {
        let (ud, closure) = user_data(&stand_in(), &db(), Ipv4Addr::new(10, 0, 2, 3));
        let v: serde_json::Value = serde_saphyr::from_str(std::str::from_utf8(&ud).unwrap().trim_start_matches("#cloud-config\n")).unwrap();
        assert_eq!(v["runcmd"][0][2], serde_json::Value::from(closure.clone()));
        assert_eq!(closure.len(), 64);
        assert_eq!(v["hostname"], "main-database");
    }
}
