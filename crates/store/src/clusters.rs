//! Managed clusters, keyed by (resource group, name), kept as their ARM documents.

use crate::{select_documents, to_json, StoreError};

const WHAT: &str = "managed cluster";
use control::ManagedCluster;
use sqlx::AnyPool;

pub struct Clusters<'a> {
    pub(crate) pool: &'a AnyPool,
}

impl Clusters<'_> {
    /// Inserts or replaces the cluster (idempotent). `agentPoolProfiles` is not stored: pools
    /// live in their own table and are joined in by the caller on read.
    pub async fn put(&self, cluster: &ManagedCluster) -> Result<(), StoreError> {
        let mut doc = cluster.clone();
        doc.properties.agent_pool_profiles.clear();
        sqlx::query(
            "INSERT INTO managed_clusters (resource_group, name, provisioning_state, document)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (resource_group, name) DO UPDATE
             SET provisioning_state = excluded.provisioning_state, document = excluded.document",
        )
        .bind(cluster.resource_group())
        .bind(cluster.name.clone())
        .bind(cluster.properties.provisioning_state.clone())
        .bind(to_json(&doc)?)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    pub async fn get(
        &self,
        resource_group: &str,
        name: &str,
    ) -> Result<Option<ManagedCluster>, StoreError> {
        let sql = "SELECT document FROM managed_clusters WHERE resource_group = $1 AND name = $2";
        Ok(
            select_documents(self.pool, WHAT, sql, &[resource_group, name])
                .await?
                .pop(),
        )
    }

    /// Every cluster, or those of one resource group, ordered by (resource group, name).
    pub async fn list(
        &self,
        resource_group: Option<&str>,
    ) -> Result<Vec<ManagedCluster>, StoreError> {
        match resource_group {
            Some(rg) => {
                let sql = "SELECT document FROM managed_clusters WHERE resource_group = $1
                           ORDER BY resource_group, name";
                select_documents(self.pool, WHAT, sql, &[rg]).await
            }
            None => {
                let sql = "SELECT document FROM managed_clusters ORDER BY resource_group, name";
                select_documents(self.pool, WHAT, sql, &[]).await
            }
        }
    }

    /// Deletes the cluster with its pools and node records, in one transaction. Returns
    /// whether the cluster existed (a repeated delete is not an error).
    pub async fn delete(&self, resource_group: &str, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        for table in ["nodes", "agent_pools"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE resource_group = $1 AND cluster_name = $2"
            ))
            .bind(resource_group.to_string())
            .bind(name.to_string())
            .execute(&mut *tx)
            .await?;
        }
        let done =
            sqlx::query("DELETE FROM managed_clusters WHERE resource_group = $1 AND name = $2")
                .bind(resource_group.to_string())
                .bind(name.to_string())
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}
