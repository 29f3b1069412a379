use async_trait::async_trait;
use serde::Deserialize;
use std::time::Duration;

use crate::PgUrl;
use rollback_core::process::{Invocation, run};
use rollback_core::{ArtifactStore, Error, IdempotencyKey, Result, Snapshot, SnapshotRef};

/// Configuration of a [`PgDump`] snapshot. The URL comes from the spec's secret `url`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgDumpConfig {
    /// `pg_dump` program (`pg_dump`).
    #[serde(default)]
    pub pg_dump: Option<String>,
    /// `pg_restore` program (`pg_restore`).
    #[serde(default)]
    pub pg_restore: Option<String>,
    /// `psql` program (`psql`), which runs a keyed restore's script.
    #[serde(default)]
    pub psql: Option<String>,
}

/// The table a keyed restore records its key in, in the restore's own transaction.
pub const RESTORES_TABLE: &str = "_rollback_restores";

/// `pg_dump -Fc` of a database into the artifact store: evidence before a destructive
/// step, and a restore point (`pg_restore --clean --if-exists --single-transaction`).
/// The engine's keyed restore turns the dump into a one-transaction script
/// (`pg_restore --single-transaction -f`), inserts its key into `_rollback_restores`
/// before the script's `COMMIT`, and runs it with `psql -v ON_ERROR_STOP=1`: the key
/// is there exactly when the restore committed, so a resume after a crash does not
/// restore twice. (`pg_restore` and `psql` must come from the same PostgreSQL
/// release, as Debian's client package installs them.)
/// The password reaches the tools through `PGPASSWORD`, never their command line.
pub struct PgDump {
    name: String,
    url: PgUrl,
    config: PgDumpConfig,
}

impl std::fmt::Debug for PgDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDump").field("name", &self.name).field("database", &self.url.database).finish()
    }
}

impl PgDump {
    /// A snapshotter of the database at `url`.
    pub fn new(name: &str, url: &str, config: PgDumpConfig) -> Result<Self> {
        Ok(PgDump { name: name.to_owned(), url: PgUrl::parse(url)?, config })
    }

    async fn run(&self, program: &str, args: &[String], input: Option<&std::path::Path>) -> Result<Vec<u8>> {
        let mut argv = vec![program.to_owned()];
        argv.extend(args.iter().cloned());
        argv.extend(input.map(|p| p.display().to_string()));
        let what = format!("{program} of {}", self.url.database);
        let env = self.url.tool_env();
        let invocation =
            Invocation { what: &what, argv: &argv, dir: None, env: &env, timeout: Duration::from_secs(3600) };
        run(invocation).await
    }
}

#[async_trait]
impl Snapshot for PgDump {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capture(&self, store: &dyn ArtifactStore, key: &IdempotencyKey) -> Result<SnapshotRef> {
        let program = self.config.pg_dump.clone().unwrap_or_else(|| "pg_dump".into());
        let mut args = vec!["-Fc".to_string()];
        args.extend(self.url.tool_args());
        let dump = self.run(&program, &args, None).await?;
        let artifact = format!("{}/{}/{}.dump", key.as_str().replace('/', "_"), self.name, self.url.database);
        let size = dump.len();
        store.put(&artifact, dump).await?;
        Ok(SnapshotRef {
            snapshot: self.name.clone(),
            artifacts: vec![artifact],
            taken_at: chrono::Utc::now(),
            description: format!("pg_dump -Fc of {} ({size} bytes)", self.url.database),
            metadata: serde_json::json!({ "database": self.url.database, "bytes": size }),
        })
    }

