//! The [`Registry`]: factories by kind and instances by name, so plan files, the
//! Python binding and `resume` in a fresh process all build the same components.

use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use crate::kind::{self, Kind};
use crate::load::{Problem, closest};
use crate::{Error, Journal, Lock, Plan, Result, Secret, Snapshot, Spec, StepOp, Target, Verifier};

type Factory<T> = Arc<dyn Fn(Spec) -> BoxFuture<'static, Result<Arc<T>>> + Send + Sync>;
type ConfigCheck = Arc<dyn Fn(&serde_json::Value) -> Vec<Problem> + Send + Sync>;
type JournalOpener = Arc<dyn Fn(Secret, JournalAccess) -> BoxFuture<'static, Result<OpenedJournal>> + Send + Sync>;

/// A journal opened from a URL, with the lock whose fencing tokens it checks (a
/// shared journal brings its own, so the token an append is checked against is the
/// one the lock granted).
pub struct OpenedJournal {
    /// The journal.
    pub journal: Arc<dyn Journal>,
    /// The lock that agrees with it; `None` when opened to read only.
    pub lock: Option<Arc<dyn Lock>>,
}

/// What a journal is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalAccess {
    /// Runs, resumes, approvals, cancels: the journal is created or migrated if
    /// needed, and its lock comes with it.
    ReadWrite,
    /// Listing runs and reading reports: nothing is created or migrated (a journal
    /// that does not exist yet is `NotFound`), and no lock is opened.
    ReadOnly,
}

/// A registered kind: its factory and, for kinds on the [`Kind`] contract, the
/// config's schema and its offline check.
struct Entry<T: ?Sized> {
    factory: Factory<T>,
    typed: Option<(Arc<serde_json::Value>, ConfigCheck)>,
}

/// Factories by kind and instances by name, for one role (targets, verifiers or
/// snapshotters).
struct Components<T: ?Sized> {
    role: &'static str,
    kinds: BTreeMap<String, Entry<T>>,
    instances: BTreeMap<String, Arc<T>>,
}

/// A registered kind, as `rollback kinds` and `rollback explain` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KindInfo {
    /// `target`, `verifier` or `snapshot`.
    pub role: &'static str,
    /// The name plans use.
    pub kind: String,
    /// One line about it: the config type's first doc line.
    pub about: String,
    /// The config's JSON schema; `None` for kinds registered at run time (Python
    /// classes, closures), whose config is checked only when they are built.
    pub schema: Option<serde_json::Value>,
}

impl<T: ?Sized + Send + Sync + 'static> Components<T> {
    fn new(role: &'static str) -> Self {
        Components { role, kinds: BTreeMap::new(), instances: BTreeMap::new() }
    }

    async fn build(&self, name: &str, specs: &[Spec]) -> Result<Arc<T>> {
        if let Some(spec) = specs.iter().find(|s| s.name == name) {
            spec.validate()?;
            let entry = self
                .kinds
                .get(&spec.kind)
                .ok_or_else(|| Error::invalid_input(self.unknown_kind(&spec.kind)).with_context(self.role, name))?;
            return (entry.factory)(spec.clone())
                .await
                .map_err(|e| e.with_operation("build component").with_context(self.role, name));
        }
        self.instances.get(name).cloned().ok_or_else(|| {
            Error::invalid_input(format!(
                "{} {name:?} is neither declared in the plan nor registered in code \
                 (targets built in code must be registered again to resume)",
                self.role
            ))
        })
    }
}

impl<T: ?Sized> Components<T> {
    fn unknown_kind(&self, kind: &str) -> String {
        let known: Vec<&str> = self.kinds.keys().map(String::as_str).collect();
        let hint = match closest(kind, known.iter().copied()) {
            Some(near) => format!("did you mean `{near}`?"),
            None if known.is_empty() => "none are registered".into(),
            None => format!("registered: {}", known.join(", ")),
        };
        format!("unknown {} kind `{}`; {hint}", self.role, crate::load::problem_text(kind, 60))
    }

