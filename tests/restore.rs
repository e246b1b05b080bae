//! `kiln-backup.sh restore`, for real: a host with the postgres module (its data loaded back from
//! its dump) and a service whose volume comes back file by file is backed up by the script kiln
//! writes, with the real restic into a local repository and the real `pg_dumpall` of a real
//! PostgreSQL (Debian's, from .test-tools). The data then goes wrong, the script restores the
//! snapshot, and the rows and files are as they were; what was there before the restore is kept
//! aside, not deleted. `docker` is a stand-in (a shell script): it runs a container's command on
//! this machine (`exec -T`), starts the cluster as the image's entrypoint would (initdb on an
//! empty volume), and removes and makes volume directories. It proves the order of the script's
//! steps and that every path, dump and command it names works with restic and PostgreSQL; not
//! Docker's own behaviour, which the lab's VMs judge.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Debian's PostgreSQL programs (scripts/install-test-deps).
fn pg_bin() -> PathBuf {
    let bin = repo().join(".test-tools/postgresql/usr/lib/postgresql/15/bin");
    assert!(bin.join("initdb").is_file(), "{} is missing: run scripts/install-test-deps", bin.display());
    bin
}

/// The stand-in `docker`. Volumes live under `$DOCKER_ROOT/volumes`; the database service's data
/// in its volume `$DB_VOLUME`: PostgreSQL (`ENGINE=postgres`, socket in `$PGHOST`) or MariaDB
/// (`ENGINE=mariadb`, on 127.0.0.1:`$MYSQL_TCP_PORT`), initialised on an empty volume as the
/// image's entrypoint would (MariaDB: `MARIADB_DATABASE` and `MARIADB_USER` with the password
/// file). A container's `/run/secrets/` is the directory `$SECRETS`. As root, PostgreSQL runs as
/// nobody (initdb refuses root), as the image runs it as its own user.
const DOCKER: &str = r#"#!/bin/bash
set -eu
umask 022 # dockerd's own, not the calling script's
# The servers it starts are dockerd's children, not the script's: they hold none of its files
# open (the script's lock among them).
exec 9>&-
printf 'docker' >>"$STANDIN_LOG"; for a; do printf ' %s' "$a" >>"$STANDIN_LOG"; done; echo >>"$STANDIN_LOG"
as_pg() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; else "$@"; fi; }
vol=$DOCKER_ROOT/volumes/$DB_VOLUME
# The restore drill's project: its own volume and, for PostgreSQL, its own socket directory.
case ${3:-} in
*/drill.compose.yaml)
	vol=$DOCKER_ROOT/volumes/drill_$DB_VOLUME
	PGHOST=$PGHOST/drill
	export PGHOST
	mkdir -p "$PGHOST"
	[ "$(id -u)" != 0 ] || chown 65534:65534 "$PGHOST"
	;;
esac
data=$vol/_data/cluster
# A container path mounted from the service's volume (MOUNT), as the host sees it.
host_path() { if [ -n "${MOUNT:-}" ]; then printf '%s' "${1//$MOUNT/$vol/_data}"; else printf '%s' "$1"; fi; }
start_db() {
	case $ENGINE in
	none) ;;
	postgres)
		if [ -s "$data/postmaster.pid" ]; then return 0; fi
		if [ ! -s "$data/PG_VERSION" ]; then
			mkdir -p "$data"
			[ "$(id -u)" != 0 ] || chown -R 65534:65534 "$vol/_data"
			as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth-local=trust --encoding=UTF8 --locale=C >/dev/null
		fi
		as_pg "$PG_BIN/pg_ctl" -D "$data" -o "-c listen_addresses='' -k $PGHOST -p $PGPORT" -l "$PGHOST/log" -w start >/dev/null
		;;
	mariadb)
		if [ -s "$SOCK/pid" ]; then return 0; fi
		fresh=
		if [ ! -d "$data/mysql" ]; then
			mkdir -p "$data"
			"$MDB/usr/bin/mariadb-install-db" --no-defaults --basedir="$MDB/usr" --datadir="$data" --user="$(id -un)" \
				--auth-root-authentication-method=normal --skip-test-db >"$SOCK/install.log" 2>&1
			fresh=1
		fi
		"$MDB/usr/sbin/mariadbd" --no-defaults --basedir="$MDB/usr" --lc-messages-dir="$MDB/usr/share/mysql" --datadir="$data" \
			--user="$(id -un)" --socket="$SOCK/sock" --port="$MYSQL_TCP_PORT" --bind-address=127.0.0.1 --pid-file="$SOCK/pid" \
			>>"$SOCK/server.log" 2>&1 &
		for _ in $(seq 100); do [ -S "$SOCK/sock" ] && break; sleep 0.1; done
		if [ -n "$fresh" ]; then
			pw=$(cat "$SECRETS/mariadb_password")
			"$MDB/usr/bin/mariadb" --no-defaults -S "$SOCK/sock" -u root -e \
				"CREATE DATABASE shop; CREATE USER 'shop'@'%' IDENTIFIED BY '$pw'; GRANT ALL ON shop.* TO 'shop'@'%';"
		fi
		;;
	esac
}
stop_db() {
	case $ENGINE in
	none) ;;
	postgres) if [ -s "$data/postmaster.pid" ]; then as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null; fi ;;
	mariadb)
		if [ -s "$SOCK/pid" ]; then
			pid=$(cat "$SOCK/pid")
			kill "$pid"
			while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
			rm -f "$SOCK/pid"
		fi
		;;
	esac
}
case $1 in
volume)
	case $2 in
	inspect) [ -d "$DOCKER_ROOT/volumes/$3" ] ;;
	rm) rm -rf "${DOCKER_ROOT:?}/volumes/$3" ;;
	esac
	;;
