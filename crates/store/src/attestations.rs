//! The verifier's journal: enrollments, reference policies, verdicts and integrity alerts.
//! Every write is idempotent (verdicts and alerts carry unique ids; enrollments and policies
//! are replaced), so a batch retried after a lost acknowledgement changes nothing twice.

use crate::{from_json, to_json, StoreError};
use sqlx::{AnyPool, Row};
use verifier::{AttestationRecord, Enrollment, IntegrityAlert, JournalEntry, Snapshot};

pub struct Attestations<'a> {
    pub(crate) pool: &'a AnyPool,
}

fn id(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Attestations<'_> {
    /// Writes `entries` in one transaction: all or none.
    pub async fn write(&self, entries: &[JournalEntry]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for entry in entries {
            match entry {
                JournalEntry::Enrolled(e) => {
                    sqlx::query(
                        "INSERT INTO verifier_enrollments (node, document) VALUES ($1, $2)
                         ON CONFLICT (node) DO UPDATE SET document = excluded.document",
                    )
                    .bind(e.node.clone())
                    .bind(to_json(e)?)
                    .execute(&mut *tx)
                    .await?;
                }
                JournalEntry::Policy { pool, policy } => {
                    sqlx::query(
                        "INSERT INTO verifier_policies (pool, document) VALUES ($1, $2)
                         ON CONFLICT (pool) DO UPDATE SET document = excluded.document",
                    )
                    .bind(pool.clone())
                    .bind(to_json(policy)?)
                    .execute(&mut *tx)
                    .await?;
                }
                JournalEntry::Attested { record, alert } => {
                    if let Some(a) = alert {
                        sqlx::query(
                            "INSERT INTO integrity_alerts (id, node, time, acknowledged, document)
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(id(a.id))
                        .bind(a.node.clone())
                        .bind(id(a.time))
                        .bind(i64::from(a.acknowledged))
                        .bind(to_json(a)?)
                        .execute(&mut *tx)
                        .await?;
                    }
                    sqlx::query(
                        "INSERT INTO attestations (id, node, time, healthy, alert_id, document)
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(record.id.clone())
                    .bind(record.node.clone())
                    .bind(id(record.time))
                    .bind(i64::from(record.healthy))
                    .bind(record.alert_id.map(id))
                    .bind(to_json(record)?)
                    .execute(&mut *tx)
                    .await?;
                }
                JournalEntry::Acknowledged { id: alert } => {
                    sqlx::query("UPDATE integrity_alerts SET acknowledged = 1 WHERE id = $1")
                        .bind(id(*alert))
                        .execute(&mut *tx)
                        .await?;
                }
                JournalEntry::Forgotten { node } => {
                    sqlx::query("DELETE FROM verifier_enrollments WHERE node = $1")
                        .bind(node.clone())
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Everything a verifier restores: enrollments, policies, the newest `history` verdicts
    /// of each node (oldest first) and every alert (by id).
    pub async fn snapshot(&self, history: usize) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot::default();
        for row in sqlx::query("SELECT node, document FROM verifier_enrollments ORDER BY node")
            .fetch_all(self.pool)
            .await?
        {
            let node: String = row.try_get(0)?;
            let e: Enrollment = from_json(
                &format!("enrollment of {node}"),
                &row.try_get::<String, _>(1)?,
            )?;
            snap.enrollments.push(e);
        }
        for row in sqlx::query("SELECT pool, document FROM verifier_policies ORDER BY pool")
            .fetch_all(self.pool)
            .await?
        {
            let pool: String = row.try_get(0)?;
            let p = from_json(&format!("policy of {pool}"), &row.try_get::<String, _>(1)?)?;
            snap.policies.push((pool, p));
        }
        let limit = i64::try_from(history).unwrap_or(i64::MAX);
        // The newest `history` rows per node, by a correlated count both dialects run.
        for row in sqlx::query(
            "SELECT a.id, a.document FROM attestations a
             WHERE (SELECT COUNT(*) FROM attestations b
                    WHERE b.node = a.node AND (b.time > a.time OR (b.time = a.time AND b.id > a.id))) < $1
             ORDER BY a.node, a.time, a.id",
        )
        .bind(limit)
        .fetch_all(self.pool)
        .await?
        {
            let rid: String = row.try_get(0)?;
            let r: AttestationRecord =
                from_json(&format!("attestation {rid}"), &row.try_get::<String, _>(1)?)?;
            snap.history.push(r);
        }
        for row in
            sqlx::query("SELECT id, acknowledged, document FROM integrity_alerts ORDER BY id")
                .fetch_all(self.pool)
                .await?
        {
            let aid: i64 = row.try_get(0)?;
            let mut a: IntegrityAlert =
                from_json(&format!("alert {aid}"), &row.try_get::<String, _>(2)?)?;
            a.acknowledged = row.try_get::<i64, _>(1)? != 0;
            snap.alerts.push(a);
        }
        Ok(snap)
    }

    /// How many verdicts are stored (of one node, or all) and how many of them are healthy.
    pub async fn count(&self, node: Option<&str>) -> Result<(u64, u64), StoreError> {
        let row = match node {
            Some(n) => sqlx::query(
                "SELECT COUNT(*), COUNT(CASE WHEN healthy = 1 THEN 1 END) FROM attestations WHERE node = $1",
            )
            .bind(n.to_string())
            .fetch_one(self.pool)
            .await?,
            None => sqlx::query("SELECT COUNT(*), COUNT(CASE WHEN healthy = 1 THEN 1 END) FROM attestations")
                .fetch_one(self.pool)
                .await?,
        };
        // COUNT, not SUM: PostgreSQL's SUM of BIGINT is NUMERIC, which `Any` cannot read.
        let total: i64 = row.try_get(0)?;
        let healthy: i64 = row.try_get(1)?;
        Ok((
            u64::try_from(total).unwrap_or_default(),
            u64::try_from(healthy).unwrap_or_default(),
        ))
    }

    /// Whether a verdict with this id is stored.
    pub async fn contains(&self, record_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM attestations WHERE id = $1")
            .bind(record_id.to_string())
            .fetch_one(self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }
}
