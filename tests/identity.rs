//! Identity as code: the authentik blueprints kiln derives from routes' `auth` and services'
//! `login`. Each blueprint is judged against authentik's published blueprint JSON schema
//! (tests/authentik/blueprint-schema.json) by check-jsonschema, after a stand-in for authentik's
//! tag resolution (tests/authentik/resolve_tags.py) replaces `!KeyOf`/`!Find`/`!File` with
//! values of the types authentik puts there; every forward-auth route has its provider with the
//! route's exact URL, bound to the embedded outpost; Outline's OIDC settings name the IdP's
//! issuer and a client secret delivered as a file to Outline and to the worker that reads it
//! with `!File`, whose value reaches no store file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn venv(bin: &str) -> PathBuf {
    repo().join(".venv-oracles/bin").join(bin)
}

fn schema() -> PathBuf {
    repo().join("tests/authentik/blueprint-schema.json")
}

/// The blueprint with its tags resolved by the stand-in, as JSON (`refs`: `!KeyOf ID` kept as
/// `"KeyOf:ID"`).
fn resolved(blueprint: &Path, refs: bool) -> Value {
    let mut cmd = Command::new(venv("python"));
    cmd.arg(repo().join("tests/authentik/resolve_tags.py")).arg(blueprint);
    if refs {
        cmd.arg("--refs");
    }
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}: {}", blueprint.display(), text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// check-jsonschema's verdict on a JSON document.
fn judge(doc: &Value, dir: &Path) -> Result<(), String> {
    let f = dir.join("blueprint.json");
    std::fs::write(&f, serde_json::to_vec(doc).unwrap()).unwrap();
    let out = run(Command::new(venv("check-jsonschema")).arg("--schemafile").arg(schema()).arg(&f));
    if out.status.success() { Ok(()) } else { Err(format!("{}{}", text(&out.stdout), text(&out.stderr))) }
}

/// Every blueprint a built system holds: `hosts/HOST/files/WORKER/authentik-blueprint-IDP.yaml`.
fn blueprints(result: &Path) -> Vec<PathBuf> {
    files(result)
        .into_iter()
        .filter(|(p, _, _)| {
            p.starts_with("hosts/")
                && p.contains("/files/")
                && p.rsplit('/').next().unwrap().starts_with("authentik-blueprint-")
                && p.ends_with(".yaml")
        })
        .map(|(p, _, _)| result.join(p))
        .collect()
}

fn entries<'a>(doc: &'a Value, model: &str) -> Vec<&'a Value> {
    doc["entries"].as_array().unwrap().iter().filter(|e| e["model"] == model).collect()
}

#[test]
fn blueprints_validate_against_authentiks_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let schema: Value = serde_json::from_str(&read(&schema())).unwrap();
    let mut judged = 0;
    for ex in examples() {
        let name = ex.file_name().unwrap().to_string_lossy().into_owned();
        let result = build(&ex, &tmp.path().join("store"), &tmp.path().join(&name));
        for bp in blueprints(&result) {
            let doc = resolved(&bp, false);
            judge(&doc, tmp.path()).unwrap_or_else(|e| panic!("{}: authentik's schema rejects it:\n{e}", bp.display()));
            // The schema leaves models' attributes open: each one kiln writes must be a field
            // the schema declares for its model (a misspelt field would be silently ignored).
            for e in doc["entries"].as_array().unwrap() {
                let model = e["model"].as_str().unwrap();
                let fields = &schema["$defs"][format!("model_{model}")]["properties"];
                for part in ["attrs", "identifiers"] {
                    for k in e[part].as_object().unwrap().keys() {
                        assert!(fields.get(k).is_some(), "{}: `{k}` is not a field of {model}", bp.display());
                    }
                }
            }
            // The judge can fail: a mode authentik does not have is rejected.
            let mut bad = doc.clone();
            let p = bad["entries"].as_array_mut().unwrap().iter_mut().find(|e| e["model"] == "authentik_providers_proxy.proxyprovider");
            if let Some(p) = p {
                p["attrs"]["mode"] = "forward_everything".into();
                assert!(judge(&bad, tmp.path()).is_err(), "the schema judge accepts an unknown proxy mode");
            }
            judged += 1;
        }
    }
    // civic-scaleway, five-vps-saas and jacker one each, maidan-cloud one per community.
    assert!(judged >= 5, "only {judged} authentik blueprints were judged");
}

