//! Benchmarks: `engine.rs`, `verify.rs`, `docker.rs`, `db.rs`, `storage.rs`, `k8s.rs`; run
//! them all with `benches/all.sh`, which gathers every comparison's summary line
//! into one table.

/// Prints one machine-readable summary line for `benches/all.sh`: the area, what is
/// compared, our number, the reference's, the ratio (as the comparison reads best,
/// e.g. "3.4× faster") and the target with whether it was met.
///
/// ```
/// rollback_benches::summary("docker", "rollback 5 services vs docker-compose up -d", "945 ms", "3187 ms", "3.37× faster", "≥ 2×: met");
/// ```
pub fn summary(area: &str, comparison: &str, ours: &str, reference: &str, ratio: &str, target: &str) {
    println!("SUMMARY\t{area}\t{comparison}\t{ours}\t{reference}\t{ratio}\t{target}");
}

/// `met` or `NOT met`.
pub fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}
