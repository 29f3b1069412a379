//! Test kit (feature `testkit`): in-memory fakes of each trait with fault injection,
//! file-backed targets for kill-and-resume tests across processes, and the
//! [`conformance`] suites every backend runs.

pub mod conformance;
mod fakes;
mod file_target;
pub mod fuzz;
mod http;
mod memory_target;
pub mod outage;
mod proxy;
mod server_env;

pub use fakes::{MemorySnapshot, RecordingNotifier, ScriptedVerifier};
pub use file_target::{FileSnapshot, FileSnapshotConfig, FileTarget, FileTargetConfig, register_file_kinds};
pub use http::{CapturedRequest, TestHttpServer};
pub use memory_target::{Fault, MemoryTarget};
pub use proxy::RecordingProxy;
pub use server_env::{files_under, server_env, text_under};
