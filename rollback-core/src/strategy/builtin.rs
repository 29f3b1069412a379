use serde::Deserialize;
use std::time::Duration;

use super::{RollbackRequest, Strategy};
use crate::{Error, Plan, ProbePolicy, Result, Spec, Step, StepOp, TargetId};

/// Schema before app, or app before schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Roll the application back first, then the schema (the old app must run on the
    /// new schema for a moment: use when migrations were additive).
    #[default]
    AppFirst,
    /// Roll the schema back first (the new app must tolerate the old schema: use when
    /// the new app still runs on it).
    SchemaFirst,
}

/// Which targets, snapshots and verifiers play which part: the options of the
/// built-in strategies.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tiers {
    /// Snapshots taken first, as evidence and restore points.
    pub evidence: Vec<String>,
    /// Traffic targets: the action `stop` first, reverted in `finally`.
    pub traffic: Vec<String>,
    /// Flag targets: the action `disable` first.
    pub flags: Vec<String>,
    /// Application targets.
    pub app: Vec<String>,
    /// Configuration targets (rolled back with the app).
    pub config: Vec<String>,
    /// Schema targets.
    pub schema: Vec<String>,
    /// Verifiers run at the end (and after each tier for the standard strategy).
    pub verify: Vec<String>,
    /// App first or schema first.
    pub order: Order,
    /// Steps run at once inside a stage (4).
    pub parallelism: Option<usize>,
    /// Probe policy of verify steps.
    pub verify_policy: Option<ProbePolicy>,
}

impl Tiers {
    fn from(request: &RollbackRequest) -> Result<Tiers> {
        if request.options.is_null() {
            return Ok(Tiers::default());
        }
        serde_json::from_value(request.options.clone())
            .map_err(|e| Error::invalid_input(format!("strategy options: {e}")))
    }

    fn parallelism(&self) -> usize {
        self.parallelism.unwrap_or(4).max(1)
    }

    fn rollback_steps(&self, names: &[String], request: &RollbackRequest) -> Vec<Step> {
        names
            .iter()
            .map(|t| {
                Step::new(format!("{t}-back"), StepOp::Rollback { target: TargetId::new(t), to: request.to.clone() })
            })
            .collect()
    }

    fn verify_steps(&self, suffix: &str) -> Vec<Step> {
        let policy = self.verify_policy.clone().unwrap_or_default();
        self.verify
            .iter()
            .map(|v| {
                Step::new(format!("verify-{v}{suffix}"), StepOp::Verify { verifier: v.clone(), policy: policy.clone() })
            })
            .collect()
    }
}

fn base_plan(name: &str, targets: &[Spec], request: &RollbackRequest, budget: Duration) -> Plan {
    let mut plan = Plan::new(format!("{name}: {}", request.reason));
    plan.targets = targets.to_vec();
    plan.verifiers = request.verifiers.clone();
    plan.snapshots = request.snapshots.clone();
    plan.budget = budget;
    plan
}

fn push(plan: &mut Plan, stage: &str, parallelism: usize, steps: Vec<Step>) {
    if !steps.is_empty() {
        plan.stages.push(crate::Stage { name: stage.into(), parallelism, steps });
    }
}

/// Runbook 002's five-minute emergency rollback: every app and config target back at
/// once, then verify. No evidence, no traffic stop, no approval; halt and escalate on
/// failure. Budget 5 minutes.
///
/// ```
/// use rollback_core::strategy::{Emergency, RollbackRequest};
/// use rollback_core::{Selector, Spec, Strategy};
/// let request = RollbackRequest::new("error rate 30 %", Selector::Previous, serde_json::json!({"app": ["web", "api"], "verify": ["health"]}));
/// let plan = Emergency.plan(&[], &request).unwrap();
/// assert_eq!(plan.stages.len(), 2);
/// assert_eq!(plan.stages[0].steps.len(), 2);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Emergency;

