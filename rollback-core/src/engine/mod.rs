//! The engine: dry-run, run, resume, approve, report, history and undo planning.

mod context;
mod execute;
mod lease;
mod preflight;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::crash::CrashPoint;
use crate::journal::{Durability, Entry, Phase, RunIndexEntry, RunLog};
use crate::{
    ArtifactStore, Error, ErrorKind, Event, FileJournal, FileLock, HistoryQuery, HistoryRecord, Journal, LocalDirStore,
    Lock, Notifier, Plan, Registry, Report, Result, RunId, RunState, Selector, Step, StepId, StepOp, TargetId,
};

use context::RunCtx;
pub use preflight::{DryRun, DryRunStep};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lease time-to-live; renewed every third of it.
    pub lease_ttl: Duration,
    /// How often a waiting gate re-reads the journal for an approval.
    pub approval_poll: Duration,
    /// A crash point for kill-and-resume tests (see [`crate::crash`]); feature
    /// `testkit` only — no production build can be told to crash.
    #[cfg(feature = "testkit")]
    pub crash_at: Option<CrashPoint>,
    /// Offsets from the start at which to send status updates (runbook 001:
    /// 5, 15, 30 and 60 minutes); none by default.
    pub status_updates: Vec<Duration>,
    /// This runner's host id, in its leases and the runs it starts (default: the
    /// hostname). Two runners on one machine with a shared journal can be told apart.
    pub host: Option<String>,
}

impl Settings {
    /// The crash point, if this is a test build that has one.
    pub(crate) fn crash_point(&self) -> Option<CrashPoint> {
        #[cfg(feature = "testkit")]
        return self.crash_at;
        #[cfg(not(feature = "testkit"))]
        None
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lease_ttl: Duration::from_secs(30),
            approval_poll: Duration::from_millis(250),
            #[cfg(feature = "testkit")]
            crash_at: None,
            status_updates: Vec::new(),
            host: None,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) registry: Arc<Registry>,
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) lock: Arc<dyn Lock>,
    pub(crate) store: Arc<dyn ArtifactStore>,
    pub(crate) notifiers: Vec<Arc<dyn Notifier>>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) settings: Settings,
}

impl Inner {
    /// This process as the holder of `run`'s lease, under the configured host id.
    pub(crate) fn holder(&self, run: &RunId) -> crate::Holder {
        let mut holder = crate::Holder::this_process(run);
        if let Some(host) = &self.settings.host {
            holder.host = host.clone();
        }
        holder
    }
}

/// Runs plans: locks the targets, prepares every step, journals intents before
/// effects, verifies, compensates or escalates, and resumes after a crash.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use rollback_core::testkit::MemoryTarget;
/// use rollback_core::{Engine, MemoryJournal, MemoryLock, Plan, Registry, RunState, Selector, Step, StepOp, Target};
/// use std::sync::Arc;
/// let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2", "v3"]));
/// let mut registry = Registry::new();
/// registry.register_target(web.clone());
/// let dir = tempfile::tempdir().unwrap();
/// let engine = Engine::builder(registry)
///     .journal(Arc::new(MemoryJournal::new()))
///     .lock(Arc::new(MemoryLock::new()))
///     .artifacts_dir(dir.path())
///     .build();
/// let plan = Plan::new("web back").stage("app", 1, vec![
///     Step::new("web", StepOp::Rollback { target: "web".into(), to: Selector::Previous }),
/// ]);
/// println!("{}", engine.dry_run(&plan).await.unwrap());
/// let report = engine.run(plan, Default::default()).await.unwrap();
/// assert_eq!(report.state, RunState::Succeeded);
/// assert_eq!(web.current().await.unwrap().id, "v2");
/// # });
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("registry", &self.inner.registry)
            .field("settings", &self.inner.settings)
            .finish()
    }
}

