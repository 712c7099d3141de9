//! Releases: the `releases` table and its state machine. A release is created
//! together with its tasks (see `tasks::insert`), and every change of state is a
//! compare-and-set, so that the driver can repeat a step after a restart without
//! doing it twice. Errors name a release by its id and a group as `app/group`.

use super::convert::{boolean, millis, optional_time, time, unsigned};
use super::failure::{already_exists, is_unique_violation, not_found, scoped};
use super::{apps, deployments, groups, query, tasks};
use crate::{ReleaseRecord, StoreError, StoreResult, TaskRecord, EXEC_KIND};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Row};
use wharf_domain::release::{PauseMode, ReleaseState};

/// The states of a release that is not finished, as an SQL list. The partial
/// unique index `releases_one_active_per_group` has the same list.
pub(crate) const ACTIVE_STATES: &str = "('pending', 'running', 'paused')";

const RELEASE_COLUMNS: &str = "id, app, group_name, deployment, state, pause, batch_count, \
     batch_interval_secs, max_failures, rollback_on_failure, kind, rollback_of, \
     continued_through, created_at, started_at, finished_at, message";

struct ReleaseRow {
    id: String,
    app: String,
    group_name: String,
    deployment: Option<String>,
    state: String,
    pause: String,
    batch_count: i64,
    batch_interval_secs: i64,
    max_failures: i64,
    rollback_on_failure: i64,
    kind: String,
    rollback_of: Option<String>,
    continued_through: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    message: Option<String>,
}

impl ReleaseRow {
    /// Reads a row of [`RELEASE_COLUMNS`].
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(ReleaseRow {
            id: row.get(0)?,
            app: row.get(1)?,
            group_name: row.get(2)?,
            deployment: row.get(3)?,
            state: row.get(4)?,
            pause: row.get(5)?,
            batch_count: row.get(6)?,
            batch_interval_secs: row.get(7)?,
            max_failures: row.get(8)?,
            rollback_on_failure: row.get(9)?,
            kind: row.get(10)?,
            rollback_of: row.get(11)?,
            continued_through: row.get(12)?,
            created_at: row.get(13)?,
            started_at: row.get(14)?,
            finished_at: row.get(15)?,
            message: row.get(16)?,
        })
    }
}

impl TryFrom<ReleaseRow> for ReleaseRecord {
    type Error = StoreError;

    fn try_from(row: ReleaseRow) -> StoreResult<Self> {
        let state = ReleaseState::parse(&row.state).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "release {}: {:?} is not a release state",
                row.id, row.state
            ))
        })?;
        let pause = PauseMode::parse(&row.pause)
            .map_err(|err| StoreError::Corrupt(format!("release {}: {}", row.id, err.message)))?;
        Ok(ReleaseRecord {
            state,
            pause,
            batch_count: unsigned("releases.batch_count", row.batch_count)?,
            batch_interval_secs: unsigned("releases.batch_interval_secs", row.batch_interval_secs)?,
            max_failures: unsigned("releases.max_failures", row.max_failures)?,
            rollback_on_failure: boolean("releases.rollback_on_failure", row.rollback_on_failure)?,
            continued_through: unsigned("releases.continued_through", row.continued_through)?,
            created_at: time("releases.created_at", row.created_at)?,
            started_at: optional_time("releases.started_at", row.started_at)?,
            finished_at: optional_time("releases.finished_at", row.finished_at)?,
            id: row.id,
            app: row.app,
            group: row.group_name,
            // An exec has no deployment; its record says so with an empty name.
            deployment: row.deployment.unwrap_or_default(),
            kind: row.kind,
            rollback_of: row.rollback_of,
            message: row.message,
        })
    }
}

/// Fails with `NotFound` unless a release has this id.
pub(super) fn require(conn: &Connection, id: &str) -> StoreResult<()> {
    let exists: bool = query::one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM releases WHERE id = ?)",
        [id],
        |row| row.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(not_found("release", id))
    }
}

