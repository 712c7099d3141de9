//! Scaling groups: the `scaling_groups` table with its lease, the instances held
//! while suspended, the activity history and the hook runs.

use super::convert::{boolean, millis, optional_time, time, unsigned};
use super::failure::{already_exists, delete_failed, insert_with_parent_failed, not_found};
use super::{groups, instances};
use crate::{
    HookRunRecord, InstanceRecord, ScalingActivityRecord, ScalingGroupRecord, ScalingHeldRecord,
    ScalingJoin, ScalingState, StoreError, StoreResult,
};
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

const COLUMNS: &str = "name, app, group_name, on_suspend, on_resume, created_at, state, held_by, \
     suspended_at, last_release, suspend_hook_pending, resume_hook_pending, resume_attempts, \
     next_hook_at, last_error";

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    app: String,
    group_name: String,
    on_suspend: Option<String>,
    on_resume: Option<String>,
    created_at: i64,
    state: String,
    held_by: Option<String>,
    suspended_at: Option<i64>,
    last_release: Option<String>,
    suspend_hook_pending: i64,
    resume_hook_pending: i64,
    resume_attempts: i64,
    next_hook_at: Option<i64>,
    last_error: Option<String>,
}

impl TryFrom<Row> for ScalingGroupRecord {
    type Error = StoreError;

    fn try_from(row: Row) -> StoreResult<Self> {
        Ok(ScalingGroupRecord {
            state: ScalingState::parse(&row.state).ok_or_else(|| {
                StoreError::Corrupt(format!("scaling group state {:?} is unknown", row.state))
            })?,
            name: row.name,
            app: row.app,
            group: row.group_name,
            on_suspend: row.on_suspend,
            on_resume: row.on_resume,
            created_at: time("scaling_groups.created_at", row.created_at)?,
            held_by: row.held_by,
            suspended_at: optional_time("scaling_groups.suspended_at", row.suspended_at)?,
            last_release: row.last_release,
            suspend_hook_pending: boolean(
                "scaling_groups.suspend_hook_pending",
                row.suspend_hook_pending,
            )?,
            resume_hook_pending: boolean(
                "scaling_groups.resume_hook_pending",
                row.resume_hook_pending,
            )?,
            resume_attempts: unsigned("scaling_groups.resume_attempts", row.resume_attempts)?,
            next_hook_at: optional_time("scaling_groups.next_hook_at", row.next_hook_at)?,
            last_error: row.last_error,
        })
    }
}

pub(super) async fn create(
    conn: &mut SqliteConnection,
    record: &ScalingGroupRecord,
) -> StoreResult<()> {
    groups::require(conn, &record.app, &record.group).await?;
    if find(conn, &record.name).await?.is_some() {
        return Err(already_exists("scaling group", &record.name));
    }
    sqlx::query(
        "INSERT INTO scaling_groups (name, app, group_name, on_suspend, on_resume, created_at, \
         state, held_by, suspended_at, last_release, suspend_hook_pending, resume_hook_pending, \
         resume_attempts, next_hook_at, last_error) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&record.name)
    .bind(&record.app)
    .bind(&record.group)
    .bind(&record.on_suspend)
    .bind(&record.on_resume)
    .bind(millis(record.created_at))
    .bind(record.state.as_str())
    .bind(&record.held_by)
    .bind(record.suspended_at.map(millis))
    .bind(&record.last_release)
    .bind(i64::from(record.suspend_hook_pending))
    .bind(i64::from(record.resume_hook_pending))
    .bind(i64::from(record.resume_attempts))
    .bind(record.next_hook_at.map(millis))
    .bind(&record.last_error)
    .execute(conn)
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

async fn find(conn: &mut SqliteConnection, name: &str) -> StoreResult<Option<ScalingGroupRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM scaling_groups WHERE name = ?");
    sqlx::query_as::<_, Row>(&sql)
        .bind(name)
        .fetch_optional(conn)
        .await?
        .map(ScalingGroupRecord::try_from)
        .transpose()
}

pub(super) async fn fetch(
    conn: &mut SqliteConnection,
    name: &str,
) -> StoreResult<ScalingGroupRecord> {
    find(conn, name)
        .await?
        .ok_or_else(|| not_found("scaling group", name))
}

pub(super) async fn list(conn: &mut SqliteConnection) -> StoreResult<Vec<ScalingGroupRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM scaling_groups ORDER BY name");
    sqlx::query_as::<_, Row>(&sql)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(ScalingGroupRecord::try_from)
        .collect()
}

