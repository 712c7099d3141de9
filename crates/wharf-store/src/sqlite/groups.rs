//! Application groups and their members: the `app_groups` and `group_members`
//! tables. Errors name a group as `app/group`.

use super::convert::{millis, time, unsigned};
use super::failure::{
    counted, delete_failed, insert_with_parent_failed, named, not_found, refuse_if_used, scoped,
};
use super::instances::{InstanceRow, INSTANCE_COLUMNS, INSTANCE_COLUMN_COUNT};
use super::query;
use super::{apps, deployments, instances, releases};
use crate::{GroupRecord, MemberRecord, StoreError, StoreResult};
use chrono::Utc;
use rusqlite::{params, Connection, Row};

const GROUP_COLUMNS: &str = "app, name, created_at, current_deployment, previous_deployment";

struct GroupRow {
    app: String,
    name: String,
    created_at: i64,
    current_deployment: Option<String>,
    previous_deployment: Option<String>,
}

impl GroupRow {
    /// Reads a row of [`GROUP_COLUMNS`].
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(GroupRow {
            app: row.get(0)?,
            name: row.get(1)?,
            created_at: row.get(2)?,
            current_deployment: row.get(3)?,
            previous_deployment: row.get(4)?,
        })
    }
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

struct MemberRow {
    instance: InstanceRow,
    deployment: Option<String>,
    image_digest: Option<String>,
}

impl MemberRow {
    /// Reads a row of [`INSTANCE_COLUMNS`] followed by `deployment, image_digest`.
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(MemberRow {
            instance: InstanceRow::read(row)?,
            deployment: row.get(INSTANCE_COLUMN_COUNT)?,
            image_digest: row.get(INSTANCE_COLUMN_COUNT + 1)?,
        })
    }
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
pub(super) fn require(conn: &Connection, app: &str, name: &str) -> StoreResult<()> {
    apps::require(conn, app)?;
    let exists: bool = query::one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM app_groups WHERE app = ? AND name = ?)",
        params![app, name],
        |row| row.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(not_found("group", &scoped(app, name)))
    }
}

/// Creates a group of an existing application. The current and previous
/// deployments, when given, must be deployments of that application.
pub(super) fn create(conn: &Connection, group: &GroupRecord) -> StoreResult<()> {
    apps::require(conn, &group.app)?;
    for deployment in [&group.current_deployment, &group.previous_deployment]
        .into_iter()
        .flatten()
    {
        deployments::require(conn, &group.app, deployment)?;
    }
    query::execute(
        conn,
        "INSERT INTO app_groups (app, name, created_at, current_deployment, previous_deployment) \
         VALUES (?, ?, ?, ?, ?)",
        params![
            group.app,
            group.name,
            millis(group.created_at),
            group.current_deployment,
            group.previous_deployment,
        ],
    )
    .map_err(|err| {
        insert_with_parent_failed(
            err,
            ("group", &scoped(&group.app, &group.name)),
            Some(("application", &group.app)),
        )
    })?;
    Ok(())
}

pub(super) fn list(conn: &Connection, app: &str) -> StoreResult<Vec<GroupRecord>> {
    apps::require(conn, app)?;
    let sql = format!("SELECT {GROUP_COLUMNS} FROM app_groups WHERE app = ? ORDER BY name");
    query::all(conn, &sql, [app], GroupRow::read)?
        .into_iter()
        .map(GroupRecord::try_from)
        .collect()
}

pub(super) fn fetch(conn: &Connection, app: &str, name: &str) -> StoreResult<GroupRecord> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM app_groups WHERE app = ? AND name = ?");
    let row = query::optional(conn, &sql, params![app, name], GroupRow::read)?;
    match row {
        Some(row) => row.try_into(),
        None => {
            // Say whether the application or only the group is missing.
            apps::require(conn, app)?;
            Err(not_found("group", &scoped(app, name)))
        }
    }
}

/// Deletes a group that has no members and no releases (active or finished: a
/// release keeps its group).
pub(super) fn delete(conn: &Connection, app: &str, name: &str) -> StoreResult<()> {
    require(conn, app, name)?;
    let members: i64 = query::one(
        conn,
        "SELECT COUNT(*) FROM group_members WHERE app = ? AND group_name = ?",
        params![app, name],
        |row| row.get(0),
    )?;
    let members: u64 = unsigned("COUNT(group_members)", members)?;
    let release_ids = releases::naming(conn, app, Some(name), None)?;
    refuse_if_used(
        "group",
        &scoped(app, name),
        [
            counted("instance", "instances", members),
            named("release", "releases", &release_ids),
        ],
    )?;
    query::execute(
        conn,
        "DELETE FROM app_groups WHERE app = ? AND name = ?",
        params![app, name],
    )
    .map_err(|err| delete_failed(err, "group", &scoped(app, name)))?;
    Ok(())
}

/// Adds instances to a group once every id is known to exist; members already in
/// the group keep their row (and what they run) untouched.
pub(super) fn add_instances(
    conn: &Connection,
    app: &str,
    group: &str,
    ids: &[String],
) -> StoreResult<()> {
    require(conn, app, group)?;
    for id in ids {
        instances::require(conn, id)?;
    }
    let added_at = millis(Utc::now());
    for id in ids {
        query::execute(
            conn,
            "INSERT INTO group_members (app, group_name, instance_id, added_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            params![app, group, id, added_at],
        )?;
    }
    Ok(())
}

/// Removes instances from a group once every id is known to be a member.
pub(super) fn remove_instances(
    conn: &Connection,
    app: &str,
    group: &str,
    ids: &[String],
) -> StoreResult<()> {
    require(conn, app, group)?;
    for id in ids {
        require_member(conn, app, group, id)?;
    }
    for id in ids {
        query::execute(
            conn,
            "DELETE FROM group_members WHERE app = ? AND group_name = ? AND instance_id = ?",
            params![app, group, id],
        )?;
    }
    Ok(())
}

fn require_member(conn: &Connection, app: &str, group: &str, id: &str) -> StoreResult<()> {
    let member: bool = query::one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM group_members \
         WHERE app = ? AND group_name = ? AND instance_id = ?)",
        params![app, group, id],
        |row| row.get(0),
    )?;
    if member {
        Ok(())
    } else {
        Err(not_found("group member", id))
    }
}

/// The members of a group, ordered by instance name.
pub(super) fn members(conn: &Connection, app: &str, group: &str) -> StoreResult<Vec<MemberRecord>> {
    require(conn, app, group)?;
    let sql = format!(
        "SELECT {INSTANCE_COLUMNS}, m.deployment, m.image_digest \
         FROM group_members m JOIN instances i ON i.id = m.instance_id \
         WHERE m.app = ? AND m.group_name = ? ORDER BY i.name"
    );
    query::all(conn, &sql, params![app, group], MemberRow::read)?
        .into_iter()
        .map(MemberRecord::try_from)
        .collect()
}

/// Records a release's success: `deployment` becomes the group's current one and
/// what was current becomes the previous one. Nothing changes when `deployment`
/// is current already, so repeating the call is harmless.
pub(super) fn set_current_deployment(
    conn: &Connection,
    app: &str,
    group: &str,
    deployment: &str,
) -> StoreResult<()> {
    require(conn, app, group)?;
    deployments::require(conn, app, deployment)?;
    query::execute(
        conn,
        "UPDATE app_groups SET previous_deployment = current_deployment, \
         current_deployment = ?1 \
         WHERE app = ?2 AND name = ?3 AND current_deployment IS NOT ?1",
        params![deployment, app, group],
    )?;
    Ok(())
}
