//! civic-scaleway (seed 001) as Terraform applies it with the stand-in providers (tests/tofu/,
//! scaleway/scaleway 2.79.0's schemas extracted from its Go source): each server has a public
//! IP and its address on the VPC pinned (an IPAM reservation of exactly the address in
//! hosts.toml, taken by the server's private NIC through `ipam_ip_ids`), the address every port
//! Compose publishes on the VPC binds to; and the provisioner waits for that address (run by
//! dash with a stand-in `ip` that shows it only on the third call).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::terraform::{Applied, applied, root_of};
use common::*;

fn example() -> PathBuf {
    repo().join("flake-free-examples/civic-scaleway")
}

/// `kiln check`'s errors for a copy of the example whose `file` is changed by `edit`; the check
/// must fail.
fn refused(file: &str, edit: impl FnOnce(String) -> String) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    copy_tree(&example(), &sys);
    let edited = edit(read(&sys.join(file)));
    std::fs::write(sys.join(file), edited).unwrap();
    let out = run(kiln().arg("check").arg(&sys));
    assert!(!out.status.success(), "the edited example was accepted");
    text(&out.stderr)
}

/// The attributes of every instance of `ty` in a Terraform state, by resource name.
fn state_resources(state: &serde_json::Value, ty: &str) -> BTreeMap<String, serde_json::Value> {
    state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == ty && r["mode"] == "managed")
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["instances"][0]["attributes"].clone()))
        .collect()
}

/// The example applied by Terraform, and what the managed-database tests read from its state.
struct Managed {
    applied: Applied,
    /// The managed instance's private DNS name: Scaleway's VPC DNS names a resource `<its
    /// name>.<private network's name>.internal`
    /// (https://www.scaleway.com/en/docs/vpc/reference-content/dns/), the names in the state.
    host: String,
    /// The managed instance's attributes.
    instance: serde_json::Value,
    databases: BTreeMap<String, serde_json::Value>,
    users: BTreeMap<String, serde_json::Value>,
    privileges: BTreeMap<String, serde_json::Value>,
}

fn managed(tmp: &Path) -> Managed {
    let applied = applied(&example(), tmp);
    let state: serde_json::Value = serde_json::from_str(&read(&tmp.join("terraform.tfstate"))).unwrap();
    let instance = state_resources(&state, "scaleway_rdb_instance")["main"].clone();
    let vpc = &state_resources(&state, "scaleway_vpc_private_network")["vpc"];
    let host = format!("{}.{}.internal", instance["name"].as_str().unwrap(), vpc["name"].as_str().unwrap());
    Managed {
        applied,
        host,
        instance,
        databases: state_resources(&state, "scaleway_rdb_database"),
        users: state_resources(&state, "scaleway_rdb_user"),
        privileges: state_resources(&state, "scaleway_rdb_privilege"),
    }
}

/// Each host's address on each network as the example declares it (hosts.toml, the seed's 9.6
/// addresses): host → (network → address).
fn addresses() -> BTreeMap<String, BTreeMap<String, String>> {
    let hosts: toml::Table = toml::from_str(&read(&example().join("hosts.toml"))).unwrap();
    hosts["hosts"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(h, v)| {
            let nets = v["networks"].as_table().unwrap().iter().map(|(n, a)| (n.clone(), a.as_str().unwrap().to_string())).collect();
            (h.clone(), nets)
        })
        .collect()
}

/// The real `docker-compose config` of a host's Compose file, its env files (on the host under
/// /etc/kiln/env, written by the provisioner) standing empty in `dir`.
fn compose_here(file: &std::path::Path, dir: &std::path::Path) -> serde_json::Value {
    let compose = read(file);
    std::fs::create_dir_all(dir.join("env")).unwrap();
    for env in compose.split("/etc/kiln/env/").skip(1).filter_map(|rest| rest.split(".env").next()) {
        std::fs::write(dir.join(format!("env/{env}.env")), "").unwrap();
    }
    let local = dir.join("compose.yaml");
    std::fs::write(&local, compose.replace("/etc/kiln/env/", &format!("{}/env/", dir.display()))).unwrap();
    compose_config(&local)
}

#[test]
fn every_server_has_a_public_ip_and_its_vpc_address_pinned_where_ports_bind() {
    let tmp = tempfile::tempdir().unwrap();
    let applied = applied(&example(), tmp.path());
    let state: serde_json::Value = serde_json::from_str(&read(&tmp.path().join("terraform.tfstate"))).unwrap();
    let addresses = addresses();
    assert_eq!(addresses.len(), 3, "{addresses:?}");

    let servers = state_resources(&state, "scaleway_instance_server");
    let public = state_resources(&state, "scaleway_instance_ip");
    let reserved = state_resources(&state, "scaleway_ipam_ip");
    let nics = state_resources(&state, "scaleway_instance_private_nic");
    let networks = state_resources(&state, "scaleway_vpc_private_network");
    let pn = &networks["vpc"];
    assert_eq!(pn["ipv4_subnet"][0]["subnet"], "10.0.0.0/24");
    assert_eq!(pn["region"], "fr-par", "regional, like the reservations in it");

    for (host, nets) in &addresses {
        let server = &servers[host];
        // Public: the server takes its own routed IPv4.
        assert_eq!(server["ip_id"], public[host]["id"], "{host}: no public IP");
        assert_eq!(server["zone"], "fr-par-1", "{host}: the host's location is the server's zone");
        // The inline attachment takes no reserved address: it must not attach a second NIC.
        assert!(server["private_network"].as_array().is_none_or(|a| a.is_empty()), "{host}: {}", server["private_network"]);
        for (net, address) in nets {
            let key = format!("{host}_{net}");
            let ip = reserved.get(&key).unwrap_or_else(|| panic!("no scaleway_ipam_ip.{key}"));
            assert_eq!(ip["address"], address.as_str(), "{key}: the reservation is the address of hosts.toml");
            assert_eq!(ip["source"][0]["private_network_id"], networks[net]["id"]);
            assert_eq!(ip["region"], pn["region"]);
            let nic = nics.get(&key).unwrap_or_else(|| panic!("no scaleway_instance_private_nic.{key}"));
            assert_eq!(nic["server_id"], server["id"], "{key}");
            assert_eq!(nic["private_network_id"], networks[net]["id"], "{key}");
            assert_eq!(nic["ipam_ip_ids"], serde_json::json!([ip["id"]]), "{key}: the NIC takes the reserved address");
            assert_eq!(nic["zone"], server["zone"]);
        }

        // Every port Compose publishes on a specific address binds to the pinned one.
        let compose = compose_here(&applied.first.join(format!("hosts/{host}/compose.yaml")), &tmp.path().join(host));
        let mut bound = 0;
        for (svc, s) in compose["services"].as_object().unwrap() {
            for p in s["ports"].as_array().into_iter().flatten() {
                if let Some(h) = p["host_ip"].as_str().filter(|h| *h != "0.0.0.0" && *h != "::") {
                    assert!(nets.values().any(|a| a == h), "{host}/{svc} binds {h}, not a pinned address of {nets:?}");
                    bound += 1;
                }
            }
        }
        assert!(bound > 0, "{host}: no port binds to its VPC address (the test would prove nothing)");
    }
    assert_eq!(reserved.len(), 3);
    assert_eq!(nics.len(), 3);
}

