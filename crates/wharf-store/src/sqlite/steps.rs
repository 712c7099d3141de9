//! Steps: the `release_steps` table, one row per step an instance ran for a
//! release, with the retained tail of its output. A step runs once: it begins
//! (running), takes output while running, and finishes once. Errors name a step
//! as `release/instance/step`.

use super::convert::{millis, optional_time, time, unsigned};
use super::failure::not_found;
use super::{query, releases, tasks};
use crate::{StepRecord, StepState, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Row};
use wharf_domain::release::StepName;

/// At most this many bytes more than the bound are dropped so that the kept
/// output starts at the beginning of a line (see [`keep_tail`]).
const LINE_SLACK: usize = 4096;

struct StepRow {
    release_id: String,
    instance_id: String,
    step: String,
    state: String,
    started_at: i64,
    finished_at: Option<i64>,
    exit_code: Option<i64>,
    output: String,
    dropped_bytes: i64,
    message: Option<String>,
}

impl StepRow {
    /// Reads a row of `release_id, instance_id, step, state, started_at,
    /// finished_at, exit_code, output, dropped_bytes, message`.
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(StepRow {
            release_id: row.get(0)?,
            instance_id: row.get(1)?,
            step: row.get(2)?,
            state: row.get(3)?,
            started_at: row.get(4)?,
            finished_at: row.get(5)?,
            exit_code: row.get(6)?,
            output: row.get(7)?,
            dropped_bytes: row.get(8)?,
            message: row.get(9)?,
        })
    }
}

impl TryFrom<StepRow> for StepRecord {
    type Error = StoreError;

    fn try_from(row: StepRow) -> StoreResult<Self> {
        let which = || name(&row.release_id, &row.instance_id, &row.step);
        let step = StepName::parse(&row.step)
            .ok_or_else(|| StoreError::Corrupt(format!("step {}: unknown step", which())))?;
        let state = StepState::parse(&row.state).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "step {}: {:?} is not a step state",
                which(),
                row.state
            ))
        })?;
        let exit_code = row
            .exit_code
            .map(|code| {
                i32::try_from(code).map_err(|_| {
                    StoreError::Corrupt(format!("release_steps.exit_code {code} is out of range"))
                })
            })
            .transpose()?;
        Ok(StepRecord {
            step,
            state,
            exit_code,
            started_at: time("release_steps.started_at", row.started_at)?,
            finished_at: optional_time("release_steps.finished_at", row.finished_at)?,
            dropped_bytes: unsigned("release_steps.dropped_bytes", row.dropped_bytes)?,
            release_id: row.release_id,
            instance_id: row.instance_id,
            output: row.output,
            message: row.message,
        })
    }
}

fn name(release_id: &str, instance_id: &str, step: &str) -> String {
    format!("{release_id}/{instance_id}/{step}")
}

/// A step's place in the run order, stored so that lists can sort by it.
pub(crate) fn ordinal(step: StepName) -> i64 {
    StepName::ALL
        .iter()
        .position(|s| *s == step)
        .map_or(i64::MAX, |i| i as i64)
}

/// A byte count as stored; counts beyond the column's range stick at its top.
fn stored_count(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The state of a step, if it has begun.
pub(super) fn state_of(
    conn: &Connection,
    release_id: &str,
    instance_id: &str,
    step: StepName,
) -> StoreResult<Option<StepState>> {
    let state: Option<String> = query::optional(
        conn,
        "SELECT state FROM release_steps WHERE release_id = ? AND instance_id = ? AND step = ?",
        params![release_id, instance_id, step.as_str()],
        |row| row.get(0),
    )?;
    state
        .map(|state| {
            StepState::parse(&state).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "step {}: {state:?} is not a step state",
                    name(release_id, instance_id, step.as_str())
                ))
            })
        })
        .transpose()
}

