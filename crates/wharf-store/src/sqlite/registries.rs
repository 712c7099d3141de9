//! Registries: the `registries` table. Deployments name a registry, so it cannot
//! be deleted while one does.

use super::convert::{boolean, millis, time};
use super::failure::{delete_failed, insert_failed, named, not_found, refuse_if_used, scoped};
use crate::{RegistryRecord, StoreError, StoreResult};
use sqlx::SqliteConnection;

const REGISTRY_COLUMNS: &str =
    "name, endpoint, private_endpoint, username, password_sealed, insecure, created_at";

#[derive(sqlx::FromRow)]
struct RegistryRow {
    name: String,
    endpoint: String,
    private_endpoint: Option<String>,
    username: Option<String>,
    password_sealed: Option<Vec<u8>>,
    insecure: i64,
    created_at: i64,
}

impl TryFrom<RegistryRow> for RegistryRecord {
    type Error = StoreError;

    fn try_from(row: RegistryRow) -> StoreResult<Self> {
        Ok(RegistryRecord {
            name: row.name,
            endpoint: row.endpoint,
            private_endpoint: row.private_endpoint,
            username: row.username,
            password_sealed: row.password_sealed,
            insecure: boolean("registries.insecure", row.insecure)?,
            created_at: time("registries.created_at", row.created_at)?,
        })
    }
}

/// Fails with `NotFound` unless the registry exists.
pub(super) async fn require(conn: &mut SqliteConnection, name: &str) -> StoreResult<()> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM registries WHERE name = ?)")
            .bind(name)
            .fetch_one(conn)
            .await?;
    if exists {
        Ok(())
    } else {
        Err(not_found("registry", name))
    }
}

pub(super) async fn create(
    conn: &mut SqliteConnection,
    registry: &RegistryRecord,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO registries (name, endpoint, private_endpoint, username, password_sealed, \
         insecure, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&registry.name)
    .bind(&registry.endpoint)
    .bind(&registry.private_endpoint)
    .bind(&registry.username)
    .bind(&registry.password_sealed)
    .bind(i64::from(registry.insecure))
    .bind(millis(registry.created_at))
    .execute(conn)
    .await
    .map_err(|err| insert_failed(err, "registry", &registry.name))?;
    Ok(())
}

pub(super) async fn list(conn: &mut SqliteConnection) -> StoreResult<Vec<RegistryRecord>> {
    let sql = format!("SELECT {REGISTRY_COLUMNS} FROM registries ORDER BY name");
    sqlx::query_as::<_, RegistryRow>(&sql)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(RegistryRecord::try_from)
        .collect()
}

pub(super) async fn fetch(conn: &mut SqliteConnection, name: &str) -> StoreResult<RegistryRecord> {
    let sql = format!("SELECT {REGISTRY_COLUMNS} FROM registries WHERE name = ?");
    sqlx::query_as::<_, RegistryRow>(&sql)
        .bind(name)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| not_found("registry", name))?
        .try_into()
}

/// Deletes a registry that no deployment names.
pub(super) async fn delete(conn: &mut SqliteConnection, name: &str) -> StoreResult<()> {
    require(conn, name).await?;
    let users: Vec<(String, String)> = sqlx::query_as(
        "SELECT app, name FROM deployments WHERE image_registry = ? ORDER BY app, name",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    let users: Vec<String> = users.iter().map(|(app, name)| scoped(app, name)).collect();
    refuse_if_used(
        "registry",
        name,
        [named("deployment", "deployments", &users)],
    )?;
    sqlx::query("DELETE FROM registries WHERE name = ?")
        .bind(name)
        .execute(conn)
        .await
        .map_err(|err| delete_failed(err, "registry", name))?;
    Ok(())
}
