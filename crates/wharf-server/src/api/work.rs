//! `/agent/v1/work` and `/agent/v1/releases/{id}/events`: agents long-poll for
//! their next task and report on its steps. The instance always comes from the
//! agent's credential, so an agent can neither take nor report on another
//! instance's work.

use crate::auth::Agent;
use crate::engine::driver::fail_open_step;
use crate::engine::exec::is_exec;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::time::Duration;
use wharf_api::{ErrorBody, PullSpec, StepEvent, StepEventAck, VerifyWork, WorkAssignment};
use wharf_domain::deployment::{registry_address, DeploymentKind};
use wharf_domain::release::StepName;
use wharf_store::{StepState, StoreError, TaskRecord, TaskState, EXEC_KIND};

/// The longest a poll may wait; agents ask for less than their HTTP timeout.
const MAX_WAIT_SECS: u64 = 60;
/// Output kept per step on the server: at least the last 1 MiB, plus room for the
/// store to start the kept tail on a line boundary.
pub const STEP_OUTPUT_KEEP_BYTES: usize = 1024 * 1024 + 8 * 1024;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WorkQuery {
    /// Seconds to wait for work before answering 204 (default 25, at most 60).
    wait_secs: Option<u64>,
}

#[utoipa::path(get, path = "/agent/v1/work", params(WorkQuery),
    responses((status = 200, body = WorkAssignment), (status = 204, description = "no work within the wait"), (status = 401, body = ErrorBody)))]
pub async fn poll(
    Agent(instance): Agent,
    State(state): State<AppState>,
    Query(query): Query<WorkQuery>,
) -> ApiResult<Response> {
    fail_abandoned_tasks(&state, &instance.id).await?;
    let wait = Duration::from_secs(query.wait_secs.unwrap_or(25).min(MAX_WAIT_SECS));
    let deadline = tokio::time::Instant::now() + wait;
    let wake = state.wakeups.agent(&instance.id);
    loop {
        if let Some(task) = state
            .store
            .task_claim(&instance.id, chrono::Utc::now())
            .await?
        {
            // The driver is not woken: a claimed task changes nothing it decides on
            // (the batch was under way once dispatched), and with thousands of agents
            // a pass per claim would be a pass over every task per claim.
            tracing::info!(release = %task.release_id, instance = %instance.id, "task fetched");
            return Ok(Json(assignment(&state, task).await?).into_response());
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(StatusCode::NO_CONTENT.into_response()),
            _ = state.wakeups.shutting_down() => return Ok(StatusCode::NO_CONTENT.into_response()),
        }
    }
}

/// An agent runs one task at a time and polls only between tasks, so a task still
/// running when its agent polls was abandoned: the agent restarted, or never got the
/// answer that carried the task. It fails, with the step it stopped in.
async fn fail_abandoned_tasks(state: &AppState, instance_id: &str) -> ApiResult<()> {
    let now = chrono::Utc::now();
    for task in state
        .store
        .task_list_running_for_instance(instance_id)
        .await?
    {
        let steps = state
            .store
            .step_list(&task.release_id, Some(instance_id))
            .await?;
        let open = steps
            .iter()
            .find(|s| s.state == StepState::Running)
            .map(|s| s.step.as_str());
        let reason = match open {
            Some(step) => format!("the agent restarted while step {step} was running"),
            None => "the agent restarted between steps".to_owned(),
        };
        fail_open_step(state, &task, &reason, now).await?;
        if state
            .store
            .task_finish(
                &task.release_id,
                instance_id,
                TaskState::Failed,
                None,
                Some(&reason),
                now,
            )
            .await?
        {
            tracing::warn!(release = %task.release_id, instance = instance_id, reason, "instance failed");
            state.wakeups.wake_driver();
        }
    }
    Ok(())
}

