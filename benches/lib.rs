//! Benchmarks live in `engine.rs`; run `cargo bench -p rollback-benches`.
