//! Releases: creating one (from a request, as a rollback, or as the driver's
//! automatic rollback and catch-up), `continue`, `cancel`, and reading them —
//! lists, the full view, its version, the steps' output.
//!
//! Creating a release checks the request, fixes the target set (the group's
//! members at this moment), splits it into batches and stores release and tasks in
//! one transaction.

use super::{Caller, Conflict, OpError, OpResult, Role};
use crate::release_views::{self, Version};
use crate::secrets::random_id_bytes;
use crate::state::AppState;
use crate::views;
use axum::body::Bytes;
use wharf_api::{Release, ReleaseCreate, StepLog};
use wharf_domain::ids::ReleaseId;
use wharf_domain::release::{
    plan_batches, validate_batches, PauseMode, ReleaseKind, ReleaseState, StepName,
};
use wharf_store::{MemberRecord, ReleaseRecord, StoreError, TaskRecord, TaskState};

/// The longest pause between batches accepted: one day.
pub const MAX_BATCH_INTERVAL_SECS: u32 = 86_400;

/// The kind of a stored release. Every row holds one of the kinds' names (the
/// store writes nothing else), so an unknown one is read as a plain release.
pub fn kind_of(release: &ReleaseRecord) -> ReleaseKind {
    ReleaseKind::parse(&release.kind).unwrap_or(ReleaseKind::Release)
}

/// A release as asked for.
#[derive(Debug, Clone)]
pub struct NewRelease {
    pub app: String,
    pub group: String,
    pub deployment: String,
    pub batches: u32,
    pub pause: PauseMode,
    pub batch_interval_secs: u32,
    pub max_failures: u32,
    pub rollback_on_failure: bool,
    pub kind: ReleaseKind,
    pub rollback_of: Option<String>,
    /// Only these instances (still members of the group); all members when `None`.
    pub only_instances: Option<Vec<String>>,
}

/// Plans and stores a release and wakes the driver.
pub async fn create(state: &AppState, caller: &Caller, new: NewRelease) -> OpResult<ReleaseRecord> {
    caller.require(Role::Deployer, Some(&new.app))?;
    let (release, tasks) = plan(state, new).await?;
    state.store.release_create(&release, &tasks).await?;
    tracing::info!(release = %release.id, app = %release.app, group = %release.group,
        deployment = %release.deployment, instances = tasks.len(), batches = release.batch_count, by = %caller, "release created");
    release_views::release_created(state, &release.id, tasks.len()).await;
    state.wakeups.wake_driver();
    Ok(release)
}

/// Checks a release as asked for and plans it (target set, batches, tasks)
/// without storing anything.
pub async fn plan(state: &AppState, new: NewRelease) -> OpResult<(ReleaseRecord, Vec<TaskRecord>)> {
    validate_batches(new.batches)?;
    if new.batch_interval_secs > MAX_BATCH_INTERVAL_SECS {
        return Err(OpError::invalid(
            "batch_interval_secs",
            format!("batch_interval_secs: must be at most {MAX_BATCH_INTERVAL_SECS} (one day)"),
        ));
    }
    state.store.group_fetch(&new.app, &new.group).await?;
    match state
        .store
        .deployment_fetch(&new.app, &new.deployment)
        .await
    {
        Ok(_) => {}
        Err(StoreError::NotFound { .. }) => {
            return Err(OpError::invalid(
                "deployment",
                format!(
                    "deployment: application {:?} has no deployment {:?}",
                    new.app, new.deployment
                ),
            ))
        }
        Err(err) => return Err(err.into()),
    }
    let mut members = state.store.group_members(&new.app, &new.group).await?;
    if let Some(only) = &new.only_instances {
        members.retain(|m| only.contains(&m.instance.id));
    }
    if members.is_empty() {
        return Err(OpError::conflict(
            Conflict::EmptyGroup,
            format!(
                "group {:?} of application {:?} has no instances to publish to; add some with `wharf group add-instances`",
                new.group, new.app
            ),
        ));
    }
    let sizes = plan_batches(members.len(), new.batches);
    let now = chrono::Utc::now();
    let id = ReleaseId::from_random(random_id_bytes()).to_string();
    let tasks = pending_tasks(&id, members, &sizes);
    let release = ReleaseRecord {
        id,
        app: new.app,
        group: new.group,
        deployment: new.deployment,
        state: ReleaseState::Pending,
        pause: new.pause,
        batch_count: sizes.len() as u32,
        batch_interval_secs: new.batch_interval_secs,
        max_failures: new.max_failures,
        rollback_on_failure: new.rollback_on_failure,
        kind: new.kind.as_str().to_owned(),
        rollback_of: new.rollback_of,
        continued_through: 0,
        created_at: now,
        started_at: None,
        finished_at: None,
        message: None,
    };
    Ok((release, tasks))
}

