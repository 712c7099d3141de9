//! Backups of a SQLite store: a consistent copy taken while the server runs, and
//! the checks a copy must pass before a server is started on it.

use super::integrity::{check_integrity, unreadable};
use crate::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// How long the copy waits for a writer's lock (`VACUUM INTO` reads in one
/// transaction; with WAL no writer blocks it, this is for the rare checkpoint).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Copies the database at `db` to the new file `to`, as the database was at one
/// moment, with `VACUUM INTO` (SQLite's own consistent copy, compacted). The
/// server may go on reading and writing meanwhile. `to` must not exist; it is
/// made 0600 and checked. Returns its size in bytes.
pub fn backup(db: &Path, to: &Path) -> StoreResult<u64> {
    if !db.exists() {
        return Err(StoreError::NotFound {
            kind: "database",
            name: db.display().to_string(),
        });
    }
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(unreadable)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let target = to
        .to_str()
        .ok_or_else(|| StoreError::Conflict(format!("{} is not a UTF-8 path", to.display())))?;
    conn.execute("VACUUM INTO ?1", [target])?;
    drop(conn);
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).map_err(|err| {
        StoreError::Conflict(format!("cannot make {} private: {err}", to.display()))
    })?;
    check_backup(to)?;
    Ok(std::fs::metadata(to).map(|m| m.len()).unwrap_or(0))
}

/// Checks that `file` is a Wharf database a server can start on: it opens, passes
/// SQLite's integrity check and holds Wharf's schema (its migrations table).
pub fn check_backup(file: &Path) -> StoreResult<()> {
    let conn = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(unreadable)?;
    check_integrity(&conn)?;
    let migrations: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            [],
            |row| row.get(0),
        )
        .map_err(unreadable)?;
    if migrations == 0 {
        return Err(StoreError::Corrupt(
            "it is a SQLite database but not a Wharf one (it has no migrations table)".to_owned(),
        ));
    }
    Ok(())
}
