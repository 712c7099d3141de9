//! Brings a database's schema up to date with the migrations in
//! `migrations/sqlite`, each applied once, in order, in its own transaction.
//!
//! What was applied is recorded in `_sqlx_migrations`, in the layout and with the
//! checksums (SHA-384 of the file) that sqlx's migrator used when the store was
//! built on sqlx, so that a database made by an earlier Wharf opens and upgrades
//! as before. A migration that was applied and has changed since, or one that
//! failed half-way, stops the store from opening rather than being run again.

use crate::{StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension as _, TransactionBehavior};
use sha2::{Digest as _, Sha384};
use std::time::Instant;

/// A migration as embedded: its version, its description (the file name's words)
/// and its SQL.
struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

/// The migrations, in order. A new one is a new file here and a new line below;
/// applied ones never change.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "core resources",
        sql: include_str!("../../migrations/sqlite/0001_core_resources.sql"),
    },
    Migration {
        version: 2,
        description: "releases",
        sql: include_str!("../../migrations/sqlite/0002_releases.sql"),
    },
    Migration {
        version: 3,
        description: "scaling groups",
        sql: include_str!("../../migrations/sqlite/0003_scaling_groups.sql"),
    },
    Migration {
        version: 4,
        description: "execs",
        sql: include_str!("../../migrations/sqlite/0004_execs.sql"),
    },
    Migration {
        version: 5,
        description: "instance docker",
        sql: include_str!("../../migrations/sqlite/0005_instance_docker.sql"),
    },
    Migration {
        version: 6,
        description: "task batch index",
        sql: include_str!("../../migrations/sqlite/0006_task_batch_index.sql"),
    },
    Migration {
        version: 7,
        description: "claim records fetch",
        sql: include_str!("../../migrations/sqlite/0007_claim_records_fetch.sql"),
    },
    Migration {
        version: 8,
        description: "batch counts",
        sql: include_str!("../../migrations/sqlite/0008_batch_counts.sql"),
    },
];

/// Applies every migration the database has not had yet.
pub(super) fn run(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            success BOOLEAN NOT NULL,
            checksum BLOB NOT NULL,
            execution_time BIGINT NOT NULL
        )",
    )?;
    // A database that a newer Wharf migrated further than this one knows is not
    // opened: this version would write rows its schema does not expect.
    let newest: Option<i64> =
        conn.query_row("SELECT MAX(version) FROM _sqlx_migrations", [], |row| {
            row.get(0)
        })?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(newest) = newest.filter(|newest| *newest > known) {
        return Err(StoreError::Corrupt(format!(
            "the database was migrated by a newer Wharf (migration {newest}; this version knows up to {known})"
        )));
    }
    for migration in MIGRATIONS {
        let checksum = Sha384::digest(migration.sql.as_bytes()).to_vec();
        // Looked at inside the write transaction, so that of two processes opening
        // a new database at once, the second finds the first one's work done.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied: Option<(bool, Vec<u8>)> = tx
            .query_row(
                "SELECT success, checksum FROM _sqlx_migrations WHERE version = ?",
                [migration.version],
                |row| row.try_into(),
            )
            .optional()?;
        match applied {
            Some((false, _)) => {
                return Err(StoreError::Corrupt(format!(
                    "migration {} ({}) failed part-way before; the database needs repair",
                    migration.version, migration.description
                )))
            }
            Some((true, stored)) if stored != checksum => {
                return Err(StoreError::Corrupt(format!(
                    "migration {} ({}) was applied but has changed since",
                    migration.version, migration.description
                )))
            }
            Some((true, _)) => continue,
            None => {}
        }
        let started = Instant::now();
        tx.execute_batch(migration.sql)?;
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?, ?, TRUE, ?, ?)",
            params![
                migration.version,
                migration.description,
                checksum,
                i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX)
            ],
        )
        ?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("the migrations directory")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        assert_eq!(
            files.len(),
            MIGRATIONS.len(),
            "a migration file is not listed"
        );
        for (file, migration) in files.iter().zip(MIGRATIONS) {
            let (number, rest) = file.split_once('_').expect("NNNN_words.sql");
            assert_eq!(
                number.parse::<i64>().ok(),
                Some(migration.version),
                "{file}"
            );
            assert_eq!(
                rest.trim_end_matches(".sql").replace('_', " "),
                migration.description,
                "{file}"
            );
        }
    }

    #[test]
    fn a_changed_migration_stops_the_open() {
        let mut conn = Connection::open_in_memory().expect("an in-memory database");
        conn.execute_batch("PRAGMA foreign_keys = ON")
            .expect("pragma");
        run(&mut conn).expect("first run");
        run(&mut conn).expect("a second run changes nothing");
        conn.execute(
            "UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 1",
            [],
        )
        .expect("tamper");
        assert!(matches!(run(&mut conn), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_database_of_a_newer_wharf_is_not_opened() {
        let mut conn = Connection::open_in_memory().expect("an in-memory database");
        conn.execute_batch("PRAGMA foreign_keys = ON")
            .expect("pragma");
        run(&mut conn).expect("first run");
        conn.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', TRUE, x'00', 0)",
            [],
        )
        .expect("a newer migration");
        match run(&mut conn) {
            Err(StoreError::Corrupt(why)) => assert!(why.contains("newer Wharf"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