#[test]
fn the_provisioner_waits_for_the_pinned_address_before_anything_binds_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&example(), &tmp.path().join("store"), &tmp.path().join("r"));
    let script = read(&result.join("hosts/tools-prod/provision.sh"));
    let start = script.find("log 'step: private address'").expect("a wait for the private address");
    let end = start + script[start..].find("\ndone\n").expect("the wait loop") + 6;
    let wait = &script[start..end];
    assert!(start < script.find("log 'step: firewall'").unwrap() && start < script.find("log 'step: services'").unwrap());

    // A stand-in `ip` (named as one): the private NIC "attaches" on the third call.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = tmp.path().join("calls");
    let fake_ip = format!(
        "#!/bin/sh\nn=$(($(cat {c} 2>/dev/null || echo 0) + 1)); echo $n > {c}\necho '1: lo    inet 127.0.0.1/8 scope host lo'\n[ $n -ge 3 ] && echo '3: ens5    inet 10.0.0.3/24 brd 10.0.0.255 scope global ens5'\nexit 0\n",
        c = calls.display()
    );
    std::fs::write(bin.join("ip"), fake_ip).unwrap();
    std::fs::write(bin.join("sleep"), "#!/bin/sh\nexit 0\n").unwrap();
    for f in ["ip", "sleep"] {
        run(Command::new("chmod").arg("+x").arg(bin.join(f)));
    }
    let prelude = "log() { printf 'kiln: %s\\n' \"$*\" >&2; }\ndie() { log \"error: $*\"; exit 1; }\n";
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = run(Command::new("dash").arg("-c").arg(format!("{prelude}{wait}\necho ready")).env("PATH", &path));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "ready");
    assert_eq!(read(&calls).trim(), "3", "it waited until the address was there");

    // An address that never comes: the provisioner stops with the reason.
    let other = wait.replace("10.0.0.3", "10.0.0.9");
    std::fs::write(&calls, "0").unwrap();
    let out = run(Command::new("dash").arg("-c").arg(format!("{prelude}{other}\necho ready")).env("PATH", &path));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("private address 10.0.0.9 did not appear"), "{}", text(&out.stderr));
}

#[test]
fn the_managed_database_is_private_on_the_vpc_with_scheduled_backups() {
    let tmp = tempfile::tempdir().unwrap();
    let applied = applied(&example(), tmp.path());
    let state: serde_json::Value = serde_json::from_str(&read(&tmp.path().join("terraform.tfstate"))).unwrap();
    let dbs = state_resources(&state, "scaleway_rdb_instance");
    let db = &dbs["main"];
    let vpc = &state_resources(&state, "scaleway_vpc_private_network")["vpc"];
    // The seed's "Managed PostgreSQL (private IP)" on the VPC, addressed by IPAM (so routed and
    // named in the VPC), and no public endpoint.
    let pn = db["private_network"].as_array().unwrap();
    assert_eq!(pn.len(), 1, "{pn:?}");
    assert_eq!(pn[0]["pn_id"], vpc["id"]);
    assert_eq!(pn[0]["enable_ipam"], true);
    // (the stand-in fills the computed `ip_net`; the root sets none: a static one is neither
    // routed nor named in the VPC)
    let root: serde_json::Value = serde_json::from_str(&read(&applied.root.join("main.tf.json"))).unwrap();
    assert!(root["resource"]["scaleway_rdb_instance"]["main"]["private_network"][0].get("ip_net").is_none());
    assert!(db["load_balancer"].as_array().is_none_or(|a| a.is_empty()), "no public endpoint: {}", db["load_balancer"]);
    // Backups on, daily, kept a week, in another region.
    assert_eq!(db["disable_backup"], false);
    assert_eq!(db["backup_schedule_frequency"], 24);
    assert_eq!(db["backup_schedule_retention"], 7);
    assert_eq!(db["backup_same_region"], false);
    // Where the applications find it: the endpoint's name, address and port are outputs.
    let outputs = &state["outputs"];
    for o in ["main_database_host", "main_database_ip", "main_database_port"] {
        assert!(outputs.get(o).is_some(), "no output {o}: {outputs}");
    }
    assert_eq!(outputs["main_database_host"]["value"], pn[0]["hostname"]);
}

