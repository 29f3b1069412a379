//! rollback-db side by side, on the PostgreSQL server of ROLLBACK_TEST_POSTGRES_URL:
//!
//! (a) **restore-and-swap** of a database holding N rows (100,000; 1,000 with
//!     `--test`) from a `pg_dump -Fc` file:
//!     - this library through the engine: a one-step plan (`pg-restore-swap`, action
//!       `restore`, with a row-count check), file journal and file lock under a temp
//!       home, the URL as a file secret; the engine is built inside the timing;
//!     - the same target alone (prepare + apply, no engine), to show the engine's share;
//!     - runbook 002's shell sequence in one `bash` script: `psql` drop/create
//!       `<db>_restore` (two `-c`s: the runbook's single `-c "DROP …; CREATE …"` fails,
//!       DROP DATABASE cannot run in the implicit transaction), `pg_restore` into it,
//!       `psql` row count, `psql` renaming `<db>` → `<db>_old` and `<db>_restore` → `<db>`.
//!
//!     Both run the same `pg_restore --no-owner --exit-on-error`. Not timed before each
//!     run: dropping `<db>_old` / `<db>_restore` and a CHECKPOINT; after each run the
//!     live database is checked to hold N rows.
//! (b) **two migrations down** with the `sqlx-migrations` target (`.down.sql` scripts,
//!     `_sqlx_migrations` bookkeeping) on a database with 4 migrations and 30,000 rows,
//!     cloned for every run from a template migrated up by sqlx's own migrator (not
//!     timed): through the engine (one-step plan, `Back(2)`, file journal), the target
//!     alone (connect + prepare + apply), the route a careful human runs by hand: per
//!     migration, newest first, one `psql -1 -f <down.sql> -c "DELETE FROM
//!     _sqlx_migrations …"` (two psql processes: their start and connection dominate),
//!     and the in-process floor: the same SQL on one sqlx connection, a transaction per
//!     migration, nothing read first. After each run the schema is checked to be at
//!     version 2.
//! (c) **alembic downgrade** one revision (ROLLBACK_TEST_ALEMBIC, SQLite project, 3
//!     revisions): the `alembic` target through the engine (`Previous`) against
//!     `alembic downgrade -1`; `alembic upgrade head` before each run (not timed). The
//!     engine route runs the project's interpreter through a counting wrapper script,
//!     to report how many Python processes one rollback starts (each pays Python's
//!     and SQLAlchemy's start-up; target: one, within 1.3x of the CLI).
//!
//! Medians; routes alternate within each round. Every database is uniquely named and
//! dropped at the end.
//!
//! ```text
//! cargo bench -p rollback-benches --bench db            # full (about a minute)
//! cargo test -p rollback-benches --bench db -- --test   # smoke: small sizes, one round
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rollback_core::testkit::server_env;
use rollback_core::{
    Engine, IdempotencyKey, Plan, Registry, Request, RunState, SecretRef, Selector, Spec, Step, StepOp, Target,
};
use rollback_db::{PgRestoreSwap, PgRestoreSwapConfig, SqlxMigrations, SqlxMigrationsConfig, SwapVerify};

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}_{:x}", std::process::id(), nanos & 0xffff_ffff)
}

/// Drops every database this process created, also when a run panics.
struct Cleanup {
    admin: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let pattern = format!("^rbbench_(swap|mig)_{}_", std::process::id());
        let Ok(out) = Command::new("psql")
            .arg(&self.admin)
            .args(["-tA", "-c"])
            .arg(format!("SELECT datname FROM pg_database WHERE datname ~ '{pattern}'"))
            .output()
        else {
            return;
        };
        for db in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
            eprintln!("dropping leftover database {db}");
            let _ = Command::new("psql")
                .arg(&self.admin)
                .args(["-q", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .output();
        }
    }
}

/// The server URL with another database name.
fn url_of(admin: &str, db: &str) -> String {
    format!("{}/{db}", admin.rsplit_once('/').unwrap().0)
}

async fn pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.unwrap()
}

