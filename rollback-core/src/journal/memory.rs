use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

use super::{Durability, Entry, Fence, FenceTable, Journal, Record, RunIndexEntry};
use crate::{Error, Result, RunId};

/// A journal in memory: for tests, benchmarks and dry runs. Same fencing rules as
/// [`super::FileJournal`]; nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    runs: HashMap<RunId, Vec<Record>>,
    index: Vec<RunIndexEntry>,
    fences: FenceTable,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn append(&self, run: &RunId, fence: Option<&Fence>, entry: Entry, durability: Durability) -> Result<u64> {
        self.append_batch(run, fence, vec![entry], durability).await
    }

    async fn append_batch(
        &self,
        run: &RunId,
        fence: Option<&Fence>,
        entries: Vec<Entry>,
        _durability: Durability,
    ) -> Result<u64> {
        let mut inner = self.inner.lock().map_err(|_| Error::internal("journal mutex poisoned"))?;
        if let Some(fence) = fence {
            inner.fences.admit(fence)?;
        }
        let at = chrono::Utc::now();
        for entry in &entries {
            if let Entry::RunStarted { plan, .. } = entry {
                inner.index.push(RunIndexEntry { run: run.clone(), plan: plan.name.clone(), started_at: at });
            }
        }
        let records = inner.runs.entry(run.clone()).or_default();
        for entry in entries {
            let seq = records.len() as u64 + 1;
            records.push(Record { seq, run: run.clone(), token: fence.map_or(0, Fence::token), at, entry });
        }
        Ok(records.len() as u64)
    }

    async fn read(&self, run: &RunId) -> Result<Vec<Record>> {
        let inner = self.inner.lock().map_err(|_| Error::internal("journal mutex poisoned"))?;
        inner.runs.get(run).cloned().ok_or_else(|| Error::not_found(format!("no journal for run {run}")))
    }

    async fn runs(&self) -> Result<Vec<RunIndexEntry>> {
        let inner = self.inner.lock().map_err(|_| Error::internal("journal mutex poisoned"))?;
        Ok(inner.index.clone())
    }
}
