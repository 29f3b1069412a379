//! Building a plan's components and preparing its steps: the part of a run that
//! changes nothing, shared by dry-run and the real run.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::journal::PreparedStep;
use crate::target::Request;
use crate::{
    Category, Change, DataLoss, Error, FailurePolicy, IdempotencyKey, Identity, Observed, Plan, Registry, Result,
    Reversibility, Snapshot, Step, StepId, StepOp, Target, TargetId, Undo, Verifier,
};

/// A plan's targets, verifiers and snapshotters, built once.
pub(crate) struct Components {
    pub(crate) targets: BTreeMap<TargetId, Arc<dyn Target>>,
    pub(crate) verifiers: BTreeMap<String, Arc<dyn Verifier>>,
    pub(crate) snapshots: BTreeMap<String, Arc<dyn Snapshot>>,
}

impl Components {
    /// Builds everything the plan names; the first missing or unbuildable one is an error.
    pub(crate) async fn build(registry: &Registry, plan: &Plan) -> Result<Components> {
        let mut components =
            Components { targets: BTreeMap::new(), verifiers: BTreeMap::new(), snapshots: BTreeMap::new() };
        for step in plan.steps() {
            let context = |e: Error| e.with_context("step", &step.id);
            match &step.op {
                StepOp::Rollback { target, .. } | StepOp::Action { target, .. } => {
                    components.add_target(registry, plan, target).await.map_err(context)?;
                }
                StepOp::Apply { change } => {
                    components.add_target(registry, plan, &change.target).await.map_err(context)?
                }
                StepOp::Verify { verifier, .. } if !components.verifiers.contains_key(verifier) => {
                    let built = registry.verifier(verifier, &plan.verifiers).await.map_err(context)?;
                    components.verifiers.insert(verifier.clone(), built);
                }
                StepOp::Snapshot { snapshot } if !components.snapshots.contains_key(snapshot) => {
                    let built = registry.snapshot(snapshot, &plan.snapshots).await.map_err(context)?;
                    components.snapshots.insert(snapshot.clone(), built);
                }
                _ => {}
            }
        }
        Ok(components)
    }

    async fn add_target(&mut self, registry: &Registry, plan: &Plan, name: &TargetId) -> Result<()> {
        if !self.targets.contains_key(name) {
            let target = registry.target(name.as_str(), &plan.targets).await?;
            if target.name() != name {
                return Err(Error::invalid_input(format!(
                    "target built for {name:?} calls itself {:?}",
                    target.name().as_str()
                )));
            }
            self.targets.insert(name.clone(), target);
        }
        Ok(())
    }

    pub(crate) fn target(&self, name: &TargetId) -> Result<&Arc<dyn Target>> {
        self.targets.get(name).ok_or_else(|| Error::internal(format!("target {name} was not built")))
    }

    /// Every target's identity (read-only), [`PREFLIGHT_CONCURRENCY`] at a time.
    pub(crate) async fn identities(&self) -> Result<BTreeMap<TargetId, Identity>> {
        use futures::{StreamExt, TryStreamExt};
        let reads: Vec<futures::future::BoxFuture<'_, Result<(TargetId, Identity)>>> = self
            .targets
            .iter()
            .map(|(name, target)| {
                Box::pin(async move {
                    let identity = target
                        .identity()
                        .await
                        .map_err(|e| e.with_operation("identity").with_context("target", name))?;
                    Ok((name.clone(), identity))
                }) as _
            })
            .collect();
        futures::stream::iter(reads).buffered(PREFLIGHT_CONCURRENCY).try_collect().await
    }
}

/// How many identities or prepares preflight runs at once: they only read, and a
/// plan over several services should wait for the slowest, not for their sum.
pub(crate) const PREFLIGHT_CONCURRENCY: usize = 16;

/// Prepares one step: resolves its change (if it changes a target) and its effective
/// failure policy and undo, refusing an `inverse` undo over a change that has none.
pub(crate) async fn prepare_step(step: &Step, components: &Components) -> Result<PreparedStep> {
    let context = |e: Error| e.with_operation("prepare").with_context("step", &step.id);
    let mut satisfied = None;
    let (change, category) = match &step.op {
        StepOp::Rollback { target, to } => {
            let t = components.target(target)?;
            let change = prepare_or_satisfied(t.as_ref(), &Request::To(to.clone()), &mut satisfied).await;
            (change.map_err(context)?, Some(t.category()))
        }
        StepOp::Action { target, action, params } => {
            let t = components.target(target)?;
            let request = Request::Action { action: action.clone(), params: params.clone() };
            (prepare_or_satisfied(t.as_ref(), &request, &mut satisfied).await.map_err(context)?, Some(t.category()))
        }
        StepOp::Apply { change } => {
            let t = components.target(&change.target)?;
            let probe_key = IdempotencyKey::new("preflight");
            if let Observed::Diverged(detail) = t.observe(change, &probe_key).await.map_err(context)? {
                return Err(context(Error::new(
                    crate::ErrorKind::Conflict,
                    format!("the change's pre-state no longer holds: {detail}"),
                )));
            }
            (Some((**change).clone()), Some(t.category()))
        }
        _ => (None, None),
    };
    let on_failure =
        step.on_failure.unwrap_or_else(|| category.map_or(FailurePolicy::Halt, Category::default_failure_policy));
    let undo = step.undo.clone().unwrap_or_else(|| category.map_or(Undo::None, Category::default_undo));
    if undo == Undo::Inverse && satisfied.is_none() {
        match &change {
            Some(c) if c.reversibility == Reversibility::Inverse => {}
            Some(c) => {
                return Err(context(Error::invalid_input(format!(
                    "step declares undo = inverse but its change is {}; declare undo = {{ restore_from = \
                     \"<snapshot step>\" }} or none",
                    c.reversibility
                ))));
            }
            None if matches!(step.op, StepOp::Revert { .. }) => {}
            None => {
                return Err(context(Error::invalid_input(format!(
                    "a {} step has no change to invert; remove its undo",
                    step.op.name()
                ))));
            }
        }
    }
    Ok(PreparedStep { step: step.id.clone(), change, on_failure, undo, satisfied })
}

