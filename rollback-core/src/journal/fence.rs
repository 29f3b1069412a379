use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{Error, ErrorKind, Result};

/// A writer's fencing token and the resources its lease covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    /// Locked resources.
    pub resources: Vec<String>,
    /// The lease's token.
    pub token: u64,
}

/// The newest token seen per resource. Shared by every journal implementation, so
/// "stale" means the same thing in memory and on disk.
///
/// ```
/// use rollback_core::journal::{Fence, FenceTable};
/// let mut table = FenceTable::default();
/// table.admit(&Fence { resources: vec!["web".into()], token: 2 }).unwrap();
/// let stale = table.admit(&Fence { resources: vec!["web".into()], token: 1 }).unwrap_err();
/// assert!(stale.to_string().contains("stale fencing token 1"));
/// // Other resources are unaffected.
/// table.admit(&Fence { resources: vec!["db".into()], token: 1 }).unwrap();
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FenceTable(BTreeMap<String, u64>);

impl FenceTable {
    /// Checks `fence` against the newest tokens and raises them. Returns whether the
    /// table changed (so persistent journals write it only then).
    pub fn admit(&mut self, fence: &Fence) -> Result<bool> {
        for resource in &fence.resources {
            if let Some(&newest) = self.0.get(resource)
                && newest > fence.token
            {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "stale fencing token {} for {resource:?}: a newer holder has token {newest}; \
                         this process lost its lease and must stop",
                        fence.token
                    ),
                )
                .with_operation("journal append")
                .set_retryable(false));
            }
        }
        let mut changed = false;
        for resource in &fence.resources {
            let slot = self.0.entry(resource.clone()).or_insert(0);
            if *slot < fence.token {
                *slot = fence.token;
                changed = true;
            }
        }
        Ok(changed)
    }
}
