//! Instances: the `instances` table, registration (which spends a registration
//! token), heartbeats, deregistration and the groups an instance belongs to.

use super::convert::{labels, labels_json, millis, optional_time, time};
use super::failure::{already_exists, insert_failed, not_found};
use super::query;
use crate::{HeartbeatRecord, InstanceRecord, MembershipRecord, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Row};

/// The columns of an [`InstanceRow`], read from the `instances` table aliased `i`.
pub(super) const INSTANCE_COLUMNS: &str = "i.id, i.name, i.hostname, i.address, i.os, i.arch, \
     i.agent_version, i.labels, i.credential_hash, i.scaling_group, i.registered_at, \
     i.last_heartbeat_at, i.docker_version, i.docker_error";

/// How many columns [`INSTANCE_COLUMNS`] names: a query that selects more after
/// them finds its own from this index on.
pub(super) const INSTANCE_COLUMN_COUNT: usize = 14;

/// An instance as stored. `groups::members` reads it too.
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

impl InstanceRow {
    /// Reads a row that starts with [`INSTANCE_COLUMNS`], in their order.
    pub(super) fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(InstanceRow {
            id: row.get(0)?,
            name: row.get(1)?,
            hostname: row.get(2)?,
            address: row.get(3)?,
            os: row.get(4)?,
            arch: row.get(5)?,
            agent_version: row.get(6)?,
            labels: row.get(7)?,
            credential_hash: row.get(8)?,
            scaling_group: row.get(9)?,
            registered_at: row.get(10)?,
            last_heartbeat_at: row.get(11)?,
            docker_version: row.get(12)?,
            docker_error: row.get(13)?,
        })
    }
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
pub(super) fn register(
    conn: &Connection,
    token_hash: &str,
    instance: &InstanceRecord,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    // The token is checked before the name so that a caller without a valid token
    // learns nothing about which names exist.
    take_registration_use(conn, token_hash, now)?;
    insert(conn, instance)
}

/// Takes one use of the token with `hash` if it is unexpired and has one left.
/// The condition sits in the UPDATE itself, so that two registrations can never
/// both take the last use, even from two processes sharing the file.
fn take_registration_use(conn: &Connection, hash: &str, now: DateTime<Utc>) -> StoreResult<()> {
    let taken: Option<String> = query::optional(
        conn,
        "UPDATE registration_tokens SET uses_left = uses_left - 1 \
         WHERE hash = ? AND uses_left > 0 AND expires_at > ? RETURNING id",
        params![hash, millis(now)],
        |row| row.get(0),
    )?;
    match taken {
        Some(_) => Ok(()),
        None => Err(why_refused(conn, hash, now)?),
    }
}

/// Says why a registration token could not be used.
fn why_refused(conn: &Connection, hash: &str, now: DateTime<Utc>) -> StoreResult<StoreError> {
    let token: Option<(i64, i64)> = query::optional(
        conn,
        "SELECT expires_at, uses_left FROM registration_tokens WHERE hash = ?",
        [hash],
        |row| row.try_into(),
    )?;
    let reason = match token {
        None => "unknown or revoked registration token",
        Some((expires_at, _)) if expires_at <= millis(now) => "registration token expired",
        Some(_) => "registration token has no uses left",
    };
    Ok(StoreError::RegistrationRefused(reason))
}

/// Inserts an instance after checking that its name and id are free, so that the
/// error names which one is taken.
fn insert(conn: &Connection, instance: &InstanceRecord) -> StoreResult<()> {
    if exists_where(conn, "name", &instance.name)? {
        return Err(already_exists("instance name", &instance.name));
    }
    if exists_where(conn, "id", &instance.id)? {
        return Err(already_exists("instance", &instance.id));
    }
    query::execute(
        conn,
        "INSERT INTO instances (id, name, hostname, address, os, arch, agent_version, labels, \
         credential_hash, scaling_group, registered_at, last_heartbeat_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            instance.id,
            instance.name,
            instance.hostname,
            instance.address,
            instance.os,
            instance.arch,
            instance.agent_version,
            labels_json(&instance.labels)?,
            instance.credential_hash,
            instance.scaling_group,
            millis(instance.registered_at),
            instance.last_heartbeat_at.map(millis),
        ],
    )
    // Name and id were checked above, so a unique violation here is the
    // credential hash.
    .map_err(|err| insert_failed(err, "instance credential", &instance.name))?;
    Ok(())
}

/// Whether an instance has `value` in `column`, which is one of our own column
/// names, never input.
fn exists_where(conn: &Connection, column: &'static str, value: &str) -> StoreResult<bool> {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM instances WHERE {column} = ?)");
    query::one(conn, &sql, [value], |row| row.get(0))
}

