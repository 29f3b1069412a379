//! Journal files from untrusted bytes (see `rollback_core::testkit::fuzz::check_journal_bytes`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rollback_core::testkit::fuzz::check_journal_bytes(data));
