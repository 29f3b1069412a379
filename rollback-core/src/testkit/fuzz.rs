//! The properties the fuzz targets check (`fuzz/`), shared with the test that replays
//! their corpus in CI, so both check the same thing.

use crate::journal::{RunLog, parse_records};
use crate::{Plan, RunId};

/// Plan files from untrusted bytes: parsing and validation never panic, and a plan
/// that parses renders and parses back to itself.
pub fn check_plan_bytes(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for plan in [Plan::from_toml_str(text), Plan::from_json_str(text)].into_iter().flatten() {
        let json = plan.to_json_string().expect("a parsed plan renders as JSON");
        assert_eq!(Plan::from_json_str(&json).expect("and parses back"), plan);
    }
}

/// Journal files from untrusted bytes: the reader recovers or errors, never panics,
/// and what it recovers replays (or errors) without panicking. The run id is taken
/// from the first `"run":"…"` in the bytes, so real journals are valid seeds.
pub fn check_journal_bytes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let run = text
        .split_once("\"run\":\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .and_then(|(id, _)| id.parse::<RunId>().ok())
        .unwrap_or_else(|| "fuzz".parse().expect("valid run id"));
    if let Ok(parsed) = parse_records(data, &run) {
        assert!(parsed.valid_len <= data.len());
        let _ = RunLog::from_records(&parsed.records);
    }
}
