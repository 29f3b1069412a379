//! # rollback-core
//!
//! The heart of `rollback`: a library that turns production rollback runbooks into
//! journaled, verified, resumable code.
//!
//! - **Model** ([`model`]): versions and [`Selector`]s, absolute [`Change`]s, [`Plan`]s
//!   of stages of steps — serde, round-tripping JSON and TOML.
//! - **Traits**: [`Target`] (prepare → apply as compare-and-swap → observe),
//!   [`Snapshot`], [`Verifier`], [`Strategy`], [`Journal`], [`Lock`], [`Notifier`],
//!   [`ArtifactStore`]; all usable as `Arc<dyn …>`.
//! - **Engine** ([`Engine`]): lock → preflight (every step prepared, nothing changed)
//!   → stages → compensation or escalation, with a write-ahead [`journal`], fencing,
//!   time budget, dry-run, events and [`Report`]s; [`Engine::resume`] finishes a run
//!   after a crash by observing the in-flight step.
//! - **Embedded defaults**: [`FileJournal`], [`FileLock`], [`LocalDirStore`].
//! - **`testkit`** (feature): fakes with fault injection and the conformance suites
//!   every backend runs.
//!
//! The two state machines are in [`state`], as tables.

pub mod artifact;
pub mod crash;
pub mod decision;
mod engine;
mod error;
pub mod event;
mod fsutil;
pub mod history;
mod http1;
pub mod journal;
pub mod kind;
pub mod load;
pub mod local;
pub mod lock;
pub mod model;
pub mod notify;
pub mod preview;
pub mod process;
pub mod progress;
pub mod registry;
pub mod report;
pub mod snapshot;
pub mod spec;
pub mod state;
pub mod strategy;
pub mod target;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod verify;

pub use artifact::{ArtifactStore, LocalDirStore};
pub use engine::{CancelHandle, DryRun, DryRunStep, Engine, EngineBuilder, RunOptions, Settings};
pub use error::{Error, ErrorKind, ErrorRecord, Result};
pub use event::{Event, EventKind, Severity};
pub use history::{HistoryQuery, HistoryRecord};
pub use journal::{Fence, FileJournal, Journal, MemoryJournal};
pub use lock::{FileLock, Holder, Lease, Lock, MemoryLock};
pub use model::{
    Category, Change, DataLoss, FailurePolicy, IdempotencyKey, Identity, Plan, Reversibility, Revision, RunId,
    Selector, Stage, Step, StepId, StepOp, TargetId, Undo, Version,
};
pub use notify::Notifier;
pub use registry::{JournalAccess, OpenedJournal, Registry};
pub use report::{Report, StepReport};
pub use snapshot::{Snapshot, SnapshotRef};
pub use spec::{Secret, SecretRef, Spec, TargetSpec};
pub use state::{RunEvent, RunState, StepEvent, StepState};
pub use strategy::{RollbackRequest, Strategy};
pub use target::{Capabilities, Observed, Request, Target, prepare_versioned};
pub use verify::{Check, Outcome, ProbePolicy, Verdict, Verifier, probe};

/// Every trait is object safe: this fails to compile otherwise.
#[allow(dead_code)]
type ObjectSafety = (
    std::sync::Arc<dyn Target>,
    std::sync::Arc<dyn Snapshot>,
    std::sync::Arc<dyn Verifier>,
    std::sync::Arc<dyn Strategy>,
    std::sync::Arc<dyn Journal>,
    std::sync::Arc<dyn Lock>,
    std::sync::Arc<dyn Notifier>,
    std::sync::Arc<dyn ArtifactStore>,
);
