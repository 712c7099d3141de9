//! Tasks: the `release_tasks` table, the work of one release on one instance.
//! A task moves pending -> dispatched -> running -> succeeded | failed, or to
//! cancelled before it ran; each move is a conditional UPDATE, which PostgreSQL
//! re-checks on the row's newest version after a concurrent write, so a late or
//! repeated call (from this server or another) changes nothing. Errors name a
//! task as `release/instance`.

use super::convert::{millis, optional_time, unsigned};
use super::failure::{already_exists, is_unique_violation, not_found};
use super::query::{self, Db};
use super::releases;
use crate::{BatchSummary, LiveTask, StoreError, StoreResult, TaskRecord, TaskState};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use tokio_postgres::Row;

/// The states of a task that has not ended, as an SQL list.
const OPEN_STATES: &str = "('pending', 'dispatched', 'running')";

/// The columns [`task`] reads, from `release_tasks` aliased `t`.
const TASK_COLUMNS: &str = "t.release_id, t.instance_id, t.instance_name, t.batch, t.state, \
     t.dispatched_at, t.started_at, t.finished_at, t.deadline_at, t.image_digest, t.message";

/// Reads a row whose first columns are [`TASK_COLUMNS`], in that order.
fn task(row: &Row) -> StoreResult<TaskRecord> {
    let release_id: String = row.try_get(0)?;
    let instance_id: String = row.try_get(1)?;
    let state: String = row.try_get(4)?;
    Ok(TaskRecord {
        state: parse_state(&release_id, &instance_id, &state)?,
        instance_name: row.try_get(2)?,
        batch: unsigned("release_tasks.batch", row.try_get(3)?)?,
        dispatched_at: optional_time("release_tasks.dispatched_at", row.try_get(5)?)?,
        started_at: optional_time("release_tasks.started_at", row.try_get(6)?)?,
        finished_at: optional_time("release_tasks.finished_at", row.try_get(7)?)?,
        deadline: optional_time("release_tasks.deadline_at", row.try_get(8)?)?,
        image_digest: row.try_get(9)?,
        message: row.try_get(10)?,
        release_id,
        instance_id,
    })
}

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
async fn require(tx: &impl Db, release_id: &str, instance_id: &str) -> StoreResult<()> {
    let sql =
        "SELECT EXISTS (SELECT 1 FROM release_tasks WHERE release_id = $1 AND instance_id = $2)";
    if query::exists(tx, sql, &[&release_id, &instance_id]).await? {
        Ok(())
    } else {
        Err(not_found("task", &name(release_id, instance_id)))
    }
}

/// Inserts the tasks of a release being created (by `releases::create`, which
/// has checked the release), in one statement however many there are.
pub(super) async fn insert_all(tx: &impl Db, tasks: &[TaskRecord]) -> StoreResult<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let mut seen = HashSet::with_capacity(tasks.len());
    if let Some(twice) = tasks
        .iter()
        .find(|t| !seen.insert((t.release_id.as_str(), t.instance_id.as_str())))
    {
        return Err(already_exists(
            "task",
            &name(&twice.release_id, &twice.instance_id),
        ));
    }
    let column = |f: fn(&TaskRecord) -> Option<i64>| tasks.iter().map(f).collect::<Vec<_>>();
    let release_ids: Vec<&str> = tasks.iter().map(|t| t.release_id.as_str()).collect();
    let instance_ids: Vec<&str> = tasks.iter().map(|t| t.instance_id.as_str()).collect();
    let names: Vec<&str> = tasks.iter().map(|t| t.instance_name.as_str()).collect();
    let batches: Vec<i64> = tasks.iter().map(|t| i64::from(t.batch)).collect();
    let states: Vec<&str> = tasks.iter().map(|t| t.state.as_str()).collect();
    let dispatched = column(|t| t.dispatched_at.map(millis));
    let started = column(|t| t.started_at.map(millis));
    let finished = column(|t| t.finished_at.map(millis));
    let deadlines = column(|t| t.deadline.map(millis));
    let digests: Vec<Option<&str>> = tasks.iter().map(|t| t.image_digest.as_deref()).collect();
    let messages: Vec<Option<&str>> = tasks.iter().map(|t| t.message.as_deref()).collect();
    query::execute(
        tx,
        "INSERT INTO release_tasks (release_id, instance_id, instance_name, batch, state, \
         dispatched_at, started_at, finished_at, deadline_at, image_digest, message) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
         $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::text[], $11::text[])",
        &[
            &release_ids,
            &instance_ids,
            &names,
            &batches,
            &states,
            &dispatched,
            &started,
            &finished,
            &deadlines,
            &digests,
            &messages,
        ],
    )
    .await
    .map_err(|err| {
        if is_unique_violation(&err) {
            already_exists("task", &tasks[0].release_id)
        } else {
            StoreError::Postgres(err)
        }
    })?;
    Ok(())
}

