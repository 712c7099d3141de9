//! Applications: the `apps` table. An application owns its groups and
//! deployments, so it cannot be deleted while it has either.

use super::convert::{millis, time};
use super::failure::{delete_failed, insert_failed, named, not_found, refuse_if_used};
use super::query::{self, Db};
use crate::{AppRecord, StoreResult};
use tokio_postgres::Row;

fn app(row: &Row) -> StoreResult<AppRecord> {
    Ok(AppRecord {
        name: row.try_get(0)?,
        description: row.try_get(1)?,
        created_at: time("apps.created_at", row.try_get(2)?)?,
    })
}

/// Fails with `NotFound` unless the application exists.
pub(super) async fn require(tx: &impl Db, name: &str) -> StoreResult<()> {
    if query::exists(
        tx,
        "SELECT EXISTS (SELECT 1 FROM apps WHERE name = $1)",
        &[&name],
    )
    .await?
    {
        Ok(())
    } else {
        Err(not_found("application", name))
    }
}

pub(super) async fn create(tx: &impl Db, app: &AppRecord) -> StoreResult<()> {
    query::execute(
        tx,
        "INSERT INTO apps (name, description, created_at) VALUES ($1, $2, $3)",
        &[&app.name, &app.description, &millis(app.created_at)],
    )
    .await
    .map_err(|err| insert_failed(err, "application", &app.name))?;
    Ok(())
}

pub(super) async fn list(tx: &impl Db) -> StoreResult<Vec<AppRecord>> {
    query::all(
        tx,
        "SELECT name, description, created_at FROM apps ORDER BY name",
        &[],
    )
    .await?
    .iter()
    .map(app)
    .collect()
}

pub(super) async fn fetch(tx: &impl Db, name: &str) -> StoreResult<AppRecord> {
    let row = query::optional(
        tx,
        "SELECT name, description, created_at FROM apps WHERE name = $1",
        &[&name],
    )
    .await?
    .ok_or_else(|| not_found("application", name))?;
    app(&row)
}

/// Deletes an application that has no groups and no deployments. The row is
/// locked first, so that a group or deployment created meanwhile by another
/// transaction waits for this one (and then finds the application gone).
pub(super) async fn delete(tx: &impl Db, name: &str) -> StoreResult<()> {
    let locked = query::optional(
        tx,
        "SELECT 1 FROM apps WHERE name = $1 FOR UPDATE",
        &[&name],
    )
    .await?;
    if locked.is_none() {
        return Err(not_found("application", name));
    }
    let groups = names_in(
        tx,
        "SELECT name FROM app_groups WHERE app = $1 ORDER BY name",
        name,
    )
    .await?;
    let deployments = names_in(
        tx,
        "SELECT name FROM deployments WHERE app = $1 ORDER BY name",
        name,
    )
    .await?;
    refuse_if_used(
        "application",
        name,
        [
            named("group", "groups", &groups),
            named("deployment", "deployments", &deployments),
        ],
    )?;
    query::execute(tx, "DELETE FROM apps WHERE name = $1", &[&name])
        .await
        .map_err(|err| delete_failed(err, "application", name))?;
    Ok(())
}

async fn names_in(tx: &impl Db, sql: &str, app: &str) -> StoreResult<Vec<String>> {
    query::all(tx, sql, &[&app])
        .await?
        .iter()
        .map(|row| Ok(row.try_get(0)?))
        .collect()
}