/// Begins a step of an existing task. A step that is running begins again (its
/// agent retried the report): its start moves to `now` and its output is kept.
/// A finished step is refused with `Conflict`.
pub(super) fn begin(
    conn: &Connection,
    release_id: &str,
    instance_id: &str,
    step: StepName,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    // The usual case in one statement: the task is running and the step new (or
    // running, and restarted). Anything else is sorted out below, where the
    // reads say which refusal applies.
    let begun = query::execute(
        conn,
        "INSERT INTO release_steps (release_id, instance_id, step, ordinal, state, started_at) \
         SELECT ?1, ?2, ?3, ?4, 'running', ?5 FROM release_tasks \
         WHERE release_id = ?1 AND instance_id = ?2 AND state = 'running' \
         ON CONFLICT (release_id, instance_id, step) DO UPDATE SET started_at = excluded.started_at \
         WHERE release_steps.state = 'running'",
        params![
            release_id,
            instance_id,
            step.as_str(),
            ordinal(step),
            millis(now)
        ],
    )?;
    if begun == 1 {
        return Ok(());
    }
    match state_of(conn, release_id, instance_id, step)? {
        Some(StepState::Running) => {
            query::execute(
                conn,
                "UPDATE release_steps SET started_at = ? \
                 WHERE release_id = ? AND instance_id = ? AND step = ?",
                params![millis(now), release_id, instance_id, step.as_str()],
            )?;
            Ok(())
        }
        Some(StepState::Succeeded | StepState::Failed) => Err(StoreError::Conflict(format!(
            "step {} already finished",
            step.as_str()
        ))),
        None => {
            // Checked in the same transaction as the insert: the driver may have
            // ended the task (deadline, offline) since the server read it, and a
            // step must not begin on an ended task.
            let (task_state, _) = tasks::state_and_batch(conn, release_id, instance_id)?;
            crate::refuse_unless_running(task_state, step, "begin")?;
            query::execute(
                conn,
                "INSERT INTO release_steps (release_id, instance_id, step, ordinal, state, \
                 started_at) VALUES (?, ?, ?, ?, 'running', ?)",
                params![
                    release_id,
                    instance_id,
                    step.as_str(),
                    ordinal(step),
                    millis(now)
                ],
            )?;
            Ok(())
        }
    }
}

/// Appends output to a running step (anything else is ignored), keeping at most
/// `keep_bytes` bytes (see [`keep_tail`]). `dropped` (what the agent dropped)
/// and what is cut here are added to `dropped_bytes`.
#[allow(clippy::too_many_arguments)]
pub(super) fn append_output(
    conn: &Connection,
    release_id: &str,
    instance_id: &str,
    step: StepName,
    chunk: &str,
    dropped: u64,
    keep_bytes: usize,
    offset: Option<u64>,
) -> StoreResult<()> {
    let current: Option<(String, i64)> = query::optional(
        conn,
        "SELECT output, dropped_bytes FROM release_steps \
         WHERE release_id = ? AND instance_id = ? AND step = ? AND state = 'running'",
        params![release_id, instance_id, step.as_str()],
        |row| row.try_into(),
    )?;
    let Some((mut output, already_dropped)) = current else {
        return Ok(());
    };
    let already_dropped: u64 = unsigned("release_steps.dropped_bytes", already_dropped)?;
    // Every byte the step wrote is either kept in `output` or counted in
    // `dropped_bytes`, so together they are where the step's output stands.
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
        conn,
        "UPDATE release_steps SET output = ?, dropped_bytes = ? \
         WHERE release_id = ? AND instance_id = ? AND step = ?",
        params![
            output,
            stored_count(total_dropped),
            release_id,
            instance_id,
            step.as_str()
        ],
    )?;
    Ok(())
}

/// Keeps the end of `text` within `keep` bytes and returns how many bytes it cut
/// from the front. The cut lands on a character boundary; and when a line starts
/// soon after it (within `min(keep / 4, LINE_SLACK)` bytes), at that line start,
/// so that the kept output does not begin in the middle of a line.
pub(crate) fn keep_tail(text: &mut String, keep: usize) -> usize {
    let Some(mut cut) = text.len().checked_sub(keep).filter(|cut| *cut > 0) else {
        return 0;
    };
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    let ends_a_line = text.as_bytes().get(cut - 1) == Some(&b'\n');
    if !ends_a_line {
        let slack = (keep / 4).min(LINE_SLACK);
        let window = text
            .as_bytes()
            .get(cut..text.len().min(cut + slack))
            .unwrap_or_default();
        // A newline byte is never part of a multi-byte character, so the byte
        // after it starts a character.
        if let Some(newline) = window.iter().position(|b| *b == b'\n') {
            cut += newline + 1;
        }
    }
    text.drain(..cut);
    cut
}

/// Fails the task's running step, if it has one, with `reason`: the task was
/// given up on while the step ran.
pub(super) fn fail_running(
    conn: &Connection,
    release_id: &str,
    instance_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    query::execute(
        conn,
        "UPDATE release_steps SET state = ?, finished_at = ?, message = ? \
         WHERE release_id = ? AND instance_id = ? AND state = 'running'",
        params![
            StepState::Failed.as_str(),
            millis(now),
            reason,
            release_id,
            instance_id
        ],
    )?;
    Ok(())
}

/// Ends a running step; `Ok(false)` if it had ended, `NotFound` if it never began.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
    conn: &Connection,
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
        conn,
        "UPDATE release_steps SET state = ?, finished_at = ?, exit_code = ?, message = ? \
         WHERE release_id = ? AND instance_id = ? AND step = ? AND state = 'running'",
        params![
            state.as_str(),
            millis(now),
            exit_code.map(i64::from),
            message,
            release_id,
            instance_id,
            step.as_str()
        ],
    )?;
    if finished == 1 {
        return Ok(true);
    }
    // Not running: ended already (a repeated report changes nothing), or unknown.
    match state_of(conn, release_id, instance_id, step)? {
        None => Err(not_found(
            "step",
            &name(release_id, instance_id, step.as_str()),
        )),
        Some(_) => Ok(false),
    }
}

