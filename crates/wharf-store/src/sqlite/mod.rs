//! The SQLite backend of [`Store`]: one database file in WAL mode, written through
//! a single connection and read through a few more.
//!
//! Each connection lives on a thread of its own (`worker.rs`), and a store call
//! is one closure that runs all its statements there: one round trip between the
//! async caller and the database per call, whatever it does. Every write runs in
//! a `BEGIN IMMEDIATE` transaction on the one writer: writes queue for it instead
//! of racing for SQLite's write lock, and a refused call rolls back whole. Reads
//! run in a (deferred) transaction on whichever reader is free, so that each call
//! sees one snapshot. One submodule per table family holds the SQL.

mod agent_writes;
mod apps;
pub mod backup;
mod integrity;
use integrity::{check_integrity, unreadable};
mod checkpoint;
pub(crate) mod convert;
mod deployments;
mod execs;
pub(crate) mod failure;
mod groups;
mod instances;
mod migrate;
mod query;
mod registries;
pub(crate) mod releases;
mod scaling;
pub(crate) mod steps;
mod tasks;
mod tokens;
mod worker;

use crate::ExecRecord;
use crate::{
    AgentWrite, AgentWritten, ApiTokenRecord, AppRecord, BatchFilter, BatchSummary,
    DeploymentRecord, GroupRecord, HeartbeatRecord, InstanceRecord, LiveTask, MemberRecord,
    MembershipRecord, PollLook, RegistrationTokenRecord, RegistryRecord, ReleaseDetail,
    ReleasePart, ReleaseRecord, StepFilter, StepRecord, StepState, Store, StoreError, StoreResult,
    TaskRecord, TaskState,
};
use crate::{
    HookRunRecord, ScalingActivityRecord, ScalingGroupRecord, ScalingHeldRecord, ScalingJoin,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wharf_domain::release::{ReleaseState, StepName};
use worker::Workers;

/// How long a statement waits for a lock held by another connection (another
/// process on the same file, or the WAL checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many connections serve reads at once.
const READERS: usize = 4;

/// Prepared statements each connection keeps; more than the store has SQL texts
/// on its hot paths, so that none is prepared again.
const STATEMENT_CACHE: usize = 256;
/// How much of the database file each connection maps (address space, not
/// memory: the OS shares the mapped pages between connections and with its cache).
const MMAP_BYTES: i64 = 1 << 30;

/// A [`Store`] kept in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<Workers>,
    readers: Arc<Workers>,
    checkpointer: Arc<checkpoint::Checkpointer>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file if it is missing, and brings
    /// its schema up to date.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        let path = path.to_owned();
        // Opening, migrating and starting threads block; none of it may hold up
        // the caller's runtime.
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    fn open_blocking(path: &Path) -> StoreResult<SqliteStore> {
        let mut writer = connect(path, false).map_err(|err| match err {
            StoreError::Backend(err) => unreadable(err),
            other => other,
        })?;
        check_integrity(&writer)?;
        migrate::run(&mut writer)?;
        // The WAL is copied back by a thread of its own, not inside the writer's
        // commits (checkpoint.rs).
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = checkpoint::Checkpointer::start(connect(path, false)?)?;
        // The readers are opened after the migrations so that they never see a
        // half-made schema, and `query_only` makes a write through them an error
        // instead of a second writer.
        let readers = (0..READERS)
            .map(|_| connect(path, true))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(SqliteStore {
            writer: Arc::new(Workers::start("wharf-db-writer", vec![writer])?),
            readers: Arc::new(Workers::start("wharf-db-reader", readers)?),
            checkpointer: Arc::new(checkpointer),
        })
    }

    /// Closes every connection, after the calls already made. Calls made
    /// afterwards fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
        self.checkpointer.close().await;
    }

    /// Runs `call` in a write transaction, committed if it succeeds and rolled
    /// back whole if it fails. `BEGIN IMMEDIATE` takes the write lock at once, so
    /// a transaction that reads before it writes cannot fail half-way with
    /// SQLITE_BUSY when another process writes in between.
    async fn write<T, F>(&self, call: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.writer
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let answer = call(&tx)?;
                tx.commit()?;
                Ok(answer)
            })
            .await
    }

    /// Runs `call` in a read transaction: one consistent snapshot for the whole
    /// call, rolled back (which for a read changes nothing) at its end.
    async fn read<T, F>(&self, call: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.readers
            .run(move |conn| {
                let tx = conn.transaction()?;
                call(&tx)
            })
            .await
    }
}

