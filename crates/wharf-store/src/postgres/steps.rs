//! Steps: the `release_steps` table, one row per step an instance ran for a
//! release, with the retained tail of its output. A step runs once: it begins
//! (running), takes output while running, and finishes once. Errors name a step
//! as `release/instance/step`.

use super::convert::{millis, optional_time, time, unsigned};
use super::failure::not_found;
use super::query::{self, Db, Params};
use super::{releases, tasks};
use crate::sqlite::steps::{keep_tail, ordinal};
use crate::{StepRecord, StepState, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use wharf_domain::release::StepName;

/// Reads a row of `release_id, instance_id, step, state, started_at,
/// finished_at, exit_code, output, dropped_bytes, message`.
fn step(row: &Row) -> StoreResult<StepRecord> {
    let release_id: String = row.try_get(0)?;
    let instance_id: String = row.try_get(1)?;
    let step: String = row.try_get(2)?;
    let state: String = row.try_get(3)?;
    let which = || name(&release_id, &instance_id, &step);
    let parsed = StepName::parse(&step)
        .ok_or_else(|| StoreError::Corrupt(format!("step {}: unknown step", which())))?;
    let state = StepState::parse(&state).ok_or_else(|| {
        StoreError::Corrupt(format!("step {}: {state:?} is not a step state", which()))
    })?;
    let exit_code = row
        .try_get::<_, Option<i64>>(6)?
        .map(|code| {
            i32::try_from(code).map_err(|_| {
                StoreError::Corrupt(format!("release_steps.exit_code {code} is out of range"))
            })
        })
        .transpose()?;
    Ok(StepRecord {
        step: parsed,
        state,
        exit_code,
        started_at: time("release_steps.started_at", row.try_get(4)?)?,
        finished_at: optional_time("release_steps.finished_at", row.try_get(5)?)?,
        output: row.try_get(7)?,
        dropped_bytes: unsigned("release_steps.dropped_bytes", row.try_get(8)?)?,
        message: row.try_get(9)?,
        release_id,
        instance_id,
    })
}

fn name(release_id: &str, instance_id: &str, step: &str) -> String {
    format!("{release_id}/{instance_id}/{step}")
}

/// A byte count as stored; counts beyond the column's range stick at its top.
fn stored_count(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The state of a step, if it has begun.
pub(super) async fn state_of(
    tx: &impl Db,
    release_id: &str,
    instance_id: &str,
    step: StepName,
) -> StoreResult<Option<StepState>> {
    let row = query::optional(
        tx,
        "SELECT state FROM release_steps WHERE release_id = $1 AND instance_id = $2 AND step = $3",
        &[&release_id, &instance_id, &step.as_str()],
    )
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let state: String = row.try_get(0)?;
    StepState::parse(&state).map(Some).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "step {}: {state:?} is not a step state",
            name(release_id, instance_id, step.as_str())
        ))
    })
}

/// Begins a step of an existing task. A step that is running begins again (its
/// agent retried the report): its start moves to `now` and its output is kept.
/// A finished step is refused with `Conflict`. The task's row is share-locked by
/// the insert, so that the server cannot end the task while a step begins on it
/// (its `task_fail` waits, then fails the step too).
pub(super) async fn begin(
    tx: &impl Db,
    release_id: &str,
    instance_id: &str,
    step: StepName,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let begun = query::execute(
        tx,
        "INSERT INTO release_steps (release_id, instance_id, step, ordinal, state, started_at) \
         SELECT release_id, instance_id, $3::text, $4::bigint, 'running', $5::bigint \
         FROM release_tasks \
         WHERE release_id = $1 AND instance_id = $2 AND state = 'running' FOR SHARE \
         ON CONFLICT (release_id, instance_id, step) DO UPDATE SET started_at = excluded.started_at \
         WHERE release_steps.state = 'running'",
        &[
            &release_id,
            &instance_id,
            &step.as_str(),
            &ordinal(step),
            &millis(now),
        ],
    )
    .await?;
    if begun == 1 {
        return Ok(());
    }
    match state_of(tx, release_id, instance_id, step).await? {
        Some(StepState::Running) => {
            query::execute(
                tx,
                "UPDATE release_steps SET started_at = $1 \
                 WHERE release_id = $2 AND instance_id = $3 AND step = $4",
                &[&millis(now), &release_id, &instance_id, &step.as_str()],
            )
            .await?;
            Ok(())
        }
        Some(StepState::Succeeded | StepState::Failed) => Err(StoreError::Conflict(format!(
            "step {} already finished",
            step.as_str()
        ))),
        None => {
            let (task_state, _) = tasks::state_and_batch(tx, release_id, instance_id).await?;
            crate::refuse_unless_running(task_state, step, "begin")?;
            query::execute(
                tx,
                "INSERT INTO release_steps (release_id, instance_id, step, ordinal, state, \
                 started_at) VALUES ($1, $2, $3, $4, 'running', $5)",
                &[
                    &release_id,
                    &instance_id,
                    &step.as_str(),
                    &ordinal(step),
                    &millis(now),
                ],
            )
            .await?;
            Ok(())
        }
    }
}

