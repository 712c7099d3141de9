//! The SQLite backend of [`Store`]: one database file in WAL mode, written through
//! a single connection and read through a small pool.
//!
//! Every write runs in a `BEGIN IMMEDIATE` transaction on the writer pool, which
//! has exactly one connection: writes queue in the pool instead of racing for
//! SQLite's write lock, and a refused call rolls back whole. Reads run in a
//! (deferred) transaction on the reader pool so that each call sees one snapshot.
//! One submodule per table family holds the SQL.

mod agent_writes;
mod apps;
mod convert;
mod deployments;
mod execs;
mod failure;
mod groups;
mod instances;
mod registries;
mod releases;
mod scaling;
mod steps;
mod tasks;
mod tokens;

use crate::ExecRecord;
use crate::{
    AgentWrite, AgentWritten, ApiTokenRecord, AppRecord, BatchSummary, DeploymentRecord,
    GroupRecord, HeartbeatRecord, InstanceRecord, LiveTask, MemberRecord, MembershipRecord,
    RegistrationTokenRecord, RegistryRecord, ReleaseRecord, StepRecord, StepState, Store,
    StoreError, StoreResult, TaskRecord, TaskState,
};
use crate::{
    HookRunRecord, ScalingActivityRecord, ScalingGroupRecord, ScalingHeldRecord, ScalingJoin,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::path::Path;
use std::time::Duration;
use wharf_domain::release::{ReleaseState, StepName};

/// The schema, embedded at build time. Migrations only ever get added.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for a lock held by another connection (another
/// process on the same file, or the WAL checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many connections serve reads at once.
const READERS: u32 = 4;

/// A [`Store`] kept in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file if it is missing, and brings
    /// its schema up to date.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // A connection to a local file cannot go stale, so the pools do not ping it
        // before handing it out (a round trip to the connection's thread per call).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|err| StoreError::Backend(sqlx::Error::Migrate(Box::new(err))))?;
        // The readers are opened after the migrations so that they never see a
        // half-made schema, and `query_only` makes a write through them an error
        // instead of a second writer.
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .test_before_acquire(false)
            .connect_with(options.pragma("query_only", "ON"))
            .await?;
        Ok(SqliteStore { writer, reader })
    }

    /// Closes every connection, waiting for those in use to be returned. Calls
    /// made afterwards fail.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Starts a write transaction. `BEGIN IMMEDIATE` takes the write lock at once,
    /// so a transaction that reads before it writes cannot fail half-way with
    /// SQLITE_BUSY when another process writes in between.
    async fn write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Starts a read transaction: one consistent snapshot for the whole call. It
    /// is rolled back when dropped, which for a read changes nothing.
    async fn read(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.reader.begin().await?)
    }

    /// A reader without a transaction, for the hot reads of agents' requests
    /// whose one statement is its own snapshot: BEGIN and ROLLBACK would be two
    /// more round trips to the connection's thread, which at thousands of agents
    /// cost more than the query.
    async fn read_one(&self) -> StoreResult<PoolConnection<Sqlite>> {
        Ok(self.reader.acquire().await?)
    }
}

/// Commits a write transaction.
async fn commit(tx: Transaction<'static, Sqlite>) -> StoreResult<()> {
    Ok(tx.commit().await?)
}

#[async_trait]
impl Store for SqliteStore {
    async fn api_token_create(&self, token: &ApiTokenRecord) -> StoreResult<()> {
        let mut tx = self.write().await?;
        tokens::api_create(&mut tx, token).await?;
        commit(tx).await
    }

