//! Specs: how a plan file, the Python binding and `resume` in a fresh process
//! describe a component (target, verifier, snapshotter) so the [`crate::Registry`]
//! can build the same one again. Secrets are references, never values.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::{Error, Result};

/// A component described by kind, name, config and secret references.
///
/// ```
/// use rollback_core::{SecretRef, Spec};
/// let mut spec = Spec::new("postgres", "orders-db", serde_json::json!({"host": "127.0.0.1"}));
/// spec.secrets.insert("password".into(), SecretRef::Env { var: "PGPASSWORD".into() });
/// spec.validate().unwrap();
///
/// // A secret value in config is refused.
/// let bad = Spec::new("postgres", "db", serde_json::json!({"password": "hunter2"}));
/// assert!(bad.validate().unwrap_err().to_string().contains("secrets"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The factory to use (`"release-dir"`, `"docker-service"`, `"http"`).
    pub kind: String,
    /// The name steps refer to; unique among components of the same role.
    pub name: String,
    /// Kind-specific configuration (no secrets).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub config: serde_json::Value,
    /// Secrets the component needs, by reference.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRef>,
}

/// A spec that builds a target.
pub type TargetSpec = Spec;

/// Config keys that must never hold a literal value in a spec.
const SECRET_LOOKING_KEYS: &[&str] = &["password", "passwd", "secret", "token", "api_key", "apikey", "private_key"];

impl Spec {
    /// A spec with no secrets.
    pub fn new(kind: impl Into<String>, name: impl Into<String>, config: serde_json::Value) -> Self {
        Spec { kind: kind.into(), name: name.into(), config, secrets: BTreeMap::new() }
    }

    /// Refuses empty kinds and names and config keys that look like secrets holding values.
    pub fn validate(&self) -> Result<()> {
        if self.kind.trim().is_empty() || self.name.trim().is_empty() {
            return Err(Error::invalid_input("a spec needs a non-empty kind and name").with_context("spec", &self.name));
        }
        if let Some(path) = find_secret_value(&self.config, String::new()) {
            return Err(Error::invalid_input(format!(
                "config key {path:?} looks like a secret with a literal value; put it under `secrets` \
                 as a reference (env var or file) instead"
            ))
            .with_context("spec", &self.name));
        }
        if let Some(path) = find_url_with_password(&self.config, String::new()) {
            return Err(Error::invalid_input(format!(
                "config key {path:?} holds a URL with a password; put the URL under `secrets` as a \
                 reference (env var or file) instead"
            ))
            .with_context("spec", &self.name));
        }
        Ok(())
    }

    /// Resolves one secret reference by name.
    pub fn secret(&self, name: &str) -> Result<Secret> {
        self.secrets
            .get(name)
            .ok_or_else(|| {
                Error::invalid_input(format!("spec {:?} has no secret named {name:?}", self.name))
                    .with_context("spec", &self.name)
            })?
            .resolve()
    }

    /// The URL a component connects to, by the one rule every kind follows: config
    /// `url` (passed here; empty when not given) or the secret `url` (for a URL with
    /// credentials, which config must not hold) — one of the two, not both.
    ///
    /// ```
    /// use rollback_core::{SecretRef, Spec};
    /// let mut spec = Spec::new("http", "api", serde_json::json!({}));
    /// assert_eq!(spec.url("http://127.0.0.1/health").unwrap().expose(), "http://127.0.0.1/health");
    /// assert!(spec.url("").is_err());
    /// spec.secrets.insert("url".into(), SecretRef::Env { var: "PATH".into() });
    /// assert!(spec.url("http://127.0.0.1/health").is_err(), "both");
    /// ```
    pub fn url(&self, config_url: &str) -> Result<Secret> {
        match (config_url.is_empty(), self.secrets.contains_key("url")) {
            (false, false) => Ok(Secret::new(config_url)),
            (true, true) => self.secret("url"),
            (false, true) => Err(Error::invalid_input("give the URL as config `url` or as `secrets.url`, not both")
                .with_context("spec", &self.name)),
            (true, false) => {
                Err(Error::invalid_input("needs a `url` (config) or `secrets.url`").with_context("spec", &self.name))
            }
        }
    }

