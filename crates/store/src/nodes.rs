//! Node records: one row per VM, with typed columns for what operators and controllers
//! filter on (pool, cordoned, security state, boot count) and JSON for labels, taints,
//! conditions and the latest attestation.

use crate::{from_json, to_json, StoreError};
use control::{Node, SecurityProfile};
use sqlx::any::AnyRow;
use sqlx::AnyPool;
use sqlx::Row;

pub struct Nodes<'a> {
    pub(crate) pool: &'a AnyPool,
}

const COLUMNS: &str = "name, resource_group, cluster_name, pool_name, ordinal, vm_size, labels, \
     taints, conditions, node_image_version, secure_boot, vtpm, boot_count, cordoned, attestation, \
     created_at";

/// Booleans are read as integers: sqlx's `Any` driver cannot decode SQLite's BOOLEAN, and the
/// CASE expression yields an integer on both databases.
const SELECT: &str = "SELECT name, resource_group, cluster_name, pool_name, ordinal, vm_size, \
     labels, taints, conditions, node_image_version, \
     CASE WHEN secure_boot THEN 1 ELSE 0 END AS secure_boot, \
     CASE WHEN vtpm THEN 1 ELSE 0 END AS vtpm, boot_count, \
     CASE WHEN cordoned THEN 1 ELSE 0 END AS cordoned, attestation, created_at FROM nodes";

fn flag(row: &AnyRow, column: &str) -> Result<bool, StoreError> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

fn decode(row: &AnyRow) -> Result<Node, StoreError> {
    let name: String = row.try_get("name")?;
    let what = format!("node {name}");
    Ok(Node {
        resource_group: row.try_get("resource_group")?,
        cluster_name: row.try_get("cluster_name")?,
        pool_name: row.try_get("pool_name")?,
        ordinal: u32::try_from(row.try_get::<i64, _>("ordinal")?).unwrap_or(u32::MAX),
        vm_size: row.try_get("vm_size")?,
        labels: from_json(&what, &row.try_get::<String, _>("labels")?)?,
        taints: from_json(&what, &row.try_get::<String, _>("taints")?)?,
        conditions: from_json(&what, &row.try_get::<String, _>("conditions")?)?,
        node_image_version: row.try_get("node_image_version")?,
        security_profile: SecurityProfile {
            enable_secure_boot: flag(row, "secure_boot")?,
            enable_vtpm: flag(row, "vtpm")?,
        },
        boot_count: u64::try_from(row.try_get::<i64, _>("boot_count")?).unwrap_or_default(),
        cordoned: flag(row, "cordoned")?,
        attestation: from_json(&what, &row.try_get::<String, _>("attestation")?)?,
        created_at: row.try_get("created_at")?,
        name,
    })
}

impl Nodes<'_> {
    /// Inserts or replaces the node record (idempotent).
    pub async fn put(&self, node: &Node) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO nodes ({COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (name) DO UPDATE SET
               resource_group = excluded.resource_group, cluster_name = excluded.cluster_name,
               pool_name = excluded.pool_name, ordinal = excluded.ordinal,
               vm_size = excluded.vm_size, labels = excluded.labels, taints = excluded.taints,
               conditions = excluded.conditions, node_image_version = excluded.node_image_version,
               secure_boot = excluded.secure_boot, vtpm = excluded.vtpm,
               boot_count = excluded.boot_count, cordoned = excluded.cordoned,
               attestation = excluded.attestation, created_at = excluded.created_at"
        ))
        .bind(node.name.clone())
        .bind(node.resource_group.clone())
        .bind(node.cluster_name.clone())
        .bind(node.pool_name.clone())
        .bind(i64::from(node.ordinal))
        .bind(node.vm_size.clone())
        .bind(to_json(&node.labels)?)
        .bind(to_json(&node.taints)?)
        .bind(to_json(&node.conditions)?)
        .bind(node.node_image_version.clone())
        .bind(node.security_profile.enable_secure_boot)
        .bind(node.security_profile.enable_vtpm)
        .bind(i64::try_from(node.boot_count).unwrap_or(i64::MAX))
        .bind(node.cordoned)
        .bind(to_json(&node.attestation)?)
        .bind(node.created_at.clone())
        .execute(self.pool)
        .await?;
        Ok(())
    }

    pub async fn get(&self, name: &str) -> Result<Option<Node>, StoreError> {
        let row = sqlx::query(&format!("{SELECT} WHERE name = $1"))
            .bind(name.to_string())
            .fetch_optional(self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The pool's nodes in scale-set order.
    pub async fn list_pool(
        &self,
        resource_group: &str,
        cluster: &str,
        pool: &str,
    ) -> Result<Vec<Node>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT}
             WHERE resource_group = $1 AND cluster_name = $2 AND pool_name = $3
             ORDER BY ordinal"
        ))
        .bind(resource_group.to_string())
        .bind(cluster.to_string())
        .bind(pool.to_string())
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    /// The cluster's nodes, by pool then scale-set order.
    pub async fn list_cluster(
        &self,
        resource_group: &str,
        cluster: &str,
    ) -> Result<Vec<Node>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE resource_group = $1 AND cluster_name = $2
             ORDER BY pool_name, ordinal"
        ))
        .bind(resource_group.to_string())
        .bind(cluster.to_string())
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    /// Every node of every cluster, by name.
    pub async fn list_all(&self) -> Result<Vec<Node>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT} ORDER BY name"))
            .fetch_all(self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// Deletes the node record; returns whether it existed.
    pub async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM nodes WHERE name = $1")
            .bind(name.to_string())
            .execute(self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