    async fn api_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        tokens::api_by_hash(&mut *self.read().await?, hash).await
    }

    async fn api_token_count(&self) -> StoreResult<u64> {
        tokens::api_count(&mut *self.read().await?).await
    }

    async fn registration_token_create(&self, token: &RegistrationTokenRecord) -> StoreResult<()> {
        let mut tx = self.write().await?;
        tokens::registration_create(&mut tx, token).await?;
        commit(tx).await
    }

    async fn registration_token_list(&self) -> StoreResult<Vec<RegistrationTokenRecord>> {
        tokens::registration_list(&mut *self.read().await?).await
    }

    async fn registration_token_delete(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.write().await?;
        tokens::registration_delete(&mut tx, id).await?;
        commit(tx).await
    }

    async fn instance_register(
        &self,
        token_hash: &str,
        instance: &InstanceRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        instances::register(&mut tx, token_hash, instance, now).await?;
        commit(tx).await
    }

    async fn instance_list(&self) -> StoreResult<Vec<InstanceRecord>> {
        instances::list(&mut *self.read().await?).await
    }

    async fn instance_fetch(&self, id_or_name: &str) -> StoreResult<InstanceRecord> {
        instances::fetch(&mut *self.read().await?, id_or_name).await
    }

    async fn instance_by_credential(&self, hash: &str) -> StoreResult<Option<InstanceRecord>> {
        instances::by_credential(&mut *self.read_one().await?, hash).await
    }

    async fn instance_heartbeat(
        &self,
        id: &str,
        at: DateTime<Utc>,
        agent_version: &str,
        address: &str,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        instances::heartbeat(&mut tx, id, at, agent_version, address).await?;
        commit(tx).await
    }

    async fn instance_heartbeats(&self, beats: &[HeartbeatRecord]) -> StoreResult<Vec<bool>> {
        let mut tx = self.write().await?;
        let found = instances::heartbeats(&mut tx, beats).await?;
        commit(tx).await?;
        Ok(found)
    }

    async fn instance_set_docker(
        &self,
        id: &str,
        version: Option<&str>,
        error: Option<&str>,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        instances::set_docker(&mut tx, id, version, error).await?;
        commit(tx).await
    }

    async fn instance_delete(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.write().await?;
        instances::delete(&mut tx, id).await?;
        commit(tx).await
    }

    async fn instance_memberships(&self, id: &str) -> StoreResult<Vec<MembershipRecord>> {
        instances::memberships(&mut *self.read().await?, id).await
    }

    async fn app_create(&self, app: &AppRecord) -> StoreResult<()> {
        let mut tx = self.write().await?;
        apps::create(&mut tx, app).await?;
        commit(tx).await
    }

    async fn app_list(&self) -> StoreResult<Vec<AppRecord>> {
        apps::list(&mut *self.read().await?).await
    }

    async fn app_fetch(&self, name: &str) -> StoreResult<AppRecord> {
        apps::fetch(&mut *self.read().await?, name).await
    }

    async fn app_delete(&self, name: &str) -> StoreResult<()> {
        let mut tx = self.write().await?;
        apps::delete(&mut tx, name).await?;
        commit(tx).await
    }

    async fn group_create(&self, group: &GroupRecord) -> StoreResult<()> {
        let mut tx = self.write().await?;
        groups::create(&mut tx, group).await?;
        commit(tx).await
    }

    async fn group_list(&self, app: &str) -> StoreResult<Vec<GroupRecord>> {
        groups::list(&mut *self.read().await?, app).await
    }

    async fn group_fetch(&self, app: &str, name: &str) -> StoreResult<GroupRecord> {
        groups::fetch(&mut *self.read().await?, app, name).await
    }

    async fn group_delete(&self, app: &str, name: &str) -> StoreResult<()> {
        let mut tx = self.write().await?;
        groups::delete(&mut tx, app, name).await?;
        commit(tx).await
    }

    async fn group_add_instances(&self, app: &str, group: &str, ids: &[String]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        groups::add_instances(&mut tx, app, group, ids).await?;
        commit(tx).await
    }

    async fn group_remove_instances(
        &self,
        app: &str,
        group: &str,
        ids: &[String],
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        groups::remove_instances(&mut tx, app, group, ids).await?;
        commit(tx).await
    }

    async fn group_members(&self, app: &str, group: &str) -> StoreResult<Vec<MemberRecord>> {
        groups::members(&mut *self.read().await?, app, group).await
    }

    async fn registry_create(&self, registry: &RegistryRecord) -> StoreResult<()> {
        let mut tx = self.write().await?;
        registries::create(&mut tx, registry).await?;
        commit(tx).await
    }

    async fn registry_list(&self) -> StoreResult<Vec<RegistryRecord>> {
        registries::list(&mut *self.read().await?).await
    }

    async fn registry_fetch(&self, name: &str) -> StoreResult<RegistryRecord> {
        registries::fetch(&mut *self.read().await?, name).await
    }

    async fn registry_delete(&self, name: &str) -> StoreResult<()> {
        let mut tx = self.write().await?;
        registries::delete(&mut tx, name).await?;
        commit(tx).await
    }

    async fn deployment_create(&self, deployment: &DeploymentRecord) -> StoreResult<()> {
        let mut tx = self.write().await?;
        deployments::create(&mut tx, deployment).await?;
        commit(tx).await
    }

    async fn deployment_list(&self, app: &str) -> StoreResult<Vec<DeploymentRecord>> {
        deployments::list(&mut *self.read().await?, app).await
    }

    async fn deployment_fetch(&self, app: &str, name: &str) -> StoreResult<DeploymentRecord> {
        deployments::fetch(&mut *self.read_one().await?, app, name).await
    }

    async fn deployment_delete(&self, app: &str, name: &str) -> StoreResult<()> {
        let mut tx = self.write().await?;
        deployments::delete(&mut tx, app, name).await?;
        commit(tx).await
    }

    async fn release_create(
        &self,
        release: &ReleaseRecord,
        tasks: &[TaskRecord],
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        releases::create(&mut tx, release, tasks).await?;
        commit(tx).await
    }

    async fn release_fetch(&self, id: &str) -> StoreResult<ReleaseRecord> {
        releases::fetch(&mut *self.read_one().await?, id).await
    }

    async fn release_list(
        &self,
        app: Option<&str>,
        group: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ReleaseRecord>> {
        releases::list(&mut *self.read().await?, app, group, limit, false).await
    }

    async fn exec_create(
        &self,
        release: &ReleaseRecord,
        exec: &ExecRecord,
        tasks: &[TaskRecord],
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        execs::create(&mut tx, release, exec, tasks).await?;
        commit(tx).await
    }

    async fn exec_fetch(&self, id: &str) -> StoreResult<(ReleaseRecord, ExecRecord)> {
        execs::fetch(&mut *self.read().await?, id).await
    }

    async fn exec_list(
        &self,
        app: Option<&str>,
        group: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ReleaseRecord>> {
        releases::list(&mut *self.read().await?, app, group, limit, true).await
    }

    async fn release_list_active(&self) -> StoreResult<Vec<ReleaseRecord>> {
        releases::list_active(&mut *self.read().await?).await
    }

    async fn release_transition(
        &self,
        id: &str,
        from: &[ReleaseState],
        to: ReleaseState,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let moved = releases::transition(&mut tx, id, from, to, message, now).await?;
        commit(tx).await?;
        Ok(moved)
    }

    async fn release_fail(
        &self,
        id: &str,
        message: &str,
        now: DateTime<Utc>,
        rollback: Option<(&ReleaseRecord, &[TaskRecord])>,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let moved = releases::transition(
            &mut tx,
            id,
            &[ReleaseState::Running],
            ReleaseState::Failed,
            Some(message),
            now,
        )
        .await?;
        if let (true, Some((release, tasks))) = (moved, rollback) {
            releases::create(&mut tx, release, tasks).await?;
        }
        commit(tx).await?;
        Ok(moved)
    }

    async fn release_continue(&self, id: &str, continued_through: u32) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let moved = releases::resume(&mut tx, id, continued_through).await?;
        commit(tx).await?;
        Ok(moved)
    }

    async fn task_list(&self, release_id: &str) -> StoreResult<Vec<TaskRecord>> {
        tasks::list(&mut *self.read().await?, release_id).await
    }

    async fn agent_writes(
        &self,
        writes: &[AgentWrite],
    ) -> StoreResult<Vec<StoreResult<AgentWritten>>> {
        let mut tx = self.write().await?;
        let results = agent_writes::write_all(&mut tx, writes).await?;
        commit(tx).await?;
        Ok(results)
    }

    async fn task_batch_summaries(&self, release_id: &str) -> StoreResult<Vec<BatchSummary>> {
        tasks::batch_summaries(&mut *self.read_one().await?, release_id).await
    }

    async fn task_list_live(&self, release_id: &str) -> StoreResult<Vec<LiveTask>> {
        tasks::list_live(&mut *self.read_one().await?, release_id).await
    }

    async fn task_count_open_in_batch(&self, release_id: &str, batch: u32) -> StoreResult<u32> {
        tasks::count_open_in_batch(&mut *self.read_one().await?, release_id, batch).await
    }

    async fn task_dispatch_batch(
        &self,
        release_id: &str,
        batch: u32,
        now: DateTime<Utc>,
        deadline: DateTime<Utc>,
    ) -> StoreResult<Vec<String>> {
        let mut tx = self.write().await?;
        let dispatched = tasks::dispatch_batch(&mut tx, release_id, batch, now, deadline).await?;
        commit(tx).await?;
        Ok(dispatched)
    }

    async fn task_claim(
        &self,
        instance_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<TaskRecord>> {
        let mut tx = self.write().await?;
        let claimed = tasks::claim(&mut tx, instance_id, now).await?;
        commit(tx).await?;
        Ok(claimed)
    }

    async fn task_claimable(&self, instance_id: &str) -> StoreResult<bool> {
        Ok(
            tasks::next_claimable(&mut *self.read_one().await?, instance_id)
                .await?
                .is_some(),
        )
    }

    async fn task_list_running_for_instance(
        &self,
        instance_id: &str,
    ) -> StoreResult<Vec<TaskRecord>> {
        tasks::list_running_for_instance(&mut *self.read_one().await?, instance_id).await
    }

    async fn task_fetch(&self, release_id: &str, instance_id: &str) -> StoreResult<TaskRecord> {
        tasks::fetch(&mut *self.read_one().await?, release_id, instance_id).await
    }

    async fn task_finish(
        &self,
        release_id: &str,
        instance_id: &str,
        state: TaskState,
        digest: Option<&str>,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let finished = tasks::finish(
            &mut tx,
            release_id,
            instance_id,
            state,
            digest,
            message,
            now,
        )
        .await?;
        commit(tx).await?;
        Ok(finished)
    }

    async fn task_cancel_unstarted(
        &self,
        release_id: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut tx = self.write().await?;
        let cancelled = tasks::cancel_unstarted(&mut tx, release_id, message, now).await?;
        commit(tx).await?;
        Ok(cancelled)
    }

    async fn step_begin(
        &self,
        release_id: &str,
        instance_id: &str,
        step: StepName,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        steps::begin(&mut tx, release_id, instance_id, step, now).await?;
        commit(tx).await
    }

    async fn step_append_output(
        &self,
        release_id: &str,
        instance_id: &str,
        step: StepName,
        chunk: &str,
        dropped: u64,
        keep_bytes: usize,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        steps::append_output(
            &mut tx,
            release_id,
            instance_id,
            step,
            chunk,
            dropped,
            keep_bytes,
        )
        .await?;
        commit(tx).await
    }

    async fn step_finish(
        &self,
        release_id: &str,
        instance_id: &str,
        step: StepName,
        state: StepState,
        exit_code: Option<i32>,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let finished = steps::finish(
            &mut tx,
            release_id,
            instance_id,
            step,
            state,
            exit_code,
            message,
            now,
        )
        .await?;
        commit(tx).await?;
        Ok(finished)
    }

    async fn step_list(
        &self,
        release_id: &str,
        instance_id: Option<&str>,
    ) -> StoreResult<Vec<StepRecord>> {
        steps::list(&mut *self.read().await?, release_id, instance_id, true).await
    }

    async fn step_list_without_output(
        &self,
        release_id: &str,
        instance_id: Option<&str>,
    ) -> StoreResult<Vec<StepRecord>> {
        steps::list(&mut *self.read().await?, release_id, instance_id, false).await
    }

    async fn group_set_current_deployment(
        &self,
        app: &str,
        group: &str,
        deployment: &str,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        groups::set_current_deployment(&mut tx, app, group, deployment).await?;
        commit(tx).await
    }

    async fn task_set_digest(
        &self,
        release_id: &str,
        instance_id: &str,
        digest: &str,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        tasks::set_digest(&mut tx, release_id, instance_id, digest).await?;
        commit(tx).await
    }

    async fn scaling_group_create(&self, record: &ScalingGroupRecord) -> StoreResult<()> {
        let mut tx = self.write().await?;
        scaling::create(&mut tx, record).await?;
        commit(tx).await
    }

    async fn scaling_group_list(&self) -> StoreResult<Vec<ScalingGroupRecord>> {
        scaling::list(&mut *self.read().await?).await
    }

    async fn scaling_group_fetch(&self, name: &str) -> StoreResult<ScalingGroupRecord> {
        scaling::fetch(&mut *self.read().await?, name).await
    }

    async fn scaling_group_delete(&self, name: &str) -> StoreResult<()> {
        let mut tx = self.write().await?;
        scaling::delete(&mut tx, name).await?;
        commit(tx).await
    }

    async fn instance_register_scaling(
        &self,
        token_hash: &str,
        instance: &InstanceRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<ScalingJoin> {
        let mut tx = self.write().await?;
        let join = scaling::register(&mut tx, token_hash, instance, now).await?;
        commit(tx).await?;
        Ok(join)
    }

    async fn scaling_group_suspend(
        &self,
        name: &str,
        release: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let moved = scaling::suspend(&mut tx, name, release, now).await?;
        commit(tx).await?;
        Ok(moved)
    }

    async fn scaling_group_resume(
        &self,
        name: &str,
        release: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let moved = scaling::resume(&mut tx, name, release, now).await?;
        commit(tx).await?;
        Ok(moved)
    }

    async fn scaling_group_held(&self, name: &str) -> StoreResult<Vec<ScalingHeldRecord>> {
        scaling::held(&mut *self.read().await?, name).await
    }

    async fn scaling_group_caught_up(&self, name: &str, ids: &[String]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        scaling::caught_up(&mut tx, name, ids).await?;
        commit(tx).await
    }

    async fn scaling_hook_record(
        &self,
        name: &str,
        run: &HookRunRecord,
        retry_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        scaling::hook_record(&mut tx, name, run, retry_at).await?;
        commit(tx).await
    }

    async fn scaling_hook_runs(&self, name: &str, limit: u32) -> StoreResult<Vec<HookRunRecord>> {
        scaling::hook_runs(&mut *self.read().await?, name, limit).await
    }

    async fn scaling_activities(
        &self,
        name: &str,
        limit: u32,
    ) -> StoreResult<Vec<ScalingActivityRecord>> {
        scaling::activities(&mut *self.read().await?, name, limit).await
    }
}
