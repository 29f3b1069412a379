use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::fsutil::write_private_atomic;
use crate::target::{Capabilities, Observed, Request};
use crate::{
    ArtifactStore, Category, Change, Error, ErrorKind, IdempotencyKey, Identity, Registry, Result, Revision, Snapshot,
    SnapshotRef, Spec, Target, TargetId, Version, prepare_versioned,
};

/// A versioned target whose state lives in files, so separate processes (a killed
/// runner and its resumer) see the same thing. Layout under `dir`:
/// `state.json` (`{version, key}`), `history.json` (newest first), `staged.json`
/// (between the two internal phases of `apply`) and `effects.log`, one line per real
/// state change — what kill-and-resume tests count.
#[derive(Debug)]
pub struct FileTarget {
    name: TargetId,
    dir: PathBuf,
    category: Category,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FileState {
    version: String,
    key: Option<String>,
}

/// A file-backed test target: its state directory, versions and category.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileTargetConfig {
    /// The state directory.
    pub dir: PathBuf,
    /// The versions, oldest first (created on first open).
    #[serde(default)]
    pub versions: Vec<String>,
    /// What kind of thing it stands for.
    #[serde(default = "default_category")]
    pub category: Category,
}

/// A file-backed test snapshot: the target's state directory.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSnapshotConfig {
    /// The target's state directory.
    pub dir: PathBuf,
}

fn default_category() -> Category {
    Category::App
}

impl FileTarget {
    /// Opens the target in `dir`, creating it with `versions` (oldest first, the last
    /// current) if it does not exist yet.
    pub fn open(name: &str, dir: impl Into<PathBuf>, versions: &[&str], category: Category) -> Result<Self> {
        let dir = dir.into();
        if !dir.join("state.json").exists() {
            let current = versions.last().ok_or_else(|| Error::invalid_input("a new file target needs versions"))?;
            let base = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
            let history: Vec<Revision> = versions
                .iter()
                .enumerate()
                .rev()
                .map(|(i, v)| {
                    Revision::new(Version::new(*v), format!("release {v}"))
                        .created_at(base + chrono::TimeDelta::hours(i as i64))
                })
                .collect();
            write_json(&dir.join("history.json"), &history)?;
            write_json(&dir.join("state.json"), &FileState { version: (*current).to_owned(), key: None })?;
        }
        Ok(FileTarget { name: TargetId::new(name), dir, category })
    }

    /// The target's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lines of `effects.log` in `dir`.
    pub fn effects_in(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("effects.log"))
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The current version id in `dir`.
    pub fn current_in(dir: &Path) -> Result<String> {
        Ok(read_json::<FileState>(&dir.join("state.json"))?.version)
    }

    fn state(&self) -> Result<FileState> {
        read_json(&self.dir.join("state.json"))
    }

    fn staged(&self) -> Option<FileState> {
        read_json(&self.dir.join("staged.json")).ok()
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::internal(e.to_string()))?;
    write_private_atomic(path, &bytes)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::from(e).with_context("path", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::new(ErrorKind::Corrupt, format!("{}: {e}", path.display())))
}

#[async_trait]
impl Target for FileTarget {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn host_local(&self) -> bool {
        true
    }

    fn kind(&self) -> &str {
        <Self as crate::kind::Kind>::KIND
    }

