//! [`Store::agent_writes`](crate::Store::agent_writes) for SQLite: many agents'
//! claims and step reports in one write transaction. SQLite has one writer, and
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
        if !writes_more_than_once(write) {
            // One write statement is all or nothing by itself.
            results.push(write_one(conn, write));
            continue;
        }
        query::execute(conn, "SAVEPOINT agent_write", [])?;
        let result = write_one(conn, write);
        if result.is_err() {
            query::execute(conn, "ROLLBACK TO agent_write", [])?;
        }
        query::execute(conn, "RELEASE agent_write", [])?;
        results.push(result);
    }
    Ok(results)
}

/// Whether a write may change more than one thing, and so needs a savepoint to
/// be undone alone when it is refused half-way. Every statement counts here: the
/// writer runs them one after another for every agent.
fn writes_more_than_once(write: &AgentWrite) -> bool {
    match write {
        // One UPDATE (its trigger records the fetch step), or one INSERT or UPDATE
        // after reads.
        AgentWrite::Claim { .. } | AgentWrite::StepBegin { .. } | AgentWrite::StepOutput { .. } => {
            false
        }
        AgentWrite::StepEnd {
            digest, task_end, ..
        } => digest.is_some() || task_end.is_some(),
    }
}

fn write_one(conn: &Connection, write: &AgentWrite) -> StoreResult<AgentWritten> {
    match write {
        AgentWrite::Claim { instance_id, now } => {
            tasks::claim(conn, instance_id, *now).map(AgentWritten::Claimed)
        }
        AgentWrite::StepBegin {
            release_id,
            instance_id,
            step,
            now,
        } => {
            running_batch(conn, release_id, instance_id, *step, "begin")?;
            steps::begin(conn, release_id, instance_id, *step, *now)
                .map(|()| AgentWritten::Recorded)
        }
        AgentWrite::StepOutput {
            release_id,
            instance_id,
            step,
            chunk,
            dropped,
            keep_bytes,
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
            now,
        } => {
            crate::refuse_open_task_end(task_end)?;
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
            if !changed {
                return Ok(AgentWritten::StepEnded {
                    changed,
                    task_finished: false,
                    batch_open: 0,
                });
            }
            if let Some(digest) = digest {
                tasks::set_digest(conn, release_id, instance_id, digest)?;
            }
            let Some((task_state, reason)) = task_end else {
                return Ok(AgentWritten::StepEnded {
                    changed,
                    task_finished: false,
                    batch_open: 0,
                });
            };
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
            Ok(AgentWritten::StepEnded {
                changed,
                task_finished: finished,
                batch_open,
            })
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
