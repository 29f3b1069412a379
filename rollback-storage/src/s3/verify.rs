//! S3 verifiers (kind `s3-bucket`): the bucket is reachable, and optionally the number
//! of current objects under a prefix is within bounds. MinIO's `/minio/health/live`
//! is checked with core's `http` verifier.

use async_trait::async_trait;
use rollback_core::{Check, Outcome, Result, Verifier};
use serde::{Deserialize, Serialize};
use std::time::Instant;

use super::S3;
use super::listing::for_each_current;

/// Config of an `s3-bucket` verifier: what it checks and the client.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct S3BucketVerifierConfig {
    /// What it checks.
    #[serde(flatten)]
    pub check: BucketCheck,
    /// The client (endpoint, region, path style).
    #[serde(default)]
    pub client: super::S3ClientConfig,
}

/// What an `s3-bucket` verifier checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BucketCheck {
    /// The bucket.
    pub bucket: String,
    /// Count objects under this prefix (only when a bound is set).
    #[serde(default)]
    pub prefix: String,
    /// Fail below this many objects.
    #[serde(default)]
    pub min_objects: Option<u64>,
    /// Fail above this many objects.
    #[serde(default)]
    pub max_objects: Option<u64>,
}

/// Checks a bucket with `HeadBucket` and, when bounds are set, counts objects.
#[derive(Debug)]
pub struct S3BucketVerifier {
    name: String,
    s3: S3,
    check: BucketCheck,
}

impl S3BucketVerifier {
    /// A bucket verifier.
    pub fn new(name: &str, s3: S3, check: BucketCheck) -> Self {
        S3BucketVerifier { name: name.to_owned(), s3, check }
    }
}

#[async_trait]
impl Verifier for S3BucketVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        let started = Instant::now();
        let c = &self.check;
        if let Err(e) = self.s3.client().head_bucket().bucket(&c.bucket).send().await {
            let e = crate::error::s3("head bucket", e);
            return Ok(Check::new(Outcome::Fail, format!("bucket {} not reachable: {e}", c.bucket)));
        }
        let mut check = if c.min_objects.is_some() || c.max_objects.is_some() {
            let mut n = 0u64;
            for_each_current(&self.s3, &c.bucket, &c.prefix, |_, _| {
                n += 1;
                Ok(())
            })
            .await?;
            let bad = c.min_objects.is_some_and(|m| n < m) || c.max_objects.is_some_and(|m| n > m);
            Check::new(if bad { Outcome::Fail } else { Outcome::Pass }, format!("{n} objects under {:?}", c.prefix))
                .measure("objects", n as f64)
        } else {
            Check::new(Outcome::Pass, format!("bucket {} reachable", c.bucket))
        };
        check.latency = started.elapsed();
        Ok(check)
    }
}
