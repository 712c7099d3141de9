//! `/api/v1/.../releases`: publishing a deployment to a group, following it, and
//! the `continue`, `cancel` and `rollback` actions (`ops::releases`).

use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::ops::{self, Caller};
use crate::release_views::Version;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use wharf_api::{ErrorBody, Release, ReleaseCreate, StepLog};

/// Releases listed when no limit is given, and the most a list returns.
const DEFAULT_LIST_LIMIT: u32 = 50;
const MAX_LIST_LIMIT: u32 = 1000;

/// The full view of a release as `show` answers it, with `status`: the kept JSON
/// of a large release when it is current (see `release_views.rs`), so that
/// creating or acting on a release of thousands of instances does not encode
/// all of them again beside its first batch.
async fn full_view(
    state: &AppState,
    caller: &Caller,
    id: &str,
    status: StatusCode,
) -> ApiResult<Response> {
    let version = ops::releases::version(state, caller, id, None).await?;
    let json = ops::releases::view_json(state, id, version.state).await?;
    Ok(view_response(status, &version, json))
}

fn view_response(status: StatusCode, version: &Version, json: axum::body::Bytes) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::ETAG, format!("\"{}\"", version.tag)),
        ],
        json,
    )
        .into_response()
}

#[utoipa::path(post, path = "/api/v1/apps/{app}/groups/{group}/releases", params(("app" = String, Path), ("group" = String, Path)),
    request_body = ReleaseCreate,
    responses((status = 201, body = Release), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((app, group)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ReleaseCreate>,
) -> ApiResult<Response> {
    let release = ops::releases::create_from_request(&state, &caller, app, group, body).await?;
    full_view(&state, &caller, &release.id, StatusCode::CREATED).await
}

#[utoipa::path(post, path = "/api/v1/apps/{app}/groups/{group}/rollback", params(("app" = String, Path), ("group" = String, Path)),
    responses((status = 201, body = Release), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rollback(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((app, group)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let release = ops::releases::rollback_group(&state, &caller, app, group).await?;
    full_view(&state, &caller, &release.id, StatusCode::CREATED).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    app: Option<String>,
    group: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/releases", params(ListQuery),
    responses((status = 200, body = Vec<Release>)), security(("bearer" = [])))]
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<Release>>> {
    let limit = query
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT);
    let releases = ops::releases::list(
        &state,
        &caller,
        query.app.as_deref(),
        query.group.as_deref(),
        limit,
    )
    .await?;
    Ok(Json(releases))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    /// A version of the release (the `ETag` of an earlier answer): answer once the
    /// release differs from it (its state, or any instance's state), or after
    /// `wait_secs`.
    after: Option<String>,
    /// With `after`: how long to wait for a change (at most 30 s; default 10).
    wait_secs: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/releases/{id}", params(("id" = String, Path), ShowQuery),
    responses((status = 200, body = Release), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
/// The full view of a release; its `ETag` is the release's version, to pass back
/// as `after` to wait for the next change (how the CLI follows a release). For a
/// release of 1,000 instances or more, the per-instance part may be up to about a
/// second old (see `release_views.rs`); the release's state never is.
pub async fn show(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ShowQuery>,
) -> ApiResult<Response> {
    // The version is read before the view: a change in between shows in the view
    // and makes the next wait return at once, never the other way round.
    let started = std::time::Instant::now();
    let after = query
        .after
        .as_deref()
        .map(|after| (after, query.wait_secs.unwrap_or(10)));
    let version = ops::releases::version(&state, &caller, &id, after).await?;
    let versioned = started.elapsed();
    let json = ops::releases::view_json(&state, &id, version.state).await?;
    tracing::debug!(
        release = %id,
        version_ms = versioned.as_secs_f64() * 1000.0,
        total_ms = started.elapsed().as_secs_f64() * 1000.0,
        "release read"
    );
    Ok(view_response(StatusCode::OK, &version, json))
}

#[utoipa::path(post, path = "/api/v1/releases/{id}/continue", params(("id" = String, Path)),
    responses((status = 200, body = Release), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn continue_release(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    ops::releases::continue_release(&state, &caller, &id).await?;
    full_view(&state, &caller, &id, StatusCode::OK).await
}

#[utoipa::path(post, path = "/api/v1/releases/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = Release), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn cancel(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    ops::releases::cancel(&state, &caller, &id).await?;
    full_view(&state, &caller, &id, StatusCode::OK).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// An instance id or name.
    pub(crate) instance: Option<String>,
    /// A step name.
    pub(crate) step: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/releases/{id}/logs", params(("id" = String, Path), LogsQuery),
    responses((status = 200, body = Vec<StepLog>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn logs(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> ApiResult<Json<Vec<StepLog>>> {
    let logs = ops::releases::step_logs(
        &state,
        &caller,
        &id,
        query.instance.as_deref(),
        query.step.as_deref(),
    )
    .await?;
    Ok(Json(logs))
}
