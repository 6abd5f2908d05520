//! The store's one error type; every variant is a server-side failure (HTTP 500) except an
//! unsupported URL, which is a configuration error caught at start-up.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL {0:?}: use sqlite://PATH or postgres://USER:PASSWORD@HOST/DB"
    )]
    UnsupportedUrl(String),
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("cannot encode a record: {0}")]
    Encode(String),
    #[error("stored {what} does not decode: {reason}")]
    Corrupt { what: String, reason: String },
}

impl StoreError {
    pub fn http_status(&self) -> u16 {
        500
    }
}