/// One pending task per member, assigned to batches in member order: the first
/// `sizes[0]` members to batch 0, the next `sizes[1]` to batch 1, and so on.
pub(crate) fn pending_tasks(
    release_id: &str,
    members: Vec<MemberRecord>,
    sizes: &[usize],
) -> Vec<TaskRecord> {
    let mut tasks = Vec::with_capacity(members.len());
    let mut members = members.into_iter();
    for (batch, size) in sizes.iter().enumerate() {
        for member in members.by_ref().take(*size) {
            tasks.push(TaskRecord {
                release_id: release_id.to_owned(),
                instance_id: member.instance.id,
                instance_name: member.instance.name,
                batch: batch as u32,
                state: TaskState::Pending,
                dispatched_at: None,
                started_at: None,
                finished_at: None,
                deadline: None,
                image_digest: None,
                message: None,
            });
        }
    }
    tasks
}

/// A release with its batches, instances and steps.
pub async fn view(state: &AppState, caller: &Caller, id: &str) -> OpResult<Release> {
    let wharf_store::ReleaseDetail {
        release,
        tasks,
        steps,
    } = state.store.release_detail(id).await?;
    caller.require(Role::Viewer, Some(&release.app))?;
    let rolled_back_by = release_views::rolled_back_by(state, &release).await?;
    let mut view = views::release(release, &tasks, Some(&steps));
    view.rolled_back_by = rolled_back_by;
    Ok(view)
}

/// Creates a release of `app`/`group` as asked for by a `ReleaseCreate` body.
pub async fn create_from_request(
    state: &AppState,
    caller: &Caller,
    app: String,
    group: String,
    body: ReleaseCreate,
) -> OpResult<ReleaseRecord> {
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
    create(state, caller, new).await
}

