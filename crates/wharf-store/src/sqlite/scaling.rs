//! Scaling groups: the `scaling_groups` table with its lease, the instances held
//! while suspended, the activity history and the hook runs.

use super::convert::{boolean, millis, optional_time, time, unsigned};
use super::failure::{already_exists, delete_failed, insert_with_parent_failed, not_found};
use super::{groups, instances, query};
use crate::{
    HookRunRecord, InstanceRecord, ScalingActivityRecord, ScalingGroupRecord, ScalingHeldRecord,
    ScalingJoin, ScalingState, StoreError, StoreResult,
};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

const COLUMNS: &str = "name, app, group_name, on_suspend, on_resume, created_at, state, held_by, \
     suspended_at, last_release, suspend_hook_pending, resume_hook_pending, resume_attempts, \
     next_hook_at, last_error";

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

impl Row {
    /// Reads a row of [`COLUMNS`], in their order.
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Row {
            name: row.get(0)?,
            app: row.get(1)?,
            group_name: row.get(2)?,
            on_suspend: row.get(3)?,
            on_resume: row.get(4)?,
            created_at: row.get(5)?,
            state: row.get(6)?,
            held_by: row.get(7)?,
            suspended_at: row.get(8)?,
            last_release: row.get(9)?,
            suspend_hook_pending: row.get(10)?,
            resume_hook_pending: row.get(11)?,
            resume_attempts: row.get(12)?,
            next_hook_at: row.get(13)?,
            last_error: row.get(14)?,
        })
    }
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

pub(super) fn create(conn: &Connection, record: &ScalingGroupRecord) -> StoreResult<()> {
    groups::require(conn, &record.app, &record.group)?;
    if find(conn, &record.name)?.is_some() {
        return Err(already_exists("scaling group", &record.name));
    }
    query::execute(
        conn,
        "INSERT INTO scaling_groups (name, app, group_name, on_suspend, on_resume, created_at, \
         state, held_by, suspended_at, last_release, suspend_hook_pending, resume_hook_pending, \
         resume_attempts, next_hook_at, last_error) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            record.name,
            record.app,
            record.group,
            record.on_suspend,
            record.on_resume,
            millis(record.created_at),
            record.state.as_str(),
            record.held_by,
            record.suspended_at.map(millis),
            record.last_release,
            i64::from(record.suspend_hook_pending),
            i64::from(record.resume_hook_pending),
            i64::from(record.resume_attempts),
            record.next_hook_at.map(millis),
            record.last_error,
        ],
    )
    .map_err(|err| {
        insert_with_parent_failed(
            err,
            ("scaling group", &record.name),
            Some(("group", &record.group)),
        )
    })?;
    Ok(())
}

fn find(conn: &Connection, name: &str) -> StoreResult<Option<ScalingGroupRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM scaling_groups WHERE name = ?");
    query::optional(conn, &sql, [name], Row::read)?
        .map(ScalingGroupRecord::try_from)
        .transpose()
}

pub(super) fn fetch(conn: &Connection, name: &str) -> StoreResult<ScalingGroupRecord> {
    find(conn, name)?.ok_or_else(|| not_found("scaling group", name))
}

pub(super) fn list(conn: &Connection) -> StoreResult<Vec<ScalingGroupRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM scaling_groups ORDER BY name");
    query::all(conn, &sql, [], Row::read)?
        .into_iter()
        .map(ScalingGroupRecord::try_from)
        .collect()
}

