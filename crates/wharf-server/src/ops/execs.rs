//! Group execs: a script run with bash on the instances of a group (or some of
//! them), in batches. An exec is stored as a release of kind `exec` without a
//! deployment, so the driver, the hand-out of work, the agents' reports and the
//! step output storage are the release's; what differs is decided here and where
//! the kind is checked: a failing instance never stops the others (no failure
//! limit), the group's deployment never changes, and the agent runs one `exec`
//! step.

use super::releases::{self, pending_tasks};
use super::{Caller, Conflict, OpError, OpResult, Role};
use crate::secrets::random_id_bytes;
use crate::state::AppState;
use crate::views;
use wharf_api::{Exec, ExecCreate, Release, StepLog};
use wharf_domain::release::{
    plan_batches, validate_batches, PauseMode, ReleaseKind, ReleaseState, MAX_BATCHES,
};
use wharf_store::{ExecRecord, ReleaseRecord, StoreError};

/// The timeout of a script when none is given: ten minutes.
pub const DEFAULT_TIMEOUT_SECS: u32 = 600;
/// The longest timeout accepted: one day.
pub const MAX_TIMEOUT_SECS: u32 = 86_400;
/// The largest script accepted.
pub const MAX_SCRIPT_BYTES: usize = 256 * 1024;
/// Time the driver allows beyond the script's timeout for the agent to get the
/// task, kill the process group and report.
pub const DEADLINE_SLACK_SECS: u32 = 60;

/// Checks a user name as `useradd` accepts it by default.
fn validate_user(user: &str) -> OpResult<()> {
    let mut chars = user.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = user
        .chars()
        .skip(1)
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !first_ok || !rest_ok || user.len() > 32 {
        return Err(OpError::invalid(
            "as_user",
            format!("as_user: {user:?} is not a user name (lowercase letters, digits, _ and -, at most 32 characters)"),
        ));
    }
    Ok(())
}

/// Checks an exec as asked for, plans its batches and stores it.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    app: String,
    group: String,
    body: ExecCreate,
) -> OpResult<ReleaseRecord> {
    caller.require(Role::Operator, Some(&app))?;
    if body.script.trim().is_empty() {
        return Err(OpError::invalid("script", "script: must not be empty"));
    }
    if body.script.len() > MAX_SCRIPT_BYTES {
        return Err(OpError::invalid(
            "script",
            format!("script: must be at most {MAX_SCRIPT_BYTES} bytes"),
        ));
    }
    if body.script.contains('\0') {
        return Err(OpError::invalid(
            "script",
            "script: must not contain NUL bytes",
        ));
    }
    let timeout_secs = body.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if timeout_secs == 0 || timeout_secs > MAX_TIMEOUT_SECS {
        return Err(OpError::invalid(
            "timeout_secs",
            format!("timeout_secs: must be from 1 to {MAX_TIMEOUT_SECS} (one day)"),
        ));
    }
    let batches = body.batches.unwrap_or(1);
    validate_batches(batches)?;
    if body.concurrency == Some(0) {
        return Err(OpError::invalid(
            "concurrency",
            "concurrency: must be at least 1",
        ));
    }
    if let Some(user) = &body.as_user {
        validate_user(user)?;
    }
    state.store.group_fetch(&app, &group).await?;
    let mut members = state.store.group_members(&app, &group).await?;
    if let Some(wanted) = &body.instances {
        if wanted.is_empty() {
            return Err(OpError::invalid(
                "instances",
                "instances: name at least one instance, or leave it out for the whole group",
            ));
        }
        for name in wanted {
            if !members
                .iter()
                .any(|m| &m.instance.id == name || &m.instance.name == name)
            {
                return Err(OpError::invalid(
                    "instances",
                    format!("instances: {name:?} is not an instance of group {group:?} of application {app:?}"),
                ));
            }
        }
        members.retain(|m| {
            wanted
                .iter()
                .any(|w| w == &m.instance.id || w == &m.instance.name)
        });
    }
    if members.is_empty() {
        return Err(OpError::conflict(
            Conflict::EmptyGroup,
            format!(
                "group {group:?} of application {app:?} has no instances to run on; add some with `wharf group add-instances`"
            ),
        ));
    }
    let mut batch_count = batches;
    if let Some(concurrency) = body.concurrency {
        let needed = members.len().div_ceil(concurrency as usize);
        if needed > MAX_BATCHES as usize {
            return Err(OpError::invalid(
                "concurrency",
                format!(
                    "concurrency: {concurrency} at a time needs {needed} batches for {} instances, more than {MAX_BATCHES}",
                    members.len()
                ),
            ));
        }
        batch_count = batch_count.max(needed as u32);
    }
    let sizes = plan_batches(members.len(), batch_count);
    let id = format!("x-{}", hex::encode(random_id_bytes()));
    let now = chrono::Utc::now();
    let total = members.len() as u32;
    let tasks = pending_tasks(&id, members, &sizes);
    let release = ReleaseRecord {
        id: id.clone(),
        app,
        group,
        deployment: String::new(),
        state: ReleaseState::Pending,
        pause: PauseMode::Auto,
        batch_count: sizes.len() as u32,
        batch_interval_secs: 0,
        // Every instance may fail: an exec reports per host and never stops.
        max_failures: total,
        rollback_on_failure: false,
        kind: ReleaseKind::Exec.as_str().to_owned(),
        rollback_of: None,
        continued_through: 0,
        created_at: now,
        started_at: None,
        finished_at: None,
        message: None,
    };
    let exec = ExecRecord {
        release_id: id,
        script: body.script,
        timeout_secs,
        as_user: body.as_user,
    };
    match state.store.exec_create(&release, &exec, &tasks).await {
        Ok(()) => {}
        Err(StoreError::ActiveRelease { group, release }) => {
            return Err(OpError::conflict(
                Conflict::ActiveRelease,
                format!(
                    "group {group} already has an active operation, {release}; only one release or exec runs on a group at a time — wait for it to end or cancel it"
                ),
            ))
        }
        Err(err) => return Err(err.into()),
    }
    tracing::info!(exec = %release.id, app = %release.app, group = %release.group,
        instances = tasks.len(), batches = release.batch_count, by = %caller, "exec created");
    state.wakeups.wake_driver();
    Ok(release)
}

