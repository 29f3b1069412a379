use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{Change, RunId, Selector, StepId, TargetId};
use crate::load::Problem;
use crate::spec::Spec;
use crate::verify::ProbePolicy;
use crate::{Error, Result};

/// The runbooks' maximum rollback time: past it the run escalates (S3).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(15 * 60);

/// A rollback plan: targets and other components as specs, stages of steps run in
/// order (steps inside a stage in parallel up to the stage's limit), and "finally"
/// steps that run on success and on failure.
///
/// ```
/// use rollback_core::Plan;
/// let plan = Plan::from_toml_str(r#"
///     name = "app back one release"
///     [[targets]]
///     kind = "release-dir"
///     name = "web"
///     config = { root = "/srv/web" }
///
///     [[stages]]
///     name = "app"
///     [[stages.steps]]
///     id = "web-back"
///     op = "rollback"
///     target = "web"
///     to = "previous"
/// "#).unwrap();
/// assert_eq!(plan.stages[0].steps[0].id.as_str(), "web-back");
/// let again = Plan::from_json_str(&plan.to_json_string().unwrap()).unwrap();
/// assert_eq!(plan, again);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// What the plan does, for people.
    pub name: String,
    /// The run this plan undoes, when it is the undo of a finished rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undoes: Option<RunId>,
    /// Targets built from specs by the registry (targets registered in code need no spec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Spec>,
    /// Verifiers built from specs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verifiers: Vec<Spec>,
    /// Snapshotters built from specs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<Spec>,
    /// Stages, run in order.
    pub stages: Vec<Stage>,
    /// Steps run after the stages on success and on failure (restore traffic, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finally: Vec<Step>,
    /// Time budget; past it the run escalates and notifies.
    #[serde(default = "default_budget", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub budget: Duration,
    /// Stop at the next step boundary when the budget is exceeded (off by default:
    /// aborting halfway through a rollback is usually the worst outcome).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort_on_budget: bool,
}

fn default_budget() -> Duration {
    DEFAULT_BUDGET
}

fn default_parallelism() -> usize {
    1
}

/// A group of steps that may run in parallel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// The stage's name.
    pub name: String,
    /// How many of its steps may run at once (at least 1).
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// Its steps.
    pub steps: Vec<Step>,
}

