//! systemd units: `[backup] schedule` and `check` are calendar expressions that the real
//! `systemd-analyze calendar` accepts whenever kiln does (a table and generated cases), hostile
//! values (`\r`, NUL, `\n[Unit]`, …) are refused at their line, and the units kiln writes with
//! unusual schedules pass `systemd-analyze verify`.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use kiln::types::Calendar;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

/// The expressions systemd accepts, all of them: `Err` names the first it refuses.
fn systemd_accepts(exprs: &[String]) -> Result<(), String> {
    if exprs.is_empty() {
        return Ok(());
    }
    let out = Command::new("systemd-analyze").arg("calendar").args(exprs).output().expect("systemd-analyze is installed");
    if out.status.success() {
        return Ok(());
    }
    // find the one it refuses
    for e in exprs {
        let one = Command::new("systemd-analyze").arg("calendar").arg(e).output().unwrap();
        if !one.status.success() {
            return Err(format!("{e:?}: {}", text(&one.stderr)));
        }
    }
    Err(text(&out.stderr))
}

#[test]
fn the_usual_forms_are_accepted_by_kiln_and_systemd() {
    let forms = [
        "minutely",
        "hourly",
        "daily",
        "weekly",
        "monthly",
        "quarterly",
        "semiannually",
        "yearly",
        "annually",
        "*-*-* 03:00:00",
        "*-*-* 03:00",
        "Sun *-*-* 05:00:00",
        "Mon..Fri *-*-* 03:00",
        "Mon,Wed,Fri 22:30",
        "Sat,Sun",
        "monday *-*-* 01:00",
        "*-*-1,15 03:00",
        "2026-01-01",
        "*-02-29 12:00:00",
        "*-*-* 0/15:00",
        "*-*-* *:0/15",
        "*-*-* 1..5/2:00",
        "*:00",
        "03:00 UTC",
        "Mon..Fri  *-*-*   03:00",
    ];
    for f in forms {
        assert!(Calendar::parse(f).is_ok(), "kiln refuses {f:?}");
    }
    let normalised: Vec<String> = forms.iter().map(|f| Calendar::parse(f).unwrap().to_string()).collect();
    systemd_accepts(&normalised).unwrap();
    // kiln's defaults are valid too
    systemd_accepts(&[Calendar::default_backup().to_string(), Calendar::default_check().to_string()]).unwrap();
}

#[test]
fn what_systemd_refuses_kiln_refuses() {
    for bad in [
        "",
        "24:00",
        "00:60",
        "*-13-01",
        "5..3:00",
        "0/0:00",
        "*-*-* */15:00",
        "2200-01-01",
        "Funday 03:00",
        "daily daily",
        "03:00 Mon",
        "Wed..Mon",
        "Sun..Mon 03:00",
        "*-7/25",
        "*-*-* 0/24:00",
        "*-*-* 1..5/0:00",
        "*-*-* 03:00:00 Europe/Nowhere",
    ] {
        assert!(Calendar::parse(bad).is_err(), "kiln accepts {bad:?}");
        assert!(systemd_accepts(&[bad.to_string()]).is_err(), "systemd accepts {bad:?}: the table is wrong");
    }
}

#[test]
fn hostile_values_are_refused() {
    for bad in [
        "daily\r[Unit]\rWants=poweroff.target",
        "daily\0",
        "daily\n[Unit]\nWants=poweroff.target",
        "*-*-* 03:00\u{b}",
        "*-*-* 03:00\u{85}",
        "daily\u{1b}[2J",
        "%n",
        "daily; reboot",
        "${x}",
        "daily\\",
    ] {
        assert!(Calendar::parse(bad).is_err(), "kiln accepts {bad:?}");
    }
}

/// One component: `*`, numbers in and out of range, ranges, repetitions, lists, junk.
fn component() -> impl Strategy<Value = String> {
    let num = prop_oneof![8 => 0u32..13, 4 => 0u32..70, 1 => Just(99), 1 => Just(2025), 1 => Just(1970), 1 => Just(2199), 1 => Just(2200)]
        .prop_map(|n| n.to_string());
    let item = prop_oneof![
        6 => Just("*".to_string()),
        6 => num.clone(),
        2 => (num.clone(), num.clone()).prop_map(|(a, b)| format!("{a}..{b}")),
        2 => (num.clone(), 0u32..30).prop_map(|(a, r)| format!("{a}/{r}")),
        1 => (num.clone(), num.clone(), 1u32..10).prop_map(|(a, b, r)| format!("{a}..{b}/{r}")),
        1 => Just("*/5".to_string()),
        1 => Just("~".to_string()),
        1 => Just("x".to_string()),
    ];
    prop_oneof![4 => item.clone(), 1 => (item.clone(), item).prop_map(|(a, b)| format!("{a},{b}"))]
}

