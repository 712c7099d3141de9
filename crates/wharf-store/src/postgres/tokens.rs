//! API tokens and registration tokens: the `api_tokens` and `registration_tokens`
//! tables. Registration tokens are spent by `instances::register`.

use super::convert::{millis, time, unsigned};
use super::failure::{insert_failed, not_found};
use super::query::{self, Db};
use crate::{ApiTokenRecord, RegistrationTokenRecord, StoreResult};
use tokio_postgres::Row;

fn api_token(row: &Row) -> StoreResult<ApiTokenRecord> {
    Ok(ApiTokenRecord {
        id: row.try_get(0)?,
        hash: row.try_get(1)?,
        role: row.try_get(2)?,
        created_at: time("api_tokens.created_at", row.try_get(3)?)?,
    })
}

pub(super) async fn api_create(tx: &impl Db, token: &ApiTokenRecord) -> StoreResult<()> {
    query::execute(
        tx,
        "INSERT INTO api_tokens (id, hash, role, created_at) VALUES ($1, $2, $3, $4)",
        &[
            &token.id,
            &token.hash,
            &token.role,
            &millis(token.created_at),
        ],
    )
    .await
    .map_err(|err| insert_failed(err, "api token", &token.id))?;
    Ok(())
}

pub(super) async fn api_by_hash(tx: &impl Db, hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
    query::optional(
        tx,
        "SELECT id, hash, role, created_at FROM api_tokens WHERE hash = $1",
        &[&hash],
    )
    .await?
    .as_ref()
    .map(api_token)
    .transpose()
}

pub(super) async fn api_count(tx: &impl Db) -> StoreResult<u64> {
    let count: i64 = query::one(tx, "SELECT COUNT(*) FROM api_tokens", &[])
        .await?
        .try_get(0)?;
    unsigned("COUNT(api_tokens)", count)
}

/// Reads a row of `id, hash, created_at, expires_at, uses, uses_left`.
fn registration_token(row: &Row) -> StoreResult<RegistrationTokenRecord> {
    Ok(RegistrationTokenRecord {
        id: row.try_get(0)?,
        hash: row.try_get(1)?,
        created_at: time("registration_tokens.created_at", row.try_get(2)?)?,
        expires_at: time("registration_tokens.expires_at", row.try_get(3)?)?,
        uses: unsigned("registration_tokens.uses", row.try_get(4)?)?,
        uses_left: unsigned("registration_tokens.uses_left", row.try_get(5)?)?,
    })
}

pub(super) async fn registration_create(
    tx: &impl Db,
    token: &RegistrationTokenRecord,
) -> StoreResult<()> {
    query::execute(
        tx,
        "INSERT INTO registration_tokens (id, hash, created_at, expires_at, uses, uses_left) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &token.id,
            &token.hash,
            &millis(token.created_at),
            &millis(token.expires_at),
            &i64::from(token.uses),
            &i64::from(token.uses_left),
        ],
    )
    .await
    .map_err(|err| insert_failed(err, "registration token", &token.id))?;
    Ok(())
}

pub(super) async fn registration_list(tx: &impl Db) -> StoreResult<Vec<RegistrationTokenRecord>> {
    query::all(
        tx,
        "SELECT id, hash, created_at, expires_at, uses, uses_left FROM registration_tokens \
         ORDER BY created_at, id",
        &[],
    )
    .await?
    .iter()
    .map(registration_token)
    .collect()
}

pub(super) async fn registration_delete(tx: &impl Db, id: &str) -> StoreResult<()> {
    let deleted =
        query::execute(tx, "DELETE FROM registration_tokens WHERE id = $1", &[&id]).await?;
    if deleted == 0 {
        return Err(not_found("registration token", id));
    }
    Ok(())
}