/// The tasks of a release, by batch then instance name.
pub(super) async fn list(tx: &impl Db, release_id: &str) -> StoreResult<Vec<TaskRecord>> {
    releases::require(tx, release_id).await?;
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM release_tasks t WHERE t.release_id = $1 \
         ORDER BY t.batch, t.instance_name, t.instance_id"
    );
    query::all(tx, &sql, &[&release_id])
        .await?
        .iter()
        .map(task)
        .collect()
}

/// The tasks of some batches of a release, in [`list`]'s order.
pub(super) async fn list_of_batches(
    tx: &impl Db,
    release_id: &str,
    batches: &[u32],
) -> StoreResult<Vec<TaskRecord>> {
    let batches: Vec<i64> = batches.iter().map(|b| i64::from(*b)).collect();
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM release_tasks t \
         WHERE t.release_id = $1 AND t.batch = ANY ($2::bigint[]) \
         ORDER BY t.batch, t.instance_name, t.instance_id"
    );
    query::all(tx, &sql, &[&release_id, &batches])
        .await?
        .iter()
        .map(task)
        .collect()
}

/// How each batch of a release stands: the counts the triggers keep, one row
/// per batch that has tasks.
pub(super) async fn batch_summaries(
    tx: &impl Db,
    release_id: &str,
) -> StoreResult<Vec<BatchSummary>> {
    releases::require(tx, release_id).await?;
    let rows = query::all(
        tx,
        "SELECT batch, pending, dispatched, running, succeeded, failed, cancelled, \
         last_finished_at FROM release_batch_counts \
         WHERE release_id = $1 \
         AND pending + dispatched + running + succeeded + failed + cancelled > 0 \
         ORDER BY batch",
        &[&release_id],
    )
    .await?;
    let count = |row: &Row, index: usize, column: &str| -> StoreResult<u32> {
        let value: i64 = row.try_get(index)?;
        u32::try_from(value)
            .map_err(|_| StoreError::Corrupt(format!("{column}: {value} is not a count")))
    };
    rows.iter()
        .map(|row| {
            Ok(BatchSummary {
                batch: unsigned("release_tasks.batch", row.try_get(0)?)?,
                pending: count(row, 1, "pending")?,
                dispatched: count(row, 2, "dispatched")?,
                running: count(row, 3, "running")?,
                succeeded: count(row, 4, "succeeded")?,
                failed: count(row, 5, "failed")?,
                cancelled: count(row, 6, "cancelled")?,
                last_finished_at: optional_time("release_tasks.finished_at", row.try_get(7)?)?,
            })
        })
        .collect()
}

/// The release's dispatched and running tasks with their instances' last
/// heartbeats.
pub(super) async fn list_live(tx: &impl Db, release_id: &str) -> StoreResult<Vec<LiveTask>> {
    releases::require(tx, release_id).await?;
    let sql = format!(
        "SELECT {TASK_COLUMNS}, i.id IS NOT NULL AS instance_exists, i.last_heartbeat_at \
         FROM release_tasks t LEFT JOIN instances i ON i.id = t.instance_id \
         WHERE t.release_id = $1 AND t.state IN ('dispatched', 'running') \
         ORDER BY t.batch, t.instance_name, t.instance_id"
    );
    query::all(tx, &sql, &[&release_id])
        .await?
        .iter()
        .map(|row| {
            let exists: bool = row.try_get(11)?;
            let heartbeat = optional_time("instances.last_heartbeat_at", row.try_get(12)?)?;
            Ok(LiveTask {
                task: task(row)?,
                instance_heartbeat: exists.then_some(heartbeat),
            })
        })
        .collect()
}

