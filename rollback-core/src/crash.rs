//! The deterministic crash hook for kill-and-resume tests (feature `testkit`).
//!
//! `ROLLBACK_TEST_CRASH_AT=<seq>:<before|after>` makes the engine kill its own process
//! with SIGKILL when the intent record `<seq>` has been journaled, either before the
//! effect (`before`) or after the effect but before its outcome is journaled (`after`).
//! Snapshot, verify and restore-from-snapshot steps count too: their durable
//! `StepStarted` record is the point, and their work (capture, probe, restore) the effect.

use crate::{Error, Result};

/// Where to crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashPoint {
    /// The intent record's sequence number.
    pub seq: u64,
    /// Before or after the effect.
    pub when: CrashWhen,
}

/// Before or after the effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashWhen {
    /// The intent is durable, the effect has not happened.
    BeforeEffect,
    /// The effect happened, its outcome is not journaled.
    AfterEffect,
}

/// The environment variable read by [`CrashPoint::from_env`].
pub const CRASH_ENV: &str = "ROLLBACK_TEST_CRASH_AT";

impl CrashPoint {
    /// Parses `"7:before"` / `"7:after"`.
    pub fn parse(text: &str) -> Result<CrashPoint> {
        let bad = || Error::invalid_input(format!("{CRASH_ENV}={text:?}: expected <seq>:<before|after>"));
        let (seq, when) = text.split_once(':').ok_or_else(bad)?;
        let seq = seq.parse().map_err(|_| bad())?;
        let when = match when {
            "before" => CrashWhen::BeforeEffect,
            "after" => CrashWhen::AfterEffect,
            _ => return Err(bad()),
        };
        Ok(CrashPoint { seq, when })
    }

    /// Reads [`CRASH_ENV`]; `None` when unset.
    pub fn from_env() -> Result<Option<CrashPoint>> {
        std::env::var(CRASH_ENV).ok().map(|v| CrashPoint::parse(&v)).transpose()
    }

    /// Kills this process with SIGKILL if `(seq, when)` is this point.
    pub fn maybe_crash(point: Option<CrashPoint>, seq: u64, when: CrashWhen) {
        if point == Some(CrashPoint { seq, when }) {
            tracing::warn!(seq, ?when, "crash hook: SIGKILL");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            std::process::abort();
        }
    }
}
