//! Test support (feature `test-helpers`): fixtures shared by this crate's tests and
//! the benchmarks.

use std::path::{Path, PathBuf};

/// An Alembic project in `root`, made with the real CLI `program`: `alembic init`,
/// a SQLite URL, and three revisions (`0001` users, `0002` orders, `0003` coupons),
/// not applied. Returns the `alembic.ini`.
///
/// # Panics
/// When the CLI fails (test support: failing loudly is right).
pub fn alembic_project(program: &str, root: &Path) -> PathBuf {
    std::fs::create_dir_all(root).expect("the project directory");
    let out = std::process::Command::new(program)
        .args(["init", "migrations"])
        .current_dir(root)
        .output()
        .expect("run alembic");
    assert!(out.status.success(), "alembic init: {}", String::from_utf8_lossy(&out.stderr));
    let ini = root.join("alembic.ini");
    let text: Vec<String> = std::fs::read_to_string(&ini)
        .expect("alembic.ini")
        .lines()
        .map(|l| if l.starts_with("sqlalchemy.url") { "sqlalchemy.url = sqlite:///app.db".into() } else { l.into() })
        .collect();
    std::fs::write(&ini, text.join("\n")).expect("alembic.ini");
    for (i, table) in [(1, "users"), (2, "orders"), (3, "coupons")] {
        let down = if i == 1 { "None".to_string() } else { format!("'000{}'", i - 1) };
        std::fs::write(
            root.join(format!("migrations/versions/000{i}_{table}.py")),
            format!(
                "\"\"\"create {table}\"\"\"\nfrom alembic import op\nrevision = '000{i}'\ndown_revision = {down}\n\
                 branch_labels = None\ndepends_on = None\n\ndef upgrade():\n    op.execute(\"CREATE TABLE {table} (id INTEGER PRIMARY KEY)\")\n\n\
                 def downgrade():\n    op.execute(\"DROP TABLE {table}\")\n"
            ),
        )
        .expect("a revision file");
    }
    ini
}

/// The interpreter of a Python console script (`.venv/bin/alembic`): its `#!` line.
///
/// # Panics
/// When the script cannot be read or has no `#!` line.
pub fn interpreter_of(script: &str) -> PathBuf {
    let text = std::fs::read_to_string(script).expect("the script");
    let line = text.lines().next().and_then(|l| l.strip_prefix("#!")).expect("a #! line");
    PathBuf::from(line.split_whitespace().next().expect("an interpreter"))
}

