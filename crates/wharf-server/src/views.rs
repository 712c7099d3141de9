//! Conversions from stored records to the API's wire types. Secrets stop here:
//! no view carries a hash, a credential or a sealed password.

use crate::state::LivenessJudge;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use wharf_api as api;
use wharf_domain::deployment::registry_address;
use wharf_store::{
    AppRecord, BatchSummary, DeploymentRecord, GroupRecord, InstanceRecord, MemberRecord,
    MembershipRecord, RegistrationTokenRecord, RegistryRecord, ReleaseRecord, StepRecord,
    TaskRecord, TaskState,
};

pub fn instance(
    record: InstanceRecord,
    memberships: Vec<MembershipRecord>,
    liveness: &LivenessJudge,
    now: DateTime<Utc>,
) -> api::Instance {
    api::Instance {
        status: liveness.status(record.last_heartbeat_at, now).to_owned(),
        id: record.id,
        name: record.name,
        hostname: record.hostname,
        address: record.address,
        os: record.os,
        arch: record.arch,
        agent_version: record.agent_version,
        labels: record.labels,
        registered_at: record.registered_at,
        last_heartbeat_at: record.last_heartbeat_at,
        scaling_group: record.scaling_group,
        scaling_pending: false,
        docker_version: record.docker_version,
        docker_error: record.docker_error,
        groups: memberships
            .into_iter()
            .map(|m| api::InstanceMembership {
                app: m.app,
                group: m.group,
                deployment: m.deployment,
                image_digest: m.image_digest,
            })
            .collect(),
    }
}

pub fn registration_token(
    record: RegistrationTokenRecord,
    token: Option<String>,
) -> api::RegistrationToken {
    api::RegistrationToken {
        id: record.id,
        token,
        created_at: record.created_at,
        expires_at: record.expires_at,
        uses: record.uses,
        uses_left: record.uses_left,
    }
}

pub fn app(record: AppRecord, groups: Vec<String>, deployments: Vec<String>) -> api::App {
    api::App {
        name: record.name,
        description: record.description,
        created_at: record.created_at,
        groups,
        deployments,
    }
}

pub fn group(
    record: GroupRecord,
    members: Vec<MemberRecord>,
    liveness: &LivenessJudge,
    now: DateTime<Utc>,
) -> api::Group {
    api::Group {
        app: record.app,
        name: record.name,
        created_at: record.created_at,
        instances: members
            .into_iter()
            .map(|m| api::GroupMember {
                drift: record.current_deployment.is_some()
                    && m.deployment != record.current_deployment,
                status: liveness
                    .status(m.instance.last_heartbeat_at, now)
                    .to_owned(),
                id: m.instance.id,
                name: m.instance.name,
                deployment: m.deployment,
                image_digest: m.image_digest,
            })
            .collect(),
        current_deployment: record.current_deployment,
        previous_deployment: record.previous_deployment,
        releases: Vec::new(),
    }
}

pub fn registry(record: RegistryRecord) -> api::Registry {
    api::Registry {
        name: record.name,
        endpoint: record.endpoint,
        private_endpoint: record.private_endpoint,
        username: record.username,
        has_password: record.password_sealed.is_some(),
        insecure: record.insecure,
        created_at: record.created_at,
    }
}

/// A deployment with its computed registry address; `registry` is the record the
/// deployment's image names (absent for `command` deployments).
pub fn deployment(record: DeploymentRecord, registry: Option<&RegistryRecord>) -> api::Deployment {
    let address = match (&record.image, registry) {
        (Some(image), Some(registry)) => {
            let endpoint = if image.private_network {
                registry
                    .private_endpoint
                    .as_deref()
                    .unwrap_or(&registry.endpoint)
            } else {
                &registry.endpoint
            };
            Some(registry_address(
                endpoint,
                &image.namespace,
                &image.repository,
                &image.tag,
            ))
        }
        _ => None,
    };
    api::Deployment {
        app: record.app,
        name: record.name,
        kind: record.kind.as_str().to_owned(),
        image: record.image.map(|i| api::ImageFields {
            registry: i.registry,
            namespace: i.namespace,
            repository: i.repository,
            tag: i.tag,
            private_network: i.private_network,
        }),
        registry_address: address,
        workdir: record.workdir,
        start_script: record.start_script,
        stop_script: record.stop_script,
        verify: record.verify.map(|v| api::VerifyCheck {
            url: v.url,
            expect_status: Some(v.expect_status),
            expect_body: v.expect_body,
        }),
        timeouts: api::Timeouts {
            pull_secs: record.timeouts.pull_secs,
            script_secs: record.timeouts.script_secs,
            verify_secs: record.timeouts.verify_secs,
        },
        created_at: record.created_at,
        warnings: Vec::new(),
    }
}

