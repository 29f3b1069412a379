//! [`PgJournal`]: the engine's journal in PostgreSQL, shared by every runner host.
//!
//! Runs, records, the fencing tokens seen and the lease table live in the schema
//! `rollback_journal`, created by the journal's own migrations (sqlx's migrator, with
//! its advisory lock, bookkeeping in `rollback_journal._migrations` — never the
//! application's `_sqlx_migrations`, which the `sqlx-migrations` target reads).
//! An append is one call of the SQL function `rollback_journal.append`: one round
//! trip and one transaction that checks the fence, takes the run's row lock to
//! number the records and writes them; an unfenced append (an approval from another
//! process) also notifies `rollback_journal` listeners, which waiting gates are.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rollback_core::journal::{Durability, Entry, Fence, Record, RunIndexEntry};
use rollback_core::{Error, ErrorKind, Journal, Result, RunId};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Row, SqlSafeStr};

use crate::error::map;
use crate::lock::PgLeaseLock;

/// The schema the journal owns.
pub const JOURNAL_SCHEMA: &str = "rollback_journal";
/// Its lease table, shared with [`PgJournal::lease_lock`].
const LEASES: &str = "rollback_journal.leases";

/// The journal's migrations, applied by [`PgJournal::connect`].
fn migrator() -> Migrator {
    let mut migrator = Migrator::with_migrations(vec![Migration::new(
        1,
        "journal".into(),
        MigrationType::Simple,
        include_str!("../journal_migrations/0001_journal.sql").into_sql_str(),
        false,
    )]);
    migrator.dangerous_set_table_name(format!("{JOURNAL_SCHEMA}._migrations"));
    migrator.create_schema(JOURNAL_SCHEMA);
    migrator
}

/// Checks, without changing anything, that the journal's schema exists and is at
/// this build's latest migration.
async fn current_schema(pool: &PgPool) -> Result<()> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('rollback_journal._migrations')::text")
        .fetch_one(pool)
        .await
        .map_err(|e| map("journal schema", e))?;
    if table.is_none() {
        return Err(Error::not_found(format!(
            "no shared journal in this database yet (no schema {JOURNAL_SCHEMA}): nothing has run; the first run creates it"
        )));
    }
    let found: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM rollback_journal._migrations WHERE success")
        .fetch_one(pool)
        .await
        .map_err(|e| map("journal schema", e))?;
    let latest = migrator().iter().map(|m| m.version).max().unwrap_or(0);
    if found.unwrap_or(0) < latest {
        return Err(Error::new(
            ErrorKind::InvalidState,
            format!(
                "the shared journal's schema is at version {}, this build reads version {latest}: a run or resume \
                 from this build migrates it",
                found.unwrap_or(0)
            ),
        ));
    }
    Ok(())
}

/// How to open a [`PgJournal`]. (The host id of a runner is the engine's
/// `Settings::host`, recorded with the runs it starts.)
#[derive(Debug, Clone)]
pub struct PgJournalOptions {
    /// Connections in the pool (default 4).
    pub max_connections: u32,
    /// Create or migrate the journal's schema (default). `false` for readers: a
    /// journal not created yet is `NotFound`, one migrated by an older build is
    /// used as it is only if it is current.
    pub migrate: bool,
}

impl Default for PgJournalOptions {
    fn default() -> Self {
        PgJournalOptions { max_connections: 4, migrate: true }
    }
}

/// A [`Journal`] in PostgreSQL that several runner hosts share: any of them lists
/// the runs, reads a report, approves a gate, or resumes a run.
///
/// Fencing is checked inside the append's transaction: the writer's token must equal
/// the lease's token in the journal's lease table (the one [`PgJournal::lease_lock`]
/// grants) and the lease must be unexpired by the database's clock — a holder that
/// lost its lease has its next append rejected by the statement that would have
/// written it — and no newer token may have been seen for any of its resources (the
/// same rule, and the same error kind, as the file journal's).
///
/// ```no_run
/// # async fn demo() -> rollback_core::Result<()> {
/// use std::sync::Arc;
/// let journal = rollback_db::PgJournal::connect("postgres://rollback@db/ops").await?;
/// let lock = journal.lease_lock().await?;
/// let engine = rollback_core::Engine::builder(rollback_core::Registry::new())
///     .journal(Arc::new(journal))
///     .lock(Arc::new(lock))
///     .try_build()?;
/// # Ok(()) }
/// ```
pub struct PgJournal {
    pool: PgPool,
    /// Runs named by `NOTIFY rollback_journal`, from one listening connection
    /// started on the first wait.
    heard: tokio::sync::OnceCell<Arc<Heard>>,
    /// Per run, the token whose fence resources the server already has (sent once
    /// per lease, not with every append).
    sent: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl std::fmt::Debug for PgJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgJournal").finish_non_exhaustive()
    }
}

