//! Storage backend for `rollback`: Redis cache invalidation and lock, S3 bucket restore.
//!
//! - [`redis`]: [`redis::RedisInvalidate`] (kind `redis-invalidate`) drops a cache by
//!   `FLUSHDB ASYNC` or by `SCAN` + `UNLINK` in batches — never `KEYS`, never a
//!   blocking flush; [`redis::RedisLock`] implements [`rollback_core::Lock`] with
//!   fencing tokens; `PING` and `INFO keyspace` verifiers.
//! - [`s3`]: [`s3::S3Restore`] (kind `s3-restore`) restores a bucket or prefix to a
//!   point in time from its versions, idempotently and without destroying a version;
//!   [`s3::S3Mirror`] (kind `s3-mirror`) restores it from a backup prefix (`mc mirror`);
//!   snapshots [`s3::S3VersionManifest`] (kind `s3-version-manifest`: key → version id,
//!   cheap) and [`s3::S3CopySnapshot`] (kind `s3-copy`: a server-side copy);
//!   [`s3::S3ArtifactStore`] keeps evidence in a bucket with retention that spares
//!   unfinished runs; [`s3::S3BucketVerifier`] checks reachability and object counts.
//!
//! Errors from both clients are mapped to [`rollback_core::Error`] in one module.

mod error;
pub mod redis;
pub mod s3;

use rollback_core::kind::Kind;
use rollback_core::{Registry, Result, Spec};

/// Registers this crate's kinds: targets `redis-invalidate`, `s3-restore`, `s3-mirror`;
/// snapshots `s3-version-manifest`, `s3-copy`; verifiers `redis-ping`, `redis-keyspace`,
/// `s3-bucket`. Redis specs take the URL as the secret `url` (or
/// a credential-free config `url`); S3 specs take `client = {endpoint, region, …}`
/// and the secrets `access_key_id` / `secret_access_key`, or use the default AWS chain.
pub fn register(registry: &mut Registry) {
    registry.target_kind::<redis::RedisInvalidate>().target_kind::<s3::S3Restore>().target_kind::<s3::S3Mirror>();
    registry.snapshot_kind::<s3::S3VersionManifest>().snapshot_kind::<s3::S3CopySnapshot>();
    registry
        .verifier_kind::<s3::S3BucketVerifier>()
        .verifier_kind::<redis::RedisPing>()
        .verifier_kind::<redis::RedisKeyspace>();
}

impl Kind for redis::RedisInvalidate {
    const KIND: &'static str = "redis-invalidate";
    type Config = redis::RedisInvalidateConfig;
    async fn build(spec: Spec, config: Self::Config) -> Result<Self> {
        let conn = redis::RedisConn::from_spec(&spec, &config.conn)?;
        redis::RedisInvalidate::new(&spec.name, conn, &config)
    }
}

impl Kind for redis::RedisPing {
    const KIND: &'static str = "redis-ping";
    type Config = redis::RedisConnConfig;
    async fn build(spec: Spec, config: Self::Config) -> Result<Self> {
        Ok(redis::RedisPing::new(&spec.name, redis::RedisConn::from_spec(&spec, &config)?))
    }
}

impl Kind for redis::RedisKeyspace {
    const KIND: &'static str = "redis-keyspace";
    type Config = redis::RedisKeyspaceConfig;
    async fn build(spec: Spec, config: Self::Config) -> Result<Self> {
        let conn = redis::RedisConn::from_spec(&spec, &config.conn)?;
        Ok(redis::RedisKeyspace::new(&spec.name, conn, config.check))
    }
}

/// The S3 kinds: a client from the spec (`client` config and credential secrets),
/// then the component from its config.
macro_rules! s3_kind {
    ($type:ty, $kind:literal, $config:ty, $make:expr) => {
        impl Kind for $type {
            const KIND: &'static str = $kind;
            type Config = $config;
            async fn build(spec: Spec, config: $config) -> Result<Self> {
                let client = s3::S3::from_spec(&spec, &config.client).await?;
                $make(&spec.name, client, config)
            }
        }
    };
}

s3_kind!(s3::S3Restore, "s3-restore", s3::S3RestoreConfig, s3::S3Restore::new);
s3_kind!(s3::S3Mirror, "s3-mirror", s3::S3MirrorConfig, s3::S3Mirror::new);
s3_kind!(s3::S3VersionManifest, "s3-version-manifest", s3::S3VersionManifestConfig, s3::S3VersionManifest::new);
s3_kind!(s3::S3CopySnapshot, "s3-copy", s3::S3CopyConfig, s3::S3CopySnapshot::new);
s3_kind!(
    s3::S3BucketVerifier,
    "s3-bucket",
    s3::S3BucketVerifierConfig,
    |name: &str, client, config: s3::S3BucketVerifierConfig| {
        Ok(s3::S3BucketVerifier::new(name, client, config.check))
    }
);