#[test]
fn every_authentik_route_has_its_provider_bound_to_the_embedded_outpost() {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for ex in examples() {
        let name = ex.file_name().unwrap().to_string_lossy().into_owned();
        // The routes behind an authentik service, from the resolved model.
        let sys = match kiln::pipeline::compile(&ex, &kiln::pipeline::Options::default()).unwrap() {
            kiln::pipeline::Outcome::Ok(c) => c.system,
            kiln::pipeline::Outcome::Failed(f) => panic!("{name}: {:?}", f.diagnostics),
        };
        let mut by_idp: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for r in &sys.routes {
            if let Some(a) = r.auth.as_ref().filter(|a| sys.services[&a.service].module == "authentik") {
                by_idp.entry(a.service.as_str()).or_default().push(r.hostname.as_str());
            }
        }
        if by_idp.is_empty() {
            continue;
        }
        let result = build(&ex, &tmp.path().join("store"), &tmp.path().join(&name));
        let bps = blueprints(&result);
        for (idp, hosts) in by_idp {
            let file = format!("authentik-blueprint-{idp}.yaml");
            let bp = bps.iter().find(|p| p.ends_with(&file)).unwrap_or_else(|| panic!("{name}: no blueprint for {idp}"));
            let doc = resolved(bp, true);
            let providers = entries(&doc, "authentik_providers_proxy.proxyprovider");
            let outpost = entries(&doc, "authentik_outposts.outpost");
            assert_eq!(outpost.len(), 1);
            assert_eq!(outpost[0]["identifiers"]["managed"], "goauthentik.io/outposts/embedded");
            let bound: Vec<&str> = outpost[0]["attrs"]["providers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            assert_eq!(providers.len(), hosts.len(), "{name}: one proxy provider per route behind {idp}");
            for host in hosts {
                let url = format!("https://{host}");
                let p = providers
                    .iter()
                    .find(|p| p["attrs"]["external_host"] == url.as_str())
                    .unwrap_or_else(|| panic!("{name}: no provider for {url} in {idp}'s blueprint"));
                assert_eq!(p["attrs"]["mode"], "forward_single", "{url}");
                let id = p["id"].as_str().unwrap();
                assert!(bound.contains(&format!("KeyOf:{id}").as_str()), "{name}: {url}'s provider is not bound to the embedded outpost");
                let app = entries(&doc, "authentik_core.application")
                    .into_iter()
                    .find(|a| a["attrs"]["provider"] == format!("KeyOf:{id}").as_str())
                    .unwrap_or_else(|| panic!("{name}: no application for {url}"));
                assert_eq!(app["attrs"]["meta_launch_url"], url.as_str());
                checked += 1;
            }
        }
    }
    assert!(checked >= 6, "only {checked} routes behind authentik were checked");
}

/// The Compose file as `docker-compose config` resolves it, after the `compose` oracle accepts
/// it; env files (written on the host from delivered secrets) are not read, as in the oracle.
fn compose(file: &Path) -> Value {
    oracle("compose", file).unwrap_or_else(|e| panic!("docker-compose rejects {}:\n{e}", file.display()));
    let out = run(Command::new(venv("docker-compose")).arg("-f").arg(file).args(["config", "--no-env-resolution", "--format", "json"]));
    assert!(out.status.success(), "docker-compose config: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A compose service by name from `docker-compose config`.
fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"].get(name).unwrap_or_else(|| panic!("no compose service {name}"))
}

/// The container path where a compose service mounts the secret whose source names `secret`.
fn secret_target(svc: &Value, secret: &str) -> Option<String> {
    svc["secrets"]
        .as_array()?
        .iter()
        .find(|s| s["source"].as_str().is_some_and(|x| x.ends_with(secret)))
        .map(|s| s["target"].as_str().unwrap().to_string())
}

#[test]
fn civic_scaleway_applications_log_in_through_authentik_with_delivered_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let (ex, store) = (repo().join("flake-free-examples/civic-scaleway"), tmp.path().join("store"));
    let result = build_with_identity(&ex, &store, &tmp.path().join("result"));

    // Outline: the IdP's issuer on its public route, the derived client id, a secret file.
    let tools = compose(&result.join("hosts/tools-prod/compose.yaml"));
    let outline = service(&tools, "outline");
    let env = &outline["environment"];
    assert_eq!(env["OIDC_ISSUER_URL"], "https://gateway.example.org/application/o/outline/");
    assert_eq!(env["OIDC_CLIENT_ID"], "outline");
    let app_secret = secret_target(outline, "outline_oidc_client_secret").expect("Outline gets the client secret");
    assert_eq!(env["OIDC_CLIENT_SECRET_FILE"], app_secret.as_str());

    // authentik: the worker mounts the blueprint read-only and gets the same secret where the
    // blueprint's `!File` reads it; the Compose file passes `docker-compose config`.
    let idp = compose(&result.join("hosts/authentik-prod/compose.yaml"));
    let worker = service(&idp, "authentik-worker");
    let mount = worker["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["target"] == "/blueprints/kiln/authentik.yaml")
        .expect("the blueprint is mounted in authentik's blueprints directory");
    assert_eq!(mount["read_only"], true);
    let idp_secret = secret_target(worker, "outline_oidc_client_secret").expect("the worker gets the client secret");
    let bp = result.join("hosts/authentik-prod/files/authentik-worker/authentik-blueprint-authentik.yaml");
    assert!(read(&bp).contains(&format!("client_secret: !File {idp_secret}")), "the provider reads the secret the worker gets");
    let doc = resolved(&bp, true);
    let oauth = entries(&doc, "authentik_providers_oauth2.oauth2provider");
    let app =
        entries(&doc, "authentik_core.application").into_iter().find(|a| a["attrs"]["slug"] == "outline").expect("application `outline`");
    assert_eq!(app["attrs"]["provider"], "KeyOf:provider-outline", "the issuer's slug is this application's");
    judge(&resolved(&bp, false), tmp.path()).unwrap_or_else(|e| panic!("authentik's schema rejects the blueprint:\n{e}"));

    // Seed 9.3, "if Authentik is down no logins work": every application with a login of its
    // own signs in through Authentik: a provider per client with the application's callback, the
    // secret delivered to the application (on its host) and to the worker, where `!File` reads it.
    let management = compose(&result.join("hosts/management/compose.yaml"));
    let clients = [
        ("outline", &tools, "outline_oidc_client_secret", "https://wiki.example.org/auth/oidc.callback"),
        ("nextcloud", &tools, "nextcloud_oidc_client_secret", "https://cloud.example.org/index.php/apps/user_oidc/code"),
        ("espocrm", &tools, "espocrm_oidc_client_secret", "https://espo.example.org/oauth-callback.php"),
        ("leantime", &tools, "leantime_oidc_client_secret", "https://projects.example.org/oidc/callback"),
        ("grafana", &management, "grafana_oidc_client_secret", "https://grafana.example.cc/login/generic_oauth"),
    ];
    assert_eq!(oauth.len(), clients.len(), "one provider per login");
    // Grafana's login page goes straight to the provider (audit 004 #13: users had to click
    // "Single sign-on" after the forward auth); the admin's page stays at ?disableAutoLogin.
    let grafana_env = &service(&management, "grafana")["environment"];
    assert_eq!(grafana_env["GF_AUTH_GENERIC_OAUTH_ENABLED"], "true");
    assert_eq!(grafana_env["GF_AUTH_GENERIC_OAUTH_AUTO_LOGIN"], "true");
    for (client, host, secret, callback) in clients {
        let p = oauth.iter().find(|p| p["attrs"]["client_id"] == client).unwrap_or_else(|| panic!("no provider for {client}"));
        assert_eq!(p["attrs"]["redirect_uris"][0]["url"], callback, "{client}");
        assert!(secret_target(service(host, client), secret).is_some(), "{client} gets its client secret");
        let at = secret_target(worker, secret).unwrap_or_else(|| panic!("the worker gets {secret}"));
        assert!(read(&bp).contains(&format!("client_secret: !File {at}")), "{client}'s provider reads the secret the worker gets");
    }

    // The secret's value (decrypted with the examples' test key) is in no store file.
    let names = [
        "outline_oidc_client_secret",
        "nextcloud_oidc_client_secret",
        "espocrm_oidc_client_secret",
        "leantime_oidc_client_secret",
        "grafana_oidc_client_secret",
    ];
    for (name, value) in example_secret_values(&ex, &names) {
        assert_eq!(holding(&store, &value), Vec::<String>::new(), "{name}'s value is in the store");
    }
}

/// A copy of civic-scaleway with `edit` applied to one of its files; `kiln check`'s output.
fn check_edited(file: &str, edit: impl Fn(String) -> String) -> (bool, String) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sys");
    copy_tree(&repo().join("flake-free-examples/civic-scaleway"), &dir);
    let p = dir.join(file);
    std::fs::write(&p, edit(read(&p))).unwrap();
    let out = run(kiln().arg("check").arg(&dir));
    (out.status.success(), text(&out.stderr))
}

#[test]
fn logins_that_cannot_be_wired_are_reported_at_the_login() {
    // The IdP is not authentik.
    let (ok, err) = check_edited("tools.toml", |s| s.replace("login = \"authentik\"", "login = \"grafana\""));
    assert!(!ok && err.contains("E0060") && err.contains("`grafana` is not an identity provider kiln registers clients in"), "{err}");
    assert!(err.contains("tools.toml:"), "reported in the file that has `login`: {err}");
    // The IdP has no route: no issuer URL.
    let (ok, err) = check_edited("identity.toml", |s| {
        s.replace("[routes.\"gateway.example.org\"]\nservice = \"authentik\"\nendpoint = \"http\"\nedge = \"traefik-authentik-prod\"\n", "")
    });
    assert!(!ok && err.contains("E0060") && err.contains("has no route"), "{err}");
    // A module that does not speak OIDC.
    let (ok, err) = check_edited("tools.toml", |s| s.replace("[services.decidim]\n", "[services.decidim]\nlogin = \"authentik\"\n"));
    assert!(!ok && err.contains("E0060") && err.contains("does not sign in over OpenID Connect"), "{err}");
    // An option `login` sets, given by hand as well.
    let (ok, err) = check_edited("tools.toml", |s| {
        s.replace("oidc_display_name = \"Authentik\"", "oidc_display_name = \"Authentik\"\noidc_client_id = \"mine\"")
    });
    assert!(!ok && err.contains("is set by `login`"), "{err}");
}

/// The identity provider a module's service signs in through in [`module_system_with_login`]:
/// authentik (server, worker, its PostgreSQL) on a second host, or Keycloak, with a route.
fn idp_block(kind: &str) -> String {
    let host = "\n[hosts.h2]\nprovider = \"hetzner\"\nimage = \"ubuntu-24.04\"\npublic = true\nnetworks = { private = \"10.0.0.3\" }\n\n[services.sso-db]\nmodule = \"postgres\"\nhost = \"h2\"\nsecrets = { password = \"sso_db_password\" }\n";
    let idp = match kind {
        "authentik" => {
            "options = { database = \"authentik\", user = \"authentik\" }\n\n[services.sso]\nmodule = \"authentik\"\nhost = \"h2\"\nconnects = [\"sso-db\"]\nsecrets = { database_password = \"sso_db_password\", secret_key = \"sso_secret_key\" }\n\n[services.sso-worker]\nmodule = \"authentik-worker\"\nhost = \"h2\"\nconnects = [\"sso-db\"]\nsecrets = { database_password = \"sso_db_password\", secret_key = \"sso_secret_key\", bootstrap_password = \"sso_bootstrap\" }\n\n[secrets.sso_secret_key]\nfile = \"secrets.sops.yaml\"\n\n[secrets.sso_bootstrap]\nfile = \"secrets.sops.yaml\"\n"
        }
        _ => {
            "options = { database = \"keycloak\", user = \"keycloak\" }\n\n[services.sso]\nmodule = \"keycloak\"\nhost = \"h2\"\nconnects = [\"sso-db\"]\noptions = { hostname = \"auth.example.com\" }\nsecrets = { database_password = \"sso_db_password\" }\n"
        }
    };
    format!(
        "{host}{idp}\n[secrets.sso_db_password]\nfile = \"secrets.sops.yaml\"\n\n[services.sso-edge]\nmodule = \"caddy\"\nhost = \"h2\"\n\n[routes.\"auth.example.com\"]\nservice = \"sso\"\nendpoint = \"http\"\nedge = \"sso-edge\"\n"
    )
}

/// The minimal system of `kiln modules check` around `module` (service `svc`, route
/// svc.example.com), its service logging in through `sso` with the client-secret slot (and the
/// slots required with the client id) bound.
fn module_system_with_login(lib: &kiln::load::Inputs, module: &str, idp: &str) -> String {
    let m = &lib.modules[module].decl;
    let oidc = m.oidc.as_ref().unwrap();
    // Two edges now (the IdP's host has its own): the route names the application's.
    let text = kiln::module_check::system::system_for(lib, module)
        .unwrap()
        .replace("[routes.\"svc.example.com\"]\n", "[routes.\"svc.example.com\"]\nedge = \"edge\"\n");
    let slots: Vec<&str> = m
        .secrets
        .iter()
        .filter(|s| {
            s.slot.value == oidc.client_secret.value
                || s.required_when.as_ref().is_some_and(|r| {
                    matches!(&r.value, kiln::syntax::module::RequiredWhen::Option { name, equals: None } if *name == oidc.client_id_option.value)
                })
        })
        .map(|s| s.slot.value.as_str())
        .collect();
    let start = text.find("\n[services.svc]\n").unwrap() + 1;
    let end = text[start + 1..].find("\n[").map_or(text.len(), |e| start + 1 + e + 1);
    let mut block = text[start..end].to_string();
    let binds: String = slots.iter().map(|s| format!("{s} = \"svc_{s}\", ")).collect();
    block = match block.find("secrets = { ") {
        Some(i) => format!("{}secrets = {{ {binds}{}", &block[..i], &block[i + "secrets = { ".len()..]),
        None => format!("{block}secrets = {{ {} }}\n", binds.trim_end_matches([',', ' '])),
    };
    block = block.replacen("host = \"h1\"\n", "host = \"h1\"\nlogin = \"sso\"\n", 1);
    let declared: String = slots.iter().map(|s| format!("\n[secrets.svc_{s}]\nfile = \"secrets.sops.yaml\"\n")).collect();
    format!("{}{block}{}{declared}{}", &text[..start], &text[end..], idp_block(idp))
}

/// Every value a compose service hands the application: environment values, command and
/// entrypoint words, and the config files kiln renders for it.
fn app_inputs(compose: &Value, result: &Path, host: &str, name: &str) -> String {
    let svc = service(compose, name);
    let mut out: Vec<String> = Vec::new();
    if let Some(env) = svc["environment"].as_object() {
        out.extend(env.values().filter_map(|v| v.as_str()).map(str::to_string));
    }
    for k in ["command", "entrypoint"] {
        if let Some(words) = svc[k].as_array() {
            out.extend(words.iter().filter_map(|v| v.as_str()).map(str::to_string));
        }
    }
    let dir = result.join(format!("hosts/{host}/files/{name}"));
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries {
            out.push(read(&e.unwrap().path()));
        }
    }
    out.join("\n")
}

