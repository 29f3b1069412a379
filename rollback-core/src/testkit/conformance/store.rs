//! The artifact-store suite.

use crate::{ArtifactStore, ErrorKind};

/// Put, get, overwrite, list under a prefix (sorted), delete (absent is fine), and
/// keys that would escape refused; `prefix` keeps the suite's keys apart.
pub async fn artifact_store_suite(store: &dyn ArtifactStore, prefix: &str) {
    let key = |k: &str| format!("{prefix}/{k}");
    store.put(&key("b/two"), b"2".to_vec()).await.expect("put");
    store.put(&key("a/one"), b"1".to_vec()).await.expect("put");
    store.put(&key("a/one"), b"one".to_vec()).await.expect("overwrite");
    assert_eq!(store.get(&key("a/one")).await.expect("get"), b"one");
    let listed = store.list(&format!("{prefix}/")).await.expect("list");
    assert_eq!(listed, vec![key("a/one"), key("b/two")], "list is sorted and complete");
    let missing = store.get(&key("nope")).await.expect_err("a missing key");
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
    store.delete(&key("b/two")).await.expect("delete");
    store.delete(&key("b/two")).await.expect("deleting an absent key is fine");
    assert_eq!(store.list(&format!("{prefix}/")).await.expect("list"), vec![key("a/one")]);
    for bad in ["../escape", "/absolute", "a//b", "a/./b"] {
        let err = store.put(bad, b"x".to_vec()).await.expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}: {err}");
    }
    assert!(!store.location(&key("a/one")).is_empty(), "a location for people");
    store.delete(&key("a/one")).await.expect("clean up");
}
