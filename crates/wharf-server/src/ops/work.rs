//! Agents' work: the long poll that hands a task out, the step reports that claim
//! and move it, and the assignment every instance of a release gets. The first
//! report of a task claims it. The instance always comes from the caller (the
//! agent's credential), so an agent can neither take nor report on another
//! instance's work.

use super::releases::kind_of;
use super::{Caller, OpError, OpResult, Role};
use crate::group_commit::GroupCommit;
use crate::state::AppState;
use std::sync::Arc;
use std::time::Duration;
use wharf_api::{PullSpec, StepEvent, StepEventAck, VerifyWork, WorkAssignment};
use wharf_domain::deployment::{registry_address, DeploymentKind};
use wharf_domain::release::{self, check_then_begin, BeginRefused, ReleaseKind, StepName, TaskEnd};
use wharf_store::{
    AgentWrite, AgentWritten, StepState, StoreError, StoreResult, TaskRecord, TaskState,
};

/// The longest a poll may wait; agents ask for less than their HTTP timeout.
pub const MAX_WAIT_SECS: u64 = 60;
/// Output kept per step on the server: at least the last 1 MiB, plus room for the
/// store to start the kept tail on a line boundary.
pub const STEP_OUTPUT_KEEP_BYTES: usize = 1024 * 1024 + 8 * 1024;

/// The instance of an agent caller; only agents have work.
fn agent_instance(caller: &Caller) -> OpResult<&str> {
    caller
        .instance_id()
        .ok_or(OpError::Forbidden { needs: Role::Admin })
}

/// Waits up to `wait_secs` (default 25, at most [`MAX_WAIT_SECS`]) for work of the
/// caller's instance; `None` when none came.
pub async fn poll(
    state: &AppState,
    caller: &Caller,
    wait_secs: Option<u64>,
) -> OpResult<Option<WorkAssignment>> {
    let instance_id = agent_instance(caller)?;
    let wait = Duration::from_secs(wait_secs.unwrap_or(25).min(MAX_WAIT_SECS));
    let deadline = tokio::time::Instant::now() + wait;
    let wake = state.wakeups.agent(instance_id);
    // A release named by a wake-up before this poll is either seen by the look
    // below or was handed out by an earlier poll: only one named while this poll
    // waits is new work.
    wake.take_dispatched();
    // Handing work out is a read: the task stays dispatched until the agent's
    // first step report claims it (`Store::task_claim`). So a batch's agents get
    // their work without queueing for the one writer, and work whose answer never
    // reached its agent (a lost connection, a server restart) is handed out
    // again on the next poll instead of being taken for abandoned. The first
    // look also finds tasks the agent abandoned.
    let look = state.store.task_poll_look(instance_id).await?;
    fail_abandoned_tasks(state, instance_id, look.running).await?;
    let mut next = look.next;
    loop {
        if let Some(release_id) = next {
            state.dispatch_first.handed_out();
            // The driver is not woken: work handed out changes nothing it decides
            // on (the batch was under way once dispatched).
            let mut work = WorkAssignment::clone(&*assignment_template(state, &release_id).await?);
            work.instance_id = instance_id.to_owned();
            tracing::debug!(release = %release_id, instance = %instance_id, "work handed out");
            return Ok(Some(work));
        }
        tokio::select! {
            _ = wake.notified() => next = match wake.take_dispatched() {
                // The driver named the release it dispatched: no read needed.
                Some(release_id) => Some(release_id),
                None => state.store.task_next_dispatched(instance_id).await?,
            },
            _ = tokio::time::sleep_until(deadline) => return Ok(None),
            _ = state.wakeups.shutting_down() => return Ok(None),
        }
    }
}

/// Stores one of an agent's writes through the group commit: the outer error is
/// the batch's failure (logged where it happened), the inner one the store's
/// answer to this write alone.
async fn agent_write(
    state: &AppState,
    queue: &GroupCommit<AgentWrite>,
    write: AgentWrite,
) -> OpResult<StoreResult<AgentWritten>> {
    queue
        .write(state.store.clone(), write)
        .await
        .map_err(OpError::from)
}

/// A store answer of the wrong kind for its write: a bug, logged, never a panic.
fn unexpected(answer: AgentWritten) -> OpError {
    tracing::error!(
        ?answer,
        "the store answered an agent write with the wrong kind"
    );
    OpError::Unavailable
}

/// An agent runs one task at a time and polls only between tasks, so a task still
/// running when its agent polls was abandoned: the agent restarted, or never got the
/// answer that carried the task. It fails, with the step it stopped in.
async fn fail_abandoned_tasks(
    state: &AppState,
    instance_id: &str,
    running: Vec<TaskRecord>,
) -> OpResult<()> {
    let now = chrono::Utc::now();
    for task in running {
        let steps = state
            .store
            .step_list_without_output(&task.release_id, Some(instance_id))
            .await?;
        let open = steps
            .iter()
            .find(|s| s.state == StepState::Running)
            .map(|s| s.step.as_str());
        let reason = match open {
            Some(step) => format!("the agent restarted while step {step} was running"),
            None => "the agent restarted between steps".to_owned(),
        };
        if state
            .store
            .task_fail(&task.release_id, instance_id, &reason, now)
            .await?
        {
            tracing::warn!(release = %task.release_id, instance = instance_id, reason, "instance failed");
            state.wakeups.wake_driver();
        }
    }
    Ok(())
}