#[test]
fn every_oidc_module_gets_the_issuer_and_a_delivered_client_secret() {
    let lib = kiln::load::library(&[]).unwrap();
    let oidc_modules: Vec<&String> = lib.modules.iter().filter(|(_, m)| m.decl.oidc.is_some()).map(|(n, _)| n).collect();
    // The modules of the seeds whose upstream signs in over OpenID Connect without a paid
    // edition or a plugin (the others say why not in their descriptions).
    for expected in ["outline", "vaultwarden", "grafana", "librechat", "leantime", "matrix-synapse", "espocrm", "nextcloud"] {
        assert!(oidc_modules.iter().any(|m| *m == expected), "module `{expected}` declares no [oidc]");
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut failures = Vec::new();
    for module in oidc_modules {
        let m = &lib.modules[module].decl;
        let oidc = m.oidc.as_ref().unwrap();
        let dir = tmp.path().join(module);
        std::fs::create_dir_all(&dir).unwrap();
        let sys_text = module_system_with_login(&lib, module, "authentik");
        std::fs::write(dir.join("system.toml"), &sys_text).unwrap();
        let out = run(kiln().arg("build").arg(&dir).arg("--store").arg(&store).arg("--out-link").arg(dir.join("result")));
        if !out.status.success() {
            failures.push(format!("{module}: kiln build fails:\n{sys_text}\n{}", text(&out.stderr)));
            continue;
        }
        let result = dir.join("result");
        let app = compose(&result.join("hosts/h1/compose.yaml"));
        let inputs = app_inputs(&app, &result, "h1", "svc");
        // The provider's issuer (discovery) or its endpoints, on the IdP's route.
        let expected = if oidc.issuer_option.is_some() {
            "https://auth.example.com/application/o/svc/".to_string()
        } else {
            "https://auth.example.com/application/o/authorize/".to_string()
        };
        if !inputs.contains(&expected) {
            failures.push(format!("{module}: the application is not given {expected}"));
        }
        // Scripts rendered with the login (Nextcloud's before-starting hook) pass the shell judge.
        let svc_files = result.join("hosts/h1/files/svc");
        for (path, _, _) in if svc_files.exists() { files(&svc_files) } else { Vec::new() } {
            if path.ends_with(".sh") {
                let f = result.join("hosts/h1/files/svc").join(&path);
                if let Err(e) = oracle("sh", &f) {
                    failures.push(format!("{module}: {path} fails the shell judge: {e}"));
                }
            }
        }
        // The client secret: mounted for the application, and read by it from that file or
        // from the env file the host writes from it.
        let slot = &oidc.client_secret.value;
        let secret = format!("svc_{slot}");
        let env_var = m.container.as_ref().and_then(|c| c.env_secrets.iter().find(|(_, s)| s.value == *slot)).map(|(v, _)| v.value.clone());
        match (secret_target(service(&app, "svc"), &secret), env_var) {
            (_, Some(var)) => {
                if service(&app, "svc")["env_file"].as_array().is_none_or(|f| f.is_empty()) {
                    failures.push(format!("{module}: {var} comes from an env file, which the service does not read"));
                }
            }
            (Some(target), None) => {
                if !inputs.contains(&target) {
                    failures.push(format!("{module}: the client secret is mounted at {target}, which the application is not told"));
                }
            }
            (None, None) => failures.push(format!("{module}: the client secret is not delivered")),
        }
        // authentik: the worker gets the same secret and the blueprint registers the client with
        // the route's redirect URI; authentik's schema accepts the blueprint.
        let idp = compose(&result.join("hosts/h2/compose.yaml"));
        if secret_target(service(&idp, "sso-worker"), &secret).is_none() {
            failures.push(format!("{module}: the worker applying the blueprint does not get the client secret"));
        }
        let bp = result.join("hosts/h2/files/sso-worker/authentik-blueprint-sso.yaml");
        judge(&resolved(&bp, false), tmp.path()).unwrap_or_else(|e| panic!("{module}: authentik's schema rejects the blueprint:\n{e}"));
        let doc = resolved(&bp, true);
        let provider = entries(&doc, "authentik_providers_oauth2.oauth2provider");
        let redirect = format!("https://svc.example.com{}", oidc.redirect_path.value);
        if provider.len() != 1
            || provider[0]["attrs"]["client_id"] != "svc"
            || provider[0]["attrs"]["redirect_uris"][0]["url"] != redirect.as_str()
        {
            failures.push(format!("{module}: the blueprint does not register client `svc` with {redirect}: {provider:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The realm file against the stand-in for a schema (tests/keycloak/representation-fields.json:
/// the fields and types of Keycloak's RealmRepresentation and ClientRepresentation, read from
/// upstream's source): every key a known field, every value of its field's type.
fn check_realm(realm: &Value) -> Result<(), String> {
    let fields: Value = serde_json::from_str(&read(&repo().join("tests/keycloak/representation-fields.json"))).unwrap();
    let type_of = |v: &Value| match v {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        _ => "other",
    };
    let check = |obj: &Value, rep: &str| -> Result<(), String> {
        for (k, v) in obj.as_object().ok_or(format!("{rep} is not an object"))? {
            let want = fields[rep][k].as_str().ok_or(format!("`{k}` is not a field of {rep}"))?;
            if type_of(v) != want {
                return Err(format!("{rep}.{k} is a {}, not a {want}", type_of(v)));
            }
            if let Some(allowed) = fields["enums"][k].as_array()
                && !allowed.contains(v)
            {
                return Err(format!("{rep}.{k} = {v} is not one of {allowed:?}"));
            }
        }
        Ok(())
    };
    check(realm, "RealmRepresentation")?;
    for c in realm["clients"].as_array().ok_or("no clients")? {
        check(c, "ClientRepresentation")?;
    }
    Ok(())
}

#[test]
fn keycloak_imports_a_realm_with_a_client_per_login_and_its_entrypoint_exports_the_secret() {
    let lib = kiln::load::library(&[]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sys");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("system.toml"), module_system_with_login(&lib, "outline", "keycloak")).unwrap();
    let result = build(&dir, &tmp.path().join("store"), &tmp.path().join("result"));

    // Outline: the realm's issuer, named after the Keycloak service.
    let app = compose(&result.join("hosts/h1/compose.yaml"));
    assert_eq!(service(&app, "svc")["environment"]["OIDC_ISSUER_URL"], "https://auth.example.com/realms/sso");

    // Keycloak: the realm file in its import directory, the client secret where the entrypoint
    // reads it.
    let idp = compose(&result.join("hosts/h2/compose.yaml"));
    let kc = service(&idp, "sso");
    assert!(
        kc["volumes"].as_array().unwrap().iter().any(|v| v["target"] == "/opt/keycloak/data/import/kiln-sso.json"),
        "the realm is mounted where --import-realm reads: {}",
        kc["volumes"]
    );
    assert_eq!(secret_target(kc, "svc_oidc_client_secret").as_deref(), Some("/run/secrets/kiln-oidc/svc"));
    let realm: Value = serde_json::from_str(&read(&result.join("hosts/h2/files/sso/keycloak-realm-sso.json"))).unwrap();
    check_realm(&realm).unwrap();
    assert_eq!(realm["realm"], "sso");
    let client = &realm["clients"][0];
    assert_eq!(client["clientId"], "svc");
    assert_eq!(client["publicClient"], false);
    assert_eq!(client["redirectUris"][0], "https://svc.example.com/auth/oidc.callback");
    assert_eq!(client["secret"], "${KILN_OIDC_SVC}");
    // The judge can fail: an unknown field, a mistyped one.
    let mut bad = realm.clone();
    bad["clients"][0]["redirectUri"] = "https://x".into();
    assert!(check_realm(&bad).is_err());
    bad = realm.clone();
    bad["clients"][0]["publicClient"] = "false".into();
    assert!(check_realm(&bad).is_err());

    // The entrypoint, run by bash with the secrets under a temporary directory and `env` in
    // place of Keycloak: the placeholder's variable holds the delivered secret's value.
    let words: Vec<&str> = kc["entrypoint"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(&words[..2], ["/bin/bash", "-c"]);
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir_all(secrets.join("kiln-oidc")).unwrap();
    std::fs::write(secrets.join("keycloak_db_password"), "db-pass\n").unwrap();
    std::fs::write(secrets.join("kiln-oidc/svc"), "client-secret-value\n").unwrap();
    // `docker-compose config` keeps Compose's `$$` escapes; the container gets `$`.
    let script = words[2]
        .replace("$$", "$")
        .replace("/run/secrets/", &format!("{}/", secrets.display()))
        .replace("exec /opt/keycloak/bin/kc.sh start --import-realm", "exec env");
    assert!(words[2].contains("exec /opt/keycloak/bin/kc.sh start --import-realm"), "the entrypoint starts Keycloak with --import-realm");
    let out = run(Command::new("bash").arg("-c").arg(&script));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).lines().any(|l| l == "KILN_OIDC_SVC=client-secret-value"), "{}", text(&out.stdout));
}

#[test]
fn five_vps_saas_brokers_four_social_logins_through_authentik() {
    let tmp = tempfile::tempdir().unwrap();
    let (ex, store) = (repo().join("flake-free-examples/five-vps-saas"), tmp.path().join("store"));
    let result = build_with_identity(&ex, &store, &tmp.path().join("result"));
    let bp = result.join("hosts/identity/files/authentik-worker/authentik-blueprint-authentik.yaml");
    // authentik's schema accepts it (with the sources and the identification stage).
    judge(&resolved(&bp, false), tmp.path()).unwrap_or_else(|e| panic!("authentik's schema rejects the blueprint:\n{e}"));
    let doc = resolved(&bp, true);
    let sources = entries(&doc, "authentik_sources_oauth.oauthsource");
    let kinds: Vec<&str> = sources.iter().map(|s| s["attrs"]["provider_type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["apple", "entraid", "github", "google"]);
    // Each consumer secret is read with `!File` from a file the worker is given.
    let worker = service(&compose(&result.join("hosts/identity/compose.yaml")), "authentik-worker").clone();
    let raw = read(&bp);
    for (kind, secret) in [
        ("google", "google_client_secret"),
        ("github", "github_client_secret"),
        ("entraid", "microsoft_client_secret"),
        ("apple", "apple_private_key"),
    ] {
        let target = secret_target(&worker, secret).unwrap_or_else(|| panic!("the worker does not get {secret}"));
        assert_eq!(target, format!("/run/secrets/kiln-social/{kind}"));
        assert!(raw.contains(&format!("consumer_secret: !File {target}")), "{kind}: the source reads the delivered file");
    }
    // The login page shows them: the default identification stage names every source.
    let stage = entries(&doc, "authentik_stages_identification.identificationstage");
    assert_eq!(stage.len(), 1);
    assert_eq!(stage[0]["identifiers"]["name"], "default-authentication-identification");
    let shown: Vec<&str> = stage[0]["attrs"]["sources"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(shown, ["KeyOf:source-apple", "KeyOf:source-entraid", "KeyOf:source-github", "KeyOf:source-google"]);
    // Seed day 5, "an OIDC provider for your app": the generic app module's OIDC_* contract,
    // its provider's callback on the app's route, the secret delivered to the app and the worker.
    let app_compose = compose(&result.join("hosts/app/compose.yaml"));
    let app = service(&app_compose, "app");
    let env = &app["environment"];
    assert_eq!(env["OIDC_ISSUER_URL"], "https://auth.example.com/application/o/app/");
    assert_eq!(env["OIDC_CLIENT_ID"], "app");
    assert_eq!(env["OIDC_REDIRECT_PATH"], "/oidc/callback");
    let at = secret_target(app, "app_oidc_client_secret").expect("the app gets its client secret");
    assert_eq!(env["OIDC_CLIENT_SECRET_FILE"], at.as_str());
    let oauth = entries(&doc, "authentik_providers_oauth2.oauth2provider");
    let provider = oauth.iter().find(|p| p["attrs"]["client_id"] == "app").expect("a provider for the app");
    let uris: Vec<&str> = provider["attrs"]["redirect_uris"].as_array().unwrap().iter().map(|u| u["url"].as_str().unwrap()).collect();
    assert_eq!(uris, ["https://admin.example.com/oidc/callback", "https://app.example.com/oidc/callback"], "each of the app's routes");
    let at = secret_target(&worker, "app_oidc_client_secret").expect("the worker gets the app's client secret");
    assert!(raw.contains(&format!("client_secret: !File {at}")), "the provider reads the delivered file");
    // No secret's value (decrypted with the examples' test key) is in any store file.
    let names = ["google_client_secret", "github_client_secret", "microsoft_client_secret", "apple_private_key", "app_oidc_client_secret"];
    for (name, value) in example_secret_values(&ex, &names) {
        assert_eq!(holding(&store, &value), Vec::<String>::new(), "{name}'s value is in the store");
    }
}

/// jacker (seed 003): Google, the seed's default sign-in through OAuth2-Proxy, is also a source on
/// authentik's login page, with the same Google client; the secret reaches both, and the store
/// holds no value of it.
#[test]
fn jacker_offers_google_on_authentiks_login_page() {
    let tmp = tempfile::tempdir().unwrap();
    let (ex, store) = (repo().join("flake-free-examples/jacker"), tmp.path().join("store"));
    let result = build_with_identity(&ex, &store, &tmp.path().join("result"));
    let bp = result.join("hosts/jacker/files/authentik-worker/authentik-blueprint-authentik.yaml");
    judge(&resolved(&bp, false), tmp.path()).unwrap_or_else(|e| panic!("authentik's schema rejects the blueprint:\n{e}"));
    let doc = resolved(&bp, true);
    let sources = entries(&doc, "authentik_sources_oauth.oauthsource");
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0]["attrs"]["provider_type"], "google");
    let jacker = compose(&result.join("hosts/jacker/compose.yaml"));
    let key = sources[0]["attrs"]["consumer_key"].as_str().unwrap();
    let proxy = read(&result.join("hosts/jacker/files/oauth2-proxy/oauth2-proxy.cfg"));
    assert!(proxy.lines().any(|l| l == format!("client_id = \"{key}\"")), "the same Google client as OAuth2-Proxy's:\n{proxy}");
    let target = secret_target(service(&jacker, "authentik-worker"), "oauth_client_secret").expect("the worker gets the Google secret");
    assert!(read(&bp).contains(&format!("consumer_secret: !File {target}")), "the source reads the delivered file");
    let stage = entries(&doc, "authentik_stages_identification.identificationstage");
    assert_eq!(stage[0]["attrs"]["sources"], serde_json::json!(["KeyOf:source-google"]), "the login page shows it");
    for (name, value) in example_secret_values(&ex, &["oauth_client_secret"]) {
        assert_eq!(holding(&store, &value), Vec::<String>::new(), "{name}'s value is in the store");
    }
}

#[test]
fn social_logins_that_cannot_be_wired_are_reported() {
    // A kind authentik has no source type for.
    let (ok, err) = check_edited("identity.toml", |s| {
        s.replace(
            "[services.authentik]\n",
            "[services.authentik]\nsocial_logins = { gogle = { client_id = \"x\", client_secret = \"authentik_secret_key\" } }\n",
        )
    });
    assert!(
        !ok && err.contains("E0060") && err.contains("no social login of kind `gogle`") && err.contains("did you mean `google`?"),
        "{err}"
    );
    // A secret that is not declared.
    let (ok, err) = check_edited("identity.toml", |s| {
        s.replace(
            "[services.authentik]\n",
            "[services.authentik]\nsocial_logins = { github = { client_id = \"x\", client_secret = \"nope\" } }\n",
        )
    });
    assert!(!ok && err.contains("unknown secret `nope`"), "{err}");
}