impl Stage {
    /// Orders steps into stages so that every step comes after the steps it depends
    /// on; steps whose dependencies are met together share a stage and run up to
    /// `parallelism` at once (compose's `depends_on`: dependencies first). Stages are
    /// named `<name> 1`, `<name> 2`, …. A dependency on an unknown step or a cycle is
    /// an error naming it.
    ///
    /// ```
    /// use rollback_core::{Stage, Step, StepId, StepOp, Selector};
    /// let step = |id: &str| Step::new(id, StepOp::Rollback { target: id.into(), to: Selector::Previous });
    /// let stages = Stage::in_dependency_order("services", 4, vec![
    ///     (step("api"), vec![StepId::new("db")]),
    ///     (step("worker"), vec![StepId::new("db")]),
    ///     (step("db"), vec![]),
    /// ]).unwrap();
    /// let names: Vec<Vec<&str>> = stages.iter().map(|s| s.steps.iter().map(|st| st.id.as_str()).collect()).collect();
    /// assert_eq!(names, vec![vec!["db"], vec!["api", "worker"]]);
    /// assert!(Stage::in_dependency_order("x", 1, vec![(step("a"), vec![StepId::new("a")])]).is_err());
    /// ```
    pub fn in_dependency_order(name: &str, parallelism: usize, steps: Vec<(Step, Vec<StepId>)>) -> Result<Vec<Stage>> {
        let known: BTreeSet<StepId> = steps.iter().map(|(s, _)| s.id.clone()).collect();
        for (step, deps) in &steps {
            if let Some(unknown) = deps.iter().find(|d| !known.contains(*d)) {
                return Err(Error::invalid_input(format!("step {} depends on unknown step {unknown}", step.id)));
            }
        }
        let mut pending = steps;
        let mut placed: BTreeSet<StepId> = BTreeSet::new();
        let mut stages = Vec::new();
        while !pending.is_empty() {
            let (ready, rest): (Vec<_>, Vec<_>) =
                pending.into_iter().partition(|(_, deps)| deps.iter().all(|d| placed.contains(d)));
            if ready.is_empty() {
                let stuck: Vec<&str> = rest.iter().map(|(s, _)| s.id.as_str()).collect();
                return Err(Error::invalid_input(format!("dependency cycle among steps {}", stuck.join(", "))));
            }
            let mut ready: Vec<Step> = ready.into_iter().map(|(s, _)| s).collect();
            ready.sort_by(|a, b| a.id.cmp(&b.id));
            placed.extend(ready.iter().map(|s| s.id.clone()));
            stages.push(Stage {
                name: format!("{name} {}", stages.len() + 1),
                parallelism: parallelism.max(1),
                steps: ready,
            });
            pending = rest;
        }
        Ok(stages)
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Step {
    /// Unique in the plan.
    pub id: StepId,
    /// What it does.
    #[serde(flatten)]
    pub op: StepOp,
    /// What to do if it fails; defaults from the target's [`Category`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<FailurePolicy>,
    /// How to undo it during compensation; defaults from the target's [`Category`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Undo>,
    /// For a verify step: when it passes, the run has reached its goal — the later
    /// stages are skipped (an escalation ladder stops at the first level that restores
    /// health). Finally steps still run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_if_passes: bool,
}

impl Step {
    /// A step with default failure policy and undo.
    pub fn new(id: impl Into<StepId>, op: StepOp) -> Self {
        Step { id: id.into(), op, on_failure: None, undo: None, stop_if_passes: false }
    }

    /// Marks a verify step as the goal: when it passes, later stages are skipped.
    pub fn stop_if_passes(mut self) -> Self {
        self.stop_if_passes = true;
        self
    }

    /// Sets the failure policy.
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.on_failure = Some(policy);
        self
    }

    /// Sets the undo.
    pub fn undo(mut self, undo: Undo) -> Self {
        self.undo = Some(undo);
        self
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StepOp {
    /// Roll a versioned target back to the version a selector names.
    Rollback {
        /// The target.
        target: TargetId,
        /// Which version.
        to: Selector,
    },
    /// Run an action on a target (flush, stop traffic, flag off).
    Action {
        /// The target.
        target: TargetId,
        /// The action's name, as the target knows it.
        action: String,
        /// Its parameters.
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        params: serde_json::Value,
    },
    /// Apply an already absolute change (as an undo plan does).
    Apply {
        /// The change.
        change: Box<Change>,
    },
    /// Apply the inverse of an earlier step's journaled change (restore traffic).
    Revert {
        /// The earlier step.
        step: StepId,
    },
    /// Run a verifier under a probe policy.
    Verify {
        /// The verifier's name.
        verifier: String,
        /// The probe policy.
        #[serde(default)]
        policy: ProbePolicy,
    },
    /// Capture a snapshot into the artifact store.
    Snapshot {
        /// The snapshotter's name.
        snapshot: String,
    },
    /// Wait for a person's approval (given in-process or from another process,
    /// through the journal).
    Approval {
        /// What is being approved.
        prompt: String,
        /// Give up (the step fails with a timeout) after this long.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "humantime_serde::option")]
        #[schemars(with = "Option<String>")]
        timeout: Option<std::time::Duration>,
        /// Who may approve (runbook 002's decision authority); anyone when empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        approvers: Vec<String>,
    },
}

impl StepOp {
    /// The target a forward step changes (rollback, action, apply).
    pub fn target(&self) -> Option<&TargetId> {
        match self {
            StepOp::Rollback { target, .. } | StepOp::Action { target, .. } => Some(target),
            StepOp::Apply { change } => Some(&change.target),
            _ => None,
        }
    }

    /// A short name of the operation.
    pub fn name(&self) -> &'static str {
        match self {
            StepOp::Rollback { .. } => "rollback",
            StepOp::Action { .. } => "action",
            StepOp::Apply { .. } => "apply",
            StepOp::Revert { .. } => "revert",
            StepOp::Verify { .. } => "verify",
            StepOp::Snapshot { .. } => "snapshot",
            StepOp::Approval { .. } => "approval",
        }
    }
}

/// What a failed step does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Stop and escalate to people (default for app, schema and data steps).
    Halt,
    /// Undo the completed steps through their declared `undo`, newest first.
    Compensate,
    /// Record the failure and go on (best-effort steps).
    Continue,
}

/// How a completed step is undone during compensation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Undo {
    /// Not undone: halt and escalate rather than redeploy a broken version.
    None,
    /// Apply the inverse of the journaled change.
    Inverse,
    /// Restore the snapshot that an earlier snapshot step captured.
    RestoreFrom(StepId),
}