async fn assignment(state: &AppState, task: TaskRecord) -> ApiResult<WorkAssignment> {
    let release = state.store.release_fetch(&task.release_id).await?;
    if is_exec(&release) {
        let (_, exec) = state.store.exec_fetch(&release.id).await?;
        return Ok(WorkAssignment {
            release_id: release.id,
            instance_id: task.instance_id,
            app: release.app,
            group: release.group,
            deployment: String::new(),
            kind: EXEC_KIND.to_owned(),
            image: None,
            workdir: "/".to_owned(),
            start_script: exec.script,
            stop_script: String::new(),
            verify: None,
            timeouts: wharf_api::Timeouts {
                pull_secs: 0,
                script_secs: exec.timeout_secs,
                verify_secs: 0,
            },
            steps: vec![StepName::Exec.as_str().to_owned()],
            as_user: exec.as_user,
        });
    }
    let deployment = state
        .store
        .deployment_fetch(&release.app, &release.deployment)
        .await?;
    let image = match &deployment.image {
        None => None,
        Some(image) => {
            let registry = state.store.registry_fetch(&image.registry).await?;
            let endpoint = if image.private_network {
                registry
                    .private_endpoint
                    .clone()
                    .unwrap_or(registry.endpoint.clone())
            } else {
                registry.endpoint.clone()
            };
            let password = match &registry.password_sealed {
                None => None,
                Some(sealed) => Some(state.secrets.open(sealed).map_err(|_| {
                    tracing::error!(registry = %registry.name, "a registry password cannot be decrypted with this server's key");
                    ApiError::internal()
                })?),
            };
            Some(PullSpec {
                address: registry_address(
                    &endpoint,
                    &image.namespace,
                    &image.repository,
                    &image.tag,
                ),
                registry: endpoint,
                insecure: registry.insecure,
                username: registry.username.clone(),
                password,
            })
        }
    };
    let steps = StepName::plan(
        deployment.kind == DeploymentKind::DockerImage,
        deployment.verify.is_some(),
    )
    .into_iter()
    .filter(|s| *s != StepName::Fetch)
    .map(|s| s.as_str().to_owned())
    .collect();
    Ok(WorkAssignment {
        release_id: release.id,
        instance_id: task.instance_id,
        app: release.app,
        group: release.group,
        deployment: release.deployment,
        kind: deployment.kind.as_str().to_owned(),
        image,
        workdir: deployment.workdir,
        start_script: deployment.start_script,
        stop_script: deployment.stop_script,
        verify: deployment.verify.map(|v| VerifyWork {
            url: v.url,
            expect_status: v.expect_status,
            expect_body: v.expect_body,
        }),
        timeouts: wharf_api::Timeouts {
            pull_secs: deployment.timeouts.pull_secs,
            script_secs: deployment.timeouts.script_secs,
            verify_secs: deployment.timeouts.verify_secs,
        },
        steps,
        as_user: None,
    })
}

fn parse_step(name: &str) -> ApiResult<StepName> {
    StepName::parse(name)
        .ok_or_else(|| ApiError::invalid("step", format!("step: {name:?} is not a step")))
}

