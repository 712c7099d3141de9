//! The release driver: a reconciler. On every pass it re-reads each active release
//! from the store and takes the next step — start it, fail tasks whose instance went
//! offline or whose deadline passed, dispatch the next batch, pause, succeed or fail.
//! Every step is a conditional update in the store, so a pass may be repeated, or
//! run after a restart, without doing anything twice.

use crate::ops::execs::DEADLINE_SLACK_SECS;
use crate::ops::releases::{self, kind_of, NewRelease};
use crate::state::AppState;
use chrono::{DateTime, Duration, Utc};
use wharf_api::WorkAssignment;
use wharf_domain::deployment::Timeouts;
use wharf_domain::release::{PauseMode, ReleaseKind, ReleaseState};
use wharf_store::{LiveTask, ReleaseRecord, StoreError, TaskRecord, TaskState};

/// How often the driver looks at active releases when nothing wakes it: the
/// resolution of deadlines, batch intervals and offline detection.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(1000);

/// The least time between two looks for lost tasks (offline instances, passed
/// deadlines). That look reads every dispatched or running task with its instance,
/// so it is not repeated on each of the many passes agents' reports cause during a
/// large release; offline detection and deadlines keep the resolution of `TICK`.
const LOST_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs until the server shuts down.
pub async fn run(state: AppState) {
    let wake = state.wakeups.driver();
    let mut last_lost_check: Option<tokio::time::Instant> = None;
    let mut last_pass: Option<tokio::time::Instant> = None;
    loop {
        // Passes come at least every `TICK`. A longer gap means the process was
        // paused or a pass waited on a stalled store: heartbeats of that time may
        // not have landed yet, so every instance's offline clock starts again.
        let gap_limit = TICK + state.liveness.stall_after();
        if let Some(gap) = last_pass
            .map(|at| at.elapsed())
            .filter(|gap| *gap > gap_limit)
        {
            tracing::warn!(gap_ms = gap.as_millis() as u64, "the release driver did not run for a while; every instance has one offline threshold to be heard from");
            state.hearing.restart_at(Utc::now());
        }
        last_pass = Some(tokio::time::Instant::now());
        let check_lost = last_lost_check.is_none_or(|at| at.elapsed() >= LOST_CHECK_INTERVAL);
        if check_lost {
            last_lost_check = Some(tokio::time::Instant::now());
        }
        if let Err(err) = reconcile_pass(&state, check_lost).await {
            tracing::error!(error = ?err, "release driver pass failed; retrying");
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = state.wakeups.shutting_down() => return,
        }
    }
}

/// One pass over every active release; with `check_lost`, tasks of offline
/// instances and tasks past their deadline fail first.
async fn reconcile_pass(state: &AppState, check_lost: bool) -> Result<(), StoreError> {
    for release in state.store.release_list_active().await? {
        let id = release.id.clone();
        if let Err(err) = reconcile(state, release, check_lost).await {
            tracing::error!(release = %id, error = ?err, "reconciling a release failed");
        }
    }
    // After the releases, so that a release that ended in this pass resumes its
    // scaling group at once.
    crate::engine::scaling::reconcile(state).await
}

async fn reconcile(
    state: &AppState,
    release: ReleaseRecord,
    check_lost: bool,
) -> Result<(), StoreError> {
    let now = Utc::now();
    match release.state {
        ReleaseState::Pending => {
            // The lease is taken first: if the server stops in between, the next
            // pass finds the release still pending and takes it again, harmlessly.
            // An exec changes no deployment, so it takes no lease (nor does a
            // catch-up: see `suspend_for`).
            if kind_of(&release).takes_scaling_lease() {
                crate::engine::scaling::suspend_for(state, &release).await?;
            }
            state
                .store
                .release_transition(
                    &release.id,
                    &[ReleaseState::Pending],
                    ReleaseState::Running,
                    None,
                    now,
                )
                .await?;
            tracing::info!(release = %release.id, "release running");
            crate::release_views::release_changed(state, &release.id);
            state.wakeups.wake_driver();
            Ok(())
        }
        ReleaseState::Running => drive_running(state, &release, now, check_lost).await,
        // A paused release waits for `continue`; cancel is done by the API.
        _ => Ok(()),
    }
}

