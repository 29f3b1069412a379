//! Replays the fuzz corpus (`fuzz/corpus/`, including every crash found, kept as a
//! regression) through the same checks the fuzz targets run.

use rollback_core::testkit::fuzz::{check_journal_bytes, check_plan_bytes};

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&bytes));
        assert!(outcome.is_ok(), "{} panics", path.display());
        n += 1;
    }
    n
}

#[test]
fn plan_parser_corpus() {
    assert!(replay("plan_parser", check_plan_bytes) >= 3);
}

#[test]
fn journal_reader_corpus() {
    assert!(replay("journal_reader", check_journal_bytes) >= 1);
}
