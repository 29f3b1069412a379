//! Conformance suites: public async functions every implementation must pass.
//! Backends call them from their own tests against the real thing (a Docker
//! engine, PostgreSQL, S3), the way arrow's object-store integration tests do.
//!
//! Each check panics with a message naming the broken promise.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::journal::{Durability, Entry};
use crate::{
    ErrorKind, Fence, Holder, IdempotencyKey, Journal, Lock, Observed, Request, RunId, Selector, Severity, Target,
};

/// Runs every target check, each on a fresh target from `make`. The target must have
/// at least three available revisions with the newest current.
pub async fn target_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Target>>,
{
    history_is_newest_first(make().await).await;
    prepare_never_mutates(make().await).await;
    prepare_resolves_to_absolute_versions(make().await).await;
    apply_then_reapply_is_a_noop(make().await).await;
    apply_refuses_when_from_no_longer_holds(make().await).await;
    errors_carry_kinds(make().await).await;
}

/// History is newest first (by creation time where known) and contains the current version.
pub async fn history_is_newest_first(target: Arc<dyn Target>) {
    let history = target.history().await.expect("history");
    assert!(history.len() >= 3, "the suite needs at least three revisions");
    let times: Vec<_> = history.iter().filter_map(|r| r.created).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "history is not newest first: {times:?}");
    let current = target.current().await.expect("current");
    assert!(history.iter().any(|r| r.version.id == current.id), "current {current} is not in the history");
}

/// `prepare` changes nothing: current and history are the same before and after.
pub async fn prepare_never_mutates(target: Arc<dyn Target>) {
    let (current, history) = (target.current().await.expect("current"), target.history().await.expect("history"));
    for selector in [Selector::Previous, Selector::Back(2)] {
        target.prepare(&Request::To(selector.clone())).await.expect("prepare");
        assert_eq!(
            target.current().await.expect("current"),
            current,
            "prepare({selector}) changed the current version"
        );
        assert_eq!(target.history().await.expect("history"), history, "prepare({selector}) changed the history");
    }
}

/// A relative selector resolves to an absolute version in the history, with `from`
/// the observed current version.
pub async fn prepare_resolves_to_absolute_versions(target: Arc<dyn Target>) {
    let current = target.current().await.expect("current");
    let history = target.history().await.expect("history");
    let change = target.prepare(&Request::To(Selector::Previous)).await.expect("prepare");
    assert_eq!(change.from.as_ref().map(|v| &v.id), Some(&current.id), "from must be the observed current version");
    assert!(history.iter().any(|r| r.version.id == change.to.id), "to {} is not a version of the history", change.to);
    assert_ne!(change.to.id, current.id, "previous resolved to the current version");
    assert_eq!(&change.target, target.name());
    let exact = target.prepare(&Request::To(Selector::Exact(change.to.id.clone()))).await.expect("prepare exact");
    assert_eq!(exact.to.id, change.to.id, "exact by id resolves to the same version");
}

/// After a completed apply, observe says Done and applying again is a no-op.
pub async fn apply_then_reapply_is_a_noop(target: Arc<dyn Target>) {
    let change = target.prepare(&Request::To(Selector::Previous)).await.expect("prepare");
    let key = IdempotencyKey::new("conformance/apply/fwd");
    assert_eq!(target.observe(&change, &key).await.expect("observe"), Observed::NotStarted, "before apply");
    target.apply(&change, &key).await.expect("apply");
    assert_eq!(target.observe(&change, &key).await.expect("observe"), Observed::Done, "after apply");
    assert_eq!(target.current().await.expect("current").id, change.to.id);
    target.apply(&change, &key).await.expect("re-applying a done change must be a no-op, not an error");
    assert_eq!(target.current().await.expect("current").id, change.to.id);
    assert_eq!(target.observe(&change, &key).await.expect("observe"), Observed::Done);
}

/// A change whose `from` no longer holds is refused with a conflict, and observe calls it diverged.
pub async fn apply_refuses_when_from_no_longer_holds(target: Arc<dyn Target>) {
    let stale = target.prepare(&Request::To(Selector::Previous)).await.expect("prepare");
    let other = target.prepare(&Request::To(Selector::Back(2))).await.expect("prepare back 2");
    target.apply(&other, &IdempotencyKey::new("conformance/other/fwd")).await.expect("apply other");
    let key = IdempotencyKey::new("conformance/stale/fwd");
    let err = target.apply(&stale, &key).await.expect_err("apply with a stale from must fail");
    assert_eq!(err.kind(), ErrorKind::Conflict, "stale from must be a conflict: {err}");
    assert_eq!(target.current().await.expect("current").id, other.to.id, "a refused apply changed the target");
    assert!(
        matches!(target.observe(&stale, &key).await.expect("observe"), Observed::Diverged(_)),
        "observe of a change overtaken by another must be Diverged"
    );
}

