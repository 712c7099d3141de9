//! What the store keeps, one plain struct per table row. Secrets appear here only as
//! hashes (tokens, credentials) or ciphertext (registry passwords): the server hashes
//! and encrypts before it calls the store.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use wharf_domain::deployment::{DeploymentKind, ImageSpec, Timeouts, VerifySpec};
use wharf_domain::release::{PauseMode, ReleaseState, StepName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: String,
    /// Hex SHA-256 of the secret.
    pub hash: String,
    /// What the token may do; `admin` is the only role so far.
    pub role: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationTokenRecord {
    pub id: String,
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub uses: u32,
    pub uses_left: u32,
}

/// One agent heartbeat, for [`crate::Store::instance_heartbeats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRecord {
    pub id: String,
    pub at: DateTime<Utc>,
    pub agent_version: String,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub address: String,
    pub os: String,
    pub arch: String,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    /// Hex SHA-256 of the agent's credential.
    pub credential_hash: String,
    pub scaling_group: Option<String>,
    pub registered_at: DateTime<Utc>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// The host's Docker Engine version, when the agent last found it answering.
    pub docker_version: Option<String>,
    /// Why the agent last found no working Docker Engine. Both `None`: not
    /// reported (yet, or by an older agent).
    pub docker_error: Option<String>,
}

/// One group an instance belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRecord {
    pub app: String,
    pub group: String,
    pub deployment: Option<String>,
    pub image_digest: Option<String>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub instance: InstanceRecord,
    pub deployment: Option<String>,
    pub image_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub app: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub current_deployment: Option<String>,
    pub previous_deployment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRecord {
    pub name: String,
    pub endpoint: String,
    pub private_endpoint: Option<String>,
    pub username: Option<String>,
    /// The password encrypted by the server (nonce and ciphertext); never plaintext.
    pub password_sealed: Option<Vec<u8>>,
    pub insecure: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRecord {
    pub app: String,
    pub name: String,
    pub kind: DeploymentKind,
    pub image: Option<ImageSpec>,
    pub workdir: String,
    pub start_script: String,
    pub stop_script: String,
    pub verify: Option<VerifySpec>,
    pub timeouts: Timeouts,
    pub created_at: DateTime<Utc>,
}

/// A release: one deployment published to the instances of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    pub id: String,
    pub app: String,
    pub group: String,
    pub deployment: String,
    pub state: ReleaseState,
    pub pause: PauseMode,
    /// How many batches the targets were split into (after capping).
    pub batch_count: u32,
    pub batch_interval_secs: u32,
    pub max_failures: u32,
    pub rollback_on_failure: bool,
    /// `release`, `rollback` (from `release rollback` or `--rollback-on-failure`),
    /// `catch-up` (scaling groups) or `exec` (a group exec, with an empty
    /// `deployment`).
    pub kind: String,
    /// For a rollback started by `--rollback-on-failure`: the release that failed.
    pub rollback_of: Option<String>,
    /// Batches with an index below this may start even where the pause mode
    /// would pause before them; `continue` raises it.
    pub continued_through: u32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why the release failed or was cancelled.
    pub message: Option<String>,
}

/// The release kind of a group exec: a release row without a deployment.
pub const EXEC_KIND: &str = "exec";

/// What only a group exec has; the rest (group, batches, state, tasks, steps) is
/// its [`ReleaseRecord`] of kind [`EXEC_KIND`], whose `deployment` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord {
    /// The id of its release row (`x-` followed by 16 hex characters).
    pub release_id: String,
    /// Run with bash on each instance.
    pub script: String,
    pub timeout_secs: u32,
    /// The user the script runs as; the agent's own user when `None`.
    pub as_user: Option<String>,
}

