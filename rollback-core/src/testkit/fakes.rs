use async_trait::async_trait;
use std::sync::Mutex;
use std::time::Duration;

use crate::{
    ArtifactStore, Check, Error, ErrorKind, Event, IdempotencyKey, Notifier, Outcome, Result, Snapshot, SnapshotRef,
    Verifier,
};

/// A verifier that returns scripted outcomes in order (inconclusive once exhausted),
/// optionally hanging from some call on.
#[derive(Debug)]
pub struct ScriptedVerifier {
    name: String,
    script: Mutex<std::collections::VecDeque<Outcome>>,
    hang_after: Option<usize>,
    calls: Mutex<usize>,
}

impl ScriptedVerifier {
    /// A verifier returning `outcomes` in order.
    pub fn new(name: &str, outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        ScriptedVerifier {
            name: name.to_owned(),
            script: Mutex::new(outcomes.into_iter().collect()),
            hang_after: None,
            calls: Mutex::new(0),
        }
    }

    /// Always passes.
    pub fn passing(name: &str) -> Self {
        Self::new(name, std::iter::repeat_n(Outcome::Pass, 10_000))
    }

    /// Hangs on every call after the first `n`.
    pub fn hang_after(mut self, n: usize) -> Self {
        self.hang_after = Some(n);
        self
    }

    /// How many checks were taken.
    pub fn calls(&self) -> usize {
        self.calls.lock().map(|c| *c).unwrap_or(0)
    }
}

#[async_trait]
impl Verifier for ScriptedVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        let n = {
            let mut calls = self.calls.lock().map_err(|_| Error::internal("poisoned"))?;
            *calls += 1;
            *calls
        };
        if self.hang_after.is_some_and(|h| n > h) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let outcome = self.script.lock().map_err(|_| Error::internal("poisoned"))?.pop_front();
        Ok(match outcome {
            Some(outcome) => Check::new(outcome, format!("scripted check {n}")),
            None => Check::new(Outcome::Inconclusive, "script exhausted"),
        })
    }
}

/// A notifier that records every event it is sent (and can be told to fail).
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    events: Mutex<Vec<Event>>,
    fail: bool,
}

impl RecordingNotifier {
    /// A recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A recorder whose `notify` fails after recording (the run must not care).
    pub fn failing() -> Self {
        RecordingNotifier { events: Mutex::new(Vec::new()), fail: true }
    }

    /// Events received so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    fn name(&self) -> &str {
        "recording"
    }

    async fn notify(&self, event: &Event) -> Result<()> {
        self.events.lock().map_err(|_| Error::internal("poisoned"))?.push(event.clone());
        if self.fail {
            return Err(Error::new(ErrorKind::Backend, "notifier down"));
        }
        Ok(())
    }
}

/// A snapshotter that writes a small artifact and records restores; `capture` or
/// `restore` can be told to fail.
#[derive(Debug, Default)]
pub struct MemorySnapshot {
    name: String,
    fail_capture: bool,
    fail_restore: bool,
    restores: Mutex<Vec<SnapshotRef>>,
}

impl MemorySnapshot {
    /// A snapshotter called `name`.
    pub fn new(name: &str) -> Self {
        MemorySnapshot { name: name.to_owned(), ..Default::default() }
    }

    /// Makes `capture` fail.
    pub fn failing_capture(mut self) -> Self {
        self.fail_capture = true;
        self
    }

    /// Makes `restore` fail.
    pub fn failing_restore(mut self) -> Self {
        self.fail_restore = true;
        self
    }

    /// Snapshots restored so far.
    pub fn restores(&self) -> Vec<SnapshotRef> {
        self.restores.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Snapshot for MemorySnapshot {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capture(&self, store: &dyn ArtifactStore, key: &IdempotencyKey) -> Result<SnapshotRef> {
        if self.fail_capture {
            return Err(Error::new(ErrorKind::Backend, "injected capture failure"));
        }
        let artifact = format!("{}/{}.txt", key.as_str().replace('/', "_"), self.name);
        store.put(&artifact, format!("snapshot {} for {key}", self.name).into_bytes()).await?;
        Ok(SnapshotRef {
            snapshot: self.name.clone(),
            artifacts: vec![artifact],
            taken_at: chrono::Utc::now(),
            description: "memory snapshot".into(),
            metadata: serde_json::Value::Null,
        })
    }

    async fn restore(&self, snapshot: &SnapshotRef, store: &dyn ArtifactStore) -> Result<()> {
        if self.fail_restore {
            return Err(Error::new(ErrorKind::Backend, "injected restore failure"));
        }
        for artifact in &snapshot.artifacts {
            store.get(artifact).await?;
        }
        self.restores.lock().map_err(|_| Error::internal("poisoned"))?.push(snapshot.clone());
        Ok(())
    }
}