/// Appends output to a running step (anything else is ignored), keeping at most
/// `keep_bytes` bytes. The step's row is locked while its output is read and
/// written back, so that two reports of one step never lose each other's bytes.
#[allow(clippy::too_many_arguments)]
pub(super) async fn append_output(
    tx: &impl Db,
    release_id: &str,
    instance_id: &str,
    step: StepName,
    chunk: &str,
    dropped: u64,
    keep_bytes: usize,
    offset: Option<u64>,
) -> StoreResult<()> {
    let current = query::optional(
        tx,
        "SELECT output, dropped_bytes FROM release_steps \
         WHERE release_id = $1 AND instance_id = $2 AND step = $3 AND state = 'running' \
         FOR NO KEY UPDATE",
        &[&release_id, &instance_id, &step.as_str()],
    )
    .await?;
    let Some(current) = current else {
        return Ok(());
    };
    let mut output: String = current.try_get(0)?;
    let already_dropped: u64 = unsigned("release_steps.dropped_bytes", current.try_get(1)?)?;
    let recorded = u64::try_from(output.len())
        .unwrap_or(u64::MAX)
        .saturating_add(already_dropped);
    let missed = match offset {
        Some(offset) if offset < recorded => return Ok(()),
        Some(offset) => offset - recorded,
        None => 0,
    };
    output.push_str(chunk);
    let cut = keep_tail(&mut output, keep_bytes);
    let total_dropped = already_dropped
        .saturating_add(missed)
        .saturating_add(dropped)
        .saturating_add(u64::try_from(cut).unwrap_or(u64::MAX));
    query::execute(
        tx,
        "UPDATE release_steps SET output = $1, dropped_bytes = $2 \
         WHERE release_id = $3 AND instance_id = $4 AND step = $5",
        &[
            &output,
            &stored_count(total_dropped),
            &release_id,
            &instance_id,
            &step.as_str(),
        ],
    )
    .await?;
    Ok(())
}

/// Fails the task's running step, if it has one, with `reason`.
pub(super) async fn fail_running(
    tx: &impl Db,
    release_id: &str,
    instance_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    query::execute(
        tx,
        "UPDATE release_steps SET state = $1, finished_at = $2, message = $3 \
         WHERE release_id = $4 AND instance_id = $5 AND state = 'running'",
        &[
            &StepState::Failed.as_str(),
            &millis(now),
            &reason,
            &release_id,
            &instance_id,
        ],
    )
    .await?;
    Ok(())
}

/// Ends a running step; `Ok(false)` if it had ended, `NotFound` if it never began.
#[allow(clippy::too_many_arguments)]
pub(super) async fn finish(
    tx: &impl Db,
    release_id: &str,
    instance_id: &str,
    step: StepName,
    state: StepState,
    exit_code: Option<i32>,
    message: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    if state == StepState::Running {
        return Err(StoreError::Conflict(format!(
            "step {} cannot be finished as running",
            step.as_str()
        )));
    }
    let finished = query::execute(
        tx,
        "UPDATE release_steps SET state = $1, finished_at = $2, exit_code = $3, message = $4 \
         WHERE release_id = $5 AND instance_id = $6 AND step = $7 AND state = 'running'",
        &[
            &state.as_str(),
            &millis(now),
            &exit_code.map(i64::from),
            &message,
            &release_id,
            &instance_id,
            &step.as_str(),
        ],
    )
    .await?;
    if finished == 1 {
        return Ok(true);
    }
    match state_of(tx, release_id, instance_id, step).await? {
        None => Err(not_found(
            "step",
            &name(release_id, instance_id, step.as_str()),
        )),
        Some(_) => Ok(false),
    }
}

/// The steps of a release, optionally of one instance, by instance name and then
/// in run order.
pub(super) async fn list(
    tx: &impl Db,
    release_id: &str,
    instance_id: Option<&str>,
    with_output: bool,
) -> StoreResult<Vec<StepRecord>> {
    releases::require(tx, release_id).await?;
    let output = if with_output { "s.output" } else { "''" };
    let sql = format!(
        "SELECT s.release_id, s.instance_id, s.step, s.state, s.started_at, s.finished_at, \
         s.exit_code, {output} AS output, s.dropped_bytes, s.message \
         FROM release_steps s JOIN release_tasks t \
         ON t.release_id = s.release_id AND t.instance_id = s.instance_id \
         WHERE s.release_id = $1 AND ($2::text IS NULL OR s.instance_id = $2) \
         ORDER BY t.instance_name, s.instance_id, s.ordinal"
    );
    query::all(tx, &sql, &[&release_id, &instance_id])
        .await?
        .iter()
        .map(step)
        .collect()
}

/// Every step of a release without its output, grouped by instance and in run
/// order within an instance.
pub(super) async fn list_by_instance(
    tx: &impl Db,
    release_id: &str,
) -> StoreResult<Vec<StepRecord>> {
    without_output(
        tx,
        "WHERE release_id = $1 ORDER BY instance_id, ordinal",
        &[&release_id],
    )
    .await
}

/// The steps of one instance in a release without their output, in run order.
pub(super) async fn list_of_instance(
    tx: &impl Db,
    release_id: &str,
    instance_id: &str,
) -> StoreResult<Vec<StepRecord>> {
    without_output(
        tx,
        "WHERE release_id = $1 AND instance_id = $2 ORDER BY ordinal",
        &[&release_id, &instance_id],
    )
    .await
}

async fn without_output(
    tx: &impl Db,
    filter: &str,
    params: Params<'_>,
) -> StoreResult<Vec<StepRecord>> {
    let sql = format!(
        "SELECT release_id, instance_id, step, state, started_at, finished_at, \
         exit_code, '' AS output, dropped_bytes, message FROM release_steps {filter}"
    );
    query::all(tx, &sql, params)
        .await?
        .iter()
        .map(step)
        .collect()
}
