//! The store conformance suite: what every [`Store`] backend must do, written
//! against the trait alone. Each check in `suite` takes a [`Backend`] (a paired
//! check takes two, to compare a call with its equivalent calls); a backend
//! runs the whole suite with one `conformance!` line, as SQLite and PostgreSQL
//! do at the end of this file (PostgreSQL on a real server: see
//! `support/postgres.rs`), so both prove themselves by the same checks.

use async_trait::async_trait;
use std::sync::Arc;
use wharf_store::Store;

#[path = "support/postgres.rs"]
mod pg_server;

/// A database under test. It owns the database and opens stores on it; opening
/// again closes the store opened before, so that a check can show what survives
/// a restart.
#[async_trait]
pub trait Backend: Send + Sync {
    async fn open(&self) -> Arc<dyn Store>;
}

/// Expands to one test per check of the suite, each on a fresh backend made by
/// `$make`; a paired check also gets a second fresh backend, to compare with.
macro_rules! conformance {
    (@paired $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let backend = $make;
                let reference = $make;
                crate::suite::$check(&backend, &reference).await;
            }
        )*
    };
    ($make:expr) => {
        conformance!($make;
            api_tokens_are_found_by_hash_and_counted,
            registration_tokens_are_listed_by_creation_and_revoked,
            registration_spends_one_use_and_stores_the_instance,
            registration_is_refused_for_bad_tokens_without_changing_anything,
            a_taken_name_or_id_refuses_registration_without_spending_a_use,
            concurrent_registrations_never_overspend_a_token,
            instances_are_fetched_by_id_then_name_and_listed_by_name,
            labels_round_trip,
            heartbeats_update_the_instance,
            heartbeats_in_one_call_update_each_instance,
            the_docker_status_of_an_instance_is_recorded,
            deleting_an_instance_removes_its_memberships_and_credential,
            applications_are_created_listed_fetched_and_deleted,
            an_application_in_use_is_not_deleted,
            groups_need_their_application_and_are_unique_within_it,
            groups_keep_their_current_and_previous_deployment,
            adding_instances_is_all_or_nothing_and_keeps_members,
            removing_instances_is_all_or_nothing,
            a_group_with_members_is_not_deleted,
            registries_round_trip_and_are_unique,
            a_registry_in_use_is_not_deleted,
            deployments_round_trip_exactly,
            deployments_need_their_application_and_registry,
            a_deployment_in_use_is_not_deleted,
            releases_round_trip_with_their_tasks,
            a_group_has_one_active_release_at_a_time,
            concurrent_creates_leave_one_active_release,
            release_create_checks_what_it_names,
            releases_are_listed_newest_first_and_active_ones_oldest_first,
            release_transitions_are_compare_and_set,
            dispatch_moves_one_batch_and_only_while_running,
            open_tasks_are_counted_per_batch,
            work_is_handed_out_oldest_first_and_claimed_with_its_fetch_step,
            tasks_finish_once_and_record_the_membership_on_success,
            a_task_fails_with_its_running_step_in_one_write,
            cancelling_ends_only_tasks_that_have_not_started,
            steps_begin_and_finish_once,
            step_output_keeps_the_last_bytes_and_counts_what_it_drops,
            output_reported_again_at_the_same_offset_is_stored_once,
            a_group_records_its_current_and_previous_deployment,
            released_groups_and_deployments_are_kept_but_instances_may_go,
            everything_survives_reopening,
            releases_survive_reopening,
            a_failure_and_its_rollback_are_stored_together,
            scaling_groups_are_created_listed_and_deleted,
            registration_for_a_scaling_group_joins_or_is_held,
            hook_runs_are_recorded_and_failures_retried,
            a_successful_resume_counts_only_the_failed_attempts_before_it,
            execs_round_trip_and_are_listed_apart_from_releases,
            an_exec_and_a_release_never_run_on_a_group_together,
            exec_steps_are_recorded_after_fetch,
            batch_summaries_count_each_batch_by_state,
            live_tasks_are_the_dispatched_and_running_ones_with_their_heartbeat,
            a_refused_agent_write_is_undone_alone,
            steps_without_output_are_the_steps_with_their_output_emptied,
            release_detail_is_the_release_its_tasks_and_their_steps,
            a_filtered_release_detail_has_the_steps_of_the_picked_tasks_only,
            a_poll_look_is_the_running_tasks_and_the_work_to_hand_out,
        );
        conformance!(@paired $make;
            agent_writes_answer_as_their_single_calls_do,
            a_step_end_begins_the_next_step_when_asked,
        );
    };
    ($make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let backend = $make;
                crate::suite::$check(&backend).await;
            }
        )*
    };
}

/// Records and assertions the checks share.
mod fixtures {
    use super::*;
    use chrono::{DateTime, Utc};
    use std::collections::BTreeMap;
    use std::fmt::Debug;
    use wharf_domain::deployment::{DeploymentKind, ImageSpec, Timeouts, VerifySpec};
    use wharf_domain::release::{PauseMode, ReleaseState};
    use wharf_store::*;

    /// A time `secs` after a fixed origin, in whole milliseconds (what every
    /// backend must keep exactly).
    pub fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_123 + secs * 1000).expect("a valid time")
    }

    pub fn api_token(id: &str, hash: &str) -> ApiTokenRecord {
        ApiTokenRecord {
            id: id.into(),
            hash: hash.into(),
            role: "admin".into(),
            created_at: at(0),
        }
    }

    pub fn registration_token(
        id: &str,
        uses: u32,
        expires_at: DateTime<Utc>,
    ) -> RegistrationTokenRecord {
        RegistrationTokenRecord {
            id: id.into(),
            hash: format!("hash-of-{id}"),
            created_at: at(0),
            expires_at,
            uses,
            uses_left: uses,
        }
    }

    pub fn instance_id(n: u64) -> String {
        format!("i-{n:016x}")
    }

    pub fn instance(n: u64, name: &str) -> InstanceRecord {
        InstanceRecord {
            id: instance_id(n),
            name: name.into(),
            hostname: format!("{name}.example"),
            address: format!("10.0.0.{n}"),
            os: "linux".into(),
            arch: "x86_64".into(),
            agent_version: "0.1.0".into(),
            labels: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
            credential_hash: format!("credential-of-{n}"),
            scaling_group: None,
            registered_at: at(10),
            last_heartbeat_at: None,
            docker_version: None,
            docker_error: None,
        }
    }

    pub fn app(name: &str) -> AppRecord {
        AppRecord {
            name: name.into(),
            description: format!("the {name} application"),
            created_at: at(1),
        }
    }

    pub fn group(app: &str, name: &str) -> GroupRecord {
        GroupRecord {
            app: app.into(),
            name: name.into(),
            created_at: at(2),
            current_deployment: None,
            previous_deployment: None,
        }
    }

    pub fn registry(name: &str) -> RegistryRecord {
        RegistryRecord {
            name: name.into(),
            endpoint: "registry.example:5000".into(),
            private_endpoint: Some("10.1.0.1:5000".into()),
            username: Some("puller".into()),
            password_sealed: Some(vec![0, 1, 2, 255, 254, 0]),
            insecure: true,
            created_at: at(3),
        }
    }

    pub fn image_deployment(app: &str, name: &str, registry: &str) -> DeploymentRecord {
        DeploymentRecord {
            app: app.into(),
            name: name.into(),
            kind: DeploymentKind::DockerImage,
            image: Some(ImageSpec {
                registry: registry.into(),
                namespace: "team/shop".into(),
                repository: "web".into(),
                tag: "1.2.3".into(),
                private_network: true,
            }),
            workdir: "/srv/web".into(),
            start_script: "docker run -d --name web \"$WHARF_IMAGE\"\n".into(),
            stop_script: "docker rm -f web || true\n".into(),
            verify: Some(VerifySpec {
                url: "http://localhost:8080/hello".into(),
                expect_status: 204,
                expect_body: Some("it's \"ok\"".into()),
            }),
            timeouts: Timeouts {
                pull_secs: 301,
                script_secs: 602,
                verify_secs: 63,
            },
            created_at: at(4),
        }
    }

    pub fn command_deployment(app: &str, name: &str) -> DeploymentRecord {
        DeploymentRecord {
            app: app.into(),
            name: name.into(),
            kind: DeploymentKind::Command,
            image: None,
            workdir: "/opt/job".into(),
            start_script: "echo start".into(),
            stop_script: String::new(),
            verify: None,
            timeouts: Timeouts::default(),
            created_at: at(5),
        }
    }

    pub fn ids(ns: &[u64]) -> Vec<String> {
        ns.iter().copied().map(instance_id).collect()
    }

    /// Registers instance `n` named `name` with a fresh single-use token.
    pub async fn register(store: &dyn Store, n: u64, name: &str) -> InstanceRecord {
        let token = registration_token(&format!("for-{n}"), 1, at(1000));
        store
            .registration_token_create(&token)
            .await
            .expect("token created");
        let instance = instance(n, name);
        store
            .instance_register(&token.hash, &instance, at(20))
            .await
            .expect("instance registered");
        instance
    }

    pub fn expect_not_found<T: Debug>(result: StoreResult<T>, kind: &str, name: &str) {
        match result {
            Err(StoreError::NotFound { kind: k, name: n }) if k == kind && n == name => {}
            other => panic!("expected NotFound {{ {kind}, {name:?} }}, got {other:?}"),
        }
    }

    pub fn expect_already_exists<T: Debug>(result: StoreResult<T>, kind: &str, name: &str) {
        match result {
            Err(StoreError::AlreadyExists { kind: k, name: n }) if k == kind && n == name => {}
            other => panic!("expected AlreadyExists {{ {kind}, {name:?} }}, got {other:?}"),
        }
    }

    pub fn expect_in_use<T: Debug>(result: StoreResult<T>, kind: &str, name: &str, by: &str) {
        match result {
            Err(StoreError::InUse {
                kind: k,
                name: n,
                by: b,
            }) if k == kind && n == name && b == by => {}
            other => panic!("expected InUse {{ {kind}, {name:?}, by {by:?} }}, got {other:?}"),
        }
    }

    pub fn expect_refused<T: Debug>(result: StoreResult<T>, reason: &str) {
        match result {
            Err(StoreError::RegistrationRefused(r)) if r == reason => {}
            other => panic!("expected RegistrationRefused({reason:?}), got {other:?}"),
        }
    }

    // ------------------------------------------------------------ releases

    pub fn release_id(n: u64) -> String {
        format!("r-{n:016x}")
    }

    /// A pending release `n`, created at `at(100 + n)`.
    pub fn release(n: u64, app: &str, group: &str, deployment: &str) -> ReleaseRecord {
        ReleaseRecord {
            id: release_id(n),
            app: app.into(),
            group: group.into(),
            deployment: deployment.into(),
            state: ReleaseState::Pending,
            pause: PauseMode::First,
            batch_count: 2,
            batch_interval_secs: 30,
            max_failures: 1,
            rollback_on_failure: true,
            kind: "release".into(),
            rollback_of: None,
            continued_through: 0,
            created_at: at(100 + n as i64),
            started_at: None,
            finished_at: None,
            message: None,
        }
    }

    /// A pending task of `release` on `instance`.
    pub fn task(release: &ReleaseRecord, instance: &InstanceRecord, batch: u32) -> TaskRecord {
        TaskRecord {
            release_id: release.id.clone(),
            instance_id: instance.id.clone(),
            instance_name: instance.name.clone(),
            batch,
            state: TaskState::Pending,
            dispatched_at: None,
            started_at: None,
            finished_at: None,
            deadline: None,
            image_digest: None,
            message: None,
        }
    }

    /// The name errors give a task: `release/instance`.
    pub fn task_name(release: &str, instance: &str) -> String {
        format!("{release}/{instance}")
    }

    /// Application `shop` with registry `main`, deployments `v1` (command) and `v2`
    /// (image), groups `prod` and `staging`, and three instances in `prod`: ids
    /// 1, 2, 3 named `web-c`, `web-a`, `web-b` (so that id and name order differ).
    /// Returns them in name order: a, b, c.
    pub async fn shop(store: &dyn Store) -> [InstanceRecord; 3] {
        store.app_create(&app("shop")).await.expect("app created");
        store
            .registry_create(&registry("main"))
            .await
            .expect("registry created");
        store
            .deployment_create(&command_deployment("shop", "v1"))
            .await
            .expect("v1 created");
        store
            .deployment_create(&image_deployment("shop", "v2", "main"))
            .await
            .expect("v2 created");
        for name in ["prod", "staging"] {
            store
                .group_create(&group("shop", name))
                .await
                .expect("group created");
        }
        let c = register(store, 1, "web-c").await;
        let a = register(store, 2, "web-a").await;
        let b = register(store, 3, "web-b").await;
        store
            .group_add_instances("shop", "prod", &ids(&[1, 2, 3]))
            .await
            .expect("instances added");
        [a, b, c]
    }

    /// Creates `release` with one task per (instance, batch).
    pub async fn create(
        store: &dyn Store,
        release: &ReleaseRecord,
        targets: &[(&InstanceRecord, u32)],
    ) -> Vec<TaskRecord> {
        let tasks: Vec<TaskRecord> = targets
            .iter()
            .map(|(instance, batch)| task(release, instance, *batch))
            .collect();
        store
            .release_create(release, &tasks)
            .await
            .expect("release created");
        tasks
    }

    /// Moves a release from `from` to `to` at `now`, which must succeed.
    pub async fn shift(
        store: &dyn Store,
        id: &str,
        from: ReleaseState,
        to: ReleaseState,
        now: DateTime<Utc>,
    ) {
        assert!(
            store
                .release_transition(id, &[from], to, None, now)
                .await
                .expect("transition"),
            "release {id} did not move from {from:?} to {to:?}"
        );
    }

    /// Starts a release, dispatches `batch` and lets each given instance claim its
    /// task, all at `now`.
    pub async fn run_batch(
        store: &dyn Store,
        id: &str,
        batch: u32,
        claimers: &[&InstanceRecord],
        now: DateTime<Utc>,
    ) {
        if store.release_fetch(id).await.expect("release").state == ReleaseState::Pending {
            shift(store, id, ReleaseState::Pending, ReleaseState::Running, now).await;
        }
        store
            .task_dispatch_batch(id, batch, now, now + chrono::Duration::seconds(600))
            .await
            .expect("batch dispatched");
        for instance in claimers {
            assert!(
                store
                    .task_claim(id, &instance.id, now)
                    .await
                    .expect("claim"),
                "no task of {} to claim",
                instance.name
            );
        }
    }

    pub fn expect_active_release<T: Debug>(result: StoreResult<T>, group: &str, release: &str) {
        match result {
            Err(StoreError::ActiveRelease {
                group: g,
                release: r,
            }) if g == group && r == release => {}
            other => panic!("expected ActiveRelease {{ {group}, {release} }}, got {other:?}"),
        }
    }

    pub fn expect_conflict<T: Debug>(result: StoreResult<T>, message: &str) {
        match result {
            Err(StoreError::Conflict(m)) if m == message => {}
            other => panic!("expected Conflict({message:?}), got {other:?}"),
        }
    }

    /// Whether the instance is a member of the group, and what it runs there.
    pub async fn membership(
        store: &dyn Store,
        instance: &InstanceRecord,
        app: &str,
        group: &str,
    ) -> Option<(Option<String>, Option<String>)> {
        store
            .instance_memberships(&instance.id)
            .await
            .expect("memberships")
            .into_iter()
            .find(|m| m.app == app && m.group == group)
            .map(|m| (m.deployment, m.image_digest))
    }

    /// The ids of members of a group, in the order the store gives them.
    pub async fn member_ids(store: &dyn Store, app: &str, group: &str) -> Vec<String> {
        store
            .group_members(app, group)
            .await
            .expect("members listed")
            .into_iter()
            .map(|member| member.instance.id)
            .collect()
    }

    pub async fn uses_left(store: &dyn Store, token_id: &str) -> u32 {
        store
            .registration_token_list()
            .await
            .expect("tokens listed")
            .into_iter()
            .find(|token| token.id == token_id)
            .expect("token still listed")
            .uses_left
    }
}

/// The checks. Each takes a fresh backend and panics on the first difference.
pub mod suite {
    use super::fixtures::*;
    use super::*;
    use chrono::{DateTime, Utc};
    use std::collections::BTreeMap;
    use wharf_domain::deployment::VerifySpec;
    use wharf_domain::release::{PauseMode, ReleaseState, StepName};
    use wharf_store::*;

    // ------------------------------------------------------------ tokens

    pub async fn api_tokens_are_found_by_hash_and_counted(backend: &dyn Backend) {
        let store = backend.open().await;
        assert_eq!(store.api_token_count().await.unwrap(), 0);
        let token = api_token("t1", "h1");
        store.api_token_create(&token).await.unwrap();
        assert_eq!(store.api_token_by_hash("h1").await.unwrap(), Some(token));
        assert_eq!(store.api_token_by_hash("h2").await.unwrap(), None);
        expect_already_exists(
            store.api_token_create(&api_token("t1", "h2")).await,
            "api token",
            "t1",
        );
        expect_already_exists(
            store.api_token_create(&api_token("t2", "h1")).await,
            "api token",
            "t2",
        );
        assert_eq!(store.api_token_count().await.unwrap(), 1);
        assert_eq!(store.api_token_by_hash("h2").await.unwrap(), None);
    }

    pub async fn registration_tokens_are_listed_by_creation_and_revoked(backend: &dyn Backend) {
        let store = backend.open().await;
        let mut later = registration_token("a-later", 3, at(100));
        later.created_at = at(50);
        let earlier = registration_token("z-earlier", 1, at(100));
        store.registration_token_create(&later).await.unwrap();
        store.registration_token_create(&earlier).await.unwrap();
        assert_eq!(
            store.registration_token_list().await.unwrap(),
            vec![earlier.clone(), later.clone()]
        );
        expect_already_exists(
            store.registration_token_create(&earlier).await,
            "registration token",
            "z-earlier",
        );
        store.registration_token_delete("z-earlier").await.unwrap();
        expect_not_found(
            store.registration_token_delete("z-earlier").await,
            "registration token",
            "z-earlier",
        );
        assert_eq!(store.registration_token_list().await.unwrap(), vec![later]);
    }

    // ------------------------------------------------------------ registration

    pub async fn registration_spends_one_use_and_stores_the_instance(backend: &dyn Backend) {
        let store = backend.open().await;
        let token = registration_token("t", 2, at(100));
        store.registration_token_create(&token).await.unwrap();
        let web = instance(1, "web-1");
        store
            .instance_register(&token.hash, &web, at(99))
            .await
            .unwrap();
        assert_eq!(uses_left(&*store, "t").await, 1);
        assert_eq!(store.instance_fetch(&web.id).await.unwrap(), web);
        assert_eq!(store.instance_list().await.unwrap(), vec![web]);
    }