async fn drive_running(
    state: &AppState,
    release: &ReleaseRecord,
    now: DateTime<Utc>,
    check_lost: bool,
) -> Result<(), StoreError> {
    // A pass reads per-batch counts, not every task: with thousands of instances
    // the driver runs many passes per batch.
    let mut batches = state.store.task_batch_summaries(&release.id).await?;
    // Lost tasks are looked for only while some task is under way: when a batch
    // has just ended none is, and the next batch is dispatched without first
    // reading the release's live tasks.
    let under_way = batches.iter().any(|b| b.dispatched + b.running > 0);
    if check_lost && under_way && fail_lost_tasks(state, release, now).await? {
        batches = state.store.task_batch_summaries(&release.id).await?;
    }
    let failed: u32 = batches.iter().map(|b| b.failed).sum();
    if failed > release.max_failures {
        return fail_release(state, release, failed, now).await;
    }
    let Some(current) = batches.iter().find(|b| b.open() > 0) else {
        return succeed_release(state, release, failed, now).await;
    };
    let batch = current.batch;
    if current.started() {
        // The batch is under way; reports and deadlines move it on.
        return Ok(());
    }
    if batch > 0
        && release
            .pause
            .pauses_after(batch as usize - 1, release.batch_count as usize)
        && release.continued_through < batch
    {
        if state
            .store
            .release_transition(
                &release.id,
                &[ReleaseState::Running],
                ReleaseState::Paused,
                None,
                now,
            )
            .await?
        {
            tracing::info!(release = %release.id, after_batch = batch, "release paused; waiting for continue");
            crate::release_views::release_changed(state, &release.id);
        }
        return Ok(());
    }
    if batch > 0 && release.pause == PauseMode::Auto && release.batch_interval_secs > 0 {
        let previous_end = batches
            .iter()
            .find(|b| b.batch == batch - 1)
            .and_then(|b| b.last_finished_at);
        if let Some(end) = previous_end {
            if now < end + Duration::seconds(release.batch_interval_secs as i64) {
                return Ok(());
            }
        }
    }
    dispatch_batch(state, release, batch, now).await
}

async fn dispatch_batch(
    state: &AppState,
    release: &ReleaseRecord,
    batch: u32,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    // The work is built (or found kept, after the first batch) before the
    // dispatch: the agents' polls find it ready instead of queueing to build it,
    // and its timeouts give the tasks' deadline without another read while the
    // batch waits. A failure is left to the polls, which answer it; the
    // deadline then comes from the records.
    let budget = match crate::ops::work::assignment_template(state, &release.id).await {
        Ok(work) => task_budget_secs(&work),
        Err(_) => recorded_task_budget_secs(state, release).await?,
    };
    let deadline = now + Duration::seconds(i64::from(budget));
    let dispatched = state
        .store
        .task_dispatch_batch(&release.id, batch, now, deadline)
        .await?;
    tracing::info!(
        release = %release.id,
        batch = batch + 1,
        instances = dispatched.len(),
        // From the pass's look at the release (the tasks' `dispatched_at`) to the
        // dispatch stored: the part of the agents' wait spent before any is woken.
        ms = (Utc::now() - now).num_microseconds().unwrap_or(0) as f64 / 1000.0,
        "batch dispatched"
    );
    state.dispatch_first.dispatched(dispatched.len());
    for instance in &dispatched {
        state.wakeups.wake_agent(instance, &release.id);
    }
    Ok(())
}