/// Opens one connection with the settings every connection of the store has.
fn connect(path: &Path, query_only: bool) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // WAL lets readers go on while the writer writes; NORMAL syncs at checkpoints,
    // which in WAL mode cannot corrupt the database (a power cut may lose the last
    // commits, not the file).
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )?;
    // A connection drops its whole page cache whenever another connection has
    // written since its last transaction, which under a steady stream of agent
    // writes is nearly every transaction: each read would copy every page it
    // touches out of the OS again. Mapped, the database file's pages are read in
    // place (pages still in the WAL are read as before).
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    if query_only {
        conn.execute_batch("PRAGMA query_only = ON;")?;
    }
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    async fn api_token_create(&self, token: &ApiTokenRecord) -> StoreResult<()> {
        let token = token.clone();
        self.write(move |tx| tokens::api_create(tx, &token)).await
    }

    async fn api_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        let hash = hash.to_owned();
        self.read(move |conn| tokens::api_by_hash(conn, &hash))
            .await
    }

    async fn api_token_count(&self) -> StoreResult<u64> {
        self.read(tokens::api_count).await
    }

    async fn registration_token_create(&self, token: &RegistrationTokenRecord) -> StoreResult<()> {
        let token = token.clone();
        self.write(move |tx| tokens::registration_create(tx, &token))
            .await
    }

    async fn registration_token_list(&self) -> StoreResult<Vec<RegistrationTokenRecord>> {
        self.read(tokens::registration_list).await
    }

    async fn registration_token_delete(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |tx| tokens::registration_delete(tx, &id))
            .await
    }

    async fn instance_register(
        &self,
        token_hash: &str,
        instance: &InstanceRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let token_hash = token_hash.to_owned();
        let instance = instance.clone();
        self.write(move |tx| instances::register(tx, &token_hash, &instance, now))
            .await
    }

    async fn instance_list(&self) -> StoreResult<Vec<InstanceRecord>> {
        self.read(instances::list).await
    }

    async fn instance_fetch(&self, id_or_name: &str) -> StoreResult<InstanceRecord> {
        let id_or_name = id_or_name.to_owned();
        self.read(move |conn| instances::fetch(conn, &id_or_name))
            .await
    }

    async fn instance_by_credential(&self, hash: &str) -> StoreResult<Option<InstanceRecord>> {
        let hash = hash.to_owned();
        self.read(move |conn| instances::by_credential(conn, &hash))
            .await
    }

    async fn instance_heartbeat(
        &self,
        id: &str,
        at: DateTime<Utc>,
        agent_version: &str,
        address: &str,
    ) -> StoreResult<()> {
        let id = id.to_owned();
        let agent_version = agent_version.to_owned();
        let address = address.to_owned();
        self.write(move |tx| instances::heartbeat(tx, &id, at, &agent_version, &address))
            .await
    }

    async fn instance_heartbeats(&self, beats: &[HeartbeatRecord]) -> StoreResult<Vec<bool>> {
        let beats = beats.to_vec();
        self.write(move |tx| instances::heartbeats(tx, &beats))
            .await
    }

    async fn instance_set_docker(
        &self,
        id: &str,
        version: Option<&str>,
        error: Option<&str>,
    ) -> StoreResult<()> {
        let id = id.to_owned();
        let version = version.map(str::to_owned);
        let error = error.map(str::to_owned);
        self.write(move |tx| instances::set_docker(tx, &id, version.as_deref(), error.as_deref()))
            .await
    }

    async fn instance_delete(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |tx| instances::delete(tx, &id)).await
    }

    async fn instance_memberships(&self, id: &str) -> StoreResult<Vec<MembershipRecord>> {
        let id = id.to_owned();
        self.read(move |conn| instances::memberships(conn, &id))
            .await
    }

    async fn app_create(&self, app: &AppRecord) -> StoreResult<()> {
        let app = app.clone();
        self.write(move |tx| apps::create(tx, &app)).await
    }

    async fn app_list(&self) -> StoreResult<Vec<AppRecord>> {
        self.read(apps::list).await
    }

    async fn app_fetch(&self, name: &str) -> StoreResult<AppRecord> {
        let name = name.to_owned();
        self.read(move |conn| apps::fetch(conn, &name)).await
    }

    async fn app_delete(&self, name: &str) -> StoreResult<()> {
        let name = name.to_owned();
        self.write(move |tx| apps::delete(tx, &name)).await
    }

    async fn group_create(&self, group: &GroupRecord) -> StoreResult<()> {
        let group = group.clone();
        self.write(move |tx| groups::create(tx, &group)).await
    }

    async fn group_list(&self, app: &str) -> StoreResult<Vec<GroupRecord>> {
        let app = app.to_owned();
        self.read(move |conn| groups::list(conn, &app)).await
    }

    async fn group_fetch(&self, app: &str, name: &str) -> StoreResult<GroupRecord> {
        let app = app.to_owned();
        let name = name.to_owned();
        self.read(move |conn| groups::fetch(conn, &app, &name))
            .await
    }

    async fn group_delete(&self, app: &str, name: &str) -> StoreResult<()> {
        let app = app.to_owned();
        let name = name.to_owned();
        self.write(move |tx| groups::delete(tx, &app, &name)).await
    }

    async fn group_add_instances(&self, app: &str, group: &str, ids: &[String]) -> StoreResult<()> {
        let app = app.to_owned();
        let group = group.to_owned();
        let ids = ids.to_vec();
        self.write(move |tx| groups::add_instances(tx, &app, &group, &ids))
            .await
    }

    async fn group_remove_instances(
        &self,
        app: &str,
        group: &str,
        ids: &[String],
    ) -> StoreResult<()> {
        let app = app.to_owned();
        let group = group.to_owned();
        let ids = ids.to_vec();
        self.write(move |tx| groups::remove_instances(tx, &app, &group, &ids))
            .await
    }

    async fn group_members(&self, app: &str, group: &str) -> StoreResult<Vec<MemberRecord>> {
        let app = app.to_owned();
        let group = group.to_owned();
        self.read(move |conn| groups::members(conn, &app, &group))
            .await
    }

    async fn registry_create(&self, registry: &RegistryRecord) -> StoreResult<()> {
        let registry = registry.clone();
        self.write(move |tx| registries::create(tx, &registry))
            .await
    }

    async fn registry_list(&self) -> StoreResult<Vec<RegistryRecord>> {
        self.read(registries::list).await
    }

    async fn registry_fetch(&self, name: &str) -> StoreResult<RegistryRecord> {
        let name = name.to_owned();
        self.read(move |conn| registries::fetch(conn, &name)).await
    }

    async fn registry_delete(&self, name: &str) -> StoreResult<()> {
        let name = name.to_owned();
        self.write(move |tx| registries::delete(tx, &name)).await
    }

    async fn registry_update(&self, registry: &RegistryRecord) -> StoreResult<()> {
        let registry = registry.clone();
        self.write(move |tx| registries::update(tx, &registry))
            .await
    }

    async fn deployment_create(&self, deployment: &DeploymentRecord) -> StoreResult<()> {
        let deployment = deployment.clone();
        self.write(move |tx| deployments::create(tx, &deployment))
            .await
    }

    async fn deployment_list(&self, app: &str) -> StoreResult<Vec<DeploymentRecord>> {
        let app = app.to_owned();
        self.read(move |conn| deployments::list(conn, &app)).await
    }

    async fn deployment_fetch(&self, app: &str, name: &str) -> StoreResult<DeploymentRecord> {
        let app = app.to_owned();
        let name = name.to_owned();
        self.read(move |conn| deployments::fetch(conn, &app, &name))
            .await
    }

    async fn deployment_delete(&self, app: &str, name: &str) -> StoreResult<()> {
        let app = app.to_owned();
        let name = name.to_owned();
        self.write(move |tx| deployments::delete(tx, &app, &name))
            .await
    }

    async fn release_create(
        &self,
        release: &ReleaseRecord,
        tasks: &[TaskRecord],
    ) -> StoreResult<()> {
        let release = release.clone();
        let tasks = tasks.to_vec();
        self.write(move |tx| releases::create(tx, &release, &tasks))
            .await
    }

    async fn release_fetch(&self, id: &str) -> StoreResult<ReleaseRecord> {
        let id = id.to_owned();
        self.read(move |conn| releases::fetch(conn, &id)).await
    }

    async fn release_list(
        &self,
        app: Option<&str>,
        group: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ReleaseRecord>> {
        let app = app.map(str::to_owned);
        let group = group.map(str::to_owned);
        self.read(move |conn| releases::list(conn, app.as_deref(), group.as_deref(), limit, false))
            .await
    }

    async fn exec_create(
        &self,
        release: &ReleaseRecord,
        exec: &ExecRecord,
        tasks: &[TaskRecord],
    ) -> StoreResult<()> {
        let release = release.clone();
        let exec = exec.clone();
        let tasks = tasks.to_vec();
        self.write(move |tx| execs::create(tx, &release, &exec, &tasks))
            .await
    }

    async fn exec_fetch(&self, id: &str) -> StoreResult<(ReleaseRecord, ExecRecord)> {
        let id = id.to_owned();
        self.read(move |conn| execs::fetch(conn, &id)).await
    }

    async fn exec_list(
        &self,
        app: Option<&str>,
        group: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ReleaseRecord>> {
        let app = app.map(str::to_owned);
        let group = group.map(str::to_owned);
        self.read(move |conn| releases::list(conn, app.as_deref(), group.as_deref(), limit, true))
            .await
    }

    async fn release_list_active(&self) -> StoreResult<Vec<ReleaseRecord>> {
        self.read(releases::list_active).await
    }

    async fn release_transition(
        &self,
        id: &str,
        from: &[ReleaseState],
        to: ReleaseState,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let id = id.to_owned();
        let from = from.to_vec();
        let message = message.map(str::to_owned);
        self.write(move |tx| releases::transition(tx, &id, &from, to, message.as_deref(), now))
            .await
    }

    async fn release_fail(
        &self,
        id: &str,
        message: &str,
        now: DateTime<Utc>,
        rollback: Option<(&ReleaseRecord, &[TaskRecord])>,
    ) -> StoreResult<bool> {
        let id = id.to_owned();
        let message = message.to_owned();
        let rollback = rollback.map(|(release, tasks)| (release.clone(), tasks.to_vec()));
        self.write(move |tx| {
            let id = id.as_str();
            let message = message.as_str();
            let rollback = rollback
                .as_ref()
                .map(|(release, tasks)| (release, tasks.as_slice()));
            let moved = releases::transition(
                tx,
                id,
                &[ReleaseState::Running],
                ReleaseState::Failed,
                Some(message),
                now,
            )?;
            if let (true, Some((release, tasks))) = (moved, rollback) {
                releases::create(tx, release, tasks)?;
            }
            Ok(moved)
        })
        .await
    }

    async fn release_continue(&self, id: &str, continued_through: u32) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |tx| releases::resume(tx, &id, continued_through))
            .await
    }

    async fn release_detail(&self, id: &str) -> StoreResult<ReleaseDetail> {
        let id = id.to_owned();
        self.read(move |conn| {
            Ok(ReleaseDetail {
                release: releases::fetch(conn, &id)?,
                tasks: tasks::list(conn, &id)?,
                steps: steps::list_by_instance(conn, &id)?,
            })
        })
        .await
    }

    async fn release_detail_where(
        &self,
        id: &str,
        wants_batch: BatchFilter,
        wants_steps: StepFilter,
    ) -> StoreResult<ReleasePart> {
        let id = id.to_owned();
        self.read(move |conn| {
            let release = releases::fetch(conn, &id)?;
            let batches = tasks::batch_summaries(conn, &id)?;
            let picked: Vec<u32> = batches
                .iter()
                .filter(|b| wants_batch(b))
                .map(|b| b.batch)
                .collect();
            let tasks = if picked.len() == batches.len() {
                tasks::list(conn, &id)?
            } else {
                tasks::list_of_batches(conn, &id, &picked)?
            };
            let wanted: Vec<&TaskRecord> = tasks.iter().filter(|t| wants_steps(t)).collect();
            // A look-up per instance reads only the wanted steps; once most of
            // the release's instances are wanted, one pass over every step is
            // cheaper.
            let all: u32 = batches.iter().map(BatchSummary::total).sum();
            let steps = if wanted.len() == all as usize {
                steps::list_by_instance(conn, &id)?
            } else if wanted.len() * 2 >= all as usize {
                let wanted: HashSet<&str> = wanted.iter().map(|t| t.instance_id.as_str()).collect();
                let mut steps = steps::list_by_instance(conn, &id)?;
                steps.retain(|s| wanted.contains(s.instance_id.as_str()));
                steps
            } else {
                let mut steps = Vec::new();
                for task in wanted {
                    steps.extend(steps::list_of_instance(conn, &id, &task.instance_id)?);
                }
                steps
            };
            Ok(ReleasePart {
                release,
                batches,
                tasks,
                steps,
            })
        })
        .await
    }

    async fn task_poll_look(&self, instance_id: &str) -> StoreResult<PollLook> {
        let instance_id = instance_id.to_owned();
        self.read(move |conn| {
            Ok(PollLook {
                running: tasks::list_running_for_instance(conn, &instance_id)?,
                next: tasks::next_dispatched(conn, &instance_id)?,
            })
        })
        .await
    }

    async fn task_list(&self, release_id: &str) -> StoreResult<Vec<TaskRecord>> {
        let release_id = release_id.to_owned();
        self.read(move |conn| tasks::list(conn, &release_id)).await
    }

    async fn agent_writes(
        &self,
        writes: Vec<AgentWrite>,
    ) -> StoreResult<Vec<StoreResult<AgentWritten>>> {
        self.write(move |tx| agent_writes::write_all(tx, &writes))
            .await
    }

    async fn task_batch_summaries(&self, release_id: &str) -> StoreResult<Vec<BatchSummary>> {
        let release_id = release_id.to_owned();
        self.read(move |conn| tasks::batch_summaries(conn, &release_id))
            .await
    }

    async fn task_list_live(&self, release_id: &str) -> StoreResult<Vec<LiveTask>> {
        let release_id = release_id.to_owned();
        self.read(move |conn| tasks::list_live(conn, &release_id))
            .await
    }

    async fn task_count_open_in_batch(&self, release_id: &str, batch: u32) -> StoreResult<u32> {
        let release_id = release_id.to_owned();
        self.read(move |conn| tasks::count_open_in_batch(conn, &release_id, batch))
            .await
    }

    async fn task_dispatch_batch(
        &self,
        release_id: &str,
        batch: u32,
        now: DateTime<Utc>,
        deadline: DateTime<Utc>,
    ) -> StoreResult<Vec<String>> {
        let release_id = release_id.to_owned();
        self.write(move |tx| tasks::dispatch_batch(tx, &release_id, batch, now, deadline))
            .await
    }

    async fn task_next_dispatched(&self, instance_id: &str) -> StoreResult<Option<String>> {
        let instance_id = instance_id.to_owned();
        self.read(move |conn| tasks::next_dispatched(conn, &instance_id))
            .await
    }

    async fn task_claim(
        &self,
        release_id: &str,
        instance_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let release_id = release_id.to_owned();
        let instance_id = instance_id.to_owned();
        self.write(move |tx| tasks::claim(tx, &release_id, &instance_id, now))
            .await
    }

    async fn task_list_running_for_instance(
        &self,
        instance_id: &str,
    ) -> StoreResult<Vec<TaskRecord>> {
        let instance_id = instance_id.to_owned();
        self.read(move |conn| tasks::list_running_for_instance(conn, &instance_id))
            .await
    }

    async fn task_fetch(&self, release_id: &str, instance_id: &str) -> StoreResult<TaskRecord> {
        let release_id = release_id.to_owned();
        let instance_id = instance_id.to_owned();
        self.read(move |conn| tasks::fetch(conn, &release_id, &instance_id))
            .await
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
        let release_id = release_id.to_owned();
        let instance_id = instance_id.to_owned();
        let digest = digest.map(str::to_owned);
        let message = message.map(str::to_owned);
        self.write(move |tx| {
            tasks::finish(
                tx,
                &release_id,
                &instance_id,
                state,
                digest.as_deref(),
                message.as_deref(),
                now,
            )
        })
        .await
    }

    async fn task_cancel_unstarted(
        &self,
        release_id: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let release_id = release_id.to_owned();
        let message = message.to_owned();
        self.write(move |tx| tasks::cancel_unstarted(tx, &release_id, &message, now))
            .await
    }

    async fn step_begin(
        &self,
        release_id: &str,
        instance_id: &str,
        step: StepName,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let release_id = release_id.to_owned();
        let instance_id = instance_id.to_owned();
        self.write(move |tx| steps::begin(tx, &release_id, &instance_id, step, now))
            .await
    }

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
    ) -> StoreResult<()> {
        let release_id = release_id.to_owned();
        let instance_id = instance_id.to_owned();
        let chunk = chunk.to_owned();
        self.write(move |tx| {
            steps::append_output(
                tx,
                &release_id,
                &instance_id,
                step,
                &chunk,
                dropped,
                keep_bytes,
                offset,
            )
        })
        .await
    }

    async fn task_fail(
        &self,
        release_id: &str,
        instance_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let release_id = release_id.to_owned();
        let instance_id = instance_id.to_owned();
        let reason = reason.to_owned();
        self.write(move |tx| {
            let failed = tasks::finish(
                tx,
                &release_id,
                &instance_id,
                TaskState::Failed,
                None,
                Some(&reason),
                now,
            )?;
            if failed {
                steps::fail_running(tx, &release_id, &instance_id, &reason, now)?;
            }
            Ok(failed)
        })
        .await
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
        let release_id = release_id.to_owned();
        let instance_id = instance_id.to_owned();
        let message = message.map(str::to_owned);
        self.write(move |tx| {
            steps::finish(
                tx,
                &release_id,
                &instance_id,
                step,
                state,
                exit_code,
                message.as_deref(),
                now,
            )
        })
        .await
    }

    async fn step_list(
        &self,
        release_id: &str,
        instance_id: Option<&str>,
    ) -> StoreResult<Vec<StepRecord>> {
        let release_id = release_id.to_owned();
        let instance_id = instance_id.map(str::to_owned);
        self.read(move |conn| steps::list(conn, &release_id, instance_id.as_deref(), true))
            .await
    }

    async fn step_list_without_output(
        &self,
        release_id: &str,
        instance_id: Option<&str>,
    ) -> StoreResult<Vec<StepRecord>> {
        let release_id = release_id.to_owned();
        let instance_id = instance_id.map(str::to_owned);
        self.read(move |conn| steps::list(conn, &release_id, instance_id.as_deref(), false))
            .await
    }

    async fn group_set_current_deployment(
        &self,
        app: &str,
        group: &str,
        deployment: &str,
    ) -> StoreResult<()> {
        let app = app.to_owned();
        let group = group.to_owned();
        let deployment = deployment.to_owned();
        self.write(move |tx| groups::set_current_deployment(tx, &app, &group, &deployment))
            .await
    }

    async fn task_set_digest(
        &self,
        release_id: &str,
        instance_id: &str,
        digest: &str,
    ) -> StoreResult<()> {
        let release_id = release_id.to_owned();
        let instance_id = instance_id.to_owned();
        let digest = digest.to_owned();
        self.write(move |tx| tasks::set_digest(tx, &release_id, &instance_id, &digest))
            .await
    }

    async fn scaling_group_create(&self, record: &ScalingGroupRecord) -> StoreResult<()> {
        let record = record.clone();
        self.write(move |tx| scaling::create(tx, &record)).await
    }

    async fn scaling_group_list(&self) -> StoreResult<Vec<ScalingGroupRecord>> {
        self.read(scaling::list).await
    }

    async fn scaling_group_fetch(&self, name: &str) -> StoreResult<ScalingGroupRecord> {
        let name = name.to_owned();
        self.read(move |conn| scaling::fetch(conn, &name)).await
    }

    async fn scaling_group_delete(&self, name: &str) -> StoreResult<()> {
        let name = name.to_owned();
        self.write(move |tx| scaling::delete(tx, &name)).await
    }

    async fn instance_register_scaling(
        &self,
        token_hash: &str,
        instance: &InstanceRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<ScalingJoin> {
        let token_hash = token_hash.to_owned();
        let instance = instance.clone();
        self.write(move |tx| scaling::register(tx, &token_hash, &instance, now))
            .await
    }

    async fn scaling_group_suspend(
        &self,
        name: &str,
        release: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let name = name.to_owned();
        let release = release.to_owned();
        self.write(move |tx| scaling::suspend(tx, &name, &release, now))
            .await
    }

    async fn scaling_group_resume(
        &self,
        name: &str,
        release: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let name = name.to_owned();
        let release = release.to_owned();
        self.write(move |tx| scaling::resume(tx, &name, &release, now))
            .await
    }

    async fn scaling_group_held(&self, name: &str) -> StoreResult<Vec<ScalingHeldRecord>> {
        let name = name.to_owned();
        self.read(move |conn| scaling::held(conn, &name)).await
    }

    async fn scaling_group_caught_up(&self, name: &str, ids: &[String]) -> StoreResult<()> {
        let name = name.to_owned();
        let ids = ids.to_vec();
        self.write(move |tx| scaling::caught_up(tx, &name, &ids))
            .await
    }

    async fn scaling_hook_record(
        &self,
        name: &str,
        run: &HookRunRecord,
        retry_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        let name = name.to_owned();
        let run = run.clone();
        self.write(move |tx| scaling::hook_record(tx, &name, &run, retry_at))
            .await
    }

    async fn scaling_hook_runs(&self, name: &str, limit: u32) -> StoreResult<Vec<HookRunRecord>> {
        let name = name.to_owned();
        self.read(move |conn| scaling::hook_runs(conn, &name, limit))
            .await
    }

    async fn scaling_activities(
        &self,
        name: &str,
        limit: u32,
    ) -> StoreResult<Vec<ScalingActivityRecord>> {
        let name = name.to_owned();
        self.read(move |conn| scaling::activities(conn, &name, limit))
            .await
    }
}
