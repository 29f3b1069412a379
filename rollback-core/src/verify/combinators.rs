use async_trait::async_trait;
use std::sync::Arc;

use super::{Check, Outcome, Verifier};
use crate::Result;

async fn check_all(children: &[Arc<dyn Verifier>]) -> Vec<Check> {
    futures::future::join_all(children.iter().map(|c| async move {
        match c.check().await {
            Ok(check) => check,
            Err(err) => Check::new(Outcome::Inconclusive, format!("{}: {err}", c.name())),
        }
    }))
    .await
}

fn summary(children: &[Arc<dyn Verifier>], checks: &[Check]) -> String {
    children.iter().zip(checks).map(|(c, k)| format!("{}={:?}", c.name(), k.outcome)).collect::<Vec<_>>().join(", ")
}

/// Passes when every child passes, fails when any fails, inconclusive otherwise.
/// Children are checked concurrently.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use rollback_core::testkit::ScriptedVerifier;
/// use rollback_core::verify::{All, Any, Not};
/// use rollback_core::{Outcome, Verifier};
/// use std::sync::Arc;
/// let up = || Arc::new(ScriptedVerifier::new("up", [Outcome::Pass])) as Arc<dyn Verifier>;
/// let down = || Arc::new(ScriptedVerifier::new("down", [Outcome::Fail])) as Arc<dyn Verifier>;
/// assert_eq!(All::new("all", vec![up(), down()]).check().await.unwrap().outcome, Outcome::Fail);
/// assert_eq!(Any::new("any", vec![up(), down()]).check().await.unwrap().outcome, Outcome::Pass);
/// assert_eq!(Not::new("not", down()).check().await.unwrap().outcome, Outcome::Pass);
/// # });
/// ```
pub struct All {
    name: String,
    children: Vec<Arc<dyn Verifier>>,
}

impl All {
    /// All of `children`.
    pub fn new(name: &str, children: Vec<Arc<dyn Verifier>>) -> Self {
        All { name: name.to_owned(), children }
    }
}

#[async_trait]
impl Verifier for All {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        let checks = check_all(&self.children).await;
        let outcome = if checks.iter().any(|c| c.outcome == Outcome::Fail) {
            Outcome::Fail
        } else if checks.iter().all(|c| c.outcome == Outcome::Pass) {
            Outcome::Pass
        } else {
            Outcome::Inconclusive
        };
        Ok(Check::new(outcome, format!("all({})", summary(&self.children, &checks))))
    }
}

/// Passes when any child passes, fails when all fail, inconclusive otherwise.
pub struct Any {
    name: String,
    children: Vec<Arc<dyn Verifier>>,
}

impl Any {
    /// Any of `children`.
    pub fn new(name: &str, children: Vec<Arc<dyn Verifier>>) -> Self {
        Any { name: name.to_owned(), children }
    }
}

#[async_trait]
impl Verifier for Any {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        let checks = check_all(&self.children).await;
        let outcome = if checks.iter().any(|c| c.outcome == Outcome::Pass) {
            Outcome::Pass
        } else if checks.iter().all(|c| c.outcome == Outcome::Fail) {
            Outcome::Fail
        } else {
            Outcome::Inconclusive
        };
        Ok(Check::new(outcome, format!("any({})", summary(&self.children, &checks))))
    }
}

/// Swaps pass and fail (inconclusive stays inconclusive): "the old version is gone".
pub struct Not {
    name: String,
    child: Arc<dyn Verifier>,
}

impl Not {
    /// Not `child`.
    pub fn new(name: &str, child: Arc<dyn Verifier>) -> Self {
        Not { name: name.to_owned(), child }
    }
}

#[async_trait]
impl Verifier for Not {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        let mut check = self.child.check().await?;
        check.outcome = match check.outcome {
            Outcome::Pass => Outcome::Fail,
            Outcome::Fail => Outcome::Pass,
            Outcome::Inconclusive => Outcome::Inconclusive,
        };
        check.detail = format!("not({})", check.detail);
        Ok(check)
    }
}
