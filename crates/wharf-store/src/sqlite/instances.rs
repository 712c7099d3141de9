//! Instances: the `instances` table, registration (which spends a registration
//! token), heartbeats, deregistration and the groups an instance belongs to.

use super::convert::{labels, labels_json, millis, optional_time, time};
use super::failure::{already_exists, insert_failed, not_found};
use crate::{HeartbeatRecord, InstanceRecord, MembershipRecord, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

/// The columns of an [`InstanceRow`], read from the `instances` table aliased `i`.
pub(super) const INSTANCE_COLUMNS: &str = "i.id, i.name, i.hostname, i.address, i.os, i.arch, \
     i.agent_version, i.labels, i.credential_hash, i.scaling_group, i.registered_at, \
     i.last_heartbeat_at, i.docker_version, i.docker_error";

/// An instance as stored. `groups::members` reads it too.
#[derive(sqlx::FromRow)]
pub(super) struct InstanceRow {
    id: String,
    name: String,
    hostname: String,
    address: String,
    os: String,
    arch: String,
    agent_version: String,
    labels: String,
    credential_hash: String,
    scaling_group: Option<String>,
    registered_at: i64,
    last_heartbeat_at: Option<i64>,
    docker_version: Option<String>,
    docker_error: Option<String>,
}

impl TryFrom<InstanceRow> for InstanceRecord {
    type Error = StoreError;

    fn try_from(row: InstanceRow) -> StoreResult<Self> {
        Ok(InstanceRecord {
            labels: labels(&row.labels)?,
            registered_at: time("instances.registered_at", row.registered_at)?,
            last_heartbeat_at: optional_time("instances.last_heartbeat_at", row.last_heartbeat_at)?,
            id: row.id,
            name: row.name,
            hostname: row.hostname,
            address: row.address,
            os: row.os,
            arch: row.arch,
            agent_version: row.agent_version,
            credential_hash: row.credential_hash,
            scaling_group: row.scaling_group,
            docker_version: row.docker_version,
            docker_error: row.docker_error,
        })
    }
}

/// Spends one use of a registration token, then inserts the instance; the caller's
/// transaction makes the two one step, so a refused insert spends nothing.
pub(super) async fn register(
    conn: &mut SqliteConnection,
    token_hash: &str,
    instance: &InstanceRecord,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    // The token is checked before the name so that a caller without a valid token
    // learns nothing about which names exist.
    take_registration_use(conn, token_hash, now).await?;
    insert(conn, instance).await
}

/// Takes one use of the token with `hash` if it is unexpired and has one left.
/// The condition sits in the UPDATE itself, so that two registrations can never
/// both take the last use, even from two processes sharing the file.
async fn take_registration_use(
    conn: &mut SqliteConnection,
    hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let taken: Option<String> = sqlx::query_scalar(
        "UPDATE registration_tokens SET uses_left = uses_left - 1 \
         WHERE hash = ? AND uses_left > 0 AND expires_at > ? RETURNING id",
    )
    .bind(hash)
    .bind(millis(now))
    .fetch_optional(&mut *conn)
    .await?;
    match taken {
        Some(_) => Ok(()),
        None => Err(why_refused(conn, hash, now).await?),
    }
}

/// Says why a registration token could not be used.
async fn why_refused(
    conn: &mut SqliteConnection,
    hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<StoreError> {
    let token: Option<(i64, i64)> =
        sqlx::query_as("SELECT expires_at, uses_left FROM registration_tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(conn)
            .await?;
    let reason = match token {
        None => "unknown or revoked registration token",
        Some((expires_at, _)) if expires_at <= millis(now) => "registration token expired",
        Some(_) => "registration token has no uses left",
    };
    Ok(StoreError::RegistrationRefused(reason))
}

/// Inserts an instance after checking that its name and id are free, so that the
/// error names which one is taken.
async fn insert(conn: &mut SqliteConnection, instance: &InstanceRecord) -> StoreResult<()> {
    if exists_where(conn, "name", &instance.name).await? {
        return Err(already_exists("instance name", &instance.name));
    }
    if exists_where(conn, "id", &instance.id).await? {
        return Err(already_exists("instance", &instance.id));
    }
    sqlx::query(
        "INSERT INTO instances (id, name, hostname, address, os, arch, agent_version, labels, \
         credential_hash, scaling_group, registered_at, last_heartbeat_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&instance.id)
    .bind(&instance.name)
    .bind(&instance.hostname)
    .bind(&instance.address)
    .bind(&instance.os)
    .bind(&instance.arch)
    .bind(&instance.agent_version)
    .bind(labels_json(&instance.labels)?)
    .bind(&instance.credential_hash)
    .bind(&instance.scaling_group)
    .bind(millis(instance.registered_at))
    .bind(instance.last_heartbeat_at.map(millis))
    .execute(conn)
    .await
    // Name and id were checked above, so a unique violation here is the
    // credential hash.
    .map_err(|err| insert_failed(err, "instance credential", &instance.name))?;
    Ok(())
}

/// Whether an instance has `value` in `column`, which is one of our own column
/// names, never input.
async fn exists_where(
    conn: &mut SqliteConnection,
    column: &'static str,
    value: &str,
) -> StoreResult<bool> {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM instances WHERE {column} = ?)");
    Ok(sqlx::query_scalar(&sql).bind(value).fetch_one(conn).await?)
}

/// Fails with `NotFound` unless an instance has this id.
pub(super) async fn require(conn: &mut SqliteConnection, id: &str) -> StoreResult<()> {
    if exists_where(conn, "id", id).await? {
        Ok(())
    } else {
        Err(not_found("instance", id))
    }
}

async fn find_where(
    conn: &mut SqliteConnection,
    column: &'static str,
    value: &str,
) -> StoreResult<Option<InstanceRecord>> {
    let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances i WHERE i.{column} = ?");
    sqlx::query_as::<_, InstanceRow>(&sql)
        .bind(value)
        .fetch_optional(conn)
        .await?
        .map(InstanceRecord::try_from)
        .transpose()
}

pub(super) async fn list(conn: &mut SqliteConnection) -> StoreResult<Vec<InstanceRecord>> {
    let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances i ORDER BY i.name");
    sqlx::query_as::<_, InstanceRow>(&sql)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(InstanceRecord::try_from)
        .collect()
}

pub(super) async fn fetch(
    conn: &mut SqliteConnection,
    id_or_name: &str,
) -> StoreResult<InstanceRecord> {
    if let Some(instance) = find_where(conn, "id", id_or_name).await? {
        return Ok(instance);
    }
    find_where(conn, "name", id_or_name)
        .await?
        .ok_or_else(|| not_found("instance", id_or_name))
}

pub(super) async fn by_credential(
    conn: &mut SqliteConnection,
    hash: &str,
) -> StoreResult<Option<InstanceRecord>> {
    find_where(conn, "credential_hash", hash).await
}

/// Records many heartbeats in one statement (the heartbeats go in as one JSON
/// array): at thousands of agents a statement per heartbeat is a round trip to
/// the writer's thread each. Answers, for each, whether its instance exists. When
/// one instance has several heartbeats here, the latest one wins.
pub(super) async fn heartbeats(
    conn: &mut SqliteConnection,
    beats: &[HeartbeatRecord],
) -> StoreResult<Vec<bool>> {
    if beats.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<serde_json::Value> = beats
        .iter()
        .map(|beat| {
            serde_json::json!({
                "id": beat.id,
                "at": millis(beat.at),
                "version": beat.agent_version,
                "address": beat.address,
            })
        })
        .collect();
    let json = serde_json::Value::Array(rows).to_string();
    // `json_each` numbers the array's elements (`key`); of several heartbeats of
    // one instance the one with the latest time (then the last sent) is used.
    let updated: Vec<String> = sqlx::query_scalar(
        "UPDATE instances SET last_heartbeat_at = b.at, agent_version = b.version, \
         address = b.address \
         FROM (SELECT value ->> 'id' AS id, value ->> 'at' AS at, \
                      value ->> 'version' AS version, value ->> 'address' AS address, \
                      ROW_NUMBER() OVER (PARTITION BY value ->> 'id' \
                                         ORDER BY value ->> 'at' DESC, key DESC) AS n \
               FROM json_each(?)) AS b \
         WHERE b.n = 1 AND instances.id = b.id \
         RETURNING instances.id",
    )
    .bind(json)
    .fetch_all(conn)
    .await?;
    let updated: std::collections::HashSet<String> = updated.into_iter().collect();
    Ok(beats
        .iter()
        .map(|beat| updated.contains(&beat.id))
        .collect())
}

pub(super) async fn heartbeat(
    conn: &mut SqliteConnection,
    id: &str,
    at: DateTime<Utc>,
    agent_version: &str,
    address: &str,
) -> StoreResult<()> {
    let updated = sqlx::query(
        "UPDATE instances SET last_heartbeat_at = ?, agent_version = ?, address = ? WHERE id = ?",
    )
    .bind(millis(at))
    .bind(agent_version)
    .bind(address)
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(not_found("instance", id));
    }
    Ok(())
}

/// Deletes an instance and its memberships. The memberships are deleted here
/// rather than left to `ON DELETE CASCADE` so that the outcome does not hang on
/// the connection's foreign-key setting.
pub(super) async fn delete(conn: &mut SqliteConnection, id: &str) -> StoreResult<()> {
    let instance = find_where(conn, "id", id)
        .await?
        .ok_or_else(|| not_found("instance", id))?;
    super::scaling::leave(conn, &instance, Utc::now()).await?;
    sqlx::query("DELETE FROM group_members WHERE instance_id = ?")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM instances WHERE id = ?")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) async fn memberships(
    conn: &mut SqliteConnection,
    id: &str,
) -> StoreResult<Vec<MembershipRecord>> {
    require(conn, id).await?;
    let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT app, group_name, deployment, image_digest FROM group_members \
         WHERE instance_id = ? ORDER BY app, group_name",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(app, group, deployment, image_digest)| MembershipRecord {
            app,
            group,
            deployment,
            image_digest,
        })
        .collect())
}

/// Records what the agent reported about the host's Docker Engine.
pub(super) async fn set_docker(
    conn: &mut SqliteConnection,
    id: &str,
    version: Option<&str>,
    error: Option<&str>,
) -> StoreResult<()> {
    let updated =
        sqlx::query("UPDATE instances SET docker_version = ?, docker_error = ? WHERE id = ?")
            .bind(version)
            .bind(error)
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected();
    if updated == 0 {
        return Err(not_found("instance", id));
    }
    Ok(())
}
