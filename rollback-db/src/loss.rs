//! Data-loss estimates: rows changed after a time, shown by dry-run before any
//! destructive step.

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::error::map;
use rollback_core::{DataLoss, Error, Result};

/// What to count as lost: rows whose "last changed" column is newer than the point
/// the rollback returns to, and/or custom queries (`$1` is that time, as text)
/// returning a count.
///
/// ```toml
/// data_loss = { changed_columns = { orders = "updated_at" }, queries = ["SELECT count(*) FROM payments WHERE created_at > CAST($1 AS TIMESTAMPTZ)"] }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataLossProbe {
    /// Table → its "last changed" column.
    #[serde(default)]
    pub changed_columns: BTreeMap<String, String>,
    /// Queries returning a count of rows that would be lost.
    #[serde(default)]
    pub queries: Vec<String>,
}

fn ident(name: &str) -> Result<String> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(name.to_owned())
    } else {
        Err(Error::invalid_input(format!("{name:?} is not a plain SQL identifier")))
    }
}

impl DataLossProbe {
    /// Whether anything is configured.
    pub fn is_empty(&self) -> bool {
        self.changed_columns.is_empty() && self.queries.is_empty()
    }

    /// Counts rows changed after `since` on `pool` (`sqlite` picks the time literal).
    pub(crate) async fn estimate(
        &self,
        pool: &sqlx::AnyPool,
        sqlite: bool,
        since: chrono::DateTime<chrono::Utc>,
        what: &str,
    ) -> Result<Option<DataLoss>> {
        if self.is_empty() {
            return Ok(None);
        }
        let (time, cast) = if sqlite {
            (since.format("%Y-%m-%d %H:%M:%S").to_string(), "$1")
        } else {
            (since.to_rfc3339(), "CAST($1 AS TIMESTAMPTZ)")
        };
        let mut total = 0i64;
        let mut parts = Vec::new();
        for (table, column) in &self.changed_columns {
            let sql =
                format!("SELECT CAST(count(*) AS BIGINT) FROM {} WHERE {} > {cast}", ident(table)?, ident(column)?);
            let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(time.clone())
                .fetch_one(pool)
                .await
                .map_err(|e| map("data-loss estimate", e).with_context("table", table))?;
            total += n;
            parts.push(format!("{table}: {n}"));
        }
        for (i, query) in self.queries.iter().enumerate() {
            let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(query.clone()))
                .bind(time.clone())
                .fetch_one(pool)
                .await
                .map_err(|e| map("data-loss estimate", e).with_context("query", i + 1))?;
            total += n;
            parts.push(format!("query {}: {n}", i + 1));
        }
        Ok(Some(DataLoss::some(
            Some(total.max(0) as u64),
            format!(
                "{total} row(s) changed after {} would be lost {what} ({})",
                since.format("%Y-%m-%d %H:%M:%S UTC"),
                parts.join(", ")
            ),
        )))
    }
}