/// What kind of thing a target is; decides default failure policy and undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Application release, image, Deployment.
    App,
    /// Database schema.
    Schema,
    /// Data (database restore, bucket state).
    Data,
    /// Configuration files.
    Config,
    /// Traffic (scale, selector, stop/start).
    Traffic,
    /// Feature flags.
    Flag,
    /// Caches.
    Cache,
    /// Anything else.
    Other,
}

impl Category {
    /// Default failure policy: compensate traffic and flag steps, halt the rest.
    pub fn default_failure_policy(self) -> FailurePolicy {
        match self {
            Category::Traffic | Category::Flag => FailurePolicy::Compensate,
            _ => FailurePolicy::Halt,
        }
    }

    /// Default undo: inverse for traffic and flag steps, none for the rest.
    pub fn default_undo(self) -> Undo {
        match self {
            Category::Traffic | Category::Flag => Undo::Inverse,
            _ => Undo::None,
        }
    }
}

impl Plan {
    /// An empty plan with the default budget.
    pub fn new(name: impl Into<String>) -> Self {
        Plan {
            name: name.into(),
            undoes: None,
            targets: Vec::new(),
            verifiers: Vec::new(),
            snapshots: Vec::new(),
            stages: Vec::new(),
            finally: Vec::new(),
            budget: DEFAULT_BUDGET,
            abort_on_budget: false,
        }
    }

    /// Adds a stage of steps with the given parallelism.
    pub fn stage(mut self, name: impl Into<String>, parallelism: usize, steps: Vec<Step>) -> Self {
        self.stages.push(Stage { name: name.into(), parallelism, steps });
        self
    }

    /// Parses a TOML plan strictly (unknown keys refused) and validates it, with no
    /// `${VAR}` substitution; plan files go through [`crate::load::PlanLoader`].
    pub fn from_toml_str(text: &str) -> Result<Self> {
        crate::load::PlanLoader::new()
            .literal()
            .check_str(text, crate::load::Format::Toml, "<plan>")
            .map_err(crate::load::Problems::into_error)
    }

    /// Parses a JSON plan strictly and validates it, like [`Plan::from_toml_str`].
    pub fn from_json_str(text: &str) -> Result<Self> {
        crate::load::PlanLoader::new()
            .literal()
            .check_str(text, crate::load::Format::Json, "<plan>")
            .map_err(crate::load::Problems::into_error)
    }

