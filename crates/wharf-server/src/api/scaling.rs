//! `/api/v1/scaling-groups`: scaling groups, each bound to one application group,
//! with their lease state, held instances, activities and hook runs.

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use wharf_api::{
    ErrorBody, HookRun, ScalingActivity, ScalingGroup, ScalingGroupCreate, ScalingPending,
};
use wharf_domain::names::validate_name;
use wharf_store::{ScalingGroupRecord, ScalingState, StoreError};

/// The longest on-suspend or on-resume command accepted.
const MAX_COMMAND_BYTES: usize = 8 * 1024;

/// How many activities and hook runs `show` returns.
const HISTORY: u32 = 20;

fn validate_command(field: &str, command: &Option<String>) -> ApiResult<()> {
    if let Some(command) = command {
        if command.trim().is_empty() || command.len() > MAX_COMMAND_BYTES || command.contains('\0')
        {
            return Err(ApiError::invalid(
                field,
                format!(
                    "{field}: must be a non-empty command of at most {MAX_COMMAND_BYTES} bytes"
                ),
            ));
        }
    }
    Ok(())
}

/// The full view of a scaling group.
pub(crate) async fn view(state: &AppState, record: ScalingGroupRecord) -> ApiResult<ScalingGroup> {
    let pending = state.store.scaling_group_held(&record.name).await?;
    let activities = state
        .store
        .scaling_activities(&record.name, HISTORY)
        .await?;
    let runs = state.store.scaling_hook_runs(&record.name, HISTORY).await?;
    let status = match (&record.state, &record.held_by, &record.last_error) {
        (ScalingState::Suspended, Some(release), _) => format!("suspended by {release}"),
        (ScalingState::Active, _, Some(error)) if record.resume_hook_pending => {
            format!("resumed (on-resume failing: {error}; retrying)")
        }
        (ScalingState::Active, _, Some(error)) if record.resume_attempts > 0 => {
            format!("resumed (on-resume failing: {error}; gave up)")
        }
        (state, _, _) => state.as_str().to_owned(),
    };
    Ok(ScalingGroup {
        name: record.name,
        app: record.app,
        group: record.group,
        on_suspend: record.on_suspend,
        on_resume: record.on_resume,
        created_at: record.created_at,
        state: record.state.as_str().to_owned(),
        status,
        suspended_by: record.held_by,
        suspended_at: record.suspended_at,
        resume_attempts: record.resume_attempts,
        resume_hook_pending: record.resume_hook_pending,
        last_error: record.last_error,
        pending: pending
            .into_iter()
            .map(|h| ScalingPending {
                instance_id: h.instance_id,
                instance_name: h.instance_name,
                held_at: h.held_at,
                state: if h.joined { "catching-up" } else { "held" }.to_owned(),
            })
            .collect(),
        activities: activities
            .into_iter()
            .map(|a| ScalingActivity {
                instance_id: a.instance_id,
                instance_name: a.instance_name,
                kind: a.kind,
                at: a.at,
            })
            .collect(),
        hook_runs: runs
            .into_iter()
            .map(|r| HookRun {
                hook: r.hook,
                release_id: r.release_id,
                attempt: r.attempt,
                started_at: r.started_at,
                finished_at: r.finished_at,
                exit_code: r.exit_code,
                output: r.output,
                error: r.error,
            })
            .collect(),
    })
}

#[utoipa::path(post, path = "/api/v1/scaling-groups", request_body = ScalingGroupCreate,
    responses((status = 201, body = ScalingGroup), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ScalingGroupCreate>,
) -> ApiResult<(StatusCode, Json<ScalingGroup>)> {
    validate_name("name", &body.name)?;
    validate_command("on_suspend", &body.on_suspend)?;
    validate_command("on_resume", &body.on_resume)?;
    // The application and group are fields of the body, so a missing one is a
    // 400 naming the field rather than a 404 of the path.
    match state.store.group_fetch(&body.app, &body.group).await {
        Ok(_) => {}
        Err(StoreError::NotFound { kind, name }) => {
            let field = if kind == "application" {
                "app"
            } else {
                "group"
            };
            return Err(ApiError::invalid(
                field,
                format!("{field}: {kind} {name:?} not found"),
            ));
        }
        Err(err) => return Err(err.into()),
    }
    let record = ScalingGroupRecord {
        name: body.name,
        app: body.app,
        group: body.group,
        on_suspend: body.on_suspend,
        on_resume: body.on_resume,
        created_at: chrono::Utc::now(),
        state: ScalingState::Active,
        held_by: None,
        suspended_at: None,
        last_release: None,
        suspend_hook_pending: false,
        resume_hook_pending: false,
        resume_attempts: 0,
        next_hook_at: None,
        last_error: None,
    };
    state.store.scaling_group_create(&record).await?;
    Ok((StatusCode::CREATED, Json(view(&state, record).await?)))
}

#[utoipa::path(get, path = "/api/v1/scaling-groups",
    responses((status = 200, body = Vec<ScalingGroup>)), security(("bearer" = [])))]
pub async fn list(_: Admin, State(state): State<AppState>) -> ApiResult<Json<Vec<ScalingGroup>>> {
    let mut groups = Vec::new();
    for record in state.store.scaling_group_list().await? {
        groups.push(view(&state, record).await?);
    }
    Ok(Json(groups))
}

#[utoipa::path(get, path = "/api/v1/scaling-groups/{name}", params(("name" = String, Path)),
    responses((status = 200, body = ScalingGroup), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<ScalingGroup>> {
    let record = state.store.scaling_group_fetch(&name).await?;
    Ok(Json(view(&state, record).await?))
}

#[utoipa::path(delete, path = "/api/v1/scaling-groups/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.store.scaling_group_delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
