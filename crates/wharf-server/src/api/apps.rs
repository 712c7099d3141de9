//! `/api/v1/apps`: applications (`ops::apps`).

use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::ops::{self, Caller};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use wharf_api::{App, AppCreate, ErrorBody};

#[utoipa::path(post, path = "/api/v1/apps", request_body = AppCreate,
    responses((status = 201, body = App), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AppCreate>,
) -> ApiResult<(StatusCode, Json<App>)> {
    let app = ops::apps::create(&state, &caller, body).await?;
    Ok((StatusCode::CREATED, Json(app)))
}

#[utoipa::path(get, path = "/api/v1/apps", responses((status = 200, body = Vec<App>)), security(("bearer" = [])))]
pub async fn list(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<Vec<App>>> {
    Ok(Json(ops::apps::list(&state, &caller).await?))
}

#[utoipa::path(get, path = "/api/v1/apps/{app}", params(("app" = String, Path)),
    responses((status = 200, body = App), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(app): ApiPath<String>,
) -> ApiResult<Json<App>> {
    Ok(Json(ops::apps::show(&state, &caller, &app).await?))
}

#[utoipa::path(delete, path = "/api/v1/apps/{app}", params(("app" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(app): ApiPath<String>,
) -> ApiResult<StatusCode> {
    ops::apps::delete(&state, &caller, &app).await?;
    Ok(StatusCode::NO_CONTENT)
}
