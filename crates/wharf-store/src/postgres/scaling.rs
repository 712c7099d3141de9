//! Scaling groups: the `scaling_groups` table with its lease, the instances held
//! while suspended, the activity history and the hook runs. A write that reads
//! the group's state before it changes it locks the group's row first, so that
//! a registration and a resume (from any server) never miss each other.

use super::convert::{millis, optional_time, time, unsigned};
use super::failure::{already_exists, delete_failed, insert_with_parent_failed, not_found};
use super::query::{self, Db};
use super::{groups, instances};
use crate::{
    HookRunRecord, InstanceRecord, ScalingActivityRecord, ScalingGroupRecord, ScalingHeldRecord,
    ScalingJoin, ScalingState, StoreError, StoreResult,
};
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

const COLUMNS: &str = "name, app, group_name, on_suspend, on_resume, created_at, state, held_by, \
     suspended_at, last_release, suspend_hook_pending, resume_hook_pending, resume_attempts, \
     next_hook_at, last_error";

/// How a read of a scaling group locks its row.
#[derive(Clone, Copy)]
enum Lock {
    None,
    /// Against changes of its state (a registration that joins or holds).
    Share,
    /// Against everything but foreign key checks (a lease changing hands).
    Update,
}

/// Reads a row of [`COLUMNS`], in their order.
fn scaling_group(row: &Row) -> StoreResult<ScalingGroupRecord> {
    let state: String = row.try_get(6)?;
    Ok(ScalingGroupRecord {
        state: ScalingState::parse(&state).ok_or_else(|| {
            StoreError::Corrupt(format!("scaling group state {state:?} is unknown"))
        })?,
        name: row.try_get(0)?,
        app: row.try_get(1)?,
        group: row.try_get(2)?,
        on_suspend: row.try_get(3)?,
        on_resume: row.try_get(4)?,
        created_at: time("scaling_groups.created_at", row.try_get(5)?)?,
        held_by: row.try_get(7)?,
        suspended_at: optional_time("scaling_groups.suspended_at", row.try_get(8)?)?,
        last_release: row.try_get(9)?,
        suspend_hook_pending: row.try_get(10)?,
        resume_hook_pending: row.try_get(11)?,
        resume_attempts: unsigned("scaling_groups.resume_attempts", row.try_get(12)?)?,
        next_hook_at: optional_time("scaling_groups.next_hook_at", row.try_get(13)?)?,
        last_error: row.try_get(14)?,
    })
}

pub(super) async fn create(tx: &impl Db, record: &ScalingGroupRecord) -> StoreResult<()> {
    groups::require(tx, &record.app, &record.group).await?;
    if find(tx, &record.name, Lock::None).await?.is_some() {
        return Err(already_exists("scaling group", &record.name));
    }
    query::execute(
        tx,
        "INSERT INTO scaling_groups (name, app, group_name, on_suspend, on_resume, created_at, \
         state, held_by, suspended_at, last_release, suspend_hook_pending, resume_hook_pending, \
         resume_attempts, next_hook_at, last_error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        &[
            &record.name,
            &record.app,
            &record.group,
            &record.on_suspend,
            &record.on_resume,
            &millis(record.created_at),
            &record.state.as_str(),
            &record.held_by,
            &record.suspended_at.map(millis),
            &record.last_release,
            &record.suspend_hook_pending,
            &record.resume_hook_pending,
            &i64::from(record.resume_attempts),
            &record.next_hook_at.map(millis),
            &record.last_error,
        ],
    )
    .await
    .map_err(|err| {
        insert_with_parent_failed(
            err,
            ("scaling group", &record.name),
            Some(("group", &record.group)),
        )
    })?;
    Ok(())
}

async fn find(tx: &impl Db, name: &str, lock: Lock) -> StoreResult<Option<ScalingGroupRecord>> {
    let locking = match lock {
        Lock::None => "",
        Lock::Share => " FOR SHARE",
        Lock::Update => " FOR NO KEY UPDATE",
    };
    let sql = format!("SELECT {COLUMNS} FROM scaling_groups WHERE name = $1{locking}");
    query::optional(tx, &sql, &[&name])
        .await?
        .as_ref()
        .map(scaling_group)
        .transpose()
}