/// The steps of a release, optionally of one instance, by instance name and then
/// in run order.
pub(super) fn list(
    conn: &Connection,
    release_id: &str,
    instance_id: Option<&str>,
    with_output: bool,
) -> StoreResult<Vec<StepRecord>> {
    releases::require(conn, release_id)?;
    let output = if with_output { "s.output" } else { "''" };
    let sql = format!(
        "SELECT s.release_id, s.instance_id, s.step, s.state, s.started_at, s.finished_at, \
         s.exit_code, {output} AS output, s.dropped_bytes, s.message \
         FROM release_steps s JOIN release_tasks t \
         ON t.release_id = s.release_id AND t.instance_id = s.instance_id \
         WHERE s.release_id = ?1 AND (?2 IS NULL OR s.instance_id = ?2) \
         ORDER BY t.instance_name, s.instance_id, s.ordinal"
    );
    query::all(conn, &sql, params![release_id, instance_id], StepRow::read)?
        .into_iter()
        .map(StepRecord::try_from)
        .collect()
}

/// Every step of a release without its output, grouped by instance and in run
/// order within an instance. For the view of a whole release (tens of thousands
/// of steps): the rows come in the primary key's order, so SQLite neither joins
/// nor sorts, and only each instance's few steps are put in run order here.
pub(super) fn list_by_instance(
    conn: &Connection,
    release_id: &str,
) -> StoreResult<Vec<StepRecord>> {
    without_output(
        conn,
        "WHERE release_id = ? ORDER BY release_id, instance_id, step",
        [release_id],
    )
}

/// The steps of one instance in a release without their output, in run order: what
/// [`list_by_instance`] gives for that instance, read through the primary key.
pub(super) fn list_of_instance(
    conn: &Connection,
    release_id: &str,
    instance_id: &str,
) -> StoreResult<Vec<StepRecord>> {
    without_output(
        conn,
        "WHERE release_id = ? AND instance_id = ?",
        [release_id, instance_id],
    )
}

/// The steps `filter` selects, without their output; rows of one instance must
/// come together, and are put in run order here.
fn without_output(
    conn: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<StepRecord>> {
    let sql = format!(
        "SELECT release_id, instance_id, step, state, started_at, finished_at, \
         exit_code, '' AS output, dropped_bytes, message FROM release_steps {filter}"
    );
    let mut steps = query::all(conn, &sql, params, StepRow::read)?
        .into_iter()
        .map(StepRecord::try_from)
        .collect::<StoreResult<Vec<StepRecord>>>()?;
    for instance in steps.chunk_by_mut(|a, b| a.instance_id == b.instance_id) {
        instance.sort_by_key(|s| ordinal(s.step));
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(text: &str, keep: usize) -> (String, usize) {
        let mut text = text.to_owned();
        let cut = keep_tail(&mut text, keep);
        (text, cut)
    }

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(kept("abc", 3), ("abc".into(), 0));
        assert_eq!(kept("", 0), (String::new(), 0));
        assert_eq!(kept("abc", 10), ("abc".into(), 0));
    }

    #[test]
    fn the_cut_lands_on_a_character_boundary() {
        // "é" is 2 bytes and "🚢" 4: keeping 5 of "aé🚢" (7 bytes) would start
        // inside "é", so the whole "é" goes.
        assert_eq!(kept("aé🚢", 5), ("🚢".into(), 3));
        assert_eq!(kept("aé🚢", 4), ("🚢".into(), 3));
        assert_eq!(kept("aé🚢", 3), (String::new(), 7));
        assert_eq!(kept("abc", 0), (String::new(), 3));
    }

    #[test]
    fn the_cut_moves_to_a_line_start_only_when_it_is_close() {
        // keep 16: slack 4. The cut falls in "ccc" (a line start within 4 bytes).
        let text = "aaaaaaaaaa\nbbccc\ndddddddddddd\n";
        let (tail, cut) = kept(text, 16);
        assert_eq!(tail, "dddddddddddd\n");
        assert_eq!(cut + tail.len(), text.len());
        // A cut right after a newline stays where it is.
        assert_eq!(kept("ab\ncd\n", 3), ("cd\n".into(), 3));
        // No newline near the cut: exactly the last bytes.
        let long = format!("{}\n{}", "x".repeat(10), "y".repeat(40));
        assert_eq!(kept(&long, 20), ("y".repeat(20), 31));
    }

    #[test]
    fn ordinals_follow_the_run_order() {
        let ordinals: Vec<i64> = StepName::ALL.into_iter().map(ordinal).collect();
        assert_eq!(ordinals, vec![0, 1, 2, 3, 4, 5, 6]);
    }
}