    /// Deserializes `config` into a typed struct, naming the spec on error.
    ///
    /// A spec without config reads as `{}`, so kinds whose fields all have defaults (or
    /// come from `secrets`) need none.
    pub fn config_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        if self.config.is_null()
            && let Ok(value) = serde_json::from_value(serde_json::Value::Object(Default::default()))
        {
            return Ok(value);
        }
        serde_json::from_value(self.config.clone()).map_err(|e| {
            Error::invalid_input(format!("bad config for {} {:?}: {e}", self.kind, self.name))
                .with_context("spec", &self.name)
        })
    }
}

fn find_secret_value(value: &serde_json::Value, path: String) -> Option<String> {
    match value {
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let key_path = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            let lower = k.to_ascii_lowercase();
            if SECRET_LOOKING_KEYS.iter().any(|s| lower == *s || lower.ends_with(&format!("_{s}")))
                && v.as_str().is_some_and(|s| !s.is_empty())
            {
                Some(key_path)
            } else {
                find_secret_value(v, key_path)
            }
        }),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| find_secret_value(v, format!("{path}[{i}]")))
        }
        _ => None,
    }
}

/// The path of the first string in `value` that is a URL with a password
/// (`scheme://user:password@host…`).
fn find_url_with_password(value: &serde_json::Value, path: String) -> Option<String> {
    match value {
        serde_json::Value::String(text) => crate::local::has_url_password(text).then_some(path),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            find_url_with_password(v, if path.is_empty() { k.clone() } else { format!("{path}.{k}") })
        }),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| find_url_with_password(v, format!("{path}[{i}]")))
        }
        _ => None,
    }
}

/// Where a secret lives. Journaled and printed freely: it holds no value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum SecretRef {
    /// An environment variable.
    Env {
        /// Its name.
        var: String,
    },
    /// A file (trailing newline trimmed).
    File {
        /// Its path.
        path: PathBuf,
    },
}

impl SecretRef {
    /// Reads the secret.
    pub fn resolve(&self) -> Result<Secret> {
        match self {
            SecretRef::Env { var } => std::env::var(var).map(Secret).map_err(|_| {
                Error::invalid_input(format!("secret environment variable {var} is not set"))
                    .with_operation("resolve secret")
            }),
            SecretRef::File { path } => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|e| {
                    Error::invalid_input(format!("secret file {} cannot be read", path.display()))
                        .with_operation("resolve secret")
                        .with_source(e)
                }),
        }
    }
}

/// A secret value. Its `Debug` and `Display` never show it, and it does not serialize.
///
/// ```
/// use rollback_core::Secret;
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value — pass it straight to the client that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_secret_values_are_refused() {
        let spec = Spec::new("x", "y", serde_json::json!({"conn": {"db_password": "p"}}));
        let err = spec.validate().unwrap_err();
        assert!(err.to_string().contains("conn.db_password"), "{err}");
        assert!(!err.to_string().contains("\"p\""));
        // An empty value or a non-string is not a secret value.
        Spec::new("x", "y", serde_json::json!({"token": ""})).validate().unwrap();
    }

    #[test]
    fn urls_with_passwords_are_refused_without_echoing_them() {
        let spec = Spec::new(
            "http",
            "api",
            serde_json::json!({"checks": [{"url": "https://ops:hunter2@api.example/health"}]}),
        );
        let err = spec.validate().unwrap_err();
        assert!(err.to_string().contains("checks[0].url") && err.to_string().contains("password"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        // A user without a password, an '@' in a path or query, and plain text pass.
        for fine in
            ["postgres://postgres@127.0.0.1:5432/db", "https://api.example/users/@me?mail=a@b:c", "not a url: x@y"]
        {
            Spec::new("x", "y", serde_json::json!({ "url": fine })).validate().unwrap();
        }
    }

    #[test]
    fn secret_refs_resolve_and_errors_hide_nothing_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "value\n").unwrap();
        assert_eq!(SecretRef::File { path }.resolve().unwrap().expose(), "value");
        let err = SecretRef::Env { var: "ROLLBACK_TEST_UNSET_VAR_XYZ".into() }.resolve().unwrap_err();
        assert!(err.to_string().contains("ROLLBACK_TEST_UNSET_VAR_XYZ"));
    }
}
