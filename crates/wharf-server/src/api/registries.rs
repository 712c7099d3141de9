//! `/api/v1/registries`: container registries (`ops::registries`). The password
//! is never part of an answer.

use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::ops::{self, Caller};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use wharf_api::{ErrorBody, Registry, RegistryCreate};

#[utoipa::path(post, path = "/api/v1/registries", request_body = RegistryCreate,
    responses((status = 201, body = Registry), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegistryCreate>,
) -> ApiResult<(StatusCode, Json<Registry>)> {
    let registry = ops::registries::create(&state, &caller, body).await?;
    Ok((StatusCode::CREATED, Json(registry)))
}

#[utoipa::path(get, path = "/api/v1/registries", responses((status = 200, body = Vec<Registry>)), security(("bearer" = [])))]
pub async fn list(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<Vec<Registry>>> {
    Ok(Json(ops::registries::list(&state, &caller).await?))
}

#[utoipa::path(get, path = "/api/v1/registries/{name}", params(("name" = String, Path)),
    responses((status = 200, body = Registry), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Registry>> {
    Ok(Json(ops::registries::show(&state, &caller, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/registries/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    ops::registries::delete(&state, &caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
