//! Releases: the `releases` table and its state machine. A release is created
//! together with its tasks (see `tasks::insert_all`), and every change of state
//! is a compare-and-set on a locked row, so that the driver can repeat a step
//! after a restart without doing it twice, and two servers cannot both move it.

use super::convert::{millis, optional_time, time, unsigned};
use super::failure::{already_exists, insert_with_parent_failed, not_found, scoped};
use super::query::{self, Db};
use super::{apps, deployments, groups, tasks};
use crate::{ReleaseRecord, StoreError, StoreResult, TaskRecord, EXEC_KIND};
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use wharf_domain::release::{PauseMode, ReleaseState};

/// The states of a release that is not finished, as an SQL list. The partial
/// unique index `releases_one_active_per_group` has the same list.
pub(super) const ACTIVE_STATES: &str = crate::sqlite::releases::ACTIVE_STATES;

const RELEASE_COLUMNS: &str = "id, app, group_name, deployment, state, pause, batch_count, \
     batch_interval_secs, max_failures, rollback_on_failure, kind, rollback_of, \
     continued_through, created_at, started_at, finished_at, message";

/// Reads a row of [`RELEASE_COLUMNS`].
fn release(row: &Row) -> StoreResult<ReleaseRecord> {
    let id: String = row.try_get(0)?;
    let state: String = row.try_get(4)?;
    let state = ReleaseState::parse(&state).ok_or_else(|| {
        StoreError::Corrupt(format!("release {id}: {state:?} is not a release state"))
    })?;
    let pause: String = row.try_get(5)?;
    let pause = PauseMode::parse(&pause)
        .map_err(|err| StoreError::Corrupt(format!("release {id}: {}", err.message)))?;
    Ok(ReleaseRecord {
        state,
        pause,
        app: row.try_get(1)?,
        group: row.try_get(2)?,
        // An exec has no deployment; its record says so with an empty name.
        deployment: row.try_get::<_, Option<String>>(3)?.unwrap_or_default(),
        batch_count: unsigned("releases.batch_count", row.try_get(6)?)?,
        batch_interval_secs: unsigned("releases.batch_interval_secs", row.try_get(7)?)?,
        max_failures: unsigned("releases.max_failures", row.try_get(8)?)?,
        rollback_on_failure: row.try_get(9)?,
        kind: row.try_get(10)?,
        rollback_of: row.try_get(11)?,
        continued_through: unsigned("releases.continued_through", row.try_get(12)?)?,
        created_at: time("releases.created_at", row.try_get(13)?)?,
        started_at: optional_time("releases.started_at", row.try_get(14)?)?,
        finished_at: optional_time("releases.finished_at", row.try_get(15)?)?,
        message: row.try_get(16)?,
        id,
    })
}

/// Fails with `NotFound` unless a release has this id.
pub(super) async fn require(tx: &impl Db, id: &str) -> StoreResult<()> {
    let sql = "SELECT EXISTS (SELECT 1 FROM releases WHERE id = $1)";
    if query::exists(tx, sql, &[&id]).await? {
        Ok(())
    } else {
        Err(not_found("release", id))
    }
}

/// Refuses with `ActiveRelease` if the group has a release that is not terminal.
async fn refuse_if_active(tx: &impl Db, app: &str, group: &str) -> StoreResult<()> {
    let sql = format!(
        "SELECT id FROM releases WHERE app = $1 AND group_name = $2 AND state IN {ACTIVE_STATES} \
         ORDER BY created_at, id LIMIT 1"
    );
    match query::optional(tx, &sql, &[&app, &group]).await? {
        None => Ok(()),
        Some(row) => Err(StoreError::ActiveRelease {
            group: scoped(app, group),
            release: row.try_get(0)?,
        }),
    }
}

/// Creates a release and its tasks. The group, the deployment and the release a
/// rollback undoes must exist, and the group must have no active release. The
/// group's row is locked first: two creates for one group (from this server or
/// another) take turns, and the second finds the first one's release active
/// rather than failing on the unique index.
pub(super) async fn create(
    tx: &impl Db,
    release: &ReleaseRecord,
    release_tasks: &[TaskRecord],
) -> StoreResult<()> {
    groups::lock_for_release(tx, &release.app, &release.group).await?;
    let exec = release.kind == EXEC_KIND;
    if exec != release.deployment.is_empty() {
        return Err(StoreError::Conflict(format!(
            "release {}: an exec has no deployment and every other release has one",
            release.id
        )));
    }
    if !exec {
        deployments::require(tx, &release.app, &release.deployment).await?;
    }
    if let Some(failed) = &release.rollback_of {
        require(tx, failed).await?;
    }
    refuse_if_active(tx, &release.app, &release.group).await?;
    if require(tx, &release.id).await.is_ok() {
        return Err(already_exists("release", &release.id));
    }
    if let Some(task) = release_tasks.iter().find(|t| t.release_id != release.id) {
        return Err(StoreError::Conflict(format!(
            "the task of instance {} belongs to release {}, not {}",
            task.instance_id, task.release_id, release.id
        )));
    }
    let r = release;
    query::execute(
        tx,
        "INSERT INTO releases (id, app, group_name, deployment, state, pause, batch_count, \
         batch_interval_secs, max_failures, rollback_on_failure, kind, rollback_of, \
         continued_through, created_at, started_at, finished_at, message) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        &[
            &r.id,
            &r.app,
            &r.group,
            &(!r.deployment.is_empty()).then_some(&r.deployment),
            &r.state.as_str(),
            &r.pause.as_str(),
            &i64::from(r.batch_count),
            &i64::from(r.batch_interval_secs),
            &i64::from(r.max_failures),
            &r.rollback_on_failure,
            &r.kind,
            &r.rollback_of,
            &i64::from(r.continued_through),
            &millis(r.created_at),
            &r.started_at.map(millis),
            &r.finished_at.map(millis),
            &r.message,
        ],
    )
    .await
    // The group is locked and releases are never deleted, so a foreign key
    // that fails here is the deployment's, deleted since it was checked.
    .map_err(|err| {
        insert_with_parent_failed(
            err,
            ("release", &r.id),
            Some(("deployment", &scoped(&r.app, &r.deployment))),
        )
    })?;
    tasks::insert_all(tx, release_tasks).await
}

