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

use std::sync::Arc;

use rollback_core::{Registry, Snapshot, Spec, Target, Verifier};

/// Registers this crate's kinds: targets `redis-invalidate`, `s3-restore`, `s3-mirror`;
/// snapshots `s3-version-manifest`, `s3-copy`; verifiers `redis-ping`, `redis-keyspace`,
/// `s3-bucket`. Redis specs take the URL as the secret `url` (or
/// a credential-free config `url`); S3 specs take `client = {endpoint, region, …}`
/// and the secrets `access_key_id` / `secret_access_key`, or use the default AWS chain.
pub fn register(registry: &mut Registry) {
    registry.register_target_kind("redis-invalidate", |spec: Spec| async move {
        let config: redis::RedisInvalidateConfig = spec.config_as()?;
        let conn = redis::RedisConn::from_spec(&spec, &config.conn)?;
        Ok(Arc::new(redis::RedisInvalidate::new(&spec.name, conn, &config)?) as Arc<dyn Target>)
    });
    registry.register_target_kind("s3-restore", |spec: Spec| async move {
        let config: s3::S3RestoreConfig = spec.config_as()?;
        let client = s3::S3::from_spec(&spec, &config.client).await?;
        Ok(Arc::new(s3::S3Restore::new(&spec.name, client, config)?) as Arc<dyn Target>)
    });
    registry.register_target_kind("s3-mirror", |spec: Spec| async move {
        let config: s3::S3MirrorConfig = spec.config_as()?;
        let client = s3::S3::from_spec(&spec, &config.client).await?;
        Ok(Arc::new(s3::S3Mirror::new(&spec.name, client, config)?) as Arc<dyn Target>)
    });
    registry.register_snapshot_kind("s3-version-manifest", |spec: Spec| async move {
        let config: s3::S3VersionManifestConfig = spec.config_as()?;
        let client = s3::S3::from_spec(&spec, &config.client).await?;
        Ok(Arc::new(s3::S3VersionManifest::new(&spec.name, client, config)?) as Arc<dyn Snapshot>)
    });
    registry.register_snapshot_kind("s3-copy", |spec: Spec| async move {
        let config: s3::S3CopyConfig = spec.config_as()?;
        let client = s3::S3::from_spec(&spec, &config.client).await?;
        Ok(Arc::new(s3::S3CopySnapshot::new(&spec.name, client, config)?) as Arc<dyn Snapshot>)
    });
    registry.register_verifier_kind("s3-bucket", |spec: Spec| async move {
        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(flatten)]
            check: s3::BucketCheck,
            #[serde(default)]
            client: s3::S3ClientConfig,
        }
        let config: Config = spec.config_as()?;
        let client = s3::S3::from_spec(&spec, &config.client).await?;
        Ok(Arc::new(s3::S3BucketVerifier::new(&spec.name, client, config.check)) as Arc<dyn Verifier>)
    });
    registry.register_verifier_kind("redis-ping", |spec: Spec| async move {
        let config: redis::RedisConnConfig = if spec.config.is_null() { Default::default() } else { spec.config_as()? };
        let conn = redis::RedisConn::from_spec(&spec, &config)?;
        Ok(Arc::new(redis::RedisPing::new(&spec.name, conn)) as Arc<dyn Verifier>)
    });
    registry.register_verifier_kind("redis-keyspace", |spec: Spec| async move {
        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(flatten)]
            conn: redis::RedisConnConfig,
            #[serde(flatten)]
            check: redis::KeyspaceCheck,
        }
        let config: Config = spec.config_as()?;
        let conn = redis::RedisConn::from_spec(&spec, &config.conn)?;
        Ok(Arc::new(redis::RedisKeyspace::new(&spec.name, conn, config.check)) as Arc<dyn Verifier>)
    });
}