/// How many tasks of the batch have not ended, from the kept counts.
pub(super) async fn count_open_in_batch(
    tx: &impl Db,
    release_id: &str,
    batch: u32,
) -> StoreResult<u32> {
    let count: i64 = query::one(
        tx,
        "SELECT COALESCE(SUM(pending + dispatched + running), 0)::bigint \
         FROM release_batch_counts WHERE release_id = $1 AND batch = $2",
        &[&release_id, &i64::from(batch)],
    )
    .await?
    .try_get(0)?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// The state and batch of the instance's task in the release, locking the task
/// until the transaction ends: what a step report needs to know of it before it
/// writes, so that the server cannot end the task in between (its write waits).
/// A task's state and batch as stored, read back.
pub(super) fn parse_state_and_batch(
    release_id: &str,
    instance_id: &str,
    state: &str,
    batch: i64,
) -> StoreResult<(TaskState, u32)> {
    Ok((
        parse_state(release_id, instance_id, state)?,
        unsigned("release_tasks.batch", batch)?,
    ))
}

pub(super) async fn state_and_batch(
    tx: &impl Db,
    release_id: &str,
    instance_id: &str,
) -> StoreResult<(TaskState, u32)> {
    let row = query::optional(
        tx,
        "SELECT state, batch FROM release_tasks WHERE release_id = $1 AND instance_id = $2 \
         FOR SHARE",
        &[&release_id, &instance_id],
    )
    .await?
    .ok_or_else(|| not_found("task", &name(release_id, instance_id)))?;
    let state: String = row.try_get(0)?;
    let state = parse_state(release_id, instance_id, &state)?;
    Ok((state, unsigned("release_tasks.batch", row.try_get(1)?)?))
}

pub(super) async fn fetch(
    tx: &impl Db,
    release_id: &str,
    instance_id: &str,
) -> StoreResult<TaskRecord> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM release_tasks t WHERE t.release_id = $1 AND t.instance_id = $2"
    );
    let row = query::optional(tx, &sql, &[&release_id, &instance_id])
        .await?
        .ok_or_else(|| not_found("task", &name(release_id, instance_id)))?;
    task(&row)
}

/// Pending -> Dispatched for the tasks of one batch, but only while the release
/// is running (checked in the same statement, on the release row locked against
/// a concurrent pause or cancel). Returns the instance ids dispatched, in the
/// order of [`list`]. The statement trigger moves the batch's counts once.
pub(super) async fn dispatch_batch(
    tx: &impl Db,
    release_id: &str,
    batch: u32,
    now: DateTime<Utc>,
    deadline: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    releases::require(tx, release_id).await?;
    let mut dispatched: Vec<(String, String)> = query::all(
        tx,
        "WITH running AS (SELECT id FROM releases WHERE id = $3 AND state = 'running' FOR SHARE) \
         UPDATE release_tasks SET state = 'dispatched', dispatched_at = $1, deadline_at = $2 \
         WHERE release_id = $3 AND batch = $4 AND state = 'pending' \
         AND EXISTS (SELECT 1 FROM running) \
         RETURNING instance_name, instance_id",
        &[
            &millis(now),
            &millis(deadline),
            &release_id,
            &i64::from(batch),
        ],
    )
    .await?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
    .collect::<StoreResult<_>>()?;
    dispatched.sort();
    Ok(dispatched.into_iter().map(|(_, id)| id).collect())
}

/// The release of the instance's oldest dispatched task of a running release.
pub(super) async fn next_dispatched(
    tx: &impl Db,
    instance_id: &str,
) -> StoreResult<Option<String>> {
    query::optional(
        tx,
        "SELECT t.release_id FROM release_tasks t JOIN releases r ON r.id = t.release_id \
         WHERE t.instance_id = $1 AND t.state = 'dispatched' AND r.state = 'running' \
         ORDER BY t.dispatched_at, r.created_at, t.release_id LIMIT 1",
        &[&instance_id],
    )
    .await?
    .map(|row| Ok(row.try_get(0)?))
    .transpose()
}