/// How long an instance has for the steps of `work`: an exec's timeout with
/// slack, or every step's timeout with the deployment's margin.
fn task_budget_secs(work: &WorkAssignment) -> u32 {
    if work.kind == ReleaseKind::Exec.as_str() {
        return work.timeouts.script_secs + DEADLINE_SLACK_SECS;
    }
    Timeouts {
        pull_secs: work.timeouts.pull_secs,
        script_secs: work.timeouts.script_secs,
        verify_secs: work.timeouts.verify_secs,
    }
    .task_budget_secs(work.image.is_some(), work.verify.is_some())
}

/// [`task_budget_secs`] from the exec or deployment records.
async fn recorded_task_budget_secs(
    state: &AppState,
    release: &ReleaseRecord,
) -> Result<u32, StoreError> {
    if kind_of(release) == ReleaseKind::Exec {
        let (_, exec) = state.store.exec_fetch(&release.id).await?;
        return Ok(exec.timeout_secs + DEADLINE_SLACK_SECS);
    }
    let deployment = state
        .store
        .deployment_fetch(&release.app, &release.deployment)
        .await?;
    Ok(deployment
        .timeouts
        .task_budget_secs(deployment.image.is_some(), deployment.verify.is_some()))
}

/// Fails dispatched or running tasks whose instance is offline or gone, or whose
/// deadline passed; whether it failed any.
async fn fail_lost_tasks(
    state: &AppState,
    release: &ReleaseRecord,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let liveness = state.liveness_judge();
    let mut failed_any = false;
    for LiveTask {
        task,
        instance_heartbeat,
    } in state.store.task_list_live(&release.id).await?
    {
        let reason = match instance_heartbeat {
            None => Some("the instance was deleted".to_owned()),
            Some(heartbeat) if liveness.status(heartbeat, now) == "offline" => Some(format!(
                "the instance went offline (no heartbeat for {} s)",
                liveness.offline_after.as_secs()
            )),
            _ => match task.deadline {
                Some(deadline) if liveness.past_deadline(deadline, now) => {
                    Some("the instance did not finish its steps within their timeouts".to_owned())
                }
                _ => None,
            },
        };
        if let Some(reason) = reason {
            if state
                .store
                .task_fail(&release.id, &task.instance_id, &reason, now)
                .await?
            {
                tracing::warn!(release = %release.id, instance = %task.instance_id, reason, "instance failed");
                failed_any = true;
            }
        }
    }
    Ok(failed_any)
}

/// Every task ended. A release records the group's deployment; an exec (which
/// tolerates every failure) says how many instances failed.
async fn succeed_release(
    state: &AppState,
    release: &ReleaseRecord,
    failed: u32,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let message = if !kind_of(release).publishes() {
        (failed > 0).then(|| format!("{failed} instance(s) failed"))
    } else {
        // The group's deployment is recorded first: if the server stops in between,
        // the next pass finds the release still running and records it again,
        // harmlessly.
        state
            .store
            .group_set_current_deployment(&release.app, &release.group, &release.deployment)
            .await?;
        None
    };
    if state
        .store
        .release_transition(
            &release.id,
            &[ReleaseState::Running],
            ReleaseState::Succeeded,
            message.as_deref(),
            now,
        )
        .await?
    {
        tracing::info!(release = %release.id, "release succeeded");
        crate::release_views::release_changed(state, &release.id);
    }
    Ok(())
}

async fn fail_release(
    state: &AppState,
    release: &ReleaseRecord,
    failed: u32,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let message = format!(
        "{failed} instance(s) failed, more than the {} tolerated",
        release.max_failures
    );
    state
        .store
        .task_cancel_unstarted(
            &release.id,
            "the release failed before this instance's turn",
            now,
        )
        .await?;
    // The rollback is planned first and stored in the same transaction as the
    // failure: no reader sees the failed release without its rollback, and a
    // restart in between cannot lose it.
    let rollback = if release.rollback_on_failure {
        let tasks = state.store.task_list(&release.id).await?;
        plan_automatic_rollback(state, release, &tasks).await
    } else {
        None
    };
    if !state
        .store
        .release_fail(
            &release.id,
            &message,
            now,
            rollback.as_ref().map(|(r, t)| (r, t.as_slice())),
        )
        .await?
    {
        return Ok(());
    }
    tracing::warn!(release = %release.id, message, "release failed");
    crate::release_views::release_changed(state, &release.id);
    if let Some((rollback, _)) = rollback {
        tracing::info!(release = %release.id, rollback = %rollback.id, "automatic rollback started");
        state.wakeups.wake_driver();
    }
    Ok(())
}