/// Builds an [`Engine`]; journal, lock and artifact store default to files under
/// `./.rollback` unless set.
pub struct EngineBuilder {
    registry: Registry,
    journal: Option<Arc<dyn Journal>>,
    lock: Option<Arc<dyn Lock>>,
    store: Option<Arc<dyn ArtifactStore>>,
    home: std::path::PathBuf,
    notifiers: Vec<Arc<dyn Notifier>>,
    settings: Settings,
}

impl EngineBuilder {
    /// Uses `dir` for the default file journal (`dir/journal`), lock (`dir/locks`) and
    /// artifact store (`dir/artifacts`).
    pub fn home(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.home = dir.into();
        self
    }

    /// Sets the journal.
    pub fn journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Sets the lock.
    pub fn lock(mut self, lock: Arc<dyn Lock>) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Sets the artifact store.
    pub fn store(mut self, store: Arc<dyn ArtifactStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Uses a [`LocalDirStore`] at `dir` for artifacts.
    pub fn artifacts_dir(self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.store(Arc::new(LocalDirStore::new(dir)))
    }

    /// Adds a notifier.
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }

    /// Replaces the settings.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Journals in the journal `url` names (and locks with its lock), opened through
    /// the registry's journal schemes ([`Registry::journal_scheme`]; rollback-db
    /// registers `postgres://`) for `access`: to read only, nothing is created or
    /// migrated and the lock stays the default (a reader takes no lease). Artifacts
    /// stay where [`EngineBuilder::home`] or [`EngineBuilder::artifacts_dir`] put them.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use rollback_core::{Engine, JournalAccess, MemoryJournal, MemoryLock, OpenedJournal, Registry, Secret};
    /// use std::sync::Arc;
    /// let mut registry = Registry::new();
    /// registry.journal_scheme("mem", |_url: Secret, _access| async {
    ///     Ok(OpenedJournal { journal: Arc::new(MemoryJournal::new()), lock: Some(Arc::new(MemoryLock::new())) })
    /// });
    /// let dir = tempfile::tempdir().unwrap();
    /// let builder = Engine::builder(registry).artifacts_dir(dir.path().join("artifacts"));
    /// let url = Secret::new("mem://ops");
    /// let engine = builder.journal_url(&url, JournalAccess::ReadWrite).await.unwrap().build();
    /// assert!(engine.runs().await.unwrap().is_empty());
    /// assert!(!dir.path().join("journal").exists(), "no file journal was opened");
    /// # });
    /// ```
    pub async fn journal_url(self, url: &crate::Secret, access: crate::JournalAccess) -> Result<Self> {
        let opened = self.registry.open_journal(url, access).await?;
        let builder = self.journal(opened.journal);
        Ok(match opened.lock {
            Some(lock) => builder.lock(lock),
            None => builder,
        })
    }

    /// Builds the engine. Opening the default file journal can fail.
    pub fn try_build(self) -> Result<Engine> {
        let journal = match self.journal {
            Some(journal) => journal,
            None => Arc::new(FileJournal::open(self.home.join("journal"))?),
        };
        let lock = self.lock.unwrap_or_else(|| Arc::new(FileLock::new(self.home.join("locks"))));
        let store = self.store.unwrap_or_else(|| Arc::new(LocalDirStore::new(self.home.join("artifacts"))));
        let (events, _) = broadcast::channel(1024);
        Ok(Engine {
            inner: Arc::new(Inner {
                registry: Arc::new(self.registry),
                journal,
                lock,
                store,
                notifiers: self.notifiers,
                events,
                settings: self.settings,
            }),
        })
    }

