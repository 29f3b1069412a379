use async_trait::async_trait;
use serde::Deserialize;
use std::path::PathBuf;

use crate::{ArtifactStore, Error, IdempotencyKey, Result, Snapshot, SnapshotRef};

/// Configuration of a [`FilesEvidence`] snapshot.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesEvidenceConfig {
    /// Files to keep (a compose file, `.env`, nginx.conf, a release's manifest).
    pub paths: Vec<PathBuf>,
    /// Replace the values of `KEY=value` lines whose key looks secret
    /// (`*PASSWORD*`, `*SECRET*`, `*TOKEN*`, `*KEY*`) by `***` (on by default).
    #[serde(default = "yes")]
    pub redact_env: bool,
}

fn yes() -> bool {
    true
}

/// Evidence before a rollback: copies files into the artifact store under the run's
/// key, with secret-looking `.env` values redacted. Missing files are noted, not fatal.
#[derive(Debug)]
pub struct FilesEvidence {
    name: String,
    config: FilesEvidenceConfig,
}

impl FilesEvidence {
    /// An evidence snapshotter.
    pub fn new(name: &str, config: FilesEvidenceConfig) -> Result<Self> {
        if config.paths.is_empty() {
            return Err(Error::invalid_input(format!("evidence {name:?} lists no paths")));
        }
        Ok(FilesEvidence { name: name.to_owned(), config })
    }
}

/// Redacts values of secret-looking keys in `KEY=value` lines, and passwords inside
/// URLs anywhere (`postgres://app:***@db/app`).
///
/// ```
/// use rollback_core::local::redact_env;
/// let text = "PORT=8080\nDB_PASSWORD=hunter2\nexport API_TOKEN=abc\n# SECRET=comment\n";
/// assert_eq!(redact_env(text), "PORT=8080\nDB_PASSWORD=***\nexport API_TOKEN=***\n# SECRET=comment\n");
/// assert_eq!(redact_env("DATABASE_URL=postgres://app:hunter2@db:5432/app"), "DATABASE_URL=postgres://app:***@db:5432/app");
/// ```
pub fn redact_env(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let body = trimmed.strip_prefix("export ").unwrap_or(trimmed);
        let secret = !trimmed.starts_with('#') && body.split_once('=').is_some_and(|(k, _)| secret_looking(k));
        if secret {
            let (key, _) = line.split_once('=').unwrap_or((line, ""));
            out.push_str(key);
            out.push_str("=***");
            if line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(&redact_url_passwords(line));
        }
    }
    out
}

/// Whether a variable or flag name looks like it holds a secret (`DB_PASSWORD`,
/// `--api-token`, `aws_secret_access_key`). Broad on purpose: a false positive only
/// hides a value from evidence. (Spec validation, which refuses config, uses a
/// narrower list so that keys like `key` stay usable.)
fn secret_looking(name: &str) -> bool {
    let name = name.trim().trim_start_matches('-').to_ascii_uppercase().replace('-', "_");
    ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL"].iter().any(|s| name.contains(s))
}

