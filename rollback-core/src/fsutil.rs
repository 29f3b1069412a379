//! File helpers shared by the embedded journal, lock and artifact store.

use serde::{Serialize, de::DeserializeOwned};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{Error, ErrorKind, Result};

/// Runs short blocking file I/O (a journal append, an fsync) on the current worker.
/// On a multi-threaded runtime it tells tokio first (`block_in_place`), so other tasks
/// move to other workers; a thread hand-off per append (`spawn_blocking`) costs more
/// than the append itself on small VMs. On a current-thread runtime it just runs.
pub(crate) fn run_blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// What identifies one version of a file: replaced files get a new inode.
type Stamp = (u64, i64, i64, u64);

/// The open lock file and the cached document with the stamp it was read at.
type Handle<T> = (Option<File>, Option<(Stamp, T)>);

/// A small JSON document shared by processes: read, changed and replaced atomically
/// (temp file, fsync, rename) under an exclusive advisory lock on `<path>.lock`. A
/// crash at any point leaves the old or the new document, never an empty one. The
/// parsed document is cached and re-read only when the file changed (another inode,
/// mtime or size), so an unchanged check costs a lock and a `stat`.
#[derive(Debug)]
pub(crate) struct SharedJson<T> {
    path: PathBuf,
    state: Mutex<Handle<T>>,
    /// Whether a write is fsync'd (see [`SharedJson::process_scoped`]).
    durable: bool,
}

impl<T> SharedJson<T>
where
    T: Serialize + DeserializeOwned + Default,
{
    pub(crate) fn new(path: PathBuf) -> Self {
        SharedJson { path, state: Mutex::new((None, None)), durable: true }
    }

    /// A document whose contents only matter to processes running now (the journal's
    /// fence table: it stops a live writer that lost its lease). It is replaced
    /// atomically (rename) but not fsync'd: a process crash keeps it (the page cache
    /// survives), and a machine crash, which may lose or tear it, ends every process
    /// it guards against — so a torn copy reads as empty, with a warning.
    pub(crate) fn process_scoped(path: PathBuf) -> Self {
        SharedJson { path, state: Mutex::new((None, None)), durable: false }
    }

    fn stamp(path: &Path) -> Result<Option<Stamp>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some((m.ino(), m.mtime(), m.mtime_nsec(), m.size()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Lets `f` read and change the document in place, under the lock; `f` also learns
    /// whether the document was re-read because someone else changed it since this
    /// handle last saw it. `f` returns its result and whether it changed the document,
    /// which is then written back. If `f` fails, the cached copy is dropped (it may be
    /// half-changed) and re-read next time.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut T, bool) -> Result<(R, bool)>) -> Result<R> {
        let mut state = self.state.lock().map_err(|_| Error::internal("shared json mutex poisoned"))?;
        let (guard, cache) = &mut *state;
        if guard.is_none() {
            if let Some(parent) = self.path.parent() {
                std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
                    .create(parent)?;
            }
            let lock_path = self.path.with_extension("lock");
            *guard = Some(
                std::os::unix::fs::OpenOptionsExt::mode(
                    OpenOptions::new().read(true).write(true).create(true).truncate(false),
                    0o600,
                )
                .open(lock_path)?,
            );
        }
        let guard = guard.as_ref().ok_or_else(|| Error::internal("guard file missing"))?;
        guard.lock()?;
        let result = (|| {
            let stamp = Self::stamp(&self.path)?;
            let fresh = match (stamp, cache.as_ref()) {
                (Some(now), Some((seen, _))) => now != *seen,
                _ => true,
            };
            if fresh {
                let doc = match stamp {
                    None => T::default(),
                    Some(_) => match serde_json::from_slice(&std::fs::read(&self.path)?) {
                        Ok(doc) => doc,
                        Err(e) if !self.durable => {
                            tracing::warn!(path = %self.path.display(), error = %e, "torn after a machine crash? read as empty");
                            T::default()
                        }
                        Err(e) => {
                            return Err(Error::new(
                                ErrorKind::Corrupt,
                                format!("{} is unreadable: {e}", self.path.display()),
                            ));
                        }
                    },
                };
                *cache = Some(((0, 0, 0, 0), doc));
            }
            let (_, doc) = cache.as_mut().ok_or_else(|| Error::internal("cache missing"))?;
            let (out, changed) = match f(doc, fresh) {
                Ok(outcome) => outcome,
                Err(err) => {
                    *cache = None;
                    return Err(err);
                }
            };
            let stamp = if changed {
                let bytes = serde_json::to_vec_pretty(&*doc).map_err(|e| Error::internal(e.to_string()))?;
                if self.durable {
                    write_private_atomic(&self.path, &bytes)?;
                } else {
                    replace_private(&self.path, &bytes)?;
                }
                Self::stamp(&self.path)?
            } else {
                stamp
            };
            match (stamp, cache.as_mut()) {
                (Some(stamp), Some(entry)) => entry.0 = stamp,
                _ => *cache = None,
            }
            Ok(out)
        })();
        guard.unlock()?;
        result
    }
}

/// Writes `bytes` to `path` atomically with mode 0600, creating parents with 0700.
/// Used for artifacts and for the file-based targets' state.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let (tmp, mut file, parent) = private_temp(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(parent)?
        .sync_all()
        .map_err(|e| Error::new(ErrorKind::Backend, "fsync of directory failed").with_source(e))
}

/// Replaces `path` atomically for readers (temp file + rename), without fsync.
fn replace_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let (tmp, mut file, _) = private_temp(path)?;
    file.write_all(bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A fresh private temp file beside `path` (parents created 0700).
fn private_temp(path: &Path) -> Result<(PathBuf, File, &Path)> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let parent = path.parent().ok_or_else(|| Error::invalid_input("artifact path has no parent"))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
    let name = path.file_name().ok_or_else(|| Error::invalid_input("artifact path has no file name"))?;
    let tmp = parent.join(format!(".tmp-{}-{}", std::process::id(), name.to_string_lossy()));
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    Ok((tmp, file, parent))
}
