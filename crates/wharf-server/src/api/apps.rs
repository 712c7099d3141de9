//! `/api/v1/apps`: applications.

use crate::auth::Admin;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use crate::views;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use wharf_api::{App, AppCreate, ErrorBody};
use wharf_domain::names::{validate_description, validate_name};
use wharf_store::AppRecord;

pub(crate) async fn view(state: &AppState, record: AppRecord) -> ApiResult<App> {
    let groups = state.store.group_list(&record.name).await?;
    let deployments = state.store.deployment_list(&record.name).await?;
    Ok(views::app(
        record,
        groups.into_iter().map(|g| g.name).collect(),
        deployments.into_iter().map(|d| d.name).collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/apps", request_body = AppCreate,
    responses((status = 201, body = App), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AppCreate>,
) -> ApiResult<(StatusCode, Json<App>)> {
    Ok((StatusCode::CREATED, Json(create_app(&state, body).await?)))
}

/// Checks and stores a new application (the API and the console).
pub(crate) async fn create_app(state: &AppState, body: AppCreate) -> ApiResult<App> {
    validate_name("name", &body.name)?;
    let description = body.description.unwrap_or_default();
    validate_description(&description)?;
    let record = AppRecord {
        name: body.name,
        description,
        created_at: chrono::Utc::now(),
    };
    state.store.app_create(&record).await?;
    view(state, record).await
}

#[utoipa::path(get, path = "/api/v1/apps", responses((status = 200, body = Vec<App>)), security(("bearer" = [])))]
pub async fn list(_: Admin, State(state): State<AppState>) -> ApiResult<Json<Vec<App>>> {
    let mut apps = Vec::new();
    for record in state.store.app_list().await? {
        apps.push(view(&state, record).await?);
    }
    Ok(Json(apps))
}

#[utoipa::path(get, path = "/api/v1/apps/{app}", params(("app" = String, Path)),
    responses((status = 200, body = App), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(app): ApiPath<String>,
) -> ApiResult<Json<App>> {
    let record = state.store.app_fetch(&app).await?;
    Ok(Json(view(&state, record).await?))
}

#[utoipa::path(delete, path = "/api/v1/apps/{app}", params(("app" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(app): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.store.app_delete(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}
