//! Releases: the `releases` table and its state machine. A release is created
//! together with its tasks (see `tasks::insert`), and every change of state is a
//! compare-and-set, so that the driver can repeat a step after a restart without
//! doing it twice. Errors name a release by its id and a group as `app/group`.

use super::convert::{boolean, millis, optional_time, time, unsigned};
use super::failure::{already_exists, not_found, scoped};
use super::{apps, deployments, groups, tasks};
use crate::{ReleaseRecord, StoreError, StoreResult, TaskRecord, EXEC_KIND};
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use wharf_domain::release::{PauseMode, ReleaseState};

/// The states of a release that is not finished, as an SQL list. The partial
/// unique index `releases_one_active_per_group` has the same list.
pub(super) const ACTIVE_STATES: &str = "('pending', 'running', 'paused')";

const RELEASE_COLUMNS: &str = "id, app, group_name, deployment, state, pause, batch_count, \
     batch_interval_secs, max_failures, rollback_on_failure, kind, rollback_of, \
     continued_through, created_at, started_at, finished_at, message";

#[derive(sqlx::FromRow)]
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
pub(super) async fn require(conn: &mut SqliteConnection, id: &str) -> StoreResult<()> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM releases WHERE id = ?)")
        .bind(id)
        .fetch_one(conn)
        .await?;
    if exists {
        Ok(())
    } else {
        Err(not_found("release", id))
    }
}

/// The oldest release of a group that is not terminal, if any.
async fn active_in_group(
    conn: &mut SqliteConnection,
    app: &str,
    group: &str,
) -> StoreResult<Option<String>> {
    let sql = format!(
        "SELECT id FROM releases WHERE app = ? AND group_name = ? AND state IN {ACTIVE_STATES} \
         ORDER BY created_at, id LIMIT 1"
    );
    Ok(sqlx::query_scalar(&sql)
        .bind(app)
        .bind(group)
        .fetch_optional(conn)
        .await?)
}

/// Refuses with `ActiveRelease` if the group has a release that is not terminal.
async fn refuse_if_active(conn: &mut SqliteConnection, app: &str, group: &str) -> StoreResult<()> {
    match active_in_group(conn, app, group).await? {
        None => Ok(()),
        Some(release) => Err(StoreError::ActiveRelease {
            group: scoped(app, group),
            release,
        }),
    }
}

/// Maps a unique violation of the one-active-release index (reached only past
/// the explicit check, i.e. by another writer of the file) to `ActiveRelease`.
async fn active_violation(
    conn: &mut SqliteConnection,
    err: sqlx::Error,
    app: &str,
    group: &str,
) -> StoreError {
    let unique = matches!(&err, sqlx::Error::Database(db) if db.is_unique_violation());
    if !unique {
        return StoreError::Backend(err);
    }
    match refuse_if_active(conn, app, group).await {
        Err(refusal) => refusal,
        Ok(()) => StoreError::Backend(err),
    }
}

/// Creates a release and its tasks. The group, the deployment and the release a
/// rollback undoes must exist, and the group must have no active release.
pub(super) async fn create(
    conn: &mut SqliteConnection,
    release: &ReleaseRecord,
    release_tasks: &[TaskRecord],
) -> StoreResult<()> {
    groups::require(conn, &release.app, &release.group).await?;
    let exec = release.kind == EXEC_KIND;
    if exec != release.deployment.is_empty() {
        return Err(StoreError::Conflict(format!(
            "release {}: an exec has no deployment and every other release has one",
            release.id
        )));
    }
    if !exec {
        deployments::require(conn, &release.app, &release.deployment).await?;
    }
    if let Some(failed) = &release.rollback_of {
        require(conn, failed).await?;
    }
    refuse_if_active(conn, &release.app, &release.group).await?;
    if require(conn, &release.id).await.is_ok() {
        return Err(already_exists("release", &release.id));
    }
    if let Some(task) = release_tasks.iter().find(|t| t.release_id != release.id) {
        return Err(StoreError::Conflict(format!(
            "the task of instance {} belongs to release {}, not {}",
            task.instance_id, task.release_id, release.id
        )));
    }
    let inserted = insert(conn, release).await;
    if let Err(err) = inserted {
        return Err(active_violation(conn, err, &release.app, &release.group).await);
    }
    for task in release_tasks {
        tasks::insert(conn, task).await?;
    }
    Ok(())
}

