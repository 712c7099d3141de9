//! `/api/v1/registries`: container registries. The password is sealed before it
//! reaches the store and is never part of an answer.

use crate::auth::Admin;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use crate::views;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use wharf_api::{ErrorBody, Registry, RegistryCreate};
use wharf_domain::names::validate_name;
use wharf_domain::registry::{validate_credentials, validate_endpoint};
use wharf_store::RegistryRecord;

#[utoipa::path(post, path = "/api/v1/registries", request_body = RegistryCreate,
    responses((status = 201, body = Registry), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegistryCreate>,
) -> ApiResult<(StatusCode, Json<Registry>)> {
    validate_name("name", &body.name)?;
    validate_endpoint("endpoint", &body.endpoint)?;
    if let Some(private) = &body.private_endpoint {
        validate_endpoint("private_endpoint", private)?;
    }
    validate_credentials(body.username.as_deref(), body.password.as_deref())?;
    let record = RegistryRecord {
        name: body.name,
        endpoint: body.endpoint,
        private_endpoint: body.private_endpoint,
        username: body.username,
        password_sealed: body.password.as_deref().map(|p| state.secrets.seal(p)),
        insecure: body.insecure,
        created_at: chrono::Utc::now(),
    };
    state.store.registry_create(&record).await?;
    Ok((StatusCode::CREATED, Json(views::registry(record))))
}

#[utoipa::path(get, path = "/api/v1/registries", responses((status = 200, body = Vec<Registry>)), security(("bearer" = [])))]
pub async fn list(_: Admin, State(state): State<AppState>) -> ApiResult<Json<Vec<Registry>>> {
    let records = state.store.registry_list().await?;
    Ok(Json(records.into_iter().map(views::registry).collect()))
}

#[utoipa::path(get, path = "/api/v1/registries/{name}", params(("name" = String, Path)),
    responses((status = 200, body = Registry), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Registry>> {
    Ok(Json(views::registry(
        state.store.registry_fetch(&name).await?,
    )))
}

#[utoipa::path(delete, path = "/api/v1/registries/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.store.registry_delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
