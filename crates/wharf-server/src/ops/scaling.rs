//! Scaling groups, each bound to one application group, with their lease state,
//! held instances, activities and hook runs. The lease itself is the engine's
//! (`engine/scaling.rs`).

use super::{Caller, OpError, OpResult, Role};
use crate::state::AppState;
use wharf_api::{HookRun, ScalingActivity, ScalingGroup, ScalingGroupCreate, ScalingPending};
use wharf_domain::names::validate_name;
use wharf_store::{ScalingGroupRecord, ScalingState, StoreError};

/// The longest on-suspend or on-resume command accepted.
const MAX_COMMAND_BYTES: usize = 8 * 1024;

/// How many activities and hook runs `show` returns.
const HISTORY: u32 = 20;

fn validate_command(field: &str, command: &Option<String>) -> OpResult<()> {
    if let Some(command) = command {
        if command.trim().is_empty() || command.len() > MAX_COMMAND_BYTES || command.contains('\0')
        {
            return Err(OpError::invalid(
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
pub async fn view(state: &AppState, record: ScalingGroupRecord) -> OpResult<ScalingGroup> {
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

pub async fn create(
    state: &AppState,
    caller: &Caller,
    body: ScalingGroupCreate,
) -> OpResult<ScalingGroup> {
    caller.require(Role::Operator, Some(&body.app))?;
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
            return Err(OpError::invalid(
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
    view(state, record).await
}

pub async fn list(state: &AppState, caller: &Caller) -> OpResult<Vec<ScalingGroup>> {
    caller.require_role(Role::Viewer)?;
    let mut groups = Vec::new();
    for record in state.store.scaling_group_list().await? {
        if caller.may_touch(Some(&record.app)) {
            groups.push(view(state, record).await?);
        }
    }
    Ok(groups)
}

/// The name of the scaling group bound to `app`/`group`, if any.
pub async fn bound_to(
    state: &AppState,
    caller: &Caller,
    app: &str,
    group: &str,
) -> OpResult<Option<String>> {
    caller.require(Role::Viewer, Some(app))?;
    Ok(state
        .store
        .scaling_group_list()
        .await?
        .into_iter()
        .find(|s| s.app == app && s.group == group)
        .map(|s| s.name))
}

pub async fn show(state: &AppState, caller: &Caller, name: &str) -> OpResult<ScalingGroup> {
    let record = state.store.scaling_group_fetch(name).await?;
    caller.require(Role::Viewer, Some(&record.app))?;
    view(state, record).await
}

pub async fn delete(state: &AppState, caller: &Caller, name: &str) -> OpResult<()> {
    let record = state.store.scaling_group_fetch(name).await?;
    caller.require(Role::Operator, Some(&record.app))?;
    state.store.scaling_group_delete(name).await?;
    Ok(())
}
