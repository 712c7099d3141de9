//! `/api/v1/.../execs`: running a script on the instances of a group (a group
//! exec), following it, its output, and `cancel` (`ops::execs`).

use super::releases::LogsQuery;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::ops::{self, Caller};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use wharf_api::{ErrorBody, Exec, ExecCreate, StepLog};

/// Execs listed when no limit is given, and the most a list returns.
const DEFAULT_LIST_LIMIT: u32 = 50;
const MAX_LIST_LIMIT: u32 = 1000;

#[utoipa::path(post, path = "/api/v1/apps/{app}/groups/{group}/execs", params(("app" = String, Path), ("group" = String, Path)),
    request_body = ExecCreate,
    responses((status = 201, body = Exec), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the group has no instances, or a release or exec is active on it")),
    security(("bearer" = [])))]
pub async fn create(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((app, group)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ExecCreate>,
) -> ApiResult<(StatusCode, Json<Exec>)> {
    let release = ops::execs::create(&state, &caller, app, group, body).await?;
    let exec = ops::execs::view(&state, &caller, &release.id).await?;
    Ok((StatusCode::CREATED, Json(exec)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    app: Option<String>,
    group: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/execs", params(ListQuery),
    responses((status = 200, body = Vec<Exec>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<Exec>>> {
    let limit = query
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT);
    let execs = ops::execs::list(
        &state,
        &caller,
        query.app.as_deref(),
        query.group.as_deref(),
        limit,
    )
    .await?;
    Ok(Json(execs))
}

#[utoipa::path(get, path = "/api/v1/execs/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Exec), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Exec>> {
    Ok(Json(ops::execs::view(&state, &caller, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/execs/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = Exec), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn cancel(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Exec>> {
    Ok(Json(ops::execs::cancel(&state, &caller, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/execs/{id}/logs", params(("id" = String, Path), LogsQuery),
    responses((status = 200, body = Vec<StepLog>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn logs(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> ApiResult<Json<Vec<StepLog>>> {
    let logs = ops::execs::step_logs(
        &state,
        &caller,
        &id,
        query.instance.as_deref(),
        query.step.as_deref(),
    )
    .await?;
    Ok(Json(logs))
}
