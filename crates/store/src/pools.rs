//! Agent pools, keyed by (resource group, cluster, name), kept as their ARM documents.

use crate::{select_documents, to_json, StoreError};

const WHAT: &str = "agent pool";
use control::AgentPool;
use sqlx::AnyPool;

pub struct AgentPools<'a> {
    pub(crate) pool: &'a AnyPool,
}

impl AgentPools<'_> {
    /// Inserts or replaces the pool (idempotent).
    pub async fn put(
        &self,
        resource_group: &str,
        cluster: &str,
        pool: &AgentPool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_pools (resource_group, cluster_name, name, provisioning_state, document)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (resource_group, cluster_name, name) DO UPDATE
             SET provisioning_state = excluded.provisioning_state, document = excluded.document",
        )
        .bind(resource_group.to_string())
        .bind(cluster.to_string())
        .bind(pool.name.clone())
        .bind(pool.properties.provisioning_state.clone())
        .bind(to_json(pool)?)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    pub async fn get(
        &self,
        resource_group: &str,
        cluster: &str,
        name: &str,
    ) -> Result<Option<AgentPool>, StoreError> {
        let sql = "SELECT document FROM agent_pools
                   WHERE resource_group = $1 AND cluster_name = $2 AND name = $3";
        Ok(
            select_documents(self.pool, WHAT, sql, &[resource_group, cluster, name])
                .await?
                .pop(),
        )
    }

    /// The cluster's pools, by name.
    pub async fn list(
        &self,
        resource_group: &str,
        cluster: &str,
    ) -> Result<Vec<AgentPool>, StoreError> {
        let sql = "SELECT document FROM agent_pools WHERE resource_group = $1 AND cluster_name = $2
                   ORDER BY name";
        select_documents(self.pool, WHAT, sql, &[resource_group, cluster]).await
    }

    /// Deletes the pool and its node records in one transaction; returns whether it existed.
    pub async fn delete(
        &self,
        resource_group: &str,
        cluster: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM nodes WHERE resource_group = $1 AND cluster_name = $2 AND pool_name = $3",
        )
        .bind(resource_group.to_string())
        .bind(cluster.to_string())
        .bind(name.to_string())
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "DELETE FROM agent_pools WHERE resource_group = $1 AND cluster_name = $2 AND name = $3",
        )
        .bind(resource_group.to_string())
        .bind(cluster.to_string())
        .bind(name.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}
