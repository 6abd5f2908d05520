//! The embedded migrations (see `build.rs`) handed to sqlx's migrator, which records them in
//! `_sqlx_migrations` with a checksum: an edited, already-applied migration is refused.

use crate::{Dialect, StoreError};
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::AnyPool;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// The migrations of one dialect, as `(version, description, sql)`.
pub(crate) fn migrations(dialect: Dialect) -> &'static [(i64, &'static str, &'static str)] {
    match dialect {
        Dialect::Sqlite => embedded::SQLITE,
        Dialect::Postgres => embedded::POSTGRES,
    }
}

#[derive(Debug)]
struct Embedded(Dialect);

impl<'s> MigrationSource<'s> for Embedded {
    #[allow(clippy::type_complexity)]
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        let list = migrations(self.0)
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(list) })
    }
}

pub(crate) async fn run(pool: &AnyPool, dialect: Dialect) -> Result<(), StoreError> {
    let migrator = Migrator::new(Embedded(dialect)).await?;
    migrator.run(pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_have_the_same_versions() {
        let v = |d| migrations(d).iter().map(|m| (m.0, m.1)).collect::<Vec<_>>();
        assert_eq!(v(Dialect::Sqlite), v(Dialect::Postgres));
        assert!(!v(Dialect::Sqlite).is_empty());
    }
}
