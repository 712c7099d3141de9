//! `/readyz` over the real router and a real SQLite store: ready while the store
//! answers, 503 with the API's error body once it does not, while `/healthz` (the
//! process is alive) keeps answering 200.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;
use wharf_server::{router, AppState, SecretBox};
use wharf_store::{SqliteStore, Store};

async fn get(app: &axum::Router, path: &str) -> (StatusCode, Value) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|err| panic!("{path}: not JSON ({err}): {bytes:?}"));
    (status, body)
}

#[tokio::test]
async fn ready_while_the_store_answers_and_503_once_it_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("wharf.db"))
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    let app = router(AppState::new(store, SecretBox::random()));

    let (status, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

    // A closed store fails every call, as a lost database would.
    sqlite.close().await;
    let (status, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("store"), "{message}");
    // Alive all the same.
    let (status, body) = get(&app, "/healthz").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Counted by the metrics like any route.
    let response = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("route=\"/readyz\",status=\"503\"} 1"),
        "{text}"
    );
}