/// Plans the publication of the group's current (last successful) deployment to
/// the instances the failed release touched; `None` (logged) when there is
/// nothing to roll back to or no touched instance is still in the group.
async fn plan_automatic_rollback(
    state: &AppState,
    release: &ReleaseRecord,
    tasks: &[TaskRecord],
) -> Option<(ReleaseRecord, Vec<TaskRecord>)> {
    let group = match state.store.group_fetch(&release.app, &release.group).await {
        Ok(group) => group,
        Err(err) => {
            tracing::error!(release = %release.id, error = ?err, "cannot roll back");
            return None;
        }
    };
    let Some(previous) = group.current_deployment else {
        tracing::warn!(release = %release.id, "no earlier successful deployment to roll back to");
        return None;
    };
    let touched: Vec<String> = tasks
        .iter()
        .filter(|t| t.started_at.is_some() || t.state == TaskState::Succeeded)
        .map(|t| t.instance_id.clone())
        .collect();
    let new = NewRelease {
        app: release.app.clone(),
        group: release.group.clone(),
        deployment: previous,
        batches: 1,
        pause: PauseMode::Auto,
        batch_interval_secs: 0,
        max_failures: touched.len() as u32,
        rollback_on_failure: false,
        kind: ReleaseKind::Rollback,
        rollback_of: Some(release.id.clone()),
        only_instances: Some(touched),
    };
    match releases::plan(state, new).await {
        Ok(plan) => Some(plan),
        Err(err) => {
            tracing::error!(release = %release.id, error = ?err, "automatic rollback could not start");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_api::{PullSpec, VerifyWork};

    fn work(kind: &str, image: bool, verify: bool) -> WorkAssignment {
        WorkAssignment {
            release_id: "r-1".into(),
            instance_id: String::new(),
            app: "shop".into(),
            group: "prod".into(),
            deployment: "v1".into(),
            kind: kind.into(),
            image: image.then(|| PullSpec {
                address: "registry:5000/shop/web:v1".into(),
                registry: "registry:5000".into(),
                insecure: false,
                username: None,
                password: None,
            }),
            workdir: "/srv/shop".into(),
            start_script: "start".into(),
            stop_script: "stop".into(),
            verify: verify.then(|| VerifyWork {
                url: "http://127.0.0.1/healthz".into(),
                expect_status: 200,
                expect_body: None,
            }),
            timeouts: wharf_api::Timeouts {
                pull_secs: 30,
                script_secs: 20,
                verify_secs: 10,
            },
            steps: Vec::new(),
            as_user: None,
        }
    }

    #[test]
    fn the_budget_from_the_work_counts_the_steps_it_has() {
        // Every step's timeout (stop and start each get the script's) plus 60 s.
        assert_eq!(
            task_budget_secs(&work("docker-image", true, true)),
            30 + 40 + 10 + 60
        );
        assert_eq!(
            task_budget_secs(&work("docker-image", true, false)),
            30 + 40 + 60
        );
        assert_eq!(
            task_budget_secs(&work("command", false, true)),
            40 + 10 + 60
        );
        assert_eq!(task_budget_secs(&work("command", false, false)), 40 + 60);
        // An exec's one script, with the slack for its kill and report.
        assert_eq!(
            task_budget_secs(&work(ReleaseKind::Exec.as_str(), false, false)),
            20 + DEADLINE_SLACK_SECS
        );
    }
}
