//! Where each instance keeps its executions, journals, dedupe keys, state
//! and connection tokens: a store of its own beside the integration's, so
//! that nothing one instance stores is seen by another.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::store::{
    Durability, MemoryStore, SqliteOptions, SqliteStore, Store, StoreError, StoreResult,
};
#[cfg(feature = "postgres")]
use crate::store::{PostgresOptions, PostgresStore};

/// How instances' stores are made, after the integration's `--store`.
#[derive(Debug, Clone)]
pub enum InstanceStores {
    /// `--store memory`: one memory store per instance, for the process's life.
    Memory,
    /// `--store sqlite://DIR/NAME.db`: `DIR/NAME.instances/INSTANCE.db`.
    Sqlite {
        /// `DIR/NAME.instances`.
        dir: PathBuf,
        /// The commit durability of `--durability`.
        durability: Durability,
    },
    /// `--store postgres://…`: schema `SCHEMA_i_INSTANCE` (dashes as
    /// underscores) in the same database (feature `postgres`).
    #[cfg(feature = "postgres")]
    Postgres {
        /// The store URL.
        url: String,
        /// The integration's schema (`--store-schema`).
        schema: String,
        /// Each instance's connection pool.
        pool_size: usize,
    },
}

impl InstanceStores {
    /// The folder of instances' SQLite files beside the integration's file.
    pub fn sqlite_beside(path: &Path, durability: Durability) -> InstanceStores {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "store".into());
        let dir = path
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("{stem}.instances"));
        InstanceStores::Sqlite { dir, durability }
    }

    /// Opens (creating if needed) the store of instance `name`.
    pub async fn open(&self, name: &str) -> StoreResult<Arc<dyn Store>> {
        match self {
            InstanceStores::Memory => Ok(Arc::new(MemoryStore::new())),
            InstanceStores::Sqlite { dir, durability } => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::backend(format!("cannot create {}: {e}", dir.display()))
                })?;
                let options = SqliteOptions {
                    durability: *durability,
                    exclusive: true,
                };
                Ok(Arc::new(SqliteStore::open(
                    self.sqlite_file(name),
                    options,
                )?))
            }
            #[cfg(feature = "postgres")]
            InstanceStores::Postgres {
                url,
                schema,
                pool_size,
            } => Ok(Arc::new(
                PostgresStore::open(PostgresOptions {
                    url: url.clone(),
                    schema: postgres_schema(schema, name),
                    pool_size: *pool_size,
                })
                .await?,
            )),
        }
    }

    /// Puts a deleted instance's store aside: its executions stay readable
    /// there (`INSTANCE.deleted-UNIX.db`; schema `SCHEMA_i_INSTANCE_dUNIX`,
    /// commented as retired) until [`InstanceStores::purge_retired`], and a
    /// new instance of the same name starts empty. A memory store is simply
    /// dropped.
    pub async fn retire(&self, name: &str) -> StoreResult<()> {
        let stamp = chrono::Utc::now().timestamp();
        match self {
            InstanceStores::Memory => Ok(()),
            InstanceStores::Sqlite { dir, .. } => {
                let file = self.sqlite_file(name);
                for suffix in ["", "-wal", "-shm"] {
                    let from = PathBuf::from(format!("{}{suffix}", file.display()));
                    if !from.exists() {
                        continue;
                    }
                    let to = dir.join(format!("{name}.deleted-{stamp}.db{suffix}"));
                    std::fs::rename(&from, &to).map_err(|e| {
                        StoreError::backend(format!("cannot retire {}: {e}", from.display()))
                    })?;
                }
                Ok(())
            }
            #[cfg(feature = "postgres")]
            InstanceStores::Postgres { url, schema, .. } => {
                let from = postgres_schema(schema, name);
                // A schema name has at most 63 bytes (ASCII here).
                let mut to = from.clone();
                to.truncate(63 - 12);
                let to = format!("{to}_d{stamp}");
                crate::store::postgres_retire_schema(url, &from, &to, schema, stamp).await
            }
        }
    }

    /// Removes the stores of instances deleted before `before` (UNIX
    /// seconds); returns how many.
    pub async fn purge_retired(&self, before: i64) -> StoreResult<usize> {
        match self {
            InstanceStores::Memory => Ok(0),
            InstanceStores::Sqlite { dir, .. } => {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    return Ok(0);
                };
                let mut removed = 0;
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if retired_file_time(&name).is_some_and(|t| t < before) {
                        std::fs::remove_file(entry.path()).map_err(|e| {
                            StoreError::backend(format!("cannot remove {name}: {e}"))
                        })?;
                        removed += usize::from(name.ends_with(".db"));
                    }
                }
                Ok(removed)
            }
            #[cfg(feature = "postgres")]
            InstanceStores::Postgres { url, schema, .. } => {
                let dropped =
                    crate::store::postgres_drop_retired_schemas(url, schema, before).await?;
                Ok(dropped.len())
            }
        }
    }

    fn sqlite_file(&self, name: &str) -> PathBuf {
        match self {
            InstanceStores::Sqlite { dir, .. } => dir.join(format!("{name}.db")),
            _ => PathBuf::new(),
        }
    }
}

/// The time in `NAME.deleted-UNIX.db` (and its `-wal`, `-shm`).
fn retired_file_time(file: &str) -> Option<i64> {
    let (_, rest) = file.rsplit_once(".deleted-")?;
    let (time, suffix) = rest.split_once(".db")?;
    matches!(suffix, "" | "-wal" | "-shm")
        .then(|| time.parse().ok())
        .flatten()
}

/// The PostgreSQL schema of instance `name`.
pub fn postgres_schema(schema: &str, name: &str) -> String {
    format!("{schema}_i_{}", name.replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_stores_sit_beside_the_integration_file() {
        let InstanceStores::Sqlite { dir, .. } =
            InstanceStores::sqlite_beside(Path::new("/data/orders.db"), Durability::Full)
        else {
            panic!("not sqlite");
        };
        assert_eq!(dir, PathBuf::from("/data/orders.instances"));
        assert_eq!(postgres_schema("orders", "acme-eu"), "orders_i_acme_eu");
    }

    #[test]
    fn retired_files_are_known_by_their_time() {
        assert_eq!(
            retired_file_time("acme.deleted-1700000000.db"),
            Some(1_700_000_000)
        );
        assert_eq!(
            retired_file_time("acme.deleted-1700000000.db-wal"),
            Some(1_700_000_000)
        );
        assert_eq!(retired_file_time("acme.db"), None);
        assert_eq!(retired_file_time("acme.deleted-x.db"), None);
        assert_eq!(retired_file_time("acme.deleted-17.db.bak"), None);
    }
}
