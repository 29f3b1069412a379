//! A custom strategy in under a page: "config first, then the app, one target at a
//! time, verifying after each". Run: `cargo run -p rollback-examples --bin custom-strategy`.

use std::sync::Arc;

use rollback_core::strategy::RollbackRequest;
use rollback_core::testkit::{MemoryTarget, ScriptedVerifier};
use rollback_core::{
    Engine, MemoryJournal, MemoryLock, Plan, ProbePolicy, Registry, Result, Spec, Stage, Step, StepOp, Strategy,
};

/// Rolls targets back one by one in the order given, verifying after each.
struct OneByOne {
    verifier: String,
}

impl Strategy for OneByOne {
    fn name(&self) -> &str {
        "one-by-one"
    }

    fn plan(&self, targets: &[Spec], request: &RollbackRequest) -> Result<Plan> {
        let names: Vec<String> = serde_json::from_value(request.options["order"].clone())
            .map_err(|e| rollback_core::Error::invalid_input(format!("options.order: {e}")))?;
        let mut plan = Plan::new(format!("one by one: {}", request.reason));
        plan.targets = targets.to_vec();
        for name in names {
            let back = Step::new(
                format!("{name}-back"),
                StepOp::Rollback { target: name.as_str().into(), to: request.to.clone() },
            );
            let check = Step::new(
                format!("{name}-verify"),
                StepOp::Verify { verifier: self.verifier.clone(), policy: ProbePolicy::default() },
            );
            plan.stages.push(Stage { name: name.clone(), parallelism: 1, steps: vec![back, check] });
        }
        plan.validate()?;
        Ok(plan)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut registry = Registry::new();
    registry.register_target(Arc::new(MemoryTarget::with_versions("config", &["c1", "c2"])));
    registry.register_target(Arc::new(MemoryTarget::with_versions("api", &["a1", "a2"])));
    registry.register_verifier(Arc::new(ScriptedVerifier::passing("health")));
    let engine = Engine::builder(registry)
        .journal(Arc::new(MemoryJournal::new()))
        .lock(Arc::new(MemoryLock::new()))
        .try_build()?;
    let request = RollbackRequest::new(
        "config drift",
        rollback_core::Selector::Previous,
        serde_json::json!({ "order": ["config", "api"] }),
    );
    let plan = OneByOne { verifier: "health".into() }.plan(&[], &request)?;
    println!("{}", engine.dry_run(&plan).await?);
    Ok(())
}
