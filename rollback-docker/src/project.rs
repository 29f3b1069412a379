//! Several services of one project rolled back together: dependencies first, each
//! stage in parallel under a limit.

use rollback_core::{Result, Selector, Stage, Step, StepId, StepOp, TargetId};

/// One service to roll back, and the services (targets) it depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRollback {
    /// The service's `docker-container` target.
    pub target: TargetId,
    /// Which image.
    pub to: Selector,
    /// Targets that must be rolled back before this one (compose's `depends_on`).
    pub depends_on: Vec<TargetId>,
}

/// Stages rolling back `services` in dependency order, at most `parallelism` at once
/// within a stage; step ids are `rollback-<target>`.
///
/// ```
/// use rollback_core::Selector;
/// use rollback_docker::{ServiceRollback, project_stages};
/// let service = |t: &str, deps: &[&str]| ServiceRollback {
///     target: t.into(), to: Selector::Previous, depends_on: deps.iter().map(|d| (*d).into()).collect(),
/// };
/// let stages = project_stages(&[service("api", &["db"]), service("web", &["api"]), service("db", &[])], 2).unwrap();
/// assert_eq!(stages.len(), 3);
/// assert_eq!(stages[0].steps[0].id.as_str(), "rollback-db");
/// ```
pub fn project_stages(services: &[ServiceRollback], parallelism: usize) -> Result<Vec<Stage>> {
    let step_id = |t: &TargetId| StepId::new(format!("rollback-{t}"));
    let steps = services
        .iter()
        .map(|s| {
            let step = Step::new(step_id(&s.target), StepOp::Rollback { target: s.target.clone(), to: s.to.clone() });
            (step, s.depends_on.iter().map(step_id).collect())
        })
        .collect();
    Stage::in_dependency_order("services", parallelism, steps)
}