/// Fails with `NotFound` unless an instance has this id.
pub(super) fn require(conn: &Connection, id: &str) -> StoreResult<()> {
    if exists_where(conn, "id", id)? {
        Ok(())
    } else {
        Err(not_found("instance", id))
    }
}

fn find_where(
    conn: &Connection,
    column: &'static str,
    value: &str,
) -> StoreResult<Option<InstanceRecord>> {
    let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances i WHERE i.{column} = ?");
    query::optional(conn, &sql, [value], InstanceRow::read)?
        .map(InstanceRecord::try_from)
        .transpose()
}

pub(super) fn list(conn: &Connection) -> StoreResult<Vec<InstanceRecord>> {
    let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances i ORDER BY i.name");
    query::all(conn, &sql, [], InstanceRow::read)?
        .into_iter()
        .map(InstanceRecord::try_from)
        .collect()
}

pub(super) fn fetch(conn: &Connection, id_or_name: &str) -> StoreResult<InstanceRecord> {
    if let Some(instance) = find_where(conn, "id", id_or_name)? {
        return Ok(instance);
    }
    find_where(conn, "name", id_or_name)?.ok_or_else(|| not_found("instance", id_or_name))
}

pub(super) fn by_credential(conn: &Connection, hash: &str) -> StoreResult<Option<InstanceRecord>> {
    find_where(conn, "credential_hash", hash)
}

/// Records many heartbeats in one statement (the heartbeats go in as one JSON
/// array): at thousands of agents a statement per heartbeat would be thousands
/// of statements in the writer's transaction. Answers, for each, whether its
/// instance exists. When one instance has several heartbeats here, the latest
/// one wins.
pub(super) fn heartbeats(conn: &Connection, beats: &[HeartbeatRecord]) -> StoreResult<Vec<bool>> {
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
    let updated: Vec<String> = query::all(
        conn,
        "UPDATE instances SET last_heartbeat_at = b.at, agent_version = b.version, \
         address = b.address \
         FROM (SELECT value ->> 'id' AS id, value ->> 'at' AS at, \
                      value ->> 'version' AS version, value ->> 'address' AS address, \
                      ROW_NUMBER() OVER (PARTITION BY value ->> 'id' \
                                         ORDER BY value ->> 'at' DESC, key DESC) AS n \
               FROM json_each(?)) AS b \
         WHERE b.n = 1 AND instances.id = b.id \
         RETURNING instances.id",
        [json],
        |row| row.get(0),
    )?;
    let updated: std::collections::HashSet<String> = updated.into_iter().collect();
    Ok(beats
        .iter()
        .map(|beat| updated.contains(&beat.id))
        .collect())
}

pub(super) fn heartbeat(
    conn: &Connection,
    id: &str,
    at: DateTime<Utc>,
    agent_version: &str,
    address: &str,
) -> StoreResult<()> {
    let updated = query::execute(
        conn,
        "UPDATE instances SET last_heartbeat_at = ?, agent_version = ?, address = ? WHERE id = ?",
        params![millis(at), agent_version, address, id],
    )?;
    if updated == 0 {
        return Err(not_found("instance", id));
    }
    Ok(())
}

/// Deletes an instance and its memberships. The memberships are deleted here
/// rather than left to `ON DELETE CASCADE` so that the outcome does not hang on
/// the connection's foreign-key setting.
pub(super) fn delete(conn: &Connection, id: &str) -> StoreResult<()> {
    let instance = find_where(conn, "id", id)?.ok_or_else(|| not_found("instance", id))?;
    super::scaling::leave(conn, &instance, Utc::now())?;
    query::execute(
        conn,
        "DELETE FROM group_members WHERE instance_id = ?",
        [id],
    )?;
    query::execute(conn, "DELETE FROM instances WHERE id = ?", [id])?;
    Ok(())
}

pub(super) fn memberships(conn: &Connection, id: &str) -> StoreResult<Vec<MembershipRecord>> {
    require(conn, id)?;
    let rows: Vec<(String, String, Option<String>, Option<String>)> = query::all(
        conn,
        "SELECT app, group_name, deployment, image_digest FROM group_members \
         WHERE instance_id = ? ORDER BY app, group_name",
        [id],
        |row| row.try_into(),
    )?;
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
pub(super) fn set_docker(
    conn: &Connection,
    id: &str,
    version: Option<&str>,
    error: Option<&str>,
) -> StoreResult<()> {
    let updated = query::execute(
        conn,
        "UPDATE instances SET docker_version = ?, docker_error = ? WHERE id = ?",
        params![version, error, id],
    )?;
    if updated == 0 {
        return Err(not_found("instance", id));
    }
    Ok(())
}
