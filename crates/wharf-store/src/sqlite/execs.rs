//! Group execs: a row of `releases` with kind `exec` and no deployment, plus its
//! row of `execs` (the script, its timeout and user). Tasks and steps are the
//! release's, so everything else about an exec is done by `releases`, `tasks`
//! and `steps`.

use super::convert::unsigned;
use super::failure::not_found;
use super::{query, releases};
use crate::{ExecRecord, ReleaseRecord, StoreError, StoreResult, TaskRecord, EXEC_KIND};
use rusqlite::{params, Connection};

/// Creates the release row and tasks (as `releases::create`, with its refusals)
/// and the exec row.
pub(super) fn create(
    conn: &Connection,
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
    releases::create(conn, release, tasks)?;
    query::execute(
        conn,
        "INSERT INTO execs (release_id, script, timeout_secs, as_user) VALUES (?, ?, ?, ?)",
        params![
            exec.release_id,
            exec.script,
            i64::from(exec.timeout_secs),
            exec.as_user
        ],
    )?;
    Ok(())
}

/// An exec and its release row; `NotFound` (kind `exec`) when `id` is no exec.
pub(super) fn fetch(conn: &Connection, id: &str) -> StoreResult<(ReleaseRecord, ExecRecord)> {
    let row: Option<(String, i64, Option<String>)> = query::optional(
        conn,
        "SELECT script, timeout_secs, as_user FROM execs WHERE release_id = ?",
        [id],
        |row| row.try_into(),
    )?;
    let Some((script, timeout_secs, as_user)) = row else {
        return Err(not_found("exec", id));
    };
    let release = releases::fetch(conn, id)?;
    let exec = ExecRecord {
        release_id: release.id.clone(),
        script,
        timeout_secs: unsigned("execs.timeout_secs", timeout_secs)?,
        as_user,
    };
    Ok((release, exec))
}
