//! Tasks: the `release_tasks` table, the work of one release on one instance.
//! A task moves pending -> dispatched (its batch started) -> running (its agent,
//! given the work, reported its first step) -> succeeded | failed, or to cancelled
//! before it ran; each move is a conditional UPDATE, so a late or repeated call
//! changes nothing. Errors name a task as `release/instance`.

use super::convert::{millis, optional_time, unsigned};
use super::failure::{already_exists, is_unique_violation, not_found};
use super::{query, releases};
use crate::{BatchSummary, LiveTask, StoreError, StoreResult, TaskRecord, TaskState};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Row};

/// The states of a task that has not ended, as an SQL list.
const OPEN_STATES: &str = "('pending', 'dispatched', 'running')";

/// The columns of a [`TaskRow`]; every query that reads them reads `release_tasks`
/// alone, so they need no table name.
const TASK_COLUMNS: &str = "release_id, instance_id, instance_name, batch, state, \
     dispatched_at, started_at, finished_at, deadline_at, image_digest, message";

struct TaskRow {
    release_id: String,
    instance_id: String,
    instance_name: String,
    batch: i64,
    state: String,
    dispatched_at: Option<i64>,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    deadline_at: Option<i64>,
    image_digest: Option<String>,
    message: Option<String>,
}

impl TaskRow {
    /// Reads a row whose first columns are [`TASK_COLUMNS`], in that order.
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(TaskRow {
            release_id: row.get(0)?,
            instance_id: row.get(1)?,
            instance_name: row.get(2)?,
            batch: row.get(3)?,
            state: row.get(4)?,
            dispatched_at: row.get(5)?,
            started_at: row.get(6)?,
            finished_at: row.get(7)?,
            deadline_at: row.get(8)?,
            image_digest: row.get(9)?,
            message: row.get(10)?,
        })
    }
}

impl TryFrom<TaskRow> for TaskRecord {
    type Error = StoreError;

    fn try_from(row: TaskRow) -> StoreResult<Self> {
        let state = parse_state(&row.release_id, &row.instance_id, &row.state)?;
        Ok(TaskRecord {
            state,
            batch: unsigned("release_tasks.batch", row.batch)?,
            dispatched_at: optional_time("release_tasks.dispatched_at", row.dispatched_at)?,
            started_at: optional_time("release_tasks.started_at", row.started_at)?,
            finished_at: optional_time("release_tasks.finished_at", row.finished_at)?,
            deadline: optional_time("release_tasks.deadline_at", row.deadline_at)?,
            release_id: row.release_id,
            instance_id: row.instance_id,
            instance_name: row.instance_name,
            image_digest: row.image_digest,
            message: row.message,
        })
    }
}

/// A task's state as stored, read back.
fn parse_state(release_id: &str, instance_id: &str, text: &str) -> StoreResult<TaskState> {
    TaskState::parse(text).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "task {}: {text:?} is not a task state",
            name(release_id, instance_id)
        ))
    })
}

/// How errors name a task.
pub(super) fn name(release_id: &str, instance_id: &str) -> String {
    format!("{release_id}/{instance_id}")
}

/// Fails with `NotFound` unless the release has a task for the instance.
fn require(conn: &Connection, release_id: &str, instance_id: &str) -> StoreResult<()> {
    let exists: bool = query::one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM release_tasks WHERE release_id = ? AND instance_id = ?)",
        params![release_id, instance_id],
        |row| row.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(not_found("task", &name(release_id, instance_id)))
    }
}

/// Inserts a task of a release being created (by `releases::create`, which has
/// checked the release).
pub(super) fn insert(conn: &Connection, task: &TaskRecord) -> StoreResult<()> {
    query::execute(
        conn,
        "INSERT INTO release_tasks (release_id, instance_id, instance_name, batch, state, \
         dispatched_at, started_at, finished_at, deadline_at, image_digest, message) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            task.release_id,
            task.instance_id,
            task.instance_name,
            i64::from(task.batch),
            task.state.as_str(),
            task.dispatched_at.map(millis),
            task.started_at.map(millis),
            task.finished_at.map(millis),
            task.deadline.map(millis),
            task.image_digest,
            task.message,
        ],
    )
    .map_err(|err| {
        if is_unique_violation(&err) {
            already_exists("task", &name(&task.release_id, &task.instance_id))
        } else {
            StoreError::Backend(err)
        }
    })?;
    Ok(())
}

