//! The data directory: kept private, and a server that refuses to start without
//! the key its store's sealed values were sealed with.

use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

mod common;

use common::{data_dir, Server};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn config(dir: &Path) -> wharf_server::ServerConfig {
    wharf_server::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        database: None,
    }
}

async fn refusal(dir: &Path) -> String {
    match wharf_server::bind(config(dir)).await {
        Ok(_) => panic!("the server started"),
        Err(err) => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

#[tokio::test]
async fn the_data_directory_and_the_database_files_are_private() {
    // A data directory the server makes is 0700.
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    server.post("/api/v1/apps", json!({"name": "shop"})).await;
    assert_eq!(mode(&dir), 0o700);
    for name in ["wharf.db", "wharf.db-wal", "secret.key", "admin.token"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    server.stop().await;

    // One the operator made is left as it is (it may be shared), but the files
    // the server makes in it are private all the same.
    let (_tmp, dir) = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start(&dir).await;
    server.post("/api/v1/apps", json!({"name": "shop"})).await;
    assert_eq!(
        mode(&dir),
        0o755,
        "an existing directory's mode is the operator's"
    );
    for name in ["wharf.db", "wharf.db-wal", "secret.key", "admin.token"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_store_with_sealed_passwords_refuses_a_missing_or_different_key() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let (status, body) = server
        .post(
            "/api/v1/registries",
            json!({"name": "main", "endpoint": "registry.example.com", "username": "u", "password": "hunter2-secret"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    server.stop().await;
    let key = dir.join("secret.key");
    let original = std::fs::read(&key).unwrap();

    std::fs::remove_file(&key).unwrap();
    let missing = refusal(&dir).await;
    println!("without the key: {missing}");
    assert!(
        missing.contains("secret.key") && missing.contains("restore"),
        "{missing}"
    );
    assert!(!key.exists(), "no new key was made in its place");

    std::fs::write(&key, [7u8; 32]).unwrap();
    let different = refusal(&dir).await;
    println!("with another key: {different}");
    assert!(
        different.contains("does not open") && different.contains("main"),
        "{different}"
    );
    assert!(!different.contains("hunter2"), "{different}");

    // The right key again: the server starts.
    std::fs::write(&key, &original).unwrap();
    let server = Server::start(&dir).await;
    server.stop().await;
}

#[tokio::test]
async fn a_store_without_sealed_values_gets_a_new_key() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    server.stop().await;
    std::fs::remove_file(dir.join("secret.key")).unwrap();
    let server = Server::start(&dir).await;
    assert!(dir.join("secret.key").exists());
    server.stop().await;
}
