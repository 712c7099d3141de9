//! The client against a small fake HTTP server: which request goes out for each call
//! (method, encoded path, token) and how each kind of answer comes back.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wharf_api::{AppCreate, GroupInstances, RegistrationTokenCreate, ReleaseCreate};
use wharf_client::{Client, ClientError};

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    uri: String,
    authorization: Option<String>,
    body: String,
}

#[derive(Clone)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    reply: Arc<Mutex<(u16, String)>>,
}

impl Fake {
    fn reply(&self, status: u16, body: &str) {
        *self.reply.lock().unwrap() = (status, body.to_owned());
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

async fn record(
    State(fake): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path().ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    fake.seen.lock().unwrap().push(Seen {
        method,
        uri: uri.to_string(),
        authorization: headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let (status, body) = fake.reply.lock().unwrap().clone();
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body,
    )
        .into_response()
}

async fn start() -> (Fake, String) {
    let fake = Fake {
        seen: Arc::default(),
        reply: Arc::new(Mutex::new((200, "[]".to_owned()))),
    };
    let app = Router::new().fallback(record).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, url)
}

const APP: &str = r#"{"name":"web","description":"","created_at":"2024-05-01T10:00:00Z","groups":[],"deployments":[]}"#;
const GROUP: &str = r#"{"app":"web","name":"prod","created_at":"2024-05-01T10:00:00Z","current_deployment":null,"previous_deployment":null,"instances":[]}"#;

#[tokio::test]
async fn sends_the_bearer_token_and_decodes_lists() {
    let (fake, url) = start().await;
    let client = Client::new(&url, Some("tok-123".into())).unwrap();
    fake.reply(200, &format!("[{APP}]"));
    let apps = client.app_list().await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].name, "web");
    let seen = fake.last();
    assert_eq!(seen.method, Method::GET);
    assert_eq!(seen.uri, "/api/v1/apps");
    assert_eq!(seen.authorization.as_deref(), Some("Bearer tok-123"));
}