/// The tasks of a release, by batch then instance name.
pub(super) fn list(conn: &Connection, release_id: &str) -> StoreResult<Vec<TaskRecord>> {
    releases::require(conn, release_id)?;
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM release_tasks WHERE release_id = ? \
         ORDER BY batch, instance_name, instance_id"
    );
    query::all(conn, &sql, [release_id], TaskRow::read)?
        .into_iter()
        .map(TaskRecord::try_from)
        .collect()
}

/// The tasks of some batches of a release, in [`list`]'s order: for a view that
/// reads only the batches that moved since it last read them.
pub(super) fn list_of_batches(
    conn: &Connection,
    release_id: &str,
    batches: &[u32],
) -> StoreResult<Vec<TaskRecord>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM release_tasks WHERE release_id = ? AND batch = ? \
         ORDER BY instance_name, instance_id"
    );
    let mut sorted = batches.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut tasks = Vec::new();
    for batch in sorted {
        for row in query::all(
            conn,
            &sql,
            params![release_id, i64::from(batch)],
            TaskRow::read,
        )? {
            tasks.push(TaskRecord::try_from(row)?);
        }
    }
    Ok(tasks)
}

/// How each batch of a release stands: the counts the triggers of
/// `0008_batch_counts.sql` keep, one row per batch that has tasks.
pub(super) fn batch_summaries(
    conn: &Connection,
    release_id: &str,
) -> StoreResult<Vec<BatchSummary>> {
    releases::require(conn, release_id)?;
    type Row = (i64, i64, i64, i64, i64, i64, i64, Option<i64>);
    let rows: Vec<Row> = query::all(
        conn,
        "SELECT batch, pending, dispatched, running, succeeded, failed, cancelled, \
         last_finished_at FROM release_batch_counts \
         WHERE release_id = ? \
         AND pending + dispatched + running + succeeded + failed + cancelled > 0 \
         ORDER BY batch",
        [release_id],
        |row| row.try_into(),
    )?;
    let count = |column: &str, value: i64| -> StoreResult<u32> {
        u32::try_from(value)
            .map_err(|_| StoreError::Corrupt(format!("{column}: {value} is not a count")))
    };
    rows.into_iter()
        .map(
            |(batch, pending, dispatched, running, succeeded, failed, cancelled, last)| {
                Ok(BatchSummary {
                    batch: unsigned("release_tasks.batch", batch)?,
                    pending: count("pending", pending)?,
                    dispatched: count("dispatched", dispatched)?,
                    running: count("running", running)?,
                    succeeded: count("succeeded", succeeded)?,
                    failed: count("failed", failed)?,
                    cancelled: count("cancelled", cancelled)?,
                    last_finished_at: optional_time("release_tasks.finished_at", last)?,
                })
            },
        )
        .collect()
}

/// The release's dispatched and running tasks with their instances' last
/// heartbeats.
pub(super) fn list_live(conn: &Connection, release_id: &str) -> StoreResult<Vec<LiveTask>> {
    releases::require(conn, release_id)?;
    struct Row {
        task: TaskRow,
        instance_exists: bool,
        last_heartbeat_at: Option<i64>,
    }
    let columns = TASK_COLUMNS
        .split(", ")
        .map(|c| format!("t.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {columns}, i.id IS NOT NULL AS instance_exists, i.last_heartbeat_at \
         FROM release_tasks t LEFT JOIN instances i ON i.id = t.instance_id \
         WHERE t.release_id = ? AND t.state IN ('dispatched', 'running') \
         ORDER BY t.batch, t.instance_name, t.instance_id"
    );
    // The task's columns come first, then the instance's two.
    let read = |row: &rusqlite::Row<'_>| {
        Ok(Row {
            task: TaskRow::read(row)?,
            instance_exists: row.get(11)?,
            last_heartbeat_at: row.get(12)?,
        })
    };
    query::all(conn, &sql, [release_id], read)?
        .into_iter()
        .map(|row| {
            let heartbeat = optional_time("instances.last_heartbeat_at", row.last_heartbeat_at)?;
            Ok(LiveTask {
                task: row.task.try_into()?,
                instance_heartbeat: row.instance_exists.then_some(heartbeat),
            })
        })
        .collect()
}