/// The work of one release on one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Waiting for its batch.
    Pending,
    /// Its batch started; waiting for the agent to fetch it.
    Dispatched,
    /// The agent fetched it and runs its steps.
    Running,
    Succeeded,
    Failed,
    /// Never ran (the release was cancelled or failed first).
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 6] = [
        Self::Pending,
        Self::Dispatched,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Dispatched => "dispatched",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    pub release_id: String,
    pub instance_id: String,
    /// The instance's name when the release was created (kept if it is deleted).
    pub instance_name: String,
    /// 0-based batch index.
    pub batch: u32,
    pub state: TaskState,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the server gives up on it (set at dispatch).
    pub deadline: Option<DateTime<Utc>>,
    pub image_digest: Option<String>,
    pub message: Option<String>,
}

/// How the tasks of one batch of a release stand: what the release driver decides
/// on, read without loading every task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSummary {
    /// 0-based batch index.
    pub batch: u32,
    pub pending: u32,
    pub dispatched: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub cancelled: u32,
    /// When the batch's last ended task ended.
    pub last_finished_at: Option<DateTime<Utc>>,
}

impl BatchSummary {
    /// Tasks that have not ended.
    pub fn open(&self) -> u32 {
        self.pending + self.dispatched + self.running
    }

    /// Whether any task of the batch has left `pending` (the batch is under way or
    /// over).
    pub fn started(&self) -> bool {
        self.dispatched + self.running + self.succeeded + self.failed + self.cancelled > 0
    }

    /// All its tasks.
    pub fn total(&self) -> u32 {
        self.open() + self.succeeded + self.failed + self.cancelled
    }
}

/// A dispatched or running task with what the driver needs to tell whether it
/// was lost: its instance's last heartbeat, or that the instance is gone.
#[derive(Debug, Clone)]
pub struct LiveTask {
    pub task: TaskRecord,
    /// `None` when the instance was deleted; else its last heartbeat, if any.
    pub instance_heartbeat: Option<Option<DateTime<Utc>>>,
}

/// One write an agent's request asks for. Written together with others that
/// arrive at the same time (see [`crate::Store::agent_writes`]), each one still
/// all or nothing on its own.
#[derive(Debug, Clone)]
///
/// The step writes (begin, output, end) are refused, before anything is written,
/// unless the instance has a task in the release (`NotFound` of kind `task`) and
/// that task is running (`Conflict`, see [`crate::refuse_unless_running`]): a
/// late report changes nothing that is already decided. A begin on a task that was
/// handed out and not claimed yet claims it first ([`crate::Store::task_claim`]),
/// and is refused if that cannot be done. The check is made in the
/// same transaction as the write, so no end of the task can come in between.
pub enum AgentWrite {
    /// [`crate::Store::step_begin`], after [`crate::Store::task_claim`] when the
    /// task is still Dispatched (the agent's first report of the task).
    StepBegin {
        release_id: String,
        instance_id: String,
        step: StepName,
        now: DateTime<Utc>,
    },
    /// [`crate::Store::step_append_output`].
    StepOutput {
        release_id: String,
        instance_id: String,
        step: StepName,
        chunk: String,
        dropped: u64,
        keep_bytes: usize,
        /// Where the report starts in the step's output (see the store call).
        offset: Option<u64>,
    },
    /// [`crate::Store::step_finish`]; if that changed the step, then the pull's
    /// digest ([`crate::Store::task_set_digest`]) and the task's end
    /// ([`crate::Store::task_finish`]) when the report ends the task, and for a
    /// success how many tasks of the task's batch are still open. Then, with
    /// `then_begin`, the next step's [`crate::Store::step_begin`], also when a
    /// repeated report left the ended step unchanged (a retried begin restarts a
    /// running step).
    StepEnd {
        release_id: String,
        instance_id: String,
        step: StepName,
        state: StepState,
        exit_code: Option<i32>,
        message: Option<String>,
        digest: Option<String>,
        /// The task's end state and message when this report ends the task.
        task_end: Option<(TaskState, Option<String>)>,
        /// The step that begins with this report: only after a success that does
        /// not end the task (refused whole otherwise).
        then_begin: Option<StepName>,
        now: DateTime<Utc>,
    },
}