    /// Renders the plan as TOML.
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::invalid_input(format!("plan cannot be written as TOML: {e}")))
    }

    /// Renders the plan as JSON.
    pub fn to_json_string(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::internal(format!("plan cannot be written as JSON: {e}")))
    }

    /// All steps: stages in order, then finally steps.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.stages.iter().flat_map(|s| s.steps.iter()).chain(self.finally.iter())
    }

    /// Checks what can be checked without building anything: unique names and ids,
    /// names that become paths, references to earlier steps, one forward step per
    /// target, budgets and durations, secret hygiene of specs. Every problem, at once.
    pub fn validate(&self) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        let mut all = crate::load::Problems::new(format!("plan {:?}", self.name));
        problems.into_iter().for_each(|p| all.push(p));
        Err(all.into_error().with_context("plan", &self.name))
    }

    /// What [`Plan::validate`] checks, as problems located by path
    /// (`stages[1].steps[0].undo`), so the plan loader can give each its line.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.stages.iter().all(|s| s.steps.is_empty()) {
            out.push(Problem::at("stages", "the plan has no steps"));
        }
        if self.budget.is_zero() {
            out.push(Problem::at("budget", "the budget must be longer than zero"));
        }
        for (role, specs) in
            [("targets", &self.targets), ("verifiers", &self.verifiers), ("snapshots", &self.snapshots)]
        {
            let mut names = BTreeSet::new();
            for (i, spec) in specs.iter().enumerate() {
                let at = format!("{role}[{i}]");
                if let Err(e) = spec.validate() {
                    out.push(Problem::at(&at, e.message().to_string()));
                }
                if let Err(why) = check_name(&spec.name) {
                    out.push(Problem::at(format!("{at}.name"), format!("name {:?} {why}", bounded_name(&spec.name))));
                }
                if !names.insert(spec.name.as_str()) {
                    out.push(Problem::at(
                        format!("{at}.name"),
                        format!("{} {:?} is declared twice", &role[..role.len() - 1], spec.name),
                    ));
                }
            }
        }
        for (i, stage) in self.stages.iter().enumerate() {
            if stage.parallelism == 0 {
                out.push(Problem::at(
                    format!("stages[{i}].parallelism"),
                    format!("stage {:?} has parallelism 0; use at least 1", stage.name),
                ));
            }
        }
        // id -> (position, is_snapshot); position orders stages, finally after all.
        let mut seen: BTreeMap<&StepId, (usize, bool)> = BTreeMap::new();
        let mut forward_targets: BTreeMap<&TargetId, &StepId> = BTreeMap::new();
        for (position, at, step) in self.steps_with_paths() {
            let id = step.id.as_str();
            if let Err(why) = check_name(id) {
                out.push(Problem::at(format!("{at}.id"), format!("step id {:?} {why}", bounded_name(id))));
            }
            if seen.contains_key(&step.id) {
                out.push(Problem::at(format!("{at}.id"), format!("step id {id:?} is used twice")));
            }
            if step.stop_if_passes && !matches!(step.op, StepOp::Verify { .. }) {
                out.push(Problem::at(
                    format!("{at}.stop_if_passes"),
                    format!("step {id:?}: stop_if_passes is only for verify steps"),
                ));
            }
            match &step.op {
                StepOp::Rollback { to: Selector::Back(0), .. } => {
                    out.push(Problem::at(
                        format!("{at}.to"),
                        format!("step {id:?}: back(0) is the current version, not a rollback"),
                    ));
                }
                StepOp::Revert { step: earlier } => match seen.get(earlier) {
                    Some((p, _)) if *p < position || position == usize::MAX => {}
                    _ => out.push(Problem::at(
                        format!("{at}.step"),
                        format!("step {id:?} reverts {:?}, which is not a step of an earlier stage", earlier.as_str()),
                    )),
                },
                StepOp::Verify { policy, .. } => {
                    if let Err(why) = policy.check() {
                        out.push(Problem::at(format!("{at}.policy"), format!("step {id:?}: {why}")));
                    }
                }
                StepOp::Approval { timeout: Some(timeout), .. } if timeout.is_zero() => {
                    out.push(Problem::at(
                        format!("{at}.timeout"),
                        format!("step {id:?}: an approval timeout must be longer than zero"),
                    ));
                }
                _ => {}
            }
            if let Some(target) = step.op.target()
                && let Some(other) = forward_targets.insert(target, &step.id)
            {
                out.push(Problem::at(
                    format!("{at}.target"),
                    format!(
                        "steps {:?} and {id:?} both change target {:?}; every step is prepared before the first \
                         is applied, so a target may be changed by one step (use a revert step to restore it)",
                        other.as_str(),
                        target.as_str()
                    ),
                ));
            }
            if let Some(Undo::RestoreFrom(snapshot_step)) = &step.undo {
                match seen.get(snapshot_step) {
                    Some((p, true)) if *p < position => {}
                    _ => out.push(Problem::at(
                        format!("{at}.undo"),
                        format!(
                            "step {id:?} restores from {:?}, which is not a snapshot step of an earlier stage",
                            snapshot_step.as_str()
                        ),
                    )),
                }
            }
            seen.entry(&step.id).or_insert((position, matches!(step.op, StepOp::Snapshot { .. })));
        }
        out
    }

    /// Every step with its stage position (finally steps: `usize::MAX`) and its path
    /// in the plan document (`stages[1].steps[0]`, `finally[2]`).
    pub(crate) fn steps_with_paths(&self) -> impl Iterator<Item = (usize, String, &Step)> {
        self.stages
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.steps.iter().enumerate().map(move |(j, step)| (i, format!("stages[{i}].steps[{j}]"), step))
            })
            .chain(self.finally.iter().enumerate().map(|(k, step)| (usize::MAX, format!("finally[{k}]"), step)))
    }
}

/// Checks a name that becomes part of a path (artifact keys, marker files, journal
/// records): not empty, at most 128 characters, not `.` or `..`, no separators or
/// control characters. The reason, if not.
pub fn check_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.trim().is_empty() {
        Err("is empty")
    } else if name.chars().count() > 128 {
        Err("is longer than 128 characters")
    } else if name == "." || name == ".." || name.contains("..") {
        Err("contains `..`")
    } else if name.contains(['/', '\\']) {
        Err("contains a path separator")
    } else if name.chars().any(char::is_control) {
        Err("contains a control character")
    } else {
        Ok(())
    }
}

