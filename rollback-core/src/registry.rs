//! The [`Registry`]: factories by kind and instances by name, so plan files, the
//! Python binding and `resume` in a fresh process all build the same components.

use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use crate::{Error, Result, Snapshot, Spec, Target, Verifier};

type Factory<T> = Arc<dyn Fn(Spec) -> BoxFuture<'static, Result<Arc<T>>> + Send + Sync>;

/// Factories by kind and instances by name, for one role (targets, verifiers or
/// snapshotters).
struct Components<T: ?Sized> {
    role: &'static str,
    kinds: BTreeMap<String, Factory<T>>,
    instances: BTreeMap<String, Arc<T>>,
}

impl<T: ?Sized + Send + Sync + 'static> Components<T> {
    fn new(role: &'static str) -> Self {
        Components { role, kinds: BTreeMap::new(), instances: BTreeMap::new() }
    }

    async fn build(&self, name: &str, specs: &[Spec]) -> Result<Arc<T>> {
        if let Some(spec) = specs.iter().find(|s| s.name == name) {
            spec.validate()?;
            let factory = self.kinds.get(&spec.kind).ok_or_else(|| {
                let known: Vec<&str> = self.kinds.keys().map(String::as_str).collect();
                Error::invalid_input(format!(
                    "no {} factory for kind {:?} (registered kinds: {})",
                    self.role,
                    spec.kind,
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                ))
                .with_context(self.role, name)
            })?;
            return factory(spec.clone())
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
    ($field:ident, $trait:ident, $kind_fn:ident, $inst_fn:ident, $get_fn:ident, $name:literal) => {
        #[doc = concat!("Registers a factory building ", $name, "s of `kind` from specs.")]
        pub fn $kind_fn<F, Fut>(&mut self, kind: impl Into<String>, factory: F) -> &mut Self
        where
            F: Fn(Spec) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<Arc<dyn $trait>>> + Send + 'static,
        {
            self.$field.kinds.insert(kind.into(), Arc::new(move |spec| Box::pin(factory(spec))));
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
        }
    }

    role_methods!(targets, Target, register_target_kind, register_target, target, "target");
    role_methods!(verifiers, Verifier, register_verifier_kind, register_verifier, verifier, "verifier");
    role_methods!(snapshots, Snapshot, register_snapshot_kind, register_snapshot, snapshot, "snapshot");
}
