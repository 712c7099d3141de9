//! Application groups and their members: the `app_groups` and `group_members`
//! tables. Errors name a group as `app/group`.

use super::convert::{millis, time, unsigned};
use super::failure::{
    counted, delete_failed, insert_with_parent_failed, named, not_found, refuse_if_used, scoped,
};
use super::instances::{instance, INSTANCE_COLUMNS, INSTANCE_COLUMN_COUNT};
use super::query::{self, Db};
use super::{apps, deployments, instances, releases};
use crate::{GroupRecord, MemberRecord, StoreResult};
use chrono::Utc;
use tokio_postgres::Row;

const GROUP_COLUMNS: &str = "app, name, created_at, current_deployment, previous_deployment";

/// Reads a row of [`GROUP_COLUMNS`].
fn group(row: &Row) -> StoreResult<GroupRecord> {
    Ok(GroupRecord {
        app: row.try_get(0)?,
        name: row.try_get(1)?,
        created_at: time("app_groups.created_at", row.try_get(2)?)?,
        current_deployment: row.try_get(3)?,
        previous_deployment: row.try_get(4)?,
    })
}

/// Fails with `NotFound` naming the application if it is missing, and the group
/// otherwise.
pub(super) async fn require(tx: &impl Db, app: &str, name: &str) -> StoreResult<()> {
    apps::require(tx, app).await?;
    let sql = "SELECT EXISTS (SELECT 1 FROM app_groups WHERE app = $1 AND name = $2)";
    if query::exists(tx, sql, &[&app, &name]).await? {
        Ok(())
    } else {
        Err(not_found("group", &scoped(app, name)))
    }
}

/// As [`require`], and locks the group's row until the transaction ends: what a
/// write that checks the group's members or releases first needs, so that
/// another transaction cannot change them in between.
pub(super) async fn lock(tx: &impl Db, app: &str, name: &str) -> StoreResult<()> {
    apps::require(tx, app).await?;
    let sql = "SELECT 1 FROM app_groups WHERE app = $1 AND name = $2 FOR UPDATE";
    if query::optional(tx, sql, &[&app, &name]).await?.is_some() {
        Ok(())
    } else {
        Err(not_found("group", &scoped(app, name)))
    }
}

/// As [`require`], and locks the group's row against other releases' creation
/// until the transaction ends (members may still be added meanwhile): creates
/// of releases of one group take turns.
pub(super) async fn lock_for_release(tx: &impl Db, app: &str, name: &str) -> StoreResult<()> {
    apps::require(tx, app).await?;
    let sql = "SELECT 1 FROM app_groups WHERE app = $1 AND name = $2 FOR NO KEY UPDATE";
    if query::optional(tx, sql, &[&app, &name]).await?.is_some() {
        Ok(())
    } else {
        Err(not_found("group", &scoped(app, name)))
    }
}

/// Creates a group of an existing application. The current and previous
/// deployments, when given, must be deployments of that application.
pub(super) async fn create(tx: &impl Db, group: &GroupRecord) -> StoreResult<()> {
    apps::require(tx, &group.app).await?;
    for deployment in [&group.current_deployment, &group.previous_deployment]
        .into_iter()
        .flatten()
    {
        deployments::require(tx, &group.app, deployment).await?;
    }
    query::execute(
        tx,
        "INSERT INTO app_groups (app, name, created_at, current_deployment, previous_deployment) \
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &group.app,
            &group.name,
            &millis(group.created_at),
            &group.current_deployment,
            &group.previous_deployment,
        ],
    )
    .await
    .map_err(|err| {
        insert_with_parent_failed(
            err,
            ("group", &scoped(&group.app, &group.name)),
            Some(("application", &group.app)),
        )
    })?;
    Ok(())
}

pub(super) async fn list(tx: &impl Db, app: &str) -> StoreResult<Vec<GroupRecord>> {
    apps::require(tx, app).await?;
    let sql = format!("SELECT {GROUP_COLUMNS} FROM app_groups WHERE app = $1 ORDER BY name");
    query::all(tx, &sql, &[&app])
        .await?
        .iter()
        .map(group)
        .collect()
}

pub(super) async fn fetch(tx: &impl Db, app: &str, name: &str) -> StoreResult<GroupRecord> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM app_groups WHERE app = $1 AND name = $2");
    match query::optional(tx, &sql, &[&app, &name]).await? {
        Some(row) => group(&row),
        None => {
            // Say whether the application or only the group is missing.
            apps::require(tx, app).await?;
            Err(not_found("group", &scoped(app, name)))
        }
    }
}

