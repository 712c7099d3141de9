//! Applications: the `apps` table. An application owns its groups and
//! deployments, so it cannot be deleted while it has either.

use super::convert::{millis, time};
use super::failure::{delete_failed, insert_failed, named, not_found, refuse_if_used};
use super::query;
use crate::{AppRecord, StoreError, StoreResult};
use rusqlite::{params, Connection, Row};

struct AppRow {
    name: String,
    description: String,
    created_at: i64,
}

impl AppRow {
    /// Reads a row of `name, description, created_at`.
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(AppRow {
            name: row.get(0)?,
            description: row.get(1)?,
            created_at: row.get(2)?,
        })
    }
}

impl TryFrom<AppRow> for AppRecord {
    type Error = StoreError;

    fn try_from(row: AppRow) -> StoreResult<Self> {
        Ok(AppRecord {
            name: row.name,
            description: row.description,
            created_at: time("apps.created_at", row.created_at)?,
        })
    }
}

/// Fails with `NotFound` unless the application exists.
pub(super) fn require(conn: &Connection, name: &str) -> StoreResult<()> {
    let exists: bool = query::one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM apps WHERE name = ?)",
        [name],
        |row| row.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(not_found("application", name))
    }
}

pub(super) fn create(conn: &Connection, app: &AppRecord) -> StoreResult<()> {
    query::execute(
        conn,
        "INSERT INTO apps (name, description, created_at) VALUES (?, ?, ?)",
        params![app.name, app.description, millis(app.created_at)],
    )
    .map_err(|err| insert_failed(err, "application", &app.name))?;
    Ok(())
}

pub(super) fn list(conn: &Connection) -> StoreResult<Vec<AppRecord>> {
    query::all(
        conn,
        "SELECT name, description, created_at FROM apps ORDER BY name",
        [],
        AppRow::read,
    )?
    .into_iter()
    .map(AppRecord::try_from)
    .collect()
}

pub(super) fn fetch(conn: &Connection, name: &str) -> StoreResult<AppRecord> {
    query::optional(
        conn,
        "SELECT name, description, created_at FROM apps WHERE name = ?",
        [name],
        AppRow::read,
    )?
    .ok_or_else(|| not_found("application", name))?
    .try_into()
}

/// Deletes an application that has no groups and no deployments.
pub(super) fn delete(conn: &Connection, name: &str) -> StoreResult<()> {
    require(conn, name)?;
    let groups = names_in(conn, "app_groups", name)?;
    let deployments = names_in(conn, "deployments", name)?;
    refuse_if_used(
        "application",
        name,
        [
            named("group", "groups", &groups),
            named("deployment", "deployments", &deployments),
        ],
    )?;
    query::execute(conn, "DELETE FROM apps WHERE name = ?", [name])
        .map_err(|err| delete_failed(err, "application", name))?;
    Ok(())
}

/// The names of an application's rows in `table`, one of our own table names.
fn names_in(conn: &Connection, table: &'static str, app: &str) -> StoreResult<Vec<String>> {
    let sql = format!("SELECT name FROM {table} WHERE app = ? ORDER BY name");
    query::all(conn, &sql, [app], |row| row.get(0))
}