compose)
	shift 3 # compose --file FILE
	case $1 in
	down)
		stop_db
		if [ "${2:-}" = --volumes ]; then rm -rf "${DOCKER_ROOT:?}/volumes/drill_$DB_VOLUME"; fi
		;;
	up)
		if [ "$2" = --no-start ]; then
			for v in $VOLUMES; do mkdir -p "$DOCKER_ROOT/volumes/$v/_data"; done
		else
			start_db
		fi
		;;
	rm) stop_db ;; # rm --stop --force SERVICE: its volume stays
	exec)
		shift 3 # exec -T SERVICE
		args=()
		for a; do
			a=${a//\/run\/secrets\//$SECRETS/}
			args+=("$(host_path "$a")")
		done
		exec "${args[@]}"
		;;
	run)
		# run --rm --no-deps -T --entrypoint PROGRAM SERVICE ARGS: Compose makes the volume if missing.
		[ "$2 $3 $4 $5" = "--rm --no-deps -T --entrypoint" ] || { echo "stand-in docker: compose run $*" >&2; exit 1; }
		program=$6
		shift 7
		mkdir -p "$vol/_data"
		args=()
		for a; do args+=("$(host_path "$a")"); done
		exec "$program" "${args[@]}"
		;;
	*) echo "stand-in docker: compose $1 is not modelled" >&2; exit 1 ;;
	esac
	;;
*) echo "stand-in docker: $1 is not modelled" >&2; exit 1 ;;
esac
"#;

/// The system: one Hetzner host (so it has a data volume and Docker's data root on it) with the
/// services `services` (TOML) and the secrets `secrets` besides restic's password.
fn system(dir: &Path, repository: &Path, services: &str, secrets: &[&str]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let mut s = format!(
        "{}\n[hosts.db]\nprovider = \"hetzner\"\nimage = \"debian-13\"\npublic = true\n\n{services}\n\
[backup]\nrepository = \"{}\"\npassword = \"restic_password\"\nkeep = {{ daily = 7 }}\n",
        // With a store: the host's payload (dumps, restore and drill) is over Hetzner's user-data limit.
        preamble("restore").replacen("domains = ", "store = \"https://artifacts.example.com/kiln\"\ndomains = ", 1),
        repository.display()
    );
    for name in secrets.iter().chain(&["restic_password"]) {
        s.push_str(&format!("\n[secrets.{name}]\nfile = \"s.sops.yaml\"\n"));
    }
    std::fs::write(dir.join("system.toml"), s).unwrap();
    let out = build_with_modules(&repo().join("tests/fixtures/modules"), dir, &dir.join("store"), &dir.join("out"));
    std::fs::read_to_string(out.join("hosts/db/backup/kiln-backup.sh")).unwrap()
}

/// The built-in postgres module (its dump loaded back) and the test `db` module (a volume backed
/// up as files).
const PG_AND_FILES: &str = "[services.pg]\nmodule = \"postgres\"\nhost = \"db\"\nsecrets = { password = \"pg_password\" }\n\n\
[services.files]\nmodule = \"db\"\nhost = \"db\"\nsecrets = { password = \"files_password\" }\n";

/// The script with the host's absolute paths moved under `root`.
fn localise(script: &str, root: &Path) -> String {
    let r = root.display().to_string();
    script
        .replace("/etc/kiln/secrets/", &format!("{r}/secrets/"))
        .replace("/var/backups/kiln", &format!("{r}/dumps"))
        .replace("/var/lib/kiln/data/docker", &format!("{r}/docker"))
}