    pub async fn registration_is_refused_for_bad_tokens_without_changing_anything(
        backend: &dyn Backend,
    ) {
        let store = backend.open().await;
        let expired = registration_token("expired", 5, at(100));
        let spent = registration_token("spent", 1, at(100));
        let revoked = registration_token("revoked", 5, at(100));
        for token in [&expired, &spent, &revoked] {
            store.registration_token_create(token).await.unwrap();
        }
        store.registration_token_delete("revoked").await.unwrap();
        store
            .instance_register(&spent.hash, &instance(1, "first"), at(0))
            .await
            .unwrap();

        let candidate = instance(2, "second");
        let unknown = "unknown or revoked registration token";
        expect_refused(
            store
                .instance_register("no-such-hash", &candidate, at(0))
                .await,
            unknown,
        );
        expect_refused(
            store
                .instance_register(&revoked.hash, &candidate, at(0))
                .await,
            unknown,
        );
        // A token expires at its expiry time, not a moment later.
        let expired_reason = "registration token expired";
        expect_refused(
            store
                .instance_register(&expired.hash, &candidate, at(100))
                .await,
            expired_reason,
        );
        expect_refused(
            store
                .instance_register(&expired.hash, &candidate, at(101))
                .await,
            expired_reason,
        );
        expect_refused(
            store
                .instance_register(&spent.hash, &candidate, at(0))
                .await,
            "registration token has no uses left",
        );

        assert_eq!(uses_left(&*store, "expired").await, 5);
        assert_eq!(uses_left(&*store, "spent").await, 0);
        let names: Vec<String> = store
            .instance_list()
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, vec!["first"]);
        expect_not_found(
            store.instance_fetch(&candidate.id).await,
            "instance",
            &candidate.id,
        );
        // The expired token still works a moment before its expiry.
        store
            .instance_register(&expired.hash, &candidate, at(99))
            .await
            .unwrap();
    }

    pub async fn a_taken_name_or_id_refuses_registration_without_spending_a_use(
        backend: &dyn Backend,
    ) {
        let store = backend.open().await;
        let token = registration_token("t", 3, at(100));
        store.registration_token_create(&token).await.unwrap();
        let first = instance(1, "web");
        store
            .instance_register(&token.hash, &first, at(0))
            .await
            .unwrap();

        let same_name = instance(2, "web");
        expect_already_exists(
            store
                .instance_register(&token.hash, &same_name, at(0))
                .await,
            "instance name",
            "web",
        );
        let same_id = instance(1, "other");
        expect_already_exists(
            store.instance_register(&token.hash, &same_id, at(0)).await,
            "instance",
            &first.id,
        );
        let mut same_credential = instance(3, "third");
        same_credential.credential_hash = first.credential_hash.clone();
        assert!(matches!(
            store
                .instance_register(&token.hash, &same_credential, at(0))
                .await,
            Err(StoreError::AlreadyExists { .. })
        ));

        assert_eq!(uses_left(&*store, "t").await, 2);
        assert_eq!(store.instance_list().await.unwrap(), vec![first]);
    }

    pub async fn concurrent_registrations_never_overspend_a_token(backend: &dyn Backend) {
        let store = backend.open().await;
        let token = registration_token("t", 5, at(100));
        store.registration_token_create(&token).await.unwrap();
        let attempts: Vec<_> = (1..=20)
            .map(|n| {
                let store = Arc::clone(&store);
                let hash = token.hash.clone();
                tokio::spawn(async move {
                    store
                        .instance_register(&hash, &instance(n, &format!("host-{n:02}")), at(0))
                        .await
                })
            })
            .collect();
        let mut succeeded = 0;
        for attempt in attempts {
            match attempt.await.expect("the task ran to the end") {
                Ok(()) => succeeded += 1,
                refused => expect_refused(refused, "registration token has no uses left"),
            }
        }
        assert_eq!(succeeded, 5);
        assert_eq!(store.instance_list().await.unwrap().len(), 5);
        assert_eq!(uses_left(&*store, "t").await, 0);
    }

    // ------------------------------------------------------------ instances

    pub async fn instances_are_fetched_by_id_then_name_and_listed_by_name(backend: &dyn Backend) {
        let store = backend.open().await;
        let charlie = register(&*store, 1, "charlie").await;
        let alpha = register(&*store, 2, "alpha").await;
        // An instance whose name is another instance's id: the id wins.
        let tricky = register(&*store, 3, &instance_id(1)).await;

        assert_eq!(store.instance_fetch(&alpha.id).await.unwrap(), alpha);
        assert_eq!(store.instance_fetch("alpha").await.unwrap(), alpha);
        assert_eq!(
            store.instance_fetch(&instance_id(1)).await.unwrap(),
            charlie
        );
        expect_not_found(store.instance_fetch("nobody").await, "instance", "nobody");

        let names: Vec<String> = store
            .instance_list()
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        // Names sort by their bytes (a PostgreSQL backend needs COLLATE "C").
        assert_eq!(
            names,
            vec!["alpha".to_owned(), "charlie".into(), tricky.name.clone()]
        );

        assert_eq!(
            store
                .instance_by_credential(&alpha.credential_hash)
                .await
                .unwrap(),
            Some(alpha)
        );
        assert_eq!(
            store
                .instance_by_credential("no-such-credential")
                .await
                .unwrap(),
            None
        );
    }

    pub async fn labels_round_trip(backend: &dyn Backend) {
        let store = backend.open().await;
        let token = registration_token("t", 3, at(100));
        store.registration_token_create(&token).await.unwrap();
        let mut labelled = instance(1, "labelled");
        labelled.labels = BTreeMap::from([
            ("env".to_owned(), "prod".to_owned()),
            ("quote\"d".to_owned(), "back\\slash, {json: [1]}".to_owned()),
            ("ünïcødé".to_owned(), "值 🚢".to_owned()),
            ("empty".to_owned(), String::new()),
        ]);
        labelled.scaling_group = Some("web-asg".into());
        let mut bare = instance(2, "bare");
        bare.labels = BTreeMap::new();
        for record in [&labelled, &bare] {
            store
                .instance_register(&token.hash, record, at(0))
                .await
                .unwrap();
        }
        assert_eq!(store.instance_fetch("labelled").await.unwrap(), labelled);
        assert_eq!(store.instance_fetch("bare").await.unwrap(), bare);
    }

    pub async fn heartbeats_update_the_instance(backend: &dyn Backend) {
        let store = backend.open().await;
        let mut web = register(&*store, 1, "web").await;
        store
            .instance_heartbeat(&web.id, at(30), "0.2.0", "10.9.9.9")
            .await
            .unwrap();
        web.last_heartbeat_at = Some(at(30));
        web.agent_version = "0.2.0".into();
        web.address = "10.9.9.9".into();
        assert_eq!(store.instance_fetch(&web.id).await.unwrap(), web);
        expect_not_found(
            store
                .instance_heartbeat("i-ffffffffffffffff", at(30), "0.2.0", "x")
                .await,
            "instance",
            "i-ffffffffffffffff",
        );
    }

    pub async fn the_docker_status_of_an_instance_is_recorded(backend: &dyn Backend) {
        let store = backend.open().await;
        let mut web = register(&*store, 1, "web").await;
        assert_eq!(
            (web.docker_version.clone(), web.docker_error.clone()),
            (None, None)
        );
        store
            .instance_set_docker(&web.id, None, Some("Docker Engine not reachable"))
            .await
            .unwrap();
        web.docker_error = Some("Docker Engine not reachable".into());
        assert_eq!(store.instance_fetch(&web.id).await.unwrap(), web);
        store
            .instance_set_docker(&web.id, Some("26.1.5"), None)
            .await
            .unwrap();
        web.docker_version = Some("26.1.5".into());
        web.docker_error = None;
        // A heartbeat leaves it as it is; it is listed and survives reopening.
        store
            .instance_heartbeat(&web.id, at(30), "0.2.0", "10.9.9.9")
            .await
            .unwrap();
        web.last_heartbeat_at = Some(at(30));
        web.agent_version = "0.2.0".into();
        web.address = "10.9.9.9".into();
        assert_eq!(store.instance_list().await.unwrap(), vec![web.clone()]);
        let store = backend.open().await;
        assert_eq!(store.instance_fetch(&web.id).await.unwrap(), web);
        expect_not_found(
            store
                .instance_set_docker("i-ffffffffffffffff", Some("1"), None)
                .await,
            "instance",
            "i-ffffffffffffffff",
        );
    }

    pub async fn heartbeats_in_one_call_update_each_instance(backend: &dyn Backend) {
        let store = backend.open().await;
        let mut web = register(&*store, 1, "web").await;
        let mut db = register(&*store, 2, "db").await;
        let beat = |id: &str, version: &str, address: &str| HeartbeatRecord {
            id: id.to_owned(),
            at: at(40),
            agent_version: version.to_owned(),
            address: address.to_owned(),
        };
        let found = store
            .instance_heartbeats(&[
                beat(&web.id, "0.2.0", "10.0.0.1"),
                beat("i-ffffffffffffffff", "0.2.0", "x"),
                beat(&db.id, "0.3.0", "10.0.0.2"),
            ])
            .await
            .unwrap();
        // A missing instance is reported and does not stop the others.
        assert_eq!(found, vec![true, false, true]);
        for (record, version, address) in [
            (&mut web, "0.2.0", "10.0.0.1"),
            (&mut db, "0.3.0", "10.0.0.2"),
        ] {
            record.last_heartbeat_at = Some(at(40));
            record.agent_version = version.into();
            record.address = address.into();
            assert_eq!(store.instance_fetch(&record.id).await.unwrap(), *record);
        }
        assert_eq!(
            store.instance_heartbeats(&[]).await.unwrap(),
            Vec::<bool>::new()
        );
        // Two heartbeats of one instance in one call: the later one is kept,
        // whichever order they come in, and both are answered as found.
        let mut late = beat(&web.id, "0.4.0", "10.0.0.9");
        late.at = at(50);
        let found = store
            .instance_heartbeats(&[late.clone(), beat(&web.id, "0.2.0", "10.0.0.1")])
            .await
            .unwrap();
        assert_eq!(found, vec![true, true]);
        web.last_heartbeat_at = Some(at(50));
        web.agent_version = "0.4.0".into();
        web.address = "10.0.0.9".into();
        assert_eq!(store.instance_fetch(&web.id).await.unwrap(), web);
    }

    pub async fn deleting_an_instance_removes_its_memberships_and_credential(
        backend: &dyn Backend,
    ) {
        let store = backend.open().await;
        let gone = register(&*store, 1, "gone").await;
        let stays = register(&*store, 2, "stays").await;
        for app_name in ["shop", "blog"] {
            store.app_create(&app(app_name)).await.unwrap();
            store.group_create(&group(app_name, "prod")).await.unwrap();
            store
                .group_add_instances(app_name, "prod", &ids(&[1, 2]))
                .await
                .unwrap();
        }
        let memberships = store.instance_memberships(&gone.id).await.unwrap();
        let groups: Vec<(String, String)> =
            memberships.into_iter().map(|m| (m.app, m.group)).collect();
        assert_eq!(
            groups,
            vec![
                ("blog".into(), "prod".into()),
                ("shop".into(), "prod".into())
            ]
        );

        store.instance_delete(&gone.id).await.unwrap();
        expect_not_found(store.instance_fetch(&gone.id).await, "instance", &gone.id);
        assert_eq!(
            store
                .instance_by_credential(&gone.credential_hash)
                .await
                .unwrap(),
            None
        );
        expect_not_found(
            store.instance_memberships(&gone.id).await,
            "instance",
            &gone.id,
        );
        expect_not_found(store.instance_delete(&gone.id).await, "instance", &gone.id);
        assert_eq!(
            member_ids(&*store, "shop", "prod").await,
            vec![stays.id.clone()]
        );
        assert_eq!(
            member_ids(&*store, "blog", "prod").await,
            vec![stays.id.clone()]
        );
        assert_eq!(
            store.instance_memberships(&stays.id).await.unwrap().len(),
            2
        );
        // The name is free again.
        register(&*store, 3, "gone").await;
    }

    // ------------------------------------------------------------ applications

    pub async fn applications_are_created_listed_fetched_and_deleted(backend: &dyn Backend) {
        let store = backend.open().await;
        assert_eq!(store.app_list().await.unwrap(), vec![]);
        store.app_create(&app("shop")).await.unwrap();
        store.app_create(&app("blog")).await.unwrap();
        expect_already_exists(store.app_create(&app("shop")).await, "application", "shop");
        assert_eq!(
            store.app_list().await.unwrap(),
            vec![app("blog"), app("shop")]
        );
        assert_eq!(store.app_fetch("shop").await.unwrap(), app("shop"));
        expect_not_found(store.app_fetch("nope").await, "application", "nope");
        store.app_delete("shop").await.unwrap();
        expect_not_found(store.app_delete("shop").await, "application", "shop");
        expect_not_found(store.app_fetch("shop").await, "application", "shop");
        assert_eq!(store.app_list().await.unwrap(), vec![app("blog")]);
    }

    pub async fn an_application_in_use_is_not_deleted(backend: &dyn Backend) {
        let store = backend.open().await;
        store.app_create(&app("shop")).await.unwrap();
        for name in ["staging", "prod"] {
            store.group_create(&group("shop", name)).await.unwrap();
        }
        for name in ["v2", "v1"] {
            store
                .deployment_create(&command_deployment("shop", name))
                .await
                .unwrap();
        }
        expect_in_use(
            store.app_delete("shop").await,
            "application",
            "shop",
            "groups prod, staging and deployments v1, v2",
        );
        assert_eq!(store.app_fetch("shop").await.unwrap(), app("shop"));
        assert_eq!(store.group_list("shop").await.unwrap().len(), 2);
        assert_eq!(store.deployment_list("shop").await.unwrap().len(), 2);

        store.group_delete("shop", "prod").await.unwrap();
        store.group_delete("shop", "staging").await.unwrap();
        store.deployment_delete("shop", "v2").await.unwrap();
        expect_in_use(
            store.app_delete("shop").await,
            "application",
            "shop",
            "deployment v1",
        );
        store.deployment_delete("shop", "v1").await.unwrap();
        store.app_delete("shop").await.unwrap();
    }

    // ------------------------------------------------------------ groups

    pub async fn groups_need_their_application_and_are_unique_within_it(backend: &dyn Backend) {
        let store = backend.open().await;
        expect_not_found(
            store.group_create(&group("shop", "prod")).await,
            "application",
            "shop",
        );
        expect_not_found(store.group_list("shop").await, "application", "shop");
        store.app_create(&app("shop")).await.unwrap();
        store.app_create(&app("blog")).await.unwrap();
        store.group_create(&group("shop", "staging")).await.unwrap();
        store.group_create(&group("shop", "prod")).await.unwrap();
        store.group_create(&group("blog", "prod")).await.unwrap();
        expect_already_exists(
            store.group_create(&group("shop", "prod")).await,
            "group",
            "shop/prod",
        );

        assert_eq!(
            store.group_list("shop").await.unwrap(),
            vec![group("shop", "prod"), group("shop", "staging")]
        );
        assert_eq!(
            store.group_fetch("blog", "prod").await.unwrap(),
            group("blog", "prod")
        );
        expect_not_found(
            store.group_fetch("blog", "staging").await,
            "group",
            "blog/staging",
        );
        expect_not_found(
            store.group_fetch("nope", "prod").await,
            "application",
            "nope",
        );
        expect_not_found(
            store.group_delete("blog", "staging").await,
            "group",
            "blog/staging",
        );
        expect_not_found(
            store.group_members("blog", "staging").await,
            "group",
            "blog/staging",
        );
        store.group_delete("blog", "prod").await.unwrap();
        assert_eq!(store.group_list("blog").await.unwrap(), vec![]);
    }

    pub async fn groups_keep_their_current_and_previous_deployment(backend: &dyn Backend) {
        let store = backend.open().await;
        store.app_create(&app("shop")).await.unwrap();
        store.app_create(&app("blog")).await.unwrap();
        store
            .deployment_create(&command_deployment("shop", "v1"))
            .await
            .unwrap();
        store
            .deployment_create(&command_deployment("shop", "v2"))
            .await
            .unwrap();
        store
            .deployment_create(&command_deployment("blog", "v3"))
            .await
            .unwrap();

        let mut prod = group("shop", "prod");
        prod.current_deployment = Some("v2".into());
        prod.previous_deployment = Some("v1".into());
        store.group_create(&prod).await.unwrap();
        assert_eq!(store.group_fetch("shop", "prod").await.unwrap(), prod);

        // A deployment of another application is not one of this application's.
        let mut staging = group("shop", "staging");
        staging.current_deployment = Some("v3".into());
        expect_not_found(store.group_create(&staging).await, "deployment", "shop/v3");
        expect_not_found(
            store.group_fetch("shop", "staging").await,
            "group",
            "shop/staging",
        );
    }

    pub async fn adding_instances_is_all_or_nothing_and_keeps_members(backend: &dyn Backend) {
        let store = backend.open().await;
        store.app_create(&app("shop")).await.unwrap();
        store.group_create(&group("shop", "prod")).await.unwrap();
        let c = register(&*store, 1, "c").await;
        let a = register(&*store, 2, "a").await;
        let b = register(&*store, 3, "b").await;

        store
            .group_add_instances("shop", "prod", &ids(&[1]))
            .await
            .unwrap();
        // Already a member, listed twice, and new: fine.
        store
            .group_add_instances("shop", "prod", &ids(&[1, 2, 2]))
            .await
            .unwrap();
        expect_not_found(
            store
                .group_add_instances("shop", "prod", &[b.id.clone(), "i-00000000000000ff".into()])
                .await,
            "instance",
            "i-00000000000000ff",
        );
        assert_eq!(
            member_ids(&*store, "shop", "prod").await,
            vec![a.id.clone(), c.id.clone()]
        );

        let members = store.group_members("shop", "prod").await.unwrap();
        assert_eq!(
            members,
            vec![
                MemberRecord {
                    instance: a,
                    deployment: None,
                    image_digest: None
                },
                MemberRecord {
                    instance: c.clone(),
                    deployment: None,
                    image_digest: None
                },
            ]
        );
        expect_not_found(
            store
                .group_add_instances("shop", "staging", &ids(&[1]))
                .await,
            "group",
            "shop/staging",
        );
        expect_not_found(
            store.group_add_instances("nope", "prod", &ids(&[1])).await,
            "application",
            "nope",
        );
        assert_eq!(
            store.instance_memberships(&c.id).await.unwrap(),
            vec![MembershipRecord {
                app: "shop".into(),
                group: "prod".into(),
                deployment: None,
                image_digest: None,
            }]
        );
        assert_eq!(store.instance_memberships(&b.id).await.unwrap(), vec![]);
    }

    pub async fn removing_instances_is_all_or_nothing(backend: &dyn Backend) {
        let store = backend.open().await;
        store.app_create(&app("shop")).await.unwrap();
        store.group_create(&group("shop", "prod")).await.unwrap();
        for (n, name) in [(1, "a"), (2, "b"), (3, "outsider")] {
            register(&*store, n, name).await;
        }
        store
            .group_add_instances("shop", "prod", &ids(&[1, 2]))
            .await
            .unwrap();

        expect_not_found(
            store
                .group_remove_instances("shop", "prod", &ids(&[1, 3]))
                .await,
            "group member",
            &instance_id(3),
        );
        assert_eq!(member_ids(&*store, "shop", "prod").await, ids(&[1, 2]));
        store
            .group_remove_instances("shop", "prod", &ids(&[2]))
            .await
            .unwrap();
        assert_eq!(member_ids(&*store, "shop", "prod").await, ids(&[1]));
        expect_not_found(
            store
                .group_remove_instances("shop", "prod", &ids(&[2]))
                .await,
            "group member",
            &instance_id(2),
        );
        // Removing from a group leaves the instance registered.
        assert_eq!(store.instance_fetch("b").await.unwrap().id, instance_id(2));
    }

    pub async fn a_group_with_members_is_not_deleted(backend: &dyn Backend) {
        let store = backend.open().await;
        store.app_create(&app("shop")).await.unwrap();
        store.group_create(&group("shop", "prod")).await.unwrap();
        register(&*store, 1, "a").await;
        register(&*store, 2, "b").await;
        store
            .group_add_instances("shop", "prod", &ids(&[1, 2]))
            .await
            .unwrap();

        expect_in_use(
            store.group_delete("shop", "prod").await,
            "group",
            "shop/prod",
            "2 instances",
        );
        assert_eq!(
            store.group_fetch("shop", "prod").await.unwrap(),
            group("shop", "prod")
        );
        assert_eq!(member_ids(&*store, "shop", "prod").await, ids(&[1, 2]));

        store
            .group_remove_instances("shop", "prod", &ids(&[1]))
            .await
            .unwrap();
        expect_in_use(
            store.group_delete("shop", "prod").await,
            "group",
            "shop/prod",
            "1 instance",
        );
        store
            .group_remove_instances("shop", "prod", &ids(&[2]))
            .await
            .unwrap();
        store.group_delete("shop", "prod").await.unwrap();
        expect_not_found(
            store.group_fetch("shop", "prod").await,
            "group",
            "shop/prod",
        );
    }

    // ------------------------------------------------------------ registries

    pub async fn registries_round_trip_and_are_unique(backend: &dyn Backend) {
        let store = backend.open().await;
        let full = registry("main");
        let bare = RegistryRecord {
            name: "docker-hub".into(),
            endpoint: "docker.io".into(),
            private_endpoint: None,
            username: None,
            password_sealed: None,
            insecure: false,
            created_at: at(9),
        };
        store.registry_create(&full).await.unwrap();
        store.registry_create(&bare).await.unwrap();
        expect_already_exists(
            store.registry_create(&registry("main")).await,
            "registry",
            "main",
        );
        assert_eq!(
            store.registry_list().await.unwrap(),
            vec![bare.clone(), full.clone()]
        );
        assert_eq!(store.registry_fetch("main").await.unwrap(), full);
        expect_not_found(store.registry_fetch("nope").await, "registry", "nope");
        store.registry_delete("docker-hub").await.unwrap();
        expect_not_found(
            store.registry_delete("docker-hub").await,
            "registry",
            "docker-hub",
        );
        assert_eq!(store.registry_list().await.unwrap(), vec![full]);
    }

    pub async fn a_registry_in_use_is_not_deleted(backend: &dyn Backend) {
        let store = backend.open().await;
        store.registry_create(&registry("main")).await.unwrap();
        for app_name in ["shop", "blog"] {
            store.app_create(&app(app_name)).await.unwrap();
        }
        store
            .deployment_create(&image_deployment("shop", "v1", "main"))
            .await
            .unwrap();
        store
            .deployment_create(&image_deployment("blog", "v2", "main"))
            .await
            .unwrap();
        expect_in_use(
            store.registry_delete("main").await,
            "registry",
            "main",
            "deployments blog/v2, shop/v1",
        );
        assert_eq!(
            store.registry_fetch("main").await.unwrap(),
            registry("main")
        );
        assert_eq!(store.deployment_list("shop").await.unwrap().len(), 1);

        store.deployment_delete("blog", "v2").await.unwrap();
        expect_in_use(
            store.registry_delete("main").await,
            "registry",
            "main",
            "deployment shop/v1",
        );
        store.deployment_delete("shop", "v1").await.unwrap();
        store.registry_delete("main").await.unwrap();
    }

    // ------------------------------------------------------------ deployments

    pub async fn deployments_round_trip_exactly(backend: &dyn Backend) {
        let store = backend.open().await;
        store.app_create(&app("shop")).await.unwrap();
        store.registry_create(&registry("main")).await.unwrap();
        let image_verified = image_deployment("shop", "image-verified", "main");
        let mut image_plain = image_deployment("shop", "image-plain", "main");
        image_plain.verify = None;
        if let Some(image) = image_plain.image.as_mut() {
            image.private_network = false;
        }
        let mut command_verified = command_deployment("shop", "command-verified");
        command_verified.verify = Some(VerifySpec {
            url: "https://example.com/health".into(),
            expect_status: 200,
            expect_body: None,
        });
        let command_plain = command_deployment("shop", "command-plain");
        let all = [image_verified, image_plain, command_verified, command_plain];
        for deployment in &all {
            store.deployment_create(deployment).await.unwrap();
        }
        for deployment in &all {
            assert_eq!(
                &store
                    .deployment_fetch("shop", &deployment.name)
                    .await
                    .unwrap(),
                deployment
            );
        }
        let mut by_name = all.to_vec();
        by_name.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(store.deployment_list("shop").await.unwrap(), by_name);
    }

    pub async fn deployments_need_their_application_and_registry(backend: &dyn Backend) {
        let store = backend.open().await;
        expect_not_found(
            store
                .deployment_create(&command_deployment("shop", "v1"))
                .await,
            "application",
            "shop",
        );
        expect_not_found(store.deployment_list("shop").await, "application", "shop");
        store.app_create(&app("shop")).await.unwrap();
        expect_not_found(
            store
                .deployment_create(&image_deployment("shop", "v1", "ghost"))
                .await,
            "registry",
            "ghost",
        );
        assert_eq!(store.deployment_list("shop").await.unwrap(), vec![]);

        store
            .deployment_create(&command_deployment("shop", "v1"))
            .await
            .unwrap();
        expect_already_exists(
            store
                .deployment_create(&command_deployment("shop", "v1"))
                .await,
            "deployment",
            "shop/v1",
        );
        expect_not_found(
            store.deployment_fetch("shop", "v2").await,
            "deployment",
            "shop/v2",
        );
        expect_not_found(
            store.deployment_fetch("nope", "v1").await,
            "application",
            "nope",
        );
        expect_not_found(
            store.deployment_delete("shop", "v2").await,
            "deployment",
            "shop/v2",
        );
        store.deployment_delete("shop", "v1").await.unwrap();
        expect_not_found(
            store.deployment_fetch("shop", "v1").await,
            "deployment",
            "shop/v1",
        );
    }

    pub async fn a_deployment_in_use_is_not_deleted(backend: &dyn Backend) {
        let store = backend.open().await;
        store.app_create(&app("shop")).await.unwrap();
        for name in ["v1", "v2"] {
            store
                .deployment_create(&command_deployment("shop", name))
                .await
                .unwrap();
        }
        let mut prod = group("shop", "prod");
        prod.current_deployment = Some("v2".into());
        prod.previous_deployment = Some("v1".into());
        let mut staging = group("shop", "staging");
        staging.current_deployment = Some("v1".into());
        store.group_create(&prod).await.unwrap();
        store.group_create(&staging).await.unwrap();

        expect_in_use(
            store.deployment_delete("shop", "v1").await,
            "deployment",
            "shop/v1",
            "groups prod, staging",
        );
        expect_in_use(
            store.deployment_delete("shop", "v2").await,
            "deployment",
            "shop/v2",
            "group prod",
        );
        assert_eq!(store.deployment_list("shop").await.unwrap().len(), 2);
        assert_eq!(store.group_fetch("shop", "prod").await.unwrap(), prod);
        assert_eq!(store.group_fetch("shop", "staging").await.unwrap(), staging);
    }

    // ------------------------------------------------------------ releases

    pub async fn releases_round_trip_with_their_tasks(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, b, c] = shop(&*store).await;
        // A finished release with every field set, and a rollback of it.
        let mut done = release(1, "shop", "prod", "v2");
        done.state = ReleaseState::Failed;
        done.pause = PauseMode::Each;
        done.batch_count = 3;
        done.kind = "catch-up".into();
        done.continued_through = 2;
        done.started_at = Some(at(110));
        done.finished_at = Some(at(120));
        done.message = Some("2 instance(s) failed, more than the 1 tolerated".into());
        let mut done_task = task(&done, &a, 2);
        done_task.state = TaskState::Failed;
        done_task.dispatched_at = Some(at(111));
        done_task.started_at = Some(at(112));
        done_task.finished_at = Some(at(113));
        done_task.deadline = Some(at(999));
        done_task.image_digest = Some("sha256:0123".into());
        done_task.message = Some("step start failed with exit code 3".into());
        store
            .release_create(&done, &[done_task.clone()])
            .await
            .unwrap();

        let mut rollback = release(2, "shop", "prod", "v1");
        rollback.pause = PauseMode::Auto;
        rollback.rollback_on_failure = false;
        rollback.kind = "rollback".into();
        rollback.rollback_of = Some(done.id.clone());
        let tasks = create(&*store, &rollback, &[(&c, 0), (&b, 1), (&a, 0)]).await;

        assert_eq!(store.release_fetch(&done.id).await.unwrap(), done);
        assert_eq!(store.release_fetch(&rollback.id).await.unwrap(), rollback);
        assert_eq!(store.task_list(&done.id).await.unwrap(), vec![done_task]);
        // By batch, then instance name.
        assert_eq!(
            store.task_list(&rollback.id).await.unwrap(),
            vec![tasks[2].clone(), tasks[0].clone(), tasks[1].clone()]
        );
        assert_eq!(
            store.task_fetch(&rollback.id, &b.id).await.unwrap(),
            tasks[1]
        );

        let unknown = release_id(99);
        expect_not_found(store.release_fetch(&unknown).await, "release", &unknown);
        expect_not_found(store.task_list(&unknown).await, "release", &unknown);
        expect_not_found(
            store.task_fetch(&unknown, &a.id).await,
            "task",
            &task_name(&unknown, &a.id),
        );
        let stranger = instance_id(9);
        expect_not_found(
            store.task_fetch(&rollback.id, &stranger).await,
            "task",
            &task_name(&rollback.id, &stranger),
        );
    }

    pub async fn a_group_has_one_active_release_at_a_time(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, b, _] = shop(&*store).await;
        let first = release(1, "shop", "prod", "v1");
        create(&*store, &first, &[(&a, 0)]).await;
        let second = release(2, "shop", "prod", "v2");
        let second_tasks = [task(&second, &b, 0)];

        // Refused while the first is pending, running or paused, naming it; and
        // a refused create leaves nothing behind.
        for state in [
            ReleaseState::Pending,
            ReleaseState::Running,
            ReleaseState::Paused,
        ] {
            if state != ReleaseState::Pending {
                let from = [
                    ReleaseState::Pending,
                    ReleaseState::Running,
                    ReleaseState::Paused,
                ];
                assert!(store
                    .release_transition(&first.id, &from, state, None, at(150))
                    .await
                    .unwrap());
            }
            expect_active_release(
                store.release_create(&second, &second_tasks).await,
                "shop/prod",
                &first.id,
            );
            expect_not_found(store.release_fetch(&second.id).await, "release", &second.id);
            expect_not_found(store.task_list(&second.id).await, "release", &second.id);
        }
        let listed: Vec<String> = store
            .release_list(None, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(listed, vec![first.id.clone()]);

        // Another group of the same application is independent.
        let elsewhere = release(3, "shop", "staging", "v2");
        create(&*store, &elsewhere, &[(&a, 0)]).await;

        // Once the first has ended, the group takes a new release.
        shift(
            &*store,
            &first.id,
            ReleaseState::Paused,
            ReleaseState::Cancelled,
            at(160),
        )
        .await;
        store.release_create(&second, &second_tasks).await.unwrap();
        assert_eq!(
            store.task_list(&second.id).await.unwrap(),
            second_tasks.to_vec()
        );
        let active: Vec<String> = store
            .release_list_active()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(active, vec![second.id.clone(), elsewhere.id.clone()]);
    }

    pub async fn concurrent_creates_leave_one_active_release(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, _, _] = shop(&*store).await;
        let attempts: Vec<_> = (1..=12)
            .map(|n| {
                let store = Arc::clone(&store);
                let release = release(n, "shop", "prod", "v1");
                let tasks = vec![task(&release, &a, 0)];
                tokio::spawn(async move {
                    let result = store.release_create(&release, &tasks).await;
                    (release.id, result)
                })
            })
            .collect();
        let mut created = Vec::new();
        let mut refused = Vec::new();
        for attempt in attempts {
            match attempt.await.expect("the task ran to the end") {
                (id, Ok(())) => created.push(id),
                (_, Err(StoreError::ActiveRelease { group, release })) => {
                    assert_eq!(group, "shop/prod");
                    refused.push(release);
                }
                (id, Err(other)) => panic!("release {id}: unexpected {other:?}"),
            }
        }
        assert_eq!(created.len(), 1, "exactly one create wins");
        assert_eq!(refused.len(), 11);
        assert!(refused.iter().all(|r| *r == created[0]));
        let active = store.release_list_active().await.unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].id, created[0]);
    }

    pub async fn release_create_checks_what_it_names(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, b, _] = shop(&*store).await;
        let no_app = release(1, "nope", "prod", "v1");
        expect_not_found(
            store.release_create(&no_app, &[task(&no_app, &a, 0)]).await,
            "application",
            "nope",
        );
        let no_group = release(1, "shop", "qa", "v1");
        expect_not_found(
            store
                .release_create(&no_group, &[task(&no_group, &a, 0)])
                .await,
            "group",
            "shop/qa",
        );
        let no_deployment = release(1, "shop", "prod", "v9");
        expect_not_found(
            store
                .release_create(&no_deployment, &[task(&no_deployment, &a, 0)])
                .await,
            "deployment",
            "shop/v9",
        );
        let mut no_original = release(1, "shop", "prod", "v1");
        no_original.rollback_of = Some(release_id(77));
        expect_not_found(
            store
                .release_create(&no_original, &[task(&no_original, &a, 0)])
                .await,
            "release",
            &release_id(77),
        );

        // A task listed twice: nothing is kept, not even the release.
        let twice = release(1, "shop", "prod", "v1");
        expect_already_exists(
            store
                .release_create(
                    &twice,
                    &[
                        task(&twice, &a, 0),
                        task(&twice, &b, 0),
                        task(&twice, &a, 1),
                    ],
                )
                .await,
            "task",
            &task_name(&twice.id, &a.id),
        );
        expect_not_found(store.release_fetch(&twice.id).await, "release", &twice.id);

        // A task of another release.
        let other = release(2, "shop", "prod", "v1");
        assert!(matches!(
            store
                .release_create(&twice, &[task(&twice, &a, 0), task(&other, &b, 0)])
                .await,
            Err(StoreError::Conflict(_))
        ));
        expect_not_found(store.release_fetch(&twice.id).await, "release", &twice.id);
        assert_eq!(store.release_list(None, None, 10).await.unwrap(), vec![]);

        // An id already taken (by a finished release, so the group is free).
        let mut finished = release(3, "shop", "prod", "v1");
        finished.state = ReleaseState::Succeeded;
        create(&*store, &finished, &[(&a, 0)]).await;
        let mut again = release(3, "shop", "prod", "v2");
        again.created_at = at(500);
        expect_already_exists(
            store.release_create(&again, &[task(&again, &b, 0)]).await,
            "release",
            &finished.id,
        );
        assert_eq!(store.release_fetch(&finished.id).await.unwrap(), finished);
        assert_eq!(
            store.task_list(&finished.id).await.unwrap(),
            vec![task(&finished, &a, 0)]
        );
    }

    pub async fn releases_are_listed_newest_first_and_active_ones_oldest_first(
        backend: &dyn Backend,
    ) {
        let store = backend.open().await;
        let [a, _, _] = shop(&*store).await;
        store.app_create(&app("blog")).await.unwrap();
        store.group_create(&group("blog", "prod")).await.unwrap();
        store
            .deployment_create(&command_deployment("blog", "v1"))
            .await
            .unwrap();

        let with = |n: u64, app: &str, group: &str, state: ReleaseState, secs: i64| {
            let mut r = release(n, app, group, "v1");
            r.state = state;
            r.created_at = at(secs);
            r
        };
        let r1 = with(1, "shop", "prod", ReleaseState::Cancelled, 101);
        let r2 = with(2, "shop", "prod", ReleaseState::Succeeded, 102);
        let r3 = with(3, "shop", "prod", ReleaseState::Pending, 103);
        // Created in the same millisecond as r4: the id breaks the tie.
        let r6 = with(6, "shop", "staging", ReleaseState::Failed, 104);
        let r4 = with(4, "shop", "staging", ReleaseState::Running, 104);
        let r5 = with(5, "blog", "prod", ReleaseState::Paused, 100);
        for r in [&r1, &r2, &r3, &r6, &r4, &r5] {
            store.release_create(r, &[task(r, &a, 0)]).await.unwrap();
        }

        let list = |app: Option<&'static str>, group: Option<&'static str>, limit: u32| {
            let store = Arc::clone(&store);
            async move {
                store
                    .release_list(app, group, limit)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| r.id)
                    .collect::<Vec<_>>()
            }
        };
        let id_list = |rs: &[&ReleaseRecord]| rs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            list(None, None, 100).await,
            id_list(&[&r4, &r6, &r3, &r2, &r1, &r5])
        );
        assert_eq!(list(None, None, 2).await, id_list(&[&r4, &r6]));
        assert_eq!(list(None, None, 0).await, Vec::<String>::new());
        assert_eq!(
            list(Some("shop"), None, 100).await,
            id_list(&[&r4, &r6, &r3, &r2, &r1])
        );
        assert_eq!(
            list(Some("shop"), Some("prod"), 100).await,
            id_list(&[&r3, &r2, &r1])
        );
        assert_eq!(list(Some("blog"), Some("prod"), 1).await, id_list(&[&r5]));
        // A group without an application: that group name in every application.
        assert_eq!(
            list(None, Some("prod"), 100).await,
            id_list(&[&r3, &r2, &r1, &r5])
        );
        expect_not_found(
            store.release_list(Some("nope"), None, 10).await,
            "application",
            "nope",
        );
        expect_not_found(
            store.release_list(Some("shop"), Some("qa"), 10).await,
            "group",
            "shop/qa",
        );

        assert_eq!(
            store.release_list_active().await.unwrap(),
            vec![r5.clone(), r3.clone(), r4.clone()]
        );
    }

    pub async fn release_transitions_are_compare_and_set(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, _, _] = shop(&*store).await;
        let r = release(1, "shop", "prod", "v1");
        create(&*store, &r, &[(&a, 0)]).await;
        let fetch = || {
            let store = Arc::clone(&store);
            let id = r.id.clone();
            async move { store.release_fetch(&id).await.unwrap() }
        };

        // Not in `from`: nothing moves.
        assert!(!store
            .release_transition(
                &r.id,
                &[ReleaseState::Running],
                ReleaseState::Paused,
                Some("x"),
                at(200)
            )
            .await
            .unwrap());
        assert!(!store
            .release_transition(&r.id, &[], ReleaseState::Running, None, at(200))
            .await
            .unwrap());
        assert_eq!(fetch().await, r);

        assert!(store
            .release_transition(
                &r.id,
                &[ReleaseState::Pending],
                ReleaseState::Running,
                None,
                at(200)
            )
            .await
            .unwrap());
        let running = fetch().await;
        assert_eq!(running.state, ReleaseState::Running);
        assert_eq!(running.started_at, Some(at(200)));
        assert_eq!(
            (running.finished_at, running.message.as_deref()),
            (None, None)
        );
        // Repeating the move does nothing.
        assert!(!store
            .release_transition(
                &r.id,
                &[ReleaseState::Pending],
                ReleaseState::Running,
                None,
                at(201)
            )
            .await
            .unwrap());
        assert_eq!(fetch().await, running);

        assert!(store
            .release_transition(
                &r.id,
                &[ReleaseState::Running],
                ReleaseState::Paused,
                Some("waiting for continue"),
                at(210)
            )
            .await
            .unwrap());
        let paused = fetch().await;
        assert_eq!(paused.state, ReleaseState::Paused);
        assert_eq!(paused.message.as_deref(), Some("waiting for continue"));
        assert_eq!(paused.started_at, Some(at(200)));

        // Continue: paused -> running, started_at kept, continued_through set.
        assert!(store.release_continue(&r.id, 2).await.unwrap());
        let resumed = fetch().await;
        assert_eq!(resumed.state, ReleaseState::Running);
        assert_eq!(resumed.continued_through, 2);
        assert_eq!(resumed.started_at, Some(at(200)));
        assert_eq!(resumed.message.as_deref(), Some("waiting for continue"));
        assert!(!store.release_continue(&r.id, 3).await.unwrap());
        assert_eq!(fetch().await, resumed);
        // Entering Running again (from paused, by a transition) keeps started_at.
        shift(
            &*store,
            &r.id,
            ReleaseState::Running,
            ReleaseState::Paused,
            at(220),
        )
        .await;
        shift(
            &*store,
            &r.id,
            ReleaseState::Paused,
            ReleaseState::Running,
            at(230),
        )
        .await;
        assert_eq!(fetch().await.started_at, Some(at(200)));
        // continued_through never goes down.
        shift(
            &*store,
            &r.id,
            ReleaseState::Running,
            ReleaseState::Paused,
            at(240),
        )
        .await;
        assert!(store.release_continue(&r.id, 1).await.unwrap());
        assert_eq!(fetch().await.continued_through, 2);

        let active = [
            ReleaseState::Pending,
            ReleaseState::Running,
            ReleaseState::Paused,
        ];
        assert!(store
            .release_transition(
                &r.id,
                &active,
                ReleaseState::Cancelled,
                Some("cancelled by an operator"),
                at(300)
            )
            .await
            .unwrap());
        let cancelled = fetch().await;
        assert_eq!(cancelled.state, ReleaseState::Cancelled);
        assert_eq!(cancelled.finished_at, Some(at(300)));
        assert_eq!(cancelled.started_at, Some(at(200)));
        assert_eq!(
            cancelled.message.as_deref(),
            Some("cancelled by an operator")
        );
        assert!(!store
            .release_transition(&r.id, &active, ReleaseState::Failed, Some("late"), at(400))
            .await
            .unwrap());
        assert!(!store.release_continue(&r.id, 5).await.unwrap());
        assert_eq!(fetch().await, cancelled);

        // A release that fails before it runs has no start.
        let never = release(2, "shop", "staging", "v1");
        create(&*store, &never, &[(&a, 0)]).await;
        shift(
            &*store,
            &never.id,
            ReleaseState::Pending,
            ReleaseState::Failed,
            at(500),
        )
        .await;
        let failed = store.release_fetch(&never.id).await.unwrap();
        assert_eq!(
            (failed.started_at, failed.finished_at, failed.message),
            (None, Some(at(500)), None)
        );

        let unknown = release_id(99);
        expect_not_found(
            store
                .release_transition(&unknown, &active, ReleaseState::Running, None, at(0))
                .await,
            "release",
            &unknown,
        );
        expect_not_found(
            store.release_continue(&unknown, 1).await,
            "release",
            &unknown,
        );
    }

    // ------------------------------------------------------------ tasks

    pub async fn open_tasks_are_counted_per_batch(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, b, c] = shop(&*store).await;
        let r = release(1, "shop", "prod", "v1");
        create(&*store, &r, &[(&a, 0), (&c, 0), (&b, 1)]).await;
        assert_eq!(store.task_count_open_in_batch(&r.id, 0).await.unwrap(), 2);
        assert_eq!(store.task_count_open_in_batch(&r.id, 1).await.unwrap(), 1);
        assert_eq!(store.task_count_open_in_batch(&r.id, 7).await.unwrap(), 0);
        run_batch(&*store, &r.id, 0, &[&a, &c], at(200)).await;
        // Dispatched and running tasks are still open.
        assert_eq!(store.task_count_open_in_batch(&r.id, 0).await.unwrap(), 2);
        assert!(store
            .task_finish(&r.id, &a.id, TaskState::Succeeded, None, None, at(300))
            .await
            .unwrap());
        assert_eq!(store.task_count_open_in_batch(&r.id, 0).await.unwrap(), 1);
        assert!(store
            .task_finish(&r.id, &c.id, TaskState::Failed, None, Some("boom"), at(301))
            .await
            .unwrap());
        assert_eq!(store.task_count_open_in_batch(&r.id, 0).await.unwrap(), 0);
        assert_eq!(store.task_count_open_in_batch(&r.id, 1).await.unwrap(), 1);
        assert_eq!(
            store
                .task_count_open_in_batch("r-ffffffffffffffff", 0)
                .await
                .unwrap(),
            0
        );
    }

    pub async fn dispatch_moves_one_batch_and_only_while_running(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, b, c] = shop(&*store).await;
        let r = release(1, "shop", "prod", "v1");
        let tasks = create(&*store, &r, &[(&a, 0), (&c, 0), (&b, 1)]).await;

        // Pending: nothing is dispatched.
        assert_eq!(
            store
                .task_dispatch_batch(&r.id, 0, at(190), at(900))
                .await
                .unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(store.task_list(&r.id).await.unwrap().len(), 3);
        assert!(store
            .task_list(&r.id)
            .await
            .unwrap()
            .iter()
            .all(|t| t.state == TaskState::Pending));

        shift(
            &*store,
            &r.id,
            ReleaseState::Pending,
            ReleaseState::Running,
            at(199),
        )
        .await;
        assert_eq!(
            store
                .task_dispatch_batch(&r.id, 0, at(200), at(900))
                .await
                .unwrap(),
            vec![a.id.clone(), c.id.clone()]
        );
        let mut dispatched = tasks[0].clone();
        dispatched.state = TaskState::Dispatched;
        dispatched.dispatched_at = Some(at(200));
        dispatched.deadline = Some(at(900));
        assert_eq!(store.task_fetch(&r.id, &a.id).await.unwrap(), dispatched);
        assert_eq!(store.task_fetch(&r.id, &b.id).await.unwrap(), tasks[2]);
        // Dispatching again changes nothing.
        assert_eq!(
            store
                .task_dispatch_batch(&r.id, 0, at(250), at(950))
                .await
                .unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(store.task_fetch(&r.id, &a.id).await.unwrap(), dispatched);

        // Paused: nothing.
        shift(
            &*store,
            &r.id,
            ReleaseState::Running,
            ReleaseState::Paused,
            at(260),
        )
        .await;
        assert_eq!(
            store
                .task_dispatch_batch(&r.id, 1, at(270), at(970))
                .await
                .unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(store.task_fetch(&r.id, &b.id).await.unwrap(), tasks[2]);
        assert!(store.release_continue(&r.id, 1).await.unwrap());
        // A batch that does not exist dispatches nothing.
        assert_eq!(
            store
                .task_dispatch_batch(&r.id, 7, at(280), at(980))
                .await
                .unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            store
                .task_dispatch_batch(&r.id, 1, at(290), at(990))
                .await
                .unwrap(),
            vec![b.id.clone()]
        );

        // Cancelled: nothing.
        let other = release(2, "shop", "staging", "v1");
        create(&*store, &other, &[(&a, 0)]).await;
        shift(
            &*store,
            &other.id,
            ReleaseState::Pending,
            ReleaseState::Running,
            at(300),
        )
        .await;
        shift(
            &*store,
            &other.id,
            ReleaseState::Running,
            ReleaseState::Cancelled,
            at(301),
        )
        .await;
        assert_eq!(
            store
                .task_dispatch_batch(&other.id, 0, at(302), at(999))
                .await
                .unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            store.task_fetch(&other.id, &a.id).await.unwrap().state,
            TaskState::Pending
        );

        let unknown = release_id(99);
        expect_not_found(
            store.task_dispatch_batch(&unknown, 0, at(0), at(1)).await,
            "release",
            &unknown,
        );
    }

    pub async fn work_is_handed_out_oldest_first_and_claimed_with_its_fetch_step(
        backend: &dyn Backend,
    ) {
        let store = backend.open().await;
        let [a, b, c] = shop(&*store).await;
        let r1 = release(1, "shop", "prod", "v2");
        create(&*store, &r1, &[(&a, 0), (&c, 0), (&b, 1)]).await;
        let r2 = release(2, "shop", "staging", "v1");
        create(&*store, &r2, &[(&a, 0)]).await;
        let next = |instance: &InstanceRecord| {
            let store = Arc::clone(&store);
            let id = instance.id.clone();
            async move { store.task_next_dispatched(&id).await.expect("next") }
        };

        // A pending release has no work, and nothing to claim.
        assert_eq!(next(&a).await, None);
        assert!(!store.task_claim(&r1.id, &a.id, at(200)).await.unwrap());
        shift(
            &*store,
            &r1.id,
            ReleaseState::Pending,
            ReleaseState::Running,
            at(200),
        )
        .await;
        shift(
            &*store,
            &r2.id,
            ReleaseState::Pending,
            ReleaseState::Running,
            at(200),
        )
        .await;
        // Pending tasks are not work yet.
        assert_eq!(next(&a).await, None);
        assert!(!store.task_claim(&r1.id, &a.id, at(200)).await.unwrap());
        assert_eq!(fetched(&*store, &r1.id, &a).await, task(&r1, &a, 0));
        store
            .task_dispatch_batch(&r2.id, 0, at(201), at(901))
            .await
            .unwrap();
        store
            .task_dispatch_batch(&r1.id, 0, at(202), at(902))
            .await
            .unwrap();

        // The oldest dispatched task is handed out first; looking changes nothing.
        assert_eq!(next(&a).await, Some(r2.id.clone()));
        assert_eq!(next(&a).await, Some(r2.id.clone()));
        let mut dispatched = task(&r2, &a, 0);
        dispatched.state = TaskState::Dispatched;
        dispatched.dispatched_at = Some(at(201));
        dispatched.deadline = Some(at(901));
        assert_eq!(fetched(&*store, &r2.id, &a).await, dispatched);
        assert_eq!(next(&b).await, None, "b's task is in batch 1");

        // Claimed: running from then, with its fetch step; only once.
        assert!(store.task_claim(&r2.id, &a.id, at(210)).await.unwrap());
        let mut claimed = dispatched.clone();
        claimed.state = TaskState::Running;
        claimed.started_at = Some(at(210));
        assert_eq!(fetched(&*store, &r2.id, &a).await, claimed);
        let fetch = StepRecord {
            release_id: r2.id.clone(),
            instance_id: a.id.clone(),
            step: StepName::Fetch,
            state: StepState::Succeeded,
            started_at: at(210),
            finished_at: Some(at(210)),
            exit_code: None,
            output: String::new(),
            dropped_bytes: 0,
            message: None,
        };
        assert_eq!(
            store.step_list(&r2.id, Some(&a.id)).await.unwrap(),
            vec![fetch.clone()]
        );
        assert!(!store.task_claim(&r2.id, &a.id, at(211)).await.unwrap());
        assert_eq!(fetched(&*store, &r2.id, &a).await, claimed);
        assert_eq!(
            store.step_list(&r2.id, Some(&a.id)).await.unwrap(),
            vec![fetch]
        );

        // Then the next one.
        assert_eq!(next(&a).await, Some(r1.id.clone()));
        assert!(store.task_claim(&r1.id, &a.id, at(212)).await.unwrap());
        assert_eq!(next(&a).await, None);
        let running: Vec<String> = store
            .task_list_running_for_instance(&a.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.release_id)
            .collect();
        assert_eq!(running, vec![r2.id.clone(), r1.id.clone()]);
        assert_eq!(
            store.task_list_running_for_instance(&b.id).await.unwrap(),
            vec![]
        );

        // A paused release's dispatched task waits; it is handed out and claimed
        // once resumed.
        shift(
            &*store,
            &r1.id,
            ReleaseState::Running,
            ReleaseState::Paused,
            at(220),
        )
        .await;
        assert_eq!(next(&c).await, None);
        assert!(!store.task_claim(&r1.id, &c.id, at(221)).await.unwrap());
        assert_eq!(
            fetched(&*store, &r1.id, &c).await.state,
            TaskState::Dispatched
        );
        assert!(store.release_continue(&r1.id, 1).await.unwrap());
        assert_eq!(next(&c).await, Some(r1.id.clone()));
        assert!(store.task_claim(&r1.id, &c.id, at(222)).await.unwrap());
        assert_eq!(fetched(&*store, &r1.id, &c).await.started_at, Some(at(222)));

        // A cancelled release's dispatched task is never handed out or claimed.
        store
            .task_dispatch_batch(&r1.id, 1, at(230), at(930))
            .await
            .unwrap();
        assert_eq!(next(&b).await, Some(r1.id.clone()));
        shift(
            &*store,
            &r1.id,
            ReleaseState::Running,
            ReleaseState::Cancelled,
            at(231),
        )
        .await;
        assert_eq!(next(&b).await, None);
        assert!(!store.task_claim(&r1.id, &b.id, at(232)).await.unwrap());
        assert_eq!(
            fetched(&*store, &r1.id, &b).await.state,
            TaskState::Dispatched
        );
        assert_eq!(store.step_list(&r1.id, Some(&b.id)).await.unwrap(), vec![]);

        // An unknown instance simply has no work; claiming a task that does not
        // exist is an error naming it.
        assert_eq!(
            store.task_next_dispatched(&instance_id(99)).await.unwrap(),
            None
        );
        expect_not_found(
            store.task_claim(&r1.id, &instance_id(99), at(240)).await,
            "task",
            &format!("{}/{}", r1.id, instance_id(99)),
        );
    }

    pub async fn tasks_finish_once_and_record_the_membership_on_success(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, b, c] = shop(&*store).await;
        let r = release(1, "shop", "prod", "v2");
        create(&*store, &r, &[(&a, 0), (&b, 0), (&c, 0)]).await;
        run_batch(&*store, &r.id, 0, &[&a, &b, &c], at(200)).await;

        // Success with the digest recorded by the pull step.
        store
            .task_set_digest(&r.id, &a.id, "sha256:aaa")
            .await
            .unwrap();
        assert!(store
            .task_finish(&r.id, &a.id, TaskState::Succeeded, None, None, at(300))
            .await
            .unwrap());
        let done = store.task_fetch(&r.id, &a.id).await.unwrap();
        assert_eq!(done.state, TaskState::Succeeded);
        assert_eq!(done.finished_at, Some(at(300)));
        assert_eq!(done.image_digest.as_deref(), Some("sha256:aaa"));
        assert_eq!(done.message, None);
        // An ended task keeps its digest: it changes only by changing state.
        store
            .task_set_digest(&r.id, &a.id, "sha256:late")
            .await
            .unwrap();
        assert_eq!(store.task_fetch(&r.id, &a.id).await.unwrap(), done);
        assert_eq!(
            membership(&*store, &a, "shop", "prod").await,
            Some((Some("v2".into()), Some("sha256:aaa".into())))
        );
        // Once only: a late report changes nothing.
        assert!(!store
            .task_finish(
                &r.id,
                &a.id,
                TaskState::Failed,
                Some("sha256:zzz"),
                Some("late"),
                at(301)
            )
            .await
            .unwrap());
        assert_eq!(store.task_fetch(&r.id, &a.id).await.unwrap(), done);

        // Failure records nothing on the membership.
        assert!(store
            .task_finish(
                &r.id,
                &b.id,
                TaskState::Failed,
                Some("sha256:bbb"),
                Some("step start failed"),
                at(302)
            )
            .await
            .unwrap());
        let failed = store.task_fetch(&r.id, &b.id).await.unwrap();
        assert_eq!(
            (
                failed.state,
                failed.image_digest.as_deref(),
                failed.message.as_deref()
            ),
            (
                TaskState::Failed,
                Some("sha256:bbb"),
                Some("step start failed")
            )
        );
        assert_eq!(
            membership(&*store, &b, "shop", "prod").await,
            Some((None, None))
        );

        // An instance that left the group is not added back.
        store
            .group_remove_instances("shop", "prod", &ids(&[1]))
            .await
            .unwrap();
        assert!(store
            .task_finish(
                &r.id,
                &c.id,
                TaskState::Succeeded,
                Some("sha256:ccc"),
                None,
                at(303)
            )
            .await
            .unwrap());
        assert_eq!(membership(&*store, &c, "shop", "prod").await, None);
        assert_eq!(
            store
                .task_fetch(&r.id, &c.id)
                .await
                .unwrap()
                .image_digest
                .as_deref(),
            Some("sha256:ccc")
        );
        // Only the group of the release is touched.
        store
            .group_add_instances("shop", "staging", &ids(&[2]))
            .await
            .unwrap();
        assert_eq!(
            membership(&*store, &a, "shop", "staging").await,
            Some((None, None))
        );

        // A command deployment records no digest, replacing an image's.
        let image = release(2, "shop", "staging", "v2");
        create(&*store, &image, &[(&a, 0)]).await;
        run_batch(&*store, &image.id, 0, &[&a], at(400)).await;
        assert!(store
            .task_finish(
                &image.id,
                &a.id,
                TaskState::Succeeded,
                Some("sha256:xyz"),
                None,
                at(401)
            )
            .await
            .unwrap());
        assert_eq!(
            membership(&*store, &a, "shop", "staging").await,
            Some((Some("v2".into()), Some("sha256:xyz".into())))
        );
        shift(
            &*store,
            &image.id,
            ReleaseState::Running,
            ReleaseState::Succeeded,
            at(402),
        )
        .await;
        let command = release(3, "shop", "staging", "v1");
        create(&*store, &command, &[(&a, 0)]).await;
        run_batch(&*store, &command.id, 0, &[&a], at(500)).await;
        assert!(store
            .task_finish(
                &command.id,
                &a.id,
                TaskState::Succeeded,
                None,
                None,
                at(501)
            )
            .await
            .unwrap());
        assert_eq!(
            membership(&*store, &a, "shop", "staging").await,
            Some((Some("v1".into()), None))
        );
        assert_eq!(
            membership(&*store, &a, "shop", "prod").await,
            Some((Some("v2".into()), Some("sha256:aaa".into())))
        );

        // A pending task may be finished too (a release that fails first).
        let pending = release(4, "shop", "prod", "v1");
        shift(
            &*store,
            &r.id,
            ReleaseState::Running,
            ReleaseState::Failed,
            at(600),
        )
        .await;
        create(&*store, &pending, &[(&b, 0)]).await;
        assert!(store
            .task_finish(
                &pending.id,
                &b.id,
                TaskState::Cancelled,
                None,
                Some("never ran"),
                at(601)
            )
            .await
            .unwrap());

        let unknown = instance_id(99);
        expect_not_found(
            store
                .task_finish(&r.id, &unknown, TaskState::Failed, None, None, at(700))
                .await,
            "task",
            &task_name(&r.id, &unknown),
        );
        expect_not_found(
            store.task_set_digest(&r.id, &unknown, "sha256:1").await,
            "task",
            &task_name(&r.id, &unknown),
        );
        assert!(matches!(
            store
                .task_finish(&command.id, &a.id, TaskState::Running, None, None, at(700))
                .await,
            Err(StoreError::Conflict(_))
        ));
    }

    pub async fn cancelling_ends_only_tasks_that_have_not_started(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, b, c] = shop(&*store).await;
        let r = release(1, "shop", "prod", "v1");
        create(&*store, &r, &[(&a, 0), (&b, 0), (&c, 1)]).await;
        run_batch(&*store, &r.id, 0, &[&a], at(200)).await;

        assert_eq!(
            store
                .task_cancel_unstarted(&r.id, "the release was cancelled", at(300))
                .await
                .unwrap(),
            2
        );
        let tasks = store.task_list(&r.id).await.unwrap();
        type Outcome<'a> = (TaskState, Option<DateTime<Utc>>, Option<&'a str>);
        let states: Vec<Outcome> = tasks
            .iter()
            .map(|t| (t.state, t.finished_at, t.message.as_deref()))
            .collect();
        let cancelled = (
            TaskState::Cancelled,
            Some(at(300)),
            Some("the release was cancelled"),
        );
        assert_eq!(
            states,
            vec![(TaskState::Running, None, None), cancelled, cancelled]
        );
        assert_eq!(
            store
                .task_cancel_unstarted(&r.id, "again", at(301))
                .await
                .unwrap(),
            0
        );
        // A cancelled task is over.
        assert!(!store
            .task_finish(&r.id, &b.id, TaskState::Failed, None, None, at(302))
            .await
            .unwrap());
        let unknown = release_id(99);
        expect_not_found(
            store.task_cancel_unstarted(&unknown, "x", at(0)).await,
            "release",
            &unknown,
        );
    }

    // ------------------------------------------------------------ steps

    pub async fn a_task_fails_with_its_running_step_in_one_write(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, b, c] = shop(&*store).await;
        let r = release(1, "shop", "prod", "v2");
        create(&*store, &r, &[(&a, 0), (&b, 0), (&c, 0)]).await;
        run_batch(&*store, &r.id, 0, &[&a, &b], at(200)).await;
        let steps_of = |instance: &InstanceRecord| {
            let store = Arc::clone(&store);
            let (release, instance) = (r.id.clone(), instance.id.clone());
            async move {
                store
                    .step_list_without_output(&release, Some(&instance))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|s| (s.step, s.state, s.finished_at, s.message))
                    .collect::<Vec<_>>()
            }
        };

        // a was running its prepare step when it was given up on.
        store
            .step_begin(&r.id, &a.id, StepName::Prepare, at(300))
            .await
            .unwrap();
        assert!(store
            .task_fail(&r.id, &a.id, "the instance went offline", at(310))
            .await
            .unwrap());
        let failed = store.task_fetch(&r.id, &a.id).await.unwrap();
        assert_eq!(
            (failed.state, failed.finished_at, failed.message.as_deref()),
            (
                TaskState::Failed,
                Some(at(310)),
                Some("the instance went offline")
            )
        );
        let steps = steps_of(&a).await;
        assert!(
            steps.contains(&(
                StepName::Prepare,
                StepState::Failed,
                Some(at(310)),
                Some("the instance went offline".to_owned())
            )),
            "{steps:?}"
        );
        // The steps it had not begun stay as they were; fetch stays succeeded.
        assert!(
            steps
                .iter()
                .all(|(step, state, ..)| *step == StepName::Prepare || *state != StepState::Failed),
            "{steps:?}"
        );
        // Once only: a second call writes nothing.
        let steps_before = steps_of(&a).await;
        assert!(!store
            .task_fail(&r.id, &a.id, "later", at(320))
            .await
            .unwrap());
        assert_eq!(store.task_fetch(&r.id, &a.id).await.unwrap(), failed);
        assert_eq!(steps_of(&a).await, steps_before);

        // b, between steps, fails with no step closed.
        let b_steps = steps_of(&b).await;
        assert!(store
            .task_fail(&r.id, &b.id, "the agent restarted between steps", at(330))
            .await
            .unwrap());
        assert_eq!(steps_of(&b).await, b_steps);

        // A task that ended is left alone, and so is its step.
        store.task_claim(&r.id, &c.id, at(340)).await.unwrap();
        store
            .step_begin(&r.id, &c.id, StepName::Prepare, at(341))
            .await
            .unwrap();
        assert!(store
            .task_finish(&r.id, &c.id, TaskState::Succeeded, None, None, at(342))
            .await
            .unwrap());
        let c_steps = steps_of(&c).await;
        assert!(!store
            .task_fail(&r.id, &c.id, "too late", at(350))
            .await
            .unwrap());
        assert_eq!(
            store.task_fetch(&r.id, &c.id).await.unwrap().state,
            TaskState::Succeeded
        );
        assert_eq!(steps_of(&c).await, c_steps);
        assert_eq!(
            batch_summaries(&*store, &r.id).await[0].failed,
            2,
            "the batch counts follow"
        );

        expect_not_found(
            store
                .task_fail(&r.id, &instance_id(99), "gone", at(360))
                .await,
            "task",
            &format!("{}/{}", r.id, instance_id(99)),
        );
    }

    pub async fn steps_begin_and_finish_once(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, b, c] = shop(&*store).await;
        let r = release(1, "shop", "prod", "v2");
        create(&*store, &r, &[(&b, 0), (&a, 0), (&c, 1)]).await;
        run_batch(&*store, &r.id, 0, &[&a, &b], at(200)).await;
        let step = |instance: &InstanceRecord, name: StepName| {
            let store = Arc::clone(&store);
            let (release, instance) = (r.id.clone(), instance.id.clone());
            async move {
                store
                    .step_list(&release, Some(&instance))
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|s| s.step == name)
            }
        };

        store
            .step_begin(&r.id, &a.id, StepName::Prepare, at(300))
            .await
            .unwrap();
        store
            .step_append_output(
                &r.id,
                &a.id,
                StepName::Prepare,
                "mkdir -p /srv\n",
                0,
                1024,
                None,
            )
            .await
            .unwrap();
        // The agent retried its report: the step starts again, its output stays.
        store
            .step_begin(&r.id, &a.id, StepName::Prepare, at(305))
            .await
            .unwrap();
        let running = step(&a, StepName::Prepare).await.unwrap();
        assert_eq!(
            running,
            StepRecord {
                release_id: r.id.clone(),
                instance_id: a.id.clone(),
                step: StepName::Prepare,
                state: StepState::Running,
                started_at: at(305),
                finished_at: None,
                exit_code: None,
                output: "mkdir -p /srv\n".into(),
                dropped_bytes: 0,
                message: None,
            }
        );

        assert!(store
            .step_finish(
                &r.id,
                &a.id,
                StepName::Prepare,
                StepState::Succeeded,
                Some(0),
                None,
                at(310)
            )
            .await
            .unwrap());
        let finished = step(&a, StepName::Prepare).await.unwrap();
        assert_eq!(
            (finished.state, finished.finished_at, finished.exit_code),
            (StepState::Succeeded, Some(at(310)), Some(0))
        );
        // A late or repeated end changes nothing.
        assert!(!store
            .step_finish(
                &r.id,
                &a.id,
                StepName::Prepare,
                StepState::Failed,
                Some(1),
                Some("late"),
                at(320)
            )
            .await
            .unwrap());
        assert_eq!(step(&a, StepName::Prepare).await.unwrap(), finished);
        // A finished step never runs again, nor takes output.
        expect_conflict(
            store
                .step_begin(&r.id, &a.id, StepName::Prepare, at(330))
                .await,
            "step prepare already finished",
        );
        expect_conflict(
            store
                .step_begin(&r.id, &a.id, StepName::Fetch, at(330))
                .await,
            "step fetch already finished",
        );
        store
            .step_append_output(&r.id, &a.id, StepName::Prepare, "more\n", 9, 1024, None)
            .await
            .unwrap();
        assert_eq!(step(&a, StepName::Prepare).await.unwrap(), finished);
        // Output for a step never begun is ignored; ending it is NotFound.
        store
            .step_append_output(&r.id, &a.id, StepName::Stop, "stray\n", 0, 1024, None)
            .await
            .unwrap();
        assert_eq!(step(&a, StepName::Stop).await, None);
        expect_not_found(
            store
                .step_finish(
                    &r.id,
                    &a.id,
                    StepName::Stop,
                    StepState::Failed,
                    None,
                    None,
                    at(340),
                )
                .await,
            "step",
            &format!("{}/{}/stop", r.id, a.id),
        );
        // Steps belong to a task of the release.
        let unknown = instance_id(99);
        expect_not_found(
            store
                .step_begin(&r.id, &unknown, StepName::Prepare, at(350))
                .await,
            "task",
            &task_name(&r.id, &unknown),
        );

        // A failure with a signal's exit code and a reason.
        store
            .step_begin(&r.id, &b.id, StepName::Stop, at(360))
            .await
            .unwrap();
        store
            .step_begin(&r.id, &b.id, StepName::Prepare, at(361))
            .await
            .unwrap();
        assert!(store
            .step_finish(
                &r.id,
                &b.id,
                StepName::Stop,
                StepState::Failed,
                Some(-9),
                Some("killed after its timeout"),
                at(370)
            )
            .await
            .unwrap());
        let killed = step(&b, StepName::Stop).await.unwrap();
        assert_eq!(
            (killed.state, killed.exit_code, killed.message.as_deref()),
            (
                StepState::Failed,
                Some(-9),
                Some("killed after its timeout")
            )
        );
        store
            .step_begin(&r.id, &a.id, StepName::Pull, at(380))
            .await
            .unwrap();

        // Listed by instance name, then in run order.
        let listed: Vec<(String, StepName, StepState)> = store
            .step_list(&r.id, None)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.instance_id, s.step, s.state))
            .collect();
        assert_eq!(
            listed,
            vec![
                (a.id.clone(), StepName::Fetch, StepState::Succeeded),
                (a.id.clone(), StepName::Prepare, StepState::Succeeded),
                (a.id.clone(), StepName::Pull, StepState::Running),
                (b.id.clone(), StepName::Fetch, StepState::Succeeded),
                (b.id.clone(), StepName::Prepare, StepState::Running),
                (b.id.clone(), StepName::Stop, StepState::Failed),
            ]
        );

        // Once the task has ended (say its deadline passed), no step begins.
        assert!(store
            .task_finish(
                &r.id,
                &b.id,
                TaskState::Failed,
                None,
                Some("deadline"),
                at(390)
            )
            .await
            .unwrap());
        expect_conflict(
            store
                .step_begin(&r.id, &b.id, StepName::Start, at(391))
                .await,
            "the task is failed; step start cannot begin",
        );
        let of_b: Vec<StepName> = store
            .step_list(&r.id, Some(&b.id))
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.step)
            .collect();
        assert_eq!(
            of_b,
            vec![StepName::Fetch, StepName::Prepare, StepName::Stop]
        );
        assert_eq!(store.step_list(&r.id, Some(&c.id)).await.unwrap(), vec![]);
        let unknown_release = release_id(99);
        expect_not_found(
            store.step_list(&unknown_release, None).await,
            "release",
            &unknown_release,
        );
    }

    pub async fn output_reported_again_at_the_same_offset_is_stored_once(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, _, _] = shop(&*store).await;
        let r = release(1, "shop", "prod", "v1");
        create(&*store, &r, &[(&a, 0)]).await;
        run_batch(&*store, &r.id, 0, &[&a], at(200)).await;
        store
            .step_begin(&r.id, &a.id, StepName::Start, at(300))
            .await
            .unwrap();
        const KEEP: usize = 16;
        let append = |chunk: &'static str, dropped: u64, offset: Option<u64>| {
            let store = Arc::clone(&store);
            let (release, instance) = (r.id.clone(), a.id.clone());
            async move {
                store
                    .step_append_output(
                        &release,
                        &instance,
                        StepName::Start,
                        chunk,
                        dropped,
                        KEEP,
                        offset,
                    )
                    .await
                    .unwrap();
                let step = store
                    .step_list(&release, Some(&instance))
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|s| s.step == StepName::Start)
                    .unwrap();
                (step.output, step.dropped_bytes)
            }
        };

        assert_eq!(append("one\n", 0, Some(0)).await, ("one\n".into(), 0));
        // The agent lost the answer and sent it again: stored once.
        assert_eq!(append("one\n", 0, Some(0)).await, ("one\n".into(), 0));
        // The next report starts where the first ended, after 3 bytes the agent
        // dropped.
        assert_eq!(append("two\n", 3, Some(4)).await, ("one\ntwo\n".into(), 3));
        assert_eq!(append("two\n", 3, Some(4)).await, ("one\ntwo\n".into(), 3));
        // Past what the bound keeps, the offsets still line up: 8 + 3 recorded,
        // then 12 bytes, of which the first 4 are cut.
        assert_eq!(
            append("three three\n", 0, Some(11)).await,
            ("two\nthree three\n".into(), 7)
        );
        assert_eq!(
            append("three three\n", 0, Some(11)).await,
            ("two\nthree three\n".into(), 7)
        );
        // A report after some that never arrived (23 recorded, this one at 30):
        // the 7 bytes missed count as dropped, so what is kept and what was
        // dropped still add up to where the agent is (35).
        let (output, dropped) = append("four\n", 0, Some(30)).await;
        assert!(output.ends_with("three\nfour\n"), "{output:?}");
        assert_eq!(output.len() as u64 + dropped, 35);
        assert_eq!(append("four\n", 0, Some(30)).await, (output, dropped));
        // Agents that send no offset (protocols 1 and 2) are taken as they come.
        let (output, _) = append("five\n", 0, None).await;
        assert!(output.ends_with("four\nfive\n"), "{output:?}");
        let (output, _) = append("five\n", 0, None).await;
        assert!(output.ends_with("four\nfive\nfive\n"), "{output:?}");
    }

    pub async fn step_output_keeps_the_last_bytes_and_counts_what_it_drops(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, _, _] = shop(&*store).await;
        let r = release(1, "shop", "prod", "v1");
        create(&*store, &r, &[(&a, 0)]).await;
        run_batch(&*store, &r.id, 0, &[&a], at(200)).await;
        store
            .step_begin(&r.id, &a.id, StepName::Start, at(300))
            .await
            .unwrap();
        let mut produced = String::new();
        let mut agent_dropped = 0u64;
        const KEEP: usize = 16;

        // Each append: the chunk, what the agent dropped, and the output and
        // dropped count expected after it.
        let appends: [(&str, u64, &str, u64); 6] = [
            ("héllo\n", 0, "héllo\n", 0),
            ("wörld\n", 0, "héllo\nwörld\n", 0),
            // 22 bytes: the cut (6) falls where a line starts, so only
            // "héllo\n" (7) goes.
            ("🚢🚢", 5, "wörld\n🚢🚢", 5 + 7),
            // 35 bytes, no line start near the cut: exactly the last 16.
            ("üüüüüüüüüü", 0, "üüüüüüüü", 12 + 19),
            // 19 bytes: the cut (3) is inside a "ü", so it moves to 4.
            ("€", 0, "üüüüüü€", 31 + 4),
            // One chunk longer than the bound.
            (&"a".repeat(40), 2, &"a".repeat(16), 35 + 2 + 39),
        ];
        for (chunk, dropped, output, dropped_total) in appends {
            store
                .step_append_output(&r.id, &a.id, StepName::Start, chunk, dropped, KEEP, None)
                .await
                .unwrap();
            produced.push_str(chunk);
            agent_dropped += dropped;
            let step = store
                .step_list(&r.id, Some(&a.id))
                .await
                .unwrap()
                .into_iter()
                .find(|s| s.step == StepName::Start)
                .unwrap();
            assert_eq!(step.output, output, "after appending {chunk:?}");
            assert_eq!(
                step.dropped_bytes, dropped_total,
                "after appending {chunk:?}"
            );
            assert!(step.output.len() <= KEEP);
            assert!(produced.ends_with(&step.output));
            assert_eq!(
                step.output.len() as u64 + step.dropped_bytes,
                produced.len() as u64 + agent_dropped
            );
        }

        // At scale: many lines, a bound of 64 KiB.
        store
            .step_begin(&r.id, &a.id, StepName::Verify, at(400))
            .await
            .unwrap();
        let mut produced = String::new();
        for n in 0..300 {
            let chunk: String = (0..20)
                .map(|i| format!("line {n}-{i}: résumé ✓ {}\n", "x".repeat(i * 3)))
                .collect();
            store
                .step_append_output(&r.id, &a.id, StepName::Verify, &chunk, 0, 64 * 1024, None)
                .await
                .unwrap();
            produced.push_str(&chunk);
        }
        let verify = store
            .step_list(&r.id, Some(&a.id))
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.step == StepName::Verify)
            .unwrap();
        assert!(produced.len() > 64 * 1024);
        assert!(verify.output.len() <= 64 * 1024);
        // Less only by a partial character and the rest of a cut line.
        assert!(verify.output.len() >= 64 * 1024 - 3 - 4096);
        assert!(verify.output.starts_with("line "));
        assert!(produced.ends_with(&verify.output));
        assert_eq!(
            verify.output.len() as u64 + verify.dropped_bytes,
            produced.len() as u64
        );

        // A finished step takes no more output.
        assert!(store
            .step_finish(
                &r.id,
                &a.id,
                StepName::Start,
                StepState::Succeeded,
                Some(0),
                None,
                at(500)
            )
            .await
            .unwrap());
        store
            .step_append_output(
                &r.id,
                &a.id,
                StepName::Start,
                "after the end\n",
                100,
                KEEP,
                None,
            )
            .await
            .unwrap();
        let start = store
            .step_list(&r.id, Some(&a.id))
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.step == StepName::Start)
            .unwrap();
        assert_eq!(
            (start.output.as_str(), start.dropped_bytes),
            ("a".repeat(16).as_str(), 35 + 2 + 39)
        );
    }

    // ------------------------------------------------------------ groups and releases

    pub async fn a_group_records_its_current_and_previous_deployment(backend: &dyn Backend) {
        let store = backend.open().await;
        shop(&*store).await;
        let deployments = || {
            let store = Arc::clone(&store);
            async move {
                let g = store.group_fetch("shop", "prod").await.unwrap();
                (g.current_deployment, g.previous_deployment)
            }
        };
        let some = |name: &str| Some(name.to_owned());
        store
            .group_set_current_deployment("shop", "prod", "v1")
            .await
            .unwrap();
        assert_eq!(deployments().await, (some("v1"), None));
        // The same deployment again changes nothing.
        store
            .group_set_current_deployment("shop", "prod", "v1")
            .await
            .unwrap();
        assert_eq!(deployments().await, (some("v1"), None));
        store
            .group_set_current_deployment("shop", "prod", "v2")
            .await
            .unwrap();
        assert_eq!(deployments().await, (some("v2"), some("v1")));
        store
            .group_set_current_deployment("shop", "prod", "v2")
            .await
            .unwrap();
        assert_eq!(deployments().await, (some("v2"), some("v1")));
        // A rollback shifts the other way.
        store
            .group_set_current_deployment("shop", "prod", "v1")
            .await
            .unwrap();
        assert_eq!(deployments().await, (some("v1"), some("v2")));

        expect_not_found(
            store
                .group_set_current_deployment("shop", "prod", "v9")
                .await,
            "deployment",
            "shop/v9",
        );
        expect_not_found(
            store.group_set_current_deployment("shop", "qa", "v1").await,
            "group",
            "shop/qa",
        );
        expect_not_found(
            store
                .group_set_current_deployment("nope", "prod", "v1")
                .await,
            "application",
            "nope",
        );
        assert_eq!(deployments().await, (some("v1"), some("v2")));
        assert_eq!(
            store.group_fetch("shop", "staging").await.unwrap(),
            group("shop", "staging")
        );
    }

    /// Chosen rule: a release keeps its group and deployment for good, so neither
    /// can be deleted while any release (active or finished) names it.
    pub async fn released_groups_and_deployments_are_kept_but_instances_may_go(
        backend: &dyn Backend,
    ) {
        let store = backend.open().await;
        let [a, b, c] = shop(&*store).await;
        let r1 = release(1, "shop", "prod", "v2");
        create(&*store, &r1, &[(&a, 0), (&b, 0)]).await;
        run_batch(&*store, &r1.id, 0, &[&a], at(200)).await;

        expect_in_use(
            store.deployment_delete("shop", "v2").await,
            "deployment",
            "shop/v2",
            &format!("release {}", r1.id),
        );
        expect_in_use(
            store.group_delete("shop", "prod").await,
            "group",
            "shop/prod",
            &format!("3 instances and release {}", r1.id),
        );
        store
            .group_remove_instances("shop", "prod", &ids(&[1, 2, 3]))
            .await
            .unwrap();
        expect_in_use(
            store.group_delete("shop", "prod").await,
            "group",
            "shop/prod",
            &format!("release {}", r1.id),
        );
        // Finished releases keep them too; the newest is named first.
        shift(
            &*store,
            &r1.id,
            ReleaseState::Running,
            ReleaseState::Failed,
            at(300),
        )
        .await;
        let r2 = release(2, "shop", "prod", "v1");
        create(&*store, &r2, &[(&c, 0)]).await;
        expect_in_use(
            store.group_delete("shop", "prod").await,
            "group",
            "shop/prod",
            &format!("releases {}, {}", r2.id, r1.id),
        );
        expect_in_use(
            store.deployment_delete("shop", "v2").await,
            "deployment",
            "shop/v2",
            &format!("release {}", r1.id),
        );
        assert!(store.group_fetch("shop", "prod").await.is_ok());
        assert_eq!(store.deployment_list("shop").await.unwrap().len(), 2);
        // A group or deployment no release names goes as before.
        store
            .deployment_create(&command_deployment("shop", "v3"))
            .await
            .unwrap();
        store.deployment_delete("shop", "v3").await.unwrap();
        store.group_delete("shop", "staging").await.unwrap();

        // An instance with tasks and steps may be deleted; the release still
        // shows it under its name.
        store
            .step_begin(&r1.id, &a.id, StepName::Prepare, at(250))
            .await
            .unwrap();
        store.instance_delete(&a.id).await.unwrap();
        store.instance_delete(&b.id).await.unwrap();
        expect_not_found(store.instance_fetch(&a.id).await, "instance", &a.id);
        let tasks = store.task_list(&r1.id).await.unwrap();
        let names: Vec<(&str, &str)> = tasks
            .iter()
            .map(|t| (t.instance_id.as_str(), t.instance_name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![(a.id.as_str(), "web-a"), (b.id.as_str(), "web-b")]
        );
        assert_eq!(store.step_list(&r1.id, Some(&a.id)).await.unwrap().len(), 2);
        // The driver can still fail the deleted instance's task.
        assert!(store
            .task_finish(
                &r1.id,
                &b.id,
                TaskState::Failed,
                None,
                Some("the instance was deleted"),
                at(400)
            )
            .await
            .unwrap());
        assert_eq!(
            store.task_fetch(&r1.id, &b.id).await.unwrap().state,
            TaskState::Failed
        );
        store.instance_delete(&c.id).await.unwrap();
        assert_eq!(
            store.task_fetch(&r2.id, &c.id).await.unwrap().instance_name,
            "web-c"
        );
    }

    // ------------------------------------------------------------ persistence

    pub async fn releases_survive_reopening(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, b, _] = shop(&*store).await;
        let r = release(1, "shop", "prod", "v2");
        create(&*store, &r, &[(&a, 0), (&b, 1)]).await;
        run_batch(&*store, &r.id, 0, &[&a], at(200)).await;
        store
            .step_begin(&r.id, &a.id, StepName::Pull, at(210))
            .await
            .unwrap();
        store
            .step_append_output(&r.id, &a.id, StepName::Pull, "pulling ✓\n", 3, 1024, None)
            .await
            .unwrap();
        store
            .task_set_digest(&r.id, &a.id, "sha256:abc")
            .await
            .unwrap();
        store
            .group_set_current_deployment("shop", "prod", "v1")
            .await
            .unwrap();

        let before = store.release_fetch(&r.id).await.unwrap();
        let tasks = store.task_list(&r.id).await.unwrap();
        let steps = store.step_list(&r.id, None).await.unwrap();
        drop(store);
        let store = backend.open().await;

        assert_eq!(store.release_fetch(&r.id).await.unwrap(), before);
        assert_eq!(store.release_list_active().await.unwrap(), vec![before]);
        assert_eq!(store.task_list(&r.id).await.unwrap(), tasks);
        assert_eq!(store.step_list(&r.id, None).await.unwrap(), steps);
        assert_eq!(steps[1].output, "pulling ✓\n");
        assert_eq!(steps[1].dropped_bytes, 3);
        assert_eq!(
            store
                .task_list_running_for_instance(&a.id)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            store
                .group_fetch("shop", "prod")
                .await
                .unwrap()
                .current_deployment,
            Some("v1".into())
        );
        // The reopened store goes on where it was, and still refuses a second
        // active release.
        expect_active_release(
            store
                .release_create(&release(2, "shop", "prod", "v1"), &[])
                .await,
            "shop/prod",
            &r.id,
        );
        assert!(store
            .step_finish(
                &r.id,
                &a.id,
                StepName::Pull,
                StepState::Succeeded,
                Some(0),
                None,
                at(300)
            )
            .await
            .unwrap());
        assert!(store
            .task_finish(&r.id, &a.id, TaskState::Succeeded, None, None, at(301))
            .await
            .unwrap());
        assert_eq!(
            membership(&*store, &a, "shop", "prod").await,
            Some((Some("v2".into()), Some("sha256:abc".into())))
        );
    }

    // ------------------------------------------------------------ persistence

    pub async fn everything_survives_reopening(backend: &dyn Backend) {
        let store = backend.open().await;
        let admin = api_token("admin", "admin-hash");
        store.api_token_create(&admin).await.unwrap();
        let token = registration_token("t", 4, at(100));
        store.registration_token_create(&token).await.unwrap();
        let web = instance(1, "web");
        store
            .instance_register(&token.hash, &web, at(0))
            .await
            .unwrap();
        store
            .instance_heartbeat(&web.id, at(40), "0.3.0", "10.0.0.99")
            .await
            .unwrap();
        store.app_create(&app("shop")).await.unwrap();
        store.registry_create(&registry("main")).await.unwrap();
        let v1 = image_deployment("shop", "v1", "main");
        store.deployment_create(&v1).await.unwrap();
        let mut prod = group("shop", "prod");
        prod.current_deployment = Some("v1".into());
        store.group_create(&prod).await.unwrap();
        store
            .group_add_instances("shop", "prod", &ids(&[1]))
            .await
            .unwrap();

        let instances = store.instance_list().await.unwrap();
        let tokens = store.registration_token_list().await.unwrap();
        let members = store.group_members("shop", "prod").await.unwrap();
        drop(store);
        let store = backend.open().await;

        assert_eq!(
            store.api_token_by_hash("admin-hash").await.unwrap(),
            Some(admin)
        );
        assert_eq!(store.api_token_count().await.unwrap(), 1);
        assert_eq!(store.registration_token_list().await.unwrap(), tokens);
        assert_eq!(tokens[0].uses_left, 3);
        assert_eq!(store.instance_list().await.unwrap(), instances);
        assert_eq!(instances[0].last_heartbeat_at, Some(at(40)));
        assert_eq!(store.app_list().await.unwrap(), vec![app("shop")]);
        assert_eq!(store.registry_list().await.unwrap(), vec![registry("main")]);
        assert_eq!(store.deployment_list("shop").await.unwrap(), vec![v1]);
        assert_eq!(store.group_list("shop").await.unwrap(), vec![prod]);
        assert_eq!(store.group_members("shop", "prod").await.unwrap(), members);
        // The reopened store still refuses what it refused before.
        expect_already_exists(store.app_create(&app("shop")).await, "application", "shop");
        expect_in_use(
            store.group_delete("shop", "prod").await,
            "group",
            "shop/prod",
            "1 instance",
        );
    }

    pub async fn a_failure_and_its_rollback_are_stored_together(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, b, _] = shop(&*store).await;
        let failing = release(1, "shop", "prod", "v2");
        create(&*store, &failing, &[(&a, 0), (&b, 1)]).await;
        let mut rollback = release(2, "shop", "prod", "v1");
        rollback.kind = "rollback".into();
        rollback.rollback_of = Some(failing.id.clone());
        let rollback_tasks = vec![task(&rollback, &a, 0)];
        // Not running yet: nothing moves and nothing is created.
        assert!(!store
            .release_fail(
                &failing.id,
                "boom",
                at(300),
                Some((&rollback, &rollback_tasks))
            )
            .await
            .unwrap());
        expect_not_found(
            store.release_fetch(&rollback.id).await,
            "release",
            &rollback.id,
        );
        shift(
            &*store,
            &failing.id,
            ReleaseState::Pending,
            ReleaseState::Running,
            at(200),
        )
        .await;
        assert!(store
            .release_fail(
                &failing.id,
                "boom",
                at(300),
                Some((&rollback, &rollback_tasks))
            )
            .await
            .unwrap());
        let failed = store.release_fetch(&failing.id).await.unwrap();
        assert_eq!(failed.state, ReleaseState::Failed);
        assert_eq!(failed.message.as_deref(), Some("boom"));
        assert_eq!(failed.finished_at, Some(at(300)));
        assert_eq!(store.release_fetch(&rollback.id).await.unwrap(), rollback);
        assert_eq!(store.task_list(&rollback.id).await.unwrap(), rollback_tasks);
        // Failing again changes nothing (the rollback is not created twice).
        assert!(!store
            .release_fail(&failing.id, "again", at(400), None)
            .await
            .unwrap());
    }

    // ------------------------------------------------------------ scaling groups

    fn scaling_group(name: &str, app: &str, group: &str) -> ScalingGroupRecord {
        ScalingGroupRecord {
            name: name.into(),
            app: app.into(),
            group: group.into(),
            on_suspend: Some("echo suspend".into()),
            on_resume: Some("echo resume".into()),
            created_at: at(3),
            state: ScalingState::Active,
            held_by: None,
            suspended_at: None,
            last_release: None,
            suspend_hook_pending: false,
            resume_hook_pending: false,
            resume_attempts: 0,
            next_hook_at: None,
            last_error: None,
        }
    }

    async fn register_for(store: &dyn Store, n: u64, name: &str, sg: &str) -> ScalingJoin {
        let token = registration_token(&format!("sg-{n}"), 1, at(1000));
        store.registration_token_create(&token).await.unwrap();
        let mut record = instance(n, name);
        record.scaling_group = Some(sg.into());
        store
            .instance_register_scaling(&token.hash, &record, at(20))
            .await
            .unwrap()
    }

    pub async fn scaling_groups_are_created_listed_and_deleted(backend: &dyn Backend) {
        let store = backend.open().await;
        store.app_create(&app("shop")).await.unwrap();
        store.group_create(&group("shop", "web")).await.unwrap();
        let asg = scaling_group("asg", "shop", "web");
        store.scaling_group_create(&asg).await.unwrap();
        assert_eq!(store.scaling_group_fetch("asg").await.unwrap(), asg);
        assert_eq!(store.scaling_group_list().await.unwrap(), vec![asg.clone()]);
        expect_already_exists(
            store.scaling_group_create(&asg).await,
            "scaling group",
            "asg",
        );
        expect_not_found(
            store
                .scaling_group_create(&scaling_group("x", "nope", "web"))
                .await,
            "application",
            "nope",
        );
        expect_not_found(
            store
                .scaling_group_create(&scaling_group("x", "shop", "nope"))
                .await,
            "group",
            "shop/nope",
        );
        store.scaling_group_delete("asg").await.unwrap();
        expect_not_found(
            store.scaling_group_fetch("asg").await,
            "scaling group",
            "asg",
        );
        expect_not_found(
            store.scaling_group_delete("asg").await,
            "scaling group",
            "asg",
        );
    }

    pub async fn registration_for_a_scaling_group_joins_or_is_held(backend: &dyn Backend) {
        let store = backend.open().await;
        store.app_create(&app("shop")).await.unwrap();
        store.group_create(&group("shop", "web")).await.unwrap();
        store
            .scaling_group_create(&scaling_group("asg", "shop", "web"))
            .await
            .unwrap();
        // An unknown scaling group refuses the registration whole.
        let token = registration_token("bad", 1, at(1000));
        store.registration_token_create(&token).await.unwrap();
        let mut stray = instance(9, "stray");
        stray.scaling_group = Some("nope".into());
        expect_not_found(
            store
                .instance_register_scaling(&token.hash, &stray, at(20))
                .await,
            "scaling group",
            "nope",
        );
        expect_not_found(store.instance_fetch("stray").await, "instance", "stray");
        assert_eq!(uses_left(&*store, "bad").await, 1);

        assert_eq!(
            register_for(&*store, 1, "a", "asg").await,
            ScalingJoin::Joined
        );
        assert_eq!(member_ids(&*store, "shop", "web").await, ids(&[1]));

        assert!(store
            .scaling_group_suspend("asg", "r-1", at(30))
            .await
            .unwrap());
        let suspended = store.scaling_group_fetch("asg").await.unwrap();
        assert_eq!(suspended.state, ScalingState::Suspended);
        assert_eq!(suspended.held_by.as_deref(), Some("r-1"));
        assert!(suspended.suspend_hook_pending);
        // Taking it again is a no-op; another release takes the lease over.
        assert!(!store
            .scaling_group_suspend("asg", "r-1", at(31))
            .await
            .unwrap());
        assert!(!store
            .scaling_group_suspend("asg", "r-2", at(31))
            .await
            .unwrap());
        assert!(!store
            .scaling_group_resume("asg", "r-1", at(32))
            .await
            .unwrap());

        assert_eq!(
            register_for(&*store, 2, "b", "asg").await,
            ScalingJoin::Held
        );
        assert_eq!(member_ids(&*store, "shop", "web").await, ids(&[1]));
        let held = store.scaling_group_held("asg").await.unwrap();
        assert_eq!(held.len(), 1);
        assert!(!held[0].joined);
        expect_in_use(
            store.scaling_group_delete("asg").await,
            "scaling group",
            "asg",
            "release r-2 (it is suspended until the release ends)",
        );

        assert!(store
            .scaling_group_resume("asg", "r-2", at(40))
            .await
            .unwrap());
        let resumed = store.scaling_group_fetch("asg").await.unwrap();
        assert_eq!(resumed.state, ScalingState::Active);
        assert_eq!(resumed.held_by, None);
        assert_eq!(resumed.last_release.as_deref(), Some("r-2"));
        assert!(resumed.resume_hook_pending);
        assert_eq!(member_ids(&*store, "shop", "web").await, ids(&[1, 2]));
        let held = store.scaling_group_held("asg").await.unwrap();
        assert!(held[0].joined, "joined, awaiting its catch-up");
        store
            .scaling_group_caught_up("asg", &ids(&[2]))
            .await
            .unwrap();
        assert!(store.scaling_group_held("asg").await.unwrap().is_empty());

        store.instance_delete(&instance_id(1)).await.unwrap();
        let kinds: Vec<String> = store
            .scaling_activities("asg", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|a| format!("{} {}", a.kind, a.instance_name))
            .collect();
        assert_eq!(kinds, ["join a", "held b", "join b", "leave a"]);
    }

    pub async fn hook_runs_are_recorded_and_failures_retried(backend: &dyn Backend) {
        let store = backend.open().await;
        store.app_create(&app("shop")).await.unwrap();
        store.group_create(&group("shop", "web")).await.unwrap();
        store
            .scaling_group_create(&scaling_group("asg", "shop", "web"))
            .await
            .unwrap();
        store
            .scaling_group_suspend("asg", "r-1", at(30))
            .await
            .unwrap();
        let run = |hook: &str, attempt: u32, error: Option<&str>| HookRunRecord {
            hook: hook.into(),
            release_id: Some("r-1".into()),
            attempt,
            started_at: at(31),
            finished_at: at(32),
            exit_code: Some(if error.is_some() { 1 } else { 0 }),
            output: format!("{hook} output"),
            error: error.map(str::to_owned),
        };
        store
            .scaling_hook_record("asg", &run("suspend", 1, None), None)
            .await
            .unwrap();
        assert!(
            !store
                .scaling_group_fetch("asg")
                .await
                .unwrap()
                .suspend_hook_pending
        );
        store
            .scaling_group_resume("asg", "r-1", at(40))
            .await
            .unwrap();
        store
            .scaling_hook_record("asg", &run("resume", 1, Some("exit 1")), Some(at(50)))
            .await
            .unwrap();
        let failing = store.scaling_group_fetch("asg").await.unwrap();
        assert!(failing.resume_hook_pending);
        assert_eq!(failing.resume_attempts, 1);
        assert_eq!(failing.next_hook_at, Some(at(50)));
        assert_eq!(failing.last_error.as_deref(), Some("exit 1"));
        store
            .scaling_hook_record("asg", &run("resume", 2, Some("exit 1")), None)
            .await
            .unwrap();
        let gave_up = store.scaling_group_fetch("asg").await.unwrap();
        assert!(!gave_up.resume_hook_pending);
        assert_eq!(gave_up.resume_attempts, 2);
        assert_eq!(gave_up.last_error.as_deref(), Some("exit 1"));
        let runs = store.scaling_hook_runs("asg", 2).await.unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].hook.as_str(), runs[0].attempt), ("resume", 1));
        assert_eq!(runs[1].output, "resume output");
        // Everything survives a reopen.
        let store = backend.open().await;
        assert_eq!(store.scaling_group_fetch("asg").await.unwrap(), gave_up);
        assert_eq!(store.scaling_hook_runs("asg", 10).await.unwrap().len(), 3);
    }

    /// `resume_attempts` counts failed attempts: a resume that succeeds at once
    /// leaves 0, one that succeeds at its second attempt leaves 1.
    pub async fn a_successful_resume_counts_only_the_failed_attempts_before_it(
        backend: &dyn Backend,
    ) {
        let store = backend.open().await;
        store.app_create(&app("shop")).await.unwrap();
        store.group_create(&group("shop", "web")).await.unwrap();
        store
            .scaling_group_create(&scaling_group("asg", "shop", "web"))
            .await
            .unwrap();
        let run = |release: &str, attempt: u32, error: Option<&str>| HookRunRecord {
            hook: "resume".into(),
            release_id: Some(release.into()),
            attempt,
            started_at: at(31),
            finished_at: at(32),
            exit_code: Some(if error.is_some() { 1 } else { 0 }),
            output: String::new(),
            error: error.map(str::to_owned),
        };
        for (release, attempts) in [("r-1", 1), ("r-2", 2)] {
            store
                .scaling_group_suspend("asg", release, at(30))
                .await
                .unwrap();
            store
                .scaling_group_resume("asg", release, at(40))
                .await
                .unwrap();
            for attempt in 1..attempts {
                store
                    .scaling_hook_record(
                        "asg",
                        &run(release, attempt, Some("exit 1")),
                        Some(at(50)),
                    )
                    .await
                    .unwrap();
            }
            store
                .scaling_hook_record("asg", &run(release, attempts, None), None)
                .await
                .unwrap();
            let done = store.scaling_group_fetch("asg").await.unwrap();
            assert!(!done.resume_hook_pending, "{release}");
            assert_eq!(done.resume_attempts, attempts - 1, "{release}");
            assert_eq!(done.last_error, None, "{release}");
        }
    }

    // ------------------------------------------------------------ group execs

    /// A group exec of `shop`/`prod`: a release row of kind exec without a
    /// deployment, and its exec row.
    fn exec(n: u64) -> (ReleaseRecord, ExecRecord) {
        let mut r = release(n, "shop", "prod", "");
        r.id = format!("x-{n:016x}");
        r.kind = EXEC_KIND.into();
        r.pause = PauseMode::Auto;
        r.batch_interval_secs = 0;
        r.rollback_on_failure = false;
        r.max_failures = 3;
        let x = ExecRecord {
            release_id: r.id.clone(),
            script: "apt-get install -y docker.io\necho 'done'\n".into(),
            timeout_secs: 600,
            as_user: Some("deploy".into()),
        };
        (r, x)
    }

    pub async fn execs_round_trip_and_are_listed_apart_from_releases(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, b, _c] = shop(&*store).await;
        let (r, x) = exec(1);
        let tasks = vec![task(&r, &a, 0), task(&r, &b, 1)];
        store.exec_create(&r, &x, &tasks).await.unwrap();
        assert_eq!(
            store.exec_fetch(&r.id).await.unwrap(),
            (r.clone(), x.clone())
        );
        assert_eq!(store.release_fetch(&r.id).await.unwrap(), r);
        assert_eq!(store.task_list(&r.id).await.unwrap(), tasks);
        // Listed as an exec, never as a release; the driver sees it as active.
        assert_eq!(
            store.exec_list(None, None, 10).await.unwrap(),
            vec![r.clone()]
        );
        assert_eq!(
            store
                .exec_list(Some("shop"), Some("prod"), 10)
                .await
                .unwrap(),
            vec![r.clone()]
        );
        assert!(store
            .exec_list(Some("shop"), Some("staging"), 10)
            .await
            .unwrap()
            .is_empty());
        assert!(store.release_list(None, None, 10).await.unwrap().is_empty());
        assert_eq!(store.release_list_active().await.unwrap(), vec![r.clone()]);

        // A release is no exec; an unknown id is no exec either.
        let plain = release(2, "shop", "staging", "v1");
        create(&*store, &plain, &[]).await;
        expect_not_found(store.exec_fetch(&plain.id).await, "exec", &plain.id);
        expect_not_found(
            store.exec_fetch("x-00000000000000ff").await,
            "exec",
            "x-00000000000000ff",
        );
        // An exec must have kind exec and no deployment; a release must have one.
        let (mut wrong, wrong_x) = exec(3);
        wrong.group = "staging".into();
        wrong.kind = "release".into();
        assert!(matches!(
            store.exec_create(&wrong, &wrong_x, &[]).await,
            Err(StoreError::Conflict(_))
        ));
        let mut no_deployment = release(4, "shop", "staging", "");
        no_deployment.created_at = at(500);
        assert!(store.release_create(&no_deployment, &[]).await.is_err());

        // It survives reopening.
        let store = backend.open().await;
        assert_eq!(store.exec_fetch(&r.id).await.unwrap(), (r, x));
    }

    pub async fn an_exec_and_a_release_never_run_on_a_group_together(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, _b, _c] = shop(&*store).await;
        let (r, x) = exec(1);
        store.exec_create(&r, &x, &[task(&r, &a, 0)]).await.unwrap();
        let blocked = release(2, "shop", "prod", "v1");
        expect_active_release(
            store.release_create(&blocked, &[]).await,
            "shop/prod",
            &r.id,
        );
        let (r2, x2) = exec(3);
        expect_active_release(store.exec_create(&r2, &x2, &[]).await, "shop/prod", &r.id);
        // Nothing of the refused exec was stored.
        expect_not_found(store.exec_fetch(&r2.id).await, "exec", &r2.id);

        // A finished exec leaves the group free, and its success records no
        // deployment on the membership.
        run_batch(&*store, &r.id, 0, &[&a], at(200)).await;
        assert!(store
            .task_finish(&r.id, &a.id, TaskState::Succeeded, None, None, at(300))
            .await
            .unwrap());
        assert_eq!(
            membership(&*store, &a, "shop", "prod").await,
            Some((None, None))
        );
        shift(
            &*store,
            &r.id,
            ReleaseState::Running,
            ReleaseState::Succeeded,
            at(301),
        )
        .await;
        create(&*store, &blocked, &[]).await;
    }

    pub async fn exec_steps_are_recorded_after_fetch(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, _b, _c] = shop(&*store).await;
        let (r, x) = exec(1);
        store.exec_create(&r, &x, &[task(&r, &a, 0)]).await.unwrap();
        run_batch(&*store, &r.id, 0, &[&a], at(200)).await;
        store
            .step_begin(&r.id, &a.id, StepName::Exec, at(201))
            .await
            .unwrap();
        store
            .step_append_output(&r.id, &a.id, StepName::Exec, "hello\n", 0, 1024, None)
            .await
            .unwrap();
        assert!(store
            .step_finish(
                &r.id,
                &a.id,
                StepName::Exec,
                StepState::Failed,
                Some(3),
                None,
                at(202)
            )
            .await
            .unwrap());
        let steps = store.step_list(&r.id, Some(&a.id)).await.unwrap();
        let names: Vec<StepName> = steps.iter().map(|s| s.step).collect();
        assert_eq!(names, vec![StepName::Fetch, StepName::Exec]);
        assert_eq!(steps[1].output, "hello\n");
        assert_eq!(steps[1].exit_code, Some(3));
    }

    // ------------------------------------------------------------ reads and writes in bulk

    /// A summary of one batch: its counts by state (pending, dispatched, running,
    /// succeeded, failed, cancelled) and when its last ended task ended.
    fn summary(batch: u32, counts: [u32; 6], last: Option<DateTime<Utc>>) -> BatchSummary {
        let [pending, dispatched, running, succeeded, failed, cancelled] = counts;
        BatchSummary {
            batch,
            pending,
            dispatched,
            running,
            succeeded,
            failed,
            cancelled,
            last_finished_at: last,
        }
    }

    /// The batch summaries as the tasks themselves say they must be.
    fn summarize(tasks: &[TaskRecord]) -> Vec<BatchSummary> {
        let mut batches: BTreeMap<u32, BatchSummary> = BTreeMap::new();
        for t in tasks {
            let s = batches.entry(t.batch).or_insert_with(|| BatchSummary {
                batch: t.batch,
                ..BatchSummary::default()
            });
            *match t.state {
                TaskState::Pending => &mut s.pending,
                TaskState::Dispatched => &mut s.dispatched,
                TaskState::Running => &mut s.running,
                TaskState::Succeeded => &mut s.succeeded,
                TaskState::Failed => &mut s.failed,
                TaskState::Cancelled => &mut s.cancelled,
            } += 1;
            s.last_finished_at = s.last_finished_at.max(t.finished_at);
        }
        batches.into_values().collect()
    }

    /// The release's batch summaries, checked against its task list and the open
    /// count of each batch.
    async fn batch_summaries(store: &dyn Store, release_id: &str) -> Vec<BatchSummary> {
        let summaries = store
            .task_batch_summaries(release_id)
            .await
            .expect("batch summaries");
        let tasks = store.task_list(release_id).await.expect("tasks listed");
        assert_eq!(
            summaries,
            summarize(&tasks),
            "the summaries of {release_id} disagree with its tasks"
        );
        for s in &summaries {
            assert_eq!(
                s.open(),
                store
                    .task_count_open_in_batch(release_id, s.batch)
                    .await
                    .unwrap(),
                "open tasks of batch {} of {release_id}",
                s.batch
            );
        }
        summaries
    }

    pub async fn batch_summaries_count_each_batch_by_state(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, b, c] = shop(&*store).await;
        let d = register(&*store, 4, "web-d").await;
        let r = release(1, "shop", "prod", "v1");
        // Batch 1 has no task.
        create(&*store, &r, &[(&a, 0), (&c, 0), (&d, 0), (&b, 2)]).await;
        // Another release's tasks count only there.
        let other = release(2, "shop", "staging", "v1");
        create(&*store, &other, &[(&a, 0), (&b, 1)]).await;
        let other_summaries = vec![
            summary(0, [1, 0, 0, 0, 0, 0], None),
            summary(1, [1, 0, 0, 0, 0, 0], None),
        ];
        assert_eq!(batch_summaries(&*store, &other.id).await, other_summaries);

        let pending = batch_summaries(&*store, &r.id).await;
        assert_eq!(
            pending,
            vec![
                summary(0, [3, 0, 0, 0, 0, 0], None),
                summary(2, [1, 0, 0, 0, 0, 0], None),
            ]
        );
        assert_eq!((pending[0].open(), pending[0].started()), (3, false));
        assert_eq!((pending[1].open(), pending[1].started()), (1, false));

        run_batch(&*store, &r.id, 0, &[], at(200)).await;
        let dispatched = batch_summaries(&*store, &r.id).await;
        assert_eq!(
            dispatched,
            vec![
                summary(0, [0, 3, 0, 0, 0, 0], None),
                summary(2, [1, 0, 0, 0, 0, 0], None),
            ]
        );
        assert_eq!((dispatched[0].open(), dispatched[0].started()), (3, true));
        assert!(!dispatched[1].started());

        for (instance, now) in [(&a, at(210)), (&c, at(211))] {
            assert!(store.task_claim(&r.id, &instance.id, now).await.unwrap());
        }
        assert_eq!(
            batch_summaries(&*store, &r.id).await[0],
            summary(0, [0, 1, 2, 0, 0, 0], None)
        );

        // The last end is the latest time, not the latest write.
        assert!(store
            .task_finish(&r.id, &a.id, TaskState::Succeeded, None, None, at(300))
            .await
            .unwrap());
        assert_eq!(
            batch_summaries(&*store, &r.id).await[0],
            summary(0, [0, 1, 1, 1, 0, 0], Some(at(300)))
        );
        assert!(store
            .task_finish(&r.id, &c.id, TaskState::Failed, None, Some("boom"), at(250))
            .await
            .unwrap());
        let ended = batch_summaries(&*store, &r.id).await;
        assert_eq!(ended[0], summary(0, [0, 1, 0, 1, 1, 0], Some(at(300))));
        assert_eq!((ended[0].open(), ended[0].started()), (1, true));
        // d (dispatched) and b (pending, batch 2) are cancelled at 280.
        assert_eq!(
            store
                .task_cancel_unstarted(&r.id, "cancelled", at(280))
                .await
                .unwrap(),
            2
        );
        let over = batch_summaries(&*store, &r.id).await;
        assert_eq!(
            over,
            vec![
                summary(0, [0, 0, 0, 1, 1, 1], Some(at(300))),
                summary(2, [0, 0, 0, 0, 0, 1], Some(at(280))),
            ]
        );
        assert_eq!((over[0].open(), over[0].started()), (0, true));
        assert_eq!((over[1].open(), over[1].started()), (0, true));
        assert_eq!(batch_summaries(&*store, &other.id).await, other_summaries);

        // A release without tasks has no batch to summarize.
        store.group_create(&group("shop", "canary")).await.unwrap();
        let empty = release(3, "shop", "canary", "v1");
        create(&*store, &empty, &[]).await;
        assert_eq!(batch_summaries(&*store, &empty.id).await, vec![]);
        let unknown = release_id(99);
        expect_not_found(
            store.task_batch_summaries(&unknown).await,
            "release",
            &unknown,
        );
    }

    type Live = (TaskRecord, Option<Option<DateTime<Utc>>>);

    async fn live(store: &dyn Store, release_id: &str) -> Vec<Live> {
        store
            .task_list_live(release_id)
            .await
            .expect("live tasks")
            .into_iter()
            .map(|l| (l.task, l.instance_heartbeat))
            .collect()
    }

    async fn fetched(store: &dyn Store, release_id: &str, instance: &InstanceRecord) -> TaskRecord {
        store
            .task_fetch(release_id, &instance.id)
            .await
            .expect("task fetched")
    }

    pub async fn live_tasks_are_the_dispatched_and_running_ones_with_their_heartbeat(
        backend: &dyn Backend,
    ) {
        let store = backend.open().await;
        let [a, b, c] = shop(&*store).await;
        let d = register(&*store, 4, "web-d").await;
        let r = release(1, "shop", "prod", "v1");
        create(&*store, &r, &[(&c, 0), (&b, 0), (&a, 0), (&d, 1)]).await;
        // Pending tasks are not live.
        assert_eq!(live(&*store, &r.id).await, vec![]);

        run_batch(&*store, &r.id, 0, &[&a], at(200)).await;
        store
            .instance_heartbeat(&a.id, at(215), "0.1.0", "10.0.0.2")
            .await
            .unwrap();
        store.instance_delete(&c.id).await.unwrap();
        let listed = live(&*store, &r.id).await;
        assert_eq!(
            listed
                .iter()
                .map(|(t, _)| (t.instance_id.as_str(), t.state))
                .collect::<Vec<_>>(),
            vec![
                (a.id.as_str(), TaskState::Running),
                (b.id.as_str(), TaskState::Dispatched),
                (c.id.as_str(), TaskState::Dispatched),
            ]
        );
        assert_eq!(
            listed,
            vec![
                // Heartbeating.
                (fetched(&*store, &r.id, &a).await, Some(Some(at(215)))),
                // Never heartbeated.
                (fetched(&*store, &r.id, &b).await, Some(None)),
                // Deleted.
                (fetched(&*store, &r.id, &c).await, None),
            ]
        );
        assert_eq!(listed[0].0.started_at, Some(at(200)));
        assert_eq!(listed[1].0.deadline, Some(at(800)));

        // The latest heartbeat counts.
        for (instance, now) in [(&b, at(220)), (&a, at(230))] {
            store
                .instance_heartbeat(&instance.id, now, "0.1.0", &instance.address)
                .await
                .unwrap();
        }
        let heartbeats: Vec<Option<Option<DateTime<Utc>>>> = live(&*store, &r.id)
            .await
            .into_iter()
            .map(|(_, heartbeat)| heartbeat)
            .collect();
        assert_eq!(
            heartbeats,
            vec![Some(Some(at(230))), Some(Some(at(220))), None]
        );

        // An ended task is not live; another release's live task is listed there.
        assert!(store
            .task_finish(&r.id, &a.id, TaskState::Succeeded, None, None, at(300))
            .await
            .unwrap());
        let other = release(2, "shop", "staging", "v1");
        create(&*store, &other, &[(&d, 0)]).await;
        run_batch(&*store, &other.id, 0, &[], at(310)).await;
        let ids_of = |tasks: Vec<Live>| -> Vec<String> {
            tasks.into_iter().map(|(t, _)| t.instance_id).collect()
        };
        assert_eq!(
            ids_of(live(&*store, &r.id).await),
            vec![b.id.clone(), c.id.clone()]
        );
        assert_eq!(
            live(&*store, &other.id).await,
            vec![(fetched(&*store, &other.id, &d).await, Some(None))]
        );
        assert_eq!(
            live(&*store, &other.id).await[0].0.state,
            TaskState::Dispatched
        );

        assert_eq!(
            store
                .task_cancel_unstarted(&r.id, "cancelled", at(400))
                .await
                .unwrap(),
            3
        );
        assert_eq!(live(&*store, &r.id).await, vec![]);
        let unknown = release_id(99);
        expect_not_found(store.task_list_live(&unknown).await, "release", &unknown);
    }

    // ------------------------------------------------------------ agent writes in one call

    fn begin_write(
        r: &ReleaseRecord,
        instance: &InstanceRecord,
        step: StepName,
        now: DateTime<Utc>,
    ) -> AgentWrite {
        AgentWrite::StepBegin {
            release_id: r.id.clone(),
            instance_id: instance.id.clone(),
            step,
            now,
        }
    }

    fn output_write(
        r: &ReleaseRecord,
        instance: &InstanceRecord,
        step: StepName,
        chunk: &str,
    ) -> AgentWrite {
        AgentWrite::StepOutput {
            release_id: r.id.clone(),
            instance_id: instance.id.clone(),
            step,
            chunk: chunk.into(),
            dropped: 0,
            keep_bytes: 1024,
            offset: None,
        }
    }

    /// `write`, an output report, as an agent of protocol 3 sends it: saying
    /// where in the step's output it starts.
    fn at_offset(mut write: AgentWrite, at: u64) -> AgentWrite {
        if let AgentWrite::StepOutput { offset, .. } = &mut write {
            *offset = Some(at);
        }
        write
    }

    /// A step end with exit code 0 for success and 1 for failure, no message,
    /// no digest, not ending the task.
    fn end_write(
        r: &ReleaseRecord,
        instance: &InstanceRecord,
        step: StepName,
        state: StepState,
        now: DateTime<Utc>,
    ) -> AgentWrite {
        AgentWrite::StepEnd {
            release_id: r.id.clone(),
            instance_id: instance.id.clone(),
            step,
            state,
            exit_code: Some(if state == StepState::Succeeded { 0 } else { 1 }),
            message: None,
            digest: None,
            task_end: None,
            then_begin: None,
            now,
        }
    }

    /// `write` (a step end) that also begins step `next`.
    fn then(mut write: AgentWrite, next: StepName) -> AgentWrite {
        if let AgentWrite::StepEnd { then_begin, .. } = &mut write {
            *then_begin = Some(next);
        }
        write
    }

    /// `write` (a step end) that also ends the task as `end`.
    fn ending(mut write: AgentWrite, end: TaskState, reason: Option<&str>) -> AgentWrite {
        if let AgentWrite::StepEnd { task_end, .. } = &mut write {
            *task_end = Some((end, reason.map(str::to_owned)));
        }
        write
    }

    /// `write` (a step end) with the pull's digest, or the given exit code and
    /// message.
    fn reporting(
        mut write: AgentWrite,
        with_digest: Option<&str>,
        with_exit: Option<(i32, &str)>,
    ) -> AgentWrite {
        if let AgentWrite::StepEnd {
            digest,
            exit_code,
            message,
            ..
        } = &mut write
        {
            *digest = with_digest.map(str::to_owned);
            if let Some((code, why)) = with_exit {
                *exit_code = Some(code);
                *message = Some(why.to_owned());
            }
        }
        write
    }

    /// Answers in a comparable form (errors by their debug text, which names
    /// the variant and what it carries).
    fn answers(results: Vec<StoreResult<AgentWritten>>) -> Vec<Result<AgentWritten, String>> {
        results
            .into_iter()
            .map(|result| result.map_err(|err| format!("{err:?}")))
            .collect()
    }

    /// Application `shop` (see [`shop`]) plus instance 4 `web-d`, outside every
    /// group; release 1 of `v2` (an image) to `prod` with tasks a, b, d in batch 0
    /// and c in batch 1, running, with batch 0 dispatched at 200 (deadline 900).
    async fn agent_fixture(store: &dyn Store) -> (ReleaseRecord, [InstanceRecord; 4]) {
        let [a, b, c] = shop(store).await;
        let d = register(store, 4, "web-d").await;
        let r = release(1, "shop", "prod", "v2");
        create(store, &r, &[(&a, 0), (&b, 0), (&d, 0), (&c, 1)]).await;
        shift(
            store,
            &r.id,
            ReleaseState::Pending,
            ReleaseState::Running,
            at(199),
        )
        .await;
        store
            .task_dispatch_batch(&r.id, 0, at(200), at(900))
            .await
            .expect("batch dispatched");
        (r, [a, b, c, d])
    }

    /// Everything agent writes can change: the tasks, the steps with their
    /// output, the batch summaries and the instances' memberships.
    type Written = (
        Vec<TaskRecord>,
        Vec<StepRecord>,
        Vec<BatchSummary>,
        Vec<Vec<MembershipRecord>>,
    );

    /// Sends one write to `store` batched and to `single` one by one, checks that
    /// both answer alike and leave alike what was written (`after` says when, in
    /// the messages), and returns the answer.
    async fn answered_alike(
        store: &dyn Store,
        single: &dyn Store,
        r: &ReleaseRecord,
        instances: &[InstanceRecord],
        write: AgentWrite,
        after: &str,
    ) -> Result<AgentWritten, String> {
        let batched = answers(store.agent_writes(vec![write.clone()]).await.unwrap());
        let one_by_one = answers(vec![
            wharf_store::agent_write_one_by_one(single, &write).await,
        ]);
        assert_eq!(batched, one_by_one, "batched vs one by one, {after}");
        assert_eq!(
            written(store, r, instances).await,
            written(single, r, instances).await,
            "what was written, {after}"
        );
        batched.into_iter().next().expect("one answer")
    }

    async fn written(
        store: &dyn Store,
        r: &ReleaseRecord,
        instances: &[InstanceRecord],
    ) -> Written {
        let mut memberships = Vec::new();
        for instance in instances {
            memberships.push(store.instance_memberships(&instance.id).await.unwrap());
        }
        (
            store.task_list(&r.id).await.unwrap(),
            store.step_list(&r.id, None).await.unwrap(),
            store.task_batch_summaries(&r.id).await.unwrap(),
            memberships,
        )
    }

    /// A step's name, state, end, exit code and output.
    type StepSeen = (
        StepName,
        StepState,
        Option<DateTime<Utc>>,
        Option<i32>,
        String,
    );

    pub async fn agent_writes_answer_as_their_single_calls_do(
        backend: &dyn Backend,
        reference: &dyn Backend,
    ) {
        let store = backend.open().await;
        let single = reference.open().await;
        let (r, [a, b, c, d]) = agent_fixture(&*store).await;
        agent_fixture(&*single).await;
        let everyone = [a.clone(), b.clone(), c.clone(), d.clone()];
        let outsider = register(&*store, 5, "web-e").await;
        register(&*single, 5, "web-e").await;
        let pull = StepName::Pull;
        let calls: Vec<Vec<AgentWrite>> = vec![
            vec![
                // The first report of a handed-out task claims it.
                begin_write(&r, &a, pull, at(220)),
                output_write(&r, &a, pull, "pulling web\n"),
                // The same report again, now with its offset: stored once. Then
                // one after 8 bytes that never arrived, counted as dropped.
                at_offset(output_write(&r, &a, pull, "pulling web\n"), 0),
                at_offset(output_write(&r, &a, pull, "pulled\n"), 20),
                // Refused: the task is pending.
                begin_write(&r, &c, StepName::Prepare, at(221)),
                // Refused: only a begin claims a task, and b's is not claimed yet.
                end_write(&r, &b, StepName::Stop, StepState::Failed, at(222)),
                output_write(&r, &b, StepName::Prepare, "too soon\n"),
                begin_write(&r, &b, StepName::Prepare, at(223)),
                // Refused: the step never began.
                end_write(&r, &b, StepName::Stop, StepState::Failed, at(224)),
                reporting(
                    end_write(&r, &a, pull, StepState::Succeeded, at(230)),
                    Some("sha256:aaa"),
                    None,
                ),
                // A failure ends its task; a and d are still open, but only a
                // success counts them.
                ending(
                    reporting(
                        end_write(&r, &b, StepName::Prepare, StepState::Failed, at(231)),
                        None,
                        Some((2, "boom")),
                    ),
                    TaskState::Failed,
                    Some("step prepare failed: boom"),
                ),
                begin_write(&r, &a, StepName::Start, at(240)),
                output_write(&r, &a, StepName::Start, "started\n"),
                // d is still dispatched: one open task left.
                ending(
                    end_write(&r, &a, StepName::Start, StepState::Succeeded, at(250)),
                    TaskState::Succeeded,
                    None,
                ),
                // Repeated, with another outcome and a digest: refused, as the
                // task has ended, and changes nothing.
                ending(
                    reporting(
                        end_write(&r, &a, StepName::Start, StepState::Failed, at(260)),
                        Some("sha256:late"),
                        Some((9, "late")),
                    ),
                    TaskState::Failed,
                    Some("late"),
                ),
                // Output after the end: refused too.
                output_write(&r, &a, StepName::Start, "late output\n"),
                // An instance with no task in the release.
                begin_write(&r, &outsider, StepName::Pull, at(261)),
            ],
            vec![
                begin_write(&r, &d, StepName::Start, at(301)),
                ending(
                    reporting(
                        end_write(&r, &d, StepName::Start, StepState::Succeeded, at(302)),
                        Some("sha256:ddd"),
                        None,
                    ),
                    TaskState::Succeeded,
                    None,
                ),
                // Repeated: changes nothing, and the batch is not counted again.
                ending(
                    reporting(
                        end_write(&r, &d, StepName::Start, StepState::Succeeded, at(303)),
                        Some("sha256:again"),
                        None,
                    ),
                    TaskState::Succeeded,
                    None,
                ),
            ],
        ];

        let ended = |changed, task_finished, batch_open| {
            Ok(AgentWritten::StepEnded {
                changed,
                task_finished,
                batch_open,
            })
        };
        let expected: Vec<Vec<Result<AgentWritten, String>>> = vec![
            vec![
                Ok(AgentWritten::Recorded),
                Ok(AgentWritten::Recorded),
                Ok(AgentWritten::Recorded),
                Ok(AgentWritten::Recorded),
                Err(format!(
                    "{:?}",
                    StoreError::Conflict("the task is pending; step prepare cannot begin".into())
                )),
                Err(format!(
                    "{:?}",
                    StoreError::Conflict("the task is dispatched; step stop cannot end".into())
                )),
                Err(format!(
                    "{:?}",
                    StoreError::Conflict(
                        "the task is dispatched; step prepare cannot take output".into()
                    )
                )),
                Ok(AgentWritten::Recorded),
                Err(format!(
                    "{:?}",
                    StoreError::NotFound {
                        kind: "step",
                        name: format!("{}/{}/stop", r.id, b.id),
                    }
                )),
                ended(true, false, 0),
                ended(true, true, 0),
                Ok(AgentWritten::Recorded),
                Ok(AgentWritten::Recorded),
                ended(true, true, 1),
                Err(format!(
                    "{:?}",
                    StoreError::Conflict("the task is succeeded; step start cannot end".into())
                )),
                Err(format!(
                    "{:?}",
                    StoreError::Conflict(
                        "the task is succeeded; step start cannot take output".into()
                    )
                )),
                Err(format!(
                    "{:?}",
                    StoreError::NotFound {
                        kind: "task",
                        name: format!("{}/{}", r.id, outsider.id),
                    }
                )),
            ],
            vec![
                Ok(AgentWritten::Recorded),
                ended(true, true, 0),
                Err(format!(
                    "{:?}",
                    StoreError::Conflict("the task is succeeded; step start cannot end".into())
                )),
            ],
        ];

        for (n, (writes, expected)) in calls.iter().zip(expected).enumerate() {
            let batched = answers(
                store
                    .agent_writes(writes.clone())
                    .await
                    .expect("the call is written"),
            );
            let mut one_by_one_answers = Vec::new();
            for write in writes {
                one_by_one_answers.push(wharf_store::agent_write_one_by_one(&*single, write).await);
            }
            let one_by_one_answers = answers(one_by_one_answers);
            assert_eq!(
                batched, one_by_one_answers,
                "call {n}: batched vs one by one"
            );
            assert_eq!(batched, expected, "call {n}");
            assert_eq!(
                written(&*store, &r, &everyone).await,
                written(&*single, &r, &everyone).await,
                "call {n}: what was written"
            );

            if n == 0 {
                // Each task was claimed by its first begin.
                assert_eq!(fetched(&*store, &r.id, &a).await.started_at, Some(at(220)));
                assert_eq!(fetched(&*store, &r.id, &b).await.started_at, Some(at(223)));
                // The refused writes changed nothing.
                assert_eq!(fetched(&*store, &r.id, &c).await, task(&r, &c, 1));
                assert_eq!(store.step_list(&r.id, Some(&c.id)).await.unwrap(), vec![]);
                assert!(!store
                    .step_list(&r.id, Some(&b.id))
                    .await
                    .unwrap()
                    .iter()
                    .any(|s| s.step == StepName::Stop));
                // The repeated end changed nothing.
                let done = fetched(&*store, &r.id, &a).await;
                assert_eq!(
                    (
                        done.state,
                        done.finished_at,
                        done.image_digest.as_deref(),
                        done.message.as_deref()
                    ),
                    (
                        TaskState::Succeeded,
                        Some(at(250)),
                        Some("sha256:aaa"),
                        None
                    )
                );
                let failed = fetched(&*store, &r.id, &b).await;
                assert_eq!(
                    (failed.state, failed.finished_at, failed.message.as_deref()),
                    (
                        TaskState::Failed,
                        Some(at(231)),
                        Some("step prepare failed: boom")
                    )
                );
                let steps_of_a: Vec<StepSeen> = store
                    .step_list(&r.id, Some(&a.id))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|s| (s.step, s.state, s.finished_at, s.exit_code, s.output))
                    .collect();
                assert_eq!(
                    steps_of_a,
                    vec![
                        (
                            StepName::Fetch,
                            StepState::Succeeded,
                            Some(at(220)),
                            None,
                            String::new()
                        ),
                        (
                            pull,
                            StepState::Succeeded,
                            Some(at(230)),
                            Some(0),
                            "pulling web\npulled\n".into()
                        ),
                        (
                            StepName::Start,
                            StepState::Succeeded,
                            Some(at(250)),
                            Some(0),
                            "started\n".into()
                        ),
                    ]
                );
                let prepare_of_b = store
                    .step_list(&r.id, Some(&b.id))
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|s| s.step == StepName::Prepare)
                    .unwrap();
                assert_eq!(
                    (
                        prepare_of_b.state,
                        prepare_of_b.exit_code,
                        prepare_of_b.message.as_deref()
                    ),
                    (StepState::Failed, Some(2), Some("boom"))
                );
                // A success records the deployment and digest on the membership;
                // a failure records nothing.
                assert_eq!(
                    membership(&*store, &a, "shop", "prod").await,
                    Some((Some("v2".into()), Some("sha256:aaa".into())))
                );
                assert_eq!(
                    membership(&*store, &b, "shop", "prod").await,
                    Some((None, None))
                );
            }
        }
        let d_done = fetched(&*store, &r.id, &d).await;
        assert_eq!(
            (
                d_done.state,
                d_done.finished_at,
                d_done.image_digest.as_deref()
            ),
            (TaskState::Succeeded, Some(at(302)), Some("sha256:ddd"))
        );
        assert_eq!(d_done.started_at, Some(at(301)));
        // d is in no group: no membership appears.
        assert_eq!(store.instance_memberships(&d.id).await.unwrap(), vec![]);
        assert_eq!(
            batch_summaries(&*store, &r.id).await,
            vec![
                summary(0, [0, 0, 0, 2, 1, 0], Some(at(302))),
                summary(1, [1, 0, 0, 0, 0, 0], None),
            ]
        );
        // Nothing at all is nothing.
        assert_eq!(answers(store.agent_writes(vec![]).await.unwrap()), vec![]);
    }

    pub async fn a_step_end_begins_the_next_step_when_asked(
        backend: &dyn Backend,
        reference: &dyn Backend,
    ) {
        let store = backend.open().await;
        let single = reference.open().await;
        let (r, [a, b, c, d]) = agent_fixture(&*store).await;
        agent_fixture(&*single).await;
        let everyone = [a.clone(), b.clone(), c.clone(), d.clone()];
        let (pull, stop, start) = (StepName::Pull, StepName::Stop, StepName::Start);
        let writes = vec![
            begin_write(&r, &a, pull, at(220)),
            then(
                reporting(
                    end_write(&r, &a, pull, StepState::Succeeded, at(230)),
                    Some("sha256:aaa"),
                    None,
                ),
                stop,
            ),
            // Retried (its answer was lost): the end changes nothing, the begin
            // restarts the running step.
            then(
                reporting(
                    end_write(&r, &a, pull, StepState::Succeeded, at(231)),
                    Some("sha256:again"),
                    None,
                ),
                stop,
            ),
            // Refused whole: no step begins after a failure, after the task's
            // end, or as itself.
            then(end_write(&r, &a, stop, StepState::Failed, at(240)), start),
            then(
                ending(
                    end_write(&r, &a, stop, StepState::Succeeded, at(241)),
                    TaskState::Succeeded,
                    None,
                ),
                start,
            ),
            then(end_write(&r, &a, stop, StepState::Succeeded, at(242)), stop),
            // Refused whole: fetch has finished (the server records it), so
            // prepare's end is undone with the begin.
            begin_write(&r, &b, StepName::Prepare, at(250)),
            then(
                end_write(&r, &b, StepName::Prepare, StepState::Succeeded, at(251)),
                StepName::Fetch,
            ),
            // Refused: the step that ends never began (whatever the next is).
            then(
                end_write(&r, &b, stop, StepState::Succeeded, at(252)),
                StepName::Fetch,
            ),
            // Refused: d's task is not claimed yet.
            then(
                end_write(&r, &d, StepName::Prepare, StepState::Succeeded, at(260)),
                stop,
            ),
            then(
                end_write(&r, &a, stop, StepState::Succeeded, at(270)),
                start,
            ),
            // b is running and d dispatched.
            ending(
                end_write(&r, &a, start, StepState::Succeeded, at(280)),
                TaskState::Succeeded,
                None,
            ),
        ];
        let ended = |changed, task_finished, batch_open| {
            Ok(AgentWritten::StepEnded {
                changed,
                task_finished,
                batch_open,
            })
        };
        let conflict = |why: &str| Err(format!("{:?}", StoreError::Conflict(why.into())));
        let after_a_success =
            "step start can begin only after a step that succeeded without ending the task";
        let expected = vec![
            Ok(AgentWritten::Recorded),
            ended(true, false, 0),
            ended(false, false, 0),
            conflict(after_a_success),
            conflict(after_a_success),
            conflict("step stop cannot begin as it ends"),
            Ok(AgentWritten::Recorded),
            conflict("step fetch already finished"),
            Err(format!(
                "{:?}",
                StoreError::NotFound {
                    kind: "step",
                    name: format!("{}/{}/stop", r.id, b.id),
                }
            )),
            conflict("the task is dispatched; step prepare cannot end"),
            ended(true, false, 0),
            ended(true, true, 2),
        ];

        let batched = answers(store.agent_writes(writes.clone()).await.unwrap());
        let mut one_by_one_answers = Vec::new();
        for write in &writes {
            one_by_one_answers.push(wharf_store::agent_write_one_by_one(&*single, write).await);
        }
        assert_eq!(
            batched,
            answers(one_by_one_answers),
            "batched vs one by one"
        );
        assert_eq!(batched, expected);
        assert_eq!(
            written(&*store, &r, &everyone).await,
            written(&*single, &r, &everyone).await,
            "what was written"
        );

        let steps_of = |instance: &InstanceRecord| {
            let store = Arc::clone(&store);
            let (release, instance) = (r.id.clone(), instance.id.clone());
            async move {
                store
                    .step_list(&release, Some(&instance))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|s| (s.step, s.state, s.started_at, s.finished_at))
                    .collect::<Vec<_>>()
            }
        };
        use StepState::{Running, Succeeded};
        assert_eq!(
            steps_of(&a).await,
            vec![
                (StepName::Fetch, Succeeded, at(220), Some(at(220))),
                (pull, Succeeded, at(220), Some(at(230))),
                (stop, Succeeded, at(231), Some(at(270))),
                (start, Succeeded, at(270), Some(at(280))),
            ]
        );
        assert_eq!(
            steps_of(&b).await,
            vec![
                (StepName::Fetch, Succeeded, at(250), Some(at(250))),
                (StepName::Prepare, Running, at(250), None),
            ]
        );
        let done = fetched(&*store, &r.id, &a).await;
        assert_eq!(
            (done.state, done.image_digest.as_deref()),
            (TaskState::Succeeded, Some("sha256:aaa"))
        );
        assert_eq!(
            fetched(&*store, &r.id, &d).await.state,
            TaskState::Dispatched
        );

        // b's running step was failed while its task still runs (as a server
        // that failed a lost task in two writes, before `Store::task_fail`, could
        // leave it); b's agent reports the step's success with the next begin.
        // The step stays failed and nothing begins: the task must not look as if
        // it went on.
        for each in [&store, &single] {
            assert!(each
                .step_finish(
                    &r.id,
                    &b.id,
                    StepName::Prepare,
                    StepState::Failed,
                    None,
                    Some("deadline"),
                    at(285)
                )
                .await
                .unwrap());
        }
        let late = then(
            end_write(&r, &b, StepName::Prepare, StepState::Succeeded, at(286)),
            stop,
        );
        assert_eq!(
            answered_alike(&*store, &*single, &r, &everyone, late, "after a failure").await,
            conflict("step prepare ended as failed; step stop cannot begin")
        );
        assert_eq!(
            steps_of(&b).await,
            vec![
                (StepName::Fetch, Succeeded, at(250), Some(at(250))),
                (StepName::Prepare, StepState::Failed, at(250), Some(at(285))),
            ]
        );

        // The server gives up on d (its deadline passed) while d runs prepare,
        // and d's agent reports the step's success with the next begin after
        // that: refused, as the task has ended, and nothing begins.
        let claim = begin_write(&r, &d, StepName::Prepare, at(288));
        assert_eq!(
            answered_alike(&*store, &*single, &r, &everyone, claim, "claiming d").await,
            Ok(AgentWritten::Recorded)
        );
        for each in [&store, &single] {
            assert!(each
                .task_fail(&r.id, &d.id, "deadline", at(290))
                .await
                .unwrap());
        }
        let late = then(
            end_write(&r, &d, StepName::Prepare, StepState::Succeeded, at(291)),
            stop,
        );
        assert_eq!(
            answered_alike(&*store, &*single, &r, &everyone, late, "after task_fail").await,
            conflict("the task is failed; step prepare cannot end")
        );
        assert_eq!(
            steps_of(&d).await,
            vec![
                (StepName::Fetch, Succeeded, at(288), Some(at(288))),
                (StepName::Prepare, StepState::Failed, at(288), Some(at(290))),
            ]
        );
    }

    pub async fn a_refused_agent_write_is_undone_alone(backend: &dyn Backend) {
        let store = backend.open().await;
        let (r, [a, b, ..]) = agent_fixture(&*store).await;
        assert!(store.task_claim(&r.id, &a.id, at(210)).await.unwrap());
        store
            .step_begin(&r.id, &a.id, StepName::Start, at(220))
            .await
            .unwrap();

        // A first begin that claims its task and is then refused (the server
        // records fetch itself) is undone with its claim: b's task stays as it
        // was, without a fetch step, and its next begin claims it.
        let b_before = fetched(&*store, &r.id, &b).await;
        let results = store
            .agent_writes(vec![begin_write(&r, &b, StepName::Fetch, at(211))])
            .await
            .expect("the call is written");
        assert_eq!(
            answers(results),
            vec![Err(format!(
                "{:?}",
                StoreError::Conflict("step fetch already finished".into())
            ))]
        );
        assert_eq!(fetched(&*store, &r.id, &b).await, b_before);
        assert_eq!(store.step_list(&r.id, Some(&b.id)).await.unwrap(), vec![]);
        let results = store
            .agent_writes(vec![begin_write(&r, &b, StepName::Prepare, at(212))])
            .await
            .unwrap();
        assert_eq!(answers(results), vec![Ok(AgentWritten::Recorded)]);
        assert_eq!(fetched(&*store, &r.id, &b).await.started_at, Some(at(212)));

        let start_of_a = || {
            let store = Arc::clone(&store);
            let (release, instance) = (r.id.clone(), a.id.clone());
            async move {
                store
                    .step_list(&release, Some(&instance))
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|s| s.step == StepName::Start)
                    .unwrap()
            }
        };
        let task_before = fetched(&*store, &r.id, &a).await;

        // The step end succeeds, then the task's end is refused (a task never
        // ends as running): the whole write is undone, the writes around it are
        // not, and the output after it finds the step still running.
        let results = store
            .agent_writes(vec![
                output_write(&r, &a, StepName::Start, "one\n"),
                ending(
                    end_write(&r, &a, StepName::Start, StepState::Succeeded, at(230)),
                    TaskState::Running,
                    None,
                ),
                output_write(&r, &a, StepName::Start, "two\n"),
            ])
            .await
            .expect("the call is written");
        assert_eq!(
            answers(results),
            vec![
                Ok(AgentWritten::Recorded),
                Err(format!(
                    "{:?}",
                    StoreError::Conflict("a task cannot be finished as running".into())
                )),
                Ok(AgentWritten::Recorded),
            ]
        );
        let start = start_of_a().await;
        assert_eq!(
            (
                start.state,
                start.finished_at,
                start.exit_code,
                start.output.as_str()
            ),
            (StepState::Running, None, None, "one\ntwo\n")
        );
        assert_eq!(fetched(&*store, &r.id, &a).await, task_before);

        // The step can still end, and then ends its task.
        let results = store
            .agent_writes(vec![ending(
                end_write(&r, &a, StepName::Start, StepState::Succeeded, at(240)),
                TaskState::Succeeded,
                None,
            )])
            .await
            .unwrap();
        // b is running and d still dispatched.
        assert_eq!(
            answers(results),
            vec![Ok(AgentWritten::StepEnded {
                changed: true,
                task_finished: true,
                batch_open: 2,
            })]
        );
        assert_eq!(start_of_a().await.finished_at, Some(at(240)));
        assert_eq!(
            fetched(&*store, &r.id, &a).await.state,
            TaskState::Succeeded
        );
    }

    pub async fn steps_without_output_are_the_steps_with_their_output_emptied(
        backend: &dyn Backend,
    ) {
        let store = backend.open().await;
        let [a, b, c] = shop(&*store).await;
        let r = release(1, "shop", "prod", "v2");
        create(&*store, &r, &[(&a, 0), (&b, 0), (&c, 1)]).await;
        run_batch(&*store, &r.id, 0, &[&a, &b], at(200)).await;
        for (instance, step, chunk, keep) in [
            (&a, StepName::Prepare, "mkdir -p /srv\n", 1024),
            // Cut to its last 8 bytes: the dropped count stays in the list.
            (&a, StepName::Pull, "pulling the image\n", 8),
            (&b, StepName::Start, "started\n", 1024),
        ] {
            store
                .step_begin(&r.id, &instance.id, step, at(300))
                .await
                .unwrap();
            store
                .step_append_output(&r.id, &instance.id, step, chunk, 3, keep, None)
                .await
                .unwrap();
        }
        assert!(store
            .step_finish(
                &r.id,
                &a.id,
                StepName::Prepare,
                StepState::Failed,
                Some(1),
                Some("no space"),
                at(310)
            )
            .await
            .unwrap());

        for instance in [None, Some(&a.id), Some(&b.id), Some(&c.id)] {
            let with = store
                .step_list(&r.id, instance.map(String::as_str))
                .await
                .unwrap();
            let without = store
                .step_list_without_output(&r.id, instance.map(String::as_str))
                .await
                .unwrap();
            let emptied: Vec<StepRecord> = with
                .iter()
                .cloned()
                .map(|mut s| {
                    s.output.clear();
                    s
                })
                .collect();
            assert_eq!(without, emptied, "steps of {instance:?}");
        }
        // The comparison above had output to leave out.
        let all = store.step_list(&r.id, None).await.unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all.iter().filter(|s| !s.output.is_empty()).count(), 3);
        let without = store.step_list_without_output(&r.id, None).await.unwrap();
        assert!(without.iter().all(|s| s.output.is_empty()));
        let pull = without.iter().find(|s| s.step == StepName::Pull).unwrap();
        assert_eq!(pull.dropped_bytes, 3 + 10);
        let prepare = without
            .iter()
            .find(|s| s.step == StepName::Prepare)
            .unwrap();
        assert_eq!(
            (prepare.state, prepare.exit_code, prepare.message.as_deref()),
            (StepState::Failed, Some(1), Some("no space"))
        );
        assert_eq!(
            store
                .step_list_without_output(&r.id, Some(&c.id))
                .await
                .unwrap(),
            vec![]
        );
        let unknown = release_id(99);
        expect_not_found(
            store.step_list_without_output(&unknown, None).await,
            "release",
            &unknown,
        );
    }

    pub async fn release_detail_is_the_release_its_tasks_and_their_steps(backend: &dyn Backend) {
        let store = backend.open().await;
        let [a, b, c] = shop(&*store).await;
        let r = release(1, "shop", "prod", "v2");
        create(&*store, &r, &[(&a, 0), (&b, 0), (&c, 1)]).await;
        run_batch(&*store, &r.id, 0, &[&a, &b], at(200)).await;
        // a runs stop before start, the opposite of their names' order.
        for (instance, step, at_secs) in [
            (&a, StepName::Prepare, 300),
            (&a, StepName::Stop, 301),
            (&a, StepName::Start, 302),
            (&b, StepName::Pull, 303),
        ] {
            store
                .step_begin(&r.id, &instance.id, step, at(at_secs))
                .await
                .unwrap();
            store
                .step_append_output(&r.id, &instance.id, step, "out\n", 0, 1024, None)
                .await
                .unwrap();
        }

        let detail = store.release_detail(&r.id).await.unwrap();
        assert_eq!(detail.release, store.release_fetch(&r.id).await.unwrap());
        assert_eq!(detail.tasks, store.task_list(&r.id).await.unwrap());
        // Each instance's steps together, in run order, without output.
        let mut seen: Vec<&str> = Vec::new();
        for step in &detail.steps {
            if seen.last() != Some(&step.instance_id.as_str()) {
                assert!(
                    !seen.contains(&step.instance_id.as_str()),
                    "the steps of {} are not together",
                    step.instance_id
                );
                seen.push(&step.instance_id);
            }
        }
        for instance in [&a, &b, &c] {
            let own: Vec<StepRecord> = detail
                .steps
                .iter()
                .filter(|s| s.instance_id == instance.id)
                .cloned()
                .collect();
            assert_eq!(
                own,
                store
                    .step_list_without_output(&r.id, Some(&instance.id))
                    .await
                    .unwrap(),
                "steps of {}",
                instance.name
            );
        }
        let names: Vec<StepName> = detail
            .steps
            .iter()
            .filter(|s| s.instance_id == a.id)
            .map(|s| s.step)
            .collect();
        assert_eq!(
            names,
            vec![
                StepName::Fetch,
                StepName::Prepare,
                StepName::Stop,
                StepName::Start
            ]
        );
        assert_eq!(detail.steps.len(), 4 + 2);
        let unknown = release_id(99);
        expect_not_found(store.release_detail(&unknown).await, "release", &unknown);
    }

    pub async fn a_filtered_release_detail_has_the_steps_of_the_picked_tasks_only(
        backend: &dyn Backend,
    ) {
        let store = backend.open().await;
        let [a, b, c] = shop(&*store).await;
        let mut more = Vec::new();
        for (n, name) in [(4, "web-d"), (5, "web-e"), (6, "web-f")] {
            more.push(register(&*store, n, name).await);
        }
        store
            .group_add_instances("shop", "prod", &ids(&[4, 5, 6]))
            .await
            .unwrap();
        let r = release(1, "shop", "prod", "v2");
        let [d, e, f] = [&more[0], &more[1], &more[2]];
        create(
            &*store,
            &r,
            &[(&a, 0), (&b, 0), (&c, 0), (d, 1), (e, 1), (f, 1)],
        )
        .await;
        run_batch(&*store, &r.id, 0, &[&a, &b, &c], at(200)).await;
        for (instance, step, at_secs) in [
            (&a, StepName::Stop, 301),
            (&a, StepName::Start, 302),
            (&b, StepName::Pull, 303),
            (&c, StepName::Pull, 304),
        ] {
            store
                .step_begin(&r.id, &instance.id, step, at(at_secs))
                .await
                .unwrap();
        }
        let whole = store.release_detail(&r.id).await.unwrap();
        // Two picked of six reads instance by instance, three of six in one pass
        // that drops the others, all six in one pass (see the SQLite store); all
        // must give the same.
        for picked in [vec![&a, &c], vec![&a, &b, d], vec![&a, &b, &c, d, e, f]] {
            let ids: Vec<String> = picked.iter().map(|i| i.id.clone()).collect();
            let filter_ids = ids.clone();
            let detail = store
                .release_detail_where(
                    &r.id,
                    Box::new(|_: &BatchSummary| true),
                    Box::new(move |t: &TaskRecord| filter_ids.contains(&t.instance_id)),
                )
                .await
                .unwrap();
            assert_eq!(detail.release, whole.release);
            assert_eq!(detail.tasks, whole.tasks);
            assert_eq!(
                detail.batches,
                store.task_batch_summaries(&r.id).await.unwrap()
            );
            let mut expected: Vec<StepRecord> = whole
                .steps
                .iter()
                .filter(|s| ids.contains(&s.instance_id))
                .cloned()
                .collect();
            let mut got = detail.steps.clone();
            // Instances come in no particular order; each one's steps in run order.
            let key = |s: &StepRecord| s.instance_id.clone();
            expected.sort_by_key(key);
            got.sort_by_key(key);
            assert_eq!(got, expected, "picked {ids:?}");
            assert!(got.iter().any(|s| s.instance_id == a.id));
        }
        // Picking batches: only their tasks are read, in the same order, and only
        // their steps, also when the others' steps are read in the same pass (all
        // three of the second batch wanted are half of the release's six).
        for batch in [0, 1] {
            let detail = store
                .release_detail_where(
                    &r.id,
                    Box::new(move |b: &BatchSummary| b.batch == batch),
                    Box::new(|_: &TaskRecord| true),
                )
                .await
                .unwrap();
            let tasks: Vec<TaskRecord> = whole
                .tasks
                .iter()
                .filter(|t| t.batch == batch)
                .cloned()
                .collect();
            assert_eq!(detail.tasks, tasks, "batch {batch}");
            assert_eq!(detail.batches.len(), 2);
            let mut expected: Vec<StepRecord> = whole
                .steps
                .iter()
                .filter(|s| tasks.iter().any(|t| t.instance_id == s.instance_id))
                .cloned()
                .collect();
            let mut got = detail.steps.clone();
            let key = |s: &StepRecord| (s.instance_id.clone(), s.started_at);
            expected.sort_by_key(key);
            got.sort_by_key(key);
            assert_eq!(got, expected, "batch {batch}");
            assert_eq!(got.is_empty(), batch == 1);
        }
        let unknown = release_id(99);
        expect_not_found(
            store
                .release_detail_where(
                    &unknown,
                    Box::new(|_: &BatchSummary| true),
                    Box::new(|_: &TaskRecord| true),
                )
                .await,
            "release",
            &unknown,
        );
    }

    pub async fn a_poll_look_is_the_running_tasks_and_the_work_to_hand_out(backend: &dyn Backend) {
        let store = backend.open().await;
        // a, b and d dispatched in batch 0; c pending in batch 1.
        let (r, [a, b, c, d]) = agent_fixture(&*store).await;
        assert!(store.task_claim(&r.id, &a.id, at(210)).await.unwrap());
        let claimed = fetched(&*store, &r.id, &a).await;
        let outsider = register(&*store, 5, "web-e").await;
        for (instance, running, next) in [
            (&a, vec![claimed], None),
            (&b, vec![], Some(r.id.clone())),
            (&c, vec![], None),
            (&d, vec![], Some(r.id.clone())),
            (&outsider, vec![], None),
        ] {
            let look = store.task_poll_look(&instance.id).await.unwrap();
            assert_eq!(
                look,
                PollLook { running, next },
                "the look of {}",
                instance.name
            );
            assert_eq!(
                look.running,
                store
                    .task_list_running_for_instance(&instance.id)
                    .await
                    .unwrap()
            );
            assert_eq!(
                look.next,
                store.task_next_dispatched(&instance.id).await.unwrap()
            );
        }
    }
}