/// A shell script at `path` that appends a line to `count` and runs `python` with
/// its arguments: how tests and benchmarks count the interpreters a route starts.
///
/// # Panics
/// When it cannot be written.
pub fn counting_python(path: &Path, python: &Path, count: &Path) -> PathBuf {
    let script = format!("#!/bin/sh\necho started >> '{}'\nexec '{}' \"$@\"\n", count.display(), python.display());
    std::fs::write(path, script).expect("the counting wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.to_path_buf()
}

/// A throw-away PostgreSQL cluster on its own port, in its own directory (as the
/// `postgres` user when run as root: PostgreSQL refuses root), stopped and removed
/// when dropped — with every other data directory left beside it (`<data>.rb-…`).
#[derive(Debug)]
pub struct PrivatePostgres {
    /// The server binaries.
    pub bin: PathBuf,
    /// Its directory: `data` (the cluster) and whatever a test puts beside it.
    pub root: PathBuf,
    /// The data directory.
    pub data: PathBuf,
    /// Its port.
    pub port: u16,
    /// Whether its tools run through `runuser -u postgres`.
    pub as_postgres_user: bool,
}

impl PrivatePostgres {
    /// `initdb` (trust authentication, user `postgres`) and start.
    ///
    /// # Panics
    /// Without the server binaries (test support: failing loudly is right).
    pub fn init() -> PrivatePostgres {
        Self::init_with(&[])
    }

    /// Like [`init`](Self::init), with `settings` appended to `postgresql.conf`
    /// before the first start (`%ROOT%` stands for [`root`](Self::root)).
    ///
    /// # Panics
    /// Without the server binaries.
    pub fn init_with(settings: &[&str]) -> PrivatePostgres {
        let bin = crate::pitr::default_bin_dir().expect("PostgreSQL server binaries under /usr/lib/postgresql");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let root = std::env::temp_dir().join(format!("rb-pg-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&root).expect("the cluster's directory");
        let as_postgres_user = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let server = PrivatePostgres { bin, data: root.join("data"), root, port, as_postgres_user };
        std::fs::create_dir_all(server.root.join("sock")).expect("the socket directory");
        server.own(&server.root);
        server.ctl(&["initdb", "-D", server.data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "--no-sync"]);
        if !settings.is_empty() {
            let conf = server.data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
            for line in settings {
                text.push_str(&line.replace("%ROOT%", &server.root.display().to_string()));
                text.push('\n');
            }
            std::fs::write(&conf, text).expect("postgresql.conf");
        }
        server.start();
        server
    }

    /// Gives `path` to the `postgres` user (when running as root).
    pub fn own(&self, path: &Path) {
        if self.as_postgres_user {
            let status = std::process::Command::new("chown").arg("-R").arg("postgres:postgres").arg(path).status();
            assert!(status.is_ok_and(|s| s.success()), "chown {}", path.display());
        }
    }

    /// A directory under [`root`](Self::root) owned by the server's user.
    pub fn dir(&self, name: &str) -> PathBuf {
        let path = self.root.join(name);
        std::fs::create_dir_all(&path).expect("a directory");
        self.own(&path);
        path
    }

    /// Runs a server tool (`initdb`, `pg_ctl`, `pg_basebackup`) as the server's user.
    ///
    /// # Panics
    /// When it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.tool(args[0]).args(&args[1..]).output().expect("run a server tool");
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A server tool (a name in [`bin`](Self::bin), or an absolute path) as the
    /// server's user, run in `/`.
    fn tool(&self, program: &str) -> std::process::Command {
        let program = self.bin.join(program);
        let mut cmd = if self.as_postgres_user {
            let mut cmd = std::process::Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&program);
            cmd
        } else {
            std::process::Command::new(&program)
        };
        cmd.current_dir("/");
        cmd
    }

    /// The options this cluster runs with, besides its port (`pg_ctl -o`): TCP on
    /// 127.0.0.1 and a socket in its own directory ([`socket_dir`](Self::socket_dir)).
    pub fn options(&self) -> String {
        format!(
            "-c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' -c fsync=off",
            self.socket_dir().display()
        )
    }

    /// Its private Unix socket directory.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("sock")
    }

    /// Starts it on its port.
    pub fn start(&self) {
        let options = format!("-p {} {}", self.port, self.options());
        let log = self.root.join("server.log");
        self.ctl(&[
            "pg_ctl",
            "-D",
            self.data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &options,
            "-w",
            "start",
        ]);
    }

    /// Stops it the way a crash does: no checkpoint, sessions cut.
    pub fn crash(&self) {
        self.ctl(&["pg_ctl", "-D", self.data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }

    /// A base backup into `dir`: `pg_basebackup -Fp -X fetch -c fast`.
    ///
    /// # Panics
    /// When it fails.
    pub fn base_backup(&self, dir: &Path) {
        let port = self.port.to_string();
        let dir = dir.display().to_string();
        let args = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-D", &dir, "-Fp", "-X", "fetch", "-c", "fast"];
        self.ctl(&[&["pg_basebackup"], &args[..]].concat());
    }

    /// A pgBackRest stanza `rb` for this cluster, its repository, logs and locks
    /// under [`root`](Self::root); returns its `--config=…` argument. The cluster
    /// must archive with `pgbackrest --config=%ROOT%/pgbackrest.conf --stanza=rb
    /// archive-push %p`.
    ///
    /// # Panics
    /// When `pgbackrest stanza-create` fails.
    pub fn pgbackrest_stanza(&self) -> String {
        let root = self.root.display().to_string();
        for dir in ["repo", "pgbr-log", "pgbr-lock", "pgbr-spool"] {
            self.dir(dir);
        }
        let conf = self.root.join("pgbackrest.conf");
        let text = format!(
            "[global]\nrepo1-path={root}/repo\nlog-path={root}/pgbr-log\nlock-path={root}/pgbr-lock\n\
             spool-path={root}/pgbr-spool\nstart-fast=y\nlog-level-console=warn\ncompress-type=lz4\n\n\
             [rb]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
            self.data.display(),
            self.port,
            self.socket_dir().display()
        );
        std::fs::write(&conf, text).expect("pgbackrest.conf");
        self.own(&conf);
        let config = format!("--config={}", conf.display());
        self.ctl(&["/usr/bin/pgbackrest", &config, "--stanza=rb", "stanza-create"]);
        config
    }

    /// `postgres://postgres@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Every data directory under the root (the cluster and any copy beside it).
        for dir in std::fs::read_dir(&self.root).into_iter().flatten().flatten().map(|e| e.path()) {
            if dir.join("postmaster.pid").exists() {
                let _ = self.tool("pg_ctl").arg("-D").arg(&dir).args(["-m", "immediate", "-w", "stop"]).output();
            }
        }
        // ROLLBACK_KEEP_PG=1 keeps the directory (logs, data) to look at a failure.
        if std::env::var_os("ROLLBACK_KEEP_PG").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The versions [`held_migrations`] writes, oldest first.
pub const MIGRATIONS: [i64; 3] = [20251001, 20251005, 20251010];

/// The advisory lock the second down script to run (20251005) waits on: a test
/// holding it stops a rollback inside that script, to crash or kill it there.
pub const HELD_DOWN_LOCK: i64 = 4242;

/// Three sqlx migrations in `dir`, applied to the database at `url`, with a
/// `down_log` table: each down script logs its version in its own transaction (so a
/// test counts how often each ran), and 20251005's first waits for
/// [`HELD_DOWN_LOCK`].
///
/// # Panics
/// When the database refuses (test support: failing loudly is right).
pub async fn held_migrations(url: &str, dir: &Path) {
    let [a, b, c] = MIGRATIONS;
    let log = |v: i64| format!("INSERT INTO down_log (version) VALUES ({v});");
    std::fs::create_dir_all(dir).unwrap();
    for (file, sql) in [
        (format!("{a}_base.up.sql"), "CREATE TABLE base (id BIGINT);".to_string()),
        (format!("{a}_base.down.sql"), format!("DROP TABLE base; {}", log(a))),
        (format!("{b}_note.up.sql"), "ALTER TABLE base ADD COLUMN note TEXT;".to_string()),
        (
            format!("{b}_note.down.sql"),
            format!("SELECT pg_advisory_xact_lock({HELD_DOWN_LOCK}); ALTER TABLE base DROP COLUMN note; {}", log(b)),
        ),
        (format!("{c}_items.up.sql"), "CREATE TABLE items (id BIGINT);".to_string()),
        (format!("{c}_items.down.sql"), format!("DROP TABLE items; {}", log(c))),
    ] {
        std::fs::write(dir.join(file), sql).unwrap();
    }
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
    sqlx::query("CREATE TABLE down_log (id BIGSERIAL PRIMARY KEY, version BIGINT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(dir.to_path_buf()).await.unwrap().run(&pool).await.unwrap();
    pool.close().await;
}

/// The versions whose down scripts committed, in order; `None` while the server
/// cannot be reached.
pub async fn down_log(url: &str) -> Option<Vec<i64>> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect(url)
        .await
        .ok()?;
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT version FROM down_log ORDER BY id").fetch_all(&pool).await.ok()?;
    pool.close().await;
    Some(rows.into_iter().map(|(v,)| v).collect())
}

/// The versions sqlx records as applied.
///
/// # Panics
/// When the database cannot be read.
pub async fn applied(url: &str) -> Vec<i64> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
    let rows: Vec<(i64,)> =
        sqlx::query_as("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows.into_iter().map(|(v,)| v).collect()
}

/// Waits until a session of `conn`'s database waits for [`HELD_DOWN_LOCK`] (the
/// held down script has started), for at most a minute.
///
/// # Panics
/// When none does within the minute.
pub async fn await_lock_waiter(conn: &mut sqlx::PgConnection) {
    let started = std::time::Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = 0 \
                 AND objid = $1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind(HELD_DOWN_LOCK)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the held down migration never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
