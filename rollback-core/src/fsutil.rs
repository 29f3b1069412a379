//! File helpers shared by the embedded journal, lock and artifact store.

use serde::{Serialize, de::DeserializeOwned};
use std::fs::OpenOptions;
use std::path::Path;

use crate::{Error, ErrorKind, Result};

pub use crate::artifact::write_private_atomic;

/// Reads a JSON document, lets `f` change it, and writes it back atomically (temp
/// file, fsync, rename) if it changed — all under an exclusive advisory lock on
/// `<path>.lock`, so processes sharing the file see each other's updates in order.
/// A crash at any point leaves the old or the new document, never an empty one.
pub fn update_json_locked<T, R>(path: &Path, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R>
where
    T: Serialize + DeserializeOwned + Default + PartialEq + Clone,
{
    let guard_path = path.with_extension("lock");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let guard = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&guard_path)?;
    guard.lock()?;
    let result = (|| {
        let mut doc: T = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::new(ErrorKind::Corrupt, format!("{} is unreadable: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => T::default(),
            Err(e) => return Err(e.into()),
        };
        let before = doc.clone();
        let out = f(&mut doc)?;
        if doc != before {
            let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| Error::internal(e.to_string()))?;
            write_private_atomic(path, &bytes)?;
        }
        Ok(out)
    })();
    guard.unlock()?;
    result
}