/// Errors carry kinds: an unknown version is NotFound.
pub async fn errors_carry_kinds(target: Arc<dyn Target>) {
    let err = target
        .prepare(&Request::To(Selector::Exact("conformance-no-such-version".into())))
        .await
        .expect_err("an unknown version must be an error");
    assert_eq!(err.kind(), ErrorKind::NotFound, "unknown version: {err}");
}

/// `observe` tells a state left between `apply`'s internal phases: `leave_partial`
/// must put the target there for `change` and `key` (each backend knows how). If the
/// target converges from partial states, applying again finishes the job.
pub async fn observe_between_phases<F, Fut>(target: Arc<dyn Target>, leave_partial: F)
where
    F: FnOnce(crate::Change, IdempotencyKey) -> Fut,
    Fut: Future<Output = ()>,
{
    let change = target.prepare(&Request::To(Selector::Previous)).await.expect("prepare");
    let key = IdempotencyKey::new("conformance/partial/fwd");
    leave_partial(change.clone(), key.clone()).await;
    let observed = target.observe(&change, &key).await.expect("observe");
    assert!(matches!(observed, Observed::Partial(_)), "between phases observe must be Partial, got {observed:?}");
    if target.capabilities().converges_from_partial {
        target.apply(&change, &key).await.expect("apply from a partial state");
        assert_eq!(target.observe(&change, &key).await.expect("observe"), Observed::Done);
    }
}

/// Journal checks: sequence numbers, read-back, fencing, unfenced appends.
pub async fn journal_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Journal>>,
{
    let journal = make().await;
    let run = RunId::generate();
    let entry = |n: u32| Entry::Escalated { severity: Severity::S3, reason: format!("r{n}") };
    let fence = |token| Fence::new(vec!["conformance".into()], token);
    for n in 1..=3u64 {
        let seq = journal.append(&run, Some(&fence(5)), entry(n as u32), Durability::Sync).await.expect("append");
        assert_eq!(seq, n, "sequence numbers are 1, 2, 3…");
    }
    let records = journal.read(&run).await.expect("read");
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.token == 5 && r.run == run));
    assert_eq!(records[2].entry, entry(3));
    let err = journal.append(&run, Some(&fence(4)), entry(9), Durability::Sync).await.expect_err("stale token");
    assert_eq!(err.kind(), ErrorKind::Locked, "a stale fencing token is rejected as locked: {err}");
    journal
        .append(&run, None, entry(4), Durability::Buffered)
        .await
        .expect("unfenced appends (approvals) are accepted");
    assert_eq!(journal.read(&run).await.expect("read").len(), 4, "the rejected append was not written");
    let missing = journal.read(&RunId::generate()).await.expect_err("unknown run");
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

/// Lock checks: exclusion naming the holder, all-or-nothing, growing tokens, expiry,
/// renewal refused once lost.
pub async fn lock_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Lock>>,
{
    let lock = make().await;
    let a = Holder { run: RunId::generate(), pid: std::process::id(), host: "conformance-a".into() };
    let b = Holder { run: RunId::generate(), pid: std::process::id(), host: "conformance-b".into() };
    let long = Duration::from_secs(60);
    let lease = lock.acquire(&["x".into(), "y".into()], &a, long).await.expect("acquire");
    let err = lock.acquire(&["y".into(), "z".into()], &b, long).await.expect_err("y is held");
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(err.to_string().contains(&a.run.to_string()), "the error names the holder: {err}");
    let z = lock.acquire(&["z".into()], &b, long).await.expect("z was not taken by the refused attempt");
    assert!(z.token > lease.token, "tokens grow");
    lock.release(&z).await.expect("release");
    lock.release(&lease).await.expect("release");
    let short = lock.acquire(&["x".into()], &a, Duration::from_millis(200)).await.expect("acquire after release");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = lock.acquire(&["x".into()], &b, long).await.expect("an expired lease is taken over");
    assert!(taken.token > short.token);
    let err = lock.renew(&short, long).await.expect_err("renewing a lost lease");
    assert_eq!(err.kind(), ErrorKind::Locked);
    lock.renew(&taken, long).await.expect("the new holder renews");
    lock.release(&taken).await.expect("release");
}

mod action;
mod snapshot;
mod store;
mod verifier;

pub use action::action_suite;
pub use snapshot::snapshot_suite;
pub use store::artifact_store_suite;
pub use verifier::verifier_suite;