/// A release with its counts and, when `steps` is given, its batches, instances and
/// steps.
pub fn release(
    record: ReleaseRecord,
    tasks: &[TaskRecord],
    steps: Option<&[StepRecord]>,
) -> api::Release {
    let mut counts = api::InstanceCounts::default();
    for task in tasks {
        count(&mut counts, task.state, 1);
    }
    let batches = match steps {
        None => Vec::new(),
        Some(steps) => {
            // Steps by instance, so that a release of thousands of instances is
            // one pass over its steps rather than one per instance.
            let mut steps_of: HashMap<&str, Vec<&StepRecord>> = HashMap::new();
            for step in steps {
                steps_of.entry(&step.instance_id).or_default().push(step);
            }
            (0..record.batch_count)
                .map(|batch| {
                    let members: Vec<&TaskRecord> =
                        tasks.iter().filter(|t| t.batch == batch).collect();
                    api::ReleaseBatch {
                        number: batch + 1,
                        state: batch_state(&members).to_owned(),
                        instances: members
                            .into_iter()
                            .map(|t| {
                                let steps = steps_of.get(t.instance_id.as_str());
                                release_instance(t, steps.map_or(&[], Vec::as_slice))
                            })
                            .collect(),
                    }
                })
                .collect()
        }
    };
    api::Release {
        id: record.id,
        app: record.app,
        group: record.group,
        deployment: record.deployment,
        state: record.state.as_str().to_owned(),
        kind: record.kind,
        pause: record.pause.as_str().to_owned(),
        batch_count: record.batch_count,
        batch_interval_secs: record.batch_interval_secs,
        max_failures: record.max_failures,
        rollback_on_failure: record.rollback_on_failure,
        rollback_of: record.rollback_of,
        rolled_back_by: None,
        message: record.message,
        created_at: record.created_at,
        started_at: record.started_at,
        finished_at: record.finished_at,
        counts,
        batches,
    }
}

/// Adds `n` instances whose tasks are in `state` to `counts`: a dispatched task
/// counts as running (its agent has, or is about to get, its work).
fn count(counts: &mut api::InstanceCounts, state: TaskState, n: u32) {
    counts.total += n;
    match state {
        TaskState::Pending => counts.pending += n,
        TaskState::Dispatched | TaskState::Running => counts.running += n,
        TaskState::Succeeded => counts.succeeded += n,
        TaskState::Failed => counts.failed += n,
        TaskState::Cancelled => counts.cancelled += n,
    }
}

/// The instance counts of a release from its batches' counts: what
/// [`release`] counts from its tasks.
pub(crate) fn release_counts(batches: &[BatchSummary]) -> api::InstanceCounts {
    let mut counts = api::InstanceCounts::default();
    for b in batches {
        for (state, n) in [
            (TaskState::Pending, b.pending),
            (TaskState::Dispatched, b.dispatched),
            (TaskState::Running, b.running),
            (TaskState::Succeeded, b.succeeded),
            (TaskState::Failed, b.failed),
            (TaskState::Cancelled, b.cancelled),
        ] {
            count(&mut counts, state, n);
        }
    }
    counts
}

/// A batch is running while any of its tasks is, failed if any failed once all
/// ended, cancelled if all were cancelled.
pub(crate) fn batch_state(tasks: &[&TaskRecord]) -> &'static str {
    let any = |s: TaskState| tasks.iter().any(|t| t.state == s);
    if any(TaskState::Dispatched) || any(TaskState::Running) {
        "running"
    } else if any(TaskState::Pending) {
        "pending"
    } else if any(TaskState::Failed) {
        "failed"
    } else if tasks.iter().all(|t| t.state == TaskState::Cancelled) {
        "cancelled"
    } else {
        "succeeded"
    }
}

/// One instance of a release view; `steps` are the instance's own, in run order.
pub(crate) fn release_instance(task: &TaskRecord, steps: &[&StepRecord]) -> api::ReleaseInstance {
    api::ReleaseInstance {
        id: task.instance_id.clone(),
        name: task.instance_name.clone(),
        state: task.state.as_str().to_owned(),
        dispatched_at: task.dispatched_at,
        started_at: task.started_at,
        finished_at: task.finished_at,
        image_digest: task.image_digest.clone(),
        message: task.message.clone(),
        steps: steps
            .iter()
            .map(|s| api::ReleaseStep {
                name: s.step.as_str().to_owned(),
                state: s.state.as_str().to_owned(),
                started_at: s.started_at,
                finished_at: s.finished_at,
                exit_code: s.exit_code,
                dropped_bytes: s.dropped_bytes,
                message: s.message.clone(),
            })
            .collect(),
    }
}

/// The output of `steps`, each with its instance's name from `tasks` (looked up
/// by id once, not per step).
pub fn step_logs(
    steps: impl IntoIterator<Item = StepRecord>,
    tasks: &[TaskRecord],
) -> Vec<api::StepLog> {
    let names: HashMap<&str, &str> = tasks
        .iter()
        .map(|t| (t.instance_id.as_str(), t.instance_name.as_str()))
        .collect();
    steps
        .into_iter()
        .map(|step| api::StepLog {
            instance_name: names
                .get(step.instance_id.as_str())
                .map(|name| (*name).to_owned())
                .unwrap_or_default(),
            instance_id: step.instance_id,
            step: step.step.as_str().to_owned(),
            state: step.state.as_str().to_owned(),
            exit_code: step.exit_code,
            output: step.output,
            dropped_bytes: step.dropped_bytes,
            message: step.message,
        })
        .collect()
}