/// What an [`AgentWrite`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentWritten {
    /// A begin or output was recorded.
    Recorded,
    /// A step end: whether it changed the step (a repeated report does not), and
    /// whether the task ended with it; `batch_open` counts the batch's open tasks
    /// after a successful end (0 otherwise).
    StepEnded {
        changed: bool,
        task_finished: bool,
        batch_open: u32,
    },
}

/// The state of one step of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Running,
    Succeeded,
    Failed,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Running, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    pub release_id: String,
    pub instance_id: String,
    pub step: StepName,
    pub state: StepState,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    /// The retained tail of the output (at most STEP_OUTPUT_KEEP_BYTES).
    pub output: String,
    /// Bytes of output dropped (by the agent's bound or the store's).
    pub dropped_bytes: u64,
    /// A one-line reason for a failure that is not in the output.
    pub message: Option<String>,
}

/// Whether a scaling group lets instances join its group now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalingState {
    Active,
    /// A release of the bound group holds the lease; registrations are held.
    Suspended,
}

impl ScalingState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Active, Self::Suspended]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}

/// A scaling group: agents register for it by name and join its application group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingGroupRecord {
    pub name: String,
    pub app: String,
    pub group: String,
    pub on_suspend: Option<String>,
    pub on_resume: Option<String>,
    pub created_at: DateTime<Utc>,
    pub state: ScalingState,
    /// The release holding the lease while suspended.
    pub held_by: Option<String>,
    pub suspended_at: Option<DateTime<Utc>>,
    /// The release that held the lease last (kept after resume).
    pub last_release: Option<String>,
    pub suspend_hook_pending: bool,
    pub resume_hook_pending: bool,
    /// Failed attempts of the current on-resume command.
    pub resume_attempts: u32,
    /// When a failed on-resume command may be tried again.
    pub next_hook_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// What registering for a scaling group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalingJoin {
    /// The instance joined the bound group.
    Joined,
    /// The scaling group is suspended: the instance waits for the resume.
    Held,
}

/// An instance that registered while its scaling group was suspended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingHeldRecord {
    pub instance_id: String,
    pub instance_name: String,
    pub held_at: DateTime<Utc>,
    /// Joined on resume, waiting for its catch-up release to be created.
    pub joined: bool,
}

/// One scaling activity: `join`, `held` or `leave`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingActivityRecord {
    pub instance_id: String,
    pub instance_name: String,
    pub kind: String,
    pub at: DateTime<Utc>,
}

/// One run of an on-suspend or on-resume command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRunRecord {
    /// `suspend` or `resume`.
    pub hook: String,
    pub release_id: Option<String>,
    /// 1 for the first try.
    pub attempt: u32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub exit_code: Option<i32>,
    /// The bounded tail of stdout and stderr.
    pub output: String,
    /// Why it failed (exit status, timeout, could not start); `None` on success.
    pub error: Option<String>,
}

/// What [`crate::Store::release_detail`] answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseDetail {
    pub release: ReleaseRecord,
    pub tasks: Vec<TaskRecord>,
    /// Grouped by instance, in run order within an instance.
    pub steps: Vec<StepRecord>,
}

/// What [`crate::Store::release_detail_where`] answers: a release and the part
/// of its tasks and steps that was picked.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasePart {
    pub release: ReleaseRecord,
    /// How each batch that has tasks stands, as
    /// [`crate::Store::task_batch_summaries`] answers.
    pub batches: Vec<BatchSummary>,
    /// The tasks of the picked batches, in [`crate::Store::task_list`]'s order.
    pub tasks: Vec<TaskRecord>,
    /// The steps of the picked tasks: grouped by instance, in run order within
    /// an instance.
    pub steps: Vec<StepRecord>,
}

/// What [`crate::Store::task_poll_look`] answers.
#[derive(Debug, Clone, PartialEq)]
pub struct PollLook {
    /// The instance's running tasks: an agent that polls while it has one restarted.
    pub running: Vec<TaskRecord>,
    /// The release of the work the instance is to be given, if it has any
    /// ([`crate::Store::task_next_dispatched`]).
    pub next: Option<String>,
}
