//! Derived alerting, judged by its consumers: the rules by `promtool check rules`, the
//! Alertmanager configuration by `amtool check-config`, the container watchdog by shellcheck,
//! dash and systemd-analyze, and its restart logic by running it against a stand-in `docker`.

mod common;

use std::path::Path;

use common::*;

fn built(system: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(sys.join("system.toml"), system).unwrap();
    let r = build(&sys, &tmp.path().join("store"), &tmp.path().join("r"));
    (tmp, r.join("hosts/mon"))
}

fn fixture() -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/alerting/system.toml")).unwrap()
}

fn alerts(host: &Path) -> Vec<String> {
    let rules = yaml_to_json(&host.join("files/prometheus/rules/kiln.yml"));
    let mut out = Vec::new();
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            out.push(r["alert"].as_str().unwrap().to_string());
        }
    }
    out
}

#[test]
fn rules_cover_what_is_scraped_and_pass_promtool() {
    let (_tmp, host) = built(&fixture());
    let rules = host.join("files/prometheus/rules/kiln.yml");
    oracle("promtool-rules", &rules).unwrap();
    oracle("promtool", &host.join("files/prometheus/prometheus.yml")).unwrap();
    let names = alerts(&host);
    for a in [
        "TargetDown",
        "DiskFilling",
        "MemoryPressure",
        "BackupFailed",
        "BackupOverdue",
        "ContainerUnhealthy",
        "ContainerRestartedByWatchdog",
        "RouteDown",
        "CertificateExpiring",
    ] {
        assert!(names.iter().any(|n| n == a), "{a} missing from {names:?}");
    }
    let text = std::fs::read_to_string(&rules).unwrap();
    // The backup is daily: overdue after a day and the six hours of slack.
    assert!(text.contains("kiln_backup_last_success_timestamp_seconds{job=\"node\"} > 108000"), "{text}");
    // Prometheus loads the file at the path the rules are mounted at.
    let prom = std::fs::read_to_string(host.join("files/prometheus/prometheus.yml")).unwrap();
    assert!(prom.contains("rule_files:\n  - rules/kiln.yml"), "{prom}");
    let compose = yaml_to_json(&host.join("compose.yaml"));
    let mounts = compose["services"]["prometheus"]["volumes"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["target"] == "/etc/prometheus/rules/kiln.yml" && m["source"] == "/opt/kiln/files/prometheus/rules/kiln.yml"),
        "{mounts:?}"
    );
    // The node exporter's textfile collector reads where the backup and the watchdog write.
    let ne = std::fs::read_to_string(host.join("files/node/defaults")).unwrap();
    assert!(ne.contains("--collector.textfile.directory=/var/lib/prometheus/node-exporter"), "{ne}");
}

#[test]
fn only_rules_whose_metrics_are_scraped() {
    // No node exporter, no blackbox, no backup: only "target down" can be evaluated.
    let sys = fixture()
        .replace("[services.node]\nmodule = \"node-exporter\"\nhost = \"mon\"\n", "")
        .replace("connects = [\"alertmanager\", \"blackbox\"]", "connects = [\"alertmanager\"]");
    let (_tmp, host) = built(&sys);
    oracle("promtool-rules", &host.join("files/prometheus/rules/kiln.yml")).unwrap();
    assert_eq!(alerts(&host), ["TargetDown"]);
}

#[test]
fn alertmanager_delivers_to_every_receiver_and_passes_amtool() {
    let (_tmp, host) = built(&fixture());
    let file = host.join("files/alertmanager/alertmanager.yml");
    oracle("amtool", &file).unwrap();
    let am = yaml_to_json(&file);
    let receivers = am["receivers"].as_array().unwrap();
    let by = |n: &str| receivers.iter().find(|r| r["name"] == n).unwrap_or_else(|| panic!("receiver {n}: {am}")).clone();
    assert_eq!(by("mail")["email_configs"][0]["to"], "ops@example.com");
    // Slack's payload (Mattermost's incoming webhooks take it), the URL read from the secret.
    assert_eq!(by("chat")["slack_configs"][0]["api_url_file"], "/run/secrets/alert-receiver-chat");
    assert_eq!(by("chat")["slack_configs"][0]["channel"], "#ops");
    assert_eq!(by("hook")["webhook_configs"][0]["url_file"], "/run/secrets/alert-receiver-hook");
    let routes: Vec<&str> = am["route"]["routes"].as_array().unwrap().iter().map(|r| r["receiver"].as_str().unwrap()).collect();
    assert_eq!(routes, ["chat", "hook", "mail"]);
    // The secret is mounted where the configuration reads it, owned by the container's user.
    let compose = yaml_to_json(&host.join("compose.yaml"));
    let secrets = compose["services"]["alertmanager"]["secrets"].as_array().unwrap();
    assert!(secrets.iter().any(|s| s["target"] == "/run/secrets/alert-receiver-chat"), "{secrets:?}");
    let script = std::fs::read_to_string(host.join("provision.sh")).unwrap();
    assert!(script.contains("/etc/kiln/service-secrets/alertmanager/chat_url 0400 65534:65534"), "the copy is the container user's");
}

