//! Request and response bodies for releases (`/api/v1/.../releases`,
//! `/api/v1/releases/...`).

use crate::resources::Timeouts;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/apps/{app}/groups/{group}/releases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseCreate {
    /// The deployment to publish.
    pub deployment: String,
    /// 1 to 100, capped at the number of instances (default 1).
    #[serde(default)]
    pub batches: Option<u32>,
    /// `auto` (default), `first` or `each`.
    #[serde(default)]
    pub pause: Option<String>,
    /// With `auto`: seconds to wait between batches.
    #[serde(default)]
    pub batch_interval_secs: Option<u32>,
    /// Failed instances tolerated before the release fails (default 0).
    #[serde(default)]
    pub max_failures: Option<u32>,
    /// On failure, publish the group's previous deployment to the touched instances.
    #[serde(default)]
    pub rollback_on_failure: bool,
}

/// `POST /api/v1/apps/{app}/groups/{group}/execs`: run a script on the instances
/// of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecCreate {
    /// The script, run with `bash` on each instance.
    pub script: String,
    /// Only these instances (ids or names, members of the group); all members
    /// when absent.
    #[serde(default)]
    pub instances: Option<Vec<String>>,
    /// 1 to 100, capped at the number of instances (default 1).
    #[serde(default)]
    pub batches: Option<u32>,
    /// At most this many instances run at once (more batches if needed).
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Seconds the script may run on each instance (default 600, at most 86400).
    #[serde(default)]
    pub timeout_secs: Option<u32>,
    /// Run the script as this user instead of the agent's.
    #[serde(default)]
    pub as_user: Option<String>,
}

/// A group exec: a script run on the instances of a group, in batches. It never
/// changes the group's deployment, and a failing instance does not stop the
/// others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Exec {
    /// `x-` followed by 16 hex characters.
    pub id: String,
    pub app: String,
    pub group: String,
    /// `pending`, `running`, `succeeded` (every instance ran the script, whatever
    /// its exit code), `failed` or `cancelled`.
    pub state: String,
    pub script: String,
    pub timeout_secs: u32,
    pub as_user: Option<String>,
    pub batch_count: u32,
    /// How many instances failed, when some did; or why the exec stopped.
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: InstanceCounts,
    /// Filled by `show`; empty in lists. Each instance has one `exec` step.
    pub batches: Vec<ReleaseBatch>,
}

/// Counts of a release's instances by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstanceCounts {
    pub total: u32,
    pub pending: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub cancelled: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Release {
    /// `r-` followed by 16 hex characters.
    pub id: String,
    pub app: String,
    pub group: String,
    pub deployment: String,
    /// `pending`, `running`, `paused`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// `release`, `rollback` or `catch-up`.
    pub kind: String,
    pub pause: String,
    pub batch_count: u32,
    pub batch_interval_secs: u32,
    pub max_failures: u32,
    pub rollback_on_failure: bool,
    /// The failed release this one rolls back, if any.
    pub rollback_of: Option<String>,
    /// The automatic rollback started when this release failed, if any (filled
    /// by `show`).
    #[serde(default)]
    pub rolled_back_by: Option<String>,
    /// Why the release failed or was cancelled.
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: InstanceCounts,
    /// Filled by `show`; empty in lists.
    pub batches: Vec<ReleaseBatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseBatch {
    /// 1-based, as people count batches.
    pub number: u32,
    /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub instances: Vec<ReleaseInstance>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseInstance {
    pub id: String,
    pub name: String,
    /// `pending`, `dispatched`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// When the instance's batch started and its work was handed to its agent.
    #[serde(default)]
    pub dispatched_at: Option<DateTime<Utc>>,
    /// When the agent took the work (its fetch step).
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub image_digest: Option<String>,
    pub message: Option<String>,
    pub steps: Vec<ReleaseStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseStep {
    /// `fetch`, `prepare`, `pull`, `stop`, `start` or `verify`.
    pub name: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub dropped_bytes: u64,
    pub message: Option<String>,
}

/// The output of one step of one instance (`GET /api/v1/releases/{id}/logs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepLog {
    pub instance_id: String,
    pub instance_name: String,
    pub step: String,
    pub state: String,
    pub exit_code: Option<i32>,
    /// The retained tail of the output (at most 1 MiB).
    pub output: String,
    /// Bytes of output that were dropped to keep it bounded.
    pub dropped_bytes: u64,
    pub message: Option<String>,
}

// ---------------------------------------------------------------- agent side

/// What an agent needs to pull an image. The password travels only in this answer
/// and lives only in the agent's memory; `Debug` does not show it.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PullSpec {
    /// `ENDPOINT/NAMESPACE/REPOSITORY:TAG`.
    pub address: String,
    /// `ENDPOINT`, the server address for the registry login.
    pub registry: String,
    pub insecure: bool,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for PullSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullSpec")
            .field("address", &self.address)
            .field("registry", &self.registry)
            .field("insecure", &self.insecure)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerifyWork {
    pub url: String,
    pub expect_status: u16,
    pub expect_body: Option<String>,
}

/// `GET /agent/v1/work`: the work of one release on the calling instance. The
/// `fetch` step is already recorded as done when the agent receives this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkAssignment {
    pub release_id: String,
    pub instance_id: String,
    pub app: String,
    pub group: String,
    /// Empty for a group exec.
    pub deployment: String,
    /// `docker-image`, `command` or `exec` (a group exec).
    pub kind: String,
    pub image: Option<PullSpec>,
    pub workdir: String,
    pub start_script: String,
    pub stop_script: String,
    pub verify: Option<VerifyWork>,
    pub timeouts: Timeouts,
    /// The steps to run, in order, after `fetch`.
    pub steps: Vec<String>,
    /// For a group exec (`kind` `exec`, steps `["exec"]`, the script in
    /// `start_script`): the user the script runs as; the agent's own when absent.
    #[serde(default)]
    pub as_user: Option<String>,
}

/// `POST /agent/v1/releases/{release}/events`: what an agent reports about a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepEvent {
    /// The step started.
    Begin { step: String },
    /// More output of a running step (whole lines). `dropped_bytes` counts output the
    /// agent dropped since the previous chunk.
    Output {
        step: String,
        chunk: String,
        #[serde(default)]
        dropped_bytes: u64,
        /// How many bytes the step had written before this report, sent or
        /// dropped (protocol 3). The server stores a report whose offset it has
        /// passed (a retry of one it stored, whose answer the agent lost) only
        /// once; agents of protocols 1 and 2 send none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    /// The step ended.
    End {
        step: String,
        succeeded: bool,
        #[serde(default)]
        exit_code: Option<i32>,
        /// Why it failed, when the output does not say (timeout, pull error ...).
        #[serde(default)]
        message: Option<String>,
        /// For `pull`: the digest of the pulled image.
        #[serde(default)]
        image_digest: Option<String>,
        /// The step the agent begins next, when this one succeeded and did not
        /// end the task: its `Begin` goes in the same report, so a task costs one
        /// request per step instead of two (protocol 2). The ack's `proceed`
        /// answers for that step as it would for its own `Begin`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        then_begin: Option<String>,
    },
}

/// The server's answer to a step event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepEventAck {
    /// False when the server has already ended this instance's task (it passed its
    /// deadline, or the instance was counted offline): the agent runs no further
    /// steps. A cancelled release lets tasks already running finish, so that no
    /// host is left between its stop and start scripts.
    pub proceed: bool,
}
