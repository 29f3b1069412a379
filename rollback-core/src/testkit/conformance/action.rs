//! The action-target suite: targets without a history (traffic, scale, selector,
//! canary, cache invalidation, restore-and-swap, flags) must still keep the contract.

use std::sync::Arc;

use crate::{IdempotencyKey, Observed, Request, Reversibility, Target};

/// Runs the action checks on `target` with `request` (an action it supports), then
/// `state` reads what the backend shows after each effect (a replica count, a flag's
/// value, a key count) so the checks are on the backend, not on what the target says:
///
/// - `prepare` mutates nothing, and `observe` before `apply` is `NotStarted`;
/// - after `apply`, `observe` is `Done`; applying again with the same key is a no-op
///   (the backend shows the same state, `observe` still `Done`);
/// - an `Inverse` change's inverse applies and brings the backend's state back;
/// - an unknown action is refused by `prepare`, with a kind.
pub async fn action_suite<S, Fut>(target: Arc<dyn Target>, request: Request, state: S)
where
    S: Fn() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    assert!(matches!(request, Request::Action { .. }), "the action suite takes an action request");
    // Keys of their own: a backend keeps its stamps (a Redis marker) across test runs.
    let run = crate::RunId::generate();
    let before = state().await;
    let change = target.prepare(&request).await.expect("prepare");
    assert_eq!(state().await, before, "prepare changed the backend");
    assert_eq!(&change.target, target.name(), "the change names its target");
    let key = IdempotencyKey::new(format!("conformance-{run}/action/fwd"));
    assert_eq!(target.observe(&change, &key).await.expect("observe"), Observed::NotStarted, "before apply");
    target.apply(&change, &key).await.expect("apply");
    let after = state().await;
    assert_eq!(target.observe(&change, &key).await.expect("observe"), Observed::Done, "after apply");
    target.apply(&change, &key).await.expect("re-applying a done change must be a no-op, not an error");
    assert_eq!(state().await, after, "re-applying with the same key had an effect");
    assert_eq!(target.observe(&change, &key).await.expect("observe"), Observed::Done);
    if change.reversibility == Reversibility::Inverse {
        let inverse = target.inverse(&change).expect("an Inverse change has an inverse");
        let back = IdempotencyKey::new(format!("conformance-{run}/action/inv"));
        target.apply(&inverse, &back).await.expect("apply the inverse");
        assert_eq!(target.observe(&inverse, &back).await.expect("observe"), Observed::Done, "after the inverse");
        assert_eq!(state().await, before, "the inverse did not bring the backend back");
    }
    let unknown = Request::Action { action: "conformance-no-such-action".into(), params: serde_json::Value::Null };
    let err = target.prepare(&unknown).await.expect_err("an unknown action must be refused");
    assert!(
        matches!(err.kind(), crate::ErrorKind::InvalidInput | crate::ErrorKind::Unsupported),
        "an unknown action is invalid input or unsupported: {err}"
    );
}
