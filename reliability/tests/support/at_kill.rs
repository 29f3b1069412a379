//! Where the kill landed, as the backend shows it: the killed step's effect must be
//! absent at a `before` point and present at an `after` point, so each point really
//! leaves resume a different decision (apply, or observe Done and not redo).

use rollback_core::RunId;
use rollback_docker::testkit::docker;

use super::Shared;
use super::evidence::scan;
use super::fixture::{Fixture, SCALED, db_url};

fn key(run: &RunId, step: &str) -> String {
    format!("{run}/{step}/fwd")
}

fn running(shared: &Shared, name: &str) -> bool {
    docker(&shared.servers.docker, &["inspect", "--format", "{{.State.Running}}", name]) == "true"
}

fn replicas(shared: &Shared, f: &Fixture) -> i64 {
    let d = shared.double.object("deployments", &f.namespace, SCALED.0).unwrap();
    d["spec"]["replicas"].as_i64().unwrap()
}

/// Whether the effect of `step` (this run's) is visible at its backend now.
pub async fn effect_visible(shared: &Shared, f: &Fixture, run: &RunId, step: &str) -> bool {
    let key = key(run, step);
    let target = step.strip_suffix("-back").or_else(|| step.strip_suffix("-drop")).unwrap_or(step);
    match step {
        "front-off" => !running(shared, &f.containers["front"]),
        "front-on" => running(shared, &f.containers["front"]),
        "worker-down" => replicas(shared, f) == 0,
        "worker-up" => replicas(shared, f) == i64::from(SCALED.1),
        "api-back" | "worker-back" => {
            let label = format!("label=io.rollback.key={key}");
            !docker(&shared.servers.docker, &["ps", "-aq", "--filter", &label]).is_empty()
        }
        "web-back" | "admin-back" => {
            let d = shared.double.object("deployments", &f.namespace, target).unwrap();
            d["metadata"]["annotations"]["rollback.dev/undo-key"] == key.as_str()
        }
        "orders-back" | "billing-back" => {
            let url = db_url(&shared.servers.postgres, &f.databases[target]);
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
            // The marker table is created on the target's first observe; absent means not done.
            let marker: Option<(i64,)> =
                sqlx::query_as("SELECT count(*) FROM information_schema.tables WHERE table_name = '_rollback_marker'")
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
            let done = if marker.is_some_and(|(n,)| n > 0) {
                let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM _rollback_marker WHERE run_key = $1")
                    .bind(&key)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                n > 0
            } else {
                false
            };
            pool.close().await;
            done
        }
        "avatars-back" | "docs-back" => {
            let object = if target == "avatars" { "avatars/a" } else { "docs/x" };
            super::evidence::carries_stamp(shared, &f.bucket, object, key.as_str()).await
        }
        "sessions-drop" | "pages-drop" => {
            let mut conn = shared.redis.get_multiplexed_async_connection().await.unwrap();
            let marker: Option<String> =
                redis::cmd("GET").arg(format!("rollback:invalidate:{key}")).query_async(&mut conn).await.unwrap();
            let infix = if target == "sessions" { "sess" } else { "page" };
            let left = scan(&mut conn, &f.cache_pattern(infix)).await;
            marker.as_deref() == Some("done") && left.is_empty()
        }
        _ if step.starts_with("rel-") => {
            let link = std::fs::read_link(f.release_root(index(step)).join("current")).unwrap();
            link.ends_with("20251015-120000")
        }
        _ if step.starts_with("cfg-") => {
            let text = std::fs::read_to_string(f.config_dir(index(step)).join("app.conf")).unwrap();
            text.starts_with("good")
        }
        other => panic!("no backend check for step {other}"),
    }
}

fn index(step: &str) -> usize {
    step.split('-').nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("step {step}"))
}
