//! rollback-storage side by side:
//!
//! (a) point-in-time restore of N objects (default 10,000) on the S3 server of
//!     ROLLBACK_TEST_S3_ENDPOINT — this library (prepare + apply, 16 parallel copies)
//!     against a sequential boto3 restore (`benches/storage_boto3.py`, THREADS=1) and
//!     the server's ceiling measured with boto3 in 16 threads; each on its own bucket
//!     with the same fixture;
//! (b) peak memory (VmHWM of a child process doing only prepare + apply) at 1k and
//!     10k objects (100k with ROLLBACK_BENCH_100K=1: the fixture alone takes minutes),
//!     restoring first 10 keys (the listing streams, so this should
//!     stay flat) and then every key (the journaled per-key plan grows with it);
//! (c) pattern invalidation of 1,000,000 Redis keys (ROLLBACK_TEST_REDIS_URL, db 11):
//!     PING latency from a second connection every 10 ms while SCAN + UNLINK runs,
//!     against `KEYS` + `DEL`.
//!
//! ```text
//! cargo bench -p rollback-benches --bench storage            # full (minutes)
//! ROLLBACK_BENCH_100K=1 cargo bench -p rollback-benches --bench storage  # + 100k memory point (10 keys only)
//! cargo bench -p rollback-benches --bench storage -- --test  # smoke: small sizes; skips without servers
//! ROLLBACK_BENCH_PARTS=b ROLLBACK_BENCH_MEMORY_SIZES=100000 cargo bench -p rollback-benches --bench storage
//!                                  # only part (b), only at 100k objects; with ROLLBACK_BENCH_FEW_ONLY=1
//!                                  # one version per key and only the small restore (minutes, not an hour)
//! ```

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;
use rollback_core::testkit::RecordingProxy;
use rollback_core::{IdempotencyKey, Request, Target};
use rollback_storage::redis::{Invalidation, RedisConn, RedisInvalidate, RedisInvalidateConfig};
use rollback_storage::s3::{S3, S3ClientConfig, S3Credentials, S3Restore, S3RestoreConfig};

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

async fn client(endpoint: &str) -> S3 {
    let config = S3ClientConfig { endpoint: Some(endpoint.into()), ..Default::default() };
    S3::connect(&config, Some(S3Credentials::new("test", "test"))).await.unwrap()
}

async fn next_second() {
    let ms = 1000 - chrono::Utc::now().timestamp_subsec_millis() as u64 + 50;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Creates `buckets` versioned buckets holding `n` keys, each overwritten after T. Returns T.
async fn fixture(s3: &S3, buckets: &[String], n: usize) -> i64 {
    for b in buckets {
        s3.create_versioned_bucket(b).await.unwrap();
    }
    let put_all = |body: &'static str| {
        let jobs: Vec<(String, String)> =
            buckets.iter().flat_map(|b| (0..n).map(move |i| (b.clone(), format!("obj/{i:06}")))).collect();
        futures::stream::iter(jobs).for_each_concurrent(32, move |(b, k)| async move {
            s3.client()
                .put_object()
                .bucket(b)
                .key(k)
                .body(ByteStream::from_static(body.as_bytes()))
                .send()
                .await
                .unwrap();
        })
    };
    put_all("version one").await;
    next_second().await;
    let t = chrono::Utc::now().timestamp_millis();
    next_second().await;
    put_all("version two, written after T").await;
    t
}

/// One versioned bucket with `n` keys, one version each. Returns a time after them.
async fn fixture_one_version(s3: &S3, bucket: &str, n: usize) -> i64 {
    s3.create_versioned_bucket(bucket).await.unwrap();
    futures::stream::iter(0..n)
        .for_each_concurrent(32, |i| async move {
            s3.client()
                .put_object()
                .bucket(bucket)
                .key(format!("obj/{i:06}"))
                .body(ByteStream::from_static(b"version two"))
                .send()
                .await
                .unwrap();
        })
        .await;
    chrono::Utc::now().timestamp_millis()
}

fn target(s3: S3, bucket: &str) -> S3Restore {
    let config = S3RestoreConfig {
        bucket: bucket.into(),
        prefix: String::new(),
        concurrency: Some(16),
        attempts: None,
        client: Default::default(),
    };
    S3Restore::new("bench", s3, config).unwrap()
}

async fn ours(s3: &S3, bucket: &str, t: i64) -> (f64, usize) {
    let (secs, rows, _) = ours_counted(s3, bucket, t, None).await;
    (secs, rows)
}