/// The SQLite backend: a fresh file in a temporary directory per check.
mod sqlite {
    use super::*;
    use std::path::PathBuf;
    use tokio::sync::Mutex;
    use wharf_store::SqliteStore;

    pub struct SqliteBackend {
        // Kept so that the directory lives as long as the backend.
        _dir: tempfile::TempDir,
        path: PathBuf,
        opened: Mutex<Option<SqliteStore>>,
    }

    impl SqliteBackend {
        pub fn new() -> Self {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let path = dir.path().join("wharf.db");
            SqliteBackend {
                _dir: dir,
                path,
                opened: Mutex::new(None),
            }
        }
    }

    #[async_trait]
    impl Backend for SqliteBackend {
        async fn open(&self) -> Arc<dyn Store> {
            let mut opened = self.opened.lock().await;
            if let Some(previous) = opened.take() {
                previous.close().await;
            }
            let store = SqliteStore::open(&self.path)
                .await
                .expect("the database opens");
            *opened = Some(store.clone());
            Arc::new(store)
        }
    }

    conformance!(SqliteBackend::new());

    /// Checks of SQLite itself rather than of the trait.
    mod file {
        use super::*;

        #[tokio::test]
        async fn opening_creates_the_file_and_its_parent_must_exist() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("new.db");
            let store = SqliteStore::open(&path).await.unwrap();
            assert!(path.exists());
            assert_eq!(store.api_token_count().await.unwrap(), 0);
            store.close().await;
            // Opening again runs no migration twice.
            let store = SqliteStore::open(&path).await.unwrap();
            assert_eq!(store.app_list().await.unwrap(), vec![]);
            store.close().await;