async fn fetch_locked(tx: &impl Db, name: &str, lock: Lock) -> StoreResult<ScalingGroupRecord> {
    find(tx, name, lock)
        .await?
        .ok_or_else(|| not_found("scaling group", name))
}

pub(super) async fn fetch(tx: &impl Db, name: &str) -> StoreResult<ScalingGroupRecord> {
    fetch_locked(tx, name, Lock::None).await
}

pub(super) async fn list(tx: &impl Db) -> StoreResult<Vec<ScalingGroupRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM scaling_groups ORDER BY name");
    query::all(tx, &sql, &[])
        .await?
        .iter()
        .map(scaling_group)
        .collect()
}

pub(super) async fn delete(tx: &impl Db, name: &str) -> StoreResult<()> {
    // FOR UPDATE also holds off registrations (their held rows' foreign keys).
    let sql = format!("SELECT {COLUMNS} FROM scaling_groups WHERE name = $1 FOR UPDATE");
    let record = query::optional(tx, &sql, &[&name])
        .await?
        .ok_or_else(|| not_found("scaling group", name))?;
    let record = scaling_group(&record)?;
    if let Some(release) = &record.held_by {
        return Err(StoreError::InUse {
            kind: "scaling group",
            name: name.to_owned(),
            by: format!("release {release} (it is suspended until the release ends)"),
        });
    }
    let held: i64 = query::one(
        tx,
        "SELECT COUNT(*) FROM scaling_held WHERE scaling_group = $1",
        &[&name],
    )
    .await?
    .try_get(0)?;
    if held > 0 {
        return Err(StoreError::InUse {
            kind: "scaling group",
            name: name.to_owned(),
            by: format!("{held} instance(s) waiting to join"),
        });
    }
    for sql in [
        "DELETE FROM scaling_activities WHERE scaling_group = $1",
        "DELETE FROM scaling_hook_runs WHERE scaling_group = $1",
    ] {
        query::execute(tx, sql, &[&name]).await?;
    }
    query::execute(tx, "DELETE FROM scaling_groups WHERE name = $1", &[&name])
        .await
        .map_err(|err| delete_failed(err, "scaling group", name))?;
    Ok(())
}

async fn activity(
    tx: &impl Db,
    scaling_group: &str,
    instance: (&str, &str),
    kind: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    query::execute(
        tx,
        "INSERT INTO scaling_activities (scaling_group, instance_id, instance_name, kind, at) \
         VALUES ($1, $2, $3, $4, $5)",
        &[&scaling_group, &instance.0, &instance.1, &kind, &millis(at)],
    )
    .await?;
    Ok(())
}

async fn add_member(
    tx: &impl Db,
    record: &ScalingGroupRecord,
    instance_id: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    query::execute(
        tx,
        "INSERT INTO group_members (app, group_name, instance_id, added_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        &[&record.app, &record.group, &instance_id, &millis(at)],
    )
    .await?;
    Ok(())
}

/// Registers `instance` and joins or holds it; the caller runs this in one
/// transaction, so a refused registration leaves nothing behind.
pub(super) async fn register(
    tx: &impl Db,
    token_hash: &str,
    instance: &InstanceRecord,
    now: DateTime<Utc>,
) -> StoreResult<ScalingJoin> {
    let name = instance
        .scaling_group
        .as_deref()
        .ok_or_else(|| StoreError::Conflict("the instance names no scaling group".to_owned()))?;
    instances::register(tx, token_hash, instance, now).await?;
    let record = fetch_locked(tx, name, Lock::Share).await?;
    let who = (instance.id.as_str(), instance.name.as_str());
    match record.state {
        ScalingState::Active => {
            add_member(tx, &record, &instance.id, now).await?;
            activity(tx, name, who, "join", now).await?;
            Ok(ScalingJoin::Joined)
        }
        ScalingState::Suspended => {
            query::execute(
                tx,
                "INSERT INTO scaling_held (scaling_group, instance_id, held_at) VALUES ($1, $2, $3)",
                &[&name, &instance.id, &millis(now)],
            )
            .await?;
            activity(tx, name, who, "held", now).await?;
            Ok(ScalingJoin::Held)
        }
    }
}

