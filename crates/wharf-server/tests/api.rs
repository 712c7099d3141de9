//! Handler tests: the real router over a real SQLite store in a temp dir, driven
//! without a network through `tower::ServiceExt::oneshot`. Every refused request is
//! checked for its status, its error body and that it changed nothing.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;
use wharf_server::{hash_token, router, AppState, SecretBox};
use wharf_store::{ApiTokenRecord, SqliteStore, Store};

const ADMIN: &str = "wharf_adm_test-token";

struct Api {
    router: Router,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    body: Value,
    text: String,
}

impl Api {
    async fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("wharf.db"))
                .await
                .unwrap(),
        );
        store
            .api_token_create(&ApiTokenRecord {
                id: "tok-admin".into(),
                hash: hash_token(ADMIN),
                role: "admin".into(),
                created_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        let state = AppState::new(store.clone(), SecretBox::random());
        Api {
            router: router(state),
            store,
            _dir: dir,
        }
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, body, text }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// Everything the API can list, to compare before and after a refused request.
    async fn snapshot(&self) -> Value {
        let mut all = json!({
            "apps": self.get("/api/v1/apps").await.body,
            "registries": self.get("/api/v1/registries").await.body,
            "instances": self.get("/api/v1/instances").await.body,
            "tokens": self.get("/api/v1/registration-tokens").await.body,
        });
        for app in self.store.app_list().await.unwrap() {
            all[format!("groups/{}", app.name)] = self
                .get(&format!("/api/v1/apps/{}/groups", app.name))
                .await
                .body;
            all[format!("deployments/{}", app.name)] = self
                .get(&format!("/api/v1/apps/{}/deployments", app.name))
                .await
                .body;
        }
        // Heartbeat times move on their own; they are not what a refusal could change.
        strip_key(&mut all, "last_heartbeat_at");
        strip_key(&mut all, "status");
        all
    }

    /// Registers an instance through the agent protocol, as an agent would.
    async fn register(&self, name: &str) -> (String, String) {
        let token = self.post("/api/v1/registration-tokens", json!({})).await;
        assert_eq!(token.status, StatusCode::CREATED, "{}", token.text);
        let reply = self
            .send(agent_request(
                "/agent/v1/register",
                None,
                json!({
                    "registration_token": token.body["token"],
                    "name": name,
                    "hostname": format!("{name}.local"),
                    "os": "linux",
                    "arch": "x86_64",
                    "agent_version": "0.1.0",
                    "labels": {"zone": "a"},
                }),
            ))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        (
            reply.body["instance_id"].as_str().unwrap().to_owned(),
            reply.body["credential"].as_str().unwrap().to_owned(),
        )
    }
}

fn strip_key(value: &mut Value, key: &str) {
    match value {
        Value::Object(map) => {
            map.remove(key);
            map.values_mut().for_each(|v| strip_key(v, key));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip_key(v, key)),
        _ => {}
    }
}

fn agent_request(path: &str, credential: Option<&str>, body: Value) -> Request<Body> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-wharf-agent-protocol", "1");
    if let Some(credential) = credential {
        request = request.header(header::AUTHORIZATION, format!("Bearer {credential}"));
    }
    request.body(Body::from(body.to_string())).unwrap()
}

#[track_caller]
fn assert_error(reply: &Reply, status: StatusCode, code: &str, field: Option<&str>) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], code, "{}", reply.text);
    assert!(
        !reply.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{}",
        reply.text
    );
    if let Some(field) = field {
        assert_eq!(reply.body["error"]["field"], field, "{}", reply.text);
    }
}

/// Sends a request that must be refused and checks that nothing changed.
async fn refused(
    api: &Api,
    method: Method,
    path: &str,
    body: Value,
    status: StatusCode,
    code: &str,
    field: Option<&str>,
) {
    let before = api.snapshot().await;
    let reply = api.call(method.clone(), path, Some(body.clone())).await;
    assert_error(&reply, status, code, field);
    assert_eq!(
        api.snapshot().await,
        before,
        "{method} {path} {body} changed the store"
    );
}

fn registry_body() -> Value {
    json!({"name": "main", "endpoint": "registry.example.com:5000", "private_endpoint": "10.0.0.5:5000",
           "username": "deploy", "password": "s3cr?t>pa/ss+w=rd \"q\""})
}