    /// Problems of the specs of this role, by plan path (`targets[2].config.prefx`).
    fn spec_problems(&self, list: &str, specs: &[Spec], out: &mut Vec<Problem>) {
        for (i, spec) in specs.iter().enumerate() {
            match self.kinds.get(&spec.kind) {
                None => out.push(Problem::at(format!("{list}[{i}].kind"), self.unknown_kind(&spec.kind))),
                Some(Entry { typed: Some((_, check)), .. }) => {
                    out.extend(check(&spec.config).into_iter().map(|p| p.under(&format!("{list}[{i}].config"))));
                }
                Some(_) => {}
            }
        }
    }

    fn exists(&self, name: &str, specs: &[Spec]) -> bool {
        specs.iter().any(|s| s.name == name) || self.instances.contains_key(name)
    }

    fn schema(&self, kind: &str) -> Option<&serde_json::Value> {
        self.kinds.get(kind).and_then(|e| e.typed.as_ref()).map(|(schema, _)| schema.as_ref())
    }

    fn infos(&self) -> impl Iterator<Item = KindInfo> + '_ {
        self.kinds.iter().map(|(kind, entry)| {
            let schema = entry.typed.as_ref().map(|(schema, _)| schema.as_ref().clone());
            let about = schema
                .as_ref()
                .and_then(|s| s.get("description").and_then(serde_json::Value::as_str))
                .and_then(|d| d.lines().next())
                .unwrap_or("")
                .to_string();
            KindInfo { role: self.role, kind: kind.clone(), about, schema }
        })
    }
}

/// Builds targets, verifiers and snapshotters from specs (by kind) or returns ones
/// registered in code (by name).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use rollback_core::{testkit::MemoryTarget, Registry, Spec, Target};
/// use std::sync::Arc;
/// let mut registry = Registry::new();
/// registry.register_target_kind("memory", |spec: Spec| async move {
///     let versions: Vec<String> = spec.config_as()?;
///     let refs: Vec<&str> = versions.iter().map(String::as_str).collect();
///     Ok(Arc::new(MemoryTarget::with_versions(&spec.name, &refs)) as Arc<dyn Target>)
/// });
/// registry.register_target(Arc::new(MemoryTarget::with_versions("in-code", &["a", "b"])));
/// let spec = Spec::new("memory", "web", serde_json::json!(["v1", "v2"]));
/// let web = registry.target("web", &[spec]).await.unwrap();
/// assert_eq!(web.current().await.unwrap().id, "v2");
/// assert!(registry.target("in-code", &[]).await.is_ok());
/// assert!(registry.target("nope", &[]).await.is_err());
/// # });
/// ```
pub struct Registry {
    targets: Components<dyn Target>,
    verifiers: Components<dyn Verifier>,
    snapshots: Components<dyn Snapshot>,
    /// How to open a journal, by URL scheme.
    journals: BTreeMap<String, JournalOpener>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("target_kinds", &self.targets.kinds.keys().collect::<Vec<_>>())
            .field("targets", &self.targets.instances.keys().collect::<Vec<_>>())
            .field("verifier_kinds", &self.verifiers.kinds.keys().collect::<Vec<_>>())
            .field("verifiers", &self.verifiers.instances.keys().collect::<Vec<_>>())
            .field("snapshot_kinds", &self.snapshots.kinds.keys().collect::<Vec<_>>())
            .field("snapshots", &self.snapshots.instances.keys().collect::<Vec<_>>())
            .finish()
    }
}

