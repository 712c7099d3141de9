//! `/api/v1/.../releases`: publishing a deployment to a group, following it, and
//! the `continue`, `cancel` and `rollback` actions.

use crate::auth::Admin;
use crate::engine::actions;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::release_views;
use crate::state::AppState;
use crate::views;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use wharf_api::{ErrorBody, Release, ReleaseCreate, StepLog};
use wharf_domain::release::StepName;

/// Releases listed when no limit is given, and the most a list returns.
const DEFAULT_LIST_LIMIT: u32 = 50;
const MAX_LIST_LIMIT: u32 = 1000;

/// The full view of a release as `show` answers it, with `status`: the kept JSON
/// of a large release when it is current (see `release_views.rs`), so that
/// creating or acting on a release of thousands of instances does not encode
/// all of them again beside its first batch.
async fn full_view(state: &AppState, id: &str, status: StatusCode) -> ApiResult<Response> {
    let version = release_views::release_version(state, id).await?;
    let json = release_views::release_json(state, id, version.state).await?;
    Ok(view_response(status, &version, json))
}

fn view_response(
    status: StatusCode,
    version: &release_views::Version,
    json: axum::body::Bytes,
) -> Response {
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
    _: Admin,
    State(state): State<AppState>,
    ApiPath((app, group)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ReleaseCreate>,
) -> ApiResult<Response> {
    let release = actions::create_from_request(&state, app, group, body).await?;
    full_view(&state, &release.id, StatusCode::CREATED).await
}

#[utoipa::path(post, path = "/api/v1/apps/{app}/groups/{group}/rollback", params(("app" = String, Path), ("group" = String, Path)),
    responses((status = 201, body = Release), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rollback(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((app, group)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let release = actions::rollback_group(&state, app, group).await?;
    full_view(&state, &release.id, StatusCode::CREATED).await
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
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<Release>>> {
    if query.group.is_some() && query.app.is_none() {
        return Err(ApiError::invalid(
            "group",
            "group: name the application too",
        ));
    }
    let limit = query
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT);
    Ok(Json(
        list_views(&state, query.app.as_deref(), query.group.as_deref(), limit).await?,
    ))
}

/// Releases, newest first, with their counts (no batches).
pub(crate) async fn list_views(
    state: &AppState,
    app: Option<&str>,
    group: Option<&str>,
    limit: u32,
) -> ApiResult<Vec<Release>> {
    let releases = state.store.release_list(app, group, limit).await?;
    let mut views = Vec::with_capacity(releases.len());
    for release in releases {
        let tasks = state.store.task_list(&release.id).await?;
        views.push(views::release(release, &tasks, None));
    }
    Ok(views)
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
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ShowQuery>,
) -> ApiResult<Response> {
    // The version is read before the view: a change in between shows in the view
    // and makes the next wait return at once, never the other way round.
    let started = std::time::Instant::now();
    let version = match &query.after {
        Some(after) => {
            let wait = query.wait_secs.unwrap_or(10);
            release_views::wait_for_change(&state, &id, after, wait).await?
        }
        None => release_views::release_version(&state, &id).await?,
    };
    let versioned = started.elapsed();
    let json = release_views::release_json(&state, &id, version.state).await?;
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
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    actions::continue_release(&state, &id).await?;
    full_view(&state, &id, StatusCode::OK).await
}

#[utoipa::path(post, path = "/api/v1/releases/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = Release), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn cancel(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    actions::cancel_release(&state, &id).await?;
    full_view(&state, &id, StatusCode::OK).await
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
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> ApiResult<Json<Vec<StepLog>>> {
    Ok(Json(step_logs(&state, &id, &query).await?))
}

/// The output of a release's (or exec's) steps, optionally of one instance and
/// one step.
pub(crate) async fn step_logs(
    state: &AppState,
    id: &str,
    query: &LogsQuery,
) -> ApiResult<Vec<StepLog>> {
    let tasks = state.store.task_list(id).await?;
    state.store.release_fetch(id).await?;
    let instance_id = match &query.instance {
        None => None,
        Some(wanted) => Some(
            tasks
                .iter()
                .find(|t| &t.instance_id == wanted || &t.instance_name == wanted)
                .map(|t| t.instance_id.clone())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "instance",
                        format!("instance: {wanted:?} is not part of release {id}"),
                    )
                })?,
        ),
    };
    let step = match &query.step {
        None => None,
        Some(name) => Some(StepName::parse(name).ok_or_else(|| {
            ApiError::invalid(
                "step",
                format!(
                    "step: {name:?} is not a step (fetch, prepare, pull, stop, start, verify, exec)"
                ),
            )
        })?),
    };
    let steps = state.store.step_list(id, instance_id.as_deref()).await?;
    Ok(views::step_logs(
        steps
            .into_iter()
            .filter(|s| step.is_none_or(|wanted| s.step == wanted)),
        &tasks,
    ))
}
