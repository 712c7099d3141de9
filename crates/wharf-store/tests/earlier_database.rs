//! A database made by an earlier Wharf opens, reads back and takes writes.
//!
//! `fixtures/store-made-by-sqlx.db` was made by the Wharf of commit 461e78a, whose
//! store ran on sqlx and recorded its migrations with sqlx's migrator: a server
//! with one agent (`host-a`), an application `shop` with a group `prod`, a registry
//! `hub` with a password, a `command` deployment `v1` and a `docker-image`
//! deployment `img`, one release of `v1` and one exec (both succeeded, with their
//! steps and output), a scaling group `web` and a second registration token. A
//! store that no longer recognised that migration record, or read a column
//! differently, fails here.

use std::path::{Path, PathBuf};
use wharf_domain::release::ReleaseState;
use wharf_store::{SqliteStore, Store, TaskState};

/// A copy of the fixture in a fresh directory (the store writes to the file).
fn copy_of_fixture(dir: &Path) -> PathBuf {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-made-by-sqlx.db");
    let path = dir.join("wharf.db");
    std::fs::copy(&fixture, &path).expect("copying the fixture");
    path
}

#[tokio::test]
async fn a_database_made_by_the_sqlx_store_opens_and_reads_back() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = copy_of_fixture(dir.path());
    let store = SqliteStore::open(&path)
        .await
        .expect("the earlier database opens");

    let app = store.app_fetch("shop").await.expect("the application");
    assert_eq!(app.description, "the fixture app");
    let instances = store.instance_list().await.expect("instances");
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].name, "host-a");
    let members = store.group_members("shop", "prod").await.expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].instance.id, instances[0].id);

    let registry = store.registry_fetch("hub").await.expect("the registry");
    assert_eq!(registry.username.as_deref(), Some("ci"));
    assert!(registry
        .password_sealed
        .is_some_and(|sealed| !sealed.is_empty()));
    let image = store
        .deployment_fetch("shop", "img")
        .await
        .expect("the docker-image deployment")
        .image
        .expect("an image");
    assert_eq!(
        (
            image.registry.as_str(),
            image.namespace.as_str(),
            image.repository.as_str(),
            image.tag.as_str()
        ),
        ("hub", "acme", "web", "1.2")
    );

    let releases = store
        .release_list(Some("shop"), Some("prod"), 10)
        .await
        .expect("releases");
    assert_eq!(releases.len(), 1);
    let release = &releases[0];
    assert_eq!(release.state, ReleaseState::Succeeded);
    assert_eq!(release.deployment, "v1");
    let tasks = store.task_list(&release.id).await.expect("tasks");
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].state, TaskState::Succeeded);
    // The per-batch counts (migration 8) were made from the tasks already there.
    let summaries = store
        .task_batch_summaries(&release.id)
        .await
        .expect("batch summaries");
    assert_eq!(summaries.len(), 1);
    assert_eq!(
        (
            summaries[0].batch,
            summaries[0].succeeded,
            summaries[0].open()
        ),
        (tasks[0].batch, 1, 0)
    );
    assert_eq!(summaries[0].last_finished_at, tasks[0].finished_at);
    let steps = store.step_list(&release.id, None).await.expect("steps");
    let start = steps
        .iter()
        .find(|s| s.step.as_str() == "start")
        .expect("the start step");
    assert!(start.output.contains("starting v1"), "{:?}", start.output);

    let execs = store
        .exec_list(Some("shop"), Some("prod"), 10)
        .await
        .expect("execs");
    assert_eq!(execs.len(), 1);
    let (_, exec) = store.exec_fetch(&execs[0].id).await.expect("the exec");
    assert!(exec.script.contains("hello from exec"), "{:?}", exec.script);
    let scaling = store
        .scaling_group_fetch("web")
        .await
        .expect("the scaling group");
    assert_eq!(
        (scaling.app.as_str(), scaling.group.as_str()),
        ("shop", "prod")
    );
    assert_eq!(
        store.registration_token_list().await.expect("tokens").len(),
        2
    );

    // It takes writes, and opens again without applying anything twice.
    store
        .app_create(&wharf_store::AppRecord {
            name: "after-upgrade".to_owned(),
            description: String::new(),
            created_at: chrono::DateTime::from_timestamp_millis(1_800_000_000_000).expect("a time"),
        })
        .await
        .expect("a write");
    store.close().await;
    let again = SqliteStore::open(&path).await.expect("opens a second time");
    assert_eq!(again.app_list().await.expect("apps").len(), 2);
}