/// Dispatched -> running for one task of a running release, recording its
/// `fetch` step as succeeded at the claim's time, in one statement (the claim
/// and the step's row, replacing any, as SQLite's trigger does). `Ok(false)` when
/// the task was not dispatched or its release is not running.
pub(super) async fn claim(
    tx: &impl Db,
    release_id: &str,
    instance_id: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let claimed = query::execute(
        tx,
        "WITH claimed AS ( \
             UPDATE release_tasks SET state = 'running', started_at = $1 \
             WHERE release_id = $2 AND instance_id = $3 AND state = 'dispatched' \
             AND EXISTS (SELECT 1 FROM releases WHERE id = $2 AND state = 'running') \
             RETURNING release_id, instance_id, started_at) \
         INSERT INTO release_steps AS s \
             (release_id, instance_id, step, ordinal, state, started_at, finished_at) \
         SELECT release_id, instance_id, 'fetch', 0, 'succeeded', started_at, started_at \
         FROM claimed \
         ON CONFLICT (release_id, instance_id, step) DO UPDATE SET \
             ordinal = excluded.ordinal, state = excluded.state, \
             started_at = excluded.started_at, finished_at = excluded.finished_at, \
             exit_code = NULL, output = '', dropped_bytes = 0, message = NULL",
        &[&millis(now), &release_id, &instance_id],
    )
    .await?;
    if claimed == 0 {
        // Not dispatched, or no such task (checked only now: the usual case is one
        // statement).
        require(tx, release_id, instance_id).await?;
    }
    Ok(claimed == 1)
}

/// The instance's running tasks, oldest start first.
pub(super) async fn list_running_for_instance(
    tx: &impl Db,
    instance_id: &str,
) -> StoreResult<Vec<TaskRecord>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM release_tasks t \
         WHERE t.instance_id = $1 AND t.state = 'running' ORDER BY t.started_at, t.release_id"
    );
    query::all(tx, &sql, &[&instance_id])
        .await?
        .iter()
        .map(task)
        .collect()
}

/// Ends a task that has not ended; `Ok(false)` if it had. On success the
/// instance's membership of the release's group (if it is still a member)
/// records the release's deployment and the task's digest.
#[allow(clippy::too_many_arguments)]
pub(super) async fn finish(
    tx: &impl Db,
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
        "UPDATE release_tasks SET state = $1, finished_at = $2, \
         image_digest = COALESCE($3, image_digest), message = COALESCE($4, message) \
         WHERE release_id = $5 AND instance_id = $6 AND state IN {OPEN_STATES} \
         RETURNING image_digest"
    );
    let finished = query::optional(
        tx,
        &sql,
        &[
            &state.as_str(),
            &millis(now),
            &digest,
            &message,
            &release_id,
            &instance_id,
        ],
    )
    .await?;
    let Some(row) = finished else {
        // Ended already, or no such task.
        require(tx, release_id, instance_id).await?;
        return Ok(false);
    };
    let recorded_digest: Option<String> = row.try_get(0)?;
    if state == TaskState::Succeeded {
        query::execute(
            tx,
            "UPDATE group_members SET deployment = r.deployment, image_digest = $1 \
             FROM releases r \
             WHERE r.id = $2 AND r.kind <> 'exec' AND group_members.app = r.app \
             AND group_members.group_name = r.group_name AND group_members.instance_id = $3",
            &[&recorded_digest, &release_id, &instance_id],
        )
        .await?;
    }
    Ok(true)
}

/// Pending and dispatched tasks of a release -> cancelled; returns how many.
pub(super) async fn cancel_unstarted(
    tx: &impl Db,
    release_id: &str,
    message: &str,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    releases::require(tx, release_id).await?;
    Ok(query::execute(
        tx,
        "UPDATE release_tasks SET state = 'cancelled', finished_at = $1, message = $2 \
         WHERE release_id = $3 AND state IN ('pending', 'dispatched')",
        &[&millis(now), &message, &release_id],
    )
    .await?)
}

/// Records the digest the pull step reported, on a task under way only.
pub(super) async fn set_digest(
    tx: &impl Db,
    release_id: &str,
    instance_id: &str,
    digest: &str,
) -> StoreResult<()> {
    let updated = query::execute(
        tx,
        "UPDATE release_tasks SET image_digest = $1 \
         WHERE release_id = $2 AND instance_id = $3 AND state IN ('dispatched', 'running')",
        &[&digest, &release_id, &instance_id],
    )
    .await?;
    if updated == 0 {
        require(tx, release_id, instance_id).await?;
    }
    Ok(())
}