fn bounded_name(name: &str) -> String {
    crate::load::problem_text(name, 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SecretRef, Version};

    fn sample() -> Plan {
        let mut plan = Plan::new("sample")
            .stage(
                "prepare",
                1,
                vec![
                    Step::new("snap", StepOp::Snapshot { snapshot: "db-dump".into() }),
                    Step::new(
                        "traffic-off",
                        StepOp::Action {
                            target: "lb".into(),
                            action: "stop".into(),
                            params: serde_json::json!({"replicas": 0}),
                        },
                    ),
                ],
            )
            .stage(
                "app",
                2,
                vec![
                    Step::new("app", StepOp::Rollback { target: "web".into(), to: Selector::Previous })
                        .on_failure(FailurePolicy::Compensate),
                    Step::new("schema", StepOp::Rollback { target: "db".into(), to: Selector::Back(2) })
                        .undo(Undo::RestoreFrom("snap".into())),
                    Step::new(
                        "cfg",
                        StepOp::Apply {
                            change: Box::new(Change::new("config", "file", Some(Version::new("b")), Version::new("a"))),
                        },
                    ),
                ],
            )
            .stage(
                "check",
                1,
                vec![
                    Step::new("health", StepOp::Verify { verifier: "http".into(), policy: ProbePolicy::default() }),
                    Step::new(
                        "ok",
                        StepOp::Approval {
                            prompt: "looks good?".into(),
                            timeout: Some(Duration::from_secs(600)),
                            approvers: vec!["tech-lead".into()],
                        },
                    ),
                ],
            );
        plan.finally.push(Step::new("traffic-on", StepOp::Revert { step: "traffic-off".into() }));
        let mut spec = Spec::new("release-dir", "web", serde_json::json!({"root": "/srv/web"}));
        spec.secrets.insert("token".into(), SecretRef::Env { var: "DEPLOY_TOKEN".into() });
        plan.targets.push(spec);
        plan
    }

    #[test]
    fn round_trips_json_and_toml() {
        let plan = sample();
        plan.validate().unwrap();
        let json = plan.to_json_string().unwrap();
        assert_eq!(Plan::from_json_str(&json).unwrap(), plan);
        let toml = plan.to_toml_string().unwrap();
        assert_eq!(Plan::from_toml_str(&toml).unwrap(), plan, "{toml}");
    }

    #[test]
    fn rejects_two_forward_steps_on_one_target() {
        let plan = Plan::new("p").stage(
            "s",
            1,
            vec![
                Step::new("a", StepOp::Rollback { target: "web".into(), to: Selector::Previous }),
                Step::new("b", StepOp::Action { target: "web".into(), action: "x".into(), params: Default::default() }),
            ],
        );
        let err = plan.validate().unwrap_err();
        assert!(err.to_string().contains("both change target \"web\""), "{err}");
    }

    #[test]
    fn rejects_bad_references() {
        let plan = Plan::new("p").stage("s", 1, vec![Step::new("a", StepOp::Revert { step: "zzz".into() })]);
        assert!(plan.validate().unwrap_err().to_string().contains("reverts \"zzz\""));
        let plan = Plan::new("p").stage(
            "s",
            1,
            vec![
                Step::new("a", StepOp::Rollback { target: "w".into(), to: Selector::Previous })
                    .undo(Undo::RestoreFrom("a".into())),
            ],
        );
        assert!(plan.validate().unwrap_err().to_string().contains("not a snapshot step"));
        let plan = Plan::new("p").stage(
            "s",
            0,
            vec![Step::new("a", StepOp::Approval { prompt: "?".into(), timeout: None, approvers: vec![] })],
        );
        assert!(plan.validate().unwrap_err().to_string().contains("parallelism 0"));
        assert!(Plan::new("empty").validate().unwrap_err().to_string().contains("no steps"));
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let err = Plan::from_toml_str("name = 1").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("<plan>:1:8: invalid type: integer `1`, expected a string"), "{err}");
        let err = Plan::from_json_str(r#"{"name":"x","stages":[],"bogus":1}"#).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }
}