struct Host {
    root: PathBuf,
    script: PathBuf,
    bin: PathBuf,
    sock: PathBuf,
    /// The stand-in's settings for this test's database (its engine and volumes).
    env: Vec<(&'static str, String)>,
}

impl Host {
    fn new(t: &Path, script: &str, env: &[(&'static str, &str)]) -> Host {
        let root = t.join("root");
        let sock = t.join("sock");
        let bin = t.join("bin");
        for d in [root.join("secrets"), root.join("textfile"), sock.clone(), bin.clone()] {
            std::fs::create_dir_all(&d).unwrap();
        }
        std::fs::write(root.join("secrets/restic_password"), "correct horse\n").unwrap();
        let file = root.join("kiln-backup.sh");
        std::fs::write(&file, localise(script, &root)).unwrap();
        std::fs::write(bin.join("docker"), DOCKER).unwrap();
        let mut p = std::fs::metadata(bin.join("docker")).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
        std::fs::set_permissions(bin.join("docker"), p).unwrap();
        if text(&run(Command::new("id").arg("-u")).stdout).trim() == "0" {
            assert!(run(Command::new("chown").args(["65534:65534"]).arg(&sock)).status.success());
        }
        Host { root, script: file, bin, sock, env: env.iter().map(|(k, v)| (*k, v.to_string())).collect() }
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        let mariadb = repo().join(".test-tools/mariadb/usr/bin");
        c.env("PATH", format!("{}:{}:{}:/usr/local/bin:/usr/bin:/bin", self.bin.display(), pg_bin().display(), mariadb.display()))
            .env("STANDIN_LOG", self.root.join("log"))
            .env("DOCKER_ROOT", self.root.join("docker"))
            .env("SECRETS", self.root.join("secrets"))
            .env("SOCK", &self.sock)
            .env("MDB", repo().join(".test-tools/mariadb"))
            .env("PG_BIN", pg_bin())
            .env("PGHOST", &self.sock)
            .env("PGPORT", "5432")
            .env("KILN_BACKUP_TEXTFILE", self.root.join("textfile"))
            .env("XDG_CACHE_HOME", self.root.join("cache"));
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// The backup script with `args`: (succeeded, stdout and stderr).
    fn script(&self, args: &[&str]) -> (bool, String) {
        let out = run(self.command("dash").arg(&self.script).args(args));
        (out.status.success(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
    }

    /// restic itself on `repository`, with the host's password.
    fn restic(&self, repository: &Path) -> Command {
        let mut c = self.command("restic");
        c.env("RESTIC_REPOSITORY", repository).env("RESTIC_PASSWORD_FILE", self.root.join("secrets/restic_password"));
        c
    }

    /// A snapshot of `path` made by restic itself, as host `name`, in `repository`: its short id.
    fn snapshot(&self, repository: &Path, name: &str, path: &Path) -> String {
        let out = run(self.restic(repository).args(["backup", "--json", "--host", name]).arg(path));
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).lines().find_map(|l| l.split("\"snapshot_id\":\"").nth(1)).unwrap()[..8].to_string()
    }

    fn docker(&self, args: &[&str]) {
        let out = run(self.command(&self.bin.join("docker").display().to_string()).args(args));
        assert!(out.status.success(), "stand-in docker {args:?}: {}", text(&out.stderr));
    }

    /// `sql` run by the real sqlite3 on the database file `db`, stopping at the first error.
    fn sqlite(&self, db: &Path, sql: &str) -> String {
        let out = run(self.command("sqlite3").arg("-bail").arg(db).arg(sql));
        assert!(out.status.success(), "sqlite3 {sql}: {}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    }

    fn sql(&self, db: &str, sql: &str) -> String {
        let out = run(self.command("psql").args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", db, "-c", sql]));
        assert!(out.status.success(), "psql {sql}: {}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    }

    fn files(&self) -> PathBuf {
        self.root.join("docker/volumes/restore_files-data/_data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("log")).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = run(self.command(&self.bin.join("docker").display().to_string()).args(["compose", "--file", "x", "down"]));
    }
}

#[test]
fn a_restore_brings_back_the_dumped_database_and_the_volume_files_and_keeps_what_was_there() {
    assert!(run(Command::new("restic").arg("version")).status.success(), "restic is not installed (run scripts/install-test-deps)");
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repository = t.join("repo");
    let script = system(&t.join("system"), &repository, PG_AND_FILES, &["pg_password", "files_password"]);
    // The host has a data volume: its backup reads Docker's volumes where Docker keeps them there.
    assert!(script.contains("docker_root=/var/lib/kiln/data/docker\nvolumes=\"$docker_root/volumes\"\n"), "{script}");
    assert!(!script.contains("/var/lib/docker/"), "{script}");
    let host = Host::new(
        t,
        &script,
        &[("ENGINE", "postgres"), ("DB_VOLUME", "restore_pg-data"), ("VOLUMES", "restore_pg-data restore_files-data")],
    );

    // The host as it runs: the stack up, a database with rows, a volume with files.
    host.docker(&["compose", "--file", "x", "up", "--no-start"]);
    host.docker(&["compose", "--file", "x", "up", "--detach", "--wait"]);
    host.sql("postgres", "CREATE ROLE app LOGIN PASSWORD 'app'");
    host.sql("postgres", "CREATE DATABASE app OWNER app");
    host.sql("app", "SET ROLE app; CREATE TABLE notes (body text); INSERT INTO notes VALUES ('first'), ('zweite ''Notiz'' é')");
    std::fs::write(host.files().join("report.txt"), "kept by the backup\n").unwrap();
    std::fs::create_dir_all(host.files().join("sub")).unwrap();
    std::fs::write(host.files().join("sub/deep"), "deep\n").unwrap();

    let (ok, out) = host.script(&[]);
    assert!(ok, "backup failed: {out}");
    assert!(repository.join("config").is_file(), "no repository");
    // The snapshot holds the dump and the files volume, not a copy of the running PostgreSQL's
    // directory (its dump is what a restore loads).
    let listed = run(host.restic(&repository).args(["ls", "latest"]));
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let listed = text(&listed.stdout);
    assert!(listed.contains("/restore_files-data/_data/report.txt") && listed.contains("pg.dump"), "{listed}");
    assert!(!listed.contains("restore_pg-data"), "the database server's files were copied:\n{listed}");

    // Things go wrong after the backup.
    host.sql("app", "DELETE FROM notes");
    host.sql("app", "CREATE TABLE junk (x int)");
    std::fs::write(host.files().join("report.txt"), "overwritten\n").unwrap();
    std::fs::write(host.files().join("after-backup"), "written after the snapshot\n").unwrap();

    // A snapshot that does not exist: refused before anything is touched.
    let before = host.log();
    let (ok, out) = host.script(&["restore", "deadbeef"]);
    assert!(!ok, "a missing snapshot was restored: {out}");
    assert!(out.contains("no snapshot deadbeef of host db"), "{out}");
    assert_eq!(host.log(), before, "the services were touched: {}", host.log());
    assert_eq!(host.sql("app", "SELECT count(*) FROM junk"), "0");

    // Another host's snapshot in the same repository: refused too, though restic itself
    // ignores `--host` for an explicit id.
    let id = host.snapshot(&repository, "web", &host.root.join("secrets"));
    let (ok, out) = host.script(&["restore", &id]);
    assert!(!ok && out.contains(&format!("no snapshot {id} of host db")), "another host's snapshot was taken: {out}");
    assert_eq!(host.log(), before, "the services were touched: {}", host.log());

    let (ok, out) = host.script(&["restore"]);
    assert!(ok, "restore failed: {out}\nstand-in log:\n{}", host.log());

    // The database is the dump's: the rows are back, what came later is gone.
    assert_eq!(host.sql("app", "SELECT string_agg(body, '|' ORDER BY body) FROM notes"), "first|zweite 'Notiz' é");
    assert_eq!(host.sql("app", "SELECT count(*) FROM pg_tables WHERE tablename = 'junk'"), "0");
    assert_eq!(host.sql("app", "SELECT tableowner FROM pg_tables WHERE tablename = 'notes'"), "app");
    // The volume holds exactly the snapshot's files.
    assert_eq!(std::fs::read_to_string(host.files().join("report.txt")).unwrap(), "kept by the backup\n");
    assert_eq!(std::fs::read_to_string(host.files().join("sub/deep")).unwrap(), "deep\n");
    assert!(!host.files().join("after-backup").exists(), "a file from after the snapshot is in the restored volume");

    // Nothing was deleted: what was there is kept aside, and the script says where.
    let kept_dir = out.lines().find_map(|l| l.split("the data found before it is in ").nth(1)).map(|s| s.split(' ').next().unwrap());
    let kept = PathBuf::from(kept_dir.unwrap_or_else(|| panic!("the script does not say where the old data is: {out}")));
    assert!(kept.starts_with(host.root.join("docker/kiln-before-restore")), "{}", kept.display());
    assert_eq!(std::fs::read_to_string(kept.join("restore_files-data/after-backup")).unwrap(), "written after the snapshot\n");
    assert_eq!(std::fs::read_to_string(kept.join("restore_files-data/report.txt")).unwrap(), "overwritten\n");
    assert!(kept.join("restore_pg-data/cluster/PG_VERSION").is_file(), "the old cluster was not kept");

    // The order: everything down before a volume is moved; the database up and loaded before the
    // rest starts.
    let log = host.log()[before.len()..].to_string();
    let at = |needle: &str| log.find(needle).unwrap_or_else(|| panic!("`{needle}` not run:\n{log}"));
    assert!(at("compose --file /opt/kiln/compose.yaml down") < at("volume rm restore_pg-data"), "{log}");
    assert!(at("volume rm restore_files-data") < at("up --no-start"), "{log}");
    assert!(at("up --detach --wait pg") < at("exec -T pg sh -c"), "{log}");
    assert!(at("exec -T pg sh -c") < log.rfind("up --detach --wait\n").unwrap(), "{log}");

    // The drill: the latest snapshot restored into a scratch directory and the dump loaded into a
    // throw-away copy of `pg`; the running database is not touched, nothing of the drill stays.
    host.sql("app", "INSERT INTO notes VALUES ('written after the restore')");
    let before = host.log();
    let (ok, out) = host.script(&["drill"]);
    assert!(ok, "drill failed: {out}\nstand-in log:\n{}", host.log());
    assert!(out.contains("kiln-backup: drill passed: snapshot ") && out.contains("dumps loaded: pg"), "{out}");
    let metric = read(&host.root.join("textfile/kiln_backup_drill.prom"));
    assert!(metric.contains("\nkiln_backup_drill_last_run_success 1\n"), "{metric}");
    let log = host.log()[before.len()..].to_string();
    let drill = "compose --file /opt/kiln/backup/drill.compose.yaml";
    let at = |needle: &str| log.find(needle).unwrap_or_else(|| panic!("`{needle}` not run:\n{log}"));
    assert!(at(&format!("{drill} up --detach --wait pg")) < at(&format!("{drill} exec -T pg sh -c")), "{log}");
    assert!(at(&format!("{drill} exec -T pg sh -c")) < at(&format!("{drill} rm --stop --force pg")), "{log}");
    assert!(at(&format!("{drill} rm --stop --force pg")) < at(&format!("{drill} down --volumes")), "{log}");
    assert!(!log.contains("/opt/kiln/compose.yaml"), "the drill touched the running services: {log}");
    assert_eq!(host.sql("app", "SELECT count(*) FROM notes"), "3");
    assert!(!host.root.join("docker/volumes/drill_restore_pg-data").exists(), "the drill's volume stayed");
    assert!(!host.root.join("docker/kiln-drill").exists(), "the drill's scratch directory stayed");

    // Without the memory for a copy of `pg` (the postgres module's limit, 1 GiB) the drill stops
    // before starting it: the kernel would otherwise pick among the running services to kill.
    let meminfo = host.root.join("meminfo");
    std::fs::write(&meminfo, "MemTotal:        2000000 kB\nMemFree:          100000 kB\nMemAvailable:     900000 kB\n").unwrap();
    let before = host.log();
    let out = run(host.command("dash").env("KILN_BACKUP_MEMINFO", &meminfo).arg(&host.script).arg("drill"));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "a drill without the memory for its copy passed: {said}");
    assert!(said.contains("kiln-backup: the drill needs 1024 MiB of memory for a copy of pg (its limit), 878 MiB are available"), "{said}");
    assert!(!host.log()[before.len()..].contains("up --detach --wait pg"), "the copy started: {}", host.log());
    let metric = read(&host.root.join("textfile/kiln_backup_drill.prom"));
    assert!(metric.contains("\nkiln_backup_drill_last_run_success 0\n"), "{metric}");
    assert!(!host.root.join("docker/kiln-drill").exists(), "the scratch directory stayed");

    // A snapshot whose dump does not load fails the drill (and still leaves nothing behind).
    std::fs::write(host.root.join("dumps/pg.dump"), "CREATE TABLE broken (;\n").unwrap();
    let bad_id = host.snapshot(&repository, "db", &host.root.join("dumps"));
    let (ok, out) = host.script(&["drill", &bad_id]);
    assert!(!ok, "a dump that does not load passed the drill: {out}");
    assert!(out.contains("syntax error"), "{out}");
    // The alert's metric says so.
    let metric = read(&host.root.join("textfile/kiln_backup_drill.prom"));
    assert!(metric.contains("\nkiln_backup_drill_last_run_success 0\n"), "{metric}");
    assert!(!host.root.join("docker/volumes/drill_restore_pg-data").exists(), "the failed drill's volume stayed");
    assert!(!host.root.join("docker/kiln-drill").exists(), "the failed drill's scratch directory stayed");
    assert_eq!(host.sql("app", "SELECT count(*) FROM notes"), "3");
}

#[test]
fn a_mariadb_database_comes_back_from_its_dump_as_its_owner() {
    assert!(run(Command::new("restic").arg("version")).status.success(), "restic is not installed (run scripts/install-test-deps)");
    let mdb = repo().join(".test-tools/mariadb/usr/sbin/mariadbd");
    assert!(mdb.is_file(), "{} is missing: run scripts/install-test-deps", mdb.display());
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repository = t.join("repo");
    let services = "[services.mdb]\nmodule = \"mariadb\"\nhost = \"db\"\n\
secrets = { password = \"shop_password\", root_password = \"shop_root_password\" }\noptions = { database = \"shop\", user = \"shop\" }\n";
    let script = system(&t.join("system"), &repository, services, &["shop_password", "shop_root_password"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let host = Host::new(
        t,
        &script,
        &[("ENGINE", "mariadb"), ("DB_VOLUME", "restore_mdb-data"), ("VOLUMES", "restore_mdb-data"), ("MYSQL_TCP_PORT", &port)],
    );
    std::fs::write(host.root.join("secrets/mariadb_password"), "s3cret shop pw\n").unwrap();
    let sql = |q: &str| {
        let out = run(host
            .command(&repo().join(".test-tools/mariadb/usr/bin/mariadb").display().to_string())
            .env("MYSQL_PWD", "s3cret shop pw")
            .args(["--no-defaults", "-N", "-B", "-h", "127.0.0.1", "-u", "shop", "shop", "-e", q]));
        assert!(out.status.success(), "mariadb {q}: {}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    host.docker(&["compose", "--file", "x", "up", "--no-start"]);
    host.docker(&["compose", "--file", "x", "up", "--detach", "--wait"]);
    sql("CREATE TABLE orders (id int PRIMARY KEY, note varchar(40), raw blob) DEFAULT CHARSET utf8mb4; \
         INSERT INTO orders VALUES (1, 'café ''quoted''', UNHEX('00FF0A27')), (2, 'second', NULL); \
         CREATE TRIGGER stamp BEFORE INSERT ON orders FOR EACH ROW SET NEW.note = CONCAT(NEW.note, '!')");
    // A file beside the server's in its volume: a restore from files would bring it back, one
    // that initialises the volume afresh and loads the dump does not.
    let volume = host.root.join("docker/volumes/restore_mdb-data/_data");
    std::fs::write(volume.join("beside-the-server"), "x\n").unwrap();
    let (ok, out) = host.script(&[]);
    assert!(ok, "backup failed: {out}");

    sql("DROP TABLE orders; CREATE TABLE junk (x int)");
    let (ok, out) = host.script(&["restore"]);
    assert!(ok, "restore failed: {out}\nstand-in log:\n{}", host.log());
    assert_eq!(sql("SELECT id, note, HEX(raw) FROM orders ORDER BY id"), "1\tcafé 'quoted'\t00FF0A27\n2\tsecond\tNULL");
    assert_eq!(sql("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'shop' AND table_name = 'junk'"), "0");
    // The trigger came back, owned by the account that loaded it.
    assert_eq!(sql("SELECT DEFINER FROM information_schema.triggers WHERE TRIGGER_NAME = 'stamp'"), "shop@%");
    sql("INSERT INTO orders VALUES (3, 'third', NULL)");
    assert_eq!(sql("SELECT note FROM orders WHERE id = 3"), "third!");
    assert!(!volume.join("beside-the-server").exists(), "the volume was restored from files, not loaded from the dump");
    let log = host.log();
    assert!(log.contains("exec -T mdb sh -c MYSQL_PWD=\"$(cat /run/secrets/mariadb_password)\" exec mariadb -h"), "{log}");
}

/// Uptime Kuma's database is a SQLite file: the volume's files come back from the snapshot (a live
/// copy, its write-ahead log possibly torn), then the consistent dump is loaded over them by a
/// one-off container of the service (the real sqlite3 here) before anything starts; the drill
/// loads it into a copy's empty volume the same way.
#[test]
fn a_sqlite_database_is_loaded_from_its_dump_over_the_restored_files_before_the_service_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repository = t.join("repo");
    let script = system(&t.join("system"), &repository, "[services.status]\nmodule = \"uptime-kuma\"\nhost = \"db\"\n", &[]);
    let host = Host::new(
        t,
        &script,
        &[("ENGINE", "none"), ("DB_VOLUME", "restore_status-data"), ("VOLUMES", "restore_status-data"), ("MOUNT", "/app/data")],
    );
    let data = host.root.join("docker/volumes/restore_status-data/_data");
    let sqlite = |sql: &str| host.sqlite(&data.join("kuma.db"), sql);
    host.docker(&["compose", "--file", "x", "up", "--no-start"]);
    sqlite(
        "CREATE TABLE monitor (id integer PRIMARY KEY, name text, url text); INSERT INTO monitor VALUES (1, 'shop', 'https://shop.example.org/'), (2, 'l''école', NULL)",
    );
    let (ok, out) = host.script(&[]);
    assert!(ok, "backup failed: {out}");
    // What a snapshot of a live database may hold: the dump above, and a file that lags behind it
    // with a write-ahead log caught mid-write (the later snapshot, made here by hand).
    sqlite("DELETE FROM monitor WHERE id = 2");
    std::fs::write(data.join("kuma.db-wal"), b"torn \x00\xff").unwrap();
    host.snapshot(&repository, "db", &host.root);

    sqlite("DELETE FROM monitor; CREATE TABLE junk (x int)");
    let before = host.log();
    let (ok, out) = host.script(&["restore"]);
    assert!(ok, "restore failed: {out}\nstand-in log:\n{}", host.log());
    assert_eq!(sqlite("SELECT group_concat(name, '|') FROM (SELECT name FROM monitor ORDER BY id)"), "shop|l'école");
    assert_eq!(sqlite("SELECT count(*) FROM sqlite_master WHERE name = 'junk'"), "0");
    assert_eq!(sqlite("PRAGMA integrity_check"), "ok");
    assert!(!data.join("kuma.db-wal").exists(), "the snapshot's torn write-ahead log stayed beside the loaded database");
    assert!(!data.join("kuma.db.kiln-restore").exists());
    let log = host.log()[before.len()..].to_string();
    let at = |needle: &str| log.find(needle).unwrap_or_else(|| panic!("`{needle}` not run:\n{log}"));
    let load = "compose --file /opt/kiln/compose.yaml run --rm --no-deps -T --entrypoint sh status -c";
    assert!(at("up --no-start") < at(load), "{log}");
    assert!(at(load) < at("compose --file /opt/kiln/compose.yaml up --detach --wait"), "loaded before the service starts: {log}");
    assert!(!log.contains("exec -T status"), "loaded into a running service: {log}");

    // The drill loads the dump into a copy's empty volume, and leaves nothing.
    let (ok, out) = host.script(&["drill"]);
    assert!(ok && out.contains("dumps loaded: status"), "drill failed: {out}\nstand-in log:\n{}", host.log());
    assert!(host.log().contains("compose --file /opt/kiln/backup/drill.compose.yaml run --rm --no-deps -T --entrypoint sh status -c"));
    assert!(!host.root.join("docker/volumes/drill_restore_status-data").exists(), "the drill's volume stayed");
    // A dump that does not load fails it: sqlite3 -bail stops at the first error.
    std::fs::write(host.root.join("dumps/status.dump"), "CREATE TABLE broken (;\n").unwrap();
    let bad = host.snapshot(&repository, "db", &host.root.join("dumps"));
    let (ok, out) = host.script(&["drill", &bad]);
    assert!(!ok && out.contains("syntax error"), "a dump that does not load passed the drill: {out}");
}

/// Vaultwarden's dump is a consistent copy of its SQLite file (`vaultwarden backup`): after a
/// restore it replaces the live copy the snapshot holds, before the service starts. (The dump and
/// the files are put in a restic snapshot here by hand: the stand-in has no `vaultwarden backup`.)
#[test]
fn vaultwardens_consistent_copy_replaces_the_live_one_after_a_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repository = t.join("repo");
    let script = system(
        &t.join("system"),
        &repository,
        "[services.vw]\nmodule = \"vaultwarden\"\nhost = \"db\"\noptions = { domain = \"https://vault.example.com\" }\n",
        &[],
    );
    let host =
        Host::new(t, &script, &[("ENGINE", "none"), ("DB_VOLUME", "restore_vw-data"), ("VOLUMES", "restore_vw-data"), ("MOUNT", "/data")]);
    let data = host.root.join("docker/volumes/restore_vw-data/_data");
    let sqlite = |db: &Path, sql: &str| host.sqlite(db, sql);
    host.docker(&["compose", "--file", "x", "up", "--no-start"]);
    std::fs::create_dir_all(host.root.join("dumps")).unwrap();
    // The snapshot: the consistent copy as the dump, and a live file that lags behind it with a
    // torn write-ahead log beside it.
    sqlite(&host.root.join("dumps/vw.dump"), "CREATE TABLE ciphers (uuid text PRIMARY KEY); INSERT INTO ciphers VALUES ('a'), ('b')");
    sqlite(&data.join("db.sqlite3"), "CREATE TABLE ciphers (uuid text PRIMARY KEY); INSERT INTO ciphers VALUES ('a')");
    std::fs::write(data.join("db.sqlite3-wal"), b"torn \x00\xff").unwrap();
    std::fs::write(data.join("rsa_key.pem"), "key\n").unwrap();
    let init = run(host.restic(&repository).arg("init"));
    assert!(init.status.success(), "{}", text(&init.stderr));
    host.snapshot(&repository, "db", &host.root);
    std::fs::write(data.join("db.sqlite3"), "gone wrong").unwrap();

    let (ok, out) = host.script(&["restore"]);
    assert!(ok, "restore failed: {out}\nstand-in log:\n{}", host.log());
    assert_eq!(sqlite(&data.join("db.sqlite3"), "SELECT group_concat(uuid, '|') FROM (SELECT uuid FROM ciphers ORDER BY uuid)"), "a|b");
    assert!(!data.join("db.sqlite3-wal").exists(), "the torn write-ahead log stayed");
    assert_eq!(read(&data.join("rsa_key.pem")), "key\n", "the volume's other files are the snapshot's");
    let log = host.log();
    assert!(log.contains("compose --file /opt/kiln/compose.yaml run --rm --no-deps -T --entrypoint sh vw -c"), "{log}");

    // An empty dump never replaces the database.
    std::fs::write(host.root.join("dumps/vw.dump"), "").unwrap();
    host.snapshot(&repository, "db", &host.root);
    let (ok, out) = host.script(&["restore"]);
    assert!(!ok, "an empty dump was restored: {out}");
    assert!(out.contains("the restore stopped while loading the dumps"), "{out}");
    assert_eq!(sqlite(&data.join("db.sqlite3"), "SELECT count(*) FROM ciphers"), "2");
}

#[test]
fn the_restore_script_passes_shellcheck_and_dash() {
    let tmp = tempfile::tempdir().unwrap();
    let script = system(&tmp.path().join("system"), Path::new("/srv/restic"), PG_AND_FILES, &["pg_password", "files_password"]);
    let file = tmp.path().join("kiln-backup.sh");
    std::fs::write(&file, &script).unwrap();
    oracle("sh", &file).unwrap();
    assert!(run(Command::new("dash").arg("-n").arg(&file)).status.success());
}

#[test]
fn a_module_restore_without_a_dump_is_refused_in_the_module_file() {
    let tmp = tempfile::tempdir().unwrap();
    let modules = tmp.path().join("modules");
    copy_tree(&repo().join("tests/fixtures/modules"), &modules);
    let m = modules.join("db/module.toml");
    std::fs::write(&m, format!("{}\n[backup]\nrestore = [\"psql\"]\n", read(&m))).unwrap();
    let system = tmp.path().join("system");
    std::fs::create_dir_all(&system).unwrap();
    std::fs::write(
        system.join("system.toml"),
        format!(
            "{}\n[hosts.db]\nprovider = \"hetzner\"\nimage = \"debian-13\"\npublic = true\n\n[services.files]\nmodule = \"db\"\nhost = \"db\"\nsecrets = {{ password = \"p\" }}\n\n[secrets.p]\nfile = \"s.sops.yaml\"\n",
            preamble("restore")
        ),
    )
    .unwrap();
    let out = run(kiln().arg("--modules").arg(&modules).arg("check").arg(&system));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "accepted: {err}");
    assert!(err.contains("`restore` without `dump`") && err.contains("db/module.toml:"), "{err}");

    // `restore_when` says when a restore command runs: only with one, and only `running` or `stopped`.
    let base = read(&m).replace("[backup]\nrestore = [\"psql\"]\n", "");
    std::fs::write(&m, format!("{base}[backup]\ndump = [\"cat\"]\nrestore_when = \"stopped\"\n")).unwrap();
    let err = text(&run(kiln().arg("--modules").arg(&modules).arg("check").arg(&system)).stderr);
    assert!(err.contains("`restore_when` without `restore`") && err.contains("db/module.toml:"), "{err}");
    std::fs::write(&m, format!("{base}[backup]\ndump = [\"cat\"]\nrestore = [\"sh\"]\nrestore_when = \"offline\"\n")).unwrap();
    let err = text(&run(kiln().arg("--modules").arg(&modules).arg("check").arg(&system)).stderr);
    assert!(err.contains("`offline` is not a restore mode") && err.contains("`running`, `stopped`"), "{err}");

    // An empty command would back up or restore nothing without a word: refused, at its line.
    std::fs::write(&m, format!("{base}[backup]\ndump = [\"cat\"]\nrestore = []\n")).unwrap();
    let out = run(kiln().arg("--modules").arg(&modules).arg("check").arg(&system));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "accepted: {err}");
    let line = base.lines().count() + 3;
    assert!(err.contains("`restore` is an empty command") && err.contains(&format!("db/module.toml:{line}:")), "{err}");
    std::fs::write(&m, format!("{base}[backup]\ndump = []\n")).unwrap();
    let err = text(&run(kiln().arg("--modules").arg(&modules).arg("check").arg(&system)).stderr);
    assert!(err.contains("`dump` is an empty command"), "{err}");
}

#[test]
fn the_drill_compose_file_is_a_project_of_its_own_that_docker_compose_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("store"), &tmp.path().join("out"));
    let file = out.join("hosts/db/backup/drill.compose.yaml");
    oracle("compose", &file).unwrap_or_else(|e| panic!("docker-compose rejects {}:\n{e}", file.display()));
    let drill: serde_json::Value = serde_saphyr::from_str(&read(&file)).unwrap();
    let host: serde_json::Value = serde_saphyr::from_str(&read(&out.join("hosts/db/compose.yaml"))).unwrap();
    // Another project (so other volumes), only the service whose dump it loads, on a network of
    // its own, publishing nothing, waiting for nothing, never restarted.
    assert_eq!(drill["name"], "five-vps-saas-drill");
    assert_eq!(drill["services"].as_object().unwrap().keys().collect::<Vec<_>>(), ["postgres"]);
    let pg = &drill["services"]["postgres"];
    for key in ["ports", "depends_on", "networks"] {
        assert!(pg.get(key).is_none(), "the drill's postgres has {key}: {pg}");
    }
    assert_eq!(pg["restart"], "no");
    assert_eq!(drill["networks"]["default"]["internal"], true);
    assert_ne!(drill["networks"]["default"]["name"], host["networks"]["default"]["name"]);
    // The same image, command, environment, secrets and healthcheck as the running service.
    for key in ["image", "command", "environment", "secrets", "healthcheck", "volumes"] {
        assert_eq!(pg[key], host["services"]["postgres"][key], "{key}");
    }
    assert!(host["services"]["postgres"].get("networks").is_some(), "the running postgres joins the host's networks");
}

#[test]
fn a_scheduled_drill_gets_its_timer_and_an_unscheduled_one_is_retired() {
    let tmp = tempfile::tempdir().unwrap();
    // postx-hetzner schedules the seed's monthly test restore.
    let postx = build(&repo().join("flake-free-examples/postx-hetzner"), &tmp.path().join("s1"), &tmp.path().join("postx"));
    let backup = postx.join("hosts/client-alpha/backup");
    let timer = read(&backup.join("kiln-backup-drill.timer"));
    assert!(timer.contains("OnCalendar=*-*-01 05:30:00"), "{timer}");
    let service = read(&backup.join("kiln-backup-drill.service"));
    assert!(service.contains("ExecStart=/bin/sh /opt/kiln/backup/kiln-backup.sh drill"), "{service}");
    // Its failure is heard on a host no Prometheus watches, as a failed backup is.
    assert!(service.contains("OnFailure=kiln-backup-failed.service"), "{service}");
    assert!(
        read(&postx.join("hosts/client-alpha/provision.sh"))
            .contains("systemctl --no-reload enable --now kiln-backup.timer kiln-backup-check.timer kiln-backup-drill.timer")
    );
    // jacker schedules none: a timer left from an earlier build is disabled and removed, and the
    // derived alert still watches drills run by hand.
    let jacker = build(&repo().join("flake-free-examples/jacker"), &tmp.path().join("s2"), &tmp.path().join("jacker"));
    assert!(!jacker.join("hosts/jacker/backup/kiln-backup-drill.timer").exists());
    let provision = read(&jacker.join("hosts/jacker/provision.sh"));
    assert!(
        provision.contains("systemctl disable --now kiln-backup-drill.timer")
            && provision.contains("rm -f /etc/systemd/system/kiln-backup-drill.timer"),
        "{provision}"
    );
    // five-vps-saas drills every host monthly (the seed's "test a full restore"); on `db` the
    // copy is PostgreSQL's, within the memory its limit names.
    let five = build(&repo().join("flake-free-examples/five-vps-saas"), &tmp.path().join("s3"), &tmp.path().join("five"));
    assert!(read(&five.join("hosts/db/backup/kiln-backup-drill.timer")).contains("OnCalendar=*-*-01 06:00:00"));
    let script = read(&five.join("hosts/db/backup/kiln-backup.sh"));
    assert!(script.contains("\tmemory_room 4294967296 postgres\n\tdrill up --detach --wait postgres\n"), "{script}");
    let rules: String = walkdir::WalkDir::new(jacker.join("hosts"))
        .follow_links(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().to_string_lossy().contains("/rules/"))
        .filter(|e| e.file_type().is_file())
        .map(|e| read(e.path()))
        .collect();
    assert!(rules.contains("alert: BackupDrillFailed") && rules.contains("kiln_backup_drill_last_run_success{job="), "{rules}");
}
