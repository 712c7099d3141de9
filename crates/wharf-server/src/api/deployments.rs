//! `/api/v1/apps/{app}/deployments`: immutable deployment revisions
//! (`ops::deployments`).

use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::ops::{self, Caller};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use wharf_api::{Deployment, DeploymentCreate, ErrorBody};

#[utoipa::path(post, path = "/api/v1/apps/{app}/deployments", params(("app" = String, Path)), request_body = DeploymentCreate,
    responses((status = 201, body = Deployment), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<DeploymentCreate>,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    let deployment = ops::deployments::create(&state, &caller, app, body).await?;
    Ok((StatusCode::CREATED, Json(deployment)))
}

#[utoipa::path(get, path = "/api/v1/apps/{app}/deployments", params(("app" = String, Path)),
    responses((status = 200, body = Vec<Deployment>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(app): ApiPath<String>,
) -> ApiResult<Json<Vec<Deployment>>> {
    Ok(Json(ops::deployments::list(&state, &caller, &app).await?))
}

#[utoipa::path(get, path = "/api/v1/apps/{app}/deployments/{name}", params(("app" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((app, name)): ApiPath<(String, String)>,
) -> ApiResult<Json<Deployment>> {
    Ok(Json(
        ops::deployments::show(&state, &caller, &app, &name).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/apps/{app}/deployments/{name}", params(("app" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((app, name)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    ops::deployments::delete(&state, &caller, &app, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