/// The watchdog script with a stand-in `docker` on PATH: the stub only reports one unhealthy
/// container and logs the commands it gets. It proves the restart logic and the metric, not
/// Docker.
#[test]
fn watchdog_restarts_a_container_that_stays_unhealthy() {
    let (tmp, host) = built(&fixture());
    let script = host.join("watchdog/kiln-watchdog.sh");
    oracle("sh", &script).unwrap();
    for unit in ["kiln-watchdog.service", "kiln-watchdog.timer"] {
        oracle("systemd", &host.join("watchdog").join(unit)).unwrap();
    }
    let bin = tmp.path().join("bin");
    let state = tmp.path().join("state");
    let textfile = tmp.path().join("textfile");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&textfile).unwrap();
    let log = tmp.path().join("docker.log");
    let stub = format!(
        "#!/bin/sh\n# Stand-in for docker: one unhealthy container of project `alerting`.\necho \"$*\" >> '{}'\ncase \"$1\" in\nps) case \"$*\" in *label=com.docker.compose.project=alerting*health=unhealthy*) echo alerting-prometheus-1 ;; esac ;;\nrestart) ;;\nesac\n",
        log.display()
    );
    std::fs::write(bin.join("docker"), stub).unwrap();
    std::process::Command::new("chmod").arg("+x").arg(bin.join("docker")).status().unwrap();
    let run = || {
        let out = std::process::Command::new("dash")
            .arg(&script)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("KILN_WATCHDOG_STATE", &state)
            .env("KILN_WATCHDOG_TEXTFILE", &textfile)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    let restarts = || std::fs::read_to_string(&log).unwrap_or_default().lines().filter(|l| l.starts_with("restart")).count();
    let metrics = || std::fs::read_to_string(textfile.join("kiln_watchdog.prom")).unwrap();
    run();
    run();
    assert_eq!(restarts(), 0, "two unhealthy checks are not yet a restart");
    assert!(metrics().contains("kiln_watchdog_unhealthy{container=\"alerting-prometheus-1\"} 1"), "{}", metrics());
    run();
    assert_eq!(restarts(), 1, "the third consecutive unhealthy check restarts it");
    assert!(std::fs::read_to_string(&log).unwrap().contains("restart alerting-prometheus-1"));
    assert!(metrics().contains("kiln_watchdog_restarts_total{container=\"alerting-prometheus-1\"} 1"), "{}", metrics());
    assert!(!metrics().contains("kiln_watchdog_unhealthy{"), "counting starts afresh after a restart: {}", metrics());
    for _ in 0..3 {
        run();
    }
    assert_eq!(restarts(), 2);
    assert!(metrics().contains("kiln_watchdog_restarts_total{container=\"alerting-prometheus-1\"} 2"), "{}", metrics());
    // The provisioner installs the units and starts the timer.
    let prov = std::fs::read_to_string(host.join("provision.sh")).unwrap();
    assert!(prov.contains("reload_units\nsystemctl --no-reload enable --now kiln-watchdog.timer"), "{prov}");
}

/// A free loopback port (bound then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills a child process when dropped (a failed assertion too).
struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The body of `http://127.0.0.1:PORT/PATH`, retried while the server starts (10 s at most).
fn get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("nothing answers on 127.0.0.1:{port}");
}

