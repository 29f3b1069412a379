use async_trait::async_trait;
use serde::Deserialize;
use std::time::Duration;

use crate::PgUrl;
use rollback_core::process::{Invocation, run};
use rollback_core::{ArtifactStore, Error, IdempotencyKey, Result, Snapshot, SnapshotRef};

/// Configuration of a [`PgDump`] snapshot. The URL comes from the spec's secret `url`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgDumpConfig {
    /// `pg_dump` program (`pg_dump`).
    #[serde(default)]
    pub pg_dump: Option<String>,
    /// `pg_restore` program (`pg_restore`).
    #[serde(default)]
    pub pg_restore: Option<String>,
}

/// `pg_dump -Fc` of a database into the artifact store: evidence before a destructive
/// step, and a restore point (`pg_restore --clean --if-exists --single-transaction`).
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
        let artifact = snapshot.artifacts.first().ok_or_else(|| Error::not_found("the snapshot has no dump"))?;
        let dump = store.get(artifact).await?;
        let dir = tempfile_dir()?;
        let path = dir.join("restore.dump");
        rollback_core::artifact::write_private_atomic(&path, &dump)?;
        let program = self.config.pg_restore.clone().unwrap_or_else(|| "pg_restore".into());
        let mut args =
            vec!["--clean".to_string(), "--if-exists".into(), "--single-transaction".into(), "--no-owner".into()];
        args.extend(self.url.tool_args());
        let result = self.run(&program, &args, Some(&path)).await.map(drop);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }
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
