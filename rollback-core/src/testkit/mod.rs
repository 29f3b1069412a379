//! Test kit (feature `testkit`): in-memory fakes of each trait with fault injection,
//! file-backed targets for kill-and-resume tests across processes, and the
//! [`conformance`] suites every backend runs; with feature `http`, a private real
//! Prometheus ([`TestPrometheus`]).

pub mod conformance;
mod fakes;
mod file_target;
pub mod fuzz;
mod http;
mod memory_target;
pub mod outage;
#[cfg(feature = "http")]
mod prometheus;
mod proxy;
mod server_env;

pub use fakes::{MemorySnapshot, RecordingNotifier, ScriptedVerifier};
pub use file_target::{FileSnapshot, FileSnapshotConfig, FileTarget, FileTargetConfig, register_file_kinds};
pub use http::{CapturedRequest, TestHttpServer};
pub use memory_target::{Fault, MemoryTarget};
#[cfg(feature = "http")]
pub use prometheus::TestPrometheus;
pub use proxy::RecordingProxy;
pub use server_env::{files_under, server_env, text_under};
