//! `/api/v1/apps/{app}/groups`: application groups and their members
//! (`ops::groups`).

use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::ops::{self, Caller};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use wharf_api::{ErrorBody, Group, GroupCreate, GroupInstances};

#[utoipa::path(post, path = "/api/v1/apps/{app}/groups", params(("app" = String, Path)), request_body = GroupCreate,
    responses((status = 201, body = Group), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<GroupCreate>,
) -> ApiResult<(StatusCode, Json<Group>)> {
    let group = ops::groups::create(&state, &caller, app, body).await?;
    Ok((StatusCode::CREATED, Json(group)))
}

#[utoipa::path(get, path = "/api/v1/apps/{app}/groups", params(("app" = String, Path)),
    responses((status = 200, body = Vec<Group>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(app): ApiPath<String>,
) -> ApiResult<Json<Vec<Group>>> {
    Ok(Json(ops::groups::list(&state, &caller, &app).await?))
}

#[utoipa::path(get, path = "/api/v1/apps/{app}/groups/{group}", params(("app" = String, Path), ("group" = String, Path)),
    responses((status = 200, body = Group), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((app, group)): ApiPath<(String, String)>,
) -> ApiResult<Json<Group>> {
    Ok(Json(
        ops::groups::show(&state, &caller, &app, &group).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/apps/{app}/groups/{group}", params(("app" = String, Path), ("group" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((app, group)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    ops::groups::delete(&state, &caller, &app, &group).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/apps/{app}/groups/{group}/instances", params(("app" = String, Path), ("group" = String, Path)),
    request_body = GroupInstances,
    responses((status = 200, body = Group), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_instances(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((app, group)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<GroupInstances>,
) -> ApiResult<Json<Group>> {
    let group = ops::groups::add_members(&state, &caller, &app, &group, &body).await?;
    Ok(Json(group))
}

#[utoipa::path(post, path = "/api/v1/apps/{app}/groups/{group}/instances/remove", params(("app" = String, Path), ("group" = String, Path)),
    request_body = GroupInstances,
    responses((status = 200, body = Group), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn remove_instances(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((app, group)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<GroupInstances>,
) -> ApiResult<Json<Group>> {
    let group = ops::groups::remove_members(&state, &caller, &app, &group, &body).await?;
    Ok(Json(group))
}