/// Publishes the deployment that was current before the group's current one.
pub async fn rollback_group(
    state: &AppState,
    caller: &Caller,
    app: String,
    group: String,
) -> OpResult<ReleaseRecord> {
    caller.require(Role::Deployer, Some(&app))?;
    let record = state.store.group_fetch(&app, &group).await?;
    let Some(previous) = record.previous_deployment else {
        return Err(OpError::conflict(
            Conflict::NothingToRollBack,
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
    create(state, caller, new).await
}

/// The record of one release (or exec) the caller may see.
pub async fn fetch(state: &AppState, caller: &Caller, id: &str) -> OpResult<ReleaseRecord> {
    fetch_for(state, caller, id, Role::Viewer).await
}

/// Every active release (and exec) the caller may see, newest first, with their
/// counts (no batches).
pub async fn active(state: &AppState, caller: &Caller) -> OpResult<Vec<Release>> {
    caller.require_role(Role::Viewer)?;
    let mut active = Vec::new();
    for record in state.store.release_list_active().await? {
        if caller.may_touch(Some(&record.app)) {
            let tasks = state.store.task_list(&record.id).await?;
            active.push(views::release(record, &tasks, None));
        }
    }
    active.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    Ok(active)
}

/// Fetches a release and checks that the caller may act on its application with
/// `needs`.
async fn fetch_for(
    state: &AppState,
    caller: &Caller,
    id: &str,
    needs: Role,
) -> OpResult<ReleaseRecord> {
    let release = state.store.release_fetch(id).await?;
    caller.require(needs, Some(&release.app))?;
    Ok(release)
}

/// `continue`: a paused release dispatches its next batch.
pub async fn continue_release(state: &AppState, caller: &Caller, id: &str) -> OpResult<()> {
    let release = fetch_for(state, caller, id, Role::Deployer).await?;
    if release.state != ReleaseState::Paused {
        return Err(OpError::conflict(
            Conflict::NotPaused,
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
        return Err(OpError::conflict(
            Conflict::NotPaused,
            format!("release {id} is no longer paused"),
        ));
    }
    tracing::info!(release = %id, batch = next + 1, by = %caller, "release continued");
    state.wakeups.wake_driver();
    Ok(())
}

/// `cancel`: an active release (or exec) dispatches no further work.
pub async fn cancel(state: &AppState, caller: &Caller, id: &str) -> OpResult<()> {
    let release = state.store.release_fetch(id).await;
    // A missing release is the store's 404 below, as it always was.
    if let Ok(release) = &release {
        let needs = match kind_of(release) {
            ReleaseKind::Exec => Role::Operator,
            _ => Role::Deployer,
        };
        caller.require(needs, Some(&release.app))?;
    }
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
        return Err(OpError::conflict(
            Conflict::AlreadyFinished,
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
    tracing::info!(release = %id, by = %caller, "release cancelled");
    state.wakeups.wake_driver();
    Ok(())
}

/// Releases, newest first, with their counts (no batches).
pub async fn list(
    state: &AppState,
    caller: &Caller,
    app: Option<&str>,
    group: Option<&str>,
    limit: u32,
) -> OpResult<Vec<Release>> {
    if group.is_some() && app.is_none() {
        return Err(OpError::invalid("group", "group: name the application too"));
    }
    match app {
        Some(app) => caller.require(Role::Viewer, Some(app))?,
        None => caller.require_role(Role::Viewer)?,
    }
    let releases = state.store.release_list(app, group, limit).await?;
    let mut views = Vec::with_capacity(releases.len());
    for release in releases {
        if !caller.may_touch(Some(&release.app)) {
            continue;
        }
        let tasks = state.store.task_list(&release.id).await?;
        views.push(views::release(release, &tasks, None));
    }
    Ok(views)
}

/// The version of a release (see `release_views.rs`); with `after`, waits up to
/// `wait_secs` for one that differs from it.
pub async fn version(
    state: &AppState,
    caller: &Caller,
    id: &str,
    after: Option<(&str, u64)>,
) -> OpResult<Version> {
    let version = match after {
        Some((after, wait_secs)) => {
            release_views::wait_for_change(state, id, after, wait_secs).await?
        }
        None => release_views::release_version(state, id).await?,
    };
    // The release exists (its version was read). A caller of all applications
    // needs no second read of it for its application.
    match caller.apps {
        None => caller.require_role(Role::Viewer)?,
        Some(_) => {
            fetch_for(state, caller, id, Role::Viewer).await?;
        }
    }
    Ok(version)
}

/// The full view of a release as JSON, possibly a kept copy of a large release's
/// (`release_views.rs`); `current` is the state its version was read with.
pub async fn view_json(state: &AppState, id: &str, current: ReleaseState) -> OpResult<Bytes> {
    Ok(release_views::release_json(state, id, current).await?)
}

/// The output of a release's (or exec's) steps, optionally of one instance and
/// one step.
pub async fn step_logs(
    state: &AppState,
    caller: &Caller,
    id: &str,
    instance: Option<&str>,
    step: Option<&str>,
) -> OpResult<Vec<StepLog>> {
    let tasks = state.store.task_list(id).await?;
    fetch_for(state, caller, id, Role::Viewer).await?;
    let instance_id = match instance {
        None => None,
        Some(wanted) => Some(
            tasks
                .iter()
                .find(|t| t.instance_id == wanted || t.instance_name == wanted)
                .map(|t| t.instance_id.clone())
                .ok_or_else(|| {
                    OpError::invalid(
                        "instance",
                        format!("instance: {wanted:?} is not part of release {id}"),
                    )
                })?,
        ),
    };
    let step = match step {
        None => None,
        Some(name) => Some(StepName::parse(name).ok_or_else(|| {
            OpError::invalid(
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