impl PgJournal {
    /// Connects with the default options and applies the journal's migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PgJournalOptions::default()).await
    }

    /// Connects and applies the journal's migrations (under sqlx's advisory lock, so
    /// hosts starting together migrate once).
    pub async fn connect_with(url: &str, options: PgJournalOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| map("connect (journal)", e))?;
        if options.migrate {
            migrator().run(&pool).await.map_err(|e| {
                Error::new(ErrorKind::Backend, format!("journal migrations: {e}")).with_operation("migrate journal")
            })?;
        } else {
            current_schema(&pool).await?;
        }
        Ok(PgJournal { pool, heard: tokio::sync::OnceCell::new(), sent: Default::default() })
    }

    /// What the journal's listener heard, started on the first wait (`true` with it
    /// then): a connection of its own (outside the pool, which the appends and the
    /// lease lock use). It reconnects by itself; NOTIFY is not replayed, so what was
    /// notified before it listened or while it was away is unheard: the first wait
    /// and every reconnect wake the waiters to read the journal again.
    async fn heard(&self) -> Option<(Arc<Heard>, bool)> {
        let fresh = !self.heard.initialized();
        let heard = self
            .heard
            .get_or_try_init(|| async {
                let options = self.pool.connect_options().as_ref().clone();
                let own = PgPoolOptions::new().max_connections(1).connect_with(options).await?;
                let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
                listener.listen("rollback_journal").await?;
                let heard = Arc::new(Heard::default());
                let weak = Arc::downgrade(&heard);
                // Ends (closing its connection) once the journal is dropped.
                tokio::spawn(async move {
                    let _own = own;
                    let mut lost = false;
                    loop {
                        // After a lost connection the next call reconnects and listens
                        // again; shortly after, every waiter is woken to read what was
                        // notified meanwhile (NOTIFY is not replayed).
                        let wait = if lost { Duration::from_millis(200) } else { Duration::from_secs(5) };
                        let got = tokio::time::timeout(wait, listener.try_recv()).await;
                        let Some(heard) = weak.upgrade() else { break };
                        match got {
                            Ok(Ok(Some(note))) => heard.bump(note.payload()),
                            Ok(Ok(None)) => {
                                tracing::warn!("journal listener: connection lost, reconnecting");
                                lost = true;
                                continue;
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "journal listener: reconnecting");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                lost = true;
                                continue;
                            }
                            Err(_) => {}
                        }
                        if std::mem::take(&mut lost) {
                            heard.bump_all();
                        }
                    }
                });
                Ok::<_, sqlx::Error>(heard)
            })
            .await;
        match heard {
            Ok(heard) => Some((heard.clone(), fresh)),
            Err(e) => {
                tracing::warn!(error = %e, "journal listener unavailable; gates poll");
                None
            }
        }
    }

    /// A [`PgLeaseLock`] on the journal's own lease table, so the token an append is
    /// checked against is the one this lock granted.
    pub async fn lease_lock(&self) -> Result<PgLeaseLock> {
        PgLeaseLock::on_pool(self.pool.clone(), LEASES).await
    }

    /// The host id of the runner that started `run`.
    pub async fn run_host(&self, run: &RunId) -> Result<String> {
        sqlx::query_scalar("SELECT host FROM rollback_journal.runs WHERE run = $1")
            .bind(run.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| map("read run", e))?
            .ok_or_else(|| Error::not_found(format!("run {run} is not in the journal")))
    }
}

/// Notifications per run, and what each waiter last read: a wait returns at once
/// when a notification for its run came after its last read, so one that arrives
/// between a gate's read and its wait is not lost.
#[derive(Default)]
struct Heard {
    /// Notifications heard per run.
    counts: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// The count when the run was last read, per reading task: two waiters on one
    /// run (a gate and the cancel watch) must not take each other's notification.
    seen: std::sync::Mutex<std::collections::HashMap<(String, Option<tokio::task::Id>), u64>>,
    changed: tokio::sync::Notify,
    /// Reconnects of the listener: each counts as a notification for every run.
    reconnects: std::sync::atomic::AtomicU64,
}