/// Records that a deleted instance left its scaling group (if that still exists).
pub(super) async fn leave(
    tx: &impl Db,
    instance: &InstanceRecord,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let Some(name) = &instance.scaling_group else {
        return Ok(());
    };
    if find(tx, name, Lock::None).await?.is_none() {
        return Ok(());
    }
    query::execute(
        tx,
        "DELETE FROM scaling_held WHERE instance_id = $1",
        &[&instance.id],
    )
    .await?;
    activity(tx, name, (&instance.id, &instance.name), "leave", now).await
}

pub(super) async fn suspend(
    tx: &impl Db,
    name: &str,
    release: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let record = fetch_locked(tx, name, Lock::Update).await?;
    match record.held_by.as_deref() {
        Some(holder) if holder == release => Ok(false),
        Some(_) => {
            query::execute(
                tx,
                "UPDATE scaling_groups SET held_by = $1, last_release = $1 WHERE name = $2",
                &[&release, &name],
            )
            .await?;
            Ok(false)
        }
        None => {
            query::execute(
                tx,
                "UPDATE scaling_groups SET state = 'suspended', held_by = $1, last_release = $1, \
                 suspended_at = $2, suspend_hook_pending = (on_suspend IS NOT NULL) \
                 WHERE name = $3",
                &[&release, &millis(now), &name],
            )
            .await?;
            Ok(true)
        }
    }
}

pub(super) async fn resume(
    tx: &impl Db,
    name: &str,
    release: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let record = fetch_locked(tx, name, Lock::Update).await?;
    if record.held_by.as_deref() != Some(release) {
        return Ok(false);
    }
    query::execute(
        tx,
        "UPDATE scaling_groups SET state = 'active', held_by = NULL, suspended_at = NULL, \
         resume_hook_pending = (on_resume IS NOT NULL), resume_attempts = 0, next_hook_at = NULL \
         WHERE name = $1",
        &[&name],
    )
    .await?;
    for held in held(tx, name).await?.into_iter().filter(|h| !h.joined) {
        add_member(tx, &record, &held.instance_id, now).await?;
        activity(
            tx,
            name,
            (&held.instance_id, &held.instance_name),
            "join",
            now,
        )
        .await?;
    }
    query::execute(
        tx,
        "UPDATE scaling_held SET joined = TRUE WHERE scaling_group = $1",
        &[&name],
    )
    .await?;
    Ok(true)
}

pub(super) async fn held(tx: &impl Db, name: &str) -> StoreResult<Vec<ScalingHeldRecord>> {
    fetch(tx, name).await?;
    query::all(
        tx,
        "SELECT h.instance_id, i.name, h.held_at, h.joined FROM scaling_held h \
         JOIN instances i ON i.id = h.instance_id WHERE h.scaling_group = $1 ORDER BY i.name",
        &[&name],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(ScalingHeldRecord {
            instance_id: row.try_get(0)?,
            instance_name: row.try_get(1)?,
            held_at: time("scaling_held.held_at", row.try_get(2)?)?,
            joined: row.try_get(3)?,
        })
    })
    .collect()
}

pub(super) async fn caught_up(tx: &impl Db, name: &str, ids: &[String]) -> StoreResult<()> {
    fetch(tx, name).await?;
    query::execute(
        tx,
        "DELETE FROM scaling_held WHERE scaling_group = $1 AND instance_id = ANY ($2::text[]) \
         AND joined",
        &[&name, &ids],
    )
    .await?;
    Ok(())
}

