//! The [`ArtifactStore`] trait and [`LocalDirStore`], the embedded default.

use async_trait::async_trait;
use std::path::{Path, PathBuf};

pub use crate::fsutil::write_private_atomic;
use crate::{Error, Result};

/// Where snapshots and evidence go. Keys are `/`-separated relative paths.
#[async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    /// Writes an artifact atomically (readers never see half of it).
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()>;
    /// Reads an artifact.
    async fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// Keys under a prefix, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Deletes an artifact (no error if absent).
    async fn delete(&self, key: &str) -> Result<()>;
    /// Where a key lives, for people (`/var/lib/rollback/artifacts/…`, `s3://…`).
    fn location(&self, key: &str) -> String;

    /// Whether the artifacts are on this machine only (a directory), so another host
    /// resuming a run could not read its snapshots.
    fn host_local(&self) -> bool {
        false
    }
}

/// Checks an artifact key: relative, `/`-separated, no `..`, no empty parts.
pub fn validate_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && key.split('/').all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\0') && !p.contains('\\'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!("artifact key {key:?} must be a relative path without '..' or empty parts")))
    }
}

/// Artifacts as files under a directory: files 0600, directories 0700, written via a
/// temporary file, fsync and rename.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use rollback_core::{ArtifactStore, LocalDirStore};
/// let dir = tempfile::tempdir().unwrap();
/// let store = LocalDirStore::new(dir.path());
/// store.put("run-1/evidence.txt", b"logs".to_vec()).await.unwrap();
/// assert_eq!(store.get("run-1/evidence.txt").await.unwrap(), b"logs");
/// assert_eq!(store.list("run-1/").await.unwrap(), vec!["run-1/evidence.txt"]);
/// assert!(store.put("../escape", vec![]).await.is_err());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDirStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

#[async_trait]
impl ArtifactStore for LocalDirStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(key)?;
        tokio::task::spawn_blocking(move || write_private_atomic(&path, &bytes))
            .await
            .map_err(|e| Error::internal(format!("artifact writer panicked: {e}")))?
            .map_err(|e| e.with_operation("artifact put").with_context("key", key))
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        tokio::fs::read(&path).await.map_err(|e| Error::from(e).with_operation("artifact get").with_context("key", key))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            collect_keys(&root, &root, &mut keys)?;
            keys.retain(|k| k.starts_with(&prefix));
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| Error::internal(format!("artifact lister panicked: {e}")))?
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::from(e).with_operation("artifact delete")),
        }
    }

    fn host_local(&self) -> bool {
        true
    }

    fn location(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }
}

fn collect_keys(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_keys(root, &path, out)?;
        } else if !entry.file_name().to_string_lossy().starts_with(".tmp-") {
            let rel = path.strip_prefix(root).map_err(|_| Error::internal("artifact outside its root"))?;
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path().join("a"));
        store.put("x/y.json", b"{}".to_vec()).await.unwrap();
        let mode = std::fs::metadata(dir.path().join("a/x/y.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(dir.path().join("a/x")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        store.delete("x/y.json").await.unwrap();
        store.delete("x/y.json").await.unwrap();
        assert!(store.list("").await.unwrap().is_empty());
        assert_eq!(store.get("x/y.json").await.unwrap_err().kind(), ErrorKind::NotFound);
    }

    #[test]
    fn keys_are_checked() {
        for bad in ["", "/abs", "a/../b", "a//b", "./a"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        validate_key("run/step/file.txt").unwrap();
    }
}
