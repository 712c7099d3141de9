//! Instances: the `instances` table, registration (which spends a registration
//! token), heartbeats, deregistration and the groups an instance belongs to.

use super::convert::{labels, labels_json, millis, optional_time, time};
use super::failure::{already_exists, constraint, insert_failed, is_unique_violation, not_found};
use super::query::{self, Db};
use crate::{HeartbeatRecord, InstanceRecord, MembershipRecord, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

/// The columns [`instance`] reads, from the `instances` table aliased `i`.
pub(super) const INSTANCE_COLUMNS: &str = "i.id, i.name, i.hostname, i.address, i.os, i.arch, \
     i.agent_version, i.labels, i.credential_hash, i.scaling_group, i.registered_at, \
     i.last_heartbeat_at, i.docker_version, i.docker_error";

/// How many columns [`INSTANCE_COLUMNS`] names.
pub(super) const INSTANCE_COLUMN_COUNT: usize = 14;

/// Reads a row that starts with [`INSTANCE_COLUMNS`], in their order.
pub(super) fn instance(row: &Row) -> StoreResult<InstanceRecord> {
    let labels_text: String = row.try_get(7)?;
    Ok(InstanceRecord {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        hostname: row.try_get(2)?,
        address: row.try_get(3)?,
        os: row.try_get(4)?,
        arch: row.try_get(5)?,
        agent_version: row.try_get(6)?,
        labels: labels(&labels_text)?,
        credential_hash: row.try_get(8)?,
        scaling_group: row.try_get(9)?,
        registered_at: time("instances.registered_at", row.try_get(10)?)?,
        last_heartbeat_at: optional_time("instances.last_heartbeat_at", row.try_get(11)?)?,
        docker_version: row.try_get(12)?,
        docker_error: row.try_get(13)?,
    })
}

/// Spends one use of a registration token, then inserts the instance; the caller's
/// transaction makes the two one step, so a refused insert spends nothing.
pub(super) async fn register(
    tx: &impl Db,
    token_hash: &str,
    instance: &InstanceRecord,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    // The token is checked before the name so that a caller without a valid token
    // learns nothing about which names exist.
    take_registration_use(tx, token_hash, now).await?;
    insert(tx, instance).await
}

/// Takes one use of the token with `hash` if it is unexpired and has one left.
/// The condition sits in the UPDATE, which locks the row and re-checks it after
/// a concurrent registration commits, so two can never both take the last use.
async fn take_registration_use(tx: &impl Db, hash: &str, now: DateTime<Utc>) -> StoreResult<()> {
    let taken = query::optional(
        tx,
        "UPDATE registration_tokens SET uses_left = uses_left - 1 \
         WHERE hash = $1 AND uses_left > 0 AND expires_at > $2 RETURNING id",
        &[&hash, &millis(now)],
    )
    .await?;
    if taken.is_some() {
        return Ok(());
    }
    let token = query::optional(
        tx,
        "SELECT expires_at FROM registration_tokens WHERE hash = $1",
        &[&hash],
    )
    .await?;
    let reason = match token {
        None => "unknown or revoked registration token",
        Some(row) if row.try_get::<_, i64>(0)? <= millis(now) => "registration token expired",
        Some(_) => "registration token has no uses left",
    };
    Err(StoreError::RegistrationRefused(reason))
}

/// Inserts an instance after checking that its name and id are free, so that the
/// error names which one is taken; a concurrent insert of the same name or id
/// is told apart by the constraint that refused it.
async fn insert(tx: &impl Db, instance: &InstanceRecord) -> StoreResult<()> {
    if exists_where(tx, "name", &instance.name).await? {
        return Err(already_exists("instance name", &instance.name));
    }
    if exists_where(tx, "id", &instance.id).await? {
        return Err(already_exists("instance", &instance.id));
    }
    query::execute(
        tx,
        "INSERT INTO instances (id, name, hostname, address, os, arch, agent_version, labels, \
         credential_hash, scaling_group, registered_at, last_heartbeat_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &instance.id,
            &instance.name,
            &instance.hostname,
            &instance.address,
            &instance.os,
            &instance.arch,
            &instance.agent_version,
            &labels_json(&instance.labels)?,
            &instance.credential_hash,
            &instance.scaling_group,
            &millis(instance.registered_at),
            &instance.last_heartbeat_at.map(millis),
        ],
    )
    .await
    .map_err(|err| {
        if is_unique_violation(&err) {
            match constraint(&err) {
                Some("instances_name_key") => {
                    return already_exists("instance name", &instance.name)
                }
                Some("instances_pkey") => return already_exists("instance", &instance.id),
                _ => {}
            }
        }
        insert_failed(err, "instance credential", &instance.name)
    })?;
    Ok(())
}

/// Whether an instance has `value` in `column`, one of our own column names.
async fn exists_where(tx: &impl Db, column: &'static str, value: &str) -> StoreResult<bool> {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM instances WHERE {column} = $1)");
    Ok(query::exists(tx, &sql, &[&value]).await?)
}

/// Fails with `NotFound` unless an instance has this id.
pub(super) async fn require(tx: &impl Db, id: &str) -> StoreResult<()> {
    if exists_where(tx, "id", id).await? {
        Ok(())
    } else {
        Err(not_found("instance", id))
    }
}