/// What apply sent, counted at the wire by a recording proxy.
#[derive(Debug, Default)]
struct Sent {
    copies: usize,
    listings: usize,
    other: usize,
}

/// Prepare + apply; with `proxy`, the client goes through it and apply's requests are counted.
async fn ours_counted(s3: &S3, bucket: &str, t: i64, proxy: Option<&RecordingProxy>) -> (f64, usize, Sent) {
    let s3 = match proxy {
        Some(p) => client(&p.url()).await,
        None => s3.clone(),
    };
    let target = target(s3, bucket);
    let at = chrono::DateTime::from_timestamp_millis(t).unwrap();
    let started = Instant::now();
    let change = target
        .prepare(&Request::Action { action: "restore_at".into(), params: serde_json::json!({ "at": at }) })
        .await
        .unwrap();
    if let Some(p) = proxy {
        p.clear();
    }
    let key = IdempotencyKey::new(format!("bench/{bucket}/fwd"));
    target.apply(&change, &key).await.unwrap();
    let rows = change.payload["rows"].as_array().map_or(0, Vec::len);
    let secs = started.elapsed().as_secs_f64();
    let mut sent = Sent::default();
    for r in proxy.map(RecordingProxy::requests).unwrap_or_default() {
        if r.method == "PUT" && r.headers.contains_key("x-amz-copy-source") {
            sent.copies += 1;
        } else if r.method == "GET" && r.path.contains("list-type=2") {
            sent.listings += 1;
        } else {
            sent.other += 1;
        }
    }
    (secs, rows, sent)
}

fn boto3(python: &str, endpoint: &str, bucket: &str, t: i64, threads: usize) -> Option<(f64, usize)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/storage_boto3.py");
    let out =
        Command::new(python).args([script, endpoint, bucket, &t.to_string(), &threads.to_string()]).output().ok()?;
    if !out.status.success() {
        eprintln!("boto3 baseline failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:").map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

/// Child mode: prepare + apply on a prepared bucket, print VmHWM before and after.
fn child(endpoint: &str, bucket: &str, t: i64) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let s3 = client(endpoint).await;
        let before = vm_hwm_kb();
        let (secs, rows) = ours(&s3, bucket, t).await;
        println!("{before} {} {secs:.3} {rows}", vm_hwm_kb());
    });
}

async fn s3_bench(endpoint: &str, python: Option<&str>, n: usize, memory_sizes: &[usize]) {
    let s3 = client(endpoint).await;
    let run = format!("{:x}", chrono::Utc::now().timestamp_millis());
    if n > 0 {
        restore_bench(&s3, endpoint, python, n, &run).await;
    }
    memory_bench(&s3, endpoint, memory_sizes, &run).await;
}