    async fn restore(&self, snapshot: &SnapshotRef, store: &dyn ArtifactStore) -> Result<()> {
        let dir = tempfile_dir()?;
        let result = async {
            let path = self.dump_file(snapshot, store, &dir).await?;
            let mut args =
                vec!["--clean".to_string(), "--if-exists".into(), "--single-transaction".into(), "--no-owner".into()];
            args.extend(self.url.tool_args());
            self.run(&self.pg_restore(), &args, Some(&path)).await.map(drop)
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn restore_keyed(
        &self,
        snapshot: &SnapshotRef,
        store: &dyn ArtifactStore,
        key: &IdempotencyKey,
    ) -> Result<()> {
        let dir = tempfile_dir()?;
        let result = async {
            let dump = self.dump_file(snapshot, store, &dir).await?;
            // One transaction in the script itself (`BEGIN;` … `COMMIT;`, large objects
            // included), the key recorded just before its COMMIT.
            let script = dir.join("restore.sql");
            let mut args: Vec<String> =
                ["--clean", "--if-exists", "--no-owner", "--single-transaction", "-f"].map(String::from).to_vec();
            args.push(script.display().to_string());
            self.run(&self.pg_restore(), &args, Some(&dump)).await?;
            record_key_before_commit(&script, key)?;
            let mut args: Vec<String> = ["-X", "-q", "-v", "ON_ERROR_STOP=1"].map(String::from).to_vec();
            args.extend(self.url.tool_args());
            args.push("-f".into());
            self.run(&self.config.psql.clone().unwrap_or_else(|| "psql".into()), &args, Some(&script)).await.map(drop)
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn restored(&self, _snapshot: &SnapshotRef, key: &IdempotencyKey) -> Result<Option<bool>> {
        let mut options = sqlx::postgres::PgConnectOptions::new()
            .host(&self.url.host)
            .port(self.url.port)
            .username(&self.url.user)
            .database(&self.url.database);
        if let Some(password) = &self.url.password {
            options = options.password(password.expose());
        }
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| crate::error::map("connect", e))?;
        let result = async {
            let table: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
                .bind(format!("public.{RESTORES_TABLE}"))
                .fetch_one(&pool)
                .await
                .map_err(|e| crate::error::map("look for the restores table", e))?;
            if table.is_none() {
                return Ok(Some(false));
            }
            let found: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT 1 FROM public.{RESTORES_TABLE} WHERE key = $1"
            )))
            .bind(key.as_str())
            .fetch_optional(&pool)
            .await
            .map_err(|e| crate::error::map("look for the restore key", e))?;
            Ok(Some(found.is_some()))
        }
        .await;
        pool.close().await;
        result
    }
}

impl PgDump {
    fn pg_restore(&self) -> String {
        self.config.pg_restore.clone().unwrap_or_else(|| "pg_restore".into())
    }

    /// The snapshot's dump, written privately under `dir`.
    async fn dump_file(
        &self,
        snapshot: &SnapshotRef,
        store: &dyn ArtifactStore,
        dir: &std::path::Path,
    ) -> Result<std::path::PathBuf> {
        let artifact = snapshot.artifacts.first().ok_or_else(|| Error::not_found("the snapshot has no dump"))?;
        let dump = store.get(artifact).await?;
        let path = dir.join("restore.dump");
        rollback_core::artifact::write_private_atomic(&path, &dump)?;
        Ok(path)
    }
}

/// Inserts the key into `_rollback_restores` just before the script's final
/// `COMMIT;`, in place: the script is cut at that line and the rest written back
/// after the insert (only the tail is read, whatever the dump's size).
fn record_key_before_commit(script: &std::path::Path, key: &IdempotencyKey) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    const TAIL: u64 = 64 * 1024;
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(script)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let commit = tail
        .windows(9)
        .rposition(|w| w == b"\nCOMMIT;\n")
        .ok_or_else(|| Error::internal("the pg_restore script has no final COMMIT; (is pg_restore too old?)"))?
        + 1;
    let literal = key.as_str().replace('\'', "''");
    let mut rest = format!(
        "CREATE TABLE IF NOT EXISTS public.{RESTORES_TABLE} (key text PRIMARY KEY, restored_at timestamptz NOT NULL DEFAULT now());\n\
         INSERT INTO public.{RESTORES_TABLE} (key) VALUES ('{literal}') ON CONFLICT DO NOTHING;\n"
    )
    .into_bytes();
    rest.extend_from_slice(&tail[commit..]);
    file.set_len(start + commit as u64)?;
    file.seek(SeekFrom::End(0))?;
    file.write_all(&rest)?;
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "rollback-pgrestore-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}