/// How many tasks of the batch have not ended, from the kept counts.
pub(super) fn count_open_in_batch(
    conn: &Connection,
    release_id: &str,
    batch: u32,
) -> StoreResult<u32> {
    let count: i64 = query::one(
        conn,
        "SELECT COALESCE(SUM(pending + dispatched + running), 0) FROM release_batch_counts \
         WHERE release_id = ? AND batch = ?",
        params![release_id, i64::from(batch)],
        |row| row.get(0),
    )?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// The state and batch of the instance's task in the release: what a step
/// report needs to know of it.
pub(super) fn state_and_batch(
    conn: &Connection,
    release_id: &str,
    instance_id: &str,
) -> StoreResult<(TaskState, u32)> {
    let (state, batch): (String, i64) = query::optional(
        conn,
        "SELECT state, batch FROM release_tasks WHERE release_id = ? AND instance_id = ?",
        params![release_id, instance_id],
        |row| row.try_into(),
    )?
    .ok_or_else(|| not_found("task", &name(release_id, instance_id)))?;
    let state = parse_state(release_id, instance_id, &state)?;
    Ok((state, unsigned("release_tasks.batch", batch)?))
}

pub(super) fn fetch(
    conn: &Connection,
    release_id: &str,
    instance_id: &str,
) -> StoreResult<TaskRecord> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM release_tasks WHERE release_id = ? AND instance_id = ?"
    );
    query::optional(conn, &sql, params![release_id, instance_id], TaskRow::read)?
        .ok_or_else(|| not_found("task", &name(release_id, instance_id)))?
        .try_into()
}

/// Pending -> Dispatched for the tasks of one batch, but only while the release
/// is running (checked in the same statement). Returns the instance ids
/// dispatched, in the order of [`list`].
pub(super) fn dispatch_batch(
    conn: &Connection,
    release_id: &str,
    batch: u32,
    now: DateTime<Utc>,
    deadline: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    releases::require(conn, release_id)?;
    let mut dispatched: Vec<(String, String)> = query::all(
        conn,
        "UPDATE release_tasks SET state = 'dispatched', dispatched_at = ?1, deadline_at = ?2 \
         WHERE release_id = ?3 AND batch = ?4 AND state = 'pending' \
         AND EXISTS (SELECT 1 FROM releases WHERE id = ?3 AND state = 'running') \
         RETURNING instance_name, instance_id",
        params![millis(now), millis(deadline), release_id, i64::from(batch)],
        |row| row.try_into(),
    )?;
    // The counts' trigger leaves a batch's dispatch to this one statement
    // (0008_batch_counts.sql).
    conn.execute(
        "UPDATE release_batch_counts SET pending = pending - ?1, dispatched = dispatched + ?1 \
         WHERE release_id = ?2 AND batch = ?3",
        params![dispatched.len() as i64, release_id, i64::from(batch)],
    )?;
    dispatched.sort();
    Ok(dispatched.into_iter().map(|(_, id)| id).collect())
}

/// The release of the instance's oldest dispatched task of a running release.
pub(super) fn next_dispatched(conn: &Connection, instance_id: &str) -> StoreResult<Option<String>> {
    query::optional(
        conn,
        "SELECT t.release_id FROM release_tasks t JOIN releases r ON r.id = t.release_id \
         WHERE t.instance_id = ? AND t.state = 'dispatched' AND r.state = 'running' \
         ORDER BY t.dispatched_at, r.created_at, t.release_id LIMIT 1",
        [instance_id],
        |row| row.get(0),
    )
}

