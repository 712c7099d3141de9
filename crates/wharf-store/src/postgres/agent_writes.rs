//! [`Store::agent_writes`](crate::Store::agent_writes) for PostgreSQL: many
//! agents' step reports (a task's first begin also claims the task) in one
//! transaction, so that a batch costs one commit (one WAL flush) rather than one
//! per report. Each write runs inside its own savepoint: PostgreSQL aborts a
//! whole transaction at a failed statement, so any write, even one statement,
//! is undone alone through its savepoint when it is refused, and the others
//! still commit. A failure that dooms the whole transaction (a serialization
//! failure or deadlock) is not undone alone: it fails the batch, which the
//! caller's transaction loop runs again whole.

use super::failure::{not_found, retryable};
use super::query::{self, Db};
use super::{steps, tasks};
use crate::{AgentWrite, AgentWritten, StoreResult, TaskState};
use std::collections::HashMap;
use wharf_domain::release::StepName;

/// The state and batch (as stored) of each task the batch writes to, by
/// (release, instance): read as [`lock_tasks`] locks them, and kept up to date
/// as the batch's own writes move them, so that no write reads its task again.
type Known = HashMap<(String, String), (String, i64)>;

/// Writes `writes` in order inside `tx`; answers each.
pub(super) async fn write_all(
    tx: &impl Db,
    writes: &[AgentWrite],
) -> StoreResult<Vec<StoreResult<AgentWritten>>> {
    let mut known = lock_tasks(tx, writes).await?;
    let mut results = Vec::with_capacity(writes.len());
    // Whether the savepoint of the write before is still there (it went well):
    // it is released as the next one is taken, in one round trip, and the
    // commit releases the last one.
    let mut released = true;
    for write in writes {
        let savepoint = if released {
            "SAVEPOINT agent_write"
        } else {
            "RELEASE SAVEPOINT agent_write; SAVEPOINT agent_write"
        };
        // The savepoint goes out first and the write's statements right behind
        // it, without waiting for its answer: polled in this order, tokio-postgres
        // sends them in this order on the one connection.
        let (release_id, instance_id) = key_of(write);
        let key = (release_id.to_owned(), instance_id.to_owned());
        let before = known.get(&key).cloned();
        let (taken, written) = tokio::join!(
            tx.batch_execute(savepoint),
            write_one(tx, write, &mut known)
        );
        taken?;
        match written {
            Err(err) if retryable(&err) => return Err(err),
            Err(err) => {
                tx.batch_execute(
                    "ROLLBACK TO SAVEPOINT agent_write; RELEASE SAVEPOINT agent_write",
                )
                .await?;
                // What the write changed of its task is undone with it.
                if let Some(before) = before {
                    known.insert(key, before);
                }
                released = true;
                results.push(Err(err));
            }
            Ok(written) => {
                released = false;
                results.push(Ok(written));
            }
        }
    }
    Ok(results)
}

/// Locks the tasks the writes are about, in key order, before any of them is
/// written. Two servers' batches (each in the order its agents reported) would
/// otherwise lock the same tasks in different orders as they go, and deadlock:
/// PostgreSQL finds that only after a second and fails one batch, which then runs
/// again. Locked up front in one order, the later batch waits for the earlier.
async fn lock_tasks(tx: &impl Db, writes: &[AgentWrite]) -> StoreResult<Known> {
    let mut keys: Vec<(&str, &str)> = writes.iter().map(key_of).collect();
    keys.sort_unstable();
    keys.dedup();
    let (releases, instances): (Vec<&str>, Vec<&str>) = keys.into_iter().unzip();
    query::all(
        tx,
        "SELECT t.release_id, t.instance_id, t.state, t.batch FROM release_tasks t \
         JOIN UNNEST($1::text[], $2::text[]) AS k (release_id, instance_id) \
           ON t.release_id = k.release_id AND t.instance_id = k.instance_id \
         ORDER BY t.release_id, t.instance_id FOR NO KEY UPDATE OF t",
        &[&releases, &instances],
    )
    .await?
    .iter()
    .map(|row| {
        Ok((
            (row.try_get(0)?, row.try_get(1)?),
            (row.try_get(2)?, row.try_get(3)?),
        ))
    })
    .collect()
}

