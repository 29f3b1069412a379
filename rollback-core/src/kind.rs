//! The one contract every component kind is built on: a name, a strict config type
//! with a schema, and an async constructor. The [`crate::Registry`] registers kinds
//! by type (`registry.target_kind::<ReleaseDir>()`), so a kind's name is written once,
//! its config is checked (unknown keys refused, with the closest valid name) before
//! anything is built or contacted, and `rollback explain KIND` can print its fields.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use rollback_core::kind::Kind;
//! use rollback_core::{Registry, Spec};
//! use std::sync::Arc;
//!
//! /// A greeting, for the example.
//! #[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct GreetConfig {
//!     /// Whom to greet.
//!     who: String,
//! }
//!
//! struct Greeter(String);
//!
//! impl Kind for Greeter {
//!     const KIND: &'static str = "greeter";
//!     type Config = GreetConfig;
//!     async fn build(_spec: Spec, config: GreetConfig) -> rollback_core::Result<Self> {
//!         Ok(Greeter(config.who))
//!     }
//! }
//!
//! let spec = Spec::of::<Greeter>("hello", &GreetConfig { who: "ops".into() }).unwrap();
//! assert_eq!(spec.config["who"], "ops");
//! let greeter = rollback_core::kind::build::<Greeter>(spec).await.unwrap();
//! assert_eq!(greeter.0, "ops");
//!
//! let typo = Spec::new("greeter", "hello", serde_json::json!({"whom": "ops"}));
//! let err = rollback_core::kind::build::<Greeter>(typo).await.err().unwrap();
//! assert!(err.to_string().contains("unknown key `whom`; did you mean `who`?"), "{err}");
//! # });
//! ```

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::load::{Problem, strict};
use crate::{Error, Result, Spec};

/// A component kind: what a spec's `kind` names.
pub trait Kind: Sized + Send + Sync + 'static {
    /// The name plans use (`kind = "release-dir"`).
    const KIND: &'static str;
    /// Its configuration (no secrets: those come by reference, from the spec).
    type Config: DeserializeOwned + schemars::JsonSchema + Send + 'static;

    /// Builds one from its spec (name, secret references) and its typed config.
    fn build(spec: Spec, config: Self::Config) -> impl Future<Output = Result<Self>> + Send;

    /// Checks a config offline, beyond its type (values that must be paths, ranges).
    /// The reason, if it is wrong. Default: nothing more to check.
    fn check(_config: &Self::Config) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// The JSON schema of a kind's config (a root schema, with its `$defs`).
pub fn schema_of<K: Kind>() -> serde_json::Value {
    schemars::schema_for!(K::Config).to_value()
}

/// Reads `config` as `K::Config` strictly: unknown keys (from the schema), then the
/// typed reading, then [`Kind::check`]; every problem by path inside the config.
fn read_config<K: Kind>(config: &serde_json::Value, schema: &serde_json::Value) -> Result<K::Config, Vec<Problem>> {
    let mut value = if config.is_null() { serde_json::json!({}) } else { config.clone() };
    let mut problems = strict::check(&mut value, schema, &|_| false);
    match serde_path_to_error::deserialize::<_, K::Config>(&value) {
        Ok(typed) if problems.is_empty() => K::check(&typed).map(|()| typed).map_err(|why| vec![Problem::at("", why)]),
        Ok(_) => Err(problems),
        Err(e) => {
            let path = crate::load::serde_path(e.path());
            if !problems.iter().any(|p| p.path == path) {
                let message = crate::load::typed_message(&e.inner().to_string(), &path, &Default::default());
                problems.push(Problem::at(path, message));
            }
            Err(problems)
        }
    }
}

/// What is wrong with `config` as a config of kind `K`, by path inside the config
/// (nothing when it is a valid one).
pub fn config_problems<K: Kind>(config: &serde_json::Value, schema: &serde_json::Value) -> Vec<Problem> {
    read_config::<K>(config, schema).err().unwrap_or_default()
}

/// Reads a spec's config as `K::Config`, strictly: the error lists every problem.
pub fn config_of<K: Kind>(spec: &Spec) -> Result<K::Config> {
    config_with_schema::<K>(spec, &schema_of::<K>())
}

fn config_with_schema<K: Kind>(spec: &Spec, schema: &serde_json::Value) -> Result<K::Config> {
    read_config::<K>(&spec.config, schema).map_err(|problems| {
        let shown: Vec<String> = problems
            .iter()
            .take(crate::load::MAX_SHOWN)
            .map(|p| if p.path.is_empty() { p.message.clone() } else { format!("config.{}: {}", p.path, p.message) })
            .collect();
        Error::invalid_input(format!(
            "bad config for {} {:?}: {}",
            K::KIND,
            crate::load::problem_text(&spec.name, 60),
            shown.join("; ")
        ))
        .with_context("spec", &spec.name)
    })
}

/// Builds a `K` from a spec: its config read strictly, then [`Kind::build`].
pub async fn build<K: Kind>(spec: Spec) -> Result<K> {
    build_with_schema::<K>(spec, &schema_of::<K>()).await
}

/// [`build`] with the config's schema already generated (the registry keeps it).
pub(crate) async fn build_with_schema<K: Kind>(spec: Spec, schema: &serde_json::Value) -> Result<K> {
    let config = config_with_schema::<K>(&spec, schema)?;
    K::build(spec, config).await
}

impl Spec {
    /// A spec of kind `K` from a typed config, for embedders building plans in code.
    pub fn of<K: Kind>(name: impl Into<String>, config: &K::Config) -> Result<Spec>
    where
        K::Config: Serialize,
    {
        let config = serde_json::to_value(config)
            .map_err(|e| Error::invalid_input(format!("a {} config cannot be written: {e}", K::KIND)))?;
        Ok(Spec::new(K::KIND, name, config))
    }
}

/// Implements [`Kind`] for a component built by `Type::new(name, config)` (`new`) or
/// `Type::connect(name, config).await` (`connect`), both returning `Result<Type>`:
/// the shape most kinds have.
///
/// ```
/// use rollback_core::local::{ReleaseDir, ReleaseDirConfig};
/// // What rollback-core itself writes for the release-dir kind:
/// // rollback_core::impl_kind!(ReleaseDir, "release-dir", ReleaseDirConfig, new);
/// use rollback_core::kind::Kind;
/// assert_eq!(ReleaseDir::KIND, "release-dir");
/// ```
#[macro_export]
macro_rules! impl_kind {
    ($type:ty, $kind:literal, $config:ty, new) => {
        impl $crate::kind::Kind for $type {
            const KIND: &'static str = $kind;
            type Config = $config;
            async fn build(spec: $crate::Spec, config: $config) -> $crate::Result<Self> {
                <$type>::new(&spec.name, config)
            }
        }
    };
    ($type:ty, $kind:literal, $config:ty, connect) => {
        impl $crate::kind::Kind for $type {
            const KIND: &'static str = $kind;
            type Config = $config;
            async fn build(spec: $crate::Spec, config: $config) -> $crate::Result<Self> {
                <$type>::connect(&spec.name, config).await
            }
        }
    };
}
