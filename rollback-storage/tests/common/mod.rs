//! Helpers shared by the S3 integration tests: a client for the test server, versioned
//! buckets, writes, and the independent boto3 oracle (tests/s3_oracle.py).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use chrono::Utc;
use rollback_core::testkit::server_env;
use rollback_storage::s3::{S3, S3ClientConfig, S3Credentials};

pub struct Env {
    pub endpoint: String,
    pub python: String,
}

pub fn env() -> Option<Env> {
    let endpoint = server_env("ROLLBACK_TEST_S3_ENDPOINT", "S3 (moto_server)")?;
    let python = server_env("ROLLBACK_TEST_BOTO3_PYTHON", "the boto3 oracle")?;
    Some(Env { endpoint, python })
}

pub async fn client(endpoint: &str, timeout: Option<Duration>, attempts: Option<u32>) -> S3 {
    let config =
        S3ClientConfig { endpoint: Some(endpoint.to_owned()), timeout, max_attempts: attempts, ..Default::default() };
    S3::connect(&config, Some(S3Credentials::new("test", "test"))).await.unwrap()
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid_like()[..12])
}

pub fn uuid_like() -> String {
    format!("{:x}{:x}", Utc::now().timestamp_nanos_opt().unwrap(), std::process::id())
        .chars()
        .rev()
        .collect::<String>()
        .to_ascii_lowercase()
}

pub async fn make_bucket(s3: &S3, bucket: &str) {
    s3.create_versioned_bucket(bucket).await.unwrap();
}

pub async fn put(s3: &S3, bucket: &str, key: &str, body: &str) {
    s3.client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("text/plain")
        .metadata("owner", "fixture")
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await
        .unwrap();
}

pub async fn put_all(s3: &S3, bucket: &str, keys: &[String], body: &str) {
    use futures::StreamExt;
    futures::stream::iter(keys).for_each_concurrent(8, |k| put(s3, bucket, k, body)).await;
}

/// The content of a key's current object.
pub async fn body(s3: &S3, bucket: &str, key: &str) -> String {
    let out = s3.client().get_object().bucket(bucket).key(key).send().await.unwrap();
    String::from_utf8(out.body.collect().await.unwrap().into_bytes().to_vec()).unwrap()
}

/// The `rollback-restore` tag of a key's current object.
pub async fn tag(s3: &S3, bucket: &str, key: &str) -> Option<String> {
    let tags = s3.client().get_object_tagging().bucket(bucket).key(key).send().await.unwrap();
    tags.tag_set().iter().find(|t| t.key() == rollback_storage::s3::TAG_RESTORE).map(|t| t.value().to_owned())
}

pub async fn del(s3: &S3, bucket: &str, key: &str) {
    s3.client().delete_object().bucket(bucket).key(key).send().await.unwrap();
}

/// Waits until the wall clock is in a new second (LastModified has 1 s resolution).
pub async fn next_second() {
    let now = Utc::now();
    let ms = 1000 - (now.timestamp_subsec_millis() as u64) + 50;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[derive(serde::Deserialize)]
pub struct Oracle {
    pub state_at_t: BTreeMap<String, String>,
    pub current: BTreeMap<String, String>,
    pub versions: BTreeMap<String, Vec<String>>,
    pub total_versions: usize,
}

pub fn oracle(env: &Env, endpoint: &str, bucket: &str, prefix: &str, t_ms: i64) -> Oracle {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3_oracle.py");
    let out = std::process::Command::new(&env.python)
        .args([script, endpoint, bucket, prefix, &t_ms.to_string()])
        .output()
        .expect("run the boto3 oracle");
    assert!(out.status.success(), "oracle failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("oracle json")
}

pub fn all_version_ids(o: &Oracle) -> BTreeSet<String> {
    o.versions.values().flatten().cloned().collect()
}