/// The task a write is about: (release, instance).
fn key_of(write: &AgentWrite) -> (&str, &str) {
    match write {
        AgentWrite::StepBegin {
            release_id,
            instance_id,
            ..
        }
        | AgentWrite::StepOutput {
            release_id,
            instance_id,
            ..
        }
        | AgentWrite::StepEnd {
            release_id,
            instance_id,
            ..
        } => (release_id, instance_id),
    }
}

/// The state and batch of the write's task, as the batch knows them; `NotFound`
/// when the release has no task on the instance.
fn state_and_batch(
    known: &Known,
    release_id: &str,
    instance_id: &str,
) -> StoreResult<(TaskState, u32)> {
    let (state, batch) = known
        .get(&(release_id.to_owned(), instance_id.to_owned()))
        .ok_or_else(|| not_found("task", &tasks::name(release_id, instance_id)))?;
    tasks::parse_state_and_batch(release_id, instance_id, state, *batch)
}

/// Records a move of the write's task that the batch itself made.
fn moved(known: &mut Known, release_id: &str, instance_id: &str, to: TaskState) {
    if let Some((state, _)) = known.get_mut(&(release_id.to_owned(), instance_id.to_owned())) {
        *state = to.as_str().to_owned();
    }
}

async fn write_one(
    tx: &impl Db,
    write: &AgentWrite,
    known: &mut Known,
) -> StoreResult<AgentWritten> {
    match write {
        AgentWrite::StepBegin {
            release_id,
            instance_id,
            step,
            now,
        } => {
            let (state, _) = state_and_batch(known, release_id, instance_id)?;
            if state == TaskState::Dispatched {
                if tasks::claim(tx, release_id, instance_id, *now).await? {
                    moved(known, release_id, instance_id, TaskState::Running);
                } else {
                    // Dispatched, but its release is no longer running.
                    crate::refuse_unless_running(state, *step, "begin")?;
                }
            } else {
                crate::refuse_unless_running(state, *step, "begin")?;
            }
            steps::begin(tx, release_id, instance_id, *step, *now).await?;
            Ok(AgentWritten::Recorded)
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
            running_batch(known, release_id, instance_id, *step, "take output")?;
            steps::append_output(
                tx,
                release_id,
                instance_id,
                *step,
                chunk,
                *dropped,
                *keep_bytes,
                *offset,
            )
            .await?;
            Ok(AgentWritten::Recorded)
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
            let batch = running_batch(known, release_id, instance_id, *step, "end")?;
            let changed = steps::finish(
                tx,
                release_id,
                instance_id,
                *step,
                *state,
                *exit_code,
                message.as_deref(),
                *now,
            )
            .await?;
            let mut ended = AgentWritten::StepEnded {
                changed,
                task_finished: false,
                batch_open: 0,
            };
            if changed {
                if let Some(digest) = digest {
                    tasks::set_digest(tx, release_id, instance_id, digest).await?;
                }
            }
            // A report that ends the task begins no next step (refused above).
            if let (true, Some((task_state, reason))) = (changed, task_end) {
                let finished = tasks::finish(
                    tx,
                    release_id,
                    instance_id,
                    *task_state,
                    None,
                    reason.as_deref(),
                    *now,
                )
                .await?;
                if finished {
                    moved(known, release_id, instance_id, *task_state);
                }
                let batch_open = if finished && *task_state == TaskState::Succeeded {
                    tasks::count_open_in_batch(tx, release_id, batch).await?
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
                    if let Some(recorded) =
                        steps::state_of(tx, release_id, instance_id, *step).await?
                    {
                        crate::refuse_begin_after_unchanged_end(*step, recorded, *next)?;
                    }
                }
                steps::begin(tx, release_id, instance_id, *next, *now).await?;
            }
            Ok(ended)
        }
    }
}

/// The batch of the instance's task in the release, if that task is running;
/// see [`AgentWrite`] for the refusals.
fn running_batch(
    known: &Known,
    release_id: &str,
    instance_id: &str,
    step: StepName,
    verb: &str,
) -> StoreResult<u32> {
    let (state, batch) = state_and_batch(known, release_id, instance_id)?;
    crate::refuse_unless_running(state, step, verb)?;
    Ok(batch)
}