/// Jacker audit J8: Portainer's and code-server's routes admit only the administrators'
/// network, so the edge answers the blackbox prober with 403 and the derived `RouteDown` alert
/// fired forever. Routes with an allow list are now probed with the exporter's `http_2xx_or_403`
/// module (a label on their target group sets the module parameter), the others with `http_2xx`.
/// And (audit 003 #8, second pass) routes behind sign-in answered the prober with a redirect to
/// the identity provider, which `http_2xx` followed: the probe and its certificate expiry judged
/// accounts.google.com, not the route. They are probed with `http_signin`, which does not follow
/// (an allow-listed route behind sign-in too: it answers 403 or the redirect).
/// Judged by promtool (the Prometheus configuration) and by the real blackbox exporter loading
/// the module's configuration and probing loopback servers answering 403, 500, 401 and a redirect
/// to a server that is down.
#[test]
fn routes_behind_an_allow_list_or_sign_in_are_probed_as_up_when_the_edge_refuses_the_prober() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build(&repo().join("flake-free-examples/jacker"), &tmp.path().join("store"), &tmp.path().join("r"));
    let files = out.join("hosts/jacker/files");
    let prom_file = files.join("prometheus/prometheus.yml");
    let prom = yaml_to_json(&prom_file);
    let job = prom["scrape_configs"].as_array().unwrap().iter().find(|j| j["job_name"] == "blackbox-routes").expect("the probe job");
    let groups = job["static_configs"].as_array().unwrap();
    let targets = |module: Option<&str>| -> Vec<String> {
        let g =
            groups.iter().find(|g| g["labels"]["__param_module"].as_str() == module).unwrap_or_else(|| panic!("{module:?}: {groups:?}"));
        g["targets"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
    };
    // jacker's allow-listed routes are behind sign-in too; its others all face the internet.
    assert!(groups.iter().all(|g| g["labels"]["__param_module"] != "http_2xx_or_403"), "{groups:?}");
    let signin: Vec<String> = ["code", "grafana", "home", "jaeger", "portainer", "prometheus", "redis"]
        .iter()
        .map(|n| format!("https://{n}.example.com/"))
        .collect();
    assert_eq!(targets(Some("http_signin")), signin);
    let open = targets(None);
    assert!(open.contains(&"https://auth.example.com/".to_string()) && !open.iter().any(|t| signin.contains(t)), "{open:?}");
    let checked = run(std::process::Command::new(".test-tools/bin/promtool")
        .current_dir(repo())
        .args(["check", "config", "--syntax-only"])
        .arg(&prom_file));
    assert!(checked.status.success(), "{}{}", text(&checked.stdout), text(&checked.stderr));

    // Loopback servers answering 403 (the edge refusing the prober) and 500 (a broken route).
    let serve = |status: u16| {
        let port = free_port();
        let script = format!(
            "import http.server\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        self.send_response({status}); self.send_header('Content-Length', '0'); self.end_headers()\n    def log_message(self, *a): pass\nhttp.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
        );
        let child = Killed(std::process::Command::new("python3").arg("-c").arg(script).spawn().unwrap());
        get(port, "/"); // listening
        (port, child)
    };
    let (refusing, _a) = serve(403);
    let (broken, _b) = serve(500);
    let (unauthorised, _c) = serve(401);
    // The edge sending the prober to the provider, which is not reachable from here: following
    // the redirect fails, not following it judges the edge.
    let gone = free_port();
    let redirecting = {
        let port = free_port();
        let script = format!(
            "import http.server\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        self.send_response(302); self.send_header('Location', 'http://127.0.0.1:{gone}/authorize'); self.send_header('Content-Length', '0'); self.end_headers()\n    def log_message(self, *a): pass\nhttp.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
        );
        let child = Killed(std::process::Command::new("python3").arg("-c").arg(script).spawn().unwrap());
        get(port, "/");
        (port, child)
    };
    let port = free_port();
    let _exporter = Killed(
        std::process::Command::new(repo().join(".test-tools/bin/blackbox_exporter"))
            .arg(format!("--config.file={}", files.join("blackbox-exporter/config.yml").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let success = |module: &str, target: u16| -> bool {
        let body = get(port, &format!("/probe?module={module}&target=http://127.0.0.1:{target}/"));
        let line = body.lines().find(|l| l.starts_with("probe_success ")).unwrap_or_else(|| panic!("{body}"));
        line.ends_with(" 1")
    };
    assert!(success("http_2xx_or_403", refusing), "a refusing edge is up for an allow-listed route");
    assert!(!success("http_2xx", refusing), "and down for an open route");
    assert!(!success("http_2xx_or_403", broken), "a failing route is down either way");
    assert!(success("http_signin", redirecting.0), "a route sending the prober to sign in is up");
    assert!(!success("http_2xx", redirecting.0), "following the redirect judges the provider instead");
    assert!(success("http_signin", unauthorised), "a 401 from the forward auth is up");
    assert!(success("http_signin", refusing), "so is the allow list refusing the prober");
    assert!(!success("http_signin", broken), "a failing route is down");
}