/// A stand-in for the Zabbix 7.0 API behind `curl` (named as one): a Python `curl` that reads
/// the JSON-RPC request from its standard input as `--data-binary @-` sends it, keeps Admin's
/// password in `state/passwd` (initially the schema's `zabbix`), answers `user.login` with a
/// token when the password matches, `user.update` only with that token and the right
/// `current_passwd`, and logs every argv to `state/argv`. It proves the job's requests and its
/// JSON escaping (Python's parser decodes them), not Zabbix's acceptance of them.
const FAKE_ZABBIX_CURL: &str = r#"#!/usr/bin/env python3
import json, os, sys
state = os.environ["ZBX_STATE"]
with open(os.path.join(state, "argv"), "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
args = sys.argv[1:]
assert "--data-binary" in args and args[args.index("--data-binary") + 1] == "@-", args
assert args[-1] == "http://127.0.0.1:8080/api_jsonrpc.php", args
req = json.loads(sys.stdin.read())
pw_file = os.path.join(state, "passwd")
passwd = open(pw_file).read()
bearer = None
for i, a in enumerate(args):
    if a == "-H" and args[i + 1].startswith("Authorization: Bearer "):
        bearer = args[i + 1].split(" ", 2)[2]
m, p = req["method"], req["params"]
if m == "user.login":
    ok = p["username"] == "Admin" and p["password"] == passwd
    out = {"jsonrpc": "2.0", "result": "0123abcd", "id": req["id"]} if ok else {"jsonrpc": "2.0", "error": {"code": -32602, "message": "Incorrect user name or password"}, "id": req["id"]}
elif m == "user.update":
    assert bearer == "0123abcd", bearer
    assert p["userid"] == "1" and p["current_passwd"] == passwd, p
    open(pw_file, "w").write(p["passwd"])
    open(os.path.join(state, "updates"), "a").write("1\n")
    out = {"jsonrpc": "2.0", "result": {"userids": ["1"]}, "id": req["id"]}
elif m == "user.logout":
    out = {"jsonrpc": "2.0", "result": True, "id": req["id"]}
else:
    raise SystemExit("unexpected " + m)
print(json.dumps(out, separators=(",", ":")))  # compact, as PHP writes it
"#;

#[test]
fn zabbix_admin_default_password_is_replaced_from_the_secret_once() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&example(), &tmp.path().join("store"), &tmp.path().join("r"));
    let job = read(&result.join("hosts/management/jobs/kiln-job-zabbix-web-admin_password.sh"));
    assert!(job.contains("exec -T zabbix-web sh -c "), "{job}");
    // The timer runs it every five minutes (systemd reads the calendar).
    let timer = read(&result.join("hosts/management/jobs/kiln-job-zabbix-web-admin_password.timer"));
    assert!(timer.contains("OnCalendar=*:0/5"), "{timer}");

    let state = tmp.path().join("zbx");
    let secrets = tmp.path().join("secrets");
    let bin = tmp.path().join("bin");
    for d in [&state, &secrets, &bin] {
        std::fs::create_dir_all(d).unwrap();
    }
    let secret = "s3cr\"et\\with $HOME and 'quotes'";
    std::fs::write(secrets.join("zabbix_admin_password"), format!("{secret}\n")).unwrap();
    std::fs::write(state.join("passwd"), "zabbix").unwrap();
    std::fs::write(bin.join("curl"), FAKE_ZABBIX_CURL).unwrap();
    // A stand-in `docker` (named as one): `docker compose … exec -T SERVICE CMD…` runs CMD
    // here, the container's /run/secrets being the test's directory.
    std::fs::write(
        bin.join("docker"),
        format!(
            "#!/bin/sh\nwhile [ \"$1\" != zabbix-web ]; do shift; done\nshift\nexec \"$1\" \"$2\" \"$(printf '%s' \"$3\" | sed 's|/run/secrets/|{}/|')\"\n",
            secrets.display()
        ),
    )
    .unwrap();
    for f in ["curl", "docker"] {
        run(Command::new("chmod").arg("+x").arg(bin.join(f)));
    }
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let job_file = result.join("hosts/management/jobs/kiln-job-zabbix-web-admin_password.sh");
    let go = || run(Command::new("dash").arg(&job_file).env("PATH", &path).env("ZBX_STATE", &state));

    let out = go();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(read(&state.join("passwd")), secret, "Admin's password is the secret, exactly");
    assert!(text(&out.stdout).contains("Admin password set"), "{}", text(&out.stdout));
    // Again: signs in with the secret, changes nothing.
    let out = go();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(read(&state.join("updates")).lines().count(), 1, "updated once");
    // The password never was an argument of any process the job started.
    let argv = read(&state.join("argv"));
    assert!(argv.lines().count() >= 5, "{argv}");
    assert!(!argv.contains("s3cr"), "the password reached curl's arguments: {argv}");
}

