use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::target::{Capabilities, Observed, Request};
use crate::{
    Category, Change, Error, ErrorKind, IdempotencyKey, Identity, Result, Revision, Target, TargetId, Version,
    prepare_versioned,
};

/// A fault to inject into a [`MemoryTarget`].
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The `n`-th call (1-based) of `method` fails with a backend error.
    FailOnCall {
        /// `"identity"`, `"current"`, `"history"`, `"prepare"`, `"apply"` or `"observe"`.
        method: &'static str,
        /// Which call.
        n: u64,
    },
    /// Every call of `method` from the `n`-th on hangs (for an hour).
    Hang {
        /// The method.
        method: &'static str,
        /// From which call.
        n: u64,
    },
    /// `current` reports this version instead of the real one.
    LieAboutCurrent(Version),
    /// `apply` does its first internal phase, then fails as if the process died.
    StopBetweenPhases,
}

#[derive(Debug)]
struct State {
    current: Version,
    key: Option<IdempotencyKey>,
    staged: Option<(IdempotencyKey, Version)>,
    history: Vec<Revision>,
    identity: Identity,
    faults: Vec<Fault>,
    calls: BTreeMap<&'static str, u64>,
    effects: Vec<String>,
}

/// A versioned target in memory. `apply` has two internal phases (stage, then
/// commit), so states between phases exist and `observe` reports them as `Partial`.
/// Every real state change is logged in [`MemoryTarget::effects`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use rollback_core::testkit::{Fault, MemoryTarget};
/// use rollback_core::{IdempotencyKey, Request, Selector, Target};
/// let t = MemoryTarget::with_versions("web", &["v1", "v2"]);
/// t.inject(Fault::FailOnCall { method: "apply", n: 1 });
/// let change = t.prepare(&Request::To(Selector::Previous)).await.unwrap();
/// let key = IdempotencyKey::new("k");
/// assert!(t.apply(&change, &key).await.is_err());
/// t.apply(&change, &key).await.unwrap();
/// assert_eq!(t.effects(), vec!["k: v2 -> v1"]);
/// # });
/// ```
#[derive(Debug)]
pub struct MemoryTarget {
    name: TargetId,
    category: Category,
    converges: bool,
    state: Mutex<State>,
}

impl MemoryTarget {
    /// A target whose history is `versions` (oldest first) and whose current version is the last.
    pub fn with_versions(name: &str, versions: &[&str]) -> Self {
        let base = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let history = versions
            .iter()
            .enumerate()
            .rev()
            .map(|(i, v)| {
                Revision::new(Version::new(*v), format!("release {v}"))
                    .created_at(base + chrono::TimeDelta::hours(i as i64))
            })
            .collect();
        MemoryTarget {
            name: TargetId::new(name),
            category: Category::App,
            converges: true,
            state: Mutex::new(State {
                current: Version::new(versions.last().copied().unwrap_or("none")),
                key: None,
                staged: None,
                history,
                identity: Identity::new(format!("memory:{name}")),
                faults: Vec::new(),
                calls: BTreeMap::new(),
                effects: Vec::new(),
            }),
        }
    }

    /// Sets the category (default `App`).
    pub fn category(mut self, category: Category) -> Self {
        self.category = category;
        self
    }

    /// Declares that `apply` does not converge from partial states.
    pub fn not_converging(mut self) -> Self {
        self.converges = false;
        self
    }

    /// Injects a fault.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Changes the identity (as if the name now pointed at something else).
    pub fn set_identity(&self, identity: &str) {
        self.lock().identity = Identity::new(identity);
    }

    /// Sets the current version behind the engine's back (a concurrent deploy).
    pub fn set_current(&self, version: &str) {
        let mut state = self.lock();
        state.current = Version::new(version);
        state.key = None;
    }

    /// Every real state change, as `"<key>: <from> -> <to>"`.
    pub fn effects(&self) -> Vec<String> {
        self.lock().effects.clone()
    }

    /// How many times `method` was called.
    pub fn calls(&self, method: &str) -> u64 {
        self.lock().calls.get(method).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Counts the call and applies faults for it.
    async fn enter(&self, method: &'static str) -> Result<()> {
        let (fail, hang) = {
            let mut state = self.lock();
            let n = state.calls.entry(method).or_insert(0);
            *n += 1;
            let n = *n;
            let fail = state
                .faults
                .iter()
                .any(|f| matches!(f, Fault::FailOnCall { method: m, n: k } if *m == method && *k == n));
            let hang =
                state.faults.iter().any(|f| matches!(f, Fault::Hang { method: m, n: k } if *m == method && n >= *k));
            (fail, hang)
        };
        if hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if fail {
            return Err(Error::new(ErrorKind::Backend, format!("injected failure of {method}")).with_operation(method));
        }
        Ok(())
    }
}

#[async_trait]
impl Target for MemoryTarget {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn kind(&self) -> &str {
        "memory"
    }

    fn category(&self) -> Category {
        self.category
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: true, converges_from_partial: self.converges }
    }

    async fn identity(&self) -> Result<Identity> {
        self.enter("identity").await?;
        Ok(self.lock().identity.clone())
    }

    async fn current(&self) -> Result<Version> {
        self.enter("current").await?;
        let state = self.lock();
        let lie = state.faults.iter().find_map(|f| match f {
            Fault::LieAboutCurrent(v) => Some(v.clone()),
            _ => None,
        });
        Ok(lie.unwrap_or_else(|| state.current.clone()))
    }

    async fn history(&self) -> Result<Vec<Revision>> {
        self.enter("history").await?;
        Ok(self.lock().history.clone())
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        self.enter("prepare").await?;
        match request {
            Request::To(selector) => prepare_versioned(self, selector).await,
            Request::Action { action, params } if action == "set" => {
                let to = params
                    .get("version")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| Error::invalid_input("action \"set\" needs params.version"))?;
                let from = self.current().await?;
                Ok(Change::new(self.name.clone(), "set", Some(from), Version::new(to)))
            }
            Request::Action { action, .. } => {
                Err(Error::new(ErrorKind::Unsupported, format!("memory target has no action {action:?}")))
            }
        }
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        self.enter("apply").await?;
        let from = change.from.as_ref().ok_or_else(|| Error::invalid_input("memory changes need a from"))?;
        let stop_between = {
            let mut state = self.lock();
            if state.current == change.to && state.key.as_ref() == Some(key) {
                return Ok(());
            }
            if state.current.id != from.id {
                return Err(Error::new(ErrorKind::Conflict, format!("expected {} but found {}", from, state.current)));
            }
            state.staged = Some((key.clone(), change.to.clone()));
            state.faults.contains(&Fault::StopBetweenPhases)
        };
        if stop_between {
            return Err(Error::new(ErrorKind::Backend, "injected stop between phases (staged, not committed)"));
        }
        let mut state = self.lock();
        let effect = format!("{key}: {} -> {}", state.current.id, change.to.id);
        state.effects.push(effect);
        state.current = change.to.clone();
        state.key = Some(key.clone());
        state.staged = None;
        Ok(())
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        self.enter("observe").await?;
        let state = self.lock();
        Ok(if state.current.id == change.to.id && state.key.as_ref() == Some(key) {
            Observed::Done
        } else if change.from.as_ref().is_some_and(|f| f.id == state.current.id) {
            match &state.staged {
                Some((k, _)) if k == key => Observed::Partial(format!("staged {} but not committed", change.to)),
                _ => Observed::NotStarted,
            }
        } else {
            Observed::Diverged(format!("current is {}", state.current))
        })
    }
}