#[tokio::test]
async fn health_needs_no_token() {
    let (fake, url) = start().await;
    let client = Client::new(&url, None).unwrap();
    fake.reply(200, r#"{"status":"ok","version":"0.1.0"}"#);
    assert_eq!(client.health().await.unwrap().status, "ok");
    let seen = fake.last();
    assert_eq!(seen.uri, "/healthz");
    assert_eq!(seen.authorization, None);
}

#[tokio::test]
async fn every_route_has_its_method_and_path() {
    let (fake, url) = start().await;
    let client = Client::new(&url, Some("t".into())).unwrap();

    fake.reply(201, APP);
    client
        .app_create(&AppCreate {
            name: "web".into(),
            description: Some("d".into()),
        })
        .await
        .unwrap();
    let seen = fake.last();
    assert_eq!(
        (seen.method, seen.uri.as_str()),
        (Method::POST, "/api/v1/apps")
    );
    assert_eq!(seen.body, r#"{"name":"web","description":"d"}"#);

    fake.reply(200, GROUP);
    client
        .group_add_instances(
            "web",
            "prod",
            &GroupInstances {
                instances: vec!["i-1".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(fake.last().uri, "/api/v1/apps/web/groups/prod/instances");
    client
        .group_remove_instances(
            "web",
            "prod",
            &GroupInstances {
                instances: vec!["i-1".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        fake.last().uri,
        "/api/v1/apps/web/groups/prod/instances/remove"
    );

    fake.reply(204, "");
    client.app_delete("web").await.unwrap();
    assert_eq!(fake.last().uri, "/api/v1/apps/web");
    client.group_delete("web", "prod").await.unwrap();
    assert_eq!(fake.last().uri, "/api/v1/apps/web/groups/prod");
    client.deployment_delete("web", "v1").await.unwrap();
    assert_eq!(fake.last().uri, "/api/v1/apps/web/deployments/v1");
    client.registry_delete("hub").await.unwrap();
    assert_eq!(fake.last().uri, "/api/v1/registries/hub");
    client.instance_delete("host-1").await.unwrap();
    assert_eq!(fake.last().uri, "/api/v1/instances/host-1");
    client.registration_token_delete("rt-1").await.unwrap();
    assert_eq!(fake.last().uri, "/api/v1/registration-tokens/rt-1");
    let seen = fake.seen.lock().unwrap();
    assert!(seen
        .iter()
        .rev()
        .take(6)
        .all(|s| s.method == Method::DELETE));
}

const RELEASE: &str = r#"{"id":"r-0123456789abcdef","app":"web","group":"prod","deployment":"v1",
"state":"running","kind":"release","pause":"first","batch_count":2,"batch_interval_secs":0,
"max_failures":0,"rollback_on_failure":false,"rollback_of":null,"message":null,
"created_at":"2024-05-01T10:00:00Z","started_at":"2024-05-01T10:00:01Z","finished_at":null,
"counts":{"total":2,"pending":1,"running":1,"succeeded":0,"failed":0,"cancelled":0},
"batches":[{"number":1,"state":"running","instances":[{"id":"i-0123456789abcdef","name":"web-1",
"state":"running","started_at":"2024-05-01T10:00:01Z","finished_at":null,"image_digest":null,
"message":null,"steps":[{"name":"start","state":"running","started_at":"2024-05-01T10:00:02Z",
"finished_at":null,"exit_code":null,"dropped_bytes":0,"message":null}]}]}]}"#;

const LOGS: &str = r#"[{"instance_id":"i-0123456789abcdef","instance_name":"web-1","step":"start",
"state":"succeeded","exit_code":0,"output":"hello\n","dropped_bytes":7,"message":null}]"#;

#[tokio::test]
async fn release_routes_have_their_method_path_and_query() {
    let (fake, url) = start().await;
    let client = Client::new(&url, Some("t".into())).unwrap();

    fake.reply(201, RELEASE);
    let release = client
        .release_create(
            "web",
            "prod",
            &ReleaseCreate {
                deployment: "v1".into(),
                batches: Some(2),
                pause: Some("first".into()),
                batch_interval_secs: None,
                max_failures: None,
                rollback_on_failure: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(release.batches[0].instances[0].steps[0].name, "start");
    let seen = fake.last();
    assert_eq!(
        (seen.method, seen.uri.as_str()),
        (Method::POST, "/api/v1/apps/web/groups/prod/releases")
    );
    let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(body["deployment"], "v1");
    assert_eq!(body["batches"], 2);
    assert_eq!(body["rollback_on_failure"], true);

    client.release_rollback("web", "prod").await.unwrap();
    let seen = fake.last();
    assert_eq!(
        (seen.method, seen.uri.as_str(), seen.body.as_str()),
        (Method::POST, "/api/v1/apps/web/groups/prod/rollback", "")
    );

    fake.reply(200, RELEASE);
    for (call, path) in [
        ("fetch", "/api/v1/releases/r-1"),
        ("continue", "/api/v1/releases/r-1/continue"),
        ("cancel", "/api/v1/releases/r-1/cancel"),
    ] {
        let release = match call {
            "fetch" => client.release_fetch("r-1").await,
            "continue" => client.release_continue("r-1").await,
            _ => client.release_cancel("r-1").await,
        }
        .unwrap();
        assert_eq!(release.id, "r-0123456789abcdef");
        let seen = fake.last();
        let method = if call == "fetch" {
            Method::GET
        } else {
            Method::POST
        };
        assert_eq!((seen.method, seen.uri.as_str()), (method, path), "{call}");
        assert_eq!(seen.body, "", "{call}");
    }

    fake.reply(200, &format!("[{RELEASE}]"));
    client.release_list(None, None, None).await.unwrap();
    assert_eq!(fake.last().uri, "/api/v1/releases");
    let releases = client
        .release_list(Some("web"), Some("a b&c"), Some(5))
        .await
        .unwrap();
    assert_eq!(releases.len(), 1);
    assert_eq!(
        fake.last().uri,
        "/api/v1/releases?app=web&group=a%20b%26c&limit=5"
    );

    fake.reply(200, LOGS);
    let logs = client.release_logs("r-1", None, None).await.unwrap();
    assert_eq!(
        (logs[0].output.as_str(), logs[0].dropped_bytes),
        ("hello\n", 7)
    );
    assert_eq!(fake.last().uri, "/api/v1/releases/r-1/logs");
    client
        .release_logs("r-1", Some("web-1"), Some("start"))
        .await
        .unwrap();
    assert_eq!(
        fake.last().uri,
        "/api/v1/releases/r-1/logs?instance=web-1&step=start"
    );

    // A release id is a path segment like any name.
    client.release_fetch("r-1/cancel").await.unwrap_err();
    assert_eq!(fake.last().uri, "/api/v1/releases/r-1%2Fcancel");
    assert!(matches!(
        client.release_cancel("..").await,
        Err(ClientError::InvalidArgument { .. })
    ));
}

#[tokio::test]
async fn user_input_cannot_change_the_route() {
    let (fake, url) = start().await;
    let client = Client::new(&url, Some("t".into())).unwrap();
    fake.reply(200, GROUP);
    client.group_fetch("a/b", "c d?x#y%").await.unwrap();
    assert_eq!(
        fake.last().uri,
        "/api/v1/apps/a%2Fb/groups/c%20d%3Fx%23y%25"
    );

    let before = fake.seen.lock().unwrap().len();
    for bad in ["", ".", ".."] {
        let err = client.app_fetch(bad).await.unwrap_err();
        assert!(
            matches!(err, ClientError::InvalidArgument { .. }),
            "{bad:?}: {err:?}"
        );
    }
    assert_eq!(fake.seen.lock().unwrap().len(), before, "nothing was sent");
}

#[tokio::test]
async fn a_base_path_is_kept() {
    let (fake, url) = start().await;
    let client = Client::new(&format!("{url}/wharf/"), Some("t".into())).unwrap();
    assert_eq!(client.base_url(), format!("{url}/wharf"));
    client.registration_token_list().await.unwrap();
    assert_eq!(fake.last().uri, "/wharf/api/v1/registration-tokens");
}

#[tokio::test]
async fn api_errors_carry_status_code_message_and_field() {
    let (fake, url) = start().await;
    let client = Client::new(&url, Some("t".into())).unwrap();
    fake.reply(
        409,
        r#"{"error":{"code":"already_exists","message":"app web already exists","field":"name"}}"#,
    );
    let err = client
        .app_create(&AppCreate {
            name: "web".into(),
            description: None,
        })
        .await
        .unwrap_err();
    match err {
        ClientError::Api {
            status,
            code,
            message,
            field,
        } => {
            assert_eq!(status, 409);
            assert_eq!(code, "already_exists");
            assert_eq!(message, "app web already exists");
            assert_eq!(field.as_deref(), Some("name"));
        }
        other => panic!("{other:?}"),
    }

    fake.reply(404, "not json");
    let err = client.app_fetch("web").await.unwrap_err();
    assert!(
        matches!(err, ClientError::UnexpectedStatus { status: 404, .. }),
        "{err:?}"
    );
    assert!(err.is_not_found());
}

#[tokio::test]
async fn a_bad_success_body_is_a_decode_error() {
    let (fake, url) = start().await;
    let client = Client::new(&url, Some("t".into())).unwrap();
    fake.reply(201, r#"{"id":"rt-1"}"#);
    let err = client
        .registration_token_create(&RegistrationTokenCreate::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::new(&format!("http://{addr}"), Some("t".into())).unwrap();
    let err = client.app_list().await.unwrap_err();
    match &err {
        ClientError::Unreachable { url, .. } => {
            assert_eq!(url, &format!("http://{addr}/api/v1/apps"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let (_fake, url) = start().await;
    let client = Client::builder(&url)
        .token("t")
        .timeout(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    let err = client.app_fetch("slow").await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
}
