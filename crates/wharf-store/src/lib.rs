//! Wharf's persistent state behind one trait, [`Store`], and its backends: SQLite
//! (embedded, the default) and PostgreSQL (for several server processes on one
//! database). Only the server uses this crate. Each backend owns its migrations;
//! every backend must pass the conformance suite in `tests/conformance.rs`.

pub mod error;
pub mod postgres;
pub mod records;
pub mod sqlite;

pub use error::StoreError;
pub use postgres::PostgresStore;
pub use records::*;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wharf_domain::release::{ReleaseState, StepName};

pub type StoreResult<T> = Result<T, StoreError>;

/// Picks the tasks whose steps [`Store::release_detail_where`] reads.
pub type StepFilter = Box<dyn Fn(&TaskRecord) -> bool + Send + Sync>;
/// Picks the batches whose tasks [`Store::release_detail_where`] reads, given
/// how each stands now.
pub type BatchFilter = Box<dyn Fn(&BatchSummary) -> bool + Send + Sync>;

/// Everything the control plane keeps. Method names are resource-first
/// (`app_create`, `group_fetch`) so that related operations sort together.
///
/// Every method is atomic: a refused call (an error) changes nothing.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ------------------------------------------------------------ API tokens

    /// Stores the hash of an API token (such as the admin token).
    async fn api_token_create(&self, token: &ApiTokenRecord) -> StoreResult<()>;
    /// Finds an API token by the hash of its secret.
    async fn api_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiTokenRecord>>;
    /// How many API tokens exist (zero means the server has never started here).
    async fn api_token_count(&self) -> StoreResult<u64>;

    // ------------------------------------------------------------ registration tokens

    async fn registration_token_create(&self, token: &RegistrationTokenRecord) -> StoreResult<()>;
    async fn registration_token_list(&self) -> StoreResult<Vec<RegistrationTokenRecord>>;
    /// Revokes a token by id.
    async fn registration_token_delete(&self, id: &str) -> StoreResult<()>;

    // ------------------------------------------------------------ instances

    /// Registers an instance with a registration token, in one transaction: the
    /// token (found by hash) must exist, be unexpired and have a use left; one use is
    /// taken and the instance is inserted. Fails with
    /// [`StoreError::RegistrationRefused`] otherwise, and with `AlreadyExists` if the
    /// name is taken.
    async fn instance_register(
        &self,
        token_hash: &str,
        instance: &InstanceRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn instance_list(&self) -> StoreResult<Vec<InstanceRecord>>;
    /// Finds an instance by id or, failing that, by name.
    async fn instance_fetch(&self, id_or_name: &str) -> StoreResult<InstanceRecord>;
    /// Finds an instance by the hash of its agent credential.
    async fn instance_by_credential(&self, hash: &str) -> StoreResult<Option<InstanceRecord>>;
    /// Records a heartbeat.
    async fn instance_heartbeat(
        &self,
        id: &str,
        at: DateTime<Utc>,
        agent_version: &str,
        address: &str,
    ) -> StoreResult<()>;
    /// Records many heartbeats at once, in one transaction where the backend can;
    /// answers, for each, whether its instance exists (a missing one changes
    /// nothing and does not stop the others).
    async fn instance_heartbeats(&self, beats: &[HeartbeatRecord]) -> StoreResult<Vec<bool>> {
        let mut found = Vec::with_capacity(beats.len());
        for beat in beats {
            match self
                .instance_heartbeat(&beat.id, beat.at, &beat.agent_version, &beat.address)
                .await
            {
                Ok(()) => found.push(true),
                Err(StoreError::NotFound { .. }) => found.push(false),
                Err(err) => return Err(err),
            }
        }
        Ok(found)
    }
    /// Records what the instance's agent reported about the host's Docker Engine
    /// (its version, or why it does not answer); `NotFound` for an unknown id.
    async fn instance_set_docker(
        &self,
        id: &str,
        version: Option<&str>,
        error: Option<&str>,
    ) -> StoreResult<()>;
    /// Deregisters an instance: it leaves every group and its credential stops
    /// working.
    async fn instance_delete(&self, id: &str) -> StoreResult<()>;
    /// The groups an instance belongs to, with what it runs in each.
    async fn instance_memberships(&self, id: &str) -> StoreResult<Vec<MembershipRecord>>;

    // ------------------------------------------------------------ applications

    async fn app_create(&self, app: &AppRecord) -> StoreResult<()>;
    async fn app_list(&self) -> StoreResult<Vec<AppRecord>>;
    async fn app_fetch(&self, name: &str) -> StoreResult<AppRecord>;
    /// Refused with `InUse` while the application has groups or deployments.
    async fn app_delete(&self, name: &str) -> StoreResult<()>;

    // ------------------------------------------------------------ groups

    /// Fails with `NotFound` if the application does not exist.
    async fn group_create(&self, group: &GroupRecord) -> StoreResult<()>;
    async fn group_list(&self, app: &str) -> StoreResult<Vec<GroupRecord>>;
    async fn group_fetch(&self, app: &str, name: &str) -> StoreResult<GroupRecord>;
    /// Refused with `InUse` while the group has instances.
    async fn group_delete(&self, app: &str, name: &str) -> StoreResult<()>;
    /// Adds instances (by id) to a group; instances already in it are left as they
    /// are. All ids must exist, or nothing is added.
    async fn group_add_instances(&self, app: &str, group: &str, ids: &[String]) -> StoreResult<()>;
    /// Removes instances (by id) from a group. All must be members, or nothing is
    /// removed.
    async fn group_remove_instances(
        &self,
        app: &str,
        group: &str,
        ids: &[String],
    ) -> StoreResult<()>;
    /// The members of a group with what each runs, ordered by instance name.
    async fn group_members(&self, app: &str, group: &str) -> StoreResult<Vec<MemberRecord>>;

    // ------------------------------------------------------------ registries

    async fn registry_create(&self, registry: &RegistryRecord) -> StoreResult<()>;
    async fn registry_list(&self) -> StoreResult<Vec<RegistryRecord>>;
    async fn registry_fetch(&self, name: &str) -> StoreResult<RegistryRecord>;
    /// Refused with `InUse` while a deployment names the registry.
    async fn registry_delete(&self, name: &str) -> StoreResult<()>;

    // ------------------------------------------------------------ deployments

    /// Fails with `NotFound` if the application or the registry does not exist.
    async fn deployment_create(&self, deployment: &DeploymentRecord) -> StoreResult<()>;
    async fn deployment_list(&self, app: &str) -> StoreResult<Vec<DeploymentRecord>>;
    async fn deployment_fetch(&self, app: &str, name: &str) -> StoreResult<DeploymentRecord>;
    /// Refused with `InUse` while a group of the application has it as its current
    /// or previous deployment.
    async fn deployment_delete(&self, app: &str, name: &str) -> StoreResult<()>;

    // ------------------------------------------------------------ releases

    /// Creates a release and its tasks in one transaction. Refused with
    /// `StoreError::ActiveRelease { group, release }` while another release of the
    /// same group is not terminal, and with `NotFound` if the group or deployment is
    /// gone.
    async fn release_create(
        &self,
        release: &ReleaseRecord,
        tasks: &[TaskRecord],
    ) -> StoreResult<()>;
    async fn release_fetch(&self, id: &str) -> StoreResult<ReleaseRecord>;
    /// Releases, newest first, optionally of one application and group, at most
    /// `limit`; group execs are not listed (see [`Store::exec_list`]).
    async fn release_list(
        &self,
        app: Option<&str>,
        group: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ReleaseRecord>>;
    /// Creates a group exec: its release row (kind [`EXEC_KIND`], no deployment),
    /// its exec row and its tasks, in one transaction, with the refusals of
    /// [`Store::release_create`] (one active release or exec per group).
    async fn exec_create(
        &self,
        release: &ReleaseRecord,
        exec: &ExecRecord,
        tasks: &[TaskRecord],
    ) -> StoreResult<()>;
    /// A group exec by id; `NotFound` (kind `exec`) for a release that is not one.
    async fn exec_fetch(&self, id: &str) -> StoreResult<(ReleaseRecord, ExecRecord)>;
    /// Group execs, newest first, as [`Store::release_list`] (which lists no execs).
    async fn exec_list(
        &self,
        app: Option<&str>,
        group: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ReleaseRecord>>;
    /// Every release that is not terminal (what the driver works on), execs too.
    async fn release_list_active(&self) -> StoreResult<Vec<ReleaseRecord>>;
    /// Moves a release to `to` only if its state is one of `from`; returns whether it
    /// moved. Sets `started_at` when entering Running the first time, `finished_at` on a
    /// terminal state, and `message` when given.
    async fn release_transition(
        &self,
        id: &str,
        from: &[ReleaseState],
        to: ReleaseState,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Running -> Failed with `message`, and in the same transaction, when given,
    /// creates the release's automatic rollback (as [`Store::release_create`]), so
    /// that no reader and no restart ever sees the failure without its rollback.
    /// Returns whether the release moved; nothing is created when it did not.
    async fn release_fail(
        &self,
        id: &str,
        message: &str,
        now: DateTime<Utc>,
        rollback: Option<(&ReleaseRecord, &[TaskRecord])>,
    ) -> StoreResult<bool>;
    /// `continue`: Paused -> Running and `continued_through = batch`; returns whether it moved.
    async fn release_continue(&self, id: &str, continued_through: u32) -> StoreResult<bool>;

    /// The tasks of a release, by batch then instance name.
    async fn task_list(&self, release_id: &str) -> StoreResult<Vec<TaskRecord>>;
    /// How many tasks of one batch of a release have not ended (pending, dispatched
    /// or running); 0 for a release or batch without tasks.
    async fn task_count_open_in_batch(&self, release_id: &str, batch: u32) -> StoreResult<u32> {
        let tasks = match self.task_list(release_id).await {
            Ok(tasks) => tasks,
            Err(StoreError::NotFound { .. }) => return Ok(0),
            Err(err) => return Err(err),
        };
        Ok(tasks
            .iter()
            .filter(|t| t.batch == batch && !t.state.is_terminal())
            .count() as u32)
    }
    /// How each batch of a release stands, by batch; batches without tasks are
    /// left out.
    async fn task_batch_summaries(&self, release_id: &str) -> StoreResult<Vec<BatchSummary>>;
    /// The release's dispatched and running tasks, each with its instance's last
    /// heartbeat (or that the instance is gone).
    async fn task_list_live(&self, release_id: &str) -> StoreResult<Vec<LiveTask>>;
    /// Pending -> Dispatched for every task of `batch`, with the deadline; returns the
    /// instance ids dispatched.
    async fn task_dispatch_batch(
        &self,
        release_id: &str,
        batch: u32,
        now: DateTime<Utc>,
        deadline: DateTime<Utc>,
    ) -> StoreResult<Vec<String>>;
    /// The release of the instance's oldest Dispatched task of a Running release:
    /// the work its agent is given when it polls. A read: handing work out writes
    /// nothing, and the task is claimed by the agent's first step report
    /// ([`Store::task_claim`]).
    async fn task_next_dispatched(&self, instance_id: &str) -> StoreResult<Option<String>>;
    /// Claims a handed-out task when its agent reports its first step: Dispatched
    /// -> Running if the release is Running, with `started_at`, and the `fetch`
    /// step recorded as succeeded at `now`. `Ok(false)` when the task is not
    /// Dispatched or its release not Running; `NotFound` when there is no task.
    async fn task_claim(
        &self,
        release_id: &str,
        instance_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// The instance's tasks in state Running (an agent that polls while it has one
    /// restarted).
    async fn task_list_running_for_instance(
        &self,
        instance_id: &str,
    ) -> StoreResult<Vec<TaskRecord>>;
    /// What an agent's poll looks at first, in one read: the instance's running
    /// tasks ([`Store::task_list_running_for_instance`]) and the release of the
    /// work it is to be given ([`Store::task_next_dispatched`]). A backend should
    /// answer both in one snapshot; this default asks one after the other.
    async fn task_poll_look(&self, instance_id: &str) -> StoreResult<PollLook> {
        Ok(PollLook {
            running: self.task_list_running_for_instance(instance_id).await?,
            next: self.task_next_dispatched(instance_id).await?,
        })
    }
    async fn task_fetch(&self, release_id: &str, instance_id: &str) -> StoreResult<TaskRecord>;
    /// Ends a task that is not terminal; returns whether it changed. On success also
    /// records deployment and digest on the instance's group membership (if it is
    /// still a member), in the same transaction.
    async fn task_finish(
        &self,
        release_id: &str,
        instance_id: &str,
        state: TaskState,
        digest: Option<&str>,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Fails a task that has not ended (its agent went offline or restarted, its
    /// deadline passed) together with the step it was running, both with `reason`,
    /// in one write: no reader ever sees the step closed and the task still
    /// running. Returns whether the task changed; nothing is written if it had
    /// already ended. `NotFound` if the release has no task on the instance.
    async fn task_fail(
        &self,
        release_id: &str,
        instance_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Pending and Dispatched tasks of a release -> Cancelled; returns how many.
    async fn task_cancel_unstarted(
        &self,
        release_id: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;

    /// Starts (or restarts, if it is Running) a step; refused with `Conflict` when the
    /// step is already finished — a step never runs twice — or when the task is not
    /// running.
    async fn step_begin(
        &self,
        release_id: &str,
        instance_id: &str,
        step: StepName,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Appends output to a running step, keeping only the last `keep_bytes` bytes and
    /// adding what it cut to `dropped_bytes`. `offset` is how many bytes the step
    /// had written before this report (`dropped` and `chunk` come after it), as
    /// the agent counts them: a report whose offset is behind what the step has
    /// recorded (the stored output's length plus its `dropped_bytes`) repeats one
    /// already stored and changes nothing; one ahead of it follows reports that
    /// never arrived, whose bytes are counted as dropped. Without an offset the
    /// chunk is appended as it comes.
    #[allow(clippy::too_many_arguments)]
    async fn step_append_output(
        &self,
        release_id: &str,
        instance_id: &str,
        step: StepName,
        chunk: &str,
        dropped: u64,
        keep_bytes: usize,
        offset: Option<u64>,
    ) -> StoreResult<()>;
    /// Ends a running step; returns whether it changed (a late or repeated report
    /// changes nothing).
    #[allow(clippy::too_many_arguments)]
    async fn step_finish(
        &self,
        release_id: &str,
        instance_id: &str,
        step: StepName,
        state: StepState,
        exit_code: Option<i32>,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Steps of a release, optionally of one instance, in run order.
    async fn step_list(
        &self,
        release_id: &str,
        instance_id: Option<&str>,
    ) -> StoreResult<Vec<StepRecord>>;

    /// [`Store::step_list`] without the steps' output (left empty): what views of
    /// a whole release need, without reading up to a MiB of output per step.
    async fn step_list_without_output(
        &self,
        release_id: &str,
        instance_id: Option<&str>,
    ) -> StoreResult<Vec<StepRecord>>;

    /// A release with all its tasks and their steps (without output), as a view
    /// of the whole release needs them: tasks as [`Store::task_list`] orders
    /// them; steps grouped by instance, in run order within an instance, the
    /// instances in no particular order. A backend should read all three in one
    /// snapshot; this default reads them one after the other.
    async fn release_detail(&self, id: &str) -> StoreResult<ReleaseDetail> {
        let release = self.release_fetch(id).await?;
        let tasks = self.task_list(id).await?;
        let steps = self.step_list_without_output(id, None).await?;
        Ok(ReleaseDetail {
            release,
            tasks,
            steps,
        })
    }

    /// Part of a release, as a view that keeps the parts of its last build
    /// needs when few of a large release's instances changed since: the
    /// release, how each of its batches stands, the tasks of the batches
    /// `wants_batch` picks, and the steps of the tasks among them that
    /// `wants_steps` picks. A backend should read it in one snapshot; this
    /// default filters a whole [`Store::release_detail`].
    async fn release_detail_where(
        &self,
        id: &str,
        wants_batch: BatchFilter,
        wants_steps: StepFilter,
    ) -> StoreResult<ReleasePart> {
        // The counts are read first: should a task move between the two reads,
        // the tasks are newer than the counts, and the next build, which finds
        // the counts changed, reads the batch again. Read the other way round,
        // a batch could be kept from tasks older than its counts.
        let batches = self.task_batch_summaries(id).await?;
        let detail = self.release_detail(id).await?;
        let picked: std::collections::HashSet<u32> = batches
            .iter()
            .filter(|b| wants_batch(b))
            .map(|b| b.batch)
            .collect();
        let tasks: Vec<TaskRecord> = detail
            .tasks
            .into_iter()
            .filter(|t| picked.contains(&t.batch))
            .collect();
        let wanted: std::collections::HashSet<&str> = tasks
            .iter()
            .filter(|t| wants_steps(t))
            .map(|t| t.instance_id.as_str())
            .collect();
        let steps = detail
            .steps
            .into_iter()
            .filter(|s| wanted.contains(s.instance_id.as_str()))
            .collect();
        Ok(ReleasePart {
            release: detail.release,
            batches,
            tasks,
            steps,
        })
    }

    /// A release succeeded: the group's previous deployment becomes what was current
    /// (if different) and its current becomes `deployment`.
    async fn group_set_current_deployment(
        &self,
        app: &str,
        group: &str,
        deployment: &str,
    ) -> StoreResult<()>;
    /// Many agents' writes at once, in one transaction where the backend can; each
    /// write is still all or nothing on its own and answers as its single-call
    /// method would (a refused one does not stop the others). `Err` only when the
    /// batch as a whole could not be written, and then none of it was.
    async fn agent_writes(
        &self,
        writes: Vec<AgentWrite>,
    ) -> StoreResult<Vec<StoreResult<AgentWritten>>> {
        let mut results = Vec::with_capacity(writes.len());
        for write in &writes {
            results.push(agent_write_one_by_one(self, write).await);
        }
        Ok(results)
    }
    /// Records the digest the pull step reported on a task that is dispatched or
    /// running; a pending or ended task keeps what it has (it changes only by
    /// changing state). Not found if there is no such task.
    async fn task_set_digest(
        &self,
        release_id: &str,
        instance_id: &str,
        digest: &str,
    ) -> StoreResult<()>;

    // ------------------------------------------------------------ scaling groups

    /// Fails with `NotFound` if the application or group does not exist.
    async fn scaling_group_create(&self, record: &ScalingGroupRecord) -> StoreResult<()>;
    async fn scaling_group_list(&self) -> StoreResult<Vec<ScalingGroupRecord>>;
    async fn scaling_group_fetch(&self, name: &str) -> StoreResult<ScalingGroupRecord>;
    /// Refused with `InUse` while suspended or while instances are held.
    async fn scaling_group_delete(&self, name: &str) -> StoreResult<()>;
    /// Registers an instance (as [`Store::instance_register`]) for its scaling
    /// group, in one transaction: `NotFound` (kind `scaling group`) if it does not
    /// exist; otherwise the instance joins the bound group, or is held while the
    /// scaling group is suspended. Records the activity.
    async fn instance_register_scaling(
        &self,
        token_hash: &str,
        instance: &InstanceRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<ScalingJoin>;
    /// Takes the lease for `release`: an active group becomes suspended (returns
    /// true; the on-suspend hook becomes pending); a group suspended by another
    /// release passes the lease to this one (returns false, no hook).
    async fn scaling_group_suspend(
        &self,
        name: &str,
        release: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Ends the lease if `release` holds it: the group becomes active, held
    /// instances join the bound group (marked joined, awaiting catch-up) and the
    /// on-resume hook becomes pending. Returns whether it moved.
    async fn scaling_group_resume(
        &self,
        name: &str,
        release: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Instances held or joined-awaiting-catch-up, by instance name.
    async fn scaling_group_held(&self, name: &str) -> StoreResult<Vec<ScalingHeldRecord>>;
    /// Forgets joined instances once their catch-up release exists.
    async fn scaling_group_caught_up(&self, name: &str, ids: &[String]) -> StoreResult<()>;
    /// Records a hook run and what follows: the suspend hook is done; a resume
    /// hook is done on success, or retried at `retry_at`, or given up when `None`.
    async fn scaling_hook_record(
        &self,
        name: &str,
        run: &HookRunRecord,
        retry_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()>;
    /// Hook runs, oldest first, the last `limit`.
    async fn scaling_hook_runs(&self, name: &str, limit: u32) -> StoreResult<Vec<HookRunRecord>>;
    /// Activities, oldest first, the last `limit`.
    async fn scaling_activities(
        &self,
        name: &str,
        limit: u32,
    ) -> StoreResult<Vec<ScalingActivityRecord>>;
}

/// The default [`Store::agent_writes`] of one write: the single-call methods in
/// turn (each its own transaction). A backend that batches must answer the same;
/// the conformance suite compares it with this.
pub async fn agent_write_one_by_one<S: Store + ?Sized>(
    store: &S,
    write: &AgentWrite,
) -> StoreResult<AgentWritten> {
    match write {
        AgentWrite::StepBegin {
            release_id,
            instance_id,
            step,
            now,
        } => {
            let task = store.task_fetch(release_id, instance_id).await?;
            let state = match task.state {
                TaskState::Dispatched
                    if store.task_claim(release_id, instance_id, *now).await? =>
                {
                    TaskState::Running
                }
                state => state,
            };
            refuse_unless_running(state, *step, "begin")?;
            store
                .step_begin(release_id, instance_id, *step, *now)
                .await
                .map(|()| AgentWritten::Recorded)
        }
        AgentWrite::StepOutput {
            release_id,
            instance_id,
            step,
            chunk,
            dropped,
            keep_bytes,
            offset,
        } => {
            let task = store.task_fetch(release_id, instance_id).await?;
            refuse_unless_running(task.state, *step, "take output")?;
            store
                .step_append_output(
                    release_id,
                    instance_id,
                    *step,
                    chunk,
                    *dropped,
                    *keep_bytes,
                    *offset,
                )
                .await
                .map(|()| AgentWritten::Recorded)
        }
        AgentWrite::StepEnd {
            release_id,
            instance_id,
            step,
            state,
            exit_code,
            message,
            digest,
            task_end,
            then_begin,
            now,
        } => {
            refuse_unsound_step_end(*step, *state, task_end, *then_begin)?;
            let task = store.task_fetch(release_id, instance_id).await?;
            refuse_unless_running(task.state, *step, "end")?;
            if let Some(next) = then_begin {
                // Refused before the end is written, as a backend that writes
                // both in one transaction undoes the end with the begin; in
                // the order such a backend meets them. (A missing step is
                // left to `step_finish`, which refuses it without writing.)
                let steps = store
                    .step_list_without_output(release_id, Some(instance_id))
                    .await?;
                let state_of =
                    |name: StepName| steps.iter().find(|s| s.step == name).map(|s| s.state);
                if let Some(ended) = state_of(*step) {
                    if ended != StepState::Running {
                        refuse_begin_after_unchanged_end(*step, ended, *next)?;
                    }
                    if state_of(*next).is_some_and(|s| s != StepState::Running) {
                        return Err(StoreError::Conflict(format!(
                            "step {} already finished",
                            next.as_str()
                        )));
                    }
                }
            }
            let changed = store
                .step_finish(
                    release_id,
                    instance_id,
                    *step,
                    *state,
                    *exit_code,
                    message.as_deref(),
                    *now,
                )
                .await?;
            let mut ended = AgentWritten::StepEnded {
                changed,
                task_finished: false,
                batch_open: 0,
            };
            if changed {
                if let Some(digest) = digest {
                    store
                        .task_set_digest(release_id, instance_id, digest)
                        .await?;
                }
            }
            // A report that ends the task begins no next step (refused above).
            if let (true, Some((task_state, reason))) = (changed, task_end) {
                let finished = store
                    .task_finish(
                        release_id,
                        instance_id,
                        *task_state,
                        None,
                        reason.as_deref(),
                        *now,
                    )
                    .await?;
                let batch_open = if finished && *task_state == TaskState::Succeeded {
                    store
                        .task_count_open_in_batch(release_id, task.batch)
                        .await?
                } else {
                    0
                };
                ended = AgentWritten::StepEnded {
                    changed,
                    task_finished: finished,
                    batch_open,
                };
            }
            if let Some(next) = then_begin {
                store
                    .step_begin(release_id, instance_id, *next, *now)
                    .await?;
            }
            Ok(ended)
        }
    }
}

/// A step end that left its step unchanged begins the next step only when the
/// step had succeeded: the report is a retry of one whose answer was lost. A
/// step that ended otherwise was failed by someone else. The server fails a
/// lost task with its step in one write (`Store::task_fail`), so the task has
/// ended and the report is refused before this; but a database written by a
/// server that failed the step and the task in two writes may hold a failed step
/// of a running task, and the next step must not begin after it either.
pub(crate) fn refuse_begin_after_unchanged_end(
    step: StepName,
    recorded: StepState,
    next: StepName,
) -> StoreResult<()> {
    if recorded == StepState::Succeeded {
        return Ok(());
    }
    Err(StoreError::Conflict(format!(
        "step {} ended as {}; step {} cannot begin",
        step.as_str(),
        recorded.as_str(),
        next.as_str()
    )))
}

/// Refuses a step write (`verb` says which) to a task that is not running: its
/// agent has not claimed it, or it has ended (a deadline, an offline spell, a
/// restart, a cancel).
pub fn refuse_unless_running(task: TaskState, step: StepName, verb: &str) -> StoreResult<()> {
    if task == TaskState::Running {
        return Ok(());
    }
    Err(StoreError::Conflict(format!(
        "the task is {}; step {} cannot {verb}",
        task.as_str(),
        step.as_str()
    )))
}

/// A step end may end its task only in an end state, and may begin the next
/// step only when it succeeded without ending the task; checked before anything
/// is written, so that such a write is refused whole.
pub(crate) fn refuse_unsound_step_end(
    step: StepName,
    step_state: StepState,
    task_end: &Option<(TaskState, Option<String>)>,
    then_begin: Option<StepName>,
) -> StoreResult<()> {
    if let Some((state, _)) = task_end {
        if !state.is_terminal() {
            return Err(StoreError::Conflict(format!(
                "a task cannot be finished as {}",
                state.as_str()
            )));
        }
    }
    match then_begin {
        Some(next) if next == step => Err(StoreError::Conflict(format!(
            "step {} cannot begin as it ends",
            next.as_str()
        ))),
        Some(next) if step_state != StepState::Succeeded || task_end.is_some() => {
            Err(StoreError::Conflict(format!(
                "step {} can begin only after a step that succeeded without ending the task",
                next.as_str()
            )))
        }
        _ => Ok(()),
    }
}
