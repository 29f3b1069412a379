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

/// One plot of a scaling series: how a cost grows with the size of the work.
/// `benches/all.sh --plots DIR` collects the points every bench prints and draws one
/// PNG per plot (`rollback-bench-plot`).
#[derive(Debug, Clone, Copy)]
pub struct Plot {
    /// File name (without `.png`) and the key the points are grouped by.
    pub id: &'static str,
    /// The plot's title.
    pub title: &'static str,
    /// What the x axis counts (steps, keys, services, Deployments).
    pub x: &'static str,
    /// What the y axis measures, with its unit.
    pub y: &'static str,
    /// Whether y is already per unit of x (µs per step): linear growth is then a
    /// flat line. Otherwise y is a total and linear growth is y ∝ x.
    pub per_unit: bool,
}

impl Plot {
    /// Prints one point of one curve as a machine-readable line.
    ///
    /// ```
    /// const STEPS: rollback_benches::Plot = rollback_benches::Plot {
    ///     id: "engine-steps", title: "engine", x: "steps", y: "µs per step", per_unit: true,
    /// };
    /// STEPS.point("file journal", 1000.0, 187.5);
    /// ```
    pub fn point(&self, curve: &str, x: f64, y: f64) {
        let kind = if self.per_unit { "per-unit" } else { "total" };
        println!("SERIES\t{}\t{}\t{}\t{}\t{kind}\t{curve}\t{x}\t{y}", self.id, self.title, self.x, self.y);
    }
}