#[utoipa::path(post, path = "/agent/v1/releases/{id}/events", params(("id" = String, Path)), request_body = StepEvent,
    responses((status = 200, body = StepEventAck), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn event(
    Agent(instance): Agent,
    State(state): State<AppState>,
    ApiPath(release_id): ApiPath<String>,
    ApiJson(event): ApiJson<StepEvent>,
) -> ApiResult<Json<StepEventAck>> {
    let task = match state.store.task_fetch(&release_id, &instance.id).await {
        Ok(task) => task,
        Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::not_found(format!(
                "release {release_id} has no work for instance {}",
                instance.id
            )))
        }
        Err(err) => return Err(err.into()),
    };
    if task.state != TaskState::Running {
        // A late report (after a deadline, an offline spell or a restart) changes
        // nothing that is already decided.
        return Ok(Json(StepEventAck { proceed: false }));
    }
    let now = chrono::Utc::now();
    let store = &state.store;
    match event {
        StepEvent::Begin { step } => {
            let step = parse_step(&step)?;
            if step == StepName::Fetch {
                return Err(ApiError::invalid(
                    "step",
                    "step: fetch is recorded by the server",
                ));
            }
            match store.step_begin(&release_id, &instance.id, step, now).await {
                Ok(()) => {}
                // The task ended meanwhile, or the step already ran: run no more.
                Err(StoreError::Conflict(_)) => return Ok(Json(StepEventAck { proceed: false })),
                Err(err) => return Err(err.into()),
            }
        }
        StepEvent::Output {
            step,
            chunk,
            dropped_bytes,
        } => {
            let step = parse_step(&step)?;
            store
                .step_append_output(
                    &release_id,
                    &instance.id,
                    step,
                    &chunk,
                    dropped_bytes,
                    STEP_OUTPUT_KEEP_BYTES,
                )
                .await?;
        }
        StepEvent::End {
            step,
            succeeded,
            exit_code,
            message,
            image_digest,
        } => {
            let step = parse_step(&step)?;
            let step_state = if succeeded {
                StepState::Succeeded
            } else {
                StepState::Failed
            };
            let changed = store
                .step_finish(
                    &release_id,
                    &instance.id,
                    step,
                    step_state,
                    exit_code,
                    message.as_deref(),
                    now,
                )
                .await?;
            if !changed {
                return Ok(Json(StepEventAck { proceed: true }));
            }
            let mut task = task;
            if let (StepName::Pull, Some(digest)) = (step, &image_digest) {
                store
                    .task_set_digest(&release_id, &instance.id, digest)
                    .await?;
                task.image_digest = Some(digest.clone());
            }
            finish_task_if_done(
                &state,
                &task,
                step,
                succeeded,
                exit_code,
                message.as_deref(),
            )
            .await?;
        }
    }
    Ok(Json(StepEventAck { proceed: true }))
}

/// A failed step fails the task; the last planned step succeeding ends it well.
async fn finish_task_if_done(
    state: &AppState,
    task: &TaskRecord,
    step: StepName,
    succeeded: bool,
    exit_code: Option<i32>,
    message: Option<&str>,
) -> ApiResult<()> {
    let now = chrono::Utc::now();
    let (state_after, reason) = if succeeded && step == StepName::Exec {
        // An exec has one step after fetch.
        (TaskState::Succeeded, None)
    } else if succeeded {
        // Every plan ends with start or verify, so no other step can end a task:
        // those skip reading the release and deployment (two reads per report).
        if !matches!(step, StepName::Start | StepName::Verify) {
            return Ok(());
        }
        let release = state.store.release_fetch(&task.release_id).await?;
        let deployment = state
            .store
            .deployment_fetch(&release.app, &release.deployment)
            .await?;
        let plan = StepName::plan(
            deployment.kind == DeploymentKind::DockerImage,
            deployment.verify.is_some(),
        );
        if plan.last() != Some(&step) {
            return Ok(());
        }
        (TaskState::Succeeded, None)
    } else {
        let why = match (message, exit_code) {
            (Some(message), _) => format!("step {} failed: {message}", step.as_str()),
            (None, Some(code)) => format!("step {} failed with exit code {code}", step.as_str()),
            (None, None) => format!("step {} failed", step.as_str()),
        };
        (TaskState::Failed, Some(why))
    };
    // `task` carries the digest: the pull step's report recorded it before this
    // report read the task, or this very report is the pull's and set it above.
    let digest = task.image_digest.clone();
    if state
        .store
        .task_finish(
            &task.release_id,
            &task.instance_id,
            state_after,
            digest.as_deref(),
            reason.as_deref(),
            now,
        )
        .await?
    {
        tracing::info!(release = %task.release_id, instance = %task.instance_id, state = ?state_after, "instance finished");
        // A success that leaves other tasks of its batch open changes nothing the
        // driver decides on, so it is not woken for it: with thousands of instances
        // a pass (which reads every task) per success would dominate the release.
        // The count is read after this task's own update, so of the last two tasks
        // to end, the later one always sees 0. The driver's tick remains a backstop.
        let batch_open = if state_after == TaskState::Succeeded {
            state
                .store
                .task_count_open_in_batch(&task.release_id, task.batch)
                .await?
        } else {
            0
        };
        if batch_open == 0 {
            state.wakeups.wake_driver();
        }
    }
    Ok(())
}