macro_rules! role_methods {
    ($field:ident, $trait:ident, $typed_fn:ident, $kind_fn:ident, $inst_fn:ident, $get_fn:ident, $name:literal) => {
        #[doc = concat!("Registers the ", $name, " kind `K` (the [`Kind`] contract): built from specs of kind `K::KIND`, its config checked strictly, offline, by [`Registry::validate`].")]
        pub fn $typed_fn<K: Kind + $trait>(&mut self) -> &mut Self {
            let schema = Arc::new(kind::schema_of::<K>());
            let for_check = schema.clone();
            let check: ConfigCheck = Arc::new(move |config| kind::config_problems::<K>(config, &for_check));
            let for_build = schema.clone();
            let factory: Factory<dyn $trait> = Arc::new(move |spec| {
                let schema = for_build.clone();
                Box::pin(async move {
                    Ok(Arc::new(kind::build_with_schema::<K>(spec, &schema).await?) as Arc<dyn $trait>)
                })
            });
            self.$field.kinds.insert(K::KIND.to_string(), Entry { factory, typed: Some((schema, check)) });
            self
        }

        #[doc = concat!("Registers a factory building ", $name, "s of a kind named at run time (a Python class, a closure); its config is checked only when it is built. Kinds known at compile time use [`Kind`] instead.")]
        pub fn $kind_fn<F, Fut>(&mut self, kind: impl Into<String>, factory: F) -> &mut Self
        where
            F: Fn(Spec) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<Arc<dyn $trait>>> + Send + 'static,
        {
            let factory: Factory<dyn $trait> = Arc::new(move |spec| Box::pin(factory(spec)));
            self.$field.kinds.insert(kind.into(), Entry { factory, typed: None });
            self
        }

        #[doc = concat!("Registers a ", $name, " built in code, under its name.")]
        pub fn $inst_fn(&mut self, component: Arc<dyn $trait>) -> &mut Self {
            self.$field.instances.insert(component.name().to_string(), component);
            self
        }

        #[doc = concat!("Builds the ", $name, " called `name`: from its spec in `specs` if there is one, else the registered instance.")]
        pub async fn $get_fn(&self, name: &str, specs: &[Spec]) -> Result<Arc<dyn $trait>> {
            self.$field.build(name, specs).await
        }
    };
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry {
            targets: Components::new("target"),
            verifiers: Components::new("verifier"),
            snapshots: Components::new("snapshot"),
            journals: BTreeMap::new(),
        }
    }

    /// Registers how to open a journal whose URL starts with `scheme://` (a
    /// backend's `register` does it: rollback-db's for `postgres`).
    pub fn journal_scheme<F, Fut>(&mut self, scheme: &str, open: F) -> &mut Self
    where
        F: Fn(Secret, JournalAccess) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<OpenedJournal>> + Send + 'static,
    {
        let open: JournalOpener = Arc::new(move |url, access| Box::pin(open(url, access)));
        self.journals.insert(scheme.to_owned(), open);
        self
    }

    /// Opens the journal `url` names, with its lock, by the URL's scheme. The URL
    /// (which may hold a password) is never part of an error: an unknown scheme is
    /// named, with the ones this build knows.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let registry = rollback_core::Registry::new();
    /// let url = rollback_core::Secret::new("mysql://ops:hunter2@db/ops");
    /// let access = rollback_core::JournalAccess::ReadOnly;
    /// let err = registry.open_journal(&url, access).await.err().unwrap().to_string();
    /// assert!(err.contains("mysql://") && !err.contains("hunter2"), "{err}");
    /// # });
    /// ```
    pub async fn open_journal(&self, url: &Secret, access: JournalAccess) -> Result<OpenedJournal> {
        let scheme = url.expose().split_once("://").map(|(s, _)| s).filter(|s| {
            !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        let known = || self.journals.keys().map(|s| format!("{s}://")).collect::<Vec<_>>().join(", ");
        let Some(open) = scheme.and_then(|s| self.journals.get(s)) else {
            let what = scheme.map_or_else(|| "it has no scheme://".to_owned(), |s| format!("it starts with {s}://"));
            let known = if self.journals.is_empty() { "none in this build".to_owned() } else { known() };
            return Err(Error::invalid_input(format!(
                "a journal URL must start with one of: {known} (the file journal is the default); {what}"
            )));
        };
        open(url.clone(), access).await
    }

    role_methods!(targets, Target, target_kind, register_target_kind, register_target, target, "target");
    role_methods!(verifiers, Verifier, verifier_kind, register_verifier_kind, register_verifier, verifier, "verifier");
    role_methods!(snapshots, Snapshot, snapshot_kind, register_snapshot_kind, register_snapshot, snapshot, "snapshot");

    /// Every registered kind, by role then name.
    pub fn kinds(&self) -> Vec<KindInfo> {
        self.targets.infos().chain(self.verifiers.infos()).chain(self.snapshots.infos()).collect()
    }

    /// The config schema of a kind, for the plan loader (`role` as in plans:
    /// `targets`, `verifiers`, `snapshots`).
    pub(crate) fn config_schema(&self, list: &str, kind: &str) -> Option<&serde_json::Value> {
        match list {
            "targets" => self.targets.schema(kind),
            "verifiers" => self.verifiers.schema(kind),
            "snapshots" => self.snapshots.schema(kind),
            _ => None,
        }
    }

    /// Checks a plan against what is registered, without building or contacting
    /// anything: every spec's kind exists and its config is valid for it (unknown keys
    /// refused), and every step names a declared or registered component. Plus
    /// [`Plan::validate`]. Every problem at once.
    ///
    /// ```
    /// use rollback_core::{Plan, Registry};
    /// let mut registry = Registry::new();
    /// rollback_core::local::register_local_kinds(&mut registry);
    /// let plan = Plan::from_toml_str(r#"
    ///     name = "p"
    ///     [[targets]]
    ///     kind = "release-dir"
    ///     name = "web"
    ///     config = { root = "/srv/web", restat = ["systemctl", "restart", "web"] }
    ///     [[stages]]
    ///     name = "s"
    ///     steps = [{ id = "a", op = "rollback", target = "web", to = "previous" },
    ///              { id = "b", op = "verify", verifier = "health" }]
    /// "#).unwrap();
    /// let err = registry.validate(&plan).unwrap_err().to_string();
    /// assert!(err.contains("unknown key `restat`; did you mean `restart`?"), "{err}");
    /// assert!(err.contains("verifier \"health\""), "{err}");
    /// ```
    pub fn validate(&self, plan: &Plan) -> Result<()> {
        let mut problems = plan.problems();
        problems.extend(self.problems(plan));
        if problems.is_empty() {
            return Ok(());
        }
        let mut all = crate::load::Problems::new(format!("plan {:?}", plan.name));
        problems.into_iter().for_each(|p| all.push(p));
        Err(all.into_error())
    }

    /// What [`Registry::validate`] adds to [`Plan::problems`], by plan path.
    pub fn problems(&self, plan: &Plan) -> Vec<Problem> {
        let mut out = Vec::new();
        self.targets.spec_problems("targets", &plan.targets, &mut out);
        self.verifiers.spec_problems("verifiers", &plan.verifiers, &mut out);
        self.snapshots.spec_problems("snapshots", &plan.snapshots, &mut out);
        for (_, at, step) in plan.steps_with_paths() {
            let missing = match &step.op {
                StepOp::Rollback { target, .. } | StepOp::Action { target, .. }
                    if !self.targets.exists(target.as_str(), &plan.targets) =>
                {
                    Some(("target", "target", target.as_str(), "[[targets]]"))
                }
                StepOp::Verify { verifier, .. } if !self.verifiers.exists(verifier, &plan.verifiers) => {
                    Some(("verifier", "verifier", verifier.as_str(), "[[verifiers]]"))
                }
                StepOp::Snapshot { snapshot } if !self.snapshots.exists(snapshot, &plan.snapshots) => {
                    Some(("snapshot", "snapshot", snapshot.as_str(), "[[snapshots]]"))
                }
                _ => None,
            };
            if let Some((field, role, name, list)) = missing {
                out.push(Problem::at(
                    format!("{at}.{field}"),
                    format!(
                        "step {:?} names {role} {:?}, which is neither declared under {list} nor registered in code",
                        step.id.as_str(),
                        crate::load::problem_text(name, 60)
                    ),
                ));
            }
        }
        out
    }
}