            let missing_parent = dir.path().join("no-such-dir").join("wharf.db");
            assert!(matches!(
                SqliteStore::open(&missing_parent).await,
                Err(wharf_store::StoreError::Backend(_))
            ));
        }

        #[tokio::test]
        async fn the_database_is_in_wal_mode() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("wharf.db");
            let store = SqliteStore::open(&path).await.unwrap();
            store
                .app_create(&crate::fixtures::app("shop"))
                .await
                .unwrap();
            assert!(dir.path().join("wharf.db-wal").exists());
            store.close().await;
        }
    }
}

mod postgres {
    use super::*;
    use tokio::sync::Mutex;
    use wharf_store::PostgresStore;

    /// A fresh database on the tests' PostgreSQL server; opening again closes
    /// the store opened before and connects anew.
    pub struct PostgresBackend {
        url: String,
        opened: Mutex<Option<PostgresStore>>,
    }

    impl PostgresBackend {
        pub async fn new() -> Self {
            PostgresBackend {
                url: crate::pg_server::fresh_database().await,
                opened: Mutex::new(None),
            }
        }
    }

    #[async_trait]
    impl Backend for PostgresBackend {
        async fn open(&self) -> Arc<dyn Store> {
            let mut opened = self.opened.lock().await;
            if let Some(previous) = opened.take() {
                previous.close().await;
            }
            let store = PostgresStore::connect(&self.url)
                .await
                .expect("the database opens");
            *opened = Some(store.clone());
            Arc::new(store)
        }
    }

