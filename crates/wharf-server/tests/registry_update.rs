//! `PATCH /api/v1/registries/{name}`: a rotated password reaches a release that
//! was paused across the rotation, and bad updates are refused with the registry
//! unchanged.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

mod common;

use common::{data_dir, fleet, Server};

async fn patch(server: &Server, name: &str, body: Value) -> (StatusCode, Value) {
    server
        .call(
            Method::PATCH,
            &format!("/api/v1/registries/{name}"),
            Some(body),
        )
        .await
}

#[tokio::test]
async fn a_rotated_password_reaches_a_release_paused_across_the_rotation() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 2).await;
    let id = server
        .create_release(
            "prod",
            json!({"deployment": "v1", "batches": 2, "pause": "first"}),
        )
        .await;
    // Batch 1 pulls with the password the registry had.
    let (first, work) = loop {
        let mut found = None;
        for agent in &agents {
            if let Some(work) = agent.poll(1).await {
                found = Some((agent, work));
                break;
            }
        }
        if let Some(found) = found {
            break found;
        }
    };
    assert_eq!(work["image"]["password"], "p?a>s/s+w=o\"r' d");
    first.run(&work, None).await;
    server.wait_state(&id, "paused").await;

    let (status, body) = patch(&server, "main", json!({"password": "rotated-2"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["username"], "u",
        "a password alone keeps the username: {body}"
    );
    assert!(!body.to_string().contains("rotated-2"), "{body}");

    let (status, body) = server
        .post(&format!("/api/v1/releases/{id}/continue"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = agents.iter().find(|a| a.id != first.id).unwrap();
    let work = second.work().await;
    assert_eq!(
        work["image"]["password"], "rotated-2",
        "the next pull uses the new password"
    );
    second.run(&work, None).await;
    server.wait_state(&id, "succeeded").await;
    server.stop().await;
}

#[tokio::test]
async fn bad_updates_are_refused_and_change_nothing() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    server.post("/api/v1/apps", json!({"name": "shop"})).await;
    let (status, _) = server
        .post(
            "/api/v1/registries",
            json!({"name": "main", "endpoint": "registry.example.com", "private_endpoint": "10.0.0.5:5000",
                   "username": "u", "password": "p"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = server
        .post(
            "/api/v1/apps/shop/deployments",
            json!({"name": "v1", "type": "docker-image", "workdir": "/srv/shop",
                   "image": {"registry": "main", "namespace": "shop", "repository": "web", "tag": "1", "private_network": true},
                   "start_script": "docker run -d web", "stop_script": "docker rm -f web || true"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let before = server.get("/api/v1/registries/main").await;

    let cases = [
        (json!({}), "body"),
        (json!({"endpoint": "not a host!"}), "endpoint"),
        (json!({"username": "someone-else"}), "password"),
        (json!({"private_endpoint": ""}), "private_endpoint"),
    ];
    for (update, field) in cases {
        let (status, body) = patch(&server, "main", update.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{update}: {body}");
        assert_eq!(body["error"]["field"], field, "{update}: {body}");
    }
    let (status, body) = patch(&server, "nope", json!({"insecure": true})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found")),
        "{body}"
    );
    assert_eq!(
        server.get("/api/v1/registries/main").await,
        before,
        "nothing changed"
    );

    let (status, body) = patch(
        &server,
        "main",
        json!({"endpoint": "mirror.example.com:5443", "insecure": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["endpoint"], &body["insecure"]),
        (&json!("mirror.example.com:5443"), &json!(true))
    );
    let deployment = server.get("/api/v1/apps/shop/deployments/v1").await;
    assert!(
        deployment["registry_address"]
            .as_str()
            .unwrap()
            .starts_with("10.0.0.5:5000/"),
        "{deployment}"
    );
    server.stop().await;
}
