use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{Error, Result};

/// An opaque, content-identified version: an image ID, a pod-template hash, an
/// Alembic revision, a file digest. `id` is what compare-and-swap compares;
/// `label` is for people (a tag, which may move).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Version {
    /// The content identity.
    pub id: String,
    /// A human label (tag, release name), not used for comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Version {
    /// A version with only an id.
    pub fn new(id: impl Into<String>) -> Self {
        Version { id: id.into(), label: None }
    }

    /// A version with an id and a label.
    pub fn labeled(id: impl Into<String>, label: impl Into<String>) -> Self {
        Version { id: id.into(), label: Some(label.into()) }
    }

    /// Whether `reference` names this version, by id or by label.
    pub fn matches(&self, reference: &str) -> bool {
        self.id == reference || self.label.as_deref() == Some(reference)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.label {
            Some(label) if label != &self.id => write!(f, "{label} ({})", self.id),
            _ => f.write_str(&self.id),
        }
    }
}

/// One entry of a target's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// The version.
    pub version: Version,
    /// When it was created or deployed, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// What it is (change-cause, commit message, migration name).
    #[serde(default)]
    pub description: String,
    /// Whether it can still be rolled back to (image not pruned, backup present).
    pub available: bool,
}

impl Revision {
    /// An available revision with no timestamp.
    pub fn new(version: Version, description: impl Into<String>) -> Self {
        Revision { version, created: None, description: description.into(), available: true }
    }

    /// Sets the creation time.
    pub fn created_at(mut self, created: DateTime<Utc>) -> Self {
        self.created = Some(created);
        self
    }
}

/// Which version to roll back to — relative selectors are resolved **once**, by
/// `prepare`, into an absolute [`Version`] that is journaled and never re-resolved.
///
/// In plan files: `"previous"`, `{ exact = "v1.4.2" }`, `{ back = 2 }`,
/// `{ before = "2025-10-16T18:00:00Z" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    /// The newest available revision older than the current one.
    Previous,
    /// A version named by id or label.
    Exact(String),
    /// `n` available revisions back from the current one (`Back(1)` = `Previous`).
    Back(u32),
    /// The newest revision created strictly before this time (what was live then);
    /// an error if that one is no longer available, rather than a silent older pick.
    Before(DateTime<Utc>),
}

impl Selector {
    /// Whether the selector counts from the current version (`previous`, `back = N`):
    /// running it again goes one release further, where an absolute one (`exact`,
    /// `before`) finds the target already there.
    ///
    /// ```
    /// use rollback_core::Selector;
    /// assert!(Selector::Previous.is_relative() && Selector::Back(2).is_relative());
    /// assert!(!Selector::Exact("v1".into()).is_relative());
    /// ```
    pub fn is_relative(&self) -> bool {
        matches!(self, Selector::Previous | Selector::Back(_))
    }

