//! [`Store`] for [`PostgresStore`]: each method one transaction (a write or a
//! read, see `mod.rs`) over the table modules.

use super::{agent_writes, apps, deployments, execs, groups, instances, registries, releases};
use super::{in_transaction, read_one, read_tx, write_tx};
use super::{scaling, steps, tasks, tokens, PostgresStore};
use crate::{
    AgentWrite, AgentWritten, ApiTokenRecord, AppRecord, BatchFilter, BatchSummary,
    DeploymentRecord, ExecRecord, GroupRecord, HeartbeatRecord, HookRunRecord, InstanceRecord,
    LiveTask, MemberRecord, MembershipRecord, PollLook, RegistrationTokenRecord, RegistryRecord,
    ReleaseDetail, ReleasePart, ReleaseRecord, ScalingActivityRecord, ScalingGroupRecord,
    ScalingHeldRecord, ScalingJoin, StepFilter, StepRecord, StepState, Store, StoreResult,
    TaskRecord, TaskState,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use wharf_domain::release::{ReleaseState, StepName};

#[async_trait]
impl Store for PostgresStore {
    async fn api_token_create(&self, token: &ApiTokenRecord) -> StoreResult<()> {
        write_tx!(self, |tx| tokens::api_create(&tx, token).await?)
    }

    async fn api_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        read_one!(self, |client| tokens::api_by_hash(&client, hash).await?)
    }

    async fn api_token_count(&self) -> StoreResult<u64> {
        read_one!(self, |client| tokens::api_count(&client).await?)
    }

    async fn registration_token_create(&self, token: &RegistrationTokenRecord) -> StoreResult<()> {
        write_tx!(self, |tx| tokens::registration_create(&tx, token).await?)
    }

    async fn registration_token_list(&self) -> StoreResult<Vec<RegistrationTokenRecord>> {
        read_one!(self, |client| tokens::registration_list(&client).await?)
    }

    async fn registration_token_delete(&self, id: &str) -> StoreResult<()> {
        write_tx!(self, |tx| tokens::registration_delete(&tx, id).await?)
    }

    async fn instance_register(
        &self,
        token_hash: &str,
        instance: &InstanceRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        write_tx!(self, |tx| instances::register(
            &tx, token_hash, instance, now
        )
        .await?)
    }

    async fn instance_list(&self) -> StoreResult<Vec<InstanceRecord>> {
        read_one!(self, |client| instances::list(&client).await?)
    }

    async fn instance_fetch(&self, id_or_name: &str) -> StoreResult<InstanceRecord> {
        read_one!(self, |client| instances::fetch(&client, id_or_name).await?)
    }

    async fn instance_by_credential(&self, hash: &str) -> StoreResult<Option<InstanceRecord>> {
        read_one!(self, |client| instances::by_credential(&client, hash)
            .await?)
    }

    async fn instance_heartbeat(
        &self,
        id: &str,
        at: DateTime<Utc>,
        agent_version: &str,
        address: &str,
    ) -> StoreResult<()> {
        write_tx!(self, |tx| instances::heartbeat(
            &tx,
            id,
            at,
            agent_version,
            address
        )
        .await?)
    }

    async fn instance_heartbeats(&self, beats: &[HeartbeatRecord]) -> StoreResult<Vec<bool>> {
        write_tx!(self, |tx| instances::heartbeats(&tx, beats).await?)
    }

    async fn instance_set_docker(
        &self,
        id: &str,
        version: Option<&str>,
        error: Option<&str>,
    ) -> StoreResult<()> {
        write_tx!(self, |tx| instances::set_docker(&tx, id, version, error)
            .await?)
    }

    async fn instance_delete(&self, id: &str) -> StoreResult<()> {
        write_tx!(self, |tx| instances::delete(&tx, id).await?)
    }

    async fn instance_memberships(&self, id: &str) -> StoreResult<Vec<MembershipRecord>> {
        read_tx!(self, |tx| instances::memberships(&tx, id).await?)
    }

    async fn app_create(&self, app: &AppRecord) -> StoreResult<()> {
        write_tx!(self, |tx| apps::create(&tx, app).await?)
    }

    async fn app_list(&self) -> StoreResult<Vec<AppRecord>> {
        read_one!(self, |client| apps::list(&client).await?)
    }

    async fn app_fetch(&self, name: &str) -> StoreResult<AppRecord> {
        read_one!(self, |client| apps::fetch(&client, name).await?)
    }

    async fn app_delete(&self, name: &str) -> StoreResult<()> {
        write_tx!(self, |tx| apps::delete(&tx, name).await?)
    }

    async fn group_create(&self, group: &GroupRecord) -> StoreResult<()> {
        write_tx!(self, |tx| groups::create(&tx, group).await?)
    }

    async fn group_list(&self, app: &str) -> StoreResult<Vec<GroupRecord>> {
        read_tx!(self, |tx| groups::list(&tx, app).await?)
    }

    async fn group_fetch(&self, app: &str, name: &str) -> StoreResult<GroupRecord> {
        read_tx!(self, |tx| groups::fetch(&tx, app, name).await?)
    }

    async fn group_delete(&self, app: &str, name: &str) -> StoreResult<()> {
        write_tx!(self, |tx| groups::delete(&tx, app, name).await?)
    }

    async fn group_add_instances(&self, app: &str, group: &str, ids: &[String]) -> StoreResult<()> {
        write_tx!(self, |tx| groups::add_instances(&tx, app, group, ids)
            .await?)
    }

    async fn group_remove_instances(
        &self,
        app: &str,
        group: &str,
        ids: &[String],
    ) -> StoreResult<()> {
        write_tx!(self, |tx| groups::remove_instances(&tx, app, group, ids)
            .await?)
    }

    async fn group_members(&self, app: &str, group: &str) -> StoreResult<Vec<MemberRecord>> {
        read_tx!(self, |tx| groups::members(&tx, app, group).await?)
    }

    async fn registry_create(&self, registry: &RegistryRecord) -> StoreResult<()> {
        write_tx!(self, |tx| registries::create(&tx, registry).await?)
    }

    async fn registry_list(&self) -> StoreResult<Vec<RegistryRecord>> {
        read_one!(self, |client| registries::list(&client).await?)
    }

    async fn registry_fetch(&self, name: &str) -> StoreResult<RegistryRecord> {
        read_one!(self, |client| registries::fetch(&client, name).await?)
    }

    async fn registry_delete(&self, name: &str) -> StoreResult<()> {
        write_tx!(self, |tx| registries::delete(&tx, name).await?)
    }

    async fn deployment_create(&self, deployment: &DeploymentRecord) -> StoreResult<()> {
        write_tx!(self, |tx| deployments::create(&tx, deployment).await?)
    }

    async fn deployment_list(&self, app: &str) -> StoreResult<Vec<DeploymentRecord>> {
        read_tx!(self, |tx| deployments::list(&tx, app).await?)
    }

    async fn deployment_fetch(&self, app: &str, name: &str) -> StoreResult<DeploymentRecord> {
        read_tx!(self, |tx| deployments::fetch(&tx, app, name).await?)
    }

    async fn deployment_delete(&self, app: &str, name: &str) -> StoreResult<()> {
        write_tx!(self, |tx| deployments::delete(&tx, app, name).await?)
    }

    async fn release_create(
        &self,
        release: &ReleaseRecord,
        tasks: &[TaskRecord],
    ) -> StoreResult<()> {
        write_tx!(self, |tx| releases::create(&tx, release, tasks).await?)
    }

    async fn release_fetch(&self, id: &str) -> StoreResult<ReleaseRecord> {
        read_one!(self, |client| releases::fetch(&client, id).await?)
    }

    async fn release_list(
        &self,
        app: Option<&str>,
        group: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ReleaseRecord>> {
        read_tx!(self, |tx| releases::list(&tx, app, group, limit, false)
            .await?)
    }

    async fn exec_create(
        &self,
        release: &ReleaseRecord,
        exec: &ExecRecord,
        tasks: &[TaskRecord],
    ) -> StoreResult<()> {
        write_tx!(self, |tx| execs::create(&tx, release, exec, tasks).await?)
    }

    async fn exec_fetch(&self, id: &str) -> StoreResult<(ReleaseRecord, ExecRecord)> {
        read_tx!(self, |tx| execs::fetch(&tx, id).await?)
    }

    async fn exec_list(
        &self,
        app: Option<&str>,
        group: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ReleaseRecord>> {
        read_tx!(self, |tx| releases::list(&tx, app, group, limit, true)
            .await?)
    }

    async fn release_list_active(&self) -> StoreResult<Vec<ReleaseRecord>> {
        read_one!(self, |client| releases::list_active(&client).await?)
    }

    async fn release_transition(
        &self,
        id: &str,
        from: &[ReleaseState],
        to: ReleaseState,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        write_tx!(self, |tx| releases::transition(
            &tx, id, from, to, message, now
        )
        .await?)
    }

    async fn release_fail(
        &self,
        id: &str,
        message: &str,
        now: DateTime<Utc>,
        rollback: Option<(&ReleaseRecord, &[TaskRecord])>,
    ) -> StoreResult<bool> {
        write_tx!(self, |tx| {
            let moved = releases::transition(
                &tx,
                id,
                &[ReleaseState::Running],
                ReleaseState::Failed,
                Some(message),
                now,
            )
            .await?;
            if let (true, Some((release, tasks))) = (moved, rollback) {
                releases::create(&tx, release, tasks).await?;
            }
            moved
        })
    }

    async fn release_continue(&self, id: &str, continued_through: u32) -> StoreResult<bool> {
        write_tx!(self, |tx| releases::resume(&tx, id, continued_through)
            .await?)
    }

    async fn release_detail(&self, id: &str) -> StoreResult<ReleaseDetail> {
        read_tx!(self, |tx| ReleaseDetail {
            release: releases::fetch(&tx, id).await?,
            tasks: tasks::list(&tx, id).await?,
            steps: steps::list_by_instance(&tx, id).await?,
        })
    }

    async fn release_detail_where(
        &self,
        id: &str,
        wants_batch: BatchFilter,
        wants_steps: StepFilter,
    ) -> StoreResult<ReleasePart> {
        read_tx!(self, |tx| {
            let release = releases::fetch(&tx, id).await?;
            let batches = tasks::batch_summaries(&tx, id).await?;
            let picked: Vec<u32> = batches
                .iter()
                .filter(|b| wants_batch(b))
                .map(|b| b.batch)
                .collect();
            let tasks = if picked.len() == batches.len() {
                tasks::list(&tx, id).await?
            } else {
                tasks::list_of_batches(&tx, id, &picked).await?
            };
            let wanted: Vec<&str> = tasks
                .iter()
                .filter(|t| wants_steps(t))
                .map(|t| t.instance_id.as_str())
                .collect();
            // A look-up per instance reads only the wanted steps; once most of
            // the release's instances are wanted, one pass over every step is
            // cheaper.
            let all: u32 = batches.iter().map(BatchSummary::total).sum();
            let steps = if wanted.len() == all as usize {
                steps::list_by_instance(&tx, id).await?
            } else if wanted.len() * 2 >= all as usize {
                let wanted: HashSet<&str> = wanted.into_iter().collect();
                let mut steps = steps::list_by_instance(&tx, id).await?;
                steps.retain(|s| wanted.contains(s.instance_id.as_str()));
                steps
            } else {
                let mut steps = Vec::new();
                for instance_id in wanted {
                    steps.extend(steps::list_of_instance(&tx, id, instance_id).await?);
                }
                steps
            };
            ReleasePart {
                release,
                batches,
                tasks,
                steps,
            }
        })
    }

    async fn task_poll_look(&self, instance_id: &str) -> StoreResult<PollLook> {
        // Both reads go out together (tokio-postgres pipelines them on the
        // connection), in one snapshot.
        read_tx!(self, |tx| {
            let (running, next) = tokio::try_join!(
                tasks::list_running_for_instance(&tx, instance_id),
                tasks::next_dispatched(&tx, instance_id)
            )?;
            PollLook { running, next }
        })
    }

    async fn task_list(&self, release_id: &str) -> StoreResult<Vec<TaskRecord>> {
        read_tx!(self, |tx| tasks::list(&tx, release_id).await?)
    }

    async fn agent_writes(
        &self,
        writes: Vec<AgentWrite>,
    ) -> StoreResult<Vec<StoreResult<AgentWritten>>> {
        write_tx!(self, |tx| agent_writes::write_all(&tx, &writes).await?)
    }

    async fn task_batch_summaries(&self, release_id: &str) -> StoreResult<Vec<BatchSummary>> {
        read_tx!(self, |tx| tasks::batch_summaries(&tx, release_id).await?)
    }

    async fn task_list_live(&self, release_id: &str) -> StoreResult<Vec<LiveTask>> {
        read_tx!(self, |tx| tasks::list_live(&tx, release_id).await?)
    }

    async fn task_count_open_in_batch(&self, release_id: &str, batch: u32) -> StoreResult<u32> {
        read_one!(self, |client| tasks::count_open_in_batch(
            &client, release_id, batch
        )
        .await?)
    }

    async fn task_dispatch_batch(
        &self,
        release_id: &str,
        batch: u32,
        now: DateTime<Utc>,
        deadline: DateTime<Utc>,
    ) -> StoreResult<Vec<String>> {
        write_tx!(self, |tx| tasks::dispatch_batch(
            &tx, release_id, batch, now, deadline
        )
        .await?)
    }

    async fn task_next_dispatched(&self, instance_id: &str) -> StoreResult<Option<String>> {
        read_one!(self, |client| tasks::next_dispatched(&client, instance_id)
            .await?)
    }

    async fn task_claim(
        &self,
        release_id: &str,
        instance_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        write_tx!(self, |tx| tasks::claim(&tx, release_id, instance_id, now)
            .await?)
    }

    async fn task_list_running_for_instance(
        &self,
        instance_id: &str,
    ) -> StoreResult<Vec<TaskRecord>> {
        read_one!(self, |client| tasks::list_running_for_instance(
            &client,
            instance_id
        )
        .await?)
    }

    async fn task_fetch(&self, release_id: &str, instance_id: &str) -> StoreResult<TaskRecord> {
        read_one!(self, |client| tasks::fetch(
            &client,
            release_id,
            instance_id
        )
        .await?)
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
        write_tx!(self, |tx| tasks::finish(
            &tx,
            release_id,
            instance_id,
            state,
            digest,
            message,
            now
        )
        .await?)
    }

    async fn task_cancel_unstarted(
        &self,
        release_id: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        write_tx!(self, |tx| tasks::cancel_unstarted(
            &tx, release_id, message, now
        )
        .await?)
    }

    async fn step_begin(
        &self,
        release_id: &str,
        instance_id: &str,
        step: StepName,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        write_tx!(self, |tx| steps::begin(
            &tx,
            release_id,
            instance_id,
            step,
            now
        )
        .await?)
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
        write_tx!(self, |tx| steps::append_output(
            &tx,
            release_id,
            instance_id,
            step,
            chunk,
            dropped,
            keep_bytes,
            offset
        )
        .await?)
    }

    async fn task_fail(
        &self,
        release_id: &str,
        instance_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        write_tx!(self, |tx| {
            let failed = tasks::finish(
                &tx,
                release_id,
                instance_id,
                TaskState::Failed,
                None,
                Some(reason),
                now,
            )
            .await?;
            if failed {
                steps::fail_running(&tx, release_id, instance_id, reason, now).await?;
            }
            failed
        })
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
        write_tx!(self, |tx| steps::finish(
            &tx,
            release_id,
            instance_id,
            step,
            state,
            exit_code,
            message,
            now
        )
        .await?)
    }

    async fn step_list(
        &self,
        release_id: &str,
        instance_id: Option<&str>,
    ) -> StoreResult<Vec<StepRecord>> {
        read_tx!(self, |tx| steps::list(&tx, release_id, instance_id, true)
            .await?)
    }

    async fn step_list_without_output(
        &self,
        release_id: &str,
        instance_id: Option<&str>,
    ) -> StoreResult<Vec<StepRecord>> {
        read_tx!(self, |tx| steps::list(&tx, release_id, instance_id, false)
            .await?)
    }

    async fn group_set_current_deployment(
        &self,
        app: &str,
        group: &str,
        deployment: &str,
    ) -> StoreResult<()> {
        write_tx!(self, |tx| groups::set_current_deployment(
            &tx, app, group, deployment
        )
        .await?)
    }

    async fn task_set_digest(
        &self,
        release_id: &str,
        instance_id: &str,
        digest: &str,
    ) -> StoreResult<()> {
        write_tx!(self, |tx| tasks::set_digest(
            &tx,
            release_id,
            instance_id,
            digest
        )
        .await?)
    }

    async fn scaling_group_create(&self, record: &ScalingGroupRecord) -> StoreResult<()> {
        write_tx!(self, |tx| scaling::create(&tx, record).await?)
    }

    async fn scaling_group_list(&self) -> StoreResult<Vec<ScalingGroupRecord>> {
        read_one!(self, |client| scaling::list(&client).await?)
    }

    async fn scaling_group_fetch(&self, name: &str) -> StoreResult<ScalingGroupRecord> {
        read_one!(self, |client| scaling::fetch(&client, name).await?)
    }

    async fn scaling_group_delete(&self, name: &str) -> StoreResult<()> {
        write_tx!(self, |tx| scaling::delete(&tx, name).await?)
    }

    async fn instance_register_scaling(
        &self,
        token_hash: &str,
        instance: &InstanceRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<ScalingJoin> {
        write_tx!(self, |tx| scaling::register(&tx, token_hash, instance, now)
            .await?)
    }

    async fn scaling_group_suspend(
        &self,
        name: &str,
        release: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        write_tx!(self, |tx| scaling::suspend(&tx, name, release, now).await?)
    }

    async fn scaling_group_resume(
        &self,
        name: &str,
        release: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        write_tx!(self, |tx| scaling::resume(&tx, name, release, now).await?)
    }

    async fn scaling_group_held(&self, name: &str) -> StoreResult<Vec<ScalingHeldRecord>> {
        read_tx!(self, |tx| scaling::held(&tx, name).await?)
    }

    async fn scaling_group_caught_up(&self, name: &str, ids: &[String]) -> StoreResult<()> {
        write_tx!(self, |tx| scaling::caught_up(&tx, name, ids).await?)
    }

    async fn scaling_hook_record(
        &self,
        name: &str,
        run: &HookRunRecord,
        retry_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        write_tx!(self, |tx| scaling::hook_record(&tx, name, run, retry_at)
            .await?)
    }

    async fn scaling_hook_runs(&self, name: &str, limit: u32) -> StoreResult<Vec<HookRunRecord>> {
        read_tx!(self, |tx| scaling::hook_runs(&tx, name, limit).await?)
    }

    async fn scaling_activities(
        &self,
        name: &str,
        limit: u32,
    ) -> StoreResult<Vec<ScalingActivityRecord>> {
        read_tx!(self, |tx| scaling::activities(&tx, name, limit).await?)
    }
}
