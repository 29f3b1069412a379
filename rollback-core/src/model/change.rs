use serde::{Deserialize, Serialize};
use std::fmt;

use super::{TargetId, Version};

/// Whether a change can be undone, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reversibility {
    /// Applying the inverse change restores the pre-state (a release switch, a scale).
    Inverse,
    /// Only a snapshot taken before can restore the pre-state (a down migration that drops a column).
    NeedsSnapshot,
    /// Nothing restores it (a cache flush, a notification sent).
    Irreversible,
}

impl fmt::Display for Reversibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reversibility::Inverse => "reversible (inverse)",
            Reversibility::NeedsSnapshot => "reversible only from a snapshot",
            Reversibility::Irreversible => "irreversible",
        })
    }
}

/// What a change would destroy, as estimated by `prepare` and shown by dry-run
/// before any destructive step.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DataLoss {
    /// Nothing is lost (`true`), or something may be (`false`).
    pub none: bool,
    /// How many items (rows, keys, objects) may be lost, when counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    /// What is lost, in words ("312 rows in orders written after 18:00").
    #[serde(default)]
    pub summary: String,
}

impl DataLoss {
    /// No data is lost.
    pub fn none() -> Self {
        DataLoss { none: true, items: Some(0), summary: "no data loss".into() }
    }

    /// Some data may be lost.
    pub fn some(items: Option<u64>, summary: impl Into<String>) -> Self {
        DataLoss { none: false, items, summary: summary.into() }
    }

    /// Unknown: treated as possible loss.
    pub fn unknown(summary: impl Into<String>) -> Self {
        DataLoss { none: false, items: None, summary: summary.into() }
    }
}

impl fmt::Display for DataLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)
    }
}

/// An absolute, journaled change: what `prepare` resolved, what `apply` performs and
/// `observe` checks. A `Change` is never re-prepared: after it is journaled, resume
/// and retry use it as is.
///
/// ```
/// use rollback_core::{Change, Reversibility, Version};
/// let change = Change::new("web", "release", Some(Version::new("v2")), Version::new("v1"))
///     .describe("switch `current` from v2 to v1");
/// assert_eq!(change.reversibility, Reversibility::Inverse);
/// assert_eq!(change.from.as_ref().unwrap().id, "v2");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Change {
    /// The target's name in the plan.
    pub target: TargetId,
    /// What kind of change (`"release"`, `"image"`, `"scale"`, `"flush"`); a target
    /// may have several.
    pub kind: String,
    /// Version of `payload`'s layout, so a newer library can resume an older journal.
    pub schema_version: u32,
    /// The observed pre-state, compared by `apply` (compare-and-swap). `None` for
    /// actions that have no state to compare.
    pub from: Option<Version>,
    /// The absolute post-state.
    pub to: Version,
    /// Target-specific details needed to apply, observe and invert the change.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub payload: serde_json::Value,
    /// A human description for dry-run and reports.
    pub description: String,
    /// How the change can be undone.
    pub reversibility: Reversibility,
    /// What it may destroy.
    pub data_loss: DataLoss,
    /// The full text a person reads before saying yes, where the kind has one: the
    /// SQL a migration runs, the keys a restore touches, a template or config diff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

impl Change {
    /// A reversible change with no data loss, no payload and schema version 1.
    pub fn new(target: impl Into<TargetId>, kind: impl Into<String>, from: Option<Version>, to: Version) -> Self {
        let target = target.into();
        let kind = kind.into();
        let description = match &from {
            Some(from) => format!("{target}: {kind} {from} -> {to}"),
            None => format!("{target}: {kind} -> {to}"),
        };
        Change {
            target,
            kind,
            schema_version: 1,
            from,
            to,
            payload: serde_json::Value::Null,
            description,
            reversibility: Reversibility::Inverse,
            data_loss: DataLoss::none(),
            preview: None,
        }
    }

    /// Sets the description.
    pub fn describe(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the payload.
    pub fn with_payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = payload;
        self
    }

    /// Sets the preview a dry-run shows in full (SQL, key diff, config diff).
    pub fn with_preview(mut self, preview: impl Into<String>) -> Self {
        self.preview = Some(preview.into());
        self
    }

    /// Sets the reversibility.
    pub fn with_reversibility(mut self, reversibility: Reversibility) -> Self {
        self.reversibility = reversibility;
        self
    }

    /// Sets the data-loss estimate.
    pub fn with_data_loss(mut self, data_loss: DataLoss) -> Self {
        self.data_loss = data_loss;
        self
    }

    /// The plain inverse: `to` becomes `from` and back, same kind and payload.
    /// `None` when there is no `from` to return to. Targets whose payload is
    /// direction-specific override [`crate::Target::inverse`] instead.
    pub fn swapped(&self) -> Option<Change> {
        let from = self.from.clone()?;
        let mut inverse = Change::new(self.target.clone(), self.kind.clone(), Some(self.to.clone()), from);
        inverse.payload = self.payload.clone();
        inverse.schema_version = self.schema_version;
        inverse.description = format!("undo: {}", inverse.description);
        Some(inverse)
    }
}
