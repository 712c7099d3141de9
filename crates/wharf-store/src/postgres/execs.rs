//! Group execs: a row of `releases` with kind `exec` and no deployment, plus its
//! row of `execs`. Tasks and steps are the release's.

use super::convert::unsigned;
use super::failure::not_found;
use super::query::{self, Db};
use super::releases;
use crate::{ExecRecord, ReleaseRecord, StoreError, StoreResult, TaskRecord, EXEC_KIND};

/// Creates the release row and tasks (as `releases::create`, with its refusals)
/// and the exec row.
pub(super) async fn create(
    tx: &impl Db,
    release: &ReleaseRecord,
    exec: &ExecRecord,
    tasks: &[TaskRecord],
) -> StoreResult<()> {
    if release.kind != EXEC_KIND || exec.release_id != release.id {
        return Err(StoreError::Conflict(format!(
            "exec {}: its release must have kind {EXEC_KIND:?} and the same id",
            exec.release_id
        )));
    }
    releases::create(tx, release, tasks).await?;
    query::execute(
        tx,
        "INSERT INTO execs (release_id, script, timeout_secs, as_user) VALUES ($1, $2, $3, $4)",
        &[
            &exec.release_id,
            &exec.script,
            &i64::from(exec.timeout_secs),
            &exec.as_user,
        ],
    )
    .await?;
    Ok(())
}

/// An exec and its release row; `NotFound` (kind `exec`) when `id` is no exec.
pub(super) async fn fetch(tx: &impl Db, id: &str) -> StoreResult<(ReleaseRecord, ExecRecord)> {
    let row = query::optional(
        tx,
        "SELECT script, timeout_secs, as_user FROM execs WHERE release_id = $1",
        &[&id],
    )
    .await?
    .ok_or_else(|| not_found("exec", id))?;
    let release = releases::fetch(tx, id).await?;
    let exec = ExecRecord {
        release_id: release.id.clone(),
        script: row.try_get(0)?,
        timeout_secs: unsigned("execs.timeout_secs", row.try_get(1)?)?,
        as_user: row.try_get(2)?,
    };
    Ok((release, exec))
}
