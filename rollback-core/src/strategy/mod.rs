//! The [`Strategy`] trait: turns specs and a request into a [`Plan`], and the
//! built-in strategies [`Emergency`], [`Standard`], [`Full`], [`Canary`] and [`Ladder`].

mod builtin;

use serde::{Deserialize, Serialize};

pub use builtin::{Canary, Compatibility, Emergency, Full, Ladder, Order, Standard, Tiers};

use crate::{Plan, Result, Selector, Spec};

/// What a caller asks a strategy for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// Why (journaled and reported).
    pub reason: String,
    /// Where to go for versioned targets.
    pub to: Selector,
    /// Strategy-specific options.
    #[serde(default)]
    pub options: serde_json::Value,
    /// Verifier specs the plan may use (copied into it).
    #[serde(default)]
    pub verifiers: Vec<Spec>,
    /// Snapshot specs the plan may use (copied into it).
    #[serde(default)]
    pub snapshots: Vec<Spec>,
}

impl RollbackRequest {
    /// A request to go to `to` for `reason`, with options.
    pub fn new(reason: &str, to: Selector, options: serde_json::Value) -> Self {
        RollbackRequest { reason: reason.to_owned(), to, options, verifiers: Vec::new(), snapshots: Vec::new() }
    }
}

/// Builds plans. Strategies are pure: they read specs and the request, never backends,
/// so the plan they produce can be shown by dry-run before anything happens.
pub trait Strategy: Send + Sync + 'static {
    /// The strategy's name (`"emergency"`, `"standard"`).
    fn name(&self) -> &str;
    /// The plan for `targets` and `request`.
    fn plan(&self, targets: &[Spec], request: &RollbackRequest) -> Result<Plan>;
}