/// `prepare`, with "already done" as an outcome: no change, and why in `satisfied`.
async fn prepare_or_satisfied(
    target: &dyn crate::Target,
    request: &Request,
    satisfied: &mut Option<String>,
) -> Result<Option<Change>> {
    match target.prepare(request).await {
        Ok(change) => Ok(Some(change)),
        Err(err) if err.kind() == crate::ErrorKind::AlreadyDone => {
            *satisfied = Some(format!("{}: {}", target.name(), err.message()));
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// What a dry run shows for one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DryRunStep {
    /// The stage (or `"finally"`).
    pub stage: String,
    /// The step.
    pub step: StepId,
    /// Its operation.
    pub op: &'static str,
    /// What it would do.
    pub description: String,
    /// Its change, when it changes a target.
    pub change: Option<Change>,
    /// How it could be undone.
    pub reversibility: Option<Reversibility>,
    /// What it may destroy.
    pub data_loss: Option<DataLoss>,
    /// Its failure policy.
    pub on_failure: FailurePolicy,
    /// Its undo.
    pub undo: Undo,
    /// Why it has nothing to do (its target already is where it points).
    pub satisfied: Option<String>,
}

/// The whole plan as it would run now, with nothing changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DryRun {
    /// The plan's name.
    pub plan: String,
    /// Target identities.
    pub identities: BTreeMap<TargetId, Identity>,
    /// Every step, in order.
    pub steps: Vec<DryRunStep>,
}

pub(crate) async fn dry_run(plan: &Plan, components: &Components) -> Result<DryRun> {
    let identities = components.identities().await?;
    let mut steps = Vec::new();
    let mut prepared: BTreeMap<StepId, Change> = BTreeMap::new();
    let staged = plan
        .stages
        .iter()
        .flat_map(|s| s.steps.iter().map(move |step| (s.name.clone(), step)))
        .chain(plan.finally.iter().map(|step| ("finally".to_string(), step)));
    for (stage, step) in staged {
        let p = prepare_step(step, components).await?;
        let change = match (&step.op, &p.change) {
            (_, Some(change)) => Some(change.clone()),
            (StepOp::Revert { step: earlier }, None) => match prepared.get(earlier) {
                Some(c) => {
                    Some(components.target(&c.target)?.inverse(c).map_err(|e| e.with_context("step", &step.id))?)
                }
                None => None,
            },
            _ => None,
        };
        if let Some(change) = &change {
            prepared.insert(step.id.clone(), change.clone());
        }
        let description = match (&step.op, &change) {
            (_, Some(c)) => c.description.clone(),
            _ if p.satisfied.is_some() => format!("nothing to do: {}", p.satisfied.as_deref().unwrap_or_default()),
            (StepOp::Verify { verifier, policy }, _) => format!(
                "verify {verifier}: {} consecutive passes every {:?}, deadline {:?}",
                policy.passes, policy.interval, policy.deadline
            ),
            (StepOp::Snapshot { snapshot }, _) => format!("capture snapshot {snapshot}"),
            (StepOp::Approval { prompt, approvers, .. }, _) if !approvers.is_empty() => {
                format!("wait for approval by one of {}: {prompt}", approvers.join(", "))
            }
            (StepOp::Approval { prompt, .. }, _) => format!("wait for approval: {prompt}"),
            (StepOp::Revert { step }, None) => format!("revert {step} (nothing to revert yet)"),
            _ => step.id.to_string(),
        };
        steps.push(DryRunStep {
            stage,
            step: step.id.clone(),
            op: step.op.name(),
            description,
            reversibility: change.as_ref().map(|c| c.reversibility),
            data_loss: change.as_ref().map(|c| c.data_loss.clone()),
            change,
            on_failure: p.on_failure,
            undo: p.undo,
            satisfied: p.satisfied,
        });
    }
    Ok(DryRun { plan: plan.name.clone(), identities, steps })
}

impl fmt::Display for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dry run of {:?} (nothing was changed)", self.plan)?;
        let mut stage = "";
        for s in &self.steps {
            if s.stage != stage {
                stage = &s.stage;
                writeln!(f, "  stage {stage}:")?;
            }
            writeln!(f, "    {:<18} {}", s.step.as_str(), s.description)?;
            if let Some(r) = s.reversibility {
                let loss = s.data_loss.as_ref().map_or("", |d| d.summary.as_str());
                writeln!(f, "    {:<18} {r}; {loss}; on failure: {:?}; undo: {:?}", "", s.on_failure, s.undo)?;
            }
        }
        Ok(())
    }
}
