use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The string form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}

string_id!(
    /// The name a plan gives a target (`"web"`, `"orders-db"`), unique in a plan.
    TargetId
);
string_id!(
    /// A step's id, unique in a plan.
    StepId
);
string_id!(
    /// What a target *is*, beyond its name (docker daemon id + service, cluster +
    /// namespace + name, host + database OID). Journaled at preflight and checked on
    /// resume, so a resume never acts on a different thing with the same name.
    Identity
);

/// A run's id: a UUIDv7, so ids sort by start time.
///
/// ```
/// use rollback_core::RunId;
/// let a = RunId::generate();
/// let b = RunId::generate();
/// assert_ne!(a, b);
/// assert_eq!(a.as_str().parse::<RunId>().unwrap(), a);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        RunId(uuid::Uuid::now_v7().to_string())
    }

    /// The string form (also the journal's file stem).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for RunId {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        let valid =
            !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if valid {
            Ok(RunId(s.to_owned()))
        } else {
            Err(crate::Error::invalid_input(format!("run id {s:?} must be 1-64 characters of [A-Za-z0-9_-]")))
        }
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The idempotency key of one effect: run id and step id. Stamped into the backend
/// by `apply` (a label, an annotation, object metadata, a marker row) so `observe`
/// can tell this run's effect from anyone else's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key of `step` in `run`; `attempt` distinguishes a compensation from the
    /// forward effect of the same step.
    ///
    /// ```
    /// use rollback_core::{IdempotencyKey, RunId, StepId};
    /// let run: RunId = "r1".parse().unwrap();
    /// let key = IdempotencyKey::for_step(&run, &StepId::new("app"), "fwd");
    /// assert_eq!(key.as_str(), "r1/app/fwd");
    /// ```
    pub fn for_step(run: &RunId, step: &StepId, phase: &str) -> Self {
        IdempotencyKey(format!("{run}/{step}/{phase}"))
    }

    /// Wraps an existing key (as read back from a backend).
    pub fn new(value: impl Into<String>) -> Self {
        IdempotencyKey(value.into())
    }

    /// The string form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
