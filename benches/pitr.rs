//! Point-in-time recovery, side by side in one run, on a private cluster (its own
//! port and directory) archiving both to a directory and through pgBackRest: a
//! table of N rows, a base backup of each kind, half the rows updated (the WAL to
//! replay), a restore point, a pg_dump of that moment, then a "bad deploy" before
//! each route back to the restore point:
//!
//! 1. `pg-pitr` through the engine with the pgBackRest engine, against
//! 2. the pgBackRest runbook by hand: `pgbackrest restore --type=name
//!    --target-action=promote` into a new directory, start on a spare port, poll
//!    until promoted, count rows, stop both, rename, start (timed per part: where
//!    the time goes);
//! 3. `pg-pitr` with the archive engine, against
//! 4. the same runbook with `cp` of a `pg_basebackup` and `restore_command`;
//! 5. `pg-restore-swap` from the dump (runbook 002's option B), through the engine.
//!
//! `cargo bench -p rollback-benches --bench pitr` (`-- --test` for a small round).
//! Needs the PostgreSQL server binaries and pgbackrest (gated on
//! `ROLLBACK_TEST_POSTGRES_URL`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rollback_core::testkit::outage::free_port;
use rollback_core::testkit::server_env;
use rollback_core::{Engine, Plan, Registry, RunOptions, RunState, SecretRef, Selector, Spec, Step, StepOp};
use rollback_db::testing::PrivatePostgres;

struct Bench {
    server: PrivatePostgres,
    archive: PathBuf,
    backups: PathBuf,
    pgbackrest: PathBuf,
    home: PathBuf,
    rows: i64,
}

#[derive(Clone, Copy, PartialEq)]
enum Via {
    Archive,
    Pgbackrest,
}

