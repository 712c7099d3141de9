//! Whether a database file can be trusted: SQLite's integrity check at open and
//! before a restore, and the errors of a file that is not a database at all.

use crate::StoreError;
use crate::StoreResult;
use rusqlite::Connection;

/// Refuses a database file that is damaged (SQLite's `quick_check`: every page,
/// record and index entry well formed) or that is not a SQLite database at all,
/// so that a server never starts on it and then fails calls at random. It reads
/// the whole file once, a second or so per gigabyte.
pub(super) fn check_integrity(conn: &Connection) -> StoreResult<()> {
    let mut statement = conn.prepare("PRAGMA quick_check(5)").map_err(unreadable)?;
    let problems = statement
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(unreadable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unreadable)?;
    if problems.iter().all(|line| line == "ok") {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "SQLite's integrity check found damage ({}); restore the database from a backup",
        problems.join("; ")
    )))
}

/// A failure to read the database file: corrupt if SQLite says the file is not
/// a database or is damaged, else the failure as it is.
pub(super) fn unreadable(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => StoreError::Corrupt(
            "the file is not a SQLite database (or is damaged beyond reading); restore the database from a backup"
                .to_owned(),
        ),
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => StoreError::Corrupt(format!(
            "SQLite cannot read it ({err}); restore the database from a backup"
        )),
        _ => StoreError::Backend(err),
    }
}
