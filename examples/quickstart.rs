//! Quickstart on the embedded default: no server needed.
//!
//! A demo HTTP service gets a broken release (v2) and a broken config; the
//! quickstart reads the signals, lets the decision policy decide, plans the standard
//! strategy (evidence, release switch, config restore, verification), dry-runs and
//! runs it with the file journal, lock and artifact store, and prints the report.
//!
//! ```text
//! cargo run -p rollback-examples --bin quickstart
//! ```

use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("rollback-quickstart-").tempdir()?.keep();
    println!("deployment in {}; deploying v2 (broken) ...", dir.display());
    let outcome = rollback_examples::quickstart::run(&dir).await?;
    println!("signals → decision: {}\n", outcome.decision);
    println!("{}", outcome.dry_run);
    println!("{}", outcome.report);
    println!("/health: HTTP {} before, HTTP {} after", outcome.health.0, outcome.health.1);
    println!("journal:  {}", outcome.journal.display());
    for evidence in &outcome.evidence {
        println!("evidence: {}", evidence.display());
    }
    println!("finished in {:.0?}", started.elapsed());
    if outcome.report.state != rollback_core::RunState::Succeeded || outcome.health.1 != 200 {
        std::process::exit(1);
    }
    Ok(())
}