impl Strategy for Emergency {
    fn name(&self) -> &str {
        "emergency"
    }

    fn plan(&self, targets: &[Spec], request: &RollbackRequest) -> Result<Plan> {
        let tiers = Tiers::from(request)?;
        if tiers.app.is_empty() && tiers.config.is_empty() {
            return Err(Error::invalid_input("the emergency strategy needs app or config targets"));
        }
        let mut plan = base_plan("emergency", targets, request, Duration::from_secs(5 * 60));
        let mut steps = tiers.rollback_steps(&tiers.app, request);
        steps.extend(tiers.rollback_steps(&tiers.config, request));
        push(&mut plan, "app and config", tiers.parallelism(), steps);
        push(&mut plan, "verify", tiers.parallelism(), tiers.verify_steps(""));
        plan.validate()?;
        Ok(plan)
    }
}

/// The runbooks' standard rollback: evidence first; traffic stopped and flags turned
/// off; app and config, then schema (or schema first); verification after each tier;
/// traffic restored in `finally` (also on failure). Budget 15 minutes.
///
/// ```
/// use rollback_core::strategy::{RollbackRequest, Standard};
/// use rollback_core::{Selector, Strategy};
/// let options = serde_json::json!({
///     "evidence": ["env-files"], "traffic": ["lb"], "app": ["web"], "config": ["env"],
///     "schema": ["db"], "verify": ["health"], "order": "schema-first",
/// });
/// let plan = Standard.plan(&[], &RollbackRequest::new("p99 900 ms", Selector::Previous, options)).unwrap();
/// let stages: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
/// assert_eq!(stages, ["evidence", "stop traffic", "schema", "verify schema", "app and config", "verify"]);
/// assert_eq!(plan.finally.len(), 1);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Standard;

impl Strategy for Standard {
    fn name(&self) -> &str {
        "standard"
    }

    fn plan(&self, targets: &[Spec], request: &RollbackRequest) -> Result<Plan> {
        let tiers = Tiers::from(request)?;
        if tiers.app.is_empty() && tiers.config.is_empty() && tiers.schema.is_empty() {
            return Err(Error::invalid_input("the standard strategy needs app, config or schema targets"));
        }
        let mut plan = base_plan("standard", targets, request, Duration::from_secs(15 * 60));
        let n = tiers.parallelism();
        let evidence = tiers
            .evidence
            .iter()
            .map(|s| Step::new(format!("evidence-{s}"), StepOp::Snapshot { snapshot: s.clone() }))
            .collect();
        push(&mut plan, "evidence", n, evidence);
        let mut off: Vec<Step> = tiers
            .traffic
            .iter()
            .map(|t| {
                Step::new(
                    format!("{t}-stop"),
                    StepOp::Action { target: TargetId::new(t), action: "stop".into(), params: Default::default() },
                )
            })
            .collect();
        off.extend(tiers.flags.iter().map(|f| {
            Step::new(
                format!("{f}-off"),
                StepOp::Action { target: TargetId::new(f), action: "disable".into(), params: Default::default() },
            )
        }));
        push(&mut plan, "stop traffic", n, off);
        let mut app = tiers.rollback_steps(&tiers.app, request);
        app.extend(tiers.rollback_steps(&tiers.config, request));
        let schema = tiers.rollback_steps(&tiers.schema, request);
        let (first, first_name, second, second_name) = match tiers.order {
            Order::AppFirst => (app, "app and config", schema, "schema"),
            Order::SchemaFirst => (schema, "schema", app, "app and config"),
        };
        let had_first = !first.is_empty();
        push(&mut plan, first_name, n, first);
        if had_first && !second.is_empty() {
            push(
                &mut plan,
                &format!("verify {first_name}"),
                n,
                tiers.verify_steps(&format!("-after-{}", first_name.replace(' ', "-"))),
            );
        }
        push(&mut plan, second_name, n, second);
        push(&mut plan, "verify", n, tiers.verify_steps(""));
        plan.finally = tiers
            .traffic
            .iter()
            .map(|t| Step::new(format!("{t}-start"), StepOp::Revert { step: format!("{t}-stop").into() }))
            .collect();
        plan.validate()?;
        Ok(plan)
    }
}