/// Deletes a group that has no members and no releases (active or finished: a
/// release keeps its group).
pub(super) async fn delete(tx: &impl Db, app: &str, name: &str) -> StoreResult<()> {
    lock(tx, app, name).await?;
    let members: i64 = query::one(
        tx,
        "SELECT COUNT(*) FROM group_members WHERE app = $1 AND group_name = $2",
        &[&app, &name],
    )
    .await?
    .try_get(0)?;
    let members: u64 = unsigned("COUNT(group_members)", members)?;
    let release_ids = releases::naming(tx, app, Some(name), None).await?;
    refuse_if_used(
        "group",
        &scoped(app, name),
        [
            counted("instance", "instances", members),
            named("release", "releases", &release_ids),
        ],
    )?;
    query::execute(
        tx,
        "DELETE FROM app_groups WHERE app = $1 AND name = $2",
        &[&app, &name],
    )
    .await
    .map_err(|err| delete_failed(err, "group", &scoped(app, name)))?;
    Ok(())
}

/// Adds instances to a group once every id is known to exist; members already in
/// the group keep their row (and what they run) untouched.
pub(super) async fn add_instances(
    tx: &impl Db,
    app: &str,
    group: &str,
    ids: &[String],
) -> StoreResult<()> {
    require(tx, app, group).await?;
    for id in ids {
        instances::require(tx, id).await?;
    }
    let added_at = millis(Utc::now());
    query::execute(
        tx,
        "INSERT INTO group_members (app, group_name, instance_id, added_at) \
         SELECT $1::text, $2::text, id, $4::bigint FROM UNNEST($3::text[]) AS ids (id) \
         ON CONFLICT DO NOTHING",
        &[&app, &group, &ids, &added_at],
    )
    .await?;
    Ok(())
}

/// Removes instances from a group once every id is known to be a member.
pub(super) async fn remove_instances(
    tx: &impl Db,
    app: &str,
    group: &str,
    ids: &[String],
) -> StoreResult<()> {
    require(tx, app, group).await?;
    for id in ids {
        let sql = "SELECT EXISTS (SELECT 1 FROM group_members \
                   WHERE app = $1 AND group_name = $2 AND instance_id = $3)";
        if !query::exists(tx, sql, &[&app, &group, id]).await? {
            return Err(not_found("group member", id));
        }
    }
    query::execute(
        tx,
        "DELETE FROM group_members WHERE app = $1 AND group_name = $2 \
         AND instance_id = ANY ($3::text[])",
        &[&app, &group, &ids],
    )
    .await?;
    Ok(())
}

/// The members of a group, ordered by instance name.
pub(super) async fn members(
    tx: &impl Db,
    app: &str,
    group: &str,
) -> StoreResult<Vec<MemberRecord>> {
    require(tx, app, group).await?;
    let sql = format!(
        "SELECT {INSTANCE_COLUMNS}, m.deployment, m.image_digest \
         FROM group_members m JOIN instances i ON i.id = m.instance_id \
         WHERE m.app = $1 AND m.group_name = $2 ORDER BY i.name"
    );
    query::all(tx, &sql, &[&app, &group])
        .await?
        .iter()
        .map(|row| {
            Ok(MemberRecord {
                instance: instance(row)?,
                deployment: row.try_get(INSTANCE_COLUMN_COUNT)?,
                image_digest: row.try_get(INSTANCE_COLUMN_COUNT + 1)?,
            })
        })
        .collect()
}

/// Records a release's success: `deployment` becomes the group's current one and
/// what was current becomes the previous one. Nothing changes when `deployment`
/// is current already, so repeating the call is harmless.
pub(super) async fn set_current_deployment(
    tx: &impl Db,
    app: &str,
    group: &str,
    deployment: &str,
) -> StoreResult<()> {
    require(tx, app, group).await?;
    deployments::require(tx, app, deployment).await?;
    query::execute(
        tx,
        "UPDATE app_groups SET previous_deployment = current_deployment, \
         current_deployment = $1 \
         WHERE app = $2 AND name = $3 AND current_deployment IS DISTINCT FROM $1",
        &[&deployment, &app, &group],
    )
    .await?;
    Ok(())
}
