//! `/agent/v1/work` and `/agent/v1/releases/{id}/events`: agents long-poll for
//! their next task and report on its steps (`ops::work`). The instance always
//! comes from the agent's credential.

use crate::auth::{Agent, Source};
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::ops::{self, Caller};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use wharf_api::{ErrorBody, StepEvent, StepEventAck, WorkAssignment};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WorkQuery {
    /// Seconds to wait for work before answering 204 (default 25, at most 60).
    wait_secs: Option<u64>,
}

#[utoipa::path(get, path = "/agent/v1/work", params(WorkQuery),
    responses((status = 200, body = WorkAssignment), (status = 204, description = "no work within the wait"), (status = 401, body = ErrorBody)))]
pub async fn poll(
    Agent(instance): Agent,
    Source(source): Source,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<WorkQuery>,
) -> ApiResult<Response> {
    let caller = Caller::agent(instance.id.clone(), source);
    Ok(
        match ops::work::poll(&state, &caller, query.wait_secs).await? {
            Some(work) => Json(work).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    )
}

#[utoipa::path(post, path = "/agent/v1/releases/{id}/events", params(("id" = String, Path)), request_body = StepEvent,
    responses((status = 200, body = StepEventAck), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn event(
    Agent(instance): Agent,
    Source(source): Source,
    State(state): State<AppState>,
    ApiPath(release_id): ApiPath<String>,
    ApiJson(event): ApiJson<StepEvent>,
) -> ApiResult<Json<StepEventAck>> {
    let caller = Caller::agent(instance.id.clone(), source);
    Ok(Json(
        ops::work::report(&state, &caller, release_id, event).await?,
    ))
}
