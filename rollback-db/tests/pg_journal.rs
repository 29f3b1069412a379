//! The shared journal on a real PostgreSQL server: the core journal suite; the
//! journal's own schema and migration bookkeeping; two writers on one run never
//! interleaving or repeating a sequence number; a holder that lost its lease (expired,
//! or taken over) rejected by the append itself; and a run started by one "host"
//! seen, approved and resumed by another (two PgJournals with different host ids).
//!
//! Needs `ROLLBACK_TEST_POSTGRES_URL` (a superuser URL; `scripts/test.sh` sets it).
//! Each test works in a database of its own.

use std::sync::Arc;
use std::time::Duration;

use rollback_core::journal::{Durability, Entry, Fence};
use rollback_core::testkit::{FileTarget, MemoryTarget, conformance};
use rollback_core::{
    Engine, ErrorKind, Holder, Journal, Lock, Plan, Registry, RunId, RunOptions, RunState, Selector, Settings,
    Severity, Step, StepOp,
};
use rollback_db::{PgJournal, PgJournalOptions};

fn admin_url() -> Option<String> {
    rollback_core::testkit::server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL")
}

/// A database of this test's own.
async fn database(admin: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let name = format!("rb_journal_{}_{nanos}", std::process::id());
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.unwrap();
    pool.close().await;
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

async fn journal(url: &str) -> PgJournal {
    PgJournal::connect_with(url, PgJournalOptions { max_connections: 4, ..Default::default() }).await.unwrap()
}

/// A runner with host id `host` on the shared journal and its lease lock.
async fn runner(url: &str, host: &str, registry: Registry, dir: &std::path::Path) -> Engine {
    runner_polling(url, host, registry, dir, Duration::from_millis(50)).await
}

/// [`runner`] whose waits re-read the journal every `poll` (unless woken sooner).
async fn runner_polling(url: &str, host: &str, registry: Registry, dir: &std::path::Path, poll: Duration) -> Engine {
    let journal = journal(url).await;
    let lock = journal.lease_lock().await.unwrap();
    let settings = Settings {
        host: Some(host.into()),
        approval_poll: poll,
        lease_ttl: Duration::from_secs(3),
        ..Settings::default()
    };
    Engine::builder(registry)
        .journal(Arc::new(journal))
        .lock(Arc::new(lock))
        .artifacts_dir(dir.join("artifacts"))
        .settings(settings)
        .build()
}

fn note(n: usize) -> Entry {
    Entry::Escalated { severity: Severity::S3, reason: format!("n{n}") }
}

#[tokio::test]
async fn passes_the_core_journal_suite() {
    let Some(admin) = admin_url() else { return };
    let url = database(&admin).await;
    conformance::journal_suite(|| {
        let url = url.clone();
        async move { Arc::new(PgJournal::connect(&url).await.unwrap()) as Arc<dyn Journal> }
    })
    .await;
}

/// The lease lock on the journal's own lease table (with the trigger that records
/// every granted token for the append's check) keeps core's lock contract.
#[tokio::test]
async fn its_lease_lock_passes_the_core_lock_suite() {
    let Some(admin) = admin_url() else { return };
    let url = database(&admin).await;
    conformance::lock_suite(|| {
        let url = url.clone();
        async move { Arc::new(journal(&url).await.lease_lock().await.unwrap()) as Arc<dyn Lock> }
    })
    .await;
}

#[tokio::test]
async fn keeps_its_tables_and_migrations_in_its_own_schema() {
    let Some(admin) = admin_url() else { return };
    let url = database(&admin).await;
    // Two hosts starting together: the migrator's advisory lock lets one migrate.
    let _both = tokio::join!(journal(&url), journal(&url));
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "rollback_journal._migrations",
            "rollback_journal.fences",
            "rollback_journal.lease_generation",
            "rollback_journal.leases",
            "rollback_journal.records",
            "rollback_journal.runs"
        ],
        "nothing in the application's schema, no _sqlx_migrations of its own there"
    );
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM rollback_journal._migrations").fetch_all(&pool).await.unwrap();
    assert_eq!(versions, [1]);
}