    conformance!(PostgresBackend::new().await);

    /// Checks of what only a server shared by several processes shows: refusals
    /// at connect, migrations, and writes from two stores (two servers) at once.
    mod server {
        use super::*;
        use crate::fixtures::*;
        use wharf_domain::release::{ReleaseState, StepName};
        use wharf_store::{AgentWrite, InstanceRecord, StoreError, TaskState};

        /// `url` with its user replaced by `user` (and no password).
        fn with_user(url: &str, user: &str) -> String {
            let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
            let rest = rest.split_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{user}@{rest}")
        }

        fn expect_unavailable(result: Result<PostgresStore, StoreError>, says: &str) {
            match result {
                Err(StoreError::Unavailable(message)) => {
                    assert!(message.contains(says), "{message:?} does not say {says:?}")
                }
                other => panic!("expected Unavailable({says:?}), got {other:?}"),
            }
        }

        #[tokio::test]
        async fn bad_urls_unreachable_servers_and_unknown_roles_are_refused() {
            let url = crate::pg_server::fresh_database().await;
            expect_unavailable(
                PostgresStore::connect("postgres://u:secret@host:notaport/db").await,
                "invalid value for option `port`",
            );
            expect_unavailable(
                PostgresStore::connect("postgres://u:secret@127.0.0.1:1/db").await,
                "error connecting to server",
            );
            expect_unavailable(
                PostgresStore::connect(&with_user(&url, "no_such_role")).await,
                "no_such_role",
            );
            expect_unavailable(
                PostgresStore::connect(&crate::pg_server::with_database(&url, "no_such_db")).await,
                "no_such_db",
            );
            // None of the refusals shows the password.
            let refused = PostgresStore::connect("postgres://u:secret@127.0.0.1:1/db")
                .await
                .expect_err("refused");
            assert!(!format!("{refused} {refused:?}").contains("secret"));
        }

