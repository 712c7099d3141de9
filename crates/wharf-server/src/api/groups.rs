//! `/api/v1/apps/{app}/groups`: application groups and their members.

use crate::api::resolve_instance;
use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use crate::views;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use wharf_api::{ErrorBody, Group, GroupCreate, GroupInstances};
use wharf_domain::names::validate_name;
use wharf_store::GroupRecord;

/// The most instances one add or remove request may name.
const MAX_INSTANCES_PER_REQUEST: usize = 10_000;

/// How many recent releases a group's view lists.
const RECENT_RELEASES: u32 = 10;

pub(crate) async fn view(state: &AppState, record: GroupRecord) -> ApiResult<Group> {
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

#[utoipa::path(post, path = "/api/v1/apps/{app}/groups", params(("app" = String, Path)), request_body = GroupCreate,
    responses((status = 201, body = Group), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<GroupCreate>,
) -> ApiResult<(StatusCode, Json<Group>)> {
    Ok((
        StatusCode::CREATED,
        Json(create_group(&state, app, body).await?),
    ))
}

/// Checks and stores a new group of `app` (the API and the console).
pub(crate) async fn create_group(
    state: &AppState,
    app: String,
    body: GroupCreate,
) -> ApiResult<Group> {
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

#[utoipa::path(get, path = "/api/v1/apps/{app}/groups", params(("app" = String, Path)),
    responses((status = 200, body = Vec<Group>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(app): ApiPath<String>,
) -> ApiResult<Json<Vec<Group>>> {
    state.store.app_fetch(&app).await?;
    let mut groups = Vec::new();
    for record in state.store.group_list(&app).await? {
        groups.push(view(&state, record).await?);
    }
    Ok(Json(groups))
}

#[utoipa::path(get, path = "/api/v1/apps/{app}/groups/{group}", params(("app" = String, Path), ("group" = String, Path)),
    responses((status = 200, body = Group), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((app, group)): ApiPath<(String, String)>,
) -> ApiResult<Json<Group>> {
    let record = state.store.group_fetch(&app, &group).await?;
    Ok(Json(view(&state, record).await?))
}

#[utoipa::path(delete, path = "/api/v1/apps/{app}/groups/{group}", params(("app" = String, Path), ("group" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((app, group)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state.store.group_delete(&app, &group).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Resolves every id or name of the request, refusing the whole request on the
/// first unknown one so that nothing is half-applied.
async fn resolve_all(state: &AppState, body: &GroupInstances) -> ApiResult<Vec<String>> {
    if body.instances.is_empty() {
        return Err(ApiError::invalid(
            "instances",
            "instances: name at least one instance",
        ));
    }
    if body.instances.len() > MAX_INSTANCES_PER_REQUEST {
        return Err(ApiError::invalid(
            "instances",
            format!("instances: at most {MAX_INSTANCES_PER_REQUEST} per request"),
        ));
    }
    let mut ids = Vec::with_capacity(body.instances.len());
    for id_or_name in &body.instances {
        let id = resolve_instance(state, id_or_name).await.map_err(|err| {
            if err.status == StatusCode::NOT_FOUND {
                ApiError::invalid(
                    "instances",
                    format!("instances: no instance has the id or name {id_or_name:?}"),
                )
            } else {
                err
            }
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

#[utoipa::path(post, path = "/api/v1/apps/{app}/groups/{group}/instances", params(("app" = String, Path), ("group" = String, Path)),
    request_body = GroupInstances,
    responses((status = 200, body = Group), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_instances(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((app, group)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<GroupInstances>,
) -> ApiResult<Json<Group>> {
    Ok(Json(add_members(&state, &app, &group, &body).await?))
}

/// Adds instances (ids or names) to a group, all or none (the API and the console).
pub(crate) async fn add_members(
    state: &AppState,
    app: &str,
    group: &str,
    body: &GroupInstances,
) -> ApiResult<Group> {
    let record = state.store.group_fetch(app, group).await?;
    let ids = resolve_all(state, body).await?;
    state.store.group_add_instances(app, group, &ids).await?;
    view(state, record).await
}

#[utoipa::path(post, path = "/api/v1/apps/{app}/groups/{group}/instances/remove", params(("app" = String, Path), ("group" = String, Path)),
    request_body = GroupInstances,
    responses((status = 200, body = Group), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn remove_instances(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((app, group)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<GroupInstances>,
) -> ApiResult<Json<Group>> {
    Ok(Json(remove_members(&state, &app, &group, &body).await?))
}

/// Removes instances (ids or names) from a group, all or none (the API and the
/// console).
pub(crate) async fn remove_members(
    state: &AppState,
    app: &str,
    group: &str,
    body: &GroupInstances,
) -> ApiResult<Group> {
    let record = state.store.group_fetch(app, group).await?;
    let ids = resolve_all(state, body).await?;
    state.store.group_remove_instances(app, group, &ids).await?;
    view(state, record).await
}