    /// Resolves the selector against a newest-first `history` and the `current`
    /// version. Shared by every backend, so "previous" means the same thing everywhere.
    ///
    /// ```
    /// use rollback_core::{Revision, Selector, Version};
    /// let history = vec![
    ///     Revision::new(Version::labeled("sha3", "v3"), "broken"),
    ///     Revision::new(Version::labeled("sha2", "v2"), "good"),
    ///     Revision::new(Version::labeled("sha1", "v1"), "old"),
    /// ];
    /// let current = Version::new("sha3");
    /// let to = Selector::Previous.resolve(&history, &current).unwrap();
    /// assert_eq!(to.version.id, "sha2");
    /// assert_eq!(Selector::Back(2).resolve(&history, &current).unwrap().version.id, "sha1");
    /// assert!(Selector::Exact("v9".into()).resolve(&history, &current).is_err());
    /// ```
    pub fn resolve<'h>(&self, history: &'h [Revision], current: &Version) -> Result<&'h Revision> {
        let ensure_available = |rev: &'h Revision| -> Result<&'h Revision> {
            if rev.available {
                Ok(rev)
            } else {
                Err(Error::not_found(format!("version {} is in the history but no longer available", rev.version))
                    .with_context("selector", self))
            }
        };
        match self {
            Selector::Exact(reference) => history
                .iter()
                .find(|r| r.version.matches(reference))
                .ok_or_else(|| {
                    Error::not_found(format!("version {reference:?} is not in the history"))
                        .with_context("selector", self)
                })
                .and_then(ensure_available),
            Selector::Previous | Selector::Back(_) => {
                let n = match self {
                    Selector::Back(0) => {
                        return Err(Error::invalid_input("back(0) is the current version, not a rollback"));
                    }
                    Selector::Back(n) => *n as usize,
                    _ => 1,
                };
                let start = history.iter().position(|r| r.version.id == current.id).ok_or_else(|| {
                    Error::new(
                        crate::ErrorKind::Conflict,
                        format!("the current version {current} is not in the history"),
                    )
                    .with_context("selector", self)
                })?;
                history[start + 1..].iter().filter(|r| r.available && r.version.id != current.id).nth(n - 1).ok_or_else(
                    || {
                        Error::not_found(format!("no available revision {n} back from {current}"))
                            .with_context("selector", self)
                    },
                )
            }
            // The version that was live at `time`: when that is the current one, the
            // target is already there (it is not skipped to reach an older one).
            Selector::Before(time) => history
                .iter()
                .find(|r| r.created.is_some_and(|c| c < *time))
                .ok_or_else(|| {
                    Error::not_found(format!("no revision created before {time}")).with_context("selector", self)
                })
                .and_then(ensure_available),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Previous => f.write_str("previous"),
            Selector::Exact(v) => write!(f, "exact:{v}"),
            Selector::Back(n) => write!(f, "back:{n}"),
            Selector::Before(t) => write!(f, "before:{}", t.to_rfc3339()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn history() -> Vec<Revision> {
        let t = |h| Utc.with_ymd_and_hms(2025, 10, 16, h, 0, 0).unwrap();
        let mut pruned = Revision::new(Version::new("c"), "pruned").created_at(t(12));
        pruned.available = false;
        vec![
            Revision::new(Version::new("d"), "current").created_at(t(18)),
            pruned,
            Revision::new(Version::new("b"), "good").created_at(t(10)),
            Revision::new(Version::new("a"), "older").created_at(t(8)),
        ]
    }

    #[test]
    fn previous_skips_unavailable() {
        let h = history();
        assert_eq!(Selector::Previous.resolve(&h, &Version::new("d")).unwrap().version.id, "b");
        assert_eq!(Selector::Back(2).resolve(&h, &Version::new("d")).unwrap().version.id, "a");
        assert_eq!(Selector::Back(3).resolve(&h, &Version::new("d")).unwrap_err().kind(), crate::ErrorKind::NotFound);
    }

    #[test]
    fn previous_is_relative_to_current() {
        let h = history();
        assert_eq!(Selector::Previous.resolve(&h, &Version::new("b")).unwrap().version.id, "a");
        let err = Selector::Previous.resolve(&h, &Version::new("zzz")).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Conflict);
    }

    #[test]
    fn before_and_exact() {
        let h = history();
        let at = Utc.with_ymd_and_hms(2025, 10, 16, 11, 0, 0).unwrap();
        assert_eq!(Selector::Before(at).resolve(&h, &Version::new("d")).unwrap().version.id, "b");
        assert_eq!(Selector::Before(at).resolve(&h, &Version::new("b")).unwrap().version.id, "b", "already there");
        let err = Selector::Exact("c".into()).resolve(&h, &Version::new("d")).unwrap_err();
        assert!(err.to_string().contains("no longer available"));
        assert_eq!(
            Selector::Back(0).resolve(&h, &Version::new("d")).unwrap_err().kind(),
            crate::ErrorKind::InvalidInput
        );
    }
}
