//! [`Store::agent_writes`](crate::Store::agent_writes) for SQLite: many agents'
//! step reports (a task's first begin also claims the task) in one write
//! transaction. SQLite has one writer, and
//! with thousands of agents one transaction per report queues them behind each
//! other; written together, a batch of reports costs about what one did. Each
//! write runs inside its own savepoint, so a refused one is undone alone and the
//! others still commit (a write of a single statement needs none: SQLite undoes a
//! failed statement by itself).

use super::{query, steps, tasks};
use crate::{AgentWrite, AgentWritten, StoreResult, TaskState};
use rusqlite::Connection;
use wharf_domain::release::StepName;

/// Writes `writes` in order on `conn`, which is inside a write transaction;
/// answers each.
pub(super) fn write_all(
    conn: &Connection,
    writes: &[AgentWrite],
) -> StoreResult<Vec<StoreResult<AgentWritten>>> {
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        let result = if writes_more_than_once(write) {
            undone_alone_if_refused(conn, || write_one(conn, write))?
        } else {
            // One write statement is all or nothing by itself.
            write_one(conn, write)
        };
        results.push(result);
    }
    Ok(results)
}

/// Runs `write` inside a savepoint, so that a write refused half-way is undone
/// alone and the transaction's other writes still commit. The outer error is the
/// savepoint's own failure; the inner one the write's.
fn undone_alone_if_refused<T>(
    conn: &Connection,
    write: impl FnOnce() -> StoreResult<T>,
) -> StoreResult<StoreResult<T>> {
    query::execute(conn, "SAVEPOINT agent_write", [])?;
    let result = write();
    if result.is_err() {
        query::execute(conn, "ROLLBACK TO agent_write", [])?;
    }
    query::execute(conn, "RELEASE agent_write", [])?;
    Ok(result)
}

/// Whether a write may change more than one thing, and so needs a savepoint to
/// be undone alone when it is refused half-way. Every statement counts here: the
/// writer runs them one after another for every agent.
fn writes_more_than_once(write: &AgentWrite) -> bool {
    match write {
        // One INSERT or UPDATE after reads. (A begin that claims its task takes
        // its own savepoint: only the first begin of a task does.)
        AgentWrite::StepBegin { .. } | AgentWrite::StepOutput { .. } => false,
        AgentWrite::StepEnd {
            digest,
            task_end,
            then_begin,
            ..
        } => digest.is_some() || task_end.is_some() || then_begin.is_some(),
    }
}

fn write_one(conn: &Connection, write: &AgentWrite) -> StoreResult<AgentWritten> {
    match write {
        AgentWrite::StepBegin {
            release_id,
            instance_id,
            step,
            now,
        } => {
            let (state, _) = tasks::state_and_batch(conn, release_id, instance_id)?;
            let begin = || {
                steps::begin(conn, release_id, instance_id, *step, *now)
                    .map(|()| AgentWritten::Recorded)
            };
            if state != TaskState::Dispatched {
                crate::refuse_unless_running(state, *step, "begin")?;
                return begin();
            }
            // The agent's first report of work it was given: the task is claimed
            // with it, and both are undone if the begin is refused.
            undone_alone_if_refused(conn, || {
                if !tasks::claim(conn, release_id, instance_id, *now)? {
                    // Dispatched, but its release is no longer running.
                    crate::refuse_unless_running(state, *step, "begin")?;
                }
                begin()
            })?
        }
        AgentWrite::StepOutput {
            release_id,
            instance_id,
            step,
            chunk,
            dropped,
            keep_bytes,
            offset,
        } => {
            running_batch(conn, release_id, instance_id, *step, "take output")?;
            steps::append_output(
                conn,
                release_id,
                instance_id,
                *step,
                chunk,
                *dropped,
                *keep_bytes,
                *offset,
            )
            .map(|()| AgentWritten::Recorded)
        }
        AgentWrite::StepEnd {
            release_id,
            instance_id,
            step,
            state,
            exit_code,
            message,
            digest,
            task_end,
            then_begin,
            now,
        } => {
            crate::refuse_unsound_step_end(*step, *state, task_end, *then_begin)?;
            let batch = running_batch(conn, release_id, instance_id, *step, "end")?;
            let changed = steps::finish(
                conn,
                release_id,
                instance_id,
                *step,
                *state,
                *exit_code,
                message.as_deref(),
                *now,
            )?;
            let mut ended = AgentWritten::StepEnded {
                changed,
                task_finished: false,
                batch_open: 0,
            };
            if changed {
                if let Some(digest) = digest {
                    tasks::set_digest(conn, release_id, instance_id, digest)?;
                }
            }
            // A report that ends the task begins no next step (refused above).
            if let (true, Some((task_state, reason))) = (changed, task_end) {
                let finished = tasks::finish(
                    conn,
                    release_id,
                    instance_id,
                    *task_state,
                    None,
                    reason.as_deref(),
                    *now,
                )?;
                let batch_open = if finished && *task_state == TaskState::Succeeded {
                    tasks::count_open_in_batch(conn, release_id, batch)?
                } else {
                    0
                };
                ended = AgentWritten::StepEnded {
                    changed,
                    task_finished: finished,
                    batch_open,
                };
            }
            if let Some(next) = then_begin {
                if !changed {
                    if let Some(recorded) = steps::state_of(conn, release_id, instance_id, *step)? {
                        crate::refuse_begin_after_unchanged_end(*step, recorded, *next)?;
                    }
                }
                steps::begin(conn, release_id, instance_id, *next, *now)?;
            }
            Ok(ended)
        }
    }
}

/// The batch of the instance's task in the release, if that task is running;
/// see [`AgentWrite`] for the refusals.
fn running_batch(
    conn: &Connection,
    release_id: &str,
    instance_id: &str,
    step: StepName,
    verb: &str,
) -> StoreResult<u32> {
    let (state, batch) = tasks::state_and_batch(conn, release_id, instance_id)?;
    crate::refuse_unless_running(state, step, verb)?;
    Ok(batch)
}
