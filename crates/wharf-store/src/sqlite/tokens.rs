//! API tokens and registration tokens: the `api_tokens` and `registration_tokens`
//! tables. Registration tokens are spent by `instances::register`.

use super::convert::{millis, time, unsigned};
use super::failure::{insert_failed, not_found};
use crate::{ApiTokenRecord, RegistrationTokenRecord, StoreResult};
use sqlx::SqliteConnection;

#[derive(sqlx::FromRow)]
struct ApiTokenRow {
    id: String,
    hash: String,
    role: String,
    created_at: i64,
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

pub(super) async fn api_create(
    conn: &mut SqliteConnection,
    token: &ApiTokenRecord,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO api_tokens (id, hash, role, created_at) VALUES (?, ?, ?, ?)")
        .bind(&token.id)
        .bind(&token.hash)
        .bind(&token.role)
        .bind(millis(token.created_at))
        .execute(conn)
        .await
        .map_err(|err| insert_failed(err, "api token", &token.id))?;
    Ok(())
}

pub(super) async fn api_by_hash(
    conn: &mut SqliteConnection,
    hash: &str,
) -> StoreResult<Option<ApiTokenRecord>> {
    sqlx::query_as::<_, ApiTokenRow>(
        "SELECT id, hash, role, created_at FROM api_tokens WHERE hash = ?",
    )
    .bind(hash)
    .fetch_optional(conn)
    .await?
    .map(ApiTokenRecord::try_from)
    .transpose()
}

pub(super) async fn api_count(conn: &mut SqliteConnection) -> StoreResult<u64> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
        .fetch_one(conn)
        .await?;
    unsigned("COUNT(api_tokens)", count)
}

/// A registration token as stored. `instances::register` reads it too.
#[derive(sqlx::FromRow)]
pub(super) struct RegistrationTokenRow {
    pub(super) id: String,
    pub(super) hash: String,
    pub(super) created_at: i64,
    pub(super) expires_at: i64,
    pub(super) uses: i64,
    pub(super) uses_left: i64,
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

pub(super) async fn registration_create(
    conn: &mut SqliteConnection,
    token: &RegistrationTokenRecord,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO registration_tokens (id, hash, created_at, expires_at, uses, uses_left) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&token.id)
    .bind(&token.hash)
    .bind(millis(token.created_at))
    .bind(millis(token.expires_at))
    .bind(i64::from(token.uses))
    .bind(i64::from(token.uses_left))
    .execute(conn)
    .await
    .map_err(|err| insert_failed(err, "registration token", &token.id))?;
    Ok(())
}

pub(super) async fn registration_list(
    conn: &mut SqliteConnection,
) -> StoreResult<Vec<RegistrationTokenRecord>> {
    let sql = format!(
        "SELECT {REGISTRATION_TOKEN_COLUMNS} FROM registration_tokens ORDER BY created_at, id"
    );
    sqlx::query_as::<_, RegistrationTokenRow>(&sql)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(RegistrationTokenRecord::try_from)
        .collect()
}

pub(super) async fn registration_delete(conn: &mut SqliteConnection, id: &str) -> StoreResult<()> {
    let deleted = sqlx::query("DELETE FROM registration_tokens WHERE id = ?")
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(not_found("registration token", id));
    }
    Ok(())
}