impl Heard {
    fn bump(&self, run: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(run.to_owned()).or_default() += 1;
        }
        self.changed.notify_waiters();
    }

    fn bump_all(&self) {
        self.reconnects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    fn count(&self, run: &str) -> u64 {
        let reconnects = self.reconnects.load(std::sync::atomic::Ordering::Relaxed);
        self.counts.lock().map(|c| c.get(run).copied().unwrap_or(0)).unwrap_or(0) + reconnects
    }

    fn mark_read(&self, run: &str) {
        let count = self.count(run);
        if let Ok(mut seen) = self.seen.lock() {
            // Bounded: forgetting what was read only makes the next waits return at
            // once and read again (short-lived tasks, such as Python's calls, add keys).
            if seen.len() >= 4096 {
                seen.clear();
            }
            seen.insert((run.to_owned(), tokio::task::try_id()), count);
        }
    }

    /// Whether a notification for `run` came since the calling task last read it.
    fn unread(&self, run: &str) -> bool {
        let key = (run.to_owned(), tokio::task::try_id());
        let seen = self.seen.lock().map(|s| s.get(&key).copied().unwrap_or(0)).unwrap_or(0);
        self.count(run) > seen
    }
}

/// A rejected fence (`RB001`, raised by `rollback_journal.append`) is `Locked`.
fn map_append(err: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &err
        && db.code().as_deref() == Some("RB001")
    {
        return Error::new(ErrorKind::Locked, db.message().to_owned()).with_operation("journal append");
    }
    map("journal append", err)
}

#[async_trait]
impl Journal for PgJournal {
    async fn append(&self, run: &RunId, fence: Option<&Fence>, entry: Entry, durability: Durability) -> Result<u64> {
        self.append_batch(run, fence, vec![entry], durability).await
    }

    async fn append_batch(
        &self,
        run: &RunId,
        fence: Option<&Fence>,
        entries: Vec<Entry>,
        durability: Durability,
    ) -> Result<u64> {
        if entries.is_empty() {
            return Err(Error::invalid_input("an append needs at least one entry"));
        }
        let entries = serde_json::to_string(&entries).map_err(|e| Error::internal(format!("journal entry: {e}")))?;
        let known = |token: u64| self.sent.lock().is_ok_and(|sent| sent.get(run.as_str()) == Some(&token));
        let mut resend = false;
        loop {
            let resources = fence.filter(|f| resend || !known(f.token())).map(|f| f.resources().to_vec());
            let seq = sqlx::query_scalar::<_, i64>("SELECT rollback_journal.append($1, $2, $3, $4::jsonb, $5)")
                .bind(run.as_str())
                .bind(&resources)
                .bind(fence.map(|f| f.token() as i64))
                .bind(&entries)
                .bind(durability == Durability::Sync)
                .fetch_one(&self.pool)
                .await;
            match seq {
                Ok(seq) => {
                    if let (Some(f), Ok(mut sent)) = (fence, self.sent.lock()) {
                        sent.insert(run.as_str().to_owned(), f.token());
                    }
                    return Ok(seq as u64);
                }
                // The server has no resources for this token (another writer's fence
                // since): send them.
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("RB002") && !resend => resend = true,
                Err(e) => return Err(map_append(e)),
            }
        }
    }

    async fn read(&self, run: &RunId) -> Result<Vec<Record>> {
        if let Some(heard) = self.heard.get() {
            heard.mark_read(run.as_str());
        }
        let rows = sqlx::query(
            "SELECT seq, token, at, entry::text AS entry FROM rollback_journal.records WHERE run = $1 ORDER BY seq",
        )
        .bind(run.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| map("journal read", e))?;
        if rows.is_empty() {
            return Err(Error::not_found(format!("run {run} is not in the journal")));
        }
        rows.into_iter()
            .map(|row| {
                let seq: i64 = row.get("seq");
                let entry: String = row.get("entry");
                let entry: Entry = serde_json::from_str(&entry)
                    .map_err(|e| Error::new(ErrorKind::Corrupt, format!("run {run} record {seq}: {e}")))?;
                Ok(Record {
                    seq: seq as u64,
                    run: run.clone(),
                    token: row.get::<i64, _>("token") as u64,
                    at: row.get::<DateTime<Utc>, _>("at"),
                    entry,
                })
            })
            .collect()
    }

    fn notifies(&self) -> bool {
        true
    }

    async fn wait_for_records(&self, run: &RunId, timeout: Duration) {
        let Some((heard, fresh)) = self.heard().await else {
            tokio::time::sleep(timeout).await;
            return;
        };
        if fresh {
            // What was appended before the listener listened was not heard: read again.
            return;
        }
        let _ = tokio::time::timeout(timeout, async {
            loop {
                let changed = heard.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if heard.unread(run.as_str()) {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }

    async fn runs(&self) -> Result<Vec<RunIndexEntry>> {
        let rows = sqlx::query("SELECT run, plan, started_at FROM rollback_journal.runs ORDER BY started_at, run")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map("journal runs", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let run: String = row.get("run");
            let Ok(id) = run.parse::<RunId>() else {
                tracing::warn!(run, "skipping a journal run with an unreadable id");
                continue;
            };
            out.push(RunIndexEntry { run: id, plan: row.get("plan"), started_at: row.get("started_at") });
        }
        Ok(out)
    }
}