        #[tokio::test]
        async fn a_database_of_a_newer_schema_is_refused() {
            let url = crate::pg_server::fresh_database().await;
            let store = PostgresStore::connect(&url).await.expect("migrated");
            store.app_create(&app("shop")).await.unwrap();
            store.close().await;
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .execute(
                    "INSERT INTO wharf_migrations (version, description, checksum) \
                     VALUES (9999, 'from the future', '\\x00')",
                    &[],
                )
                .await
                .unwrap();
            match PostgresStore::connect(&url).await {
                Err(StoreError::Corrupt(message)) => {
                    assert!(message.contains("newer Wharf"), "{message}");
                    assert!(message.contains("9999"), "{message}");
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }

        #[tokio::test]
        async fn servers_starting_together_migrate_once() {
            let url = crate::pg_server::fresh_database().await;
            let starts: Vec<_> = (0..4)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move { PostgresStore::connect(&url).await })
                })
                .collect();
            let mut stores = Vec::new();
            for start in starts {
                stores.push(start.await.unwrap().expect("every server starts"));
            }
            stores[0].app_create(&app("shop")).await.unwrap();
            assert_eq!(stores[3].app_list().await.unwrap(), vec![app("shop")]);
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let applied: i64 = client
                .query_one("SELECT COUNT(*) FROM wharf_migrations", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(applied, 1);
        }

