//! The firewall step hands every ufw command to one ufw process (`ufw_batch`: each `ufw` is a
//! Python start, seconds on a small VM), and writes a list of several sources once for all the
//! rules that take it. Here the real `dash` runs the step's batch with `ufw_batch` replaced by a
//! stand-in that prints the arguments it gets (named as one: it proves what the shell hands to
//! ufw, not what ufw does with it; the VM tests boot hosts whose real ufw applies them and
//! compare `ufw show added` and `ufw status` with the derived rules).

mod common;

use std::process::Command;

use common::*;

/// The commands the firewall step of `provision` hands to `ufw_batch`, split at its `;`s.
fn batch(provision: &str) -> Vec<Vec<String>> {
    let start = provision.find("\n\tset --\n").expect("the batch starts with `set --`");
    let end = provision[start..].find("\n\tufw_batch \"$@\"\n").expect("the batch ends with ufw_batch") + start;
    // The step as the provisioner runs it, from `set --` to `ufw_batch`, with its one runtime
    // value (the public interface of a NAT gateway) set.
    let script =
        format!("set -eu\npub_if=eth0\nufw_batch() {{ printf '%s\\n' \"$@\"; }}\n{}\n\tufw_batch \"$@\"\n", &provision[start..end]);
    let out = Command::new("dash").arg("-c").arg(&script).output().expect("dash");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut commands = vec![Vec::new()];
    for word in String::from_utf8(out.stdout).unwrap().lines() {
        if word == ";" {
            commands.push(Vec::new());
        } else {
            commands.last_mut().unwrap().push(word.to_string());
        }
    }
    assert_eq!(commands.pop(), Some(Vec::new()), "every command ends with `;`");
    commands
}

/// five-vps-saas's edge sits behind Cloudflare: its web ports are open to Cloudflare's ranges
/// only, for the host and for Docker's DNAT. The ranges are written once, every rule reaches the
/// batch once per range, no `ufw` runs on its own but the reset and the status check, and the
/// batch ends by enabling ufw.
#[test]
fn the_firewall_runs_in_one_ufw_process_with_each_source_list_written_once() {
    let tmp = tempfile::tempdir().unwrap();
    let r = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("r"));
    let provision = read(&r.join("hosts/edge/provision.sh"));
    let model: serde_json::Value = serde_json::from_slice(&std::fs::read(r.join("model.json")).unwrap()).unwrap();
    let rules: Vec<&serde_json::Value> = model["firewall"].as_array().unwrap().iter().filter(|r| r["host"] == "edge").collect();
    let widest = rules.iter().map(|r| r["sources"].as_array().unwrap()).max_by_key(|s| s.len()).unwrap();
    assert!(widest.len() > 10, "the edge's web ports take Cloudflare's ranges: {rules:#?}");
    for range in widest {
        let range = range.as_str().unwrap();
        assert_eq!(
            provision.matches(&format!("{range} ")).count() + provision.matches(&format!("{range}'")).count(),
            1,
            "{range} is written once"
        );
    }

    let commands = batch(&provision);
    assert_eq!(commands[..2], [vec!["default", "deny", "incoming"], vec!["default", "allow", "outgoing"]]);
    assert_eq!(commands.last().unwrap(), &vec!["--force", "enable"]);
    // Every rule, once per source: its words up to the comment, and its reason, of which the
    // comment (one word) keeps the characters ufw takes, in order.
    let mut want: Vec<(Vec<String>, String)> = Vec::new();
    for rule in &rules {
        let proto = rule["protocol"].as_str().unwrap();
        let sources: Vec<Option<&str>> = match rule["sources"].as_array().unwrap().as_slice() {
            [] => vec![None],
            many => many.iter().map(|s| Some(s.as_str().unwrap())).collect(),
        };
        let verbs: &[&[&str]] = if rule["forwarded"] == true { &[&["allow"], &["route", "allow"]] } else { &[&["allow"]] };
        for verb in verbs {
            let port = if verb.len() == 2 { rule.get("forwarded_port").unwrap_or(&rule["port"]) } else { &rule["port"] };
            for source in &sources {
                let mut words: Vec<String> = verb.iter().map(|w| w.to_string()).collect();
                words.extend(["proto".into(), proto.to_string()]);
                if let Some(s) = source {
                    words.extend(["from".into(), s.to_string()]);
                }
                words.extend(["to".into(), "any".into(), "port".into(), port.to_string()]);
                want.push((words, rule["reason"].as_str().unwrap().to_string()));
            }
        }
    }
    let subsequence = |short: &str, long: &str| {
        let mut rest = long.chars();
        short.chars().all(|c| rest.any(|l| l == c))
    };
    let opening: Vec<&Vec<String>> = commands.iter().filter(|c| c.contains(&"port".to_string())).collect();
    for c in &opening {
        let (words, comment) = c.split_at(c.len() - 2);
        assert_eq!(comment[0], "comment", "{c:?}");
        let Some(i) = want.iter().position(|(w, reason)| w == words && !comment[1].is_empty() && subsequence(&comment[1], reason)) else {
            panic!("a command no rule asks for, or asked for once only: {c:?}");
        };
        want.remove(i);
    }
    assert!(want.is_empty(), "rules without their command: {want:?}");
    // The gateway's NAT route rule, then nothing else.
    let nat: Vec<&Vec<String>> = commands.iter().filter(|c| c.starts_with(&["route".into(), "allow".into(), "out".into()])).collect();
    assert_eq!(nat.len(), 1, "{commands:?}");
    assert_eq!(nat[0][..6], ["route", "allow", "out", "on", "eth0", "from"], "out of the public interface only");
    assert_eq!(nat[0][7..], ["comment", "NAT for network private"]);
    assert_eq!(commands.len(), 2 + opening.len() + 1 + 1, "defaults, the rules, NAT, enable: {commands:?}");
    let alone: Vec<&str> = provision
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with('#') && !l.starts_with("apt_install ") && (l.starts_with("ufw ") || l.contains(" ufw ")))
        .collect();
    assert_eq!(
        alone,
        [
            "if [ \"$(cat /var/lib/kiln/ufw.rules 2>/dev/null || true)\" != \"$ufw_stamp\" ] || ! ufw status | grep -q '^Status: active'; then",
            "[ ! -f /var/lib/kiln/ufw.rules ] || ufw --force reset >/dev/null",
        ],
        "no other ufw process of its own"
    );
}
