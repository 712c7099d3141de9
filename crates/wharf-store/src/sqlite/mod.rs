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
mod convert;
mod deployments;
mod execs;
mod failure;
mod groups;
mod instances;
mod migrate;
mod query;
mod registries;
mod releases;
mod scaling;
mod steps;
mod tasks;
mod tokens;
mod worker;

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
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
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

/// A [`Store`] kept in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<Workers>,
    readers: Arc<Workers>,
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
        let mut writer = connect(path, false)?;
        migrate::run(&mut writer)?;
        // The readers are opened after the migrations so that they never see a
        // half-made schema, and `query_only` makes a write through them an error
        // instead of a second writer.
        let readers = (0..READERS)
            .map(|_| connect(path, true))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(SqliteStore {
            writer: Arc::new(Workers::start("wharf-db-writer", vec![writer])?),
            readers: Arc::new(Workers::start("wharf-db-reader", readers)?),
        })
    }

    /// Closes every connection, after the calls already made. Calls made
    /// afterwards fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
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
    if query_only {
        conn.execute_batch("PRAGMA query_only = ON;")?;
    }
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    async fn api_token_create(&self, token: &ApiTokenRecord) -> StoreResult<()> {
        let token = token.clone();
        self.write(move |tx| {
            let token = &token;
                    tokens::api_create(tx, token)?;
            Ok(())
        })
        .await
    }

    async fn api_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        let hash = hash.to_owned();
        self.read(move |conn| {
            let hash = hash.as_str();
            tokens::api_by_hash(conn, hash)
        })
        .await
    }

    async fn api_token_count(&self) -> StoreResult<u64> {
        self.read(move |conn| {
            tokens::api_count(conn)
        })
        .await
    }

    async fn registration_token_create(&self, token: &RegistrationTokenRecord) -> StoreResult<()> {
        let token = token.clone();
        self.write(move |tx| {
            let token = &token;
                    tokens::registration_create(tx, token)?;
            Ok(())
        })
        .await
    }

    async fn registration_token_list(&self) -> StoreResult<Vec<RegistrationTokenRecord>> {
        self.read(move |conn| {
            tokens::registration_list(conn)
        })
        .await
    }

    async fn registration_token_delete(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |tx| {
            let id = id.as_str();
                    tokens::registration_delete(tx, id)?;
            Ok(())
        })
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
        self.write(move |tx| {
            let token_hash = token_hash.as_str();
            let instance = &instance;
                    instances::register(tx, token_hash, instance, now)?;
            Ok(())
        })
        .await
    }

    async fn instance_list(&self) -> StoreResult<Vec<InstanceRecord>> {
        self.read(move |conn| {
            instances::list(conn)
        })
        .await
    }

    async fn instance_fetch(&self, id_or_name: &str) -> StoreResult<InstanceRecord> {
        let id_or_name = id_or_name.to_owned();
        self.read(move |conn| {
            let id_or_name = id_or_name.as_str();
            instances::fetch(conn, id_or_name)
        })
        .await
    }

    async fn instance_by_credential(&self, hash: &str) -> StoreResult<Option<InstanceRecord>> {
        let hash = hash.to_owned();
        self.read(move |conn| {
            let hash = hash.as_str();
            instances::by_credential(conn, hash)
        })
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
        self.write(move |tx| {
            let id = id.as_str();
            let agent_version = agent_version.as_str();
            let address = address.as_str();
                    instances::heartbeat(tx, id, at, agent_version, address)?;
            Ok(())
        })
        .await
    }

    async fn instance_heartbeats(&self, beats: &[HeartbeatRecord]) -> StoreResult<Vec<bool>> {
        let beats = beats.to_vec();
        self.write(move |tx| {
            let beats = beats.as_slice();
                    let found = instances::heartbeats(tx, beats)?;
            Ok(found)
        })
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
        self.write(move |tx| {
            let id = id.as_str();
            let version = version.as_deref();
            let error = error.as_deref();
                    instances::set_docker(tx, id, version, error)?;
            Ok(())
        })
        .await
    }

    async fn instance_delete(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |tx| {
            let id = id.as_str();
                    instances::delete(tx, id)?;
            Ok(())
        })
        .await
    }

    async fn instance_memberships(&self, id: &str) -> StoreResult<Vec<MembershipRecord>> {
        let id = id.to_owned();
        self.read(move |conn| {
            let id = id.as_str();
            instances::memberships(conn, id)
        })
        .await
    }

    async fn app_create(&self, app: &AppRecord) -> StoreResult<()> {
        let app = app.clone();
        self.write(move |tx| {
            let app = &app;
                    apps::create(tx, app)?;
            Ok(())
        })
        .await
    }

    async fn app_list(&self) -> StoreResult<Vec<AppRecord>> {
        self.read(move |conn| {
            apps::list(conn)
        })
        .await
    }

    async fn app_fetch(&self, name: &str) -> StoreResult<AppRecord> {
        let name = name.to_owned();
        self.read(move |conn| {
            let name = name.as_str();
            apps::fetch(conn, name)
        })
        .await
    }

    async fn app_delete(&self, name: &str) -> StoreResult<()> {
        let name = name.to_owned();
        self.write(move |tx| {
            let name = name.as_str();
                    apps::delete(tx, name)?;
            Ok(())
        })
        .await
    }

    async fn group_create(&self, group: &GroupRecord) -> StoreResult<()> {
        let group = group.clone();
        self.write(move |tx| {
            let group = &group;
                    groups::create(tx, group)?;
            Ok(())
        })
        .await
    }

    async fn group_list(&self, app: &str) -> StoreResult<Vec<GroupRecord>> {
        let app = app.to_owned();
        self.read(move |conn| {
            let app = app.as_str();
            groups::list(conn, app)
        })
        .await
    }

    async fn group_fetch(&self, app: &str, name: &str) -> StoreResult<GroupRecord> {
        let app = app.to_owned();
        let name = name.to_owned();
        self.read(move |conn| {
            let app = app.as_str();
            let name = name.as_str();
            groups::fetch(conn, app, name)
        })
        .await
    }

    async fn group_delete(&self, app: &str, name: &str) -> StoreResult<()> {
        let app = app.to_owned();
        let name = name.to_owned();
        self.write(move |tx| {
            let app = app.as_str();
            let name = name.as_str();
                    groups::delete(tx, app, name)?;
            Ok(())
        })
        .await
    }

    async fn group_add_instances(&self, app: &str, group: &str, ids: &[String]) -> StoreResult<()> {
        let app = app.to_owned();
        let group = group.to_owned();
        let ids = ids.to_vec();
        self.write(move |tx| {
            let app = app.as_str();
            let group = group.as_str();
            let ids = ids.as_slice();
                    groups::add_instances(tx, app, group, ids)?;
            Ok(())
        })
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
        self.write(move |tx| {
            let app = app.as_str();
            let group = group.as_str();
            let ids = ids.as_slice();
                    groups::remove_instances(tx, app, group, ids)?;
            Ok(())
        })
        .await
    }

    async fn group_members(&self, app: &str, group: &str) -> StoreResult<Vec<MemberRecord>> {
        let app = app.to_owned();
        let group = group.to_owned();
        self.read(move |conn| {
            let app = app.as_str();
            let group = group.as_str();
            groups::members(conn, app, group)
        })
        .await
    }

    async fn registry_create(&self, registry: &RegistryRecord) -> StoreResult<()> {
        let registry = registry.clone();
        self.write(move |tx| {
            let registry = &registry;
                    registries::create(tx, registry)?;
            Ok(())
        })
        .await
    }

    async fn registry_list(&self) -> StoreResult<Vec<RegistryRecord>> {
        self.read(move |conn| {
            registries::list(conn)
        })
        .await
    }

    async fn registry_fetch(&self, name: &str) -> StoreResult<RegistryRecord> {
        let name = name.to_owned();
        self.read(move |conn| {
            let name = name.as_str();
            registries::fetch(conn, name)
        })
        .await
    }

    async fn registry_delete(&self, name: &str) -> StoreResult<()> {
        let name = name.to_owned();
        self.write(move |tx| {
            let name = name.as_str();
                    registries::delete(tx, name)?;
            Ok(())
        })
        .await
    }

    async fn deployment_create(&self, deployment: &DeploymentRecord) -> StoreResult<()> {
        let deployment = deployment.clone();
        self.write(move |tx| {
            let deployment = &deployment;
                    deployments::create(tx, deployment)?;
            Ok(())
        })
        .await
    }

    async fn deployment_list(&self, app: &str) -> StoreResult<Vec<DeploymentRecord>> {
        let app = app.to_owned();
        self.read(move |conn| {
            let app = app.as_str();
            deployments::list(conn, app)
        })
        .await
    }

    async fn deployment_fetch(&self, app: &str, name: &str) -> StoreResult<DeploymentRecord> {
        let app = app.to_owned();
        let name = name.to_owned();
        self.read(move |conn| {
            let app = app.as_str();
            let name = name.as_str();
            deployments::fetch(conn, app, name)
        })
        .await
    }

    async fn deployment_delete(&self, app: &str, name: &str) -> StoreResult<()> {
        let app = app.to_owned();
        let name = name.to_owned();
        self.write(move |tx| {
            let app = app.as_str();
            let name = name.as_str();
                    deployments::delete(tx, app, name)?;
            Ok(())
        })
        .await
    }

    async fn release_create(
        &self,
        release: &ReleaseRecord,
        tasks: &[TaskRecord],
    ) -> StoreResult<()> {
        let release = release.clone();
        let tasks = tasks.to_vec();
        self.write(move |tx| {
            let release = &release;
            let tasks = tasks.as_slice();
                    releases::create(tx, release, tasks)?;
            Ok(())
        })
        .await
    }

    async fn release_fetch(&self, id: &str) -> StoreResult<ReleaseRecord> {
        let id = id.to_owned();
        self.read(move |conn| {
            let id = id.as_str();
            releases::fetch(conn, id)
        })
        .await
    }

    async fn release_list(
        &self,
        app: Option<&str>,
        group: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ReleaseRecord>> {
        let app = app.map(str::to_owned);
        let group = group.map(str::to_owned);
        self.read(move |conn| {
            let app = app.as_deref();
            let group = group.as_deref();
            releases::list(conn, app, group, limit, false)
        })
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
        self.write(move |tx| {
            let release = &release;
            let exec = &exec;
            let tasks = tasks.as_slice();
                    execs::create(tx, release, exec, tasks)?;
            Ok(())
        })
        .await
    }

    async fn exec_fetch(&self, id: &str) -> StoreResult<(ReleaseRecord, ExecRecord)> {
        let id = id.to_owned();
        self.read(move |conn| {
            let id = id.as_str();
            execs::fetch(conn, id)
        })
        .await
    }

    async fn exec_list(
        &self,
        app: Option<&str>,
        group: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ReleaseRecord>> {
        let app = app.map(str::to_owned);
        let group = group.map(str::to_owned);
        self.read(move |conn| {
            let app = app.as_deref();
            let group = group.as_deref();
            releases::list(conn, app, group, limit, true)
        })
        .await
    }

    async fn release_list_active(&self) -> StoreResult<Vec<ReleaseRecord>> {
        self.read(move |conn| {
            releases::list_active(conn)
        })
        .await
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
        self.write(move |tx| {
            let id = id.as_str();
            let from = from.as_slice();
            let message = message.as_deref();
                    let moved = releases::transition(tx, id, from, to, message, now)?;
            Ok(moved)
        })
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
            let rollback = rollback.as_ref().map(|(release, tasks)| (release, tasks.as_slice()));
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
        self.write(move |tx| {
            let id = id.as_str();
                    let moved = releases::resume(tx, id, continued_through)?;
            Ok(moved)
        })
        .await
    }

    async fn task_list(&self, release_id: &str) -> StoreResult<Vec<TaskRecord>> {
        let release_id = release_id.to_owned();
        self.read(move |conn| {
            let release_id = release_id.as_str();
            tasks::list(conn, release_id)
        })
        .await
    }

    async fn agent_writes(
        &self,
        writes: &[AgentWrite],
    ) -> StoreResult<Vec<StoreResult<AgentWritten>>> {
        let writes = writes.to_vec();
        self.write(move |tx| {
            let writes = writes.as_slice();
                    let results = agent_writes::write_all(tx, writes)?;
            Ok(results)
        })
        .await
    }

    async fn task_batch_summaries(&self, release_id: &str) -> StoreResult<Vec<BatchSummary>> {
        let release_id = release_id.to_owned();
        self.read(move |conn| {
            let release_id = release_id.as_str();
            tasks::batch_summaries(conn, release_id)
        })
        .await
    }

    async fn task_list_live(&self, release_id: &str) -> StoreResult<Vec<LiveTask>> {
        let release_id = release_id.to_owned();
        self.read(move |conn| {
            let release_id = release_id.as_str();
            tasks::list_live(conn, release_id)
        })
        .await
    }

    async fn task_count_open_in_batch(&self, release_id: &str, batch: u32) -> StoreResult<u32> {
        let release_id = release_id.to_owned();
        self.read(move |conn| {
            let release_id = release_id.as_str();
            tasks::count_open_in_batch(conn, release_id, batch)
        })
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
        self.write(move |tx| {
            let release_id = release_id.as_str();
                    let dispatched = tasks::dispatch_batch(tx, release_id, batch, now, deadline)?;
            Ok(dispatched)
        })
        .await
    }

    async fn task_claim(
        &self,
        instance_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<TaskRecord>> {
        let instance_id = instance_id.to_owned();
        self.write(move |tx| {
            let instance_id = instance_id.as_str();
                    let claimed = tasks::claim(tx, instance_id, now)?;
            Ok(claimed)
        })
        .await
    }

    async fn task_claimable(&self, instance_id: &str) -> StoreResult<bool> {
        let instance_id = instance_id.to_owned();
        self.read(move |conn| {
            let instance_id = instance_id.as_str();
            Ok(
                tasks::next_claimable(conn, instance_id)
                    ?
                    .is_some(),
            )
        })
        .await
    }

    async fn task_list_running_for_instance(
        &self,
        instance_id: &str,
    ) -> StoreResult<Vec<TaskRecord>> {
        let instance_id = instance_id.to_owned();
        self.read(move |conn| {
            let instance_id = instance_id.as_str();
            tasks::list_running_for_instance(conn, instance_id)
        })
        .await
    }

    async fn task_fetch(&self, release_id: &str, instance_id: &str) -> StoreResult<TaskRecord> {
        let release_id = release_id.to_owned();
        let instance_id = instance_id.to_owned();
        self.read(move |conn| {
            let release_id = release_id.as_str();
            let instance_id = instance_id.as_str();
            tasks::fetch(conn, release_id, instance_id)
        })
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
            let release_id = release_id.as_str();
            let instance_id = instance_id.as_str();
            let digest = digest.as_deref();
            let message = message.as_deref();
                    let finished = tasks::finish(
                tx,
                release_id,
                instance_id,
                state,
                digest,
                message,
                now,
            )?;
            Ok(finished)
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
        self.write(move |tx| {
            let release_id = release_id.as_str();
            let message = message.as_str();
                    let cancelled = tasks::cancel_unstarted(tx, release_id, message, now)?;
            Ok(cancelled)
        })
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
        self.write(move |tx| {
            let release_id = release_id.as_str();
            let instance_id = instance_id.as_str();
                    steps::begin(tx, release_id, instance_id, step, now)?;
            Ok(())
        })
        .await
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
        let release_id = release_id.to_owned();
        let instance_id = instance_id.to_owned();
        let chunk = chunk.to_owned();
        self.write(move |tx| {
            let release_id = release_id.as_str();
            let instance_id = instance_id.as_str();
            let chunk = chunk.as_str();
                    steps::append_output(
                tx,
                release_id,
                instance_id,
                step,
                chunk,
                dropped,
                keep_bytes,
            )?;
            Ok(())
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
            let release_id = release_id.as_str();
            let instance_id = instance_id.as_str();
            let message = message.as_deref();
                    let finished = steps::finish(
                tx,
                release_id,
                instance_id,
                step,
                state,
                exit_code,
                message,
                now,
            )?;
            Ok(finished)
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
        self.read(move |conn| {
            let release_id = release_id.as_str();
            let instance_id = instance_id.as_deref();
            steps::list(conn, release_id, instance_id, true)
        })
        .await
    }

    async fn step_list_without_output(
        &self,
        release_id: &str,
        instance_id: Option<&str>,
    ) -> StoreResult<Vec<StepRecord>> {
        let release_id = release_id.to_owned();
        let instance_id = instance_id.map(str::to_owned);
        self.read(move |conn| {
            let release_id = release_id.as_str();
            let instance_id = instance_id.as_deref();
            steps::list(conn, release_id, instance_id, false)
        })
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
        self.write(move |tx| {
            let app = app.as_str();
            let group = group.as_str();
            let deployment = deployment.as_str();
                    groups::set_current_deployment(tx, app, group, deployment)?;
            Ok(())
        })
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
        self.write(move |tx| {
            let release_id = release_id.as_str();
            let instance_id = instance_id.as_str();
            let digest = digest.as_str();
                    tasks::set_digest(tx, release_id, instance_id, digest)?;
            Ok(())
        })
        .await
    }

    async fn scaling_group_create(&self, record: &ScalingGroupRecord) -> StoreResult<()> {
        let record = record.clone();
        self.write(move |tx| {
            let record = &record;
                    scaling::create(tx, record)?;
            Ok(())
        })
        .await
    }

    async fn scaling_group_list(&self) -> StoreResult<Vec<ScalingGroupRecord>> {
        self.read(move |conn| {
            scaling::list(conn)
        })
        .await
    }

    async fn scaling_group_fetch(&self, name: &str) -> StoreResult<ScalingGroupRecord> {
        let name = name.to_owned();
        self.read(move |conn| {
            let name = name.as_str();
            scaling::fetch(conn, name)
        })
        .await
    }

    async fn scaling_group_delete(&self, name: &str) -> StoreResult<()> {
        let name = name.to_owned();
        self.write(move |tx| {
            let name = name.as_str();
                    scaling::delete(tx, name)?;
            Ok(())
        })
        .await
    }

    async fn instance_register_scaling(
        &self,
        token_hash: &str,
        instance: &InstanceRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<ScalingJoin> {
        let token_hash = token_hash.to_owned();
        let instance = instance.clone();
        self.write(move |tx| {
            let token_hash = token_hash.as_str();
            let instance = &instance;
                    let join = scaling::register(tx, token_hash, instance, now)?;
            Ok(join)
        })
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
        self.write(move |tx| {
            let name = name.as_str();
            let release = release.as_str();
                    let moved = scaling::suspend(tx, name, release, now)?;
            Ok(moved)
        })
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
        self.write(move |tx| {
            let name = name.as_str();
            let release = release.as_str();
                    let moved = scaling::resume(tx, name, release, now)?;
            Ok(moved)
        })
        .await
    }

    async fn scaling_group_held(&self, name: &str) -> StoreResult<Vec<ScalingHeldRecord>> {
        let name = name.to_owned();
        self.read(move |conn| {
            let name = name.as_str();
            scaling::held(conn, name)
        })
        .await
    }

    async fn scaling_group_caught_up(&self, name: &str, ids: &[String]) -> StoreResult<()> {
        let name = name.to_owned();
        let ids = ids.to_vec();
        self.write(move |tx| {
            let name = name.as_str();
            let ids = ids.as_slice();
                    scaling::caught_up(tx, name, ids)?;
            Ok(())
        })
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
        self.write(move |tx| {
            let name = name.as_str();
            let run = &run;
                    scaling::hook_record(tx, name, run, retry_at)?;
            Ok(())
        })
        .await
    }

    async fn scaling_hook_runs(&self, name: &str, limit: u32) -> StoreResult<Vec<HookRunRecord>> {
        let name = name.to_owned();
        self.read(move |conn| {
            let name = name.as_str();
            scaling::hook_runs(conn, name, limit)
        })
        .await
    }

    async fn scaling_activities(
        &self,
        name: &str,
        limit: u32,
    ) -> StoreResult<Vec<ScalingActivityRecord>> {
        let name = name.to_owned();
        self.read(move |conn| {
            let name = name.as_str();
            scaling::activities(conn, name, limit)
        })
        .await
    }
}
