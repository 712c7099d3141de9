//! Deployment scripts checked at creation, over the API: a syntax error refuses
//! the deployment naming the script, findings of the rules come back as warnings,
//! and `strict` turns them into a refusal; nothing refused is stored.

use reqwest::StatusCode;
use serde_json::{json, Value};

mod common;

use common::{data_dir, Server};

fn deployment(name: &str, start: &str, stop: &str, strict: bool) -> Value {
    json!({"name": name, "type": "command", "workdir": "/srv/shop",
           "start_script": start, "stop_script": stop, "strict": strict})
}

#[tokio::test]
async fn scripts_are_checked_when_a_deployment_is_created() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    server.post("/api/v1/apps", json!({"name": "shop"})).await;
    let path = "/api/v1/apps/shop/deployments";

    let (status, body) = server
        .post(
            path,
            deployment("broken", "true", "if true; then\n  echo x\n", false),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "stop_script", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("syntax error"),
        "{body}"
    );

    let pulls = "docker pull registry.example.com/shop/web:1\ndocker run -d web";
    let stop = "set -e\ndocker stop web";
    let (status, body) = server
        .post(path, deployment("warned", pulls, stop, false))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let warnings: Vec<&str> = body["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("start_script line 1:") && w.contains("(start-pulls)")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.starts_with("stop_script line 2:")
            && w.contains("(stop-fails-when-nothing-runs)")),
        "{warnings:?}"
    );
    // Shown later without them: they belong to the creation.
    let shown = server.get("/api/v1/apps/shop/deployments/warned").await;
    assert!(shown.get("warnings").is_none(), "{shown}");

    let (status, body) = server
        .post(path, deployment("strict", pulls, stop, true))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "start_script", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("refused (strict)"),
        "{body}"
    );

    let clean_stop = "set -e\ndocker rm -f web 2>/dev/null || true";
    let (status, body) = server
        .post(
            path,
            deployment("clean", "docker run -d web", clean_stop, true),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("warnings").is_none(), "{body}");

    let names: Vec<String> = server
        .get(path)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["clean", "warned"],
        "refused deployments are not stored"
    );
    server.stop().await;
}
