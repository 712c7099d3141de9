//! Registries: the `registries` table. Deployments name a registry, so it cannot
//! be deleted while one does.

use super::convert::{boolean, millis, time};
use super::failure::{delete_failed, insert_failed, named, not_found, refuse_if_used, scoped};
use super::query;
use crate::{RegistryRecord, StoreError, StoreResult};
use rusqlite::{params, Connection, Row};

const REGISTRY_COLUMNS: &str =
    "name, endpoint, private_endpoint, username, password_sealed, insecure, created_at";

struct RegistryRow {
    name: String,
    endpoint: String,
    private_endpoint: Option<String>,
    username: Option<String>,
    password_sealed: Option<Vec<u8>>,
    insecure: i64,
    created_at: i64,
}

impl RegistryRow {
    /// Reads a row of [`REGISTRY_COLUMNS`], in that order.
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RegistryRow {
            name: row.get(0)?,
            endpoint: row.get(1)?,
            private_endpoint: row.get(2)?,
            username: row.get(3)?,
            password_sealed: row.get(4)?,
            insecure: row.get(5)?,
            created_at: row.get(6)?,
        })
    }
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
pub(super) fn require(conn: &Connection, name: &str) -> StoreResult<()> {
    let exists: bool = query::one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM registries WHERE name = ?)",
        [name],
        |row| row.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(not_found("registry", name))
    }
}

pub(super) fn create(conn: &Connection, registry: &RegistryRecord) -> StoreResult<()> {
    query::execute(
        conn,
        "INSERT INTO registries (name, endpoint, private_endpoint, username, password_sealed, \
         insecure, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        params![
            registry.name,
            registry.endpoint,
            registry.private_endpoint,
            registry.username,
            registry.password_sealed,
            i64::from(registry.insecure),
            millis(registry.created_at),
        ],
    )
    .map_err(|err| insert_failed(err, "registry", &registry.name))?;
    Ok(())
}

pub(super) fn list(conn: &Connection) -> StoreResult<Vec<RegistryRecord>> {
    let sql = format!("SELECT {REGISTRY_COLUMNS} FROM registries ORDER BY name");
    query::all(conn, &sql, [], RegistryRow::read)?
        .into_iter()
        .map(RegistryRecord::try_from)
        .collect()
}

pub(super) fn fetch(conn: &Connection, name: &str) -> StoreResult<RegistryRecord> {
    let sql = format!("SELECT {REGISTRY_COLUMNS} FROM registries WHERE name = ?");
    query::optional(conn, &sql, [name], RegistryRow::read)?
        .ok_or_else(|| not_found("registry", name))?
        .try_into()
}

/// Deletes a registry that no deployment names.
pub(super) fn delete(conn: &Connection, name: &str) -> StoreResult<()> {
    require(conn, name)?;
    let users: Vec<(String, String)> = query::all(
        conn,
        "SELECT app, name FROM deployments WHERE image_registry = ? ORDER BY app, name",
        [name],
        |row| row.try_into(),
    )?;
    let users: Vec<String> = users.iter().map(|(app, name)| scoped(app, name)).collect();
    refuse_if_used(
        "registry",
        name,
        [named("deployment", "deployments", &users)],
    )?;
    query::execute(conn, "DELETE FROM registries WHERE name = ?", [name])
        .map_err(|err| delete_failed(err, "registry", name))?;
    Ok(())
}

/// Replaces a registry's endpoints, credentials and `insecure` flag.
pub(super) fn update(conn: &Connection, registry: &RegistryRecord) -> StoreResult<()> {
    let changed = query::execute(
        conn,
        "UPDATE registries SET endpoint = ?, private_endpoint = ?, username = ?, \
         password_sealed = ?, insecure = ? WHERE name = ?",
        params![
            registry.endpoint,
            registry.private_endpoint,
            registry.username,
            registry.password_sealed,
            i64::from(registry.insecure),
            registry.name,
        ],
    )?;
    if changed == 0 {
        return Err(not_found("registry", &registry.name));
    }
    Ok(())
}