async fn restore_bench(s3: &S3, endpoint: &str, python: Option<&str>, n: usize, run: &str) {
    let buckets: Vec<String> = ["ours", "seq", "par", "count"].iter().map(|w| format!("bench-{w}-{run}")).collect();
    let setup = Instant::now();
    let t = fixture(s3, &buckets, n).await;
    eprintln!("fixture: {} buckets x {n} keys x 2 versions in {:.1}s", buckets.len(), setup.elapsed().as_secs_f64());
    let (ours_s, rows) = ours(s3, &buckets[0], t).await;
    println!("\n(a) point-in-time restore of {n} objects ({rows} keys to restore), same moto_server");
    println!("| restore | seconds | objects/s | vs sequential boto3 |");
    println!("|---|---:|---:|---:|");
    let seq = python.and_then(|p| boto3(p, endpoint, &buckets[1], t, 1));
    let par = python.and_then(|p| boto3(p, endpoint, &buckets[2], t, 16));
    let base = seq.map(|s| s.0);
    let line = |name: &str, secs: f64| {
        let ratio = base.map_or("-".to_owned(), |b| format!("{:.2}x", b / secs));
        println!("| {name} | {secs:.2} | {:.0} | {ratio} |", n as f64 / secs);
    };
    line("rollback-storage (prepare + apply, 16 parallel, one COPY per key)", ours_s);
    if let Some((s, _)) = seq {
        line("boto3 sequential (list + copy_object per key)", s);
        rollback_benches::summary(
            "s3 (moto)",
            &format!("point-in-time restore of {n} objects vs sequential boto3"),
            &format!("{ours_s:.2} s"),
            &format!("{s:.2} s"),
            &format!("{:.2}× faster", s / ours_s),
            &format!("≥ 3×: {}", rollback_benches::met(s / ours_s >= 3.0)),
        );
    }
    if let Some((s, _)) = par {
        line("boto3 16 threads (server ceiling, copy only)", s);
        rollback_benches::summary(
            "s3 (moto)",
            &format!("point-in-time restore of {n} objects vs the server's ceiling (boto3, 16 threads, copy only)"),
            &format!("{ours_s:.2} s"),
            &format!("{s:.2} s"),
            &format!("{:.2}× the ceiling's time", ours_s / s),
            &format!("≤ 1.1×: {}", rollback_benches::met(ours_s / s <= 1.1)),
        );
    }
    if python.is_none() {
        println!("(ROLLBACK_TEST_BOTO3_PYTHON not set: boto3 baselines not run)");
    }
    // The same restore once more, through a recording proxy: apply's requests at the wire.
    let proxy = RecordingProxy::start(endpoint).await;
    let (_, rows, sent) = ours_counted(s3, &buckets[3], t, Some(&proxy)).await;
    let pages = rows.div_ceil(1000);
    let per_key = sent.copies as f64 / rows.max(1) as f64;
    println!(
        "apply's requests at the wire ({rows} keys, {pages} pages): {} copies, {} listings, {} other \
         ({per_key:.3} writes per key; moto ignores conditional copies, so the run re-lists each page before and after)",
        sent.copies, sent.listings, sent.other
    );
    rollback_benches::summary(
        "s3 (moto)",
        &format!("writes per restored key in apply ({rows} keys; listings counted apart)"),
        &format!("{per_key:.3}"),
        "2 (HEAD + COPY)",
        &format!("{} copies + {} listings + {} other", sent.copies, sent.listings, sent.other),
        &format!("≤ 1.01 + page listings: {}", rollback_benches::met(per_key <= 1.01 && sent.other == 0)),
    );
}

const S3_SECONDS: rollback_benches::Plot = rollback_benches::Plot {
    id: "s3-seconds",
    title: "S3 point-in-time restore on moto: prepare + apply",
    x: "objects in the bucket",
    y: "seconds",
    per_unit: false,
};

const S3_RSS: rollback_benches::Plot = rollback_benches::Plot {
    id: "s3-rss",
    title: "S3 point-in-time restore: peak RSS growth of prepare + apply",
    x: "objects in the bucket",
    y: "peak RSS growth (MB)",
    per_unit: false,
};

