//! Small helpers over rusqlite for the table modules: every statement goes
//! through the connection's statement cache (a store call prepares each SQL text
//! once per connection, not once per call), and rows come back already converted.

use crate::StoreResult;
use rusqlite::{Connection, OptionalExtension as _, Params, Row};

/// Every row of `sql`, each read by `read`.
pub(super) fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(params, read)?;
    Ok(rows.collect::<rusqlite::Result<Vec<T>>>()?)
}

/// The first row of `sql`, if there is one.
pub(super) fn optional<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    read: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Option<T>> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params, read)
        .optional()?)
}

/// The first row of `sql`, which must have one (a COUNT, an EXISTS).
pub(super) fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    read: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<T> {
    Ok(conn.prepare_cached(sql)?.query_row(params, read)?)
}

/// Runs a statement that returns no rows; answers how many rows it changed. The
/// error stays rusqlite's, for callers that map constraint failures.
pub(super) fn execute(
    conn: &Connection,
    sql: &str,
    params: impl Params,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}
