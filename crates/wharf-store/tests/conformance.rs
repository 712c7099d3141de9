//! The store conformance suite: what every [`Store`] backend must do, written
//! against the trait alone. Each check in `suite` takes a [`Backend`]; a backend
//! runs the whole suite with one `conformance!` line, as SQLite does at the end
//! of this file, so a new backend (PostgreSQL) proves itself by the same checks.

use async_trait::async_trait;
use std::sync::Arc;
use wharf_store::Store;

/// A database under test. It owns the database and opens stores on it; opening
/// again closes the store opened before, so that a check can show what survives
/// a restart.
#[async_trait]
pub trait Backend: Send + Sync {
    async fn open(&self) -> Arc<dyn Store>;
}

/// Expands to one test per check of the suite, each on a fresh backend made by
/// `$make`.
macro_rules! conformance {
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
            everything_survives_reopening,
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
    use std::collections::BTreeMap;
    use wharf_domain::deployment::VerifySpec;
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
