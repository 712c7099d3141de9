//! Creating a release: checks the request, fixes the target set (the group's
//! members at this moment), splits it into batches and stores release and tasks in
//! one transaction. Used by `release create`, `release rollback` and the automatic
//! rollback of a failed release.

use crate::error::{ApiError, ApiResult};
use crate::secrets::random_id_bytes;
use crate::state::AppState;
use axum::http::StatusCode;
use wharf_domain::ids::ReleaseId;
use wharf_domain::release::{plan_batches, validate_batches, PauseMode, ReleaseState};
use wharf_store::{MemberRecord, ReleaseRecord, StoreError, TaskRecord, TaskState};

/// The longest pause between batches accepted: one day.
pub const MAX_BATCH_INTERVAL_SECS: u32 = 86_400;

/// What kind of release this is, shown in lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseKind {
    Release,
    Rollback,
    /// Brings instances that joined a group through a scaling group up to the
    /// group's current deployment.
    CatchUp,
}

impl ReleaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Rollback => "rollback",
            Self::CatchUp => "catch-up",
        }
    }
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

pub async fn create_release(state: &AppState, new: NewRelease) -> ApiResult<ReleaseRecord> {
    let (release, tasks) = plan_release(state, new).await?;
    state.store.release_create(&release, &tasks).await?;
    tracing::info!(release = %release.id, app = %release.app, group = %release.group,
        deployment = %release.deployment, instances = tasks.len(), batches = release.batch_count, "release created");
    crate::release_views::release_created(state, &release.id, tasks.len()).await;
    state.wakeups.wake_driver();
    Ok(release)
}

/// Checks a release as asked for and plans it (target set, batches, tasks)
/// without storing anything.
pub async fn plan_release(
    state: &AppState,
    new: NewRelease,
) -> ApiResult<(ReleaseRecord, Vec<TaskRecord>)> {
    validate_batches(new.batches)?;
    if new.batch_interval_secs > MAX_BATCH_INTERVAL_SECS {
        return Err(ApiError::invalid(
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
            return Err(ApiError::invalid(
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
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "empty_group",
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
