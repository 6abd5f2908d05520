//! Long-running operations with their plans and progress, so that a restarted server finds
//! the unfinished ones and resumes each at its first step not recorded as done.

use crate::{from_json, to_json, StoreError};
use control::{ErrorDetail, Operation, OperationKind, OperationStatus, ReimagePlan};
use sqlx::any::AnyRow;
use sqlx::AnyPool;
use sqlx::Row;

pub struct Operations<'a> {
    pub(crate) pool: &'a AnyPool,
}

const COLUMNS: &str = "id, kind, status, resource_id, steps_total, steps_done, percent_complete, \
     current_step, start_time, end_time, error, plan";

fn decode(row: &AnyRow) -> Result<Operation, StoreError> {
    let id: String = row.try_get("id")?;
    let what = format!("operation {id}");
    let corrupt = |reason: String| StoreError::Corrupt {
        what: what.clone(),
        reason,
    };
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    let error: Option<String> = row.try_get("error")?;
    let count = |c: &str| -> Result<u32, StoreError> {
        u32::try_from(row.try_get::<i64, _>(c)?).map_err(|e| corrupt(e.to_string()))
    };
    Ok(Operation {
        kind: OperationKind::parse(&kind).ok_or_else(|| corrupt(format!("kind {kind:?}")))?,
        status: OperationStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("status {status:?}")))?,
        resource_id: row.try_get("resource_id")?,
        steps_total: count("steps_total")?,
        steps_done: count("steps_done")?,
        percent_complete: row.try_get("percent_complete")?,
        current_step: row.try_get("current_step")?,
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        error: error
            .map(|e| from_json::<ErrorDetail>(&what, &e))
            .transpose()?,
        plan: from_json::<ReimagePlan>(&what, &row.try_get::<String, _>("plan")?)?,
        id,
    })
}

impl Operations<'_> {
    /// Records a new operation. Inserting an id that exists changes nothing and returns false
    /// (a retried request does not start a second operation).
    pub async fn insert(&self, op: &Operation) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "INSERT INTO operations ({COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO NOTHING"
        ))
        .bind(op.id.clone())
        .bind(op.kind.as_str())
        .bind(op.status.as_str())
        .bind(op.resource_id.clone())
        .bind(i64::from(op.steps_total))
        .bind(i64::from(op.steps_done))
        .bind(op.percent_complete)
        .bind(op.current_step.clone())
        .bind(op.start_time.clone())
        .bind(op.end_time.clone())
        .bind(op.error.as_ref().map(to_json).transpose()?)
        .bind(to_json(&op.plan)?)
        .execute(self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records progress: `steps_done` never goes backwards, so a repeated or late write is
    /// harmless. The plan is not rewritten.
    pub async fn save_progress(&self, op: &Operation) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE operations SET
               steps_done = CASE WHEN steps_done > $2 THEN steps_done ELSE $2 END,
               percent_complete = CASE WHEN percent_complete > $3 THEN percent_complete ELSE $3 END,
               current_step = $4, status = $5, end_time = $6, error = $7
             WHERE id = $1",
        )
        .bind(op.id.clone())
        .bind(i64::from(op.steps_done))
        .bind(op.percent_complete)
        .bind(op.current_step.clone())
        .bind(op.status.as_str())
        .bind(op.end_time.clone())
        .bind(op.error.as_ref().map(to_json).transpose()?)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM operations WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Operations still `InProgress`, oldest first: what a starting server resumes.
    pub async fn list_unfinished(&self) -> Result<Vec<Operation>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM operations WHERE status = 'InProgress' ORDER BY start_time, id"
        ))
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    /// The operations on one resource (or its children), oldest first. A prefix comparison,
    /// not LIKE: `_` is common in resource names and a wildcard in LIKE.
    pub async fn list_for_resource(&self, resource_id: &str) -> Result<Vec<Operation>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM operations
             WHERE resource_id = $1 OR substr(resource_id, 1, length($2)) = $2
             ORDER BY start_time, id"
        ))
        .bind(resource_id.to_string())
        .bind(format!("{resource_id}/"))
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }
}
