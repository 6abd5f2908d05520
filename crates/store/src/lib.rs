//! Persistence for the management plane (managed clusters, agent pools, nodes, long-running
//! operations) and the verifier's journal (enrollments, policies, verdicts, alerts), in
//! SQLite (the default, one file in the data directory) or PostgreSQL, behind one API. Knows SQL and the domain types; never decides anything the domain decides.
//!
//! Built on `sqlx`'s `Any` driver: one query text serves both databases (`$N` placeholders,
//! `INSERT … ON CONFLICT … DO UPDATE`, which SQLite ≥ 3.24 and PostgreSQL share), while the
//! schema lives in one migrations directory per dialect (`migrations/sqlite`,
//! `migrations/postgres`), embedded at build time and applied by sqlx's migrator on open.
//! To add a table: add `NNNN_name.sql` to both directories, then a repository module.
//!
//! ```no_run
//! # async fn f() -> Result<(), store::StoreError> {
//! let store = store::Store::open("sqlite:///var/lib/trustlaunch/trustlaunch.db").await?;
//! for node in store.nodes().list_all().await? {
//!     println!("{} {:?}", node.name, node.attestation.status);
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod attestations;
mod clusters;
mod error;
mod migrate;
mod nodes;
mod operations;
mod pools;

pub use attestations::Attestations;
pub use clusters::Clusters;
pub use error::StoreError;
pub use nodes::Nodes;
pub use operations::Operations;
pub use pools::AgentPools;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

/// Which SQL database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The dialect a database URL names (`sqlite://PATH`, `sqlite:PATH`, `postgres://…`,
    /// `postgresql://…`).
    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redact(url)))
        }
    }
}

/// The URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// An open, migrated database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

impl Store {
    /// Connects to `url`, creating a SQLite file if it does not exist, and applies every
    /// migration not yet applied.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(url)?;
        let (url, max) = match dialect {
            Dialect::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                (format!("{url}{sep}mode=rwc"), 4)
            }
            Dialect::Sqlite => (url.to_string(), 4),
            Dialect::Postgres => (url.to_string(), 8),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .connect(&url)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact(&url),
                source,
            })?;
        if dialect == Dialect::Sqlite {
            // WAL: readers never wait for the writer (the API reads while a reimage writes).
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(StoreError::Query)?;
        }
        migrate::run(&pool, dialect).await?;
        Ok(Self { pool, dialect })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn clusters(&self) -> Clusters<'_> {
        Clusters { pool: &self.pool }
    }

    pub fn agent_pools(&self) -> AgentPools<'_> {
        AgentPools { pool: &self.pool }
    }

    pub fn attestations(&self) -> Attestations<'_> {
        Attestations { pool: &self.pool }
    }

    pub fn nodes(&self) -> Nodes<'_> {
        Nodes { pool: &self.pool }
    }

    pub fn operations(&self) -> Operations<'_> {
        Operations { pool: &self.pool }
    }

    /// The versions of the migrations applied, oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        use sqlx::Row;
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(StoreError::Query))
            .collect()
    }

    /// Closes every connection (waits for queries in flight).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// JSON text of a value, for a document column.
fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Encode(e.to_string()))
}

/// A document column read back into its type; a row that does not decode is reported with
/// where it came from rather than skipped.
fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

/// Runs `sql` (whose only column is a JSON document) with text parameters `$1…`, decoding
/// each row's document.
async fn select_documents<T: serde::de::DeserializeOwned>(
    pool: &AnyPool,
    what: &str,
    sql: &str,
    params: &[&str],
) -> Result<Vec<T>, StoreError> {
    use sqlx::Row;
    let mut query = sqlx::query(sql);
    for p in params {
        query = query.bind(p.to_string());
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter()
        .map(|r| from_json(what, &r.try_get::<String, _>(0)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(Dialect::of_url("sqlite:///x.db").unwrap(), Dialect::Sqlite);
        assert_eq!(
            Dialect::of_url("postgresql://h/db").unwrap(),
            Dialect::Postgres
        );
        assert!(Dialect::of_url("mysql://h/db").is_err());
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("sqlite:///x.db"), "sqlite:///x.db");
    }
}
