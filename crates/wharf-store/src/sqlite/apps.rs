//! Applications: the `apps` table. An application owns its groups and
//! deployments, so it cannot be deleted while it has either.

use super::convert::{millis, time};
use super::failure::{delete_failed, insert_failed, named, not_found, refuse_if_used};
use crate::{AppRecord, StoreError, StoreResult};
use sqlx::SqliteConnection;

#[derive(sqlx::FromRow)]
struct AppRow {
    name: String,
    description: String,
    created_at: i64,
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
pub(super) async fn require(conn: &mut SqliteConnection, name: &str) -> StoreResult<()> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM apps WHERE name = ?)")
        .bind(name)
        .fetch_one(conn)
        .await?;
    if exists {
        Ok(())
    } else {
        Err(not_found("application", name))
    }
}

pub(super) async fn create(conn: &mut SqliteConnection, app: &AppRecord) -> StoreResult<()> {
    sqlx::query("INSERT INTO apps (name, description, created_at) VALUES (?, ?, ?)")
        .bind(&app.name)
        .bind(&app.description)
        .bind(millis(app.created_at))
        .execute(conn)
        .await
        .map_err(|err| insert_failed(err, "application", &app.name))?;
    Ok(())
}

pub(super) async fn list(conn: &mut SqliteConnection) -> StoreResult<Vec<AppRecord>> {
    sqlx::query_as::<_, AppRow>("SELECT name, description, created_at FROM apps ORDER BY name")
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(AppRecord::try_from)
        .collect()
}

pub(super) async fn fetch(conn: &mut SqliteConnection, name: &str) -> StoreResult<AppRecord> {
    sqlx::query_as::<_, AppRow>("SELECT name, description, created_at FROM apps WHERE name = ?")
        .bind(name)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| not_found("application", name))?
        .try_into()
}

/// Deletes an application that has no groups and no deployments.
pub(super) async fn delete(conn: &mut SqliteConnection, name: &str) -> StoreResult<()> {
    require(conn, name).await?;
    let groups = names_in(conn, "app_groups", name).await?;
    let deployments = names_in(conn, "deployments", name).await?;
    refuse_if_used(
        "application",
        name,
        [
            named("group", "groups", &groups),
            named("deployment", "deployments", &deployments),
        ],
    )?;
    sqlx::query("DELETE FROM apps WHERE name = ?")
        .bind(name)
        .execute(conn)
        .await
        .map_err(|err| delete_failed(err, "application", name))?;
    Ok(())
}

/// The names of an application's rows in `table`, one of our own table names.
async fn names_in(
    conn: &mut SqliteConnection,
    table: &'static str,
    app: &str,
) -> StoreResult<Vec<String>> {
    let sql = format!("SELECT name FROM {table} WHERE app = ? ORDER BY name");
    Ok(sqlx::query_scalar(&sql).bind(app).fetch_all(conn).await?)
}
