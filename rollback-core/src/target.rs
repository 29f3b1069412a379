//! The [`Target`] trait: a thing that can be rolled back (versioned) or acted on
//! (actions without history).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{Category, Change, Error, IdempotencyKey, Identity, Result, Revision, Selector, TargetId, Version};

/// What a step asks `prepare` for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Move a versioned target to the version a selector names.
    To(Selector),
    /// Perform a named action with parameters.
    Action {
        /// The action's name.
        action: String,
        /// Its parameters.
        params: serde_json::Value,
    },
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::To(selector) => write!(f, "to {selector}"),
            Request::Action { action, .. } => write!(f, "action {action}"),
        }
    }
}

/// What `observe` found for a change and key: how resume decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum Observed {
    /// The change is in place, made by this key (record it, don't redo it).
    Done,
    /// The pre-state still holds (apply it).
    NotStarted,
    /// Some internal phases happened (apply again only if the target converges from
    /// partial states, else escalate).
    Partial(String),
    /// Neither pre- nor post-state of this key: someone else changed it (conflict, never redo).
    Diverged(String),
}

impl Observed {
    /// The compare-and-swap gate at the top of `apply`: `Ok(false)` when the change is
    /// already done with this key (nothing to do), `Ok(true)` when `from` holds or the
    /// target is part-way (go on), a [`crate::ErrorKind::Conflict`] when someone else
    /// changed it.
    ///
    /// ```
    /// use rollback_core::{Change, ErrorKind, Observed, Version};
    /// let change = Change::new("web", "release", Some(Version::new("v2")), Version::new("v1"));
    /// assert_eq!(Observed::Done.proceed(&change).unwrap(), false);
    /// assert_eq!(Observed::NotStarted.proceed(&change).unwrap(), true);
    /// let err = Observed::Diverged("current is v3".into()).proceed(&change).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Conflict);
    /// ```
    pub fn proceed(self, change: &Change) -> Result<bool> {
        match self {
            Observed::Done => Ok(false),
            Observed::NotStarted | Observed::Partial(_) => Ok(true),
            Observed::Diverged(detail) => Err(Error::new(
                crate::ErrorKind::Conflict,
                format!(
                    "{} was prepared against {} but {detail}",
                    change.target,
                    change.from.as_ref().map_or_else(|| "its state then".to_string(), |v| v.to_string())
                ),
            )),
        }
    }
}

/// What a target can do; optional methods default to an "unsupported" error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Has `current` and `history` (a versioned target), not only actions.
    pub versioned: bool,
    /// `apply` finishes the job from any [`Observed::Partial`] state, so resume may re-apply.
    pub converges_from_partial: bool,
}

/// A thing a rollback changes. Usable as `Arc<dyn Target>`.
///
/// The contract, checked by `testkit::conformance` (feature `testkit`):
/// - `prepare` mutates nothing and returns an absolute [`Change`] (relative selectors
///   resolved once, `from` observed);
/// - `apply(change, key)` checks that `change.from` still holds (compare-and-swap),
///   acts, and stamps `key` into the backend; applying a change already done with the
///   same key is a no-op; a changed `from` is a [`crate::ErrorKind::Conflict`];
/// - `observe(change, key)` tells [`Observed::Done`], `NotStarted`, `Partial` or `Diverged`
///   from what the backend shows, never from memory of this process.
#[async_trait]
pub trait Target: Send + Sync + 'static {
    /// The name steps refer to.
    fn name(&self) -> &TargetId;

    /// The kind (factory name).
    fn kind(&self) -> &str;

    /// What kind of thing it is; decides default failure policy and undo.
    fn category(&self) -> Category;

    /// What it can do.
    fn capabilities(&self) -> Capabilities;

    /// What it is beyond its name; journaled and checked on resume.
    async fn identity(&self) -> Result<Identity>;

    /// Whether it exists on one machine only (a path, a local daemon): a run that
    /// changes it can be resumed only by a runner on the host that started it.
    fn host_local(&self) -> bool {
        false
    }

    /// The current version (versioned targets).
    async fn current(&self) -> Result<Version> {
        Err(Error::unsupported("current"))
    }

    /// Known versions, newest first (versioned targets).
    async fn history(&self) -> Result<Vec<Revision>> {
        Err(Error::unsupported("history"))
    }

    /// Resolves a request into an absolute change. Must not mutate anything.
    async fn prepare(&self, request: &Request) -> Result<Change>;

    /// Performs the change as compare-and-swap on `change.from`, stamping `key`.
    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()>;

    /// Classifies the backend's state for `change` and `key`.
    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed>;

    /// The change that undoes `change`. Defaults to [`Change::swapped`] for
    /// [`crate::Reversibility::Inverse`] changes.
    fn inverse(&self, change: &Change) -> Result<Change> {
        if change.reversibility != crate::Reversibility::Inverse {
            return Err(Error::unsupported("inverse")
                .with_context("target", &change.target)
                .with_context("reversibility", change.reversibility));
        }
        change.swapped().ok_or_else(|| {
            Error::unsupported("inverse").with_context("target", &change.target).with_context("reason", "no pre-state")
        })
    }
}

/// Prepares a versioned rollback the standard way: reads `current` and `history`,
/// resolves the selector once, and builds a [`Change`] from `current` to the resolved
/// version. Backends call this from `prepare` and then add payload and data-loss
/// estimates.
///
/// ```
/// # tokio_test_block(async {
/// use rollback_core::{testkit::MemoryTarget, prepare_versioned, Selector, Target};
/// let target = MemoryTarget::with_versions("web", &["v1", "v2", "v3"]);
/// let change = prepare_versioned(&target, &Selector::Previous).await.unwrap();
/// assert_eq!(change.from.unwrap().id, "v3");
/// assert_eq!(change.to.id, "v2");
/// # });
/// # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
pub async fn prepare_versioned(target: &dyn Target, selector: &Selector) -> Result<Change> {
    let current = target.current().await?;
    let history = target.history().await?;
    let revision = selector.resolve(&history, &current)?;
    if revision.version.id == current.id {
        let message = format!("{selector} resolves to the current version {current}");
        // Only an absolute selector can name the current version; a relative one never
        // does (`previous` is older by definition), so that would be a bug in a history.
        return Err(if selector.is_relative() { Error::invalid_input(message) } else { Error::already_done(message) });
    }
    let description = format!("{}: {} {} -> {} ({selector})", target.name(), target.kind(), current, revision.version);
    Ok(Change::new(target.name().clone(), target.kind(), Some(current), revision.version.clone()).describe(description))
}
