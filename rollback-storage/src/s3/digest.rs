//! A content digest of a bucket state (key → ETag), updatable one key at a time: the
//! wrapping sum of a 128-bit hash of each (key, ETag) pair. Order-independent, so it
//! is computed while streaming a listing, and history can replace one key's item at a time.

use sha2::{Digest as _, Sha256};

/// The digest of a set of (key, ETag) pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StateDigest {
    sum: u128,
    count: u64,
}

/// The digest item of one (key, ETag) pair.
pub(crate) fn item(key: &str, etag: &str) -> u128 {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update([0u8]);
    h.update(etag.as_bytes());
    let out = h.finalize();
    u128::from_be_bytes(out[..16].try_into().expect("16 bytes"))
}

impl StateDigest {
    /// Adds a present object.
    pub fn add(&mut self, key: &str, etag: Option<&str>) {
        if let Some(etag) = etag {
            self.sum = self.sum.wrapping_add(item(key, etag));
            self.count += 1;
        }
    }

    /// Adds a present object by its precomputed [`item`].
    pub fn add_item(&mut self, item: Option<u128>) {
        if let Some(item) = item {
            self.sum = self.sum.wrapping_add(item);
            self.count += 1;
        }
    }

    /// Removes a present object added before by its [`item`].
    pub fn remove_item(&mut self, item: Option<u128>) {
        if let Some(item) = item {
            self.sum = self.sum.wrapping_sub(item);
            self.count -= 1;
        }
    }

    /// The version id of this state (`s3state:<hex>:<objects>`).
    pub fn id(&self) -> String {
        format!("s3state:{:032x}:{}", self.sum, self.count)
    }

    /// The number of objects.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent() {
        let mut a = StateDigest::default();
        a.add("x", Some("1"));
        a.add("y", Some("2"));
        a.add("z", None);
        let mut b = StateDigest::default();
        b.add("y", Some("2"));
        b.add("x", Some("1"));
        assert_eq!(a, b);
        assert_eq!(a.count(), 2);
        b.add("x", Some("1"));
        assert_ne!(a.id(), b.id());
        b.remove_item(Some(item("x", "1")));
        assert_eq!(a, b, "items and (key, etag) pairs agree");
    }
}