    fn category(&self) -> Category {
        self.category
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: true, converges_from_partial: true }
    }

    async fn identity(&self) -> Result<Identity> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&self.dir)?;
        Ok(Identity::new(format!("file:{}@{}:{}", self.dir.display(), meta.dev(), meta.ino())))
    }

    async fn current(&self) -> Result<Version> {
        Ok(Version::new(self.state()?.version))
    }

    async fn history(&self) -> Result<Vec<Revision>> {
        read_json(&self.dir.join("history.json"))
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        match request {
            Request::To(selector) => prepare_versioned(self, selector).await,
            Request::Action { action, params } if action == "set" => {
                let to = params
                    .get("version")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| Error::invalid_input("action \"set\" needs params.version"))?;
                let from = self.current().await?;
                let description = format!("{}: set {from} -> {to}", self.name);
                Ok(Change::new(self.name.clone(), "set", Some(from), Version::new(to)).describe(description))
            }
            Request::Action { action, .. } => {
                Err(Error::new(ErrorKind::Unsupported, format!("file target has no action {action:?}")))
            }
        }
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        let from = change.from.as_ref().ok_or_else(|| Error::invalid_input("file changes need a from"))?;
        let state = self.state()?;
        if state.version == change.to.id && state.key.as_deref() == Some(key.as_str()) {
            return Ok(());
        }
        if state.version != from.id {
            return Err(Error::new(ErrorKind::Conflict, format!("expected {from} but found {}", state.version)));
        }
        // Phase 1: stage. Phase 2: commit, then log the effect.
        let next = FileState { version: change.to.id.clone(), key: Some(key.to_string()) };
        write_json(&self.dir.join("staged.json"), &next)?;
        write_json(&self.dir.join("state.json"), &next)?;
        let _ = std::fs::remove_file(self.dir.join("staged.json"));
        let mut log = std::fs::OpenOptions::new().append(true).create(true).open(self.dir.join("effects.log"))?;
        log.write_all(format!("{key} {} -> {}\n", from.id, change.to.id).as_bytes())?;
        log.sync_all()?;
        Ok(())
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        let state = self.state()?;
        Ok(if state.version == change.to.id && state.key.as_deref() == Some(key.as_str()) {
            Observed::Done
        } else if change.from.as_ref().is_some_and(|f| f.id == state.version) {
            match self.staged() {
                Some(staged) if staged.key.as_deref() == Some(key.as_str()) => {
                    Observed::Partial("staged, not committed".into())
                }
                _ => Observed::NotStarted,
            }
        } else {
            Observed::Diverged(format!("current is {}", state.version))
        })
    }
}

/// Snapshots a [`FileTarget`]'s `state.json` into the artifact store; restore writes it back.
#[derive(Debug)]
pub struct FileSnapshot {
    name: String,
    dir: PathBuf,
}

impl FileSnapshot {
    /// A snapshotter of the file target in `dir`.
    pub fn new(name: &str, dir: impl Into<PathBuf>) -> Self {
        FileSnapshot { name: name.to_owned(), dir: dir.into() }
    }
}

#[async_trait]
impl Snapshot for FileSnapshot {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capture(&self, store: &dyn ArtifactStore, key: &IdempotencyKey) -> Result<SnapshotRef> {
        let bytes = std::fs::read(self.dir.join("state.json"))?;
        let artifact = format!("{}/{}.json", key.as_str().replace('/', "_"), self.name);
        store.put(&artifact, bytes).await?;
        Ok(SnapshotRef {
            snapshot: self.name.clone(),
            artifacts: vec![artifact],
            taken_at: chrono::Utc::now(),
            description: format!("state of {}", self.dir.display()),
            metadata: serde_json::Value::Null,
        })
    }

    async fn restore(&self, snapshot: &SnapshotRef, store: &dyn ArtifactStore) -> Result<()> {
        let artifact = snapshot.artifacts.first().ok_or_else(|| Error::not_found("snapshot has no artifact"))?;
        let bytes = store.get(artifact).await?;
        write_private_atomic(&self.dir.join("state.json"), &bytes)
    }
}

/// Registers the `"file"` target kind (config `{dir, versions, category}`) and the
/// `"file"` snapshot kind (config `{dir}`), so plans and resumes in other processes
/// can build them from specs.
pub fn register_file_kinds(registry: &mut Registry) {
    registry.target_kind::<FileTarget>().snapshot_kind::<FileSnapshot>();
}

impl crate::kind::Kind for FileTarget {
    const KIND: &'static str = "file";
    type Config = FileTargetConfig;
    async fn build(spec: Spec, config: FileTargetConfig) -> Result<Self> {
        let versions: Vec<&str> = config.versions.iter().map(String::as_str).collect();
        FileTarget::open(&spec.name, config.dir, &versions, config.category)
    }
}

impl crate::kind::Kind for FileSnapshot {
    const KIND: &'static str = "file";
    type Config = FileSnapshotConfig;
    async fn build(spec: Spec, config: FileSnapshotConfig) -> Result<Self> {
        Ok(FileSnapshot::new(&spec.name, config.dir))
    }
}