pub(super) async fn hook_record(
    tx: &impl Db,
    name: &str,
    run: &HookRunRecord,
    retry_at: Option<DateTime<Utc>>,
) -> StoreResult<()> {
    fetch_locked(tx, name, Lock::Update).await?;
    let attempt = i64::from(run.attempt);
    let updated = match (run.hook.as_str(), run.error.is_some(), retry_at) {
        ("suspend", false, _) => {
            query::execute(
                tx,
                "UPDATE scaling_groups SET suspend_hook_pending = FALSE WHERE name = $1",
                &[&name],
            )
            .await
        }
        ("suspend", true, _) => {
            query::execute(
                tx,
                "UPDATE scaling_groups SET suspend_hook_pending = FALSE, last_error = $2 \
                 WHERE name = $1",
                &[&name, &run.error],
            )
            .await
        }
        // A success leaves the count of the failed attempts before it.
        ("resume", false, _) => {
            query::execute(
                tx,
                "UPDATE scaling_groups SET resume_hook_pending = FALSE, resume_attempts = $2::bigint - 1, \
                 next_hook_at = NULL, last_error = NULL WHERE name = $1",
                &[&name, &attempt],
            )
            .await
        }
        ("resume", true, Some(retry_at)) => {
            query::execute(
                tx,
                "UPDATE scaling_groups SET resume_attempts = $3, next_hook_at = $4, \
                 last_error = $2 WHERE name = $1",
                &[&name, &run.error, &attempt, &millis(retry_at)],
            )
            .await
        }
        ("resume", true, None) => {
            query::execute(
                tx,
                "UPDATE scaling_groups SET resume_hook_pending = FALSE, resume_attempts = $3, \
                 next_hook_at = NULL, last_error = $2 WHERE name = $1",
                &[&name, &run.error, &attempt],
            )
            .await
        }
        (other, _, _) => {
            return Err(StoreError::Conflict(format!(
                "hook {other:?} is neither suspend nor resume"
            )))
        }
    };
    updated?;
    query::execute(
        tx,
        "INSERT INTO scaling_hook_runs (scaling_group, hook, release_id, attempt, started_at, \
         finished_at, exit_code, output, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &name,
            &run.hook,
            &run.release_id,
            &i64::from(run.attempt.max(1)),
            &millis(run.started_at),
            &millis(run.finished_at),
            &run.exit_code.map(i64::from),
            &run.output,
            &run.error,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn hook_runs(
    tx: &impl Db,
    name: &str,
    limit: u32,
) -> StoreResult<Vec<HookRunRecord>> {
    fetch(tx, name).await?;
    query::all(
        tx,
        "SELECT hook, release_id, attempt, started_at, finished_at, exit_code, output, error \
         FROM (SELECT * FROM scaling_hook_runs WHERE scaling_group = $1 \
               ORDER BY seq DESC LIMIT $2) AS last ORDER BY seq",
        &[&name, &i64::from(limit)],
    )
    .await?
    .iter()
    .map(|row| {
        let exit_code = row
            .try_get::<_, Option<i64>>(5)?
            .map(|code| {
                i32::try_from(code).map_err(|_| {
                    StoreError::Corrupt(format!(
                        "scaling_hook_runs.exit_code {code} is out of range"
                    ))
                })
            })
            .transpose()?;
        Ok(HookRunRecord {
            hook: row.try_get(0)?,
            release_id: row.try_get(1)?,
            attempt: unsigned("scaling_hook_runs.attempt", row.try_get(2)?)?,
            started_at: time("scaling_hook_runs.started_at", row.try_get(3)?)?,
            finished_at: time("scaling_hook_runs.finished_at", row.try_get(4)?)?,
            exit_code,
            output: row.try_get(6)?,
            error: row.try_get(7)?,
        })
    })
    .collect()
}

pub(super) async fn activities(
    tx: &impl Db,
    name: &str,
    limit: u32,
) -> StoreResult<Vec<ScalingActivityRecord>> {
    fetch(tx, name).await?;
    query::all(
        tx,
        "SELECT instance_id, instance_name, kind, at FROM (SELECT * FROM scaling_activities \
         WHERE scaling_group = $1 ORDER BY seq DESC LIMIT $2) AS last ORDER BY seq",
        &[&name, &i64::from(limit)],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(ScalingActivityRecord {
            instance_id: row.try_get(0)?,
            instance_name: row.try_get(1)?,
            kind: row.try_get(2)?,
            at: time("scaling_activities.at", row.try_get(3)?)?,
        })
    })
    .collect()
}