/// Redacts secrets in a command line (a container's command, entrypoint or args):
/// the value of a secret-looking flag (`--password=x`, `--token x`), a secret-looking
/// `KEY=value`, an `Authorization:` header value, URL passwords in any argument, and
/// the same inside an argument that is itself a command line (`sh -c "app --token x"`).
///
/// ```
/// use rollback_core::local::redact_args;
/// let args = ["serve", "--db-password=hunter2", "--api-token", "abc", "AWS_SECRET_KEY=s", "--url=postgres://u:p@db/x", "--port", "80"];
/// assert_eq!(
///     redact_args(&args),
///     ["serve", "--db-password=***", "--api-token", "***", "AWS_SECRET_KEY=***", "--url=postgres://u:***@db/x", "--port", "80"],
/// );
/// assert_eq!(redact_args(&["sh", "-c", "exec app --token abc"]), ["sh", "-c", "exec app --token ***"]);
/// assert_eq!(redact_args(&["-H", "Authorization: Bearer abc"]), ["-H", "Authorization: ***"]);
/// assert_eq!(redact_args(&["curl -H 'Authorization: Bearer abc' web"]), ["curl -H 'Authorization: *** ***' web"]);
/// ```
pub fn redact_args<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = 0;
    for arg in args {
        let arg = arg.as_ref();
        let bare = arg.trim_matches(['\'', '"']);
        if hide_next > 0 && !arg.starts_with('-') {
            hide_next -= 1;
            // Keep a closing quote, so a command line stays readable.
            out.push(format!("***{}", if arg.ends_with(['\'', '"']) { &arg[arg.len() - 1..] } else { "" }));
            continue;
        }
        hide_next = 0;
        if bare.eq_ignore_ascii_case("authorization:") {
            // `-H "Authorization: Bearer x"` split into words: the scheme and the credentials.
            hide_next = 2;
            out.push(arg.to_owned());
        } else if bare.get(..14).is_some_and(|p| p.eq_ignore_ascii_case("authorization:")) {
            out.push("Authorization: ***".to_owned());
        } else if arg.contains(char::is_whitespace) {
            // A command line in one argument: redact its words the same way.
            let words: Vec<&str> = arg.split_whitespace().collect();
            out.push(redact_args(&words).join(" "));
        } else {
            match arg.split_once('=') {
                Some((name, _)) if secret_looking(name) => out.push(format!("{}=***", redact_url_passwords(name))),
                None if arg.starts_with('-') && secret_looking(arg) => {
                    hide_next = 1;
                    out.push(arg.to_owned());
                }
                _ => out.push(redact_url_passwords(arg).into_owned()),
            }
        }
    }
    out
}

/// [`redact_args`] on a JSON array of strings, in place (other values are left).
pub fn redact_args_json(value: &mut serde_json::Value) {
    if let Some(items) = value.as_array_mut()
        && items.iter().all(serde_json::Value::is_string)
    {
        let texts: Vec<&str> = items.iter().filter_map(serde_json::Value::as_str).collect();
        let redacted = redact_args(&texts);
        *items = redacted.into_iter().map(serde_json::Value::String).collect();
    }
}

/// `scheme://user:password@`: the one pattern for URL passwords (the password stops
/// at `@`, whitespace or `/`, which a URL must escape in its user info).
static URL_PASSWORD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@\s/]*@").expect("a valid pattern")
});

/// Replaces the password of every `scheme://user:password@` in `text` with `***`.
fn redact_url_passwords(text: &str) -> std::borrow::Cow<'_, str> {
    URL_PASSWORD.replace_all(text, "${1}:***@")
}

/// Whether `text` holds a URL with a password anywhere.
pub(crate) fn has_url_password(text: &str) -> bool {
    URL_PASSWORD.is_match(text)
}

#[async_trait]
impl Snapshot for FilesEvidence {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capture(&self, store: &dyn ArtifactStore, key: &IdempotencyKey) -> Result<SnapshotRef> {
        let prefix = key.as_str().replace('/', "_");
        let mut artifacts = Vec::new();
        let mut missing = Vec::new();
        for path in &self.config.paths {
            let bytes = match tokio::fs::read(path).await {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    missing.push(path.display().to_string());
                    continue;
                }
                Err(e) => return Err(Error::from(e).with_context("path", path.display())),
            };
            let bytes =
                if self.config.redact_env { redact_env(&String::from_utf8_lossy(&bytes)).into_bytes() } else { bytes };
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
            let artifact = format!("{prefix}/{}/{}-{name}", self.name, artifacts.len());
            store.put(&artifact, bytes).await?;
            artifacts.push(artifact);
        }
        Ok(SnapshotRef {
            snapshot: self.name.clone(),
            description: format!(
                "{} file(s) kept as evidence{}",
                artifacts.len(),
                if missing.is_empty() { String::new() } else { format!("; missing: {}", missing.join(", ")) }
            ),
            artifacts,
            taken_at: chrono::Utc::now(),
            metadata: serde_json::json!({ "missing": missing }),
        })
    }
}
