//! The data model: ids, versions and selectors, changes, plans. All of it is
//! serde, and plans round-trip through JSON and TOML.

mod change;
mod ids;
mod plan;
mod version;

pub use change::{Change, DataLoss, Reversibility};
pub use ids::{IdempotencyKey, Identity, RunId, StepId, TargetId};
pub use plan::{Category, FailurePolicy, Plan, Stage, Step, StepOp, Undo};
pub use version::{Revision, Selector, Version};
