//! API tokens and registration tokens: the `api_tokens` and `registration_tokens`
//! tables. Registration tokens are spent by `instances::register`.

use super::convert::{millis, time, unsigned};
use super::failure::{insert_failed, not_found};
use super::query;
use crate::{ApiTokenRecord, RegistrationTokenRecord, StoreResult};
use rusqlite::{params, Connection, Row};

struct ApiTokenRow {
    id: String,
    hash: String,
    role: String,
    created_at: i64,
}

impl ApiTokenRow {
    /// Reads a row of `id, hash, role, created_at`.
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(ApiTokenRow {
            id: row.get(0)?,
            hash: row.get(1)?,
            role: row.get(2)?,
            created_at: row.get(3)?,
        })
    }
}

impl TryFrom<ApiTokenRow> for ApiTokenRecord {
    type Error = crate::StoreError;

    fn try_from(row: ApiTokenRow) -> StoreResult<Self> {
        Ok(ApiTokenRecord {
            id: row.id,
            hash: row.hash,
            role: row.role,
            created_at: time("api_tokens.created_at", row.created_at)?,
        })
    }
}

pub(super) fn api_create(conn: &Connection, token: &ApiTokenRecord) -> StoreResult<()> {
    query::execute(
        conn,
        "INSERT INTO api_tokens (id, hash, role, created_at) VALUES (?, ?, ?, ?)",
        params![token.id, token.hash, token.role, millis(token.created_at)],
    )
    .map_err(|err| insert_failed(err, "api token", &token.id))?;
    Ok(())
}

pub(super) fn api_by_hash(conn: &Connection, hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
    query::optional(
        conn,
        "SELECT id, hash, role, created_at FROM api_tokens WHERE hash = ?",
        [hash],
        ApiTokenRow::read,
    )?
    .map(ApiTokenRecord::try_from)
    .transpose()
}

pub(super) fn api_count(conn: &Connection) -> StoreResult<u64> {
    let count: i64 = query::one(conn, "SELECT COUNT(*) FROM api_tokens", [], |row| {
        row.get(0)
    })?;
    unsigned("COUNT(api_tokens)", count)
}

/// A registration token as stored. `instances::register` reads it too.
pub(super) struct RegistrationTokenRow {
    pub(super) id: String,
    pub(super) hash: String,
    pub(super) created_at: i64,
    pub(super) expires_at: i64,
    pub(super) uses: i64,
    pub(super) uses_left: i64,
}

impl RegistrationTokenRow {
    /// Reads a row of [`REGISTRATION_TOKEN_COLUMNS`], in their order.
    pub(super) fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RegistrationTokenRow {
            id: row.get(0)?,
            hash: row.get(1)?,
            created_at: row.get(2)?,
            expires_at: row.get(3)?,
            uses: row.get(4)?,
            uses_left: row.get(5)?,
        })
    }
}

impl TryFrom<RegistrationTokenRow> for RegistrationTokenRecord {
    type Error = crate::StoreError;

    fn try_from(row: RegistrationTokenRow) -> StoreResult<Self> {
        Ok(RegistrationTokenRecord {
            id: row.id,
            hash: row.hash,
            created_at: time("registration_tokens.created_at", row.created_at)?,
            expires_at: time("registration_tokens.expires_at", row.expires_at)?,
            uses: unsigned("registration_tokens.uses", row.uses)?,
            uses_left: unsigned("registration_tokens.uses_left", row.uses_left)?,
        })
    }
}

pub(super) const REGISTRATION_TOKEN_COLUMNS: &str =
    "id, hash, created_at, expires_at, uses, uses_left";

pub(super) fn registration_create(
    conn: &Connection,
    token: &RegistrationTokenRecord,
) -> StoreResult<()> {
    query::execute(
        conn,
        "INSERT INTO registration_tokens (id, hash, created_at, expires_at, uses, uses_left) \
         VALUES (?, ?, ?, ?, ?, ?)",
        params![
            token.id,
            token.hash,
            millis(token.created_at),
            millis(token.expires_at),
            i64::from(token.uses),
            i64::from(token.uses_left),
        ],
    )
    .map_err(|err| insert_failed(err, "registration token", &token.id))?;
    Ok(())
}

pub(super) fn registration_list(conn: &Connection) -> StoreResult<Vec<RegistrationTokenRecord>> {
    let sql = format!(
        "SELECT {REGISTRATION_TOKEN_COLUMNS} FROM registration_tokens ORDER BY created_at, id"
    );
    query::all(conn, &sql, [], RegistrationTokenRow::read)?
        .into_iter()
        .map(RegistrationTokenRecord::try_from)
        .collect()
}

pub(super) fn registration_delete(conn: &Connection, id: &str) -> StoreResult<()> {
    let deleted = query::execute(conn, "DELETE FROM registration_tokens WHERE id = ?", [id])?;
    if deleted == 0 {
        return Err(not_found("registration token", id));
    }
    Ok(())
}