async fn insert(conn: &mut SqliteConnection, r: &ReleaseRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO releases (id, app, group_name, deployment, state, pause, batch_count, \
         batch_interval_secs, max_failures, rollback_on_failure, kind, rollback_of, \
         continued_through, created_at, started_at, finished_at, message) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&r.id)
    .bind(&r.app)
    .bind(&r.group)
    .bind((!r.deployment.is_empty()).then_some(&r.deployment))
    .bind(r.state.as_str())
    .bind(r.pause.as_str())
    .bind(i64::from(r.batch_count))
    .bind(i64::from(r.batch_interval_secs))
    .bind(i64::from(r.max_failures))
    .bind(i64::from(r.rollback_on_failure))
    .bind(&r.kind)
    .bind(&r.rollback_of)
    .bind(i64::from(r.continued_through))
    .bind(millis(r.created_at))
    .bind(r.started_at.map(millis))
    .bind(r.finished_at.map(millis))
    .bind(&r.message)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn fetch(conn: &mut SqliteConnection, id: &str) -> StoreResult<ReleaseRecord> {
    let sql = format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE id = ?");
    sqlx::query_as::<_, ReleaseRow>(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| not_found("release", id))?
        .try_into()
}

/// Releases, newest first (ties by id), of one application and, within it, one
/// group when they are given; only execs with `execs`, else none of them. A named
/// application or group must exist; a group without an application matches that
/// group name in every application.
pub(super) async fn list(
    conn: &mut SqliteConnection,
    app: Option<&str>,
    group: Option<&str>,
    limit: u32,
    execs: bool,
) -> StoreResult<Vec<ReleaseRecord>> {
    match (app, group) {
        (Some(app), Some(group)) => groups::require(conn, app, group).await?,
        (Some(app), None) => apps::require(conn, app).await?,
        (None, _) => {}
    }
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM releases \
         WHERE (?1 IS NULL OR app = ?1) AND (?2 IS NULL OR group_name = ?2) \
         AND (kind = 'exec') = ?4 \
         ORDER BY created_at DESC, id LIMIT ?3"
    );
    sqlx::query_as::<_, ReleaseRow>(&sql)
        .bind(app)
        .bind(group)
        .bind(i64::from(limit))
        .bind(execs)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(ReleaseRecord::try_from)
        .collect()
}

/// Releases that are not terminal, oldest first.
pub(super) async fn list_active(conn: &mut SqliteConnection) -> StoreResult<Vec<ReleaseRecord>> {
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM releases WHERE state IN {ACTIVE_STATES} \
         ORDER BY created_at, id"
    );
    sqlx::query_as::<_, ReleaseRow>(&sql)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(ReleaseRecord::try_from)
        .collect()
}

/// Moves a release from one of `from` to `to`; `Ok(false)` when its state is not
/// in `from`. Entering Running sets `started_at` unless it is set, entering a
/// terminal state sets `finished_at`, and a message replaces the one stored.
pub(super) async fn transition(
    conn: &mut SqliteConnection,
    id: &str,
    from: &[ReleaseState],
    to: ReleaseState,
    message: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let release = fetch(conn, id).await?;
    if !from.contains(&release.state) {
        return Ok(false);
    }
    let started = to == ReleaseState::Running;
    let finished = to.is_terminal();
    let moved = sqlx::query(
        "UPDATE releases SET state = ?1, \
         started_at = CASE WHEN ?2 THEN COALESCE(started_at, ?4) ELSE started_at END, \
         finished_at = CASE WHEN ?3 THEN ?4 ELSE finished_at END, \
         message = COALESCE(?5, message) \
         WHERE id = ?6 AND state = ?7",
    )
    .bind(to.as_str())
    .bind(started)
    .bind(finished)
    .bind(millis(now))
    .bind(message)
    .bind(id)
    .bind(release.state.as_str())
    .execute(&mut *conn)
    .await;
    match moved {
        Ok(done) => Ok(done.rows_affected() == 1),
        // Only a terminal release made active again can hit the index.
        Err(err) => Err(active_violation(conn, err, &release.app, &release.group).await),
    }
}

/// `continue`: Paused -> Running, raising `continued_through` (never lowering
/// it). `Ok(false)` when the release is not paused.
pub(super) async fn resume(
    conn: &mut SqliteConnection,
    id: &str,
    continued_through: u32,
) -> StoreResult<bool> {
    require(conn, id).await?;
    let moved = sqlx::query(
        "UPDATE releases SET state = 'running', \
         continued_through = MAX(continued_through, ?) WHERE id = ? AND state = 'paused'",
    )
    .bind(i64::from(continued_through))
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

/// The ids of the releases that name a group (`deployment` None) or a deployment,
/// newest first: what keeps it from being deleted.
pub(super) async fn naming(
    conn: &mut SqliteConnection,
    app: &str,
    group: Option<&str>,
    deployment: Option<&str>,
) -> StoreResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM releases WHERE app = ?1 \
         AND (?2 IS NULL OR group_name = ?2) AND (?3 IS NULL OR deployment = ?3) \
         ORDER BY created_at DESC, id",
    )
    .bind(app)
    .bind(group)
    .bind(deployment)
    .fetch_all(conn)
    .await?)
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