fn deployment_body() -> Value {
    json!({
        "name": "v1",
        "type": "docker-image",
        "image": {"registry": "main", "namespace": "shop", "repository": "web", "tag": "1.0"},
        "workdir": "/srv/web",
        "start_script": "docker run -d --name web -p 8080:8080 \"$WHARF_IMAGE\"",
        "stop_script": "docker rm -f web || true",
    })
}

async fn seeded() -> Api {
    let api = Api::new().await;
    assert_eq!(
        api.post("/api/v1/apps", json!({"name": "shop"}))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        api.post("/api/v1/registries", registry_body()).await.status,
        StatusCode::CREATED
    );
    api
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() {
    let api = Api::new().await;
    let no_auth = Request::get("/api/v1/apps").body(Body::empty()).unwrap();
    assert_error(
        &api.send(no_auth).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        None,
    );
    let wrong = Request::get("/api/v1/apps")
        .header(header::AUTHORIZATION, "Bearer wharf_adm_wrong")
        .body(Body::empty())
        .unwrap();
    assert_error(
        &api.send(wrong).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        None,
    );
    let basic = Request::get("/api/v1/apps")
        .header(header::AUTHORIZATION, "Basic YWRtaW46YWRtaW4=")
        .body(Body::empty())
        .unwrap();
    assert_error(
        &api.send(basic).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        None,
    );
    let create = Request::post("/api/v1/apps")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"name":"shop"}"#))
        .unwrap();
    assert_error(
        &api.send(create).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        None,
    );
    assert!(api.store.app_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn apps_are_created_listed_shown_and_deleted() {
    let api = Api::new().await;
    let created = api
        .post(
            "/api/v1/apps",
            json!({"name": "shop", "description": "The shop"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["name"], "shop");
    assert_eq!(created.body["description"], "The shop");
    assert_eq!(
        api.get("/api/v1/apps").await.body.as_array().unwrap().len(),
        1
    );
    assert_eq!(
        api.get("/api/v1/apps/shop").await.body["description"],
        "The shop"
    );
    assert_eq!(
        api.delete("/api/v1/apps/shop").await.status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &api.get("/api/v1/apps/shop").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &api.delete("/api/v1/apps/shop").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
}

#[tokio::test]
async fn bad_app_input_is_refused_and_changes_nothing() {
    let api = seeded().await;
    let post = |body: Value, status, code, field| {
        let api = &api;
        async move { refused(api, Method::POST, "/api/v1/apps", body, status, code, field).await }
    };
    post(
        json!({"name": ""}),
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("name"),
    )
    .await;
    post(
        json!({"name": "a".repeat(64)}),
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("name"),
    )
    .await;
    post(
        json!({"name": "My_App"}),
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("name"),
    )
    .await;
    post(
        json!({"name": "-shop"}),
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("name"),
    )
    .await;
    post(
        json!({"name": "ok", "description": "x".repeat(1025)}),
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("description"),
    )
    .await;
    post(
        json!({"name": "shop"}),
        StatusCode::CONFLICT,
        "already_exists",
        None,
    )
    .await;
    post(
        json!({"nme": "typo"}),
        StatusCode::BAD_REQUEST,
        "invalid_body",
        None,
    )
    .await;
    post(
        json!({"name": 5}),
        StatusCode::BAD_REQUEST,
        "invalid_body",
        None,
    )
    .await;
    post(json!("shop"), StatusCode::BAD_REQUEST, "invalid_body", None).await;

    let before = api.snapshot().await;
    let malformed = Request::post("/api/v1/apps")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"name\": \"x\""))
        .unwrap();
    assert_error(
        &api.send(malformed).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
        None,
    );
    let wrong_type = Request::post("/api/v1/apps")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{\"name\": \"x\"}"))
        .unwrap();
    assert_error(
        &api.send(wrong_type).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );
    let huge = Request::post("/api/v1/apps")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!(
            "{{\"name\": \"x\", \"description\": \"{}\"}}",
            "y".repeat(2 * 1024 * 1024)
        )))
        .unwrap();
    assert_error(
        &api.send(huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        None,
    );
    assert_eq!(api.snapshot().await, before);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_with_the_error_body() {
    let api = Api::new().await;
    assert_error(
        &api.get("/api/v1/nothing").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &api.call(Method::PUT, "/api/v1/apps", None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    );
}

#[tokio::test]
async fn registries_never_return_the_password() {
    let api = Api::new().await;
    let created = api.post("/api/v1/registries", registry_body()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["has_password"], true);
    assert_eq!(created.body["username"], "deploy");
    for reply in [
        created,
        api.get("/api/v1/registries").await,
        api.get("/api/v1/registries/main").await,
    ] {
        assert!(!reply.text.contains("s3cr?t"), "{}", reply.text);
        let objects = match &reply.body {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        assert!(
            objects.iter().all(|o| o.get("password").is_none()),
            "{}",
            reply.text
        );
    }
    let stored = api.store.registry_fetch("main").await.unwrap();
    let sealed = stored.password_sealed.unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("s3cr?t"));
}

#[tokio::test]
async fn bad_registry_input_is_refused_and_changes_nothing() {
    let api = seeded().await;
    let with = |key: &str, value: Value| {
        let mut body = registry_body();
        body["name"] = json!("other");
        body[key] = value;
        body
    };
    let cases = [
        (with("name", json!("")), "name"),
        (with("name", json!("Main")), "name"),
        (with("endpoint", json!("")), "endpoint"),
        (
            with("endpoint", json!("https://registry.example.com")),
            "endpoint",
        ),
        (
            with("endpoint", json!("registry.example.com/path")),
            "endpoint",
        ),
        (with("endpoint", json!("registry:99999")), "endpoint"),
        (with("endpoint", json!("reg istry")), "endpoint"),
        (with("endpoint", json!("a".repeat(300))), "endpoint"),
        (
            with("private_endpoint", json!("10.0.0.5:x")),
            "private_endpoint",
        ),
        (with("password", Value::Null), "password"),
        (with("username", Value::Null), "username"),
        (with("username", json!("a:b")), "username"),
        (with("password", json!("")), "password"),
        (with("password", json!("x".repeat(5000))), "password"),
    ];
    for (body, field) in cases {
        refused(
            &api,
            Method::POST,
            "/api/v1/registries",
            body,
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some(field),
        )
        .await;
    }
    refused(
        &api,
        Method::POST,
        "/api/v1/registries",
        registry_body(),
        StatusCode::CONFLICT,
        "already_exists",
        None,
    )
    .await;
    refused(
        &api,
        Method::POST,
        "/api/v1/registries",
        with("insecure", json!("yes")),
        StatusCode::BAD_REQUEST,
        "invalid_body",
        None,
    )
    .await;
}

#[tokio::test]
async fn deployments_validate_every_field() {
    let api = seeded().await;
    let path = "/api/v1/apps/shop/deployments";
    let with = |f: &dyn Fn(&mut Value)| {
        let mut body = deployment_body();
        f(&mut body);
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(&|b| b["name"] = json!("")), "name"),
        (with(&|b| b["name"] = json!("V1")), "name"),
        (with(&|b| b["type"] = json!("vm-image")), "type"),
        (with(&|b| b["image"] = Value::Null), "image"),
        (with(&|b| b["type"] = json!("command")), "image"),
        (
            with(&|b| b["image"]["registry"] = json!("nope")),
            "registry",
        ),
        (
            with(&|b| b["image"]["namespace"] = json!("Shop")),
            "namespace",
        ),
        (with(&|b| b["image"]["namespace"] = json!("")), "namespace"),
        (
            with(&|b| b["image"]["repository"] = json!("web_")),
            "repository",
        ),
        (
            with(&|b| b["image"]["repository"] = json!("a".repeat(200))),
            "repository",
        ),
        (with(&|b| b["image"]["tag"] = json!("-1")), "tag"),
        (with(&|b| b["image"]["tag"] = json!("a".repeat(129))), "tag"),
        (with(&|b| b["image"]["tag"] = json!("")), "tag"),
        (with(&|b| b["workdir"] = json!("srv/web")), "workdir"),
        (with(&|b| b["workdir"] = json!("/srv/../etc")), "workdir"),
        (with(&|b| b["workdir"] = json!("/srv/\u{0}x")), "workdir"),
        (with(&|b| b["workdir"] = json!("")), "workdir"),
        (with(&|b| b["start_script"] = json!("")), "start_script"),
        (
            with(&|b| b["start_script"] = json!("x".repeat(64 * 1024 + 1))),
            "start_script",
        ),
        (
            with(&|b| b["stop_script"] = json!("x".repeat(64 * 1024 + 1))),
            "stop_script",
        ),
        (
            with(&|b| b["verify"] = json!({"url": "localhost:8080/hello"})),
            "verify.url",
        ),
        (
            with(&|b| b["verify"] = json!({"url": "http://localhost:8080/", "expect_status": 700})),
            "verify.expect_status",
        ),
        (
            with(&|b| b["timeouts"] = json!({"script_secs": 0})),
            "timeouts.script",
        ),
        (
            with(&|b| b["timeouts"] = json!({"pull_secs": 100000})),
            "timeouts.pull",
        ),
    ];
    for (body, field) in cases {
        refused(
            &api,
            Method::POST,
            path,
            body,
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some(field),
        )
        .await;
    }
    // A registry without a private endpoint refuses private-network deployments.
    let public_only = json!({"name": "public", "endpoint": "registry.example.com"});
    assert_eq!(
        api.post("/api/v1/registries", public_only).await.status,
        StatusCode::CREATED
    );
    let body = with(&|b| {
        b["image"]["registry"] = json!("public");
        b["image"]["private_network"] = json!(true);
    });
    refused(
        &api,
        Method::POST,
        path,
        body,
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("private_network"),
    )
    .await;
    refused(
        &api,
        Method::POST,
        "/api/v1/apps/nope/deployments",
        deployment_body(),
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
}

#[tokio::test]
async fn deployments_show_their_registry_address_and_are_immutable() {
    let api = seeded().await;
    let created = api
        .post("/api/v1/apps/shop/deployments", deployment_body())
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        created.body["registry_address"],
        "registry.example.com:5000/shop/web:1.0"
    );
    assert_eq!(
        created.body["timeouts"],
        json!({"pull_secs": 300, "script_secs": 600, "verify_secs": 60})
    );
    let mut private = deployment_body();
    private["name"] = json!("v1-private");
    private["image"]["private_network"] = json!(true);
    private["verify"] = json!({"url": "http://127.0.0.1:8080/hello", "expect_body": "hello"});
    let created = api.post("/api/v1/apps/shop/deployments", private).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        created.body["registry_address"],
        "10.0.0.5:5000/shop/web:1.0"
    );
    assert_eq!(created.body["verify"]["expect_status"], 200);
    let shown = api.get("/api/v1/apps/shop/deployments/v1").await;
    assert_eq!(
        shown.body["registry_address"],
        "registry.example.com:5000/shop/web:1.0"
    );
    assert_eq!(
        shown.body["start_script"],
        deployment_body()["start_script"]
    );
    let command =
        json!({"name": "cmd", "type": "command", "workdir": "/srv", "start_script": "echo hi"});
    let created = api.post("/api/v1/apps/shop/deployments", command).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["registry_address"], Value::Null);
    assert_eq!(
        api.get("/api/v1/apps/shop/deployments")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        3
    );
    refused(
        &api,
        Method::POST,
        "/api/v1/apps/shop/deployments",
        deployment_body(),
        StatusCode::CONFLICT,
        "already_exists",
        None,
    )
    .await;
    // A registry in use by a deployment, and an application with deployments, stay.
    assert_error(
        &api.delete("/api/v1/registries/main").await,
        StatusCode::CONFLICT,
        "in_use",
        None,
    );
    assert_error(
        &api.delete("/api/v1/apps/shop").await,
        StatusCode::CONFLICT,
        "in_use",
        None,
    );
    assert_eq!(
        api.delete("/api/v1/apps/shop/deployments/v1").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.delete("/api/v1/apps/shop/deployments/v1-private")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.delete("/api/v1/registries/main").await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn groups_take_instances_by_id_or_name() {
    let api = seeded().await;
    let (web1, _) = api.register("web-1").await;
    let (_web2, _) = api.register("web-2").await;
    let created = api
        .post("/api/v1/apps/shop/groups", json!({"name": "prod"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let added = api
        .post(
            "/api/v1/apps/shop/groups/prod/instances",
            json!({"instances": [web1, "web-2"]}),
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    let names: Vec<&str> = added.body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-1", "web-2"]);
    assert_eq!(added.body["instances"][0]["status"], "online");
    let shown = api.get("/api/v1/instances/web-1").await;
    assert_eq!(
        shown.body["groups"],
        json!([{"app": "shop", "group": "prod", "deployment": null, "image_digest": null}])
    );
    assert_eq!(shown.body["labels"], json!({"zone": "a"}));

    let members = "/api/v1/apps/shop/groups/prod/instances";
    refused(
        &api,
        Method::POST,
        members,
        json!({"instances": ["web-1", "ghost"]}),
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("instances"),
    )
    .await;
    refused(
        &api,
        Method::POST,
        members,
        json!({"instances": []}),
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("instances"),
    )
    .await;
    refused(
        &api,
        Method::POST,
        "/api/v1/apps/shop/groups/nope/instances",
        json!({"instances": ["web-1"]}),
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
    refused(
        &api,
        Method::POST,
        "/api/v1/apps/shop/groups",
        json!({"name": "prod"}),
        StatusCode::CONFLICT,
        "already_exists",
        None,
    )
    .await;
    refused(
        &api,
        Method::POST,
        "/api/v1/apps/shop/groups",
        json!({"name": "Prod"}),
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("name"),
    )
    .await;
    refused(
        &api,
        Method::POST,
        "/api/v1/apps/ghost/groups",
        json!({"name": "prod"}),
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
    assert_error(
        &api.delete("/api/v1/apps/shop/groups/prod").await,
        StatusCode::CONFLICT,
        "in_use",
        None,
    );

    let removed = api
        .post(
            "/api/v1/apps/shop/groups/prod/instances/remove",
            json!({"instances": ["web-1", "web-2"]}),
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text);
    assert!(removed.body["instances"].as_array().unwrap().is_empty());
    assert_eq!(
        api.delete("/api/v1/apps/shop/groups/prod").await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn registration_tokens_enforce_ttl_and_uses() {
    let api = Api::new().await;
    refused(
        &api,
        Method::POST,
        "/api/v1/registration-tokens",
        json!({"ttl_secs": 0}),
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("ttl_secs"),
    )
    .await;
    refused(
        &api,
        Method::POST,
        "/api/v1/registration-tokens",
        json!({"uses": 0}),
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("uses"),
    )
    .await;
    refused(
        &api,
        Method::POST,
        "/api/v1/registration-tokens",
        json!({"ttl_secs": -5}),
        StatusCode::BAD_REQUEST,
        "invalid_body",
        None,
    )
    .await;
    let token = api
        .post(
            "/api/v1/registration-tokens",
            json!({"uses": 1, "ttl_secs": 600}),
        )
        .await;
    assert_eq!(token.status, StatusCode::CREATED);
    let secret = token.body["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("wharf_reg_"));
    let listed = api.get("/api/v1/registration-tokens").await;
    assert!(
        !listed.text.contains(&secret),
        "a listed token shows its secret"
    );
    let register = |name: &str, token: &str| {
        agent_request(
            "/agent/v1/register",
            None,
            json!({"registration_token": token, "name": name, "hostname": name, "os": "linux", "arch": "x86_64", "agent_version": "0.1.0"}),
        )
    };
    assert_eq!(
        api.send(register("a", &secret)).await.status,
        StatusCode::CREATED
    );
    assert_error(
        &api.send(register("b", &secret)).await,
        StatusCode::UNAUTHORIZED,
        "registration_refused",
        None,
    );
    assert_error(
        &api.send(register("c", "wharf_reg_forged")).await,
        StatusCode::UNAUTHORIZED,
        "registration_refused",
        None,
    );
    // A revoked token registers nobody.
    let token = api
        .post("/api/v1/registration-tokens", json!({"uses": 5}))
        .await;
    let id = token.body["id"].as_str().unwrap();
    assert_eq!(
        api.delete(&format!("/api/v1/registration-tokens/{id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &api.send(register("d", token.body["token"].as_str().unwrap()))
            .await,
        StatusCode::UNAUTHORIZED,
        "registration_refused",
        None,
    );
    assert_eq!(
        api.get("/api/v1/instances")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn agents_must_send_valid_registrations() {
    let api = Api::new().await;
    let token = api
        .post("/api/v1/registration-tokens", json!({"uses": 10}))
        .await;
    let secret = token.body["token"].as_str().unwrap().to_owned();
    let good = json!({"registration_token": secret, "hostname": "web-1", "os": "linux", "arch": "x86_64", "agent_version": "0.1.0"});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    for (body, field) in [
        (with("os", json!("windows")), "os"),
        (with("name", json!("bad name")), "name"),
        (with("hostname", json!("")), "hostname"),
        (with("labels", json!({"bad key": "x"})), "labels"),
        (with("scaling_group", json!("Bad")), "scaling_group"),
    ] {
        let reply = api
            .send(agent_request("/agent/v1/register", None, body))
            .await;
        assert_error(
            &reply,
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some(field),
        );
    }
    // Versions 1 to 3 are spoken; one on either side of them is refused.
    for unknown in ["0", "4"] {
        let mut request = agent_request("/agent/v1/register", None, good.clone());
        request
            .headers_mut()
            .insert("x-wharf-agent-protocol", unknown.parse().unwrap());
        assert_error(
            &api.send(request).await,
            StatusCode::BAD_REQUEST,
            "unsupported_protocol",
            None,
        );
    }
    assert!(api
        .get("/api/v1/instances")
        .await
        .body
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        api.get("/api/v1/registration-tokens").await.body[0]["uses_left"],
        10
    );

    let reply = api
        .send(agent_request("/agent/v1/register", None, good.clone()))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.body["name"], "web-1");
    let id = reply.body["instance_id"].as_str().unwrap();
    assert!(id.starts_with("i-") && id.len() == 18);
    let duplicate = api
        .send(agent_request("/agent/v1/register", None, good))
        .await;
    assert_error(&duplicate, StatusCode::CONFLICT, "already_exists", None);
}

#[tokio::test]
async fn heartbeats_need_the_agents_own_credential() {
    let api = Api::new().await;
    let (id, credential) = api.register("web-1").await;
    let beat = api
        .send(agent_request(
            "/agent/v1/heartbeat",
            Some(&credential),
            json!({"agent_version": "0.2.0"}),
        ))
        .await;
    assert_eq!(beat.status, StatusCode::OK, "{}", beat.text);
    assert_eq!(beat.body["instance_id"], id.as_str());
    assert_eq!(
        api.get(&format!("/api/v1/instances/{id}")).await.body["agent_version"],
        "0.2.0"
    );
    let forged = api
        .send(agent_request(
            "/agent/v1/heartbeat",
            Some("wharf_agt_forged"),
            json!({"agent_version": "x"}),
        ))
        .await;
    assert_error(&forged, StatusCode::UNAUTHORIZED, "unauthorized", None);
    // The admin token is not an agent credential.
    let admin = api
        .send(agent_request(
            "/agent/v1/heartbeat",
            Some(ADMIN),
            json!({"agent_version": "x"}),
        ))
        .await;
    assert_error(&admin, StatusCode::UNAUTHORIZED, "unauthorized", None);
    // A deleted instance's credential stops working.
    assert_eq!(
        api.delete("/api/v1/instances/web-1").await.status,
        StatusCode::NO_CONTENT
    );
    let gone = api
        .send(agent_request(
            "/agent/v1/heartbeat",
            Some(&credential),
            json!({"agent_version": "x"}),
        ))
        .await;
    assert_error(&gone, StatusCode::UNAUTHORIZED, "unauthorized", None);
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let api = Api::new().await;
    let health = api
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");
    api.get("/api/v1/apps").await;
    api.get("/api/v1/apps/nope").await;
    let metrics = api
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.text.contains(
            "wharf_http_requests_total{method=\"GET\",route=\"/api/v1/apps\",status=\"200\"} 1"
        ),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("route=\"/api/v1/apps/{app}\",status=\"404\"} 1"),
        "{}",
        metrics.text
    );
    assert!(metrics
        .text
        .contains("wharf_http_request_duration_seconds_bucket"));
    let doc = api
        .send(
            Request::get("/api/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/apps",
        "/api/v1/apps/{app}/deployments",
        "/api/v1/registries/{name}",
        "/agent/v1/register",
    ] {
        assert!(
            doc.body["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc.body["components"]["schemas"]
        .get("DeploymentCreate")
        .is_some());
}