/// A database left at migration 3 (before execs rebuilt the release tables in
/// 0004), with a finished release, two instances and their steps: opening it
/// applies 0004–0007, and everything reads back as it was written, with a
/// dispatched task still claimable through the trigger of 0007.
#[tokio::test]
async fn a_database_at_migration_3_upgrades_through_the_release_table_rebuild() {
    use rusqlite::{params, Connection};
    use sha2::{Digest as _, Sha384};
    use wharf_domain::release::StepName;
    use wharf_store::StepState;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("wharf.db");
    {
        let conn = Connection::open(&path).expect("a new database");
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE _sqlx_migrations (
                version BIGINT PRIMARY KEY, description TEXT NOT NULL,
                installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
                success BOOLEAN NOT NULL, checksum BLOB NOT NULL,
                execution_time BIGINT NOT NULL);",
        )
        .expect("the migrations table");
        let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        for (version, file, description) in [
            (1, "0001_core_resources.sql", "core resources"),
            (2, "0002_releases.sql", "releases"),
            (3, "0003_scaling_groups.sql", "scaling groups"),
        ] {
            let sql = std::fs::read_to_string(migrations.join(file)).expect("a migration");
            conn.execute_batch(&sql).expect("applied");
            conn.execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (?, ?, TRUE, ?, 0)",
                params![version, description, Sha384::digest(sql.as_bytes()).to_vec()],
            )
            .expect("recorded");
        }
        conn.execute_batch(
            "INSERT INTO apps (name, description, created_at) VALUES ('shop', 'at v3', 1000);
             INSERT INTO instances (id, name, hostname, address, os, arch, agent_version,
                 credential_hash, registered_at, last_heartbeat_at) VALUES
                 ('i-aaaaaaaaaaaaaaaa', 'web-a', 'web-a', '10.0.0.1', 'linux', 'x86_64', '0.1.0', 'hash-a', 1000, 5000),
                 ('i-bbbbbbbbbbbbbbbb', 'web-b', 'web-b', '10.0.0.2', 'linux', 'x86_64', '0.1.0', 'hash-b', 1000, 5000);
             INSERT INTO deployments (app, name, kind, workdir, start_script, stop_script,
                 pull_timeout_secs, script_timeout_secs, verify_timeout_secs, created_at) VALUES
                 ('shop', 'v1', 'command', '/srv/shop', 'echo start', 'echo stop', 300, 600, 60, 1100);
             INSERT INTO app_groups (app, name, created_at, current_deployment) VALUES ('shop', 'prod', 1200, 'v1');
             INSERT INTO group_members (app, group_name, instance_id, deployment, added_at) VALUES
                 ('shop', 'prod', 'i-aaaaaaaaaaaaaaaa', 'v1', 1300),
                 ('shop', 'prod', 'i-bbbbbbbbbbbbbbbb', NULL, 1300);
             INSERT INTO releases (id, app, group_name, deployment, state, pause, batch_count,
                 batch_interval_secs, max_failures, rollback_on_failure, kind, continued_through,
                 created_at, started_at, finished_at) VALUES
                 ('r-0000000000000001', 'shop', 'prod', 'v1', 'running', 'auto', 2, 0, 0, 0, 'release', 0,
                  2000, 2001, NULL);
             INSERT INTO release_tasks (release_id, instance_id, instance_name, batch, state,
                 dispatched_at, started_at, finished_at, deadline_at) VALUES
                 ('r-0000000000000001', 'i-aaaaaaaaaaaaaaaa', 'web-a', 0, 'succeeded', 2002, 2003, 2010, 9000),
                 ('r-0000000000000001', 'i-bbbbbbbbbbbbbbbb', 'web-b', 1, 'dispatched', 2020, NULL, NULL, 9000);
             INSERT INTO release_steps (release_id, instance_id, step, ordinal, state, started_at,
                 finished_at, exit_code, output) VALUES
                 ('r-0000000000000001', 'i-aaaaaaaaaaaaaaaa', 'fetch', 0, 'succeeded', 2003, 2003, NULL, ''),
                 ('r-0000000000000001', 'i-aaaaaaaaaaaaaaaa', 'stop', 3, 'succeeded', 2004, 2005, 0, 'stopping\n'),
                 ('r-0000000000000001', 'i-aaaaaaaaaaaaaaaa', 'start', 4, 'succeeded', 2006, 2010, 0, 'starting\n');",
        )
        .expect("the data of a v3 database");
    }

    let store = SqliteStore::open(&path)
        .await
        .expect("the v3 database opens");
    let release = store
        .release_fetch("r-0000000000000001")
        .await
        .expect("the release survives the rebuild");
    assert_eq!(
        (
            release.deployment.as_str(),
            release.state,
            release.batch_count
        ),
        ("v1", ReleaseState::Running, 2)
    );
    let tasks = store.task_list(&release.id).await.expect("tasks");
    assert_eq!(
        tasks
            .iter()
            .map(|t| (t.instance_name.as_str(), t.state))
            .collect::<Vec<_>>(),
        vec![
            ("web-a", TaskState::Succeeded),
            ("web-b", TaskState::Dispatched)
        ]
    );
    let steps = store.step_list(&release.id, None).await.expect("steps");
    assert_eq!(
        steps
            .iter()
            .map(|s| (s.step, s.state, s.output.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (StepName::Fetch, StepState::Succeeded, ""),
            (StepName::Stop, StepState::Succeeded, "stopping\n"),
            (StepName::Start, StepState::Succeeded, "starting\n"),
        ]
    );
    let members = store.group_members("shop", "prod").await.expect("members");
    assert_eq!(members.len(), 2);
    // The docker columns of 0005 start empty; 0007's trigger records the fetch
    // step of a claim made after the upgrade.
    let b = store.instance_fetch("web-b").await.expect("web-b");
    assert_eq!(b.name, "web-b");
    assert!(store
        .task_claim(
            &release.id,
            &b.id,
            chrono::DateTime::from_timestamp_millis(3000).expect("a time"),
        )
        .await
        .expect("a claim"));
    assert_eq!(
        store
            .task_fetch(&release.id, &b.id)
            .await
            .expect("web-b's task")
            .state,
        TaskState::Running
    );
    // The per-batch counts of migration 8 start from the tasks as they were and
    // follow the claim.
    let tasks = store.task_list(&release.id).await.expect("tasks");
    let summaries = store
        .task_batch_summaries(&release.id)
        .await
        .expect("batch summaries");
    assert_eq!(
        summaries
            .iter()
            .map(|s| (s.batch, s.succeeded, s.running, s.open()))
            .collect::<Vec<_>>(),
        tasks
            .iter()
            .map(|t| (
                t.batch,
                u32::from(t.state == TaskState::Succeeded),
                u32::from(t.state == TaskState::Running),
                u32::from(t.state == TaskState::Running)
            ))
            .collect::<Vec<_>>()
    );
    let fetch = store
        .step_list(&release.id, Some(&b.id))
        .await
        .expect("web-b's steps");
    assert_eq!(
        fetch.iter().map(|s| s.step).collect::<Vec<_>>(),
        vec![StepName::Fetch]
    );
}