/// Dispatched -> running for one task of a running release, which records its
/// `fetch` step as succeeded (the trigger of migration 0007). `Ok(false)` when
/// the task was not dispatched or its release is not running.
pub(super) fn claim(
    conn: &Connection,
    release_id: &str,
    instance_id: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let claimed = query::execute(
        conn,
        "UPDATE release_tasks SET state = 'running', started_at = ?1 \
         WHERE release_id = ?2 AND instance_id = ?3 AND state = 'dispatched' \
         AND EXISTS (SELECT 1 FROM releases WHERE id = ?2 AND state = 'running')",
        params![millis(now), release_id, instance_id],
    )?;
    if claimed == 0 {
        // Not dispatched, or no such task (checked only now: the usual case is one
        // statement).
        require(conn, release_id, instance_id)?;
    }
    Ok(claimed == 1)
}

/// The instance's running tasks, oldest start first.
pub(super) fn list_running_for_instance(
    conn: &Connection,
    instance_id: &str,
) -> StoreResult<Vec<TaskRecord>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM release_tasks \
         WHERE instance_id = ? AND state = 'running' ORDER BY started_at, release_id"
    );
    query::all(conn, &sql, [instance_id], TaskRow::read)?
        .into_iter()
        .map(TaskRecord::try_from)
        .collect()
}

/// Ends a task that has not ended; `Ok(false)` if it had. On success the
/// instance's membership of the release's group (if it is still a member)
/// records the release's deployment and the task's digest.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
    conn: &Connection,
    release_id: &str,
    instance_id: &str,
    state: TaskState,
    digest: Option<&str>,
    message: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    if !state.is_terminal() {
        return Err(StoreError::Conflict(format!(
            "a task cannot be finished as {}",
            state.as_str()
        )));
    }
    let sql = format!(
        "UPDATE release_tasks SET state = ?, finished_at = ?, \
         image_digest = COALESCE(?, image_digest), message = COALESCE(?, message) \
         WHERE release_id = ? AND instance_id = ? AND state IN {OPEN_STATES} \
         RETURNING image_digest"
    );
    let finished: Option<Option<String>> = query::optional(
        conn,
        &sql,
        params![
            state.as_str(),
            millis(now),
            digest,
            message,
            release_id,
            instance_id
        ],
        |row| row.get(0),
    )?;
    let Some(recorded_digest) = finished else {
        // Ended already, or no such task (checked only now: the usual case is one
        // statement).
        require(conn, release_id, instance_id)?;
        return Ok(false);
    };
    if state == TaskState::Succeeded {
        query::execute(
            conn,
            "UPDATE group_members SET deployment = r.deployment, image_digest = ?1 \
             FROM releases r \
             WHERE r.id = ?2 AND r.kind <> 'exec' AND group_members.app = r.app \
             AND group_members.group_name = r.group_name AND group_members.instance_id = ?3",
            params![recorded_digest, release_id, instance_id],
        )?;
    }
    Ok(true)
}

/// Pending and dispatched tasks of a release -> cancelled; returns how many.
pub(super) fn cancel_unstarted(
    conn: &Connection,
    release_id: &str,
    message: &str,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    releases::require(conn, release_id)?;
    let cancelled = query::execute(
        conn,
        "UPDATE release_tasks SET state = 'cancelled', finished_at = ?, message = ? \
         WHERE release_id = ? AND state IN ('pending', 'dispatched')",
        params![millis(now), message, release_id],
    )?;
    Ok(cancelled as u64)
}

/// Records the digest the pull step reported, on a task under way only: a pending
/// or ended task changes only by changing state, which the release view's copied
/// batches rely on (`release_views.rs`).
pub(super) fn set_digest(
    conn: &Connection,
    release_id: &str,
    instance_id: &str,
    digest: &str,
) -> StoreResult<()> {
    let updated = query::execute(
        conn,
        "UPDATE release_tasks SET image_digest = ? \
         WHERE release_id = ? AND instance_id = ? AND state IN ('dispatched', 'running')",
        params![digest, release_id, instance_id],
    )?;
    if updated == 0 {
        require(conn, release_id, instance_id)?;
    }
    Ok(())
}
