//! Registries: the `registries` table. Deployments name a registry, so it cannot
//! be deleted while one does.

use super::convert::{millis, time};
use super::failure::{delete_failed, insert_failed, named, not_found, refuse_if_used, scoped};
use super::query::{self, Db};
use crate::{RegistryRecord, StoreResult};
use tokio_postgres::Row;

const REGISTRY_COLUMNS: &str =
    "name, endpoint, private_endpoint, username, password_sealed, insecure, created_at";

/// Reads a row of [`REGISTRY_COLUMNS`], in that order.
fn registry(row: &Row) -> StoreResult<RegistryRecord> {
    Ok(RegistryRecord {
        name: row.try_get(0)?,
        endpoint: row.try_get(1)?,
        private_endpoint: row.try_get(2)?,
        username: row.try_get(3)?,
        password_sealed: row.try_get(4)?,
        insecure: row.try_get(5)?,
        created_at: time("registries.created_at", row.try_get(6)?)?,
    })
}

/// Fails with `NotFound` unless the registry exists.
pub(super) async fn require(tx: &impl Db, name: &str) -> StoreResult<()> {
    let sql = "SELECT EXISTS (SELECT 1 FROM registries WHERE name = $1)";
    if query::exists(tx, sql, &[&name]).await? {
        Ok(())
    } else {
        Err(not_found("registry", name))
    }
}

pub(super) async fn create(tx: &impl Db, registry: &RegistryRecord) -> StoreResult<()> {
    query::execute(
        tx,
        "INSERT INTO registries (name, endpoint, private_endpoint, username, password_sealed, \
         insecure, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &registry.name,
            &registry.endpoint,
            &registry.private_endpoint,
            &registry.username,
            &registry.password_sealed,
            &registry.insecure,
            &millis(registry.created_at),
        ],
    )
    .await
    .map_err(|err| insert_failed(err, "registry", &registry.name))?;
    Ok(())
}

pub(super) async fn list(tx: &impl Db) -> StoreResult<Vec<RegistryRecord>> {
    let sql = format!("SELECT {REGISTRY_COLUMNS} FROM registries ORDER BY name");
    query::all(tx, &sql, &[])
        .await?
        .iter()
        .map(registry)
        .collect()
}

pub(super) async fn fetch(tx: &impl Db, name: &str) -> StoreResult<RegistryRecord> {
    let sql = format!("SELECT {REGISTRY_COLUMNS} FROM registries WHERE name = $1");
    let row = query::optional(tx, &sql, &[&name])
        .await?
        .ok_or_else(|| not_found("registry", name))?;
    registry(&row)
}

/// Deletes a registry that no deployment names; the row is locked first, so a
/// deployment naming it created meanwhile waits and then finds it gone.
pub(super) async fn delete(tx: &impl Db, name: &str) -> StoreResult<()> {
    let sql = "SELECT 1 FROM registries WHERE name = $1 FOR UPDATE";
    if query::optional(tx, sql, &[&name]).await?.is_none() {
        return Err(not_found("registry", name));
    }
    let users = query::all(
        tx,
        "SELECT app, name FROM deployments WHERE image_registry = $1 ORDER BY app, name",
        &[&name],
    )
    .await?
    .iter()
    .map(|row| Ok(scoped(row.try_get(0)?, row.try_get(1)?)))
    .collect::<StoreResult<Vec<String>>>()?;
    refuse_if_used(
        "registry",
        name,
        [named("deployment", "deployments", &users)],
    )?;
    query::execute(tx, "DELETE FROM registries WHERE name = $1", &[&name])
        .await
        .map_err(|err| delete_failed(err, "registry", name))?;
    Ok(())
}
