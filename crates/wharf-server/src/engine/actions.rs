//! What people do to releases — create one from a request, `continue`, `cancel`,
//! roll a group back — and the full view of a release. The HTTP API and the web
//! console both call these, so both check the same rules and give the same errors.

use crate::engine::create::{create_release, NewRelease, ReleaseKind};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::views;
use axum::http::StatusCode;
use wharf_api::{Release, ReleaseCreate};
use wharf_domain::release::{PauseMode, ReleaseState};
use wharf_store::ReleaseRecord;

/// A release with its batches, instances and steps.
pub async fn release_view(state: &AppState, id: &str) -> ApiResult<Release> {
    let wharf_store::ReleaseDetail {
        release,
        tasks,
        steps,
    } = state.store.release_detail(id).await?;
    let rolled_back_by = rolled_back_by(state, &release).await?;
    let mut view = views::release(release, &tasks, Some(&steps));
    view.rolled_back_by = rolled_back_by;
    Ok(view)
}

/// The automatic rollback of `release`, if it failed and has one.
pub async fn rolled_back_by(
    state: &AppState,
    release: &ReleaseRecord,
) -> ApiResult<Option<String>> {
    if !release.rollback_on_failure {
        return Ok(None);
    }
    // The automatic rollback of a failed release is created right after it fails,
    // so it is among the group's newest releases.
    Ok(state
        .store
        .release_list(Some(&release.app), Some(&release.group), 50)
        .await?
        .into_iter()
        .find(|r| r.rollback_of.as_deref() == Some(release.id.as_str()))
        .map(|r| r.id))
}

/// Creates a release of `app`/`group` as asked for by a `ReleaseCreate` body.
pub async fn create_from_request(
    state: &AppState,
    app: String,
    group: String,
    body: ReleaseCreate,
) -> ApiResult<ReleaseRecord> {
    let pause = match body.pause.as_deref() {
        None => PauseMode::Auto,
        Some(text) => PauseMode::parse(text)?,
    };
    let new = NewRelease {
        app,
        group,
        deployment: body.deployment,
        batches: body.batches.unwrap_or(1),
        pause,
        batch_interval_secs: body.batch_interval_secs.unwrap_or(0),
        max_failures: body.max_failures.unwrap_or(0),
        rollback_on_failure: body.rollback_on_failure,
        kind: ReleaseKind::Release,
        rollback_of: None,
        only_instances: None,
    };
    create_release(state, new).await
}

/// Publishes the deployment that was current before the group's current one.
pub async fn rollback_group(
    state: &AppState,
    app: String,
    group: String,
) -> ApiResult<ReleaseRecord> {
    let record = state.store.group_fetch(&app, &group).await?;
    let Some(previous) = record.previous_deployment else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_to_roll_back",
            format!(
                "group {group:?} of application {app:?} has no earlier deployment to roll back to"
            ),
        ));
    };
    let new = NewRelease {
        app,
        group,
        deployment: previous,
        batches: 1,
        pause: PauseMode::Auto,
        batch_interval_secs: 0,
        max_failures: 0,
        rollback_on_failure: false,
        kind: ReleaseKind::Rollback,
        rollback_of: None,
        only_instances: None,
    };
    create_release(state, new).await
}

/// `continue`: a paused release dispatches its next batch.
pub async fn continue_release(state: &AppState, id: &str) -> ApiResult<()> {
    let release = state.store.release_fetch(id).await?;
    if release.state != ReleaseState::Paused {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_paused",
            format!("release {id} is {}, not paused", release.state.as_str()),
        ));
    }
    // The next batch is the lowest one with a task that has not ended.
    let tasks = state.store.task_list(id).await?;
    let next = tasks
        .iter()
        .filter(|t| !t.state.is_terminal())
        .map(|t| t.batch)
        .min()
        .unwrap_or(release.batch_count);
    if !state.store.release_continue(id, next + 1).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_paused",
            format!("release {id} is no longer paused"),
        ));
    }
    tracing::info!(release = %id, batch = next + 1, "release continued");
    state.wakeups.wake_driver();
    Ok(())
}

/// `cancel`: an active release dispatches no further work.
pub async fn cancel_release(state: &AppState, id: &str) -> ApiResult<()> {
    let now = chrono::Utc::now();
    let moved = state
        .store
        .release_transition(
            id,
            &[
                ReleaseState::Pending,
                ReleaseState::Running,
                ReleaseState::Paused,
            ],
            ReleaseState::Cancelled,
            Some("cancelled by an operator"),
            now,
        )
        .await?;
    if !moved {
        let release = state.store.release_fetch(id).await?;
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_finished",
            format!("release {id} already ended: {}", release.state.as_str()),
        ));
    }
    state
        .store
        .task_cancel_unstarted(
            id,
            "the release was cancelled before this instance's turn",
            now,
        )
        .await?;
    tracing::info!(release = %id, "release cancelled");
    state.wakeups.wake_driver();
    Ok(())
}
