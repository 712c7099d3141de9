//! Application groups and their members: the `app_groups` and `group_members`
//! tables. Errors name a group as `app/group`.

use super::convert::{millis, time, unsigned};
use super::failure::{
    counted, delete_failed, insert_with_parent_failed, named, not_found, refuse_if_used, scoped,
};
use super::instances::{InstanceRow, INSTANCE_COLUMNS};
use super::{apps, deployments, instances, releases};
use crate::{GroupRecord, MemberRecord, StoreError, StoreResult};
use chrono::Utc;
use sqlx::SqliteConnection;

const GROUP_COLUMNS: &str = "app, name, created_at, current_deployment, previous_deployment";

#[derive(sqlx::FromRow)]
struct GroupRow {
    app: String,
    name: String,
    created_at: i64,
    current_deployment: Option<String>,
    previous_deployment: Option<String>,
}

impl TryFrom<GroupRow> for GroupRecord {
    type Error = StoreError;

    fn try_from(row: GroupRow) -> StoreResult<Self> {
        Ok(GroupRecord {
            app: row.app,
            name: row.name,
            created_at: time("app_groups.created_at", row.created_at)?,
            current_deployment: row.current_deployment,
            previous_deployment: row.previous_deployment,
        })
    }
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    #[sqlx(flatten)]
    instance: InstanceRow,
    deployment: Option<String>,
    image_digest: Option<String>,
}

impl TryFrom<MemberRow> for MemberRecord {
    type Error = StoreError;

    fn try_from(row: MemberRow) -> StoreResult<Self> {
        Ok(MemberRecord {
            instance: row.instance.try_into()?,
            deployment: row.deployment,
            image_digest: row.image_digest,
        })
    }
}

/// Fails with `NotFound` naming the application if it is missing, and the group
/// otherwise.
pub(super) async fn require(conn: &mut SqliteConnection, app: &str, name: &str) -> StoreResult<()> {
    apps::require(conn, app).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM app_groups WHERE app = ? AND name = ?)")
            .bind(app)
            .bind(name)
            .fetch_one(conn)
            .await?;
    if exists {
        Ok(())
    } else {
        Err(not_found("group", &scoped(app, name)))
    }
}

/// Creates a group of an existing application. The current and previous
/// deployments, when given, must be deployments of that application.
pub(super) async fn create(conn: &mut SqliteConnection, group: &GroupRecord) -> StoreResult<()> {
    apps::require(conn, &group.app).await?;
    for deployment in [&group.current_deployment, &group.previous_deployment]
        .into_iter()
        .flatten()
    {
        deployments::require(conn, &group.app, deployment).await?;
    }
    sqlx::query(
        "INSERT INTO app_groups (app, name, created_at, current_deployment, previous_deployment) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&group.app)
    .bind(&group.name)
    .bind(millis(group.created_at))
    .bind(&group.current_deployment)
    .bind(&group.previous_deployment)
    .execute(conn)
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

pub(super) async fn list(conn: &mut SqliteConnection, app: &str) -> StoreResult<Vec<GroupRecord>> {
    apps::require(conn, app).await?;
    let sql = format!("SELECT {GROUP_COLUMNS} FROM app_groups WHERE app = ? ORDER BY name");
    sqlx::query_as::<_, GroupRow>(&sql)
        .bind(app)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(GroupRecord::try_from)
        .collect()
}

pub(super) async fn fetch(
    conn: &mut SqliteConnection,
    app: &str,
    name: &str,
) -> StoreResult<GroupRecord> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM app_groups WHERE app = ? AND name = ?");
    let row = sqlx::query_as::<_, GroupRow>(&sql)
        .bind(app)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => row.try_into(),
        None => {
            // Say whether the application or only the group is missing.
            apps::require(conn, app).await?;
            Err(not_found("group", &scoped(app, name)))
        }
    }
}