pub(super) async fn delete(conn: &mut SqliteConnection, name: &str) -> StoreResult<()> {
    let record = fetch(conn, name).await?;
    if let Some(release) = &record.held_by {
        return Err(StoreError::InUse {
            kind: "scaling group",
            name: name.to_owned(),
            by: format!("release {release} (it is suspended until the release ends)"),
        });
    }
    let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM scaling_held WHERE scaling_group = ?")
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
    if held > 0 {
        return Err(StoreError::InUse {
            kind: "scaling group",
            name: name.to_owned(),
            by: format!("{held} instance(s) waiting to join"),
        });
    }
    for table in ["scaling_activities", "scaling_hook_runs"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE scaling_group = ?"))
            .bind(name)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("DELETE FROM scaling_groups WHERE name = ?")
        .bind(name)
        .execute(conn)
        .await
        .map_err(|err| delete_failed(err, "scaling group", name))?;
    Ok(())
}

async fn activity(
    conn: &mut SqliteConnection,
    scaling_group: &str,
    instance: (&str, &str),
    kind: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO scaling_activities (scaling_group, instance_id, instance_name, kind, at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(scaling_group)
    .bind(instance.0)
    .bind(instance.1)
    .bind(kind)
    .bind(millis(at))
    .execute(conn)
    .await?;
    Ok(())
}

async fn add_member(
    conn: &mut SqliteConnection,
    record: &ScalingGroupRecord,
    instance_id: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO group_members (app, group_name, instance_id, added_at) \
         VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(&record.app)
    .bind(&record.group)
    .bind(instance_id)
    .bind(millis(at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Registers `instance` and joins or holds it; the caller runs this in one
/// transaction, so a refused registration leaves nothing behind.
pub(super) async fn register(
    conn: &mut SqliteConnection,
    token_hash: &str,
    instance: &InstanceRecord,
    now: DateTime<Utc>,
) -> StoreResult<ScalingJoin> {
    let name = instance
        .scaling_group
        .as_deref()
        .ok_or_else(|| StoreError::Conflict("the instance names no scaling group".to_owned()))?;
    instances::register(conn, token_hash, instance, now).await?;
    let record = fetch(conn, name).await?;
    let who = (instance.id.as_str(), instance.name.as_str());
    match record.state {
        ScalingState::Active => {
            add_member(conn, &record, &instance.id, now).await?;
            activity(conn, name, who, "join", now).await?;
            Ok(ScalingJoin::Joined)
        }
        ScalingState::Suspended => {
            sqlx::query(
                "INSERT INTO scaling_held (scaling_group, instance_id, held_at) VALUES (?, ?, ?)",
            )
            .bind(name)
            .bind(&instance.id)
            .bind(millis(now))
            .execute(&mut *conn)
            .await?;
            activity(conn, name, who, "held", now).await?;
            Ok(ScalingJoin::Held)
        }
    }
}

/// Records that a deleted instance left its scaling group (if that still exists).
pub(super) async fn leave(
    conn: &mut SqliteConnection,
    instance: &InstanceRecord,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let Some(name) = &instance.scaling_group else {
        return Ok(());
    };
    if find(conn, name).await?.is_none() {
        return Ok(());
    }
    sqlx::query("DELETE FROM scaling_held WHERE instance_id = ?")
        .bind(&instance.id)
        .execute(&mut *conn)
        .await?;
    activity(conn, name, (&instance.id, &instance.name), "leave", now).await
}

pub(super) async fn suspend(
    conn: &mut SqliteConnection,
    name: &str,
    release: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let record = fetch(conn, name).await?;
    match record.held_by.as_deref() {
        Some(holder) if holder == release => Ok(false),
        Some(_) => {
            sqlx::query("UPDATE scaling_groups SET held_by = ?, last_release = ? WHERE name = ?")
                .bind(release)
                .bind(release)
                .bind(name)
                .execute(conn)
                .await?;
            Ok(false)
        }
        None => {
            sqlx::query(
                "UPDATE scaling_groups SET state = 'suspended', held_by = ?1, last_release = ?1, \
                 suspended_at = ?2, suspend_hook_pending = (on_suspend IS NOT NULL) \
                 WHERE name = ?3",
            )
            .bind(release)
            .bind(millis(now))
            .bind(name)
            .execute(conn)
            .await?;
            Ok(true)
        }
    }
}

pub(super) async fn resume(
    conn: &mut SqliteConnection,
    name: &str,
    release: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let record = fetch(conn, name).await?;
    if record.held_by.as_deref() != Some(release) {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE scaling_groups SET state = 'active', held_by = NULL, suspended_at = NULL, \
         resume_hook_pending = (on_resume IS NOT NULL), resume_attempts = 0, next_hook_at = NULL \
         WHERE name = ?",
    )
    .bind(name)
    .execute(&mut *conn)
    .await?;
    for held in held(conn, name).await?.into_iter().filter(|h| !h.joined) {
        add_member(conn, &record, &held.instance_id, now).await?;
        activity(
            conn,
            name,
            (&held.instance_id, &held.instance_name),
            "join",
            now,
        )
        .await?;
    }
    sqlx::query("UPDATE scaling_held SET joined = 1 WHERE scaling_group = ?")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(true)
}

pub(super) async fn held(
    conn: &mut SqliteConnection,
    name: &str,
) -> StoreResult<Vec<ScalingHeldRecord>> {
    fetch(conn, name).await?;
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT h.instance_id, i.name, h.held_at, h.joined FROM scaling_held h \
         JOIN instances i ON i.id = h.instance_id WHERE h.scaling_group = ? ORDER BY i.name",
    )
    .bind(name)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(instance_id, instance_name, held_at, joined)| {
            Ok(ScalingHeldRecord {
                instance_id,
                instance_name,
                held_at: time("scaling_held.held_at", held_at)?,
                joined: boolean("scaling_held.joined", joined)?,
            })
        })
        .collect()
}

pub(super) async fn caught_up(
    conn: &mut SqliteConnection,
    name: &str,
    ids: &[String],
) -> StoreResult<()> {
    fetch(conn, name).await?;
    for id in ids {
        sqlx::query(
            "DELETE FROM scaling_held WHERE scaling_group = ? AND instance_id = ? AND joined = 1",
        )
        .bind(name)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(super) async fn hook_record(
    conn: &mut SqliteConnection,
    name: &str,
    run: &HookRunRecord,
    retry_at: Option<DateTime<Utc>>,
) -> StoreResult<()> {
    fetch(conn, name).await?;
    sqlx::query(
        "INSERT INTO scaling_hook_runs (scaling_group, hook, release_id, attempt, started_at, \
         finished_at, exit_code, output, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(name)
    .bind(&run.hook)
    .bind(&run.release_id)
    .bind(i64::from(run.attempt.max(1)))
    .bind(millis(run.started_at))
    .bind(millis(run.finished_at))
    .bind(run.exit_code)
    .bind(&run.output)
    .bind(&run.error)
    .execute(&mut *conn)
    .await?;
    let sql = match (run.hook.as_str(), run.error.is_some(), retry_at.is_some()) {
        ("suspend", false, _) => {
            "UPDATE scaling_groups SET suspend_hook_pending = 0 WHERE name = ?1"
        }
        ("suspend", true, _) => {
            "UPDATE scaling_groups SET suspend_hook_pending = 0, last_error = ?2 WHERE name = ?1"
        }
        // A success leaves the count of the failed attempts before it.
        ("resume", false, _) => {
            "UPDATE scaling_groups SET resume_hook_pending = 0, resume_attempts = ?3 - 1, \
             next_hook_at = NULL, last_error = NULL WHERE name = ?1"
        }
        ("resume", true, true) => {
            "UPDATE scaling_groups SET resume_attempts = ?3, next_hook_at = ?4, last_error = ?2 \
             WHERE name = ?1"
        }
        ("resume", true, false) => {
            "UPDATE scaling_groups SET resume_hook_pending = 0, resume_attempts = ?3, \
             next_hook_at = NULL, last_error = ?2 WHERE name = ?1"
        }
        (other, _, _) => {
            return Err(StoreError::Conflict(format!(
                "hook {other:?} is neither suspend nor resume"
            )))
        }
    };
    sqlx::query(sql)
        .bind(name)
        .bind(&run.error)
        .bind(i64::from(run.attempt))
        .bind(retry_at.map(millis))
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) async fn hook_runs(
    conn: &mut SqliteConnection,
    name: &str,
    limit: u32,
) -> StoreResult<Vec<HookRunRecord>> {
    fetch(conn, name).await?;
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        String,
        Option<String>,
        i64,
        i64,
        i64,
        Option<i32>,
        String,
        Option<String>,
    )> = sqlx::query_as(
        "SELECT hook, release_id, attempt, started_at, finished_at, exit_code, output, error \
             FROM (SELECT * FROM scaling_hook_runs WHERE scaling_group = ? \
                   ORDER BY seq DESC LIMIT ?) ORDER BY seq",
    )
    .bind(name)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(
            |(hook, release_id, attempt, started, finished, exit_code, output, error)| {
                Ok(HookRunRecord {
                    hook,
                    release_id,
                    attempt: unsigned("scaling_hook_runs.attempt", attempt)?,
                    started_at: time("scaling_hook_runs.started_at", started)?,
                    finished_at: time("scaling_hook_runs.finished_at", finished)?,
                    exit_code,
                    output,
                    error,
                })
            },
        )
        .collect()
}

pub(super) async fn activities(
    conn: &mut SqliteConnection,
    name: &str,
    limit: u32,
) -> StoreResult<Vec<ScalingActivityRecord>> {
    fetch(conn, name).await?;
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT instance_id, instance_name, kind, at FROM (SELECT * FROM scaling_activities \
         WHERE scaling_group = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq",
    )
    .bind(name)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(instance_id, instance_name, kind, at)| {
            Ok(ScalingActivityRecord {
                instance_id,
                instance_name,
                kind,
                at: time("scaling_activities.at", at)?,
            })
        })
        .collect()
}