pub(super) fn delete(conn: &Connection, name: &str) -> StoreResult<()> {
    let record = fetch(conn, name)?;
    if let Some(release) = &record.held_by {
        return Err(StoreError::InUse {
            kind: "scaling group",
            name: name.to_owned(),
            by: format!("release {release} (it is suspended until the release ends)"),
        });
    }
    let held: i64 = query::one(
        conn,
        "SELECT COUNT(*) FROM scaling_held WHERE scaling_group = ?",
        [name],
        |row| row.get(0),
    )?;
    if held > 0 {
        return Err(StoreError::InUse {
            kind: "scaling group",
            name: name.to_owned(),
            by: format!("{held} instance(s) waiting to join"),
        });
    }
    for table in ["scaling_activities", "scaling_hook_runs"] {
        query::execute(
            conn,
            &format!("DELETE FROM {table} WHERE scaling_group = ?"),
            [name],
        )?;
    }
    query::execute(conn, "DELETE FROM scaling_groups WHERE name = ?", [name])
        .map_err(|err| delete_failed(err, "scaling group", name))?;
    Ok(())
}

fn activity(
    conn: &Connection,
    scaling_group: &str,
    instance: (&str, &str),
    kind: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    query::execute(
        conn,
        "INSERT INTO scaling_activities (scaling_group, instance_id, instance_name, kind, at) \
         VALUES (?, ?, ?, ?, ?)",
        params![scaling_group, instance.0, instance.1, kind, millis(at)],
    )?;
    Ok(())
}

fn add_member(
    conn: &Connection,
    record: &ScalingGroupRecord,
    instance_id: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    query::execute(
        conn,
        "INSERT INTO group_members (app, group_name, instance_id, added_at) \
         VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        params![record.app, record.group, instance_id, millis(at)],
    )?;
    Ok(())
}

/// Registers `instance` and joins or holds it; the caller runs this in one
/// transaction, so a refused registration leaves nothing behind.
pub(super) fn register(
    conn: &Connection,
    token_hash: &str,
    instance: &InstanceRecord,
    now: DateTime<Utc>,
) -> StoreResult<ScalingJoin> {
    let name = instance
        .scaling_group
        .as_deref()
        .ok_or_else(|| StoreError::Conflict("the instance names no scaling group".to_owned()))?;
    instances::register(conn, token_hash, instance, now)?;
    let record = fetch(conn, name)?;
    let who = (instance.id.as_str(), instance.name.as_str());
    match record.state {
        ScalingState::Active => {
            add_member(conn, &record, &instance.id, now)?;
            activity(conn, name, who, "join", now)?;
            Ok(ScalingJoin::Joined)
        }
        ScalingState::Suspended => {
            query::execute(
                conn,
                "INSERT INTO scaling_held (scaling_group, instance_id, held_at) VALUES (?, ?, ?)",
                params![name, instance.id, millis(now)],
            )?;
            activity(conn, name, who, "held", now)?;
            Ok(ScalingJoin::Held)
        }
    }
}

/// Records that a deleted instance left its scaling group (if that still exists).
pub(super) fn leave(
    conn: &Connection,
    instance: &InstanceRecord,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let Some(name) = &instance.scaling_group else {
        return Ok(());
    };
    if find(conn, name)?.is_none() {
        return Ok(());
    }
    query::execute(
        conn,
        "DELETE FROM scaling_held WHERE instance_id = ?",
        [&instance.id],
    )?;
    activity(conn, name, (&instance.id, &instance.name), "leave", now)
}

pub(super) fn suspend(
    conn: &Connection,
    name: &str,
    release: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let record = fetch(conn, name)?;
    match record.held_by.as_deref() {
        Some(holder) if holder == release => Ok(false),
        Some(_) => {
            query::execute(
                conn,
                "UPDATE scaling_groups SET held_by = ?, last_release = ? WHERE name = ?",
                params![release, release, name],
            )?;
            Ok(false)
        }
        None => {
            query::execute(
                conn,
                "UPDATE scaling_groups SET state = 'suspended', held_by = ?1, last_release = ?1, \
                 suspended_at = ?2, suspend_hook_pending = (on_suspend IS NOT NULL) \
                 WHERE name = ?3",
                params![release, millis(now), name],
            )?;
            Ok(true)
        }
    }
}