async fn exec(url: &str, sql: &str) {
    let pool = pool(url).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.unwrap();
    pool.close().await;
}

/// DROP DATABASE cannot share a query string with another statement (implicit transaction).
async fn drop_db(admin: &str, db: &str) {
    exec(admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await;
}

async fn count(url: &str, table: &str) -> i64 {
    let pool = pool(url).await;
    let (n,): (i64,) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An engine as a user builds one: file journal and file lock under `home`.
fn engine(home: &Path) -> Engine {
    let mut registry = Registry::new();
    rollback_db::register(&mut registry);
    Engine::builder(registry).home(home).try_build().unwrap()
}

fn with_url_secret(mut spec: Spec, secret: &Path) -> Spec {
    spec.secrets.insert("url".into(), SecretRef::File { path: secret.to_path_buf() });
    spec
}

async fn run_plan(home: &Path, plan: Plan) {
    let report = engine(home).run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded, "{report}");
}

// ---------------------------------------------------------------- (a) restore and swap

struct Swap {
    admin: String,
    db: String,
    dump: PathBuf,
    secret: PathBuf,
    home: PathBuf,
    rows: i64,
}

impl Swap {
    async fn setup(admin: &str, dir: &Path, rows: i64) -> Swap {
        let db = format!("rbbench_swap_{}", suffix());
        exec(admin, &format!("CREATE DATABASE {db}")).await;
        let url = url_of(admin, &db);
        exec(
            &url,
            &format!(
                "CREATE TABLE items (id BIGSERIAL PRIMARY KEY, note TEXT NOT NULL, changed_at TIMESTAMPTZ NOT NULL DEFAULT now()); \
                 INSERT INTO items (note) SELECT 'item ' || g || repeat('x', 40) FROM generate_series(1, {rows}) g; \
                 CREATE INDEX items_changed_at ON items (changed_at);"
            ),
        )
        .await;
        let dump = dir.join("items.dump");
        run(Command::new("pg_dump").args(["-Fc", "-f"]).arg(&dump).arg(&url));
        let secret = dir.join("swap-url");
        std::fs::write(&secret, &url).unwrap();
        Swap { admin: admin.into(), db, dump, secret, home: dir.join("home"), rows }
    }

    /// Back to the state every run starts from: `<db>` with N rows, no `_old`, no `_restore`.
    async fn reset(&self) {
        let db = &self.db;
        drop_db(&self.admin, &format!("{db}_old")).await;
        drop_db(&self.admin, &format!("{db}_restore")).await;
        exec(&self.admin, "CHECKPOINT").await;
    }

    async fn check(&self) {
        assert_eq!(count(&url_of(&self.admin, &self.db), "items").await, self.rows);
        // The library leaves `<db>_old` with connections disabled: look it up, do not connect.
        let pool = pool(&self.admin).await;
        let (old,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(format!("{}_old", self.db))
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        assert_eq!(old, 1, "{}_old is missing", self.db);
    }

    fn verify(&self) -> serde_json::Value {
        serde_json::json!({ "tables": { "items": self.rows } })
    }

    async fn engine_route(&self) -> Duration {
        let mut plan = Plan::new("db restore");
        plan.targets.push(with_url_secret(
            Spec::new("pg-restore-swap", "orders-db", serde_json::json!({ "verify": self.verify() })),
            &self.secret,
        ));
        let op = StepOp::Action {
            target: "orders-db".into(),
            action: "restore".into(),
            params: serde_json::json!({ "dump": self.dump }),
        };
        let plan = plan.stage("restore", 1, vec![Step::new("restore", op)]);
        let started = Instant::now();
        run_plan(&self.home, plan).await;
        started.elapsed()
    }

    async fn target_route(&self, round: usize) -> Duration {
        let verify: SwapVerify = serde_json::from_value(self.verify()).unwrap();
        let started = Instant::now();
        let config = PgRestoreSwapConfig { verify, ..Default::default() };
        let target = PgRestoreSwap::new("orders-db", &url_of(&self.admin, &self.db), config).unwrap();
        let request = Request::Action { action: "restore".into(), params: serde_json::json!({ "dump": self.dump }) };
        let change = target.prepare(&request).await.unwrap();
        target.apply(&change, &IdempotencyKey::new(format!("bench-{round}"))).await.unwrap();
        started.elapsed()
    }

    fn shell_route(&self) -> Duration {
        const SCRIPT: &str = r#"set -euo pipefail
psql "$ADMIN" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS ${DB}_restore" -c "CREATE DATABASE ${DB}_restore"
pg_restore --no-owner --exit-on-error -d "$BASE/${DB}_restore" "$DUMP"
n=$(psql "$BASE/${DB}_restore" -tA -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM items")
[ "$n" -ge "$ROWS" ]
psql "$ADMIN" -q -v ON_ERROR_STOP=1 -c "ALTER DATABASE $DB RENAME TO ${DB}_old; ALTER DATABASE ${DB}_restore RENAME TO $DB;"
"#;
        let base = self.admin.rsplit_once('/').unwrap().0;
        let started = Instant::now();
        run(Command::new("bash")
            .args(["-c", SCRIPT])
            .env("ADMIN", &self.admin)
            .env("BASE", base)
            .env("DB", &self.db)
            .env("DUMP", &self.dump)
            .env("ROWS", self.rows.to_string()));
        started.elapsed()
    }

    async fn teardown(&self) {
        let db = &self.db;
        for name in [format!("{db}_old"), format!("{db}_restore"), db.clone()] {
            drop_db(&self.admin, &name).await;
        }
    }
}

async fn swap_bench(admin: &str, dir: &Path, rows: i64, rounds: usize) -> [f64; 3] {
    let setup = Instant::now();
    let swap = Swap::setup(admin, dir, rows).await;
    let size = std::fs::metadata(&swap.dump).unwrap().len();
    eprintln!("swap fixture: {rows} rows, dump {} kB, in {:.1}s", size / 1024, setup.elapsed().as_secs_f64());
    let (mut engine, mut target, mut shell) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        swap.reset().await;
        engine.push(swap.engine_route().await);
        swap.check().await;
        swap.reset().await;
        target.push(swap.target_route(round).await);
        swap.check().await;
        swap.reset().await;
        shell.push(swap.shell_route());
        swap.check().await;
    }
    swap.teardown().await;
    [median(engine), median(target), median(shell)]
}

// ---------------------------------------------------------------- (b) migrations down

const MIGRATIONS: &[(&str, &str, &str)] = &[
    (
        "20251001_create_users",
        "CREATE TABLE users (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now());\n\
         INSERT INTO users (name) SELECT 'user ' || g FROM generate_series(1, 10000) g;",
        "DROP TABLE users;",
    ),
    (
        "20251005_add_email",
        "ALTER TABLE users ADD COLUMN email TEXT;\nUPDATE users SET email = 'u' || id || '@example.com';\n\
         CREATE INDEX users_email ON users (email);",
        "DROP INDEX users_email;\nALTER TABLE users DROP COLUMN email;",
    ),
    (
        "20251010_create_orders",
        "CREATE TABLE orders (id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users (id), total NUMERIC NOT NULL);\n\
         INSERT INTO orders (user_id, total) SELECT 1 + g % 10000, g % 997 FROM generate_series(1, 20000) g;",
        "DROP TABLE orders;",
    ),
    (
        "20251015_order_status",
        "ALTER TABLE orders ADD COLUMN status TEXT NOT NULL DEFAULT 'new';\nCREATE INDEX orders_status ON orders (status);",
        "DROP INDEX orders_status;\nALTER TABLE orders DROP COLUMN status;",
    ),
];

struct Migrations {
    admin: String,
    template: String,
    dir: PathBuf,
    secret: PathBuf,
    home: PathBuf,
    prefix: String,
}

impl Migrations {
    async fn setup(admin: &str, root: &Path) -> Migrations {
        let prefix = format!("rbbench_mig_{}", suffix());
        let template = format!("{prefix}_tmpl");
        let dir = root.join("migrations");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, up, down) in MIGRATIONS {
            std::fs::write(dir.join(format!("{name}.up.sql")), up).unwrap();
            std::fs::write(dir.join(format!("{name}.down.sql")), down).unwrap();
        }
        exec(admin, &format!("CREATE DATABASE {template}")).await;
        let pool = pool(&url_of(admin, &template)).await;
        sqlx::migrate::Migrator::new(dir.clone()).await.unwrap().run(&pool).await.unwrap();
        pool.close().await;
        Migrations { admin: admin.into(), template, dir, secret: root.join("mig-url"), home: root.join("home"), prefix }
    }

    /// A fresh clone of the migrated template for run `i`; the secret file points at it.
    async fn fresh(&self, i: usize) -> String {
        let db = format!("{}_{i}", self.prefix);
        exec(&self.admin, &format!("CREATE DATABASE {db} TEMPLATE {}", self.template)).await;
        let url = url_of(&self.admin, &db);
        std::fs::write(&self.secret, &url).unwrap();
        exec(&self.admin, "CHECKPOINT").await;
        url
    }

    async fn done(&self, url: &str, i: usize) {
        let pool = pool(url).await;
        let (top,): (i64,) =
            sqlx::query_as("SELECT max(version) FROM _sqlx_migrations").fetch_one(&pool).await.unwrap();
        let (orders,): (Option<String>,) =
            sqlx::query_as("SELECT to_regclass('orders')::text").fetch_one(&pool).await.unwrap();
        pool.close().await;
        assert_eq!((top, orders), (20251005, None), "run {i} did not end at migration 20251005");
        drop_db(&self.admin, &format!("{}_{i}", self.prefix)).await;
    }

    fn config(&self, url: Option<String>) -> SqlxMigrationsConfig {
        SqlxMigrationsConfig {
            url,
            migrations: self.dir.clone(),
            layout: Default::default(),
            data_loss: Default::default(),
        }
    }

    async fn engine_route(&self) -> Duration {
        let mut plan = Plan::new("schema down");
        plan.targets.push(with_url_secret(
            Spec::new("sqlx-migrations", "schema", serde_json::json!({ "migrations": self.dir })),
            &self.secret,
        ));
        let op = StepOp::Rollback { target: "schema".into(), to: Selector::Back(2) };
        let plan = plan.stage("schema", 1, vec![Step::new("schema", op)]);
        let started = Instant::now();
        run_plan(&self.home, plan).await;
        started.elapsed()
    }

    async fn target_route(&self, url: &str, i: usize) -> Duration {
        let started = Instant::now();
        let target = SqlxMigrations::connect("schema", self.config(Some(url.to_owned()))).await.unwrap();
        let change = target.prepare(&Request::To(Selector::Back(2))).await.unwrap();
        target.apply(&change, &IdempotencyKey::new(format!("bench-{i}"))).await.unwrap();
        let took = started.elapsed();
        drop(target);
        took
    }

    /// The bare SQL in-process: one connection; per migration one transaction with the
    /// down script and the bookkeeping DELETE. No reads, no marker, no journal.
    async fn sql_floor(&self, url: &str) -> Duration {
        let started = Instant::now();
        let pool = pool(url).await;
        for (name, _, down) in MIGRATIONS[2..].iter().rev() {
            let version: i64 = name.split('_').next().unwrap().parse().unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(down.to_string())).execute(&mut *tx).await.unwrap();
            sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
                .bind(version)
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        let took = started.elapsed();
        pool.close().await;
        took
    }

    fn psql_route(&self, url: &str) -> Duration {
        let started = Instant::now();
        for (name, ..) in MIGRATIONS[2..].iter().rev() {
            let version = name.split('_').next().unwrap();
            run(Command::new("psql")
                .arg(url)
                .args(["-q", "-v", "ON_ERROR_STOP=1", "-1", "-f"])
                .arg(self.dir.join(format!("{name}.down.sql")))
                .arg("-c")
                .arg(format!("DELETE FROM _sqlx_migrations WHERE version = {version}")));
        }
        started.elapsed()
    }

    async fn teardown(&self) {
        drop_db(&self.admin, &self.template).await;
    }
}

async fn migrations_bench(admin: &str, dir: &Path, rounds: usize) -> [f64; 4] {
    let m = Migrations::setup(admin, dir).await;
    let (mut engine, mut target, mut psql, mut floor) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut i = 0;
    for _ in 0..rounds {
        let url = m.fresh(i).await;
        engine.push(m.engine_route().await);
        m.done(&url, i).await;
        i += 1;
        let url = m.fresh(i).await;
        target.push(m.target_route(&url, i).await);
        m.done(&url, i).await;
        i += 1;
        let url = m.fresh(i).await;
        psql.push(m.psql_route(&url));
        m.done(&url, i).await;
        i += 1;
        let url = m.fresh(i).await;
        floor.push(m.sql_floor(&url).await);
        m.done(&url, i).await;
        i += 1;
    }
    m.teardown().await;
    [median(engine), median(target), median(psql), median(floor)]
}

// ---------------------------------------------------------------- (c) alembic

/// Median ms through the engine, median ms of `alembic downgrade -1`, and how many
/// Python processes the engine route started per run (through a counting wrapper
/// around the project's interpreter).
async fn alembic_bench(program: &str, dir: &Path, rounds: usize) -> (f64, f64, usize) {
    let ini = rollback_db::testing::alembic_project(program, &dir.join("alembic"));
    let calls = dir.join("alembic-pythons");
    let python = rollback_db::testing::interpreter_of(program);
    let wrapper = rollback_db::testing::counting_python(&dir.join("python-counting"), &python, &calls);
    let project = ini.parent().unwrap().to_path_buf();
    // In the project's directory, as the target runs it: the SQLite URL is relative.
    let alembic = |args: &[&str]| run(Command::new(program).arg("-c").arg(&ini).args(args).current_dir(&project));
    let at_head = || {
        alembic(&["upgrade", "head"]);
    };
    let home = dir.join("home");
    let (mut engine, mut cli) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        at_head();
        let mut plan = Plan::new("alembic down");
        plan.targets.push(Spec::new(
            "alembic",
            "schema",
            serde_json::json!({ "command": [program], "python": wrapper, "config": ini, "timeout": "60s" }),
        ));
        let op = StepOp::Rollback { target: "schema".into(), to: Selector::Previous };
        let plan = plan.stage("schema", 1, vec![Step::new("schema", op)]);
        let started = Instant::now();
        run_plan(&home, plan).await;
        engine.push(started.elapsed());
        assert!(alembic(&["current"]).contains("0002"), "engine route did not end at 0002");
        at_head();
        let started = Instant::now();
        alembic(&["downgrade", "-1"]);
        cli.push(started.elapsed());
        assert!(alembic(&["current"]).contains("0002"), "alembic downgrade -1 did not end at 0002");
    }
    let invocations = std::fs::read_to_string(&calls).unwrap_or_default().lines().count();
    (median(engine), median(cli), invocations / rounds)
}

