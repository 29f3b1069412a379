//! The [`Strategy`] trait: turns specs and a request into a [`Plan`].

use serde::{Deserialize, Serialize};

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
}

/// Builds plans. Strategies are pure: they read specs and the request, never backends,
/// so the plan they produce can be shown by dry-run before anything happens.
pub trait Strategy: Send + Sync + 'static {
    /// The strategy's name (`"emergency"`, `"standard"`).
    fn name(&self) -> &str;
    /// The plan for `targets` and `request`.
    fn plan(&self, targets: &[Spec], request: &RollbackRequest) -> Result<Plan>;
}