async fn find_where(
    tx: &impl Db,
    column: &'static str,
    value: &str,
) -> StoreResult<Option<InstanceRecord>> {
    let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances i WHERE i.{column} = $1");
    query::optional(tx, &sql, &[&value])
        .await?
        .as_ref()
        .map(instance)
        .transpose()
}

pub(super) async fn list(tx: &impl Db) -> StoreResult<Vec<InstanceRecord>> {
    let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances i ORDER BY i.name");
    query::all(tx, &sql, &[])
        .await?
        .iter()
        .map(instance)
        .collect()
}

pub(super) async fn fetch(tx: &impl Db, id_or_name: &str) -> StoreResult<InstanceRecord> {
    if let Some(instance) = find_where(tx, "id", id_or_name).await? {
        return Ok(instance);
    }
    find_where(tx, "name", id_or_name)
        .await?
        .ok_or_else(|| not_found("instance", id_or_name))
}

pub(super) async fn by_credential(tx: &impl Db, hash: &str) -> StoreResult<Option<InstanceRecord>> {
    find_where(tx, "credential_hash", hash).await
}

/// Records many heartbeats in one statement, the heartbeats going in as arrays:
/// at thousands of agents a statement per heartbeat would be thousands of round
/// trips. Answers, for each, whether its instance exists. When one instance has
/// several heartbeats here, the latest one (then the last sent) wins. Rows are
/// locked in id order, so that two servers writing overlapping batches at once
/// wait for each other instead of deadlocking.
pub(super) async fn heartbeats(tx: &impl Db, beats: &[HeartbeatRecord]) -> StoreResult<Vec<bool>> {
    if beats.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = beats.iter().map(|b| b.id.as_str()).collect();
    let ats: Vec<i64> = beats.iter().map(|b| millis(b.at)).collect();
    let versions: Vec<&str> = beats.iter().map(|b| b.agent_version.as_str()).collect();
    let addresses: Vec<&str> = beats.iter().map(|b| b.address.as_str()).collect();
    let updated: Vec<String> = query::all(
        tx,
        "WITH b AS ( \
             SELECT DISTINCT ON (id) id, at, version, address \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[]) \
                  WITH ORDINALITY AS b (id, at, version, address, n) \
             ORDER BY id, at DESC, n DESC), \
         locked AS ( \
             SELECT i.id FROM instances i JOIN b ON b.id = i.id ORDER BY i.id FOR NO KEY UPDATE) \
         UPDATE instances SET last_heartbeat_at = b.at, agent_version = b.version, \
             address = b.address \
         FROM b WHERE instances.id = b.id AND instances.id IN (SELECT id FROM locked) \
         RETURNING instances.id",
        &[&ids, &ats, &versions, &addresses],
    )
    .await?
    .iter()
    .map(|row| row.try_get(0))
    .collect::<Result<_, _>>()?;
    let updated: std::collections::HashSet<String> = updated.into_iter().collect();
    Ok(beats
        .iter()
        .map(|beat| updated.contains(&beat.id))
        .collect())
}

pub(super) async fn heartbeat(
    tx: &impl Db,
    id: &str,
    at: DateTime<Utc>,
    agent_version: &str,
    address: &str,
) -> StoreResult<()> {
    let updated = query::execute(
        tx,
        "UPDATE instances SET last_heartbeat_at = $1, agent_version = $2, address = $3 \
         WHERE id = $4",
        &[&millis(at), &agent_version, &address, &id],
    )
    .await?;
    if updated == 0 {
        return Err(not_found("instance", id));
    }
    Ok(())
}

/// Deletes an instance and its memberships (and records that it left its
/// scaling group).
pub(super) async fn delete(tx: &impl Db, id: &str) -> StoreResult<()> {
    let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances i WHERE i.id = $1 FOR UPDATE");
    let found = query::optional(tx, &sql, &[&id])
        .await?
        .ok_or_else(|| not_found("instance", id))?;
    let found = instance(&found)?;
    super::scaling::leave(tx, &found, Utc::now()).await?;
    query::execute(
        tx,
        "DELETE FROM group_members WHERE instance_id = $1",
        &[&id],
    )
    .await?;
    query::execute(tx, "DELETE FROM instances WHERE id = $1", &[&id]).await?;
    Ok(())
}

pub(super) async fn memberships(tx: &impl Db, id: &str) -> StoreResult<Vec<MembershipRecord>> {
    require(tx, id).await?;
    query::all(
        tx,
        "SELECT app, group_name, deployment, image_digest FROM group_members \
         WHERE instance_id = $1 ORDER BY app, group_name",
        &[&id],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(MembershipRecord {
            app: row.try_get(0)?,
            group: row.try_get(1)?,
            deployment: row.try_get(2)?,
            image_digest: row.try_get(3)?,
        })
    })
    .collect()
}

/// Records what the agent reported about the host's Docker Engine.
pub(super) async fn set_docker(
    tx: &impl Db,
    id: &str,
    version: Option<&str>,
    error: Option<&str>,
) -> StoreResult<()> {
    let updated = query::execute(
        tx,
        "UPDATE instances SET docker_version = $1, docker_error = $2 WHERE id = $3",
        &[&version, &error, &id],
    )
    .await?;
    if updated == 0 {
        return Err(not_found("instance", id));
    }
    Ok(())
}