/// The oldest release of a group that is not terminal, if any.
fn active_in_group(conn: &Connection, app: &str, group: &str) -> StoreResult<Option<String>> {
    let sql = format!(
        "SELECT id FROM releases WHERE app = ? AND group_name = ? AND state IN {ACTIVE_STATES} \
         ORDER BY created_at, id LIMIT 1"
    );
    query::optional(conn, &sql, params![app, group], |row| row.get(0))
}

/// Refuses with `ActiveRelease` if the group has a release that is not terminal.
fn refuse_if_active(conn: &Connection, app: &str, group: &str) -> StoreResult<()> {
    match active_in_group(conn, app, group)? {
        None => Ok(()),
        Some(release) => Err(StoreError::ActiveRelease {
            group: scoped(app, group),
            release,
        }),
    }
}

/// Maps a unique violation of the one-active-release index (reached only past
/// the explicit check, i.e. by another writer of the file) to `ActiveRelease`.
fn active_violation(conn: &Connection, err: rusqlite::Error, app: &str, group: &str) -> StoreError {
    let unique = is_unique_violation(&err);
    if !unique {
        return StoreError::Backend(err);
    }
    match refuse_if_active(conn, app, group) {
        Err(refusal) => refusal,
        Ok(()) => StoreError::Backend(err),
    }
}

/// Creates a release and its tasks. The group, the deployment and the release a
/// rollback undoes must exist, and the group must have no active release.
pub(super) fn create(
    conn: &Connection,
    release: &ReleaseRecord,
    release_tasks: &[TaskRecord],
) -> StoreResult<()> {
    groups::require(conn, &release.app, &release.group)?;
    let exec = release.kind == EXEC_KIND;
    if exec != release.deployment.is_empty() {
        return Err(StoreError::Conflict(format!(
            "release {}: an exec has no deployment and every other release has one",
            release.id
        )));
    }
    if !exec {
        deployments::require(conn, &release.app, &release.deployment)?;
    }
    if let Some(failed) = &release.rollback_of {
        require(conn, failed)?;
    }
    refuse_if_active(conn, &release.app, &release.group)?;
    if require(conn, &release.id).is_ok() {
        return Err(already_exists("release", &release.id));
    }
    if let Some(task) = release_tasks.iter().find(|t| t.release_id != release.id) {
        return Err(StoreError::Conflict(format!(
            "the task of instance {} belongs to release {}, not {}",
            task.instance_id, task.release_id, release.id
        )));
    }
    let inserted = insert(conn, release);
    if let Err(err) = inserted {
        return Err(active_violation(conn, err, &release.app, &release.group));
    }
    for task in release_tasks {
        tasks::insert(conn, task)?;
    }
    Ok(())
}

fn insert(conn: &Connection, r: &ReleaseRecord) -> Result<(), rusqlite::Error> {
    query::execute(
        conn,
        "INSERT INTO releases (id, app, group_name, deployment, state, pause, batch_count, \
         batch_interval_secs, max_failures, rollback_on_failure, kind, rollback_of, \
         continued_through, created_at, started_at, finished_at, message) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            r.id,
            r.app,
            r.group,
            (!r.deployment.is_empty()).then_some(&r.deployment),
            r.state.as_str(),
            r.pause.as_str(),
            i64::from(r.batch_count),
            i64::from(r.batch_interval_secs),
            i64::from(r.max_failures),
            i64::from(r.rollback_on_failure),
            r.kind,
            r.rollback_of,
            i64::from(r.continued_through),
            millis(r.created_at),
            r.started_at.map(millis),
            r.finished_at.map(millis),
            r.message,
        ],
    )?;
    Ok(())
}

pub(super) fn fetch(conn: &Connection, id: &str) -> StoreResult<ReleaseRecord> {
    let sql = format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE id = ?");
    query::optional(conn, &sql, [id], ReleaseRow::read)?
        .ok_or_else(|| not_found("release", id))?
        .try_into()
}