#[tokio::test]
async fn two_writers_never_interleave_or_repeat_a_sequence_number() {
    let Some(admin) = admin_url() else { return };
    let url = database(&admin).await;
    let (a, b) = (Arc::new(journal(&url).await), Arc::new(journal(&url).await));
    let run = RunId::generate();
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..8usize {
        let journal = if writer % 2 == 0 { a.clone() } else { b.clone() };
        let run = run.clone();
        tasks.spawn(async move {
            for i in 0..25usize {
                let n = writer * 1000 + i * 2;
                journal.append_batch(&run, None, vec![note(n), note(n + 1)], Durability::Sync).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let records = a.read(&run).await.unwrap();
    assert_eq!(records.len(), 8 * 25 * 2);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "gapless and unique");
    }
    for pair in records.chunks(2) {
        let reason = |r: &rollback_core::journal::Record| match &r.entry {
            Entry::Escalated { reason, .. } => reason[1..].parse::<usize>().unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(&pair[0]) + 1, reason(&pair[1]), "a batch's records are adjacent");
    }
}

#[tokio::test]
async fn a_holder_that_lost_its_lease_is_rejected_by_the_append_itself() {
    let Some(admin) = admin_url() else { return };
    let url = database(&admin).await;
    let journal = journal(&url).await;
    let lock = journal.lease_lock().await.unwrap();
    let run = RunId::generate();
    let holder = |pid: u32| Holder { run: run.clone(), pid, host: "a".into() };
    let resources = vec!["shop/web".to_string()];
    let first = lock.acquire(&resources, &holder(1), Duration::from_secs(1)).await.unwrap();
    let fence = Fence::new(first.resources.clone(), first.token);
    journal.append(&run, Some(&fence), note(1), Durability::Sync).await.unwrap();

    // Expired by the database's clock, nobody took over yet: rejected.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let err = journal.append(&run, Some(&fence), note(2), Durability::Sync).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(err.to_string().contains("expired"), "{err}");

    // Taken over: the old token is rejected naming the new holder, the new one writes.
    let second = lock.acquire(&resources, &holder(2), Duration::from_secs(30)).await.unwrap();
    assert!(second.token > first.token);
    let err = journal.append(&run, Some(&fence), note(3), Durability::Sync).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(err.to_string().contains(&format!("held with token {}", second.token)), "{err}");
    let fresh = Fence::new(second.resources.clone(), second.token);
    assert_eq!(journal.append(&run, Some(&fresh), note(4), Durability::Buffered).await.unwrap(), 2);
    assert_eq!(journal.read(&run).await.unwrap().len(), 2, "the rejected appends wrote nothing");
    // Released by the new holder: the old token is still stale (the lease table's
    // tokens are remembered as the newest seen).
    lock.release(&second).await.unwrap();
    let err = journal.append(&run, Some(&fence), note(5), Durability::Sync).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(err.to_string().contains(&format!("a newer holder has token {}", second.token)), "{err}");

    // Resources no lease row covers (another lock): the newest token seen wins.
    let other = vec!["elsewhere".to_string()];
    journal.append(&run, Some(&Fence::new(other.clone(), 7)), note(5), Durability::Sync).await.unwrap();
    let err = journal.append(&run, Some(&Fence::new(other, 6)), note(6), Durability::Sync).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(err.to_string().contains("stale fencing token 6"), "{err}");
}

/// Waits until `run` asks for its approval (read through another journal).
async fn reached_the_gate(url: &str, run: &RunId) {
    let shared = journal(url).await;
    let started = std::time::Instant::now();
    loop {
        let records = shared.read(run).await.unwrap_or_default();
        if records.iter().any(|r| matches!(r.entry, Entry::ApprovalRequested { .. })) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the run never reached its gate");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn gated_plan() -> Plan {
    Plan::new("shared journal")
        .stage(
            "gate",
            1,
            vec![Step::new("ok", StepOp::Approval { prompt: "go on?".into(), timeout: None, approvers: vec![] })],
        )
        .stage("undo", 1, vec![Step::new("web", StepOp::Rollback { target: "web".into(), to: Selector::Previous })])
}

fn registry_with(target: Arc<dyn rollback_core::Target>) -> Registry {
    let mut registry = Registry::new();
    registry.register_target(target);
    registry
}

#[tokio::test]
async fn a_run_started_on_one_host_is_approved_and_resumed_on_another() {
    let Some(admin) = admin_url() else { return };
    let url = database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let target = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let a = runner(&url, "host-a", registry_with(target.clone()), dir.path()).await;
    let waiting = a.run(gated_plan(), RunOptions { no_wait: true, ..Default::default() }).await.unwrap();
    // no_wait: stopped at the gate (journaled cancelled, resumable), its lease released.
    assert_eq!(waiting.state, RunState::Cancelled, "{waiting}");

    let b = runner(&url, "host-b", registry_with(target.clone()), dir.path()).await;
    assert_eq!(journal(&url).await.run_host(&waiting.run).await.unwrap(), "host-a");
    let listed = b.runs().await.unwrap();
    assert!(listed.iter().any(|r| r.run == waiting.run && r.plan == "shared journal"), "{listed:?}");
    assert_eq!(b.report(&waiting.run).await.unwrap().state, RunState::Cancelled);
    b.approve(&waiting.run, &"ok".into(), true, "oncall").await.unwrap();
    let done = b.resume(&waiting.run).await.unwrap();
    assert_eq!(done.state, RunState::Succeeded, "{done}");
    assert_eq!(rollback_core::Target::current(target.as_ref()).await.unwrap().id, "v1");
    assert_eq!(a.report(&waiting.run).await.unwrap().state, RunState::Succeeded, "host a sees it finished");
}

/// While host a's run holds its lease (waiting at a gate), host b cannot resume it:
/// the error names the holder's host and pid. An approval from b reaches a's waiting
/// run through the shared journal, which then finishes on a.
#[tokio::test]
async fn a_live_lease_is_not_resumed_elsewhere_and_an_approval_from_there_reaches_it() {
    let Some(admin) = admin_url() else { return };
    let url = database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let target = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let a = runner(&url, "host-a", registry_with(target.clone()), dir.path()).await;
    let b = runner(&url, "host-b", registry_with(target.clone()), dir.path()).await;
    let run = RunId::generate();
    let options = RunOptions { run_id: Some(run.clone()), ..Default::default() };
    let waiting = tokio::spawn(async move { a.run(gated_plan(), options).await });
    reached_the_gate(&url, &run).await;
    let err = b.resume(&run).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    let text = err.to_string();
    assert!(text.contains("host-a") && text.contains(&format!("pid {}", std::process::id())), "{text}");
    b.approve(&run, &"ok".into(), true, "oncall").await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(20), waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(done.state, RunState::Succeeded, "{done}");
}

/// A run whose target is local to the host that started it (a file there) is not
/// resumed on another host: refused naming both hosts and the target. The host that
/// started it resumes it.
#[tokio::test]
async fn a_host_local_target_is_resumed_only_where_the_run_started() {
    let Some(admin) = admin_url() else { return };
    let url = database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let file = Arc::new(
        FileTarget::open("config", dir.path().join("config"), &["v1", "v2"], rollback_core::Category::Config).unwrap(),
    );
    let plan = Plan::new("local file")
        .stage(
            "gate",
            1,
            vec![Step::new("ok", StepOp::Approval { prompt: "go on?".into(), timeout: None, approvers: vec![] })],
        )
        .stage(
            "undo",
            1,
            vec![Step::new("config", StepOp::Rollback { target: "config".into(), to: Selector::Previous })],
        );
    let a = runner(&url, "host-a", registry_with(file.clone()), dir.path()).await;
    let waiting = a.run(plan, RunOptions { no_wait: true, ..Default::default() }).await.unwrap();
    let b = runner(&url, "host-b", registry_with(file.clone()), dir.path()).await;
    b.approve(&waiting.run, &"ok".into(), true, "oncall").await.unwrap();
    let err = b.resume(&waiting.run).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    let text = err.to_string();
    assert!(text.contains("\"host-a\"") && text.contains("\"host-b\"") && text.contains("config"), "{text}");
    let again = runner(&url, "host-a", registry_with(file.clone()), dir.path()).await;
    assert_eq!(again.resume(&waiting.run).await.unwrap().state, RunState::Succeeded);
}

/// A gate waiting on the shared journal wakes on the approval's NOTIFY, not on its
/// poll timer (here 10 s).
#[tokio::test]
async fn a_waiting_gate_wakes_on_the_approvals_notify() {
    let Some(admin) = admin_url() else { return };
    let url = database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let target = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let a = runner_polling(&url, "host-a", registry_with(target.clone()), dir.path(), Duration::from_secs(10)).await;
    let run = RunId::generate();
    let options = RunOptions { run_id: Some(run.clone()), ..Default::default() };
    let waiting = tokio::spawn(async move { a.run(gated_plan(), options).await });
    reached_the_gate(&url, &run).await;
    // Let the gate settle into its wait, then approve from another journal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = runner(&url, "host-b", registry_with(target.clone()), dir.path()).await;
    let approved = std::time::Instant::now();
    b.approve(&run, &"ok".into(), true, "oncall").await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(30), waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(done.state, RunState::Succeeded, "{done}");
    let woke = approved.elapsed();
    assert!(woke < Duration::from_secs(1), "woke after {woke:?}: the poll timer, not the NOTIFY");
}

/// A cancel asked for on host b reaches the run waiting on host a through the
/// shared journal (its NOTIFY, well before a's 10 s poll): the run stops at the
/// boundary, journaled `cancelled` with who asked, and resume finishes it.
#[tokio::test]
async fn a_cancel_requested_on_another_host_stops_the_run_at_its_next_boundary() {
    let Some(admin) = admin_url() else { return };
    let url = database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let target = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let a = runner_polling(&url, "host-a", registry_with(target.clone()), dir.path(), Duration::from_secs(10)).await;
    let run = RunId::generate();
    let options = RunOptions { run_id: Some(run.clone()), ..Default::default() };
    let waiting = tokio::spawn(async move { a.run(gated_plan(), options).await });
    reached_the_gate(&url, &run).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let b = runner(&url, "host-b", registry_with(target.clone()), dir.path()).await;
    let asked = std::time::Instant::now();
    b.request_cancel(&run, "oncall@host-b").await.unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(30), waiting).await.unwrap().unwrap().unwrap();
    let took = asked.elapsed();
    assert_eq!(stopped.state, RunState::Cancelled, "{stopped}");
    assert!(took < Duration::from_secs(2), "stopped after {took:?}: the poll timer, not the NOTIFY");
    assert!(stopped.to_string().contains("oncall@host-b"), "the report says who asked: {stopped}");
    assert_eq!(rollback_core::Target::current(target.as_ref()).await.unwrap().id, "v2", "nothing past the gate ran");

    // Resumed (on b): the old request does not stop it again.
    b.approve(&run, &"ok".into(), true, "oncall").await.unwrap();
    let done = b.resume(&run).await.unwrap();
    assert_eq!(done.state, RunState::Succeeded, "{done}");
    let err = b.request_cancel(&run, "late").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "a finished run: {err}");
}