/// The work of a release as every instance gets it, with `instance_id` empty;
/// built once and kept for a while (`AppState::assignments`).
pub async fn assignment_template(
    state: &AppState,
    release_id: &str,
) -> OpResult<Arc<WorkAssignment>> {
    if let Some(work) = state.assignments.get(release_id) {
        return Ok(work);
    }
    // When a batch starts, its agents' polls are answered together and would all
    // find nothing kept: one of them builds it while the others wait, rather
    // than each reading the release, its deployment and its registry.
    let _building = state.assignment_building.lock().await;
    if let Some(work) = state.assignments.get(release_id) {
        return Ok(work);
    }
    let work = Arc::new(build_assignment(state, release_id).await?);
    state.assignments.insert(release_id, work.clone());
    Ok(work)
}

async fn build_assignment(state: &AppState, release_id: &str) -> OpResult<WorkAssignment> {
    let release = state.store.release_fetch(release_id).await?;
    if kind_of(&release) == ReleaseKind::Exec {
        let (_, exec) = state.store.exec_fetch(&release.id).await?;
        return Ok(WorkAssignment {
            release_id: release.id,
            instance_id: String::new(),
            app: release.app,
            group: release.group,
            deployment: String::new(),
            kind: ReleaseKind::Exec.as_str().to_owned(),
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
                    OpError::Unavailable
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
        instance_id: String::new(),
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

fn parse_step(name: &str) -> OpResult<StepName> {
    StepName::parse(name)
        .ok_or_else(|| OpError::invalid("step", format!("step: {name:?} is not a step")))
}

/// A step an agent says it begins (`field` names where it said so): any step
/// but fetch, which the server records itself.
fn parse_begun_step(field: &str, name: &str) -> OpResult<StepName> {
    match StepName::parse(name) {
        None => Err(OpError::invalid(
            field,
            format!("{field}: {name:?} is not a step"),
        )),
        Some(step) if !step.begun_by_agent() => Err(OpError::invalid(
            field,
            format!("{field}: {} is recorded by the server", step.as_str()),
        )),
        Some(step) => Ok(step),
    }
}

/// The answer to a `then_begin` the step rules refuse.
fn begin_refused(why: BeginRefused, step: StepName, next: StepName) -> OpError {
    let message = match why {
        BeginRefused::SameStep => {
            format!("then_begin: step {} cannot begin as it ends", step.as_str())
        }
        BeginRefused::AfterFailure => "then_begin: no step begins after a failed one".to_owned(),
        BeginRefused::AfterLast => format!(
            "then_begin: step {} is the last step of this task; step {} cannot begin after it",
            step.as_str(),
            next.as_str()
        ),
        BeginRefused::NotByAgent => {
            format!("then_begin: {} is recorded by the server", next.as_str())
        }
    };
    OpError::invalid("then_begin", message)
}

/// Takes one of an agent's step reports on release `release_id`.
pub async fn report(
    state: &AppState,
    caller: &Caller,
    release_id: String,
    event: StepEvent,
) -> OpResult<StepEventAck> {
    let instance_id = agent_instance(caller)?;
    // Reports wait while a dispatched batch's agents are still getting their
    // work (briefly: see `DispatchFirst`); the time of the event is when it came.
    let now = chrono::Utc::now();
    state.dispatch_first.reports_may_go().await;
    match event {
        StepEvent::Begin { step } => {
            let step = parse_begun_step("step", &step)?;
            let write = AgentWrite::StepBegin {
                release_id: release_id.clone(),
                instance_id: instance_id.to_owned(),
                step,
                now,
            };
            if step_written(state, &release_id, instance_id, write)
                .await?
                .is_none()
            {
                return Ok(StepEventAck { proceed: false });
            }
        }
        StepEvent::Output {
            step,
            chunk,
            dropped_bytes,
            offset,
        } => {
            let write = AgentWrite::StepOutput {
                release_id: release_id.clone(),
                instance_id: instance_id.to_owned(),
                step: parse_step(&step)?,
                chunk,
                dropped: dropped_bytes,
                keep_bytes: STEP_OUTPUT_KEEP_BYTES,
                offset,
            };
            if step_written(state, &release_id, instance_id, write)
                .await?
                .is_none()
            {
                return Ok(StepEventAck { proceed: false });
            }
        }
        StepEvent::End {
            step,
            succeeded,
            exit_code,
            message,
            image_digest,
            then_begin,
        } => {
            let step = parse_step(&step)?;
            let then_begin = then_begin
                .map(|next| parse_begun_step("then_begin", &next))
                .transpose()?;
            if let Some(next) = then_begin {
                // Whether the step ends its task is not known yet: checked below.
                check_then_begin(step, succeeded, false, next)
                    .map_err(|why| begin_refused(why, step, next))?;
            }
            let task_end = match task_end(
                state,
                &release_id,
                step,
                succeeded,
                exit_code,
                message.as_deref(),
            )
            .await
            {
                Ok(task_end) => task_end,
                Err(err) => {
                    return refused_before_write(state, &release_id, instance_id, err).await
                }
            };
            if let Some(next) = then_begin {
                check_then_begin(step, succeeded, task_end.is_some(), next)
                    .map_err(|why| begin_refused(why, step, next))?;
            }
            let write = AgentWrite::StepEnd {
                release_id: release_id.clone(),
                instance_id: instance_id.to_owned(),
                step,
                state: if succeeded {
                    StepState::Succeeded
                } else {
                    StepState::Failed
                },
                exit_code,
                message,
                digest: image_digest.filter(|_| step == StepName::Pull),
                task_end,
                then_begin,
                now,
            };
            let written = match step_written(state, &release_id, instance_id, write).await? {
                Some(written) => written,
                None => return Ok(StepEventAck { proceed: false }),
            };
            let AgentWritten::StepEnded {
                task_finished,
                batch_open,
                ..
            } = written
            else {
                return Err(unexpected(written));
            };
            if task_finished {
                tracing::info!(release = %release_id, instance = %instance_id, succeeded, "instance finished");
                // A success that leaves other tasks of its batch open changes
                // nothing the driver decides on, so it is not woken for it: with
                // thousands of instances a pass per success would dominate the
                // release. The count is read in the same transaction as this
                // task's end, so of the last two tasks to end, the later one
                // always sees 0. The driver's tick remains a backstop.
                if !succeeded || batch_open == 0 {
                    state.wakeups.wake_driver();
                }
            }
        }
    }
    Ok(StepEventAck { proceed: true })
}

/// Stores a step report through the group commit. `None` when the store refused
/// it as too late (the task is not running: a deadline, an offline spell, a
/// restart or a cancel ended it; or the step already ran): the agent is told to
/// run no more, and nothing is written. A release with no task for the
/// instance is a 404.
async fn step_written(
    state: &AppState,
    release_id: &str,
    instance_id: &str,
    write: AgentWrite,
) -> OpResult<Option<AgentWritten>> {
    match agent_write(state, &state.agent_writes, write).await? {
        Ok(written) => Ok(Some(written)),
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(StoreError::NotFound { kind: "task", .. }) => Err(no_work(release_id, instance_id)),
        Err(err) => Err(err.into()),
    }
}

/// The answer to a step end that failed before its write (working out whether it
/// ends the task reads the release's work): a report that names no task of the
/// instance, or comes after its task ended, answers as such reports always do;
/// only a report on a running task gets the failure.
async fn refused_before_write(
    state: &AppState,
    release_id: &str,
    instance_id: &str,
    err: OpError,
) -> OpResult<StepEventAck> {
    match state.store.task_fetch(release_id, instance_id).await {
        Err(StoreError::NotFound { .. }) => Err(no_work(release_id, instance_id)),
        Ok(task) if task.state != TaskState::Running => Ok(StepEventAck { proceed: false }),
        _ => Err(err),
    }
}

fn no_work(release_id: &str, instance_id: &str) -> OpError {
    OpError::not_found(format!(
        "release {release_id} has no work for instance {instance_id}"
    ))
}

async fn task_end(
    state: &AppState,
    release_id: &str,
    step: StepName,
    succeeded: bool,
    exit_code: Option<i32>,
    message: Option<&str>,
) -> OpResult<Option<(TaskState, Option<String>)>> {
    // Only the success of a step that can end a task needs the plan; an exec
    // has one step after fetch, so no read is needed for it either.
    let last_planned = if succeeded && step.may_end_task() && step != StepName::Exec {
        last_planned_step(state, release_id).await?
    } else {
        step
    };
    Ok(match release::task_end(step, succeeded, last_planned) {
        None => None,
        Some(TaskEnd::Succeeded) => Some((TaskState::Succeeded, None)),
        Some(TaskEnd::Failed) => {
            let why = match (message, exit_code) {
                (Some(message), _) => format!("step {} failed: {message}", step.as_str()),
                (None, Some(code)) => {
                    format!("step {} failed with exit code {code}", step.as_str())
                }
                (None, None) => format!("step {} failed", step.as_str()),
            };
            Some((TaskState::Failed, Some(why)))
        }
    })
}

/// The last planned step of a release: the last step its agents are given.
async fn last_planned_step(state: &AppState, release_id: &str) -> OpResult<StepName> {
    let work = assignment_template(state, release_id).await?;
    Ok(work
        .steps
        .last()
        .and_then(|step| StepName::parse(step))
        .unwrap_or(StepName::Start))
}