// ---------------------------------------------------------------- main

fn main() {
    let quick = std::env::args().any(|a| a == "--test") || std::env::var_os("ROLLBACK_BENCH_QUICK").is_some();
    let Some(admin) = server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL (the db benchmark)") else { return };
    let alembic = server_env("ROLLBACK_TEST_ALEMBIC", "Alembic (the db benchmark)");
    let _cleanup = Cleanup { admin: admin.clone() };
    let tmp = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (rows, swap_rounds, mig_rounds, alembic_rounds) = if quick { (1_000, 1, 1, 1) } else { (100_000, 7, 15, 5) };

    let [s_engine, s_target, s_shell] = runtime.block_on(swap_bench(&admin, tmp.path(), rows, swap_rounds));
    println!("\n(a) restore-and-swap of a {rows}-row database from a pg_dump -Fc file (median of {swap_rounds}, ms)\n");
    println!("| route | ms | / runbook shell |");
    println!("|---|---:|---:|");
    for (name, ms) in [
        ("pg-restore-swap through the engine (file journal + lock)", s_engine),
        ("pg-restore-swap target alone (prepare + apply)", s_target),
        ("runbook 002 shell: psql + pg_restore + psql count + psql renames", s_shell),
    ] {
        println!("| {name} | {ms:.0} | {:.2}× |", ms / s_shell);
    }
    rollback_benches::summary(
        "db",
        &format!("restore-and-swap {rows} rows (engine) vs runbook shell (psql + pg_restore + renames)"),
        &format!("{s_engine:.0} ms"),
        &format!("{s_shell:.0} ms"),
        &format!("{:.2}× the shell", s_engine / s_shell),
        &format!("≤ 1.2×: {}", rollback_benches::met(s_engine / s_shell <= 1.2)),
    );

    let [m_engine, m_target, m_psql, m_floor] = runtime.block_on(migrations_bench(&admin, tmp.path(), mig_rounds));
    println!(
        "\n(b) sqlx migrations: 2 down (drop index + column, drop table with 20k rows) (median of {mig_rounds}, ms)\n"
    );
    println!("| route | ms | / manual psql | / in-process SQL floor |");
    println!("|---|---:|---:|---:|");
    for (name, ms) in [
        ("sqlx-migrations through the engine (file journal + lock, Back(2))", m_engine),
        ("sqlx-migrations target alone (connect + prepare + apply)", m_target),
        ("manual runbook: per migration psql -1 -f down.sql -c 'DELETE FROM _sqlx_migrations …'", m_psql),
        ("in-process SQL floor: one connection, same scripts + DELETEs, a transaction each", m_floor),
    ] {
        println!("| {name} | {ms:.0} | {:.2}× | {:.2}× |", ms / m_psql, ms / m_floor);
    }
    rollback_benches::summary(
        "db",
        "2 sqlx migrations down (engine) vs psql -1 -f down.sql + DELETE bookkeeping, by hand",
        &format!("{m_engine:.0} ms"),
        &format!("{m_psql:.0} ms"),
        &format!("{:.2}× the psql route", m_engine / m_psql),
        &format!("≤ 1.5×: {}", rollback_benches::met(m_engine / m_psql <= 1.5)),
    );
    rollback_benches::summary(
        "db",
        "2 sqlx migrations down (engine) vs the same SQL on one in-process connection (floor)",
        &format!("{m_engine:.0} ms"),
        &format!("{m_floor:.0} ms"),
        &format!("{:.2}× the floor", m_engine / m_floor),
        "none (shows the fixed cost: reads, marker, journal, lock)",
    );

    if let Some(program) = alembic {
        let (a_engine, a_cli, calls) = runtime.block_on(alembic_bench(&program, tmp.path(), alembic_rounds));
        println!("\n(c) alembic: one revision down, SQLite project (median of {alembic_rounds}, ms)\n");
        println!("| route | Python processes | ms | / alembic downgrade -1 |");
        println!("|---|---:|---:|---:|");
        println!(
            "| alembic target through the engine (Previous) | {calls} | {a_engine:.0} | {:.2}× |",
            a_engine / a_cli
        );
        println!("| alembic downgrade -1 | 1 | {a_cli:.0} | 1.00× |");
        rollback_benches::summary(
            "db",
            &format!("alembic one revision down (engine, {calls} Python process) vs alembic downgrade -1"),
            &format!("{a_engine:.0} ms"),
            &format!("{a_cli:.0} ms"),
            &format!("{:.2}× the CLI", a_engine / a_cli),
            &format!("≤ 1.3×: {}", rollback_benches::met(a_engine <= 1.3 * a_cli)),
        );
    }
    println!(
        "\ntargets: restore-and-swap ≤ 1.2× the runbook shell; migrations down ≤ 1.5× the manual psql route; \
         alembic ≤ 1.3× alembic downgrade -1"
    );
}