/// The escalation ladder: flags off, then app and config, then schema — verifying
/// after each level and stopping at the first that restores health (the later levels
/// are skipped, and journaled as skipped). Still unhealthy after the last level:
/// halt and escalate. Budget 15 minutes.
///
/// ```
/// use rollback_core::strategy::{Ladder, RollbackRequest};
/// use rollback_core::{Selector, Strategy};
/// let options = serde_json::json!({ "flags": ["new-checkout"], "app": ["web"], "schema": ["db"], "verify": ["health"] });
/// let plan = Ladder.plan(&[], &RollbackRequest::new("checkout errors", Selector::Previous, options)).unwrap();
/// let stages: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
/// assert_eq!(stages, ["level 1: flags", "verify level 1", "level 2: app and config", "verify level 2", "level 3: schema", "verify level 3"]);
/// assert!(plan.stages[1].steps[0].stop_if_passes);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Ladder;

impl Strategy for Ladder {
    fn name(&self) -> &str {
        "ladder"
    }

    fn plan(&self, targets: &[Spec], request: &RollbackRequest) -> Result<Plan> {
        let tiers = Tiers::from(request)?;
        if tiers.verify.is_empty() {
            return Err(Error::invalid_input(
                "the ladder strategy needs verifiers: it climbs until health is restored",
            ));
        }
        let flags: Vec<Step> = tiers
            .flags
            .iter()
            .map(|f| {
                Step::new(
                    format!("{f}-off"),
                    StepOp::Action { target: TargetId::new(f), action: "disable".into(), params: Default::default() },
                )
            })
            .collect();
        let mut app = tiers.rollback_steps(&tiers.app, request);
        app.extend(tiers.rollback_steps(&tiers.config, request));
        let schema = tiers.rollback_steps(&tiers.schema, request);
        let levels: Vec<(&str, Vec<Step>)> = [("flags", flags), ("app and config", app), ("schema", schema)]
            .into_iter()
            .filter(|(_, s)| !s.is_empty())
            .collect();
        if levels.is_empty() {
            return Err(Error::invalid_input("the ladder strategy needs flags, app, config or schema targets"));
        }
        let mut plan = base_plan("ladder", targets, request, Duration::from_secs(15 * 60));
        let n = tiers.parallelism();
        let count = levels.len();
        for (i, (what, steps)) in levels.into_iter().enumerate() {
            let level = i + 1;
            push(&mut plan, &format!("level {level}: {what}"), n, steps);
            let last = level == count;
            let checks = tiers
                .verify_steps(&format!("-level-{level}"))
                .into_iter()
                .map(|s| if last { s } else { s.stop_if_passes().on_failure(crate::FailurePolicy::Continue) })
                .collect();
            push(&mut plan, &format!("verify level {level}"), n, checks);
        }
        plan.validate()?;
        Ok(plan)
    }
}

/// How the schema change being rolled back relates to the old application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compatibility {
    /// The change was additive: the old app runs on the new schema (roll the app back
    /// first, the schema after).
    #[default]
    Additive,
    /// The change was breaking: the old app needs the old schema (roll the schema back
    /// first, with traffic stopped).
    Breaking,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct FullOptions {
    #[serde(flatten)]
    tiers: serde_json::Value,
    #[serde(default)]
    compatibility: Compatibility,
}