fn calendar_expr() -> impl Strategy<Value = String> {
    let day = prop::sample::select(vec!["Mon", "tue", "Wednesday", "Thu", "Fri", "Sat", "sun", "Funday"]);
    let weekdays = prop::collection::vec(
        prop_oneof![day.clone().prop_map(str::to_string), (day.clone(), day).prop_map(|(a, b)| format!("{a}..{b}"))],
        1..3,
    )
    .prop_map(|v| v.join(","));
    let date = prop_oneof![
        (component(), component(), component()).prop_map(|(y, m, d)| format!("{y}-{m}-{d}")),
        (component(), component()).prop_map(|(m, d)| format!("{m}-{d}")),
    ];
    let time = prop_oneof![
        (component(), component()).prop_map(|(h, m)| format!("{h}:{m}")),
        (component(), component(), component()).prop_map(|(h, m, s)| format!("{h}:{m}:{s}")),
    ];
    let shorthand = prop::sample::select(vec!["daily", "weekly", "Hourly", "monthly", "fortnightly"]).prop_map(str::to_string);
    let full = (prop::option::of(weekdays), prop::option::of(date), prop::option::of(time), prop::option::of(Just("UTC")))
        .prop_map(|(w, d, t, z)| [w, d, t, z.map(str::to_string)].into_iter().flatten().collect::<Vec<_>>().join(" "));
    prop_oneof![1 => shorthand, 6 => full]
}

/// Generated expressions, many of them wrong: every one kiln accepts, systemd accepts.
#[test]
fn generated_expressions_kiln_accepts_systemd_accepts() {
    // the nested strategies need more stack than a test thread has in a debug build
    std::thread::Builder::new().stack_size(64 << 20).spawn(generated).unwrap().join().unwrap();
}

fn generated() {
    let mut runner = TestRunner::deterministic();
    let strategy = calendar_expr();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..4000 {
        let e = strategy.new_tree(&mut runner).unwrap().current();
        match Calendar::parse(&e) {
            Ok(c) => accepted.push(c.to_string()),
            Err(_) => refused += 1,
        }
    }
    accepted.sort();
    accepted.dedup();
    assert!(accepted.len() >= 200 && refused >= 200, "the generator covers both sides: {} accepted, {refused} refused", accepted.len());
    for chunk in accepted.chunks(200) {
        systemd_accepts(chunk).unwrap_or_else(|e| panic!("kiln accepts what systemd refuses: {e}"));
    }
}

fn system(dir: &Path, schedule: &str, check: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let preamble = common::preamble("units");
    let toml = format!(
        r#"{preamble}
[hosts.db]
provider = "hetzner"
image = "debian-12"
public = true

[services.db]
module = "db"
host = "db"
secrets = {{ password = "db_password" }}

[secrets.restic_password]
file = "secrets.sops.yaml"

[secrets.db_password]
file = "secrets.sops.yaml"

[secrets.storagebox_key]
file = "secrets.sops.yaml"

[backup]
repository = "sftp:u1@u1.your-storagebox.de:/restic/{{host}}"
password = "restic_password"
ssh_key = "storagebox_key"
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKey000000000000000000000000000000"
schedule = {schedule}
check = {check}
keep = {{ daily = 7 }}
"#,
        schedule = serde_json::to_string(schedule).unwrap(),
        check = serde_json::to_string(check).unwrap(),
    );
    std::fs::write(dir.join("system.toml"), toml).unwrap();
}

#[test]
fn hostile_schedules_are_refused_at_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, bad) in
        ["daily\r[Unit]\rWants=poweroff.target", "daily\0", "daily\n[Unit]\nWants=poweroff.target", "Mon 25:00"].iter().enumerate()
    {
        for field in ["schedule", "check"] {
            let dir = tmp.path().join(format!("{field}{i}"));
            let (s, c) = if field == "schedule" { (*bad, "weekly") } else { ("daily", *bad) };
            system(&dir, s, c);
            let out = run(kiln().arg("--modules").arg(repo().join("tests/fixtures/modules")).arg("check").arg(&dir));
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{field} = {bad:?} accepted:\n{err}");
            let line = std::fs::read_to_string(dir.join("system.toml")).unwrap().lines().position(|l| l.starts_with(field)).unwrap() + 1;
            assert!(err.contains(&format!("system.toml:{line}:")), "{field} = {bad:?}: not at line {line}:\n{err}");
        }
    }
}

#[test]
fn units_with_unusual_schedules_pass_systemd_analyze_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    system(&sys, "Mon..Fri *-*-1,15 0/6:30 UTC", "quarterly");
    let result = build_with_modules(&repo().join("tests/fixtures/modules"), &sys, &tmp.path().join("store"), &tmp.path().join("r"));
    let dir = result.join("hosts/db/backup");
    let timer = std::fs::read_to_string(dir.join("kiln-backup.timer")).unwrap();
    assert!(timer.contains("\nOnCalendar=Mon..Fri *-*-1,15 0/6:30 UTC\n"), "{timer}");
    assert!(std::fs::read_to_string(dir.join("kiln-backup-check.timer")).unwrap().contains("\nOnCalendar=quarterly\n"));
    let mut judged = 0;
    for unit in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e != "sh")) {
        oracle("systemd", &unit).unwrap_or_else(|e| panic!("{}: {e}", unit.display()));
        judged += 1;
    }
    assert_eq!(judged, 4);
}
