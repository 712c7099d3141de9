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