    /// Builds the engine; panics only if the default file journal cannot be opened
    /// (use [`EngineBuilder::try_build`] to handle that).
    pub fn build(self) -> Engine {
        match self.try_build() {
            Ok(engine) => engine,
            Err(err) => panic!("cannot open the default journal: {err}"),
        }
    }
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run's id (generated when `None`).
    pub run_id: Option<RunId>,
    /// Why the rollback happens (journaled and reported).
    pub reason: Option<String>,
    /// A handle to cancel at the next step boundary.
    pub cancel: Option<CancelHandle>,
    /// Run a plan with a relative selector (`previous`, `back = N`) although its last
    /// successful run already left that target where it is: without this, [`Engine::run`]
    /// refuses, because running it again would roll back one release further.
    pub again: bool,
    /// Stop at an approval gate instead of waiting: the run ends cancelled with the gate
    /// awaiting its decision; `approve`, then `resume`, go on from there.
    pub no_wait: bool,
}

/// Cancels a run at its next step boundary (never in the middle of an effect).
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// A fresh handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Engine {
    /// A builder over `registry`.
    pub fn builder(registry: Registry) -> EngineBuilder {
        EngineBuilder {
            registry,
            journal: None,
            lock: None,
            store: None,
            home: ".rollback".into(),
            notifiers: Vec::new(),
            settings: Settings::default(),
        }
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.inner.journal
    }

    /// The artifact store.
    pub fn store(&self) -> &Arc<dyn ArtifactStore> {
        &self.inner.store
    }

    /// The registry components are built from (for [`crate::load::PlanLoader::registry`]).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Subscribes to events of runs started after this call.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Builds every component and prepares every step, changing nothing anywhere:
    /// no lock, no journal, no effect.
    pub async fn dry_run(&self, plan: &Plan) -> Result<DryRun> {
        self.inner.registry.validate(plan)?;
        let components = preflight::Components::build(&self.inner.registry, plan).await?;
        preflight::dry_run(plan, &components).await
    }

    /// Runs a plan. Bad input, unbuildable components and a held lock are errors
    /// before anything is journaled or changed. Once the run has started, the
    /// outcome — success, compensation, escalation — is in the returned [`Report`];
    /// an error then means the engine could not journal (lost lease, disk), and
    /// [`Engine::report`] tells what state was left.
    pub async fn run(&self, plan: Plan, options: RunOptions) -> Result<Report> {
        self.inner.registry.validate(&plan)?;
        let run = options.run_id.clone().unwrap_or_else(RunId::generate);
        let span = tracing::info_span!("rollback_run", run = %run, plan = %plan.name);
        async move {
            let components = preflight::Components::build(&self.inner.registry, &plan).await?;
            if !options.again {
                self.refuse_relative_repeat(&plan, &components).await?;
            }
            let identities = components.identities().await?;
            let ctx = RunCtx::start(self.inner.clone(), run, plan, components, &identities, options).await?;
            ctx.drive_new().await
        }
        .instrument(span)
        .await
    }

    /// Refuses a plan whose relative selector would go one release further than its
    /// last successful run left the target (the run that already did this rollback).
    async fn refuse_relative_repeat(&self, plan: &Plan, components: &preflight::Components) -> Result<()> {
        let relative: Vec<(&StepId, &TargetId)> = plan
            .steps()
            .filter_map(|s| match &s.op {
                StepOp::Rollback { target, to } if to.is_relative() => Some((&s.id, target)),
                _ => None,
            })
            .collect();
        if relative.is_empty() {
            return Ok(());
        }
        // The newest succeeded run of this plan: only this plan's journals are read,
        // newest first, until one is found.
        let mut entries: Vec<RunIndexEntry> =
            self.inner.journal.runs().await?.into_iter().filter(|e| e.plan == plan.name).collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.started_at));
        let mut found = None;
        for entry in entries {
            let log = match self.inner.journal.read(&entry.run).await.and_then(|r| RunLog::from_records(&r)) {
                Ok(log) => log,
                Err(err) => {
                    tracing::warn!(run = %entry.run, error = %err, "skipping an unreadable run");
                    continue;
                }
            };
            if log.state == RunState::Succeeded {
                found = Some(HistoryRecord::from_log(&log));
                break;
            }
        }
        let Some(last) = found else { return Ok(()) };
        for (step, target) in relative {
            let Some(change) = last.changes.iter().find(|c| &c.target == target) else { continue };
            let current = components.target(target)?.current().await?;
            if current.id == change.to.id {
                return Err(Error::invalid_input(format!(
                    "step {step} rolls {target} back relatively, and run {} ({}) already moved it to {current}, \
                     where it is now: running the plan again would go one release further; pass `again` \
                     (`rollback run --again`) if that is what you want",
                    last.run,
                    last.date.format("%Y-%m-%d %H:%M:%S UTC"),
                ))
                .with_context("run", &last.run));
            }
        }
        Ok(())
    }

    /// Resumes a run in this process: rebuilds its targets from the registry, checks
    /// their identities against the journal, never re-prepares a journaled change, and
    /// decides each in-flight step with `observe`.
    pub async fn resume(&self, run: &RunId) -> Result<Report> {
        self.resume_with(run, RunOptions::default()).await
    }

    /// [`Engine::resume`] with options (a cancel handle).
    pub async fn resume_with(&self, run: &RunId, options: RunOptions) -> Result<Report> {
        let log = RunLog::from_records(&self.inner.journal.read(run).await?)?;
        if log.state.is_terminal() {
            return Ok(Report::from_log(&log));
        }
        if log.state == RunState::Failed && !log.any_effect_started() && !log.prepared.is_empty() {
            return Ok(Report::from_log(&log));
        }
        let span = tracing::info_span!("rollback_resume", run = %run, plan = %log.plan.name);
        async move {
            let components = preflight::Components::build(&self.inner.registry, &log.plan).await?;
            RunCtx::resume(self.inner.clone(), log, components, options).await?.drive_resumed().await
        }
        .instrument(span)
        .await
    }

    /// Approves or rejects a gate of a run (from this or any other process: the
    /// decision travels through the journal).
    pub async fn approve(&self, run: &RunId, step: &StepId, approved: bool, by: &str) -> Result<()> {
        let log = RunLog::from_records(&self.inner.journal.read(run).await?)?;
        let approvers = log.plan.steps().find_map(|s| match &s.op {
            StepOp::Approval { approvers, .. } if &s.id == step => Some(approvers.clone()),
            _ => None,
        });
        let Some(approvers) = approvers else {
            return Err(Error::invalid_input(format!("run {run} has no approval step {:?}", step.as_str())));
        };
        if !approvers.is_empty() && !approvers.iter().any(|a| a == by) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("{by:?} may not decide gate {:?}; approvers: {}", step.as_str(), approvers.join(", ")),
            ));
        }
        let entry = Entry::Approval { step: step.clone(), approved, by: by.to_owned() };
        self.inner.journal.append(run, None, entry, Durability::Sync).await.map(drop)
    }

    /// Asks a running run to stop at its next step boundary, from this or any other
    /// process or host sharing the journal (the request travels through it; the
    /// running engine watches for it). The run ends `cancelled`, journaled, and
    /// `resume` continues it. A run that is not running (finished, stopped,
    /// escalated) is refused.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use rollback_core::{Engine, MemoryJournal, MemoryLock, Registry, RunId};
    /// use std::sync::Arc;
    /// let engine = Engine::builder(Registry::new())
    ///     .journal(Arc::new(MemoryJournal::new()))
    ///     .lock(Arc::new(MemoryLock::new()))
    ///     .artifacts_dir(std::env::temp_dir())
    ///     .build();
    /// let unknown = engine.request_cancel(&RunId::generate(), "oncall").await.unwrap_err();
    /// assert_eq!(unknown.kind(), rollback_core::ErrorKind::NotFound);
    /// # });
    /// ```
    pub async fn request_cancel(&self, run: &RunId, by: &str) -> Result<()> {
        let log = RunLog::from_records(&self.inner.journal.read(run).await?)?;
        let running = matches!(
            log.state,
            RunState::Pending | RunState::Locked | RunState::Preflighted | RunState::Running | RunState::Compensating
        );
        if !running {
            let what = if log.state.is_terminal() { "nothing to cancel" } else { "not running (resume continues it)" };
            return Err(Error::new(ErrorKind::InvalidState, format!("run {run} is {}: {what}", log.state))
                .with_operation("cancel"));
        }
        let entry = Entry::CancelRequested { by: by.to_owned() };
        self.inner.journal.append(run, None, entry, Durability::Sync).await.map(drop)
    }

    /// The report of a journaled run.
    pub async fn report(&self, run: &RunId) -> Result<Report> {
        Ok(Report::from_log(&RunLog::from_records(&self.inner.journal.read(run).await?)?))
    }

    /// Every journaled run, oldest first.
    pub async fn runs(&self) -> Result<Vec<RunIndexEntry>> {
        self.inner.journal.runs().await
    }

    /// The rollback history, oldest first, filtered by target and time.
    pub async fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryRecord>> {
        let mut records = Vec::new();
        for entry in self.inner.journal.runs().await? {
            if query.since.is_some_and(|s| entry.started_at < s - chrono::TimeDelta::minutes(1)) {
                continue;
            }
            let log = match self.inner.journal.read(&entry.run).await.and_then(|r| RunLog::from_records(&r)) {
                Ok(log) => log,
                Err(err) => {
                    tracing::warn!(run = %entry.run, error = %err, "history: skipping an unreadable run");
                    continue;
                }
            };
            let record = HistoryRecord::from_log(&log);
            if query.matches(&record) {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Adds the root cause and post-mortem link to a run's history (from any process).
    pub async fn annotate(
        &self,
        run: &RunId,
        root_cause: Option<&str>,
        postmortem: Option<&str>,
        by: &str,
    ) -> Result<()> {
        self.inner.journal.read(run).await?;
        let entry = Entry::Annotated {
            root_cause: root_cause.map(str::to_owned),
            postmortem: postmortem.map(str::to_owned),
            by: by.to_owned(),
        };
        self.inner.journal.append(run, None, entry, Durability::Sync).await.map(drop)
    }

    /// Plans the undo of a finished run from the pre-states its journal recorded:
    /// exact versions for versioned targets, inverse changes for actions, newest
    /// first. The plan names the run it undoes; running it is a new run.
    pub async fn plan_undo(&self, run: &RunId) -> Result<Plan> {
        let log = RunLog::from_records(&self.inner.journal.read(run).await?)?;
        if !matches!(log.state, RunState::Succeeded | RunState::Escalated | RunState::Compensated) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!("run {run} is {}; resume it or let it finish before planning its undo", log.state),
            ));
        }
        let mut steps = Vec::new();
        for s in log.steps.iter().rev() {
            if s.phase != Phase::Forward || s.state != crate::StepState::Done {
                continue;
            }
            let Some(change) = &s.change else { continue };
            if log.step(&s.step, Phase::Compensation).is_some_and(|c| c.state == crate::StepState::Done) {
                continue;
            }
            let target = self.inner.registry.target(change.target.as_str(), &log.plan.targets).await?;
            let op = match (&change.from, target.capabilities().versioned) {
                (Some(from), true) => {
                    StepOp::Rollback { target: change.target.clone(), to: Selector::Exact(from.id.clone()) }
                }
                _ => StepOp::Apply { change: Box::new(target.inverse(change)?) },
            };
            steps.push(Step::new(format!("undo-{}", s.step), op));
        }
        if steps.is_empty() {
            return Err(Error::invalid_input(format!("run {run} changed nothing that can be undone")));
        }
        let mut plan = Plan::new(format!("undo of {run} ({})", log.plan.name));
        plan.undoes = Some(run.clone());
        plan.targets = log.plan.targets.clone();
        plan.budget = log.plan.budget;
        for step in steps {
            plan.stages.push(crate::Stage { name: step.id.to_string(), parallelism: 1, steps: vec![step] });
        }
        Ok(plan)
    }
}