        /// Two stores on one database, as two servers have.
        async fn two_servers() -> (Arc<dyn Store>, Arc<dyn Store>) {
            let url = crate::pg_server::fresh_database().await;
            let one = PostgresStore::connect(&url).await.expect("first server");
            let two = PostgresStore::connect(&url).await.expect("second server");
            (Arc::new(one), Arc::new(two))
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn two_servers_claim_and_end_each_task_once() {
            let (one, two) = two_servers().await;
            let instances = shop(&*one).await;
            let release = release(1, "shop", "prod", "v1");
            let targets: Vec<_> = instances.iter().map(|i| (i, 0)).collect();
            create(&*one, &release, &targets).await;
            shift(
                &*two,
                &release.id,
                ReleaseState::Pending,
                ReleaseState::Running,
                at(1),
            )
            .await;
            two.task_dispatch_batch(&release.id, 0, at(1), at(600))
                .await
                .unwrap();
            // Every task claimed by both servers at once: one claim each wins.
            let mut claims = Vec::new();
            for instance in &instances {
                for store in [&one, &two] {
                    let store = Arc::clone(store);
                    let (id, instance) = (release.id.clone(), instance.id.clone());
                    claims.push(tokio::spawn(async move {
                        store.task_claim(&id, &instance, at(2)).await
                    }));
                }
            }
            let mut won = 0;
            for claim in claims {
                if claim.await.unwrap().expect("a claim answers") {
                    won += 1;
                }
            }
            assert_eq!(won, instances.len());
            // Both servers end every task at once (its agent's report reached
            // both): each task ends once, and the counts move once.
            let mut ends = Vec::new();
            for instance in &instances {
                for store in [&one, &two] {
                    let store = Arc::clone(store);
                    let (id, instance) = (release.id.clone(), instance.id.clone());
                    ends.push(tokio::spawn(async move {
                        store
                            .task_finish(&id, &instance, TaskState::Succeeded, None, None, at(3))
                            .await
                    }));
                }
            }
            let mut ended = 0;
            for end in ends {
                if end.await.unwrap().expect("an end answers") {
                    ended += 1;
                }
            }
            assert_eq!(ended, instances.len());
            let batches = one.task_batch_summaries(&release.id).await.unwrap();
            assert_eq!(batches.len(), 1);
            assert_eq!(batches[0].succeeded, 3);
            assert_eq!(batches[0].open(), 0);
            assert_eq!(batches[0].total(), 3);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn group_commits_of_two_servers_land_together() {
            let (one, two) = two_servers().await;
            let instances = shop(&*one).await;
            let release = release(1, "shop", "prod", "v1");
            let targets: Vec<_> = instances.iter().map(|i| (i, 0)).collect();
            create(&*one, &release, &targets).await;
            run_batch(&*one, &release.id, 0, &[], at(1)).await;
            // Each server's batch begins `prepare` on every instance (the first
            // begin of a task claims it) and sends output after it, the two
            // servers going through the instances in opposite orders.
            let writes = |reverse: bool| {
                let mut order: Vec<&InstanceRecord> = instances.iter().collect();
                if reverse {
                    order.reverse();
                }
                order
                    .into_iter()
                    .flat_map(|instance| {
                        [
                            AgentWrite::StepBegin {
                                release_id: release.id.clone(),
                                instance_id: instance.id.clone(),
                                step: StepName::Prepare,
                                now: at(2),
                            },
                            AgentWrite::StepOutput {
                                release_id: release.id.clone(),
                                instance_id: instance.id.clone(),
                                step: StepName::Prepare,
                                chunk: "line\n".to_owned(),
                                dropped: 0,
                                keep_bytes: 1024,
                                offset: None,
                            },
                        ]
                    })
                    .collect::<Vec<AgentWrite>>()
            };
            let (first, second) = tokio::join!(
                one.agent_writes(writes(false)),
                two.agent_writes(writes(true))
            );
            for answers in [first.expect("one's batch"), second.expect("two's batch")] {
                assert_eq!(answers.len(), 6);
                for answer in answers {
                    answer.expect("every write lands");
                }
            }
            for instance in &instances {
                let task = one.task_fetch(&release.id, &instance.id).await.unwrap();
                assert_eq!(task.state, TaskState::Running);
                let steps = two
                    .step_list(&release.id, Some(&instance.id))
                    .await
                    .unwrap();
                let names: Vec<StepName> = steps.iter().map(|s| s.step).collect();
                assert_eq!(names, vec![StepName::Fetch, StepName::Prepare]);
                // Both servers' output landed, neither over the other.
                assert_eq!(steps[1].output, "line\nline\n");
            }
            let batches = two.task_batch_summaries(&release.id).await.unwrap();
            assert_eq!(batches[0].running, 3);
            assert_eq!(batches[0].dispatched, 0);
        }
    }
}
