//! `/api/v1/instances` and `/api/v1/registration-tokens`: registered hosts and the
//! registration tokens agents use to join (`ops::instances`, `ops::tokens`).

use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::ops::{self, Caller};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use wharf_api::{ErrorBody, Instance, RegistrationToken, RegistrationTokenCreate};

#[utoipa::path(post, path = "/api/v1/registration-tokens", request_body = RegistrationTokenCreate,
    responses((status = 201, body = RegistrationToken), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn token_create(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegistrationTokenCreate>,
) -> ApiResult<(StatusCode, Json<RegistrationToken>)> {
    let token = ops::tokens::create(&state, &caller, body).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

#[utoipa::path(get, path = "/api/v1/registration-tokens", responses((status = 200, body = Vec<RegistrationToken>)), security(("bearer" = [])))]
pub async fn token_list(
    caller: Caller,
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<RegistrationToken>>> {
    Ok(Json(ops::tokens::list(&state, &caller).await?))
}

#[utoipa::path(delete, path = "/api/v1/registration-tokens/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn token_delete(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    ops::tokens::delete(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/instances", responses((status = 200, body = Vec<Instance>)), security(("bearer" = [])))]
pub async fn list(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<Vec<Instance>>> {
    Ok(Json(ops::instances::list(&state, &caller).await?))
}

#[utoipa::path(get, path = "/api/v1/instances/{instance}", params(("instance" = String, Path, description = "id or name")),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(instance): ApiPath<String>,
) -> ApiResult<Json<Instance>> {
    Ok(Json(
        ops::instances::show(&state, &caller, &instance).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/instances/{instance}", params(("instance" = String, Path, description = "id or name")),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(instance): ApiPath<String>,
) -> ApiResult<StatusCode> {
    ops::instances::delete(&state, &caller, &instance).await?;
    Ok(StatusCode::NO_CONTENT)
}
