//! `/api/v1/scaling-groups`: scaling groups, each bound to one application group,
//! with their lease state, held instances, activities and hook runs
//! (`ops::scaling`).

use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::ops::{self, Caller};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use wharf_api::{ErrorBody, ScalingGroup, ScalingGroupCreate};

#[utoipa::path(post, path = "/api/v1/scaling-groups", request_body = ScalingGroupCreate,
    responses((status = 201, body = ScalingGroup), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ScalingGroupCreate>,
) -> ApiResult<(StatusCode, Json<ScalingGroup>)> {
    let group = ops::scaling::create(&state, &caller, body).await?;
    Ok((StatusCode::CREATED, Json(group)))
}

#[utoipa::path(get, path = "/api/v1/scaling-groups",
    responses((status = 200, body = Vec<ScalingGroup>)), security(("bearer" = [])))]
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<ScalingGroup>>> {
    Ok(Json(ops::scaling::list(&state, &caller).await?))
}

#[utoipa::path(get, path = "/api/v1/scaling-groups/{name}", params(("name" = String, Path)),
    responses((status = 200, body = ScalingGroup), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<ScalingGroup>> {
    Ok(Json(ops::scaling::show(&state, &caller, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/scaling-groups/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    ops::scaling::delete(&state, &caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