/// The full rollback: traffic stopped first and restored in `finally`, the order of
/// app and schema decided by a compatibility guard (`compatibility = "additive"`:
/// app first; `"breaking"`: schema first), evidence, verification between tiers and
/// at the end. Needs traffic targets. Budget 15 minutes.
///
/// ```
/// use rollback_core::strategy::{Full, RollbackRequest};
/// use rollback_core::{Selector, Strategy};
/// let options = serde_json::json!({ "traffic": ["lb"], "app": ["web"], "schema": ["db"], "verify": ["health"], "compatibility": "breaking" });
/// let plan = Full.plan(&[], &RollbackRequest::new("bad migration", Selector::Previous, options)).unwrap();
/// let stages: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
/// assert_eq!(stages, ["stop traffic", "schema", "verify schema", "app and config", "verify"]);
/// assert_eq!(plan.finally[0].id.as_str(), "lb-start");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Full;

impl Strategy for Full {
    fn name(&self) -> &str {
        "full"
    }

    fn plan(&self, targets: &[Spec], request: &RollbackRequest) -> Result<Plan> {
        let options: FullOptions = serde_json::from_value(request.options.clone())
            .map_err(|e| Error::invalid_input(format!("strategy options: {e}")))?;
        let mut tiers_value = options.tiers;
        if let Some(map) = tiers_value.as_object_mut() {
            map.remove("compatibility");
            map.insert(
                "order".into(),
                serde_json::json!(match options.compatibility {
                    Compatibility::Additive => "app-first",
                    Compatibility::Breaking => "schema-first",
                }),
            );
        }
        let tiers: Tiers = serde_json::from_value(tiers_value.clone())
            .map_err(|e| Error::invalid_input(format!("strategy options: {e}")))?;
        if tiers.traffic.is_empty() {
            return Err(Error::invalid_input("the full strategy stops traffic first: give it traffic targets"));
        }
        let standard = RollbackRequest { options: tiers_value, ..request.clone() };
        let mut plan = Standard.plan(targets, &standard)?;
        plan.name = format!("full: {}", request.reason);
        Ok(plan)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryOptions {
    canary: Vec<String>,
    #[serde(default)]
    stable: Vec<String>,
    #[serde(default)]
    verify: Vec<String>,
    #[serde(default)]
    verify_policy: Option<ProbePolicy>,
}

/// Canary rollback: take the canary out (action `stop`: to zero), bring the stable
/// version up (action `start`), verify. Undo of both is their inverse (traffic
/// defaults), so a failed verification compensates. Budget 5 minutes.
///
/// ```
/// use rollback_core::strategy::{Canary, RollbackRequest};
/// use rollback_core::{Selector, Strategy};
/// let options = serde_json::json!({ "canary": ["web-canary"], "stable": ["web-stable"], "verify": ["health"] });
/// let plan = Canary.plan(&[], &RollbackRequest::new("canary errors", Selector::Previous, options)).unwrap();
/// assert_eq!(plan.stages.len(), 3);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Canary;

impl Strategy for Canary {
    fn name(&self) -> &str {
        "canary"
    }

    fn plan(&self, targets: &[Spec], request: &RollbackRequest) -> Result<Plan> {
        let options: CanaryOptions = serde_json::from_value(request.options.clone())
            .map_err(|e| Error::invalid_input(format!("strategy options: {e}")))?;
        if options.canary.is_empty() {
            return Err(Error::invalid_input("the canary strategy needs canary targets"));
        }
        let mut plan = base_plan("canary", targets, request, Duration::from_secs(5 * 60));
        let action = |t: &String, action: &str, suffix: &str| {
            Step::new(
                format!("{t}-{suffix}"),
                StepOp::Action { target: TargetId::new(t), action: action.into(), params: Default::default() },
            )
        };
        push(&mut plan, "canary off", 4, options.canary.iter().map(|t| action(t, "stop", "off")).collect());
        push(&mut plan, "stable up", 4, options.stable.iter().map(|t| action(t, "start", "up")).collect());
        let tiers = Tiers { verify: options.verify, verify_policy: options.verify_policy, ..Tiers::default() };
        push(&mut plan, "verify", 4, tiers.verify_steps(""));
        plan.validate()?;
        Ok(plan)
    }
}
