//! The verifier suite.

use std::time::Duration;

use crate::{Outcome, ProbePolicy, Verifier, probe};

/// `passing` passes and `failing` fails, each check with a detail, within `timeout`;
/// under a probe policy the verdicts agree.
pub async fn verifier_suite(passing: &dyn Verifier, failing: &dyn Verifier, timeout: Duration) {
    for (verifier, expected) in [(passing, Outcome::Pass), (failing, Outcome::Fail)] {
        let check = tokio::time::timeout(timeout, verifier.check())
            .await
            .unwrap_or_else(|_| panic!("{} did not answer within {timeout:?}", verifier.name()))
            .expect("a check that runs returns a Check, not an error");
        assert_eq!(check.outcome, expected, "{}: {}", verifier.name(), check.detail);
        assert!(!check.detail.is_empty(), "{}: a check says what it saw", verifier.name());
    }
    let policy = ProbePolicy {
        interval: Duration::from_millis(10),
        passes: 2,
        max_failures: 1,
        deadline: timeout,
        ..ProbePolicy::default()
    };
    assert!(probe(passing, &policy, |_| {}).await.passed, "{} under a probe", passing.name());
    assert!(!probe(failing, &policy, |_| {}).await.passed, "{} under a probe", failing.name());
}