async fn memory_bench(s3: &S3, endpoint: &str, memory_sizes: &[usize], run: &str) {
    if memory_sizes.is_empty() {
        return;
    }
    println!("\n(b) peak memory of prepare + apply (child process, VmHWM; restore_at streams the version listing)");
    println!(
        "| objects | keys restored | VmHWM before (MB) | VmHWM after (MB) | growth (MB) | growth per restored key (bytes) | seconds |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut growths: Vec<(usize, f64, f64)> = Vec::new();
    for &size in memory_sizes {
        let bucket = format!("bench-mem{size}-{run}");
        let few = 10.min(size);
        let started = Instant::now();
        // ROLLBACK_BENCH_FEW_ONLY=1: one version per key and only the small restore
        // (the full one at 50k takes most of an hour on moto).
        let few_only = env("ROLLBACK_BENCH_FEW_ONLY").is_some() || size > 10_000;
        let (t_all, t_few) = memory_fixture(s3, &bucket, size, few, !few_only).await;
        let versions = if few_only { size + few } else { 2 * size + few };
        eprintln!("memory fixture: {size} keys, {versions} versions in {:.1}s", started.elapsed().as_secs_f64());
        // First a restore of `few` keys out of `size` (memory should not grow with
        // `size`), then of every key (the journaled plan grows with the keys restored).
        let times = if few_only { vec![t_few] } else { vec![t_few, t_all] };
        for t in times {
            let exe = std::env::current_exe().unwrap();
            let out =
                Command::new(exe).env("ROLLBACK_BENCH_CHILD", format!("{endpoint} {bucket} {t}")).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let v: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            if v.len() == 4 {
                let growth_kb = v[1] - v[0];
                let per_key = if v[3] >= 1000.0 { format!("{:.0}", growth_kb * 1024.0 / v[3]) } else { "–".into() };
                println!(
                    "| {size} | {} | {:.1} | {:.1} | {:.1} | {per_key} | {:.2} |",
                    v[3],
                    v[0] / 1024.0,
                    v[1] / 1024.0,
                    growth_kb / 1024.0,
                    v[2]
                );
                growths.push((size, v[3], growth_kb));
                let curve = if v[3] <= 10.0 { "10 changed keys" } else { "every key changed" };
                S3_SECONDS.point(curve, size as f64, v[2]);
                S3_RSS.point(curve, size as f64, growth_kb / 1024.0);
            } else {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let why = stderr.lines().skip_while(|l| !l.contains("panicked")).take(3).collect::<Vec<_>>().join(" ");
                println!("| {size} | child failed: {} |", if why.is_empty() { stderr.trim() } else { why.as_str() });
            }
        }
    }
    print_marginal(&growths);
    // Ten changed keys in each bucket size: the peak should not follow the bucket.
    let small: Vec<&(usize, f64, f64)> = growths.iter().filter(|g| g.1 <= 10.0).collect();
    if let (Some(first), Some(last)) = (small.first(), small.last())
        && small.len() > 1
    {
        let mb = |kb: f64| kb / 1024.0;
        let sizes: Vec<String> = small.iter().map(|g| format!("{}: {:.1} MB", g.0, mb(g.2))).collect();
        rollback_benches::summary(
            "s3 (moto)",
            "peak RSS growth of prepare + apply, 10 changed keys, by bucket size",
            &sizes.join(", "),
            &format!("{:.1} MB at {} objects", mb(first.2), first.0),
            &format!("{:.2}× over {}× the objects", last.2 / first.2.max(1.0), last.0 / first.0.max(1)),
            &format!("flat (≤ +4 MB): {}", rollback_benches::met(mb(last.2 - first.2) <= 4.0)),
        );
    }
}

/// Marginal memory per restored key: growth difference between the full and the
/// small restore of the same bucket, over the difference in keys.
fn print_marginal(growths: &[(usize, f64, f64)]) {
    for pair in growths.chunks(2) {
        if let [(size, few_rows, few_kb), (_, all_rows, all_kb)] = pair
            && all_rows > few_rows
        {
            println!(
                "{size} objects: {:.0} bytes of peak memory per restored key (full minus small restore)",
                (all_kb - few_kb) * 1024.0 / (all_rows - few_rows)
            );
        }
    }
}

/// A versioned bucket with `n` keys: version one of every key, T_all, version two of
/// every key, T_few, version three of the first `few` keys. Restoring to T_few touches
/// `few` keys; restoring to T_all (afterwards) touches all `n`.
async fn memory_fixture(s3: &S3, bucket: &str, n: usize, few: usize, full: bool) -> (i64, i64) {
    let t_all = if full {
        fixture(s3, std::slice::from_ref(&bucket.to_owned()), n).await
    } else {
        fixture_one_version(s3, bucket, n).await
    };
    next_second().await;
    let t_few = chrono::Utc::now().timestamp_millis();
    next_second().await;
    futures::stream::iter(0..few)
        .for_each_concurrent(32, |i| async move {
            s3.client()
                .put_object()
                .bucket(bucket)
                .key(format!("obj/{i:06}"))
                .body(ByteStream::from_static(b"version three, written after T_few"))
                .send()
                .await
                .unwrap();
        })
        .await;
    (t_all, t_few)
}

async fn fill(conn: &mut redis::aio::MultiplexedConnection, n: usize) {
    for start in (0..n).step_by(10_000) {
        let mut pipe = redis::pipe();
        for i in start..(start + 10_000).min(n) {
            pipe.cmd("SET").arg(format!("bench:sess:{i}")).arg("cached value").ignore();
        }
        pipe.query_async::<()>(conn).await.unwrap();
    }
}

/// PINGs every 10 ms on its own connection until `stop`; returns (max ms, p99 ms, count).
async fn pinger(conn: RedisConn, stop: Arc<AtomicBool>) -> (f64, f64, usize) {
    let mut c = conn.connect(Some(11)).await.unwrap();
    let mut lat = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let p99 = lat.get((lat.len().saturating_sub(1) as f64 * 0.99) as usize).copied().unwrap_or(0.0);
    (lat.last().copied().unwrap_or(0.0), p99, lat.len())
}

const REDIS_KEYS: rollback_benches::Plot = rollback_benches::Plot {
    id: "redis-keys",
    title: "Redis invalidation: worst PING from another client while it runs",
    x: "keys invalidated",
    y: "worst PING (ms)",
    per_unit: false,
};

/// Invalidation of `n` keys both ways; the summary row for `n` when `summarize`.
async fn redis_bench(url: &str, n: usize, summarize: bool) {
    let conn = RedisConn::open(url, Duration::from_secs(120)).unwrap();
    let mut c = conn.connect(Some(11)).await.unwrap();
    println!("\n(c) invalidating {n} Redis keys matching bench:sess:* (PING every 10 ms from another connection)");
    println!("| method | seconds | PING max (ms) | PING p99 (ms) | pings |");
    println!("|---|---:|---:|---:|---:|");
    // ours
    redis::cmd("FLUSHDB").query_async::<()>(&mut c).await.unwrap();
    fill(&mut c, n).await;
    let config = RedisInvalidateConfig {
        conn: Default::default(),
        db: Some(11),
        what: Invalidation::Pattern { pattern: "bench:sess:*".into() },
        batch: Some(1000),
    };
    let target = RedisInvalidate::new("bench", conn.clone(), &config).unwrap();
    let change =
        target.prepare(&Request::Action { action: "invalidate".into(), params: serde_json::json!({}) }).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ping = tokio::spawn(pinger(conn.clone(), stop.clone()));
    let t = Instant::now();
    target.apply(&change, &IdempotencyKey::new(format!("bench-{}", std::process::id()))).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (max, p99, count) = ping.await.unwrap();
    println!("| rollback-storage SCAN + UNLINK (batch 1000) | {secs:.2} | {max:.1} | {p99:.1} | {count} |");
    let ours_max = max;
    // KEYS + DEL
    fill(&mut c, n).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ping = tokio::spawn(pinger(conn.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let keys: Vec<String> = redis::cmd("KEYS").arg("bench:sess:*").query_async(&mut c).await.unwrap();
    for chunk in keys.chunks(100_000) {
        redis::cmd("DEL").arg(chunk).query_async::<()>(&mut c).await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (max, p99, count) = ping.await.unwrap();
    println!("| KEYS + DEL (chunks of 100k) | {secs:.2} | {max:.1} | {p99:.1} | {count} |");
    REDIS_KEYS.point("SCAN + UNLINK (this library)", n as f64, ours_max);
    REDIS_KEYS.point("KEYS + DEL (the runbook)", n as f64, max);
    redis::cmd("FLUSHDB").query_async::<()>(&mut c).await.unwrap();
    if !summarize {
        return;
    }
    rollback_benches::summary(
        "redis",
        &format!("worst PING latency while invalidating {n} keys, SCAN + UNLINK vs KEYS + DEL"),
        &format!("{ours_max:.1} ms"),
        &format!("{max:.1} ms"),
        &format!("{:.0}× lower", max / ours_max.max(0.01)),
        "reported (no target)",
    );
}

fn main() {
    if let Some(args) = env("ROLLBACK_BENCH_CHILD") {
        let v: Vec<&str> = args.split(' ').collect();
        child(v[0], v[1], v[2].parse().unwrap());
        return;
    }
    let smoke = std::env::args().any(|a| a == "--test");
    let parts = env("ROLLBACK_BENCH_PARTS").unwrap_or_else(|| "abc".into());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        match env("ROLLBACK_TEST_S3_ENDPOINT") {
            Some(endpoint) => {
                let python = env("ROLLBACK_TEST_BOTO3_PYTHON");
                let (n, mut sizes): (usize, Vec<usize>) = if smoke {
                    (50, vec![50, 150])
                } else if env("ROLLBACK_BENCH_100K").is_some() {
                    (10_000, vec![1_000, 3_000, 10_000, 100_000])
                } else {
                    (10_000, vec![1_000, 3_000, 10_000])
                };
                if let Some(list) = env("ROLLBACK_BENCH_MEMORY_SIZES") {
                    sizes = list.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                }
                let n = if parts.contains('a') { n } else { 0 };
                let sizes = if parts.contains('b') { sizes } else { Vec::new() };
                s3_bench(&endpoint, python.as_deref(), n, &sizes).await;
            }
            None => println!("storage bench: ROLLBACK_TEST_S3_ENDPOINT not set, S3 part skipped"),
        }
        match env("ROLLBACK_TEST_REDIS_URL") {
            _ if !parts.contains('c') => {}
            Some(url) => {
                let (sizes, summarized): (&[usize], usize) = if smoke {
                    (&[1_000, 5_000], 5_000)
                } else {
                    (&[10_000, 100_000, 1_000_000, 10_000_000], 1_000_000)
                };
                for &n in sizes {
                    redis_bench(&url, n, n == summarized).await;
                }
            }
            None => println!("storage bench: ROLLBACK_TEST_REDIS_URL not set, Redis part skipped"),
        }
    });
}
