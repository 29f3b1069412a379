use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use crate::{Error, ErrorKind, Result};

/// A writer's fencing token and the resources its lease covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    resources: Vec<String>,
    token: u64,
    /// A digest of the resources, so a journal can recognise a fence it already
    /// admitted without walking every resource again.
    digest: u64,
}

impl Fence {
    /// A fence over `resources` with `token`.
    pub fn new(resources: Vec<String>, token: u64) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        resources.hash(&mut hasher);
        Fence { resources, token, digest: hasher.finish() }
    }

    /// The locked resources.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// The lease's token.
    pub fn token(&self) -> u64 {
        self.token
    }
}

/// The newest token seen per resource. Shared by every journal implementation, so
/// "stale" means the same thing in memory and on disk.
///
/// ```
/// use rollback_core::journal::{Fence, FenceTable};
/// let mut table = FenceTable::default();
/// table.admit(&Fence::new(vec!["web".into()], 2)).unwrap();
/// let stale = table.admit(&Fence::new(vec!["web".into()], 1)).unwrap_err();
/// assert!(stale.to_string().contains("stale fencing token 1"));
/// // Other resources are unaffected.
/// table.admit(&Fence::new(vec!["db".into()], 1)).unwrap();
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceTable {
    newest: BTreeMap<String, u64>,
    /// Bumped by every unfenced append (approvals), so a writer that finds the table
    /// unchanged knows nobody else appended to its run since its own last append.
    #[serde(default)]
    generation: u64,
    /// The last fence admitted (digest, token) since this table was loaded: admitting it
    /// again cannot fail and changes nothing, so it is answered without a walk.
    #[serde(skip)]
    admitted: Option<(u64, u64)>,
}

impl FenceTable {
    /// Records that an unfenced writer appended.
    pub fn bump(&mut self) {
        self.generation += 1;
    }

    /// Checks `fence` against the newest tokens and raises them. Returns whether the
    /// table changed (so persistent journals write it only then).
    pub fn admit(&mut self, fence: &Fence) -> Result<bool> {
        if self.admitted == Some((fence.digest, fence.token)) {
            return Ok(false);
        }
        for resource in &fence.resources {
            if let Some(&newest) = self.newest.get(resource)
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
            let slot = self.newest.entry(resource.clone()).or_insert(0);
            if *slot < fence.token {
                *slot = fence.token;
                changed = true;
            }
        }
        self.admitted = Some((fence.digest, fence.token));
        Ok(changed)
    }
}
