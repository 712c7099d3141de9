//! Brings a PostgreSQL database's schema up to date with the migrations in
//! `migrations/postgres`, each applied once, in order, all that are missing in
//! one transaction (PostgreSQL's DDL is transactional, so a failed migration
//! leaves nothing behind).
//!
//! What was applied is recorded in `wharf_migrations` with the SHA-384 of the
//! file. Several server processes may start on one database at once: each
//! migrates under a transaction-scoped advisory lock, so the second finds the
//! first one's work done. A database migrated further than this version knows,
//! or whose applied migration changed since, is refused.

use crate::{StoreError, StoreResult};
use sha2::{Digest as _, Sha384};

/// A migration as embedded: its version, its description and its SQL.
struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

/// The migrations, in order. A new one is a new file and a new line here;
/// applied ones never change.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "schema",
    sql: include_str!("../../migrations/postgres/0001_schema.sql"),
}];

/// The advisory lock key every Wharf process migrates under ("wharf" in ASCII).
const MIGRATION_LOCK: i64 = 0x0077_6861_7266;

/// Applies every migration the database has not had yet.
pub(super) async fn run(client: &mut deadpool_postgres::Client) -> StoreResult<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS wharf_migrations (
            version      BIGINT      NOT NULL PRIMARY KEY,
            description  TEXT        NOT NULL,
            checksum     BYTEA       NOT NULL,
            installed_on TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let applied: Vec<(i64, Vec<u8>)> = tx
        .query(
            "SELECT version, checksum FROM wharf_migrations ORDER BY version",
            &[],
        )
        .await?
        .into_iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    // A database that a newer Wharf migrated further than this one knows is not
    // opened: this version would write rows its schema does not expect.
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some((newest, _)) = applied.iter().rev().find(|(v, _)| *v > known) {
        return Err(StoreError::Corrupt(format!(
            "the database was migrated by a newer Wharf (migration {newest}; this version knows up to {known})"
        )));
    }
    for migration in MIGRATIONS {
        let checksum = Sha384::digest(migration.sql.as_bytes()).to_vec();
        match applied.iter().find(|(v, _)| *v == migration.version) {
            Some((_, stored)) if *stored != checksum => {
                return Err(StoreError::Corrupt(format!(
                    "migration {} ({}) was applied but has changed since",
                    migration.version, migration.description
                )))
            }
            Some(_) => continue,
            None => {}
        }
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO wharf_migrations (version, description, checksum) VALUES ($1, $2, $3)",
            &[&migration.version, &migration.description, &checksum],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