impl Bench {
    fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.server.bin.join("psql"))
            .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.server.url(db))
            .args(["-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn engine(&self) -> Engine {
        let mut registry = Registry::new();
        rollback_db::register(&mut registry);
        Engine::builder(registry).home(&self.home).try_build().unwrap()
    }

    fn with_url(&self, mut spec: Spec, db: &str) -> Spec {
        let path = self.home.join(format!("url-{db}"));
        std::fs::write(&path, self.server.url(db)).unwrap();
        spec.secrets.insert("url".into(), SecretRef::File { path });
        spec
    }

    async fn run(&self, plan: Plan) {
        let options = RunOptions { again: true, ..Default::default() };
        let report = self.engine().run(plan, options).await.unwrap();
        assert_eq!(report.state, RunState::Succeeded, "{report}");
    }

    fn pitr_spec(&self, via: Via) -> Spec {
        let mut config = serde_json::json!({
            "data_dir": self.server.data, "archive": self.archive,
            "spare_port": free_port(), "server_options": self.server.options(), "recovery_timeout": "1h",
            "os_user": if self.server.as_postgres_user { Some("postgres") } else { None },
            "verify": [format!("SELECT count(*) = {} FROM items", self.rows)],
        });
        let object = config.as_object_mut().unwrap();
        match via {
            Via::Archive => {
                object.insert("backups".into(), serde_json::json!(self.backups));
            }
            Via::Pgbackrest => {
                object.insert("engine".into(), "pgbackrest".into());
                object.insert("stanza".into(), "rb".into());
                object.insert("pgbackrest_config".into(), serde_json::json!(self.pgbackrest));
            }
        }
        self.with_url(Spec::new("pg-pitr", "db", config), "orders")
    }

    fn bad_deploy(&self) {
        self.psql("orders", "INSERT INTO items (note) SELECT 'bad' FROM generate_series(1, 1000)");
    }

    fn check(&self) {
        assert_eq!(
            self.psql("orders", "SELECT count(*) FROM items"),
            self.rows.to_string(),
            "the restore point's rows"
        );
    }

    async fn engine_route(&self, via: Via) -> Duration {
        let mut plan = Plan::new("orders back");
        plan.targets.push(self.pitr_spec(via));
        let op = StepOp::Rollback { target: "db".into(), to: Selector::Exact("rb-bench".into()) };
        let plan = plan.stage("recover", 1, vec![Step::new("back", op)]);
        let started = Instant::now();
        self.run(plan).await;
        started.elapsed()
    }

    /// The runbook's commands; each part's milliseconds on stdout (`switch 1200`).
    fn shell_route(&self, via: Via, round: usize) -> (Duration, Vec<(String, f64)>) {
        const SCRIPT: &str = r#"set -euo pipefail
as() { if [ -n "$AS" ]; then runuser -u "$AS" -- "$@"; else "$@"; fi; }
t() { date +%s%N; }
t0=$(t)
if [ -n "$PGBR" ]; then
  as mkdir "$NEW"
  as pgbackrest --config="$PGBR" --stanza=rb --pg1-path="$NEW" --type=name --target=rb-bench \
    --target-action=promote restore
  t1=$(t); echo "pgbackrest restore $(( ($t1 - $t0) / 1000000 ))"
else
  as cp -a "$BACKUP" "$NEW"
  t1=$(t); echo "copy the base backup $(( ($t1 - $t0) / 1000000 ))"
  as sh -c "cat >> '$NEW/postgresql.auto.conf'" <<EOF
restore_command = 'cp "$ARCHIVE/%f" "%p"'
recovery_target_name = 'rb-bench'
recovery_target_action = 'promote'
EOF
  as touch "$NEW/recovery.signal"
fi
as "$BIN/pg_ctl" start -D "$NEW" -l "$NEW.log" -o "-p $SPARE $OPTIONS" -W >/dev/null
until [ "$("$BIN/psql" -X -tA -h 127.0.0.1 -p "$SPARE" -U postgres -d orders -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do sleep 0.2; done
t2=$(t); echo "replay WAL and promote $(( ($t2 - $t1) / 1000000 ))"
[ "$("$BIN/psql" -X -tA -h 127.0.0.1 -p "$SPARE" -U postgres -d orders -c 'SELECT count(*) FROM items')" = "$ROWS" ]
t3=$(t); echo "verify $(( ($t3 - $t2) / 1000000 ))"
as "$BIN/pg_ctl" stop -D "$NEW" -m fast -w >/dev/null
as "$BIN/pg_ctl" stop -D "$LIVE" -m fast -w >/dev/null
mv "$LIVE" "$LIVE.old-$ROUND"
mv "$NEW" "$LIVE"
as "$BIN/pg_ctl" start -D "$LIVE" -l "$LIVE.log" -o "-p $PORT $OPTIONS" -w >/dev/null
t4=$(t); echo "switch $(( ($t4 - $t3) / 1000000 ))"
"#;
        let started = Instant::now();
        let out = Command::new("bash")
            .args(["-c", SCRIPT])
            .env("AS", if self.server.as_postgres_user { "postgres" } else { "" })
            .env("BACKUP", self.backups.join("b1"))
            .env("NEW", self.server.root.join(format!("data.manual-{round}")))
            .env("PGBR", if via == Via::Pgbackrest { self.pgbackrest.display().to_string() } else { String::new() })
            .env("LIVE", &self.server.data)
            .env("ARCHIVE", &self.archive)
            .env("BIN", &self.server.bin)
            .env("SPARE", free_port().to_string())
            .env("PORT", self.server.port.to_string())
            .env("OPTIONS", self.server.options())
            .env("ROWS", self.rows.to_string())
            .env("ROUND", round.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "runbook route: {}", String::from_utf8_lossy(&out.stderr));
        let parts = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.rsplit_once(' ').map(|(what, ms)| (what.to_owned(), ms.parse::<f64>().unwrap_or(0.0) / 1000.0))
            })
            .collect();
        (started.elapsed(), parts)
    }

    async fn dump_route(&self, dump: &Path) -> Duration {
        let mut plan = Plan::new("orders from the dump");
        let verify = serde_json::json!({ "verify": { "tables": { "items": self.rows } } });
        plan.targets.push(self.with_url(Spec::new("pg-restore-swap", "orders-db", verify), "orders"));
        let params = serde_json::json!({ "dump": dump });
        let op = StepOp::Action { target: "orders-db".into(), action: "restore".into(), params };
        let plan = plan.stage("restore", 1, vec![Step::new("restore", op)]);
        let started = Instant::now();
        self.run(plan).await;
        started.elapsed()
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test") || std::env::var_os("ROLLBACK_BENCH_QUICK").is_some();
    if server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL (the pitr benchmark)").is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let rows: i64 = if quick { 20_000 } else { 1_500_000 };
    let setup = Instant::now();
    let server = PrivatePostgres::init_with(&[
        "wal_level = replica",
        "archive_mode = on",
        "archive_command = '(test -f %ROOT%/archive/%f || cp %p %ROOT%/archive/%f) && \
         pgbackrest --config=%ROOT%/pgbackrest.conf --stanza=rb archive-push %p'",
        "max_wal_size = 2GB",
        "checkpoint_timeout = 30min",
    ]);
    let archive = server.dir("archive");
    let backups = server.dir("backups");
    let home = server.dir("home");
    let config = server.pgbackrest_stanza();
    let pgbackrest = PathBuf::from(config.trim_start_matches("--config="));
    let b = Bench { server, archive, backups, pgbackrest, home, rows };
    b.psql("postgres", "CREATE DATABASE orders");
    b.psql(
        "orders",
        &format!(
            "CREATE TABLE items (id BIGSERIAL PRIMARY KEY, note TEXT NOT NULL, changed_at TIMESTAMPTZ NOT NULL DEFAULT now()); \
             INSERT INTO items (note) SELECT 'item ' || g || repeat('x', 80) FROM generate_series(1, {rows}) g"
        ),
    );
    b.server.base_backup(&b.backups.join("b1"));
    b.server.ctl(&["/usr/bin/pgbackrest", &config, "--stanza=rb", "--type=full", "backup"]);
    b.psql("orders", "UPDATE items SET note = note || 'y' WHERE id % 2 = 0");
    let point = {
        let mut plan = Plan::new("restore point");
        let spec = Spec::new("pg-restore-point", "points", serde_json::json!({ "archive": b.archive }));
        plan.targets.push(b.with_url(spec, "postgres"));
        let params = serde_json::json!({ "name": "rb-bench" });
        let op = StepOp::Action { target: "points".into(), action: "create".into(), params };
        plan.stage("point", 1, vec![Step::new("point", op)])
    };
    runtime.block_on(b.run(point));
    let dump = b.home.join("orders.dump");
    let dumped = Command::new(b.server.bin.join("pg_dump"))
        .args(["-Fc", "-f"])
        .arg(&dump)
        .arg(b.server.url("orders"))
        .status()
        .unwrap();
    assert!(dumped.success());
    let size = |dir: &Path| {
        let out = Command::new("du").arg("-sm").arg(dir).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("?").to_owned()
    };
    let (data_mb, wal_mb) = (size(&b.backups.join("b1")), size(&b.archive));
    eprintln!(
        "pitr fixture: {rows} rows, base backup {data_mb} MB, archive {wal_mb} MB, in {:.1}s",
        setup.elapsed().as_secs_f64()
    );

    let mut results = Vec::new();
    for (round, via) in [Via::Pgbackrest, Via::Archive].into_iter().enumerate() {
        b.bad_deploy();
        let engine = runtime.block_on(b.engine_route(via));
        b.check();
        b.bad_deploy();
        let (shell, parts) = b.shell_route(via, round);
        b.check();
        results.push((via, engine, shell, parts));
    }
    b.bad_deploy();
    let dump_route = runtime.block_on(b.dump_route(&dump));
    b.check();

    println!("\n(pitr) {rows} rows: base backup {data_mb} MB, WAL archive {wal_mb} MB; back to a restore point (s)\n");
    println!("| route | s | / the same runbook by hand |");
    println!("|---|---:|---:|");
    for (via, engine, shell, parts) in &results {
        let (name, by_hand) = match via {
            Via::Pgbackrest => ("pgBackRest", "pgbackrest restore --type=name, start, poll, mv, start"),
            Via::Archive => ("archive directory", "cp of a pg_basebackup, restore_command, start, poll, mv, start"),
        };
        println!(
            "| pg-pitr, {name} engine (checks, recover beside, verify, switch, journal) | {:.2} | {:.2}× |",
            secs(*engine),
            secs(*engine) / secs(*shell)
        );
        println!("| the {name} runbook by hand ({by_hand}) | {:.2} | 1.00× |", secs(*shell));
        for (what, s) in parts {
            println!("| … {what} | {s:.2} | |");
        }
        rollback_benches::summary(
            "db",
            &format!("PITR to a restore point, {data_mb} MB + {wal_mb} MB WAL, {name} engine vs its runbook by hand"),
            &format!("{:.2} s", secs(*engine)),
            &format!("{:.2} s", secs(*shell)),
            &format!("{:.2}× the runbook", secs(*engine) / secs(*shell)),
            &format!("≤ 1.1×: {}", rollback_benches::met(secs(*engine) <= 1.1 * secs(*shell))),
        );
    }
    let (_, engine, _, _) = &results[0];
    println!("| pg-restore-swap from a pg_dump of the same moment | {:.2} | |", secs(dump_route));
    rollback_benches::summary(
        "db",
        &format!("PITR (pgBackRest engine) vs pg-restore-swap from a pg_dump, {data_mb} MB"),
        &format!("{:.2} s", secs(*engine)),
        &format!("{:.2} s", secs(dump_route)),
        &format!("{:.2}× faster", secs(dump_route) / secs(*engine)),
        &format!("several times faster: {}", rollback_benches::met(secs(dump_route) >= 2.0 * secs(*engine))),
    );
}