pub(super) fn resume(
    conn: &Connection,
    name: &str,
    release: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let record = fetch(conn, name)?;
    if record.held_by.as_deref() != Some(release) {
        return Ok(false);
    }
    query::execute(
        conn,
        "UPDATE scaling_groups SET state = 'active', held_by = NULL, suspended_at = NULL, \
         resume_hook_pending = (on_resume IS NOT NULL), resume_attempts = 0, next_hook_at = NULL \
         WHERE name = ?",
        [name],
    )?;
    for held in held(conn, name)?.into_iter().filter(|h| !h.joined) {
        add_member(conn, &record, &held.instance_id, now)?;
        activity(
            conn,
            name,
            (&held.instance_id, &held.instance_name),
            "join",
            now,
        )?;
    }
    query::execute(
        conn,
        "UPDATE scaling_held SET joined = 1 WHERE scaling_group = ?",
        [name],
    )?;
    Ok(true)
}

pub(super) fn held(conn: &Connection, name: &str) -> StoreResult<Vec<ScalingHeldRecord>> {
    fetch(conn, name)?;
    let rows: Vec<(String, String, i64, i64)> = query::all(
        conn,
        "SELECT h.instance_id, i.name, h.held_at, h.joined FROM scaling_held h \
         JOIN instances i ON i.id = h.instance_id WHERE h.scaling_group = ? ORDER BY i.name",
        [name],
        |row| row.try_into(),
    )?;
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

pub(super) fn caught_up(conn: &Connection, name: &str, ids: &[String]) -> StoreResult<()> {
    fetch(conn, name)?;
    for id in ids {
        query::execute(
            conn,
            "DELETE FROM scaling_held WHERE scaling_group = ? AND instance_id = ? AND joined = 1",
            params![name, id],
        )?;
    }
    Ok(())
}

pub(super) fn hook_record(
    conn: &Connection,
    name: &str,
    run: &HookRunRecord,
    retry_at: Option<DateTime<Utc>>,
) -> StoreResult<()> {
    fetch(conn, name)?;
    query::execute(
        conn,
        "INSERT INTO scaling_hook_runs (scaling_group, hook, release_id, attempt, started_at, \
         finished_at, exit_code, output, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            name,
            run.hook,
            run.release_id,
            i64::from(run.attempt.max(1)),
            millis(run.started_at),
            millis(run.finished_at),
            run.exit_code,
            run.output,
            run.error,
        ],
    )?;
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
    // Each statement numbers its parameters out of the same four, up to the
    // highest it uses; rusqlite refuses extra parameters (the old backend
    // ignored them), so only that many are bound.
    let values = params![
        name,
        run.error,
        i64::from(run.attempt),
        retry_at.map(millis)
    ];
    let mut statement = conn.prepare_cached(sql)?;
    let count = statement.parameter_count();
    statement.execute(&values[..count])?;
    Ok(())
}

pub(super) fn hook_runs(
    conn: &Connection,
    name: &str,
    limit: u32,
) -> StoreResult<Vec<HookRunRecord>> {
    fetch(conn, name)?;
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
    )> = query::all(
        conn,
        "SELECT hook, release_id, attempt, started_at, finished_at, exit_code, output, error \
             FROM (SELECT * FROM scaling_hook_runs WHERE scaling_group = ? \
                   ORDER BY seq DESC LIMIT ?) ORDER BY seq",
        params![name, i64::from(limit)],
        |row| row.try_into(),
    )?;
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

pub(super) fn activities(
    conn: &Connection,
    name: &str,
    limit: u32,
) -> StoreResult<Vec<ScalingActivityRecord>> {
    fetch(conn, name)?;
    let rows: Vec<(String, String, String, i64)> = query::all(
        conn,
        "SELECT instance_id, instance_name, kind, at FROM (SELECT * FROM scaling_activities \
         WHERE scaling_group = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq",
        params![name, i64::from(limit)],
        |row| row.try_into(),
    )?;
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