/// Deletes a group that has no members and no releases (active or finished: a
/// release keeps its group).
pub(super) async fn delete(conn: &mut SqliteConnection, app: &str, name: &str) -> StoreResult<()> {
    require(conn, app, name).await?;
    let members: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM group_members WHERE app = ? AND group_name = ?")
            .bind(app)
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
    let members: u64 = unsigned("COUNT(group_members)", members)?;
    let release_ids = releases::naming(&mut *conn, app, Some(name), None).await?;
    refuse_if_used(
        "group",
        &scoped(app, name),
        [
            counted("instance", "instances", members),
            named("release", "releases", &release_ids),
        ],
    )?;
    sqlx::query("DELETE FROM app_groups WHERE app = ? AND name = ?")
        .bind(app)
        .bind(name)
        .execute(conn)
        .await
        .map_err(|err| delete_failed(err, "group", &scoped(app, name)))?;
    Ok(())
}

/// Adds instances to a group once every id is known to exist; members already in
/// the group keep their row (and what they run) untouched.
pub(super) async fn add_instances(
    conn: &mut SqliteConnection,
    app: &str,
    group: &str,
    ids: &[String],
) -> StoreResult<()> {
    require(conn, app, group).await?;
    for id in ids {
        instances::require(conn, id).await?;
    }
    let added_at = millis(Utc::now());
    for id in ids {
        sqlx::query(
            "INSERT INTO group_members (app, group_name, instance_id, added_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(app)
        .bind(group)
        .bind(id)
        .bind(added_at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Removes instances from a group once every id is known to be a member.
pub(super) async fn remove_instances(
    conn: &mut SqliteConnection,
    app: &str,
    group: &str,
    ids: &[String],
) -> StoreResult<()> {
    require(conn, app, group).await?;
    for id in ids {
        require_member(conn, app, group, id).await?;
    }
    for id in ids {
        sqlx::query(
            "DELETE FROM group_members WHERE app = ? AND group_name = ? AND instance_id = ?",
        )
        .bind(app)
        .bind(group)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn require_member(
    conn: &mut SqliteConnection,
    app: &str,
    group: &str,
    id: &str,
) -> StoreResult<()> {
    let member: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM group_members \
         WHERE app = ? AND group_name = ? AND instance_id = ?)",
    )
    .bind(app)
    .bind(group)
    .bind(id)
    .fetch_one(conn)
    .await?;
    if member {
        Ok(())
    } else {
        Err(not_found("group member", id))
    }
}

/// The members of a group, ordered by instance name.
pub(super) async fn members(
    conn: &mut SqliteConnection,
    app: &str,
    group: &str,
) -> StoreResult<Vec<MemberRecord>> {
    require(conn, app, group).await?;
    let sql = format!(
        "SELECT {INSTANCE_COLUMNS}, m.deployment, m.image_digest \
         FROM group_members m JOIN instances i ON i.id = m.instance_id \
         WHERE m.app = ? AND m.group_name = ? ORDER BY i.name"
    );
    sqlx::query_as::<_, MemberRow>(&sql)
        .bind(app)
        .bind(group)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(MemberRecord::try_from)
        .collect()
}

/// Records a release's success: `deployment` becomes the group's current one and
/// what was current becomes the previous one. Nothing changes when `deployment`
/// is current already, so repeating the call is harmless.
pub(super) async fn set_current_deployment(
    conn: &mut SqliteConnection,
    app: &str,
    group: &str,
    deployment: &str,
) -> StoreResult<()> {
    require(conn, app, group).await?;
    deployments::require(conn, app, deployment).await?;
    sqlx::query(
        "UPDATE app_groups SET previous_deployment = current_deployment, \
         current_deployment = ?1 \
         WHERE app = ?2 AND name = ?3 AND current_deployment IS NOT ?1",
    )
    .bind(deployment)
    .bind(app)
    .bind(group)
    .execute(conn)
    .await?;
    Ok(())
}