pub(super) async fn fetch(tx: &impl Db, id: &str) -> StoreResult<ReleaseRecord> {
    let sql = format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE id = $1");
    let row = query::optional(tx, &sql, &[&id])
        .await?
        .ok_or_else(|| not_found("release", id))?;
    release(&row)
}

/// As [`fetch`], and locks the row until the transaction ends.
async fn fetch_for_update(tx: &impl Db, id: &str) -> StoreResult<ReleaseRecord> {
    let sql = format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE id = $1 FOR NO KEY UPDATE");
    let row = query::optional(tx, &sql, &[&id])
        .await?
        .ok_or_else(|| not_found("release", id))?;
    release(&row)
}

/// Releases, newest first (ties by id), of one application and, within it, one
/// group when they are given; only execs with `execs`, else none of them.
pub(super) async fn list(
    tx: &impl Db,
    app: Option<&str>,
    group: Option<&str>,
    limit: u32,
    execs: bool,
) -> StoreResult<Vec<ReleaseRecord>> {
    match (app, group) {
        (Some(app), Some(group)) => groups::require(tx, app, group).await?,
        (Some(app), None) => apps::require(tx, app).await?,
        (None, _) => {}
    }
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM releases \
         WHERE ($1::text IS NULL OR app = $1) AND ($2::text IS NULL OR group_name = $2) \
         AND (kind = 'exec') = $4 \
         ORDER BY created_at DESC, id LIMIT $3"
    );
    query::all(tx, &sql, &[&app, &group, &i64::from(limit), &execs])
        .await?
        .iter()
        .map(release)
        .collect()
}

/// Releases that are not terminal, oldest first.
pub(super) async fn list_active(tx: &impl Db) -> StoreResult<Vec<ReleaseRecord>> {
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM releases WHERE state IN {ACTIVE_STATES} \
         ORDER BY created_at, id"
    );
    query::all(tx, &sql, &[])
        .await?
        .iter()
        .map(release)
        .collect()
}

/// Moves a release from one of `from` to `to`; `Ok(false)` when its state is not
/// in `from`. Entering Running sets `started_at` unless it is set, entering a
/// terminal state sets `finished_at`, and a message replaces the one stored.
pub(super) async fn transition(
    tx: &impl Db,
    id: &str,
    from: &[ReleaseState],
    to: ReleaseState,
    message: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let release = fetch_for_update(tx, id).await?;
    if !from.contains(&release.state) {
        return Ok(false);
    }
    if release.state.is_terminal() && !to.is_terminal() {
        // Only a terminal release made active again can meet the one-active
        // index: refused by name, as `create` does.
        groups::lock_for_release(tx, &release.app, &release.group).await?;
        refuse_if_active(tx, &release.app, &release.group).await?;
    }
    let started = to == ReleaseState::Running;
    let finished = to.is_terminal();
    let moved = query::execute(
        tx,
        "UPDATE releases SET state = $1, \
         started_at = CASE WHEN $2 THEN COALESCE(started_at, $4) ELSE started_at END, \
         finished_at = CASE WHEN $3 THEN $4 ELSE finished_at END, \
         message = COALESCE($5, message) \
         WHERE id = $6",
        &[
            &to.as_str(),
            &started,
            &finished,
            &millis(now),
            &message,
            &id,
        ],
    )
    .await?;
    Ok(moved == 1)
}

/// `continue`: Paused -> Running, raising `continued_through` (never lowering
/// it). `Ok(false)` when the release is not paused.
pub(super) async fn resume(tx: &impl Db, id: &str, continued_through: u32) -> StoreResult<bool> {
    require(tx, id).await?;
    let moved = query::execute(
        tx,
        "UPDATE releases SET state = 'running', \
         continued_through = GREATEST(continued_through, $1) WHERE id = $2 AND state = 'paused'",
        &[&i64::from(continued_through), &id],
    )
    .await?;
    Ok(moved == 1)
}

/// The ids of the releases that name a group (`deployment` None) or a deployment,
/// newest first: what keeps it from being deleted.
pub(super) async fn naming(
    tx: &impl Db,
    app: &str,
    group: Option<&str>,
    deployment: Option<&str>,
) -> StoreResult<Vec<String>> {
    query::all(
        tx,
        "SELECT id FROM releases WHERE app = $1 \
         AND ($2::text IS NULL OR group_name = $2) AND ($3::text IS NULL OR deployment = $3) \
         ORDER BY created_at DESC, id",
        &[&app, &group, &deployment],
    )
    .await?
    .iter()
    .map(|row| Ok(row.try_get(0)?))
    .collect()
}