/// The full view of an exec (with batches, instances and steps).
pub async fn view(state: &AppState, caller: &Caller, id: &str) -> OpResult<Exec> {
    let (release, exec) = fetch(state, caller, id).await?;
    let tasks = state.store.task_list(id).await?;
    let steps = state.store.step_list(id, None).await?;
    Ok(to_exec(views::release(release, &tasks, Some(&steps)), exec))
}

/// Execs, newest first, with their counts (no batches).
pub async fn list(
    state: &AppState,
    caller: &Caller,
    app: Option<&str>,
    group: Option<&str>,
    limit: u32,
) -> OpResult<Vec<Exec>> {
    if group.is_some() && app.is_none() {
        return Err(OpError::invalid("group", "group: name the application too"));
    }
    match app {
        Some(app) => caller.require(Role::Viewer, Some(app))?,
        None => caller.require_role(Role::Viewer)?,
    }
    let mut views = Vec::new();
    for release in state.store.exec_list(app, group, limit).await? {
        if !caller.may_touch(Some(&release.app)) {
            continue;
        }
        let (_, exec) = state.store.exec_fetch(&release.id).await?;
        let tasks = state.store.task_list(&release.id).await?;
        views.push(to_exec(views::release(release, &tasks, None), exec));
    }
    Ok(views)
}

/// An exec by id, with a 404 that says "exec".
pub async fn fetch(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> OpResult<(ReleaseRecord, ExecRecord)> {
    let (release, exec) = match state.store.exec_fetch(id).await {
        Err(StoreError::NotFound { .. }) => {
            return Err(OpError::not_found(format!("no exec {id}")))
        }
        other => other?,
    };
    caller.require(Role::Viewer, Some(&release.app))?;
    Ok((release, exec))
}

/// `cancel` of an exec: as a release's, with a 404 that says "exec".
pub async fn cancel(state: &AppState, caller: &Caller, id: &str) -> OpResult<Exec> {
    fetch(state, caller, id).await?;
    releases::cancel(state, caller, id).await?;
    view(state, caller, id).await
}

/// The output of an exec's steps, optionally of one instance and one step.
pub async fn step_logs(
    state: &AppState,
    caller: &Caller,
    id: &str,
    instance: Option<&str>,
    step: Option<&str>,
) -> OpResult<Vec<StepLog>> {
    fetch(state, caller, id).await?;
    releases::step_logs(state, caller, id, instance, step).await
}

fn to_exec(view: Release, exec: ExecRecord) -> Exec {
    Exec {
        id: view.id,
        app: view.app,
        group: view.group,
        state: view.state,
        script: exec.script,
        timeout_secs: exec.timeout_secs,
        as_user: exec.as_user,
        batch_count: view.batch_count,
        message: view.message,
        created_at: view.created_at,
        started_at: view.started_at,
        finished_at: view.finished_at,
        counts: view.counts,
        batches: view.batches,
    }
}