#[test]
fn decidim_outline_nextcloud_grafana_and_n8n_use_the_managed_database_each_with_its_own_database_and_role() {
    let tmp = tempfile::tempdir().unwrap();
    let Managed { applied, host, instance, databases, users, privileges } = managed(tmp.path());
    let root = read(&applied.root.join("main.tf.json"));
    for client in ["decidim", "outline", "nextcloud", "grafana", "n8n"] {
        let key = format!("main_{client}");
        let (db, user, privilege) = (&databases[&key], &users[&key], &privileges[&key]);
        for r in [db, user, privilege] {
            assert_eq!(r["instance_id"], instance["id"], "{key}: on the managed instance");
        }
        assert_eq!(db["name"], client, "{key}");
        assert_eq!(user["name"], client, "{key}");
        assert_eq!(user["is_admin"], false, "{key}: not an administrator");
        assert_eq!(privilege["user_name"], client);
        assert_eq!(privilege["database_name"], client);
        assert_eq!(privilege["permission"], "all");
        // The password is an ephemeral variable given to the write-only `password_wo`: the root
        // holds no value for it, and Terraform keeps none in the state.
        assert!(root.contains(&format!("\"password_wo\": \"${{var.{key}_password}}\"")), "{key}");
        assert!(root.contains(&format!("\"password_wo_version\": \"${{var.{key}_password_version}}\"")), "{key}");
        assert_eq!((&user["password"], &user["password_wo"]), (&serde_json::Value::Null, &serde_json::Value::Null), "{key}");
    }
    assert_eq!((&instance["password"], &instance["password_wo"]), (&serde_json::Value::Null, &serde_json::Value::Null));
    // Terraform set every password variable (tofu-check's `dummy-NAME` values), read them into
    // the write-only arguments and wrote none of them anywhere: not in the state, not in a saved
    // plan of a change.
    let state = read(&tmp.path().join("terraform.tfstate"));
    assert!(state.contains("\"password_wo_version\": 1"), "the versions are state");
    let second = applied.rebuild_with("system.toml", "node_type = \"DB-DEV-S\"", "node_type = \"DB-DEV-M\"");
    let plan = applied.plan(&root_of(&second, &tmp.path().join("tf2")), "plan");
    for (what, text) in [("state", state), ("plan", plan.to_string())] {
        assert!(!text.contains("dummy-main_"), "a managed database password in the {what}");
    }

    let tools = compose_here(&applied.first.join("hosts/tools-prod/compose.yaml"), &tmp.path().join("tools"));
    let management = compose_here(&applied.first.join("hosts/management/compose.yaml"), &tmp.path().join("management"));
    let env = |c: &serde_json::Value, s: &str, k: &str| c["services"][s]["environment"][k].as_str().map(str::to_string);
    assert_eq!(env(&tools, "outline", "DATABASE_HOST").as_deref(), Some(host.as_str()));
    assert_eq!(env(&tools, "outline", "DATABASE_PORT").as_deref(), Some("5432"));
    assert_eq!(env(&tools, "outline", "DATABASE_NAME").as_deref(), Some("outline"));
    assert_eq!(env(&tools, "outline", "DATABASE_USER").as_deref(), Some("outline"));
    assert_eq!(env(&tools, "outline", "PGSSLMODE").as_deref(), Some("require"));
    // Nextcloud (issue 15, civic audit): on the managed database too; libpq reads PGSSLMODE.
    assert_eq!(env(&tools, "nextcloud", "POSTGRES_HOST"), Some(format!("{host}:5432")));
    assert_eq!(env(&tools, "nextcloud", "POSTGRES_DB").as_deref(), Some("nextcloud"));
    assert_eq!(env(&tools, "nextcloud", "POSTGRES_USER").as_deref(), Some("nextcloud"));
    assert_eq!(env(&tools, "nextcloud", "PGSSLMODE").as_deref(), Some("require"));
    assert_eq!(env(&management, "grafana", "GF_DATABASE_HOST"), Some(format!("{host}:5432")));
    assert_eq!(env(&management, "grafana", "GF_DATABASE_SSL_MODE").as_deref(), Some("require"));
    assert_eq!(env(&management, "n8n", "DB_POSTGRESDB_HOST").as_deref(), Some(host.as_str()));
    assert_eq!(env(&management, "n8n", "DB_POSTGRESDB_SSL_ENABLED").as_deref(), Some("true"));
    // Decidim's web and worker share its database and role (the same names and secret): one
    // database, one role, one privilege; both reach it over TLS (libpq's PGSSLMODE).
    assert!(databases.keys().all(|k| !k.contains("worker")), "{:?}", databases.keys());
    // (the others are Zabbix's, EspoCRM's and Authentik's, each shared by two services: the
    // next tests)
    assert_eq!(databases.len(), 8, "{:?}", databases.keys());
    assert!(root.contains("on `main` (shared by `decidim`, `decidim-worker`)"), "the variable names both services");
    for s in ["decidim", "decidim-worker"] {
        assert_eq!(env(&tools, s, "DATABASE_HOST").as_deref(), Some(host.as_str()), "{s}");
        assert_eq!(env(&tools, s, "DATABASE_USERNAME").as_deref(), Some("decidim"), "{s}");
        assert_eq!(env(&tools, s, "DATABASE_URL"), Some(format!("postgres://{host}:5432/decidim")), "{s}");
        assert_eq!(env(&tools, s, "PGSSLMODE").as_deref(), Some("require"), "{s}");
    }
    // No local PostgreSQL stands in for them any more, and none of them waits for one.
    for (c, gone) in
        [(&tools, "decidim-db"), (&tools, "outline-db"), (&tools, "nextcloud-db"), (&management, "grafana-db"), (&management, "n8n-db")]
    {
        assert!(c["services"].get(gone).is_none(), "{gone} still runs");
    }
    for (c, s) in [
        (&tools, "decidim"),
        (&tools, "decidim-worker"),
        (&tools, "outline"),
        (&tools, "nextcloud"),
        (&management, "grafana"),
        (&management, "n8n"),
    ] {
        let deps = c["services"][s]["depends_on"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        assert!(deps.iter().all(|d| !d.ends_with("-db")), "{s}: {deps:?}");
    }
}

/// Zabbix on the managed PostgreSQL (issue 15, seed 001 §9.8): the server and the frontend share
/// one database and role there (one `scaleway_rdb_database`, `_user`, `_privilege`, made by
/// Terraform), each reads the role's password from its own copy of one secret
/// (`POSTGRES_PASSWORD_FILE`), and both insist on TLS as zabbix-docker's images take it: the
/// server `ZBX_DBTLSCONNECT=required` (DBTLSConnect, and PGSSLMODE=require for the entrypoint's
/// psql), the frontend the same for its wait plus `ZBX_DB_ENCRYPTION=true` for PHP. No local
/// PostgreSQL is left for them.
#[test]
fn zabbix_server_and_web_share_one_client_of_the_managed_database_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let Managed { applied, host, instance, databases, users, privileges } = managed(tmp.path());
    // One client in Terraform's state, named after the first service, for both.
    let zabbix: Vec<&String> = databases.keys().filter(|k| k.contains("zabbix")).collect();
    assert_eq!(zabbix, vec!["main_zabbix-server"], "{:?}", databases.keys());
    let key = "main_zabbix-server";
    for r in [&databases[key], &users[key], &privileges[key]] {
        assert_eq!(r["instance_id"], instance["id"]);
    }
    assert_eq!(databases[key]["name"], "zabbix");
    assert_eq!(users[key]["name"], "zabbix");
    assert_eq!(users[key]["is_admin"], false);
    assert_eq!((&privileges[key]["database_name"], &privileges[key]["user_name"]), (&"zabbix".into(), &"zabbix".into()));
    assert_eq!(privileges[key]["permission"], "all");
    let root: serde_json::Value = serde_json::from_str(&read(&applied.root.join("main.tf.json"))).unwrap();
    let var = &root["variable"]["main_zabbix-server_password"];
    assert_eq!(var["sensitive"], true, "{var}");
    assert!(var["description"].as_str().unwrap().contains("(shared by `zabbix-server`, `zabbix-web`)"), "{var}");
    assert_eq!(root["resource"]["scaleway_rdb_user"][key]["password_wo"], "${var.main_zabbix-server_password}");
    assert_eq!(var["ephemeral"], true, "{var}");

    // The containers, as the real `docker-compose config` reads them.
    let management = compose_here(&applied.first.join("hosts/management/compose.yaml"), &tmp.path().join("management"));
    let svc = &management["services"];
    let db_env = |s: &str| -> BTreeMap<String, String> {
        svc[s]["environment"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("DB_") || k.starts_with("POSTGRES_") || k.starts_with("ZBX_DB"))
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    };
    let common = [
        ("DB_SERVER_HOST", host.as_str()),
        ("DB_SERVER_PORT", "5432"),
        ("POSTGRES_DB", "zabbix"),
        ("POSTGRES_USER", "zabbix"),
        ("POSTGRES_PASSWORD_FILE", "/run/secrets/zabbix_database_password"),
        ("ZBX_DBTLSCONNECT", "required"),
    ];
    let expect = |extra: &[(&str, &str)]| -> BTreeMap<String, String> {
        common.iter().chain(extra).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    assert_eq!(db_env("zabbix-server"), expect(&[]));
    assert_eq!(db_env("zabbix-web"), expect(&[("ZBX_DB_ENCRYPTION", "true"), ("ZBX_DB_VERIFY_HOST", "false")]));
    // The password arrives as a file only: each service's own root-only copy of the one secret.
    for s in ["zabbix-server", "zabbix-web"] {
        let secret = svc[s]["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["target"] == "/run/secrets/zabbix_database_password")
            .unwrap_or_else(|| panic!("{s}: {}", svc[s]["secrets"]));
        let file = &management["secrets"][secret["source"].as_str().unwrap()]["file"];
        assert_eq!(file, &format!("/etc/kiln/service-secrets/{s}/zabbix_db_password"), "{s}");
        assert!(svc[s]["environment"].get("POSTGRES_PASSWORD").is_none(), "{s}");
    }
    let provision = applied.first.join("hosts/management/provision.sh");
    oracle("sh", &provision).unwrap();
    let p = read(&provision);
    for s in ["zabbix-server", "zabbix-web"] {
        let put = format!("put /etc/kiln/secrets/zabbix_db_password /etc/kiln/service-secrets/{s}/zabbix_db_password 0400 1997:1997");
        assert!(p.contains(&put), "{s}: {put}");
    }
    // No local Zabbix database: no container, no wait for one, no copy of its password for one.
    assert!(svc.as_object().unwrap().keys().all(|k| !k.starts_with("zabbix") || k == "zabbix-server" || k == "zabbix-web"), "{svc}");
    assert!(svc.get("zabbix-db").is_none());
    let deps = |s: &str| svc[s]["depends_on"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    assert!(deps("zabbix-server").is_empty(), "{:?}", deps("zabbix-server"));
    assert_eq!(deps("zabbix-web"), vec!["zabbix-server".to_string()]);
    assert!(!p.contains("service-secrets/zabbix-db/"), "a postgres container still gets the password");
}

/// Authentik and EspoCRM on the managed PostgreSQL (issue 15, seed 001 §9.8): Authentik's server
/// and worker, and EspoCRM's web service and job daemon, are one client each (one
/// `scaleway_rdb_database`, `_user`, `_privilege` in Terraform's state), and each service insists
/// on TLS as its image takes it: authentik's `AUTHENTIK_POSTGRESQL__SSLMODE=require` (its
/// password as `file://`), EspoCRM's PHP through libpq's `PGSSLMODE=require` (its DSN names no
/// sslmode). No local `authentik-db` or `espocrm-db` is left.
#[test]
fn authentik_and_espocrm_each_share_one_client_of_the_managed_database_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let Managed { applied, host, instance, databases, users, privileges } = managed(tmp.path());
    let root: serde_json::Value = serde_json::from_str(&read(&applied.root.join("main.tf.json"))).unwrap();
    for (app, first, second) in [("authentik", "authentik", "authentik-worker"), ("espocrm", "espocrm", "espocrm-daemon")] {
        let mine: Vec<&String> = databases.keys().filter(|k| k.contains(app)).collect();
        let key = format!("main_{first}");
        assert_eq!(mine, vec![&key], "one client for {app}: {:?}", databases.keys());
        for r in [&databases[&key], &users[&key], &privileges[&key]] {
            assert_eq!(r["instance_id"], instance["id"], "{key}");
        }
        assert_eq!(databases[&key]["name"], app);
        assert_eq!(users[&key]["name"], app);
        assert_eq!(users[&key]["is_admin"], false, "{key}: not an administrator");
        assert_eq!((&privileges[&key]["database_name"], &privileges[&key]["user_name"]), (&app.into(), &app.into()));
        assert_eq!(privileges[&key]["permission"], "all");
        let var = &root["variable"][format!("{key}_password")];
        assert_eq!(var["sensitive"], true, "{var}");
        assert!(var["description"].as_str().unwrap().contains(&format!("(shared by `{first}`, `{second}`)")), "{var}");
        assert_eq!(root["resource"]["scaleway_rdb_user"][&key]["password_wo"], format!("${{var.{key}_password}}"));
        assert_eq!(var["ephemeral"], true, "{var}");
    }

    // The containers, as the real `docker-compose config` reads them.
    let identity = compose_here(&applied.first.join("hosts/authentik-prod/compose.yaml"), &tmp.path().join("identity"));
    let tools = compose_here(&applied.first.join("hosts/tools-prod/compose.yaml"), &tmp.path().join("tools"));
    let env_of = |c: &serde_json::Value, s: &str, prefix: &str| -> BTreeMap<String, String> {
        c["services"][s]["environment"]
            .as_object()
            .unwrap_or_else(|| panic!("{s}: {}", c["services"]))
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    };
    let pairs = |p: &[(&str, &str)]| -> BTreeMap<String, String> { p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
    let authentik = pairs(&[
        ("AUTHENTIK_POSTGRESQL__HOST", host.as_str()),
        ("AUTHENTIK_POSTGRESQL__PORT", "5432"),
        ("AUTHENTIK_POSTGRESQL__NAME", "authentik"),
        ("AUTHENTIK_POSTGRESQL__USER", "authentik"),
        ("AUTHENTIK_POSTGRESQL__PASSWORD", "file:///run/secrets/authentik_database_password"),
        ("AUTHENTIK_POSTGRESQL__SSLMODE", "require"),
    ]);
    for s in ["authentik", "authentik-worker"] {
        assert_eq!(env_of(&identity, s, "AUTHENTIK_POSTGRESQL__"), authentik, "{s}");
    }
    assert_eq!(
        env_of(&tools, "espocrm", "ESPOCRM_DATABASE_"),
        pairs(&[
            ("ESPOCRM_DATABASE_HOST", host.as_str()),
            ("ESPOCRM_DATABASE_PORT", "5432"),
            ("ESPOCRM_DATABASE_NAME", "espocrm"),
            ("ESPOCRM_DATABASE_USER", "espocrm"),
            ("ESPOCRM_DATABASE_PASSWORD_FILE", "/run/secrets/espocrm_database_password"),
            ("ESPOCRM_DATABASE_PLATFORM", "Postgresql"),
        ])
    );
    for s in ["espocrm", "espocrm-daemon"] {
        assert_eq!(env_of(&tools, s, "PGSSL"), pairs(&[("PGSSLMODE", "require")]), "{s}");
    }
    // Each service reads the password from its own root-only copy of the one secret.
    let provision = read(&applied.first.join("hosts/authentik-prod/provision.sh"));
    for s in ["authentik", "authentik-worker"] {
        let put = format!("put /etc/kiln/secrets/authentik_db_password /etc/kiln/service-secrets/{s}/authentik_db_password 0400 1000:1000");
        assert!(provision.contains(&put), "{s}: {put}");
    }
    // No local database for either, and nothing waits for one.
    assert!(identity["services"].get("authentik-db").is_none(), "authentik-db still runs");
    assert!(tools["services"].get("espocrm-db").is_none(), "espocrm-db still runs");
    assert!(!provision.contains("service-secrets/authentik-db/"), "a postgres container still gets the password");
    for (c, s) in [(&identity, "authentik"), (&identity, "authentik-worker"), (&tools, "espocrm"), (&tools, "espocrm-daemon")] {
        let deps = c["services"][s]["depends_on"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        assert!(deps.iter().all(|d| !d.ends_with("-db")), "{s}: {deps:?}");
    }
}

/// Two clients of one managed database share a database and role only as one application does:
/// the same names and the same password secret. Decidim's worker with a password of its own is
/// refused, naming the secret the web process uses.
#[test]
fn services_wanting_one_database_with_different_passwords_are_refused() {
    let worker = "[services.decidim-worker]\nmodule = \"decidim-worker\"\nhost = \"tools-prod\"\nconnects = [\"main\", \"decidim-cache\"]\nvolumes = { storage = \"decidim-storage\" }\nsecrets = { database_password = \"decidim_db_password\"";
    let err = refused("tools.toml", |tools| {
        assert!(tools.contains(worker), "the fixture's worker declaration");
        tools.replace(worker, &worker.replace("decidim_db_password", "outline_db_password"))
    });
    assert!(err.contains("error[E0003]: `decidim-worker` and `decidim` both want database `decidim` or role `decidim` on `main`"), "{err}");
    assert!(err.contains("(`decidim`'s is `decidim_db_password`)"), "the help names the shared secret: {err}");
    assert!(err.contains("tools.toml:"), "{err}");
}

#[test]
fn a_service_off_the_databases_network_is_refused() {
    // management leaves the VPC: n8n and grafana can no longer reach the managed database.
    let err = refused("hosts.toml", |hosts| hosts.replace("networks = { vpc = \"10.0.0.5\" }\n", ""));
    assert!(err.contains("`n8n` cannot use managed database `main`"), "{err}");
    assert!(err.contains("host `management` is not on `main`'s private network"), "{err}");
    assert!(err.contains("management.toml:"), "at the connects entry: {err}");
}

#[test]
fn system_md_draws_the_managed_database_and_mermaid_parses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let result = build(&example(), &tmp.path().join("store"), &tmp.path().join("r"));
    let md = read(&result.join("SYSTEM.md"));
    assert!(md.contains("svc_main[(\"main (managed PostgreSQL-16, scaleway)\")]"), "the database is a node of its own");
    for client in ["outline", "nextcloud", "grafana", "n8n"] {
        assert!(md.contains(&format!("svc_{client} -->|\"5432/tcp\"| svc_main")), "{client}");
    }
    oracle("mermaid", &result.join("SYSTEM.md")).unwrap_or_else(|e| panic!("mermaid refuses SYSTEM.md: {e}"));
}

/// A Scaleway system with a private host (`worker`) and a public one (`web`) on one network.
fn gateway_system(worker_extra: &str) -> String {
    format!(
        r#"[system]
name = "gw"
domains = ["example.com"]

[providers.scaleway]
kind = "scaleway"

[networks.vpc]
cidr = "10.1.0.0/24"

[admins.ops]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKey000000000000000000000000000000 ops@laptop"]
sources = ["198.51.100.0/24"]

[hosts.web]
provider = "scaleway"
image = "ubuntu-24.04"
location = "fr-par-2"
public = true
networks = {{ vpc = "10.1.0.2" }}

[hosts.worker]
provider = "scaleway"
image = "ubuntu-24.04"
location = "fr-par-2"
networks = {{ vpc = "10.1.0.10" }}
{worker_extra}
"#
    )
}

#[test]
fn a_private_scaleway_host_leaves_through_the_networks_public_gateway() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("gw");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(sys.join("system.toml"), gateway_system("")).unwrap();
    let applied = applied(&sys, tmp.path());
    let state: serde_json::Value = serde_json::from_str(&read(&tmp.path().join("terraform.tfstate"))).unwrap();
    let vpc = &state_resources(&state, "scaleway_vpc_private_network")["vpc"];
    let ip = &state_resources(&state, "scaleway_vpc_public_gateway_ip")["vpc_gateway"];
    let gw = &state_resources(&state, "scaleway_vpc_public_gateway")["vpc_gateway"];
    let link = &state_resources(&state, "scaleway_vpc_gateway_network")["vpc_gateway"];
    assert_eq!(gw["type"], "VPC-GW-S");
    assert_eq!(gw["ip_id"], ip["id"], "the gateway has its own public IP");
    assert_eq!(gw["zone"], "fr-par-2");
    assert_eq!(link["gateway_id"], gw["id"]);
    assert_eq!(link["private_network_id"], vpc["id"]);
    assert_eq!(link["enable_masquerade"], true, "NAT for the network");
    assert_eq!(link["ipam_config"][0]["push_default_route"], true, "the network's DHCP gives the hosts their route out");
    // The private host has no public IP of its own and no route script: DHCP gives it one.
    let public = state_resources(&state, "scaleway_instance_ip");
    assert!(public.contains_key("web") && !public.contains_key("worker"), "{:?}", public.keys());
    let provision = read(&applied.first.join("hosts/worker/provision.sh"));
    assert!(!provision.contains("ip route replace default"), "no host-made route");
    assert!(provision.contains("grep -qxF 10.1.0.10"), "it waits for its pinned address");
    let show = run(kiln().arg("show").arg(&sys));
    assert!(text(&show.stdout).contains("Public Gateway"), "{}", text(&show.stdout));

    // `egress = "via:web"` chooses the host instead: no gateway, a route through web.
    let via = tmp.path().join("via");
    std::fs::create_dir_all(&via).unwrap();
    std::fs::write(via.join("system.toml"), gateway_system("egress = \"via:web\"")).unwrap();
    let result = build(&via, &tmp.path().join("store"), &tmp.path().join("via-result"));
    let root = read(&result.join("tofu/main.tf.json"));
    assert!(!root.contains("scaleway_vpc_public_gateway"), "no gateway when a host is chosen");
    assert!(read(&result.join("hosts/worker/provision.sh")).contains("ip route replace default via 10.1.0.2"));
}

/// A PostgreSQL exporter wants a monitoring role (`provision = { monitor = true }`: a login role
/// granted pg_monitor). Scaleway's API grants database privileges only (readonly, readwrite,
/// all, custom), so kiln cannot make one on the managed database: the connection is refused
/// saying so, at the `connects` entry, rather than with the generic "provisions no database".
#[test]
fn an_exporter_on_the_managed_database_is_refused_for_its_monitoring_role() {
    let exporter = "\n[services.main-exporter]\nmodule = \"postgres-exporter\"\nhost = \"management\"\nconnects = [\"main\"]\nsecrets = { password = \"grafana_db_password\" }\n";
    let err = refused("management.toml", |mgmt| mgmt + exporter);
    assert!(err.contains("error[E0031]: `main-exporter` cannot use managed database `main`"), "{err}");
    assert!(err.contains("wants a monitoring role (pg_monitor)"), "{err}");
    assert!(err.contains("never pg_monitor"), "the help says why: {err}");
    assert!(err.contains("management.toml:"), "{err}");
    assert!(!err.contains("provisions no database and role"), "{err}");
}

/// Audit C5: the ONLYOFFICE connector in Nextcloud was left to an administrator. Nextcloud's
/// `office` slot, filled by the onlyoffice service, gets a before-starting hook that installs the
/// app and sets its app values (ONLYOFFICE/onlyoffice-nextcloud lib/AppConfig.php). Judged by
/// the programs that read them: dash runs the hook with `php` on PATH standing in for the image's
/// PHP (a stand-in that records the `occ` argument lists, proving what the hook asks occ to do),
/// and the real `docker-compose config` shows the hook mounted where the image's entrypoint runs
/// it and the JWT secret mounted for www-data, from the same secret as the document server's.
#[test]
fn nextclouds_onlyoffice_app_is_pointed_at_the_document_server_with_its_jwt_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build(&example(), &tmp.path().join("store"), &tmp.path().join("out"));
    let host = out.join("hosts/tools-prod");
    let hook = host.join("files/nextcloud/kiln-office.sh");
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = tmp.path().join("occ.log");
    let php = bin.join("php");
    std::fs::write(&php, "#!/bin/sh\n# stand-in for the image's PHP: records each occ call, one argument per line\nprintf '%s\\n' \"$@\" --- >> \"$OCC_LOG\"\n").unwrap();
    std::fs::set_permissions(&php, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ran = run(Command::new("dash").arg(&hook).env("PATH", format!("{}:/usr/bin:/bin", bin.display())).env("OCC_LOG", &log));
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    let calls: Vec<Vec<String>> =
        read(&log).split("---\n").filter(|c| !c.is_empty()).map(|c| c.lines().skip(1).map(str::to_string).collect()).collect();
    let call = |words: &[&str]| calls.iter().any(|c| c == words);
    assert!(call(&["app:enable", "onlyoffice"]), "{calls:?}");
    assert!(call(&["config:app:set", "onlyoffice", "DocumentServerUrl", "--value=https://office.example.org/"]), "{calls:?}");
    assert!(call(&["config:app:set", "onlyoffice", "DocumentServerInternalUrl", "--value=http://onlyoffice:8084/"]), "{calls:?}");
    // the secret file is absent here: the value read from it is empty, the key is the app's
    assert!(call(&["config:app:set", "onlyoffice", "jwt_secret", "--value="]), "{calls:?}");
    assert!(read(&hook).contains("cat /run/secrets/nextcloud_office_jwt_secret"), "the hook reads the mounted secret");

    let cfg = compose_config(&host.join("compose.yaml"));
    let nextcloud = &cfg["services"]["nextcloud"];
    let mounts = nextcloud["volumes"].as_array().unwrap();
    assert!(
        mounts.iter().any(|m| m["target"] == "/docker-entrypoint-hooks.d/before-starting/kiln-office.sh"),
        "the hook is where the entrypoint runs it: {mounts:?}"
    );
    let secret_of = |svc: &str, target: &str| -> String {
        let s = cfg["services"][svc]["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["target"] == target)
            .unwrap_or_else(|| panic!("{svc} mounts {target}"));
        cfg["secrets"][s["source"].as_str().unwrap()]["file"].as_str().unwrap().to_string()
    };
    let ours = secret_of("nextcloud", "/run/secrets/nextcloud_office_jwt_secret");
    let theirs = secret_of("onlyoffice", "/run/secrets/onlyoffice_jwt_secret");
    assert_eq!(Path::new(&ours).file_name(), Path::new(&theirs).file_name(), "one secret: {ours} vs {theirs}");
}

/// A Nextcloud connected to a document server must sign with the server's JWT secret: the
/// module says the two are one (`[requires.office] same_secrets`), so left unbound it is taken
/// from the ONLYOFFICE service, and bound to another secret it is refused at the binding.
#[test]
fn nextcloud_connected_to_onlyoffice_signs_with_its_jwt_secret() {
    // The example leaves the slot unbound: the secret is declared once, on the document server.
    let unbound = ", oidc_client_secret = \"nextcloud_oidc_client_secret\" }";
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    copy_tree(&example(), &sys);
    let tools = read(&sys.join("tools.toml"));
    assert!(tools.contains(unbound) && !tools.contains("office_jwt_secret = "), "the example binds the JWT slot: update this test");
    let model = &compiled(&sys).system;
    let secret = |svc: &str, slot: &str| model.services[svc].secrets.iter().find(|u| u.slot == slot).map(|u| u.secret.clone());
    assert_eq!(secret("nextcloud", "office_jwt_secret"), secret("onlyoffice", "jwt_secret"), "taken from the document server");
    assert!(secret("nextcloud", "office_jwt_secret").is_some());

    let err = refused("tools.toml", |tools| {
        tools.replace(unbound, ", oidc_client_secret = \"nextcloud_oidc_client_secret\", office_jwt_secret = \"nextcloud_db_password\" }")
    });
    assert!(
        err.contains(
            "error[E0025]: service `nextcloud` binds `office_jwt_secret` to secret `nextcloud_db_password`, but `onlyoffice` holds it as"
        ),
        "{err}"
    );
    assert!(err.contains("tools.toml:"), "at the binding: {err}");
}

/// The document server's editors load in browsers, so Nextcloud's `office` slot says `public =
/// true`: filled by an ONLYOFFICE without a route, the build warns at the connection (and the
/// hook says so at start instead of setting a URL nobody can reach).
#[test]
fn an_onlyoffice_without_a_route_is_reported_where_nextcloud_connects_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    copy_tree(&example(), &sys);
    let tools = read(&sys.join("tools.toml"));
    let route = "[routes.\"office.example.org\"]\nservice = \"onlyoffice\"\nedge = \"traefik-tools-prod\"\n";
    assert!(tools.contains(route));
    std::fs::write(sys.join("tools.toml"), tools.replace(route, "")).unwrap();
    let out = run(kiln().arg("build").arg(&sys).arg("--store").arg(tmp.path().join("store")).arg("--out-link").arg(tmp.path().join("r")));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning[public-slot-unrouted]: `onlyoffice` has no public route"), "{err}");
    assert!(err.contains("tools.toml:"), "at the connection: {err}");
    let hook = read(&tmp.path().join("r/hosts/tools-prod/files/nextcloud/kiln-office.sh"));
    assert!(!hook.contains("DocumentServerUrl") && hook.contains("onlyoffice has no public route"), "{hook}");
}