/// Releases, newest first (ties by id), of one application and, within it, one
/// group when they are given; only execs with `execs`, else none of them. A named
/// application or group must exist; a group without an application matches that
/// group name in every application.
pub(super) fn list(
    conn: &Connection,
    app: Option<&str>,
    group: Option<&str>,
    limit: u32,
    execs: bool,
) -> StoreResult<Vec<ReleaseRecord>> {
    match (app, group) {
        (Some(app), Some(group)) => groups::require(conn, app, group)?,
        (Some(app), None) => apps::require(conn, app)?,
        (None, _) => {}
    }
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM releases \
         WHERE (?1 IS NULL OR app = ?1) AND (?2 IS NULL OR group_name = ?2) \
         AND (kind = 'exec') = ?4 \
         ORDER BY created_at DESC, id LIMIT ?3"
    );
    query::all(
        conn,
        &sql,
        params![app, group, i64::from(limit), execs],
        ReleaseRow::read,
    )?
    .into_iter()
    .map(ReleaseRecord::try_from)
    .collect()
}

/// Releases that are not terminal, oldest first.
pub(super) fn list_active(conn: &Connection) -> StoreResult<Vec<ReleaseRecord>> {
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM releases WHERE state IN {ACTIVE_STATES} \
         ORDER BY created_at, id"
    );
    query::all(conn, &sql, [], ReleaseRow::read)?
        .into_iter()
        .map(ReleaseRecord::try_from)
        .collect()
}

/// Moves a release from one of `from` to `to`; `Ok(false)` when its state is not
/// in `from`. Entering Running sets `started_at` unless it is set, entering a
/// terminal state sets `finished_at`, and a message replaces the one stored.
pub(super) fn transition(
    conn: &Connection,
    id: &str,
    from: &[ReleaseState],
    to: ReleaseState,
    message: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let release = fetch(conn, id)?;
    if !from.contains(&release.state) {
        return Ok(false);
    }
    let started = to == ReleaseState::Running;
    let finished = to.is_terminal();
    let moved = query::execute(
        conn,
        "UPDATE releases SET state = ?1, \
         started_at = CASE WHEN ?2 THEN COALESCE(started_at, ?4) ELSE started_at END, \
         finished_at = CASE WHEN ?3 THEN ?4 ELSE finished_at END, \
         message = COALESCE(?5, message) \
         WHERE id = ?6 AND state = ?7",
        params![
            to.as_str(),
            started,
            finished,
            millis(now),
            message,
            id,
            release.state.as_str()
        ],
    );
    match moved {
        Ok(done) => Ok(done == 1),
        // Only a terminal release made active again can hit the index.
        Err(err) => Err(active_violation(conn, err, &release.app, &release.group)),
    }
}

/// `continue`: Paused -> Running, raising `continued_through` (never lowering
/// it). `Ok(false)` when the release is not paused.
pub(super) fn resume(conn: &Connection, id: &str, continued_through: u32) -> StoreResult<bool> {
    require(conn, id)?;
    let moved = query::execute(
        conn,
        "UPDATE releases SET state = 'running', \
         continued_through = MAX(continued_through, ?) WHERE id = ? AND state = 'paused'",
        params![i64::from(continued_through), id],
    )?;
    Ok(moved == 1)
}

/// The ids of the releases that name a group (`deployment` None) or a deployment,
/// newest first: what keeps it from being deleted.
pub(super) fn naming(
    conn: &Connection,
    app: &str,
    group: Option<&str>,
    deployment: Option<&str>,
) -> StoreResult<Vec<String>> {
    query::all(
        conn,
        "SELECT id FROM releases WHERE app = ?1 \
         AND (?2 IS NULL OR group_name = ?2) AND (?3 IS NULL OR deployment = ?3) \
         ORDER BY created_at DESC, id",
        params![app, group, deployment],
        |row| row.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_states_are_the_non_terminal_ones() {
        let listed: Vec<String> = ReleaseState::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        assert_eq!(ACTIVE_STATES, format!("({})", listed.join(", ")));
    }
}
