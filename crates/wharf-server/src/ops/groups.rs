//! Application groups and their members.

use super::{instances, Caller, OpError, OpResult, Role};
use crate::state::AppState;
use crate::views;
use wharf_api::{Group, GroupCreate, GroupInstances};
use wharf_domain::names::validate_name;
use wharf_store::GroupRecord;

/// The most instances one add or remove request may name.
const MAX_INSTANCES_PER_REQUEST: usize = 10_000;

/// How many recent releases a group's view lists.
const RECENT_RELEASES: u32 = 10;

/// A group with its members and recent releases.
pub async fn view(state: &AppState, record: GroupRecord) -> OpResult<Group> {
    let members = state.store.group_members(&record.app, &record.name).await?;
    let recent = state
        .store
        .release_list(Some(&record.app), Some(&record.name), RECENT_RELEASES)
        .await?;
    let mut releases = Vec::with_capacity(recent.len());
    for release in recent {
        let tasks = state.store.task_list(&release.id).await?;
        releases.push(views::release(release, &tasks, None));
    }
    let mut group = views::group(record, members, &state.liveness_judge(), chrono::Utc::now());
    group.releases = releases;
    Ok(group)
}

/// Checks and stores a new group of `app`.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    app: String,
    body: GroupCreate,
) -> OpResult<Group> {
    caller.require(Role::Operator, Some(&app))?;
    validate_name("name", &body.name)?;
    let record = GroupRecord {
        app,
        name: body.name,
        created_at: chrono::Utc::now(),
        current_deployment: None,
        previous_deployment: None,
    };
    state.store.group_create(&record).await?;
    view(state, record).await
}

/// The groups of `app`.
pub async fn list(state: &AppState, caller: &Caller, app: &str) -> OpResult<Vec<Group>> {
    caller.require(Role::Viewer, Some(app))?;
    state.store.app_fetch(app).await?;
    let mut groups = Vec::new();
    for record in state.store.group_list(app).await? {
        groups.push(view(state, record).await?);
    }
    Ok(groups)
}

/// The names of the groups of `app`.
pub async fn names(state: &AppState, caller: &Caller, app: &str) -> OpResult<Vec<String>> {
    caller.require(Role::Viewer, Some(app))?;
    let groups = state.store.group_list(app).await?;
    Ok(groups.into_iter().map(|g| g.name).collect())
}

/// The record of one group, for callers that build more than its view.
pub async fn fetch(
    state: &AppState,
    caller: &Caller,
    app: &str,
    group: &str,
) -> OpResult<GroupRecord> {
    caller.require(Role::Viewer, Some(app))?;
    Ok(state.store.group_fetch(app, group).await?)
}

/// One group.
pub async fn show(state: &AppState, caller: &Caller, app: &str, group: &str) -> OpResult<Group> {
    let record = fetch(state, caller, app, group).await?;
    view(state, record).await
}

/// Deletes a group.
pub async fn delete(state: &AppState, caller: &Caller, app: &str, group: &str) -> OpResult<()> {
    caller.require(Role::Operator, Some(app))?;
    state.store.group_delete(app, group).await?;
    Ok(())
}

/// Resolves every id or name of the request, refusing the whole request on the
/// first unknown one so that nothing is half-applied.
async fn resolve_all(state: &AppState, body: &GroupInstances) -> OpResult<Vec<String>> {
    if body.instances.is_empty() {
        return Err(OpError::invalid(
            "instances",
            "instances: name at least one instance",
        ));
    }
    if body.instances.len() > MAX_INSTANCES_PER_REQUEST {
        return Err(OpError::invalid(
            "instances",
            format!("instances: at most {MAX_INSTANCES_PER_REQUEST} per request"),
        ));
    }
    let mut ids = Vec::with_capacity(body.instances.len());
    for id_or_name in &body.instances {
        let id = instances::resolve(state, id_or_name)
            .await
            .map_err(|err| match err {
                OpError::NotFound { .. } => OpError::invalid(
                    "instances",
                    format!("instances: no instance has the id or name {id_or_name:?}"),
                ),
                err => err,
            })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Adds instances (ids or names) to a group, all or none.
pub async fn add_members(
    state: &AppState,
    caller: &Caller,
    app: &str,
    group: &str,
    body: &GroupInstances,
) -> OpResult<Group> {
    caller.require(Role::Operator, Some(app))?;
    let record = state.store.group_fetch(app, group).await?;
    let ids = resolve_all(state, body).await?;
    state.store.group_add_instances(app, group, &ids).await?;
    view(state, record).await
}

/// Removes instances (ids or names) from a group, all or none.
pub async fn remove_members(
    state: &AppState,
    caller: &Caller,
    app: &str,
    group: &str,
    body: &GroupInstances,
) -> OpResult<Group> {
    caller.require(Role::Operator, Some(app))?;
    let record = state.store.group_fetch(app, group).await?;
    let ids = resolve_all(state, body).await?;
    state.store.group_remove_instances(app, group, &ids).await?;
    view(state, record).await
}
