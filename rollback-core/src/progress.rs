//! Progress of long steps: a backend calls [`report`] from inside `apply` (or a
//! snapshot's capture and restore) with how much of its work is done, and the engine
//! turns it into [`crate::EventKind::Progress`] events for subscribers and notifiers
//! (a terminal's progress bar, Python's `on_event`). Outside a run it does nothing, so
//! a backend can call it unconditionally, and reports are throttled to one every
//! [`INTERVAL`] (the last one, `done == total`, always goes out). Work that leaves the
//! step's task (a blocking thread, a Python callback) takes a [`Reporter`] along.
//!
//! ```
//! // S3 restores report keys copied, Redis keys unlinked, Kubernetes replicas updated:
//! rollback_core::progress::report(250, Some(1_000), "keys");
//! ```

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The shortest time between two reports of one step.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// How far a step's work has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Units done so far.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// What is counted ("keys", "replicas").
    pub unit: String,
}

struct Sink {
    tx: mpsc::UnboundedSender<Progress>,
    last: Mutex<Option<Instant>>,
    notes: Mutex<Notes>,
}

/// What a step's work noted about how it went ([`note`]), journaled with its outcome.
pub type Notes = serde_json::Map<String, serde_json::Value>;

impl Sink {
    fn report(&self, done: u64, total: Option<u64>, unit: &str) {
        let finished = total == Some(done);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if !finished && last.is_some_and(|at| at.elapsed() < INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        let _ = self.tx.send(Progress { done, total, unit: unit.to_owned() });
    }
}

tokio::task_local! {
    static SINK: Arc<Sink>;
}

/// Reports progress of the step running in this task; a no-op outside a run.
pub fn report(done: u64, total: Option<u64>, unit: &str) {
    let _ = SINK.try_with(|sink| sink.report(done, total, unit));
}

/// Notes how the running step's work went, for its report (journaled with the step's
/// outcome, under `detail`): which path a backend took, what it cost. A no-op outside
/// a run; a second note of the same name replaces the first.
///
/// ```
/// // An S3 restore notes whether its writes were conditional or re-listed:
/// rollback_core::progress::note("write_guard", "conditional");
/// ```
pub fn note(name: &str, value: impl Into<serde_json::Value>) {
    let value = value.into();
    let _ = SINK.try_with(|sink| sink.notes.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), value));
}

/// The running step's progress sink, to carry into work outside its task.
///
/// ```
/// // Outside a run there is none; inside, `reporter().unwrap().report(…)` from any thread.
/// assert!(rollback_core::progress::reporter().is_none());
/// ```
#[derive(Clone)]
pub struct Reporter(Arc<Sink>);

impl Reporter {
    /// Reports progress of the step this reporter was taken in (throttled like [`report`]).
    pub fn report(&self, done: u64, total: Option<u64>, unit: &str) {
        self.0.report(done, total, unit);
    }
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reporter")
    }
}

/// The reporter of the step running in this task, if any.
pub fn reporter() -> Option<Reporter> {
    SINK.try_with(|sink| Reporter(sink.clone())).ok()
}

/// Runs `work` with a progress sink, handing each report to `on_progress` while it
/// runs (the work is not polled while `on_progress` runs; reports are rare). Returns
/// the work's output and what it noted.
pub(crate) async fn watch<T, F>(work: impl Future<Output = T>, mut on_progress: impl FnMut(Progress) -> F) -> (T, Notes)
where
    F: Future<Output = ()>,
{
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink = Arc::new(Sink { tx, last: Mutex::new(None), notes: Mutex::new(Notes::new()) });
    let work = SINK.scope(sink.clone(), work);
    tokio::pin!(work);
    let output = loop {
        tokio::select! {
            output = &mut work => break output,
            Some(progress) = rx.recv() => on_progress(progress).await,
        }
    };
    // The sink is dropped with the work: what it sent last is still queued.
    let mut last = None;
    while let Ok(progress) = rx.try_recv() {
        last = Some(progress);
    }
    if let Some(progress) = last {
        on_progress(progress).await;
    }
    let notes = std::mem::take(&mut *sink.notes.lock().unwrap_or_else(|e| e.into_inner()));
    (output, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_are_throttled_and_the_last_one_always_arrives() {
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (out, _) = watch(
            async {
                for done in 1..=1_000 {
                    report(done, Some(1_000), "keys");
                    tokio::task::yield_now().await;
                }
                7
            },
            |p| {
                let seen = seen.clone();
                async move { seen.lock().unwrap().push(p.done) }
            },
        )
        .await;
        assert_eq!(out, 7);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.first(), Some(&1), "the first report goes out");
        assert_eq!(seen.last(), Some(&1_000), "the finishing report goes out");
        assert!(seen.len() < 100, "a tight loop is throttled: {} reports", seen.len());
    }

    #[tokio::test]
    async fn notes_come_back_with_the_output_the_last_of_a_name_wins() {
        let (_, notes) = watch(
            async {
                note("path", "relist");
                note("path", "conditional");
                note("listings", 3);
            },
            |_| async {},
        )
        .await;
        assert_eq!(serde_json::Value::Object(notes), serde_json::json!({ "path": "conditional", "listings": 3 }));
        note("outside", 1); // no sink: dropped
    }

    #[test]
    fn outside_a_run_there_is_no_sink_and_reports_are_dropped() {
        assert!(reporter().is_none());
        report(1, None, "keys"); // no sink: returns without effect (and without panicking)
    }
}
