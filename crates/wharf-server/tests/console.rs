//! Handler tests of the web console: the real router over a real SQLite store,
//! driven without a network. Sign-in, CSRF, form errors with the API's messages,
//! escaping, the release actions and the live event stream.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use wharf_server::{hash_token, router, AppState, SecretBox};
use wharf_store::{ApiTokenRecord, SqliteStore, Store};

const ADMIN: &str = "wharf_adm_console-test-token";

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Reply {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

struct Console {
    router: Router,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
    /// The session cookie (`wharf_session=...`) once signed in.
    cookie: Option<String>,
    /// The session's CSRF token, read from a page.
    csrf: String,
}

/// `application/x-www-form-urlencoded` from pairs.
fn form_body(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// How askama escapes text in HTML (numeric character references).
fn escape_html(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// The value of the first hidden `csrf` field of a page.
fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("the page has a CSRF field") + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// `name=value` of a `Set-Cookie` header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_owned()
}

impl Console {
    async fn new() -> Console {
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
        Console {
            router: router(state),
            store,
            _dir: dir,
            cookie: None,
            csrf: String::new(),
        }
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    fn request(&self, method: Method, path: &str) -> axum::http::request::Builder {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        request
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path).body(Body::empty()).unwrap())
            .await
    }

    /// Posts a form as is (no CSRF field added).
    async fn post_raw(&self, path: &str, pairs: &[(&str, &str)]) -> Reply {
        self.send(
            self.request(Method::POST, path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form_body(pairs)))
                .unwrap(),
        )
        .await
    }

    /// Posts a form with the session's CSRF token.
    async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Reply {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(pairs);
        self.post_raw(path, &all).await
    }

    /// Signs in through the login form, as a browser would.
    async fn sign_in(&mut self) {
        let page = self.get("/login").await;
        assert_eq!(page.status, StatusCode::OK);
        let login_cookie = cookie_pair(&page.set_cookies()[0]);
        let csrf = csrf_of(&page.text);
        let reply = self
            .send(
                Request::builder()
                    .method(Method::POST)
                    .uri("/login")
                    .header(header::COOKIE, &login_cookie)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(form_body(&[
                        ("csrf", &csrf),
                        ("next", "/"),
                        ("token", ADMIN),
                    ])))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
        let session = reply
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with("wharf_session="))
            .expect("a session cookie");
        self.cookie = Some(cookie_pair(&session));
        let home = self.get("/").await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.text);
        self.csrf = csrf_of(&home.text);
    }

    /// Calls the JSON API with the admin token.
    async fn api(&self, method: Method, path: &str, body: Value) -> Reply {
        self.send(
            Request::builder()
                .method(method)
                .uri(path)
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    /// Registers an instance through the agent protocol; returns its id.
    async fn register(&self, name: &str) -> String {
        self.register_in(name, None).await
    }

    /// Registers an instance, for a scaling group when given; returns its id.
    async fn register_in(&self, name: &str, scaling_group: Option<&str>) -> String {
        let token = self
            .api(Method::POST, "/api/v1/registration-tokens", json!({}))
            .await
            .json();
        let reply = self
            .send(
                Request::builder()
                    .method(Method::POST)
                    .uri("/agent/v1/register")
                    .header(header::CONTENT_TYPE, "application/json")
                    .header("x-wharf-agent-protocol", "1")
                    .body(Body::from(
                        json!({"registration_token": token["token"], "name": name,
                               "hostname": name, "os": "linux", "arch": "x86_64",
                               "agent_version": "0.1.0", "labels": {"zone": "a"},
                               "scaling_group": scaling_group})
                        .to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.json()["instance_id"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn pages_and_forms_require_sign_in() {
    let console = Console::new().await;
    for path in [
        "/",
        "/apps",
        "/apps/shop",
        "/instances",
        "/registries",
        "/releases",
        "/releases/r-0123456789abcdef",
        "/scaling-groups",
        "/console/releases/r-0123456789abcdef/events",
    ] {
        let reply = console.get(path).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "GET {path}");
        assert!(
            reply.location().starts_with("/login?next="),
            "GET {path} -> {}",
            reply.location()
        );
    }
    assert_eq!(
        console.get("/apps/shop").await.location(),
        "/login?next=/apps/shop"
    );
    // A form without a session changes nothing and goes to sign-in.
    let reply = console.post_raw("/apps", &[("name", "shop")]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.location().starts_with("/login"));
    assert!(console.store.app_list().await.unwrap().is_empty());
    // A made-up session is no session.
    let mut console = console;
    console.cookie = Some("wharf_session=ws_forged".into());
    assert_eq!(console.get("/").await.location(), "/login?next=/");
    // Assets need no session.
    for asset in [
        "/console/assets/console.css",
        "/console/assets/console.js",
        "/console/assets/favicon.svg",
    ] {
        assert_eq!(console.get(asset).await.status, StatusCode::OK, "{asset}");
    }
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_sign_out_clears_it() {
    let mut console = Console::new().await;
    let page = console.get("/login?next=/apps").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("value=\"/apps\""));
    let login_cookie = page.set_cookies()[0].clone();
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"));
    let login_pair = cookie_pair(&login_cookie);
    let csrf = csrf_of(&page.text);
    let post = |pairs: Vec<(&'static str, String)>, cookie: Option<String>| {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let body: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request.body(Body::from(form_body(&body))).unwrap()
    };

    // The sign-in form is CSRF-checked too (against its own cookie).
    let reply = console
        .send(post(
            vec![("csrf", csrf.clone()), ("token", ADMIN.into())],
            None,
        ))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = console
        .send(post(
            vec![("csrf", "wrong".into()), ("token", ADMIN.into())],
            Some(login_pair.clone()),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // A wrong token: the API's message, no session.
    let reply = console
        .send(post(
            vec![("csrf", csrf.clone()), ("token", "wharf_adm_nope".into())],
            Some(login_pair.clone()),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.text.contains("the token is not valid"),
        "{}",
        reply.text
    );
    assert!(!reply
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("wharf_session=")));

    // The right one: a session cookie that scripts cannot read and other sites
    // cannot send, and back to where the operator wanted to go.
    let reply = console
        .send(post(
            vec![
                ("csrf", csrf.clone()),
                ("token", format!("  {ADMIN}\n")),
                ("next", "/apps".into()),
            ],
            Some(login_pair.clone()),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(reply.location(), "/apps");
    let session = reply
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("wharf_session="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(
        !session.contains(ADMIN),
        "the cookie holds a session id, not the token"
    );
    console.cookie = Some(cookie_pair(&session));
    let home = console.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    console.csrf = csrf_of(&home.text);
    // The sign-in page sends a signed-in operator on.
    assert_eq!(console.get("/login").await.status, StatusCode::SEE_OTHER);
    // An outside `next` is not followed.
    let page = console.get("/").await;
    assert!(page.text.contains("Sign out"));

    // Sign-out needs the CSRF token too.
    assert_eq!(
        console.post_raw("/logout", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let reply = console.post("/logout", &[]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), "/login");
    let cleared = reply
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("wharf_session="))
        .expect("the cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The old cookie no longer works.
    assert_eq!(console.get("/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_login_next_outside_the_console_goes_home() {
    let console = Console::new().await;
    let page = console.get("/login?next=//evil.example/x").await;
    assert!(
        page.text.contains("name=\"next\" value=\"/\""),
        "{}",
        page.text
    );
    let page = console.get("/login?next=https://evil.example").await;
    assert!(page.text.contains("name=\"next\" value=\"/\""));
}

#[tokio::test]
async fn every_form_checks_the_csrf_token() {
    let mut console = Console::new().await;
    console.sign_in().await;
    let paths = [
        "/apps",
        "/apps/shop/groups",
        "/apps/shop/groups/prod/instances",
        "/apps/shop/groups/prod/instances/remove",
        "/apps/shop/groups/prod/releases",
        "/apps/shop/groups/prod/rollback",
        "/apps/shop/deployments",
        "/releases/r-0123456789abcdef/continue",
        "/releases/r-0123456789abcdef/cancel",
        "/registration-tokens",
        "/logout",
    ];
    for path in paths {
        let missing = console.post_raw(path, &[("name", "shop")]).await;
        assert_eq!(
            missing.status,
            StatusCode::FORBIDDEN,
            "POST {path} without CSRF"
        );
        assert!(missing.text.contains("CSRF"), "{}", missing.text);
        let wrong = console
            .post_raw(path, &[("csrf", "0123abcd"), ("name", "shop")])
            .await;
        assert_eq!(
            wrong.status,
            StatusCode::FORBIDDEN,
            "POST {path} with a wrong CSRF"
        );
    }
    assert!(console.store.app_list().await.unwrap().is_empty());
    // The session survived the refused sign-out.
    assert_eq!(console.get("/").await.status, StatusCode::OK);
    // With the token, the same form works.
    let reply = console.post("/apps", &[("name", "shop")]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(reply.location(), "/apps/shop");
}

#[tokio::test]
async fn form_errors_show_the_api_message_and_keep_what_was_typed() {
    let mut console = Console::new().await;
    console.sign_in().await;

    // The same input through the API, for its message.
    let api_error = |reply: Reply| -> String {
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let bad_name = api_error(
        console
            .api(Method::POST, "/api/v1/apps", json!({"name": "Bad Name"}))
            .await,
    );
    let reply = console
        .post(
            "/apps",
            &[("name", "Bad Name"), ("description", "typed <here>")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.text.contains(&escape_html(&bad_name)),
        "{bad_name} in {}",
        reply.text
    );
    assert!(reply.text.contains("value=\"Bad Name\""));
    assert!(reply.text.contains("value=\"typed &#60;here&#62;\""));
    assert!(reply.text.contains("class=\"invalid\""));

    // Duplicates: 409 and the API's message.
    assert_eq!(
        console.post("/apps", &[("name", "shop")]).await.status,
        StatusCode::SEE_OTHER
    );
    let duplicate = api_error(
        console
            .api(Method::POST, "/api/v1/apps", json!({"name": "shop"}))
            .await,
    );
    let reply = console.post("/apps", &[("name", "shop")]).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(
        reply.text.contains(&escape_html(&duplicate)),
        "{}",
        reply.text
    );

    // Groups.
    let reply = console
        .post("/apps/shop/groups", &[("name", "-prod")])
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text.contains("not a valid name"));
    assert!(reply.text.contains("value=\"-prod\""));
    assert_eq!(
        console
            .post("/apps/shop/groups", &[("name", "prod")])
            .await
            .location(),
        "/apps/shop/groups/prod"
    );

    // Deployments: the domain's rules, named by field; scripts kept as typed.
    let workdir = api_error(
        console
            .api(
                Method::POST,
                "/api/v1/apps/shop/deployments",
                json!({"name": "v1", "type": "command", "workdir": "srv/../x",
                       "start_script": "echo hi"}),
            )
            .await,
    );
    let reply = console
        .post(
            "/apps/shop/deployments",
            &[
                ("name", "v1"),
                ("type", "command"),
                ("workdir", "srv/../x"),
                ("start_script", "echo \"hi\"\r\nsleep 1"),
                ("stop_script", ""),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.text.contains(&escape_html(&workdir)),
        "{workdir}: {}",
        reply.text
    );
    assert!(reply.text.contains("echo &#34;hi&#34;"));
    let reply = console
        .post(
            "/apps/shop/deployments",
            &[
                ("name", "v1"),
                ("type", "command"),
                ("workdir", "/srv/shop"),
                ("start_script", "echo hi"),
                ("timeouts.script", "ten"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text.contains("timeouts.script"), "{}", reply.text);
    let reply = console
        .post(
            "/apps/shop/deployments",
            &[
                ("name", "v1"),
                ("type", "docker-image"),
                ("registry", "nope"),
                ("namespace", "shop"),
                ("repository", "web"),
                ("tag", "1"),
                ("workdir", "/srv/shop"),
                ("start_script", "echo hi"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.text.contains("registry: no registry is named"),
        "{}",
        reply.text
    );
    let reply = console
        .post(
            "/apps/shop/deployments",
            &[
                ("name", "v1"),
                ("type", "command"),
                ("workdir", "/srv/shop"),
                ("start_script", "echo one\r\necho two\r\n"),
                ("stop_script", "true"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(reply.location(), "/apps/shop/deployments/v1");
    let stored = console.store.deployment_fetch("shop", "v1").await.unwrap();
    assert_eq!(
        stored.start_script, "echo one\necho two\n",
        "CRLF from the textarea became LF"
    );

    // Releases: batches out of range, then an empty group (a conflict).
    let reply = console
        .post(
            "/apps/shop/groups/prod/releases",
            &[("deployment", "v1"), ("batches", "0"), ("pause", "first")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.text.contains("batches: must be from 1 to 100"),
        "{}",
        reply.text
    );
    assert!(reply.text.contains("<option value=\"first\" selected>"));
    let reply = console
        .post(
            "/apps/shop/groups/prod/releases",
            &[
                ("deployment", "v1"),
                ("batches", "1"),
                ("pause", "sometimes"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text.contains("not a pause mode"));
    let reply = console
        .post(
            "/apps/shop/groups/prod/releases",
            &[("deployment", "v1"), ("batches", "1"), ("pause", "auto")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(
        reply.text.contains("has no instances to publish to"),
        "{}",
        reply.text
    );

    // Members: an unknown instance is named.
    let reply = console
        .post(
            "/apps/shop/groups/prod/instances",
            &[("instances_text", "ghost")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply
            .text
            .contains("no instance has the id or name &#34;ghost&#34;"),
        "{}",
        reply.text
    );
    assert!(reply.text.contains("value=\"ghost\""));
    assert!(console
        .store
        .release_list(None, None, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn values_are_escaped_everywhere() {
    let mut console = Console::new().await;
    console.sign_in().await;
    let evil = "<script>alert(1)</script>\"><img src=x onerror=alert(1)>";
    let reply = console
        .post("/apps", &[("name", "shop"), ("description", evil)])
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    for path in ["/apps", "/apps/shop"] {
        let page = console.get(path).await;
        assert!(page.text.contains(&escape_html(evil)), "{path}");
        assert!(!page.text.contains("<script>alert"), "{path}");
        assert!(!page.text.contains("<img src=x"), "{path}");
    }
    // And the policy forbids inline script anyway.
    let page = console.get("/apps").await;
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
}

#[tokio::test]
async fn scaling_groups_execs_and_docker_status_are_shown_escaped() {
    use wharf_domain::release::{ReleaseState, StepName};
    use wharf_store::{StepState, TaskState};
    let mut console = Console::new().await;
    console.sign_in().await;
    let evil = "<script>alert(1)</script>\"><img src=x onerror=alert(1)>";
    let web1 = console.register("web-1").await;
    console.post("/apps", &[("name", "shop")]).await;
    console.post("/apps/shop/groups", &[("name", "prod")]).await;
    console
        .post(
            "/apps/shop/deployments",
            &[
                ("name", "v1"),
                ("type", "command"),
                ("workdir", "/srv/shop"),
                ("start_script", "echo hi"),
            ],
        )
        .await;
    console
        .post("/apps/shop/groups/prod/instances", &[("instances", &web1)])
        .await;
    let now = chrono::Utc::now();

    // An instance whose agent found no Docker Engine.
    console
        .store
        .instance_set_docker(&web1, None, Some(evil))
        .await
        .unwrap();
    let page = console.get("/instances").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("<th>Docker</th>"));
    assert!(page.text.contains("no Docker"));
    assert!(page
        .text
        .contains(&format!("title=\"{}\"", escape_html(evil))));
    let page = console.get(&format!("/instances/{web1}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("no Docker"));
    assert!(page.text.contains(&escape_html(evil)));
    for text in [&console.get("/instances").await.text, &page.text] {
        assert!(!text.contains("<script>alert") && !text.contains("<img src=x"));
    }
    // With Docker: its version.
    console
        .store
        .instance_set_docker(&web1, Some("27.3.1"), None)
        .await
        .unwrap();
    let page = console.get("/instances").await;
    assert!(page.text.contains("27.3.1") && !page.text.contains("no Docker"));

    // A group exec, run through the store as the driver and an agent would.
    let reply = console
        .api(
            Method::POST,
            "/api/v1/apps/shop/groups/prod/execs",
            json!({"script": format!("echo '{evil}'; exit 3")}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let exec = reply.json()["id"].as_str().unwrap().to_owned();
    assert!(exec.starts_with("x-"));
    let store = &console.store;
    assert!(store
        .release_transition(
            &exec,
            &[ReleaseState::Pending],
            ReleaseState::Running,
            None,
            now
        )
        .await
        .unwrap());
    store
        .task_dispatch_batch(&exec, 0, now, now + chrono::Duration::minutes(10))
        .await
        .unwrap();
    assert!(store.task_claim(&exec, &web1, now).await.unwrap());
    store
        .step_begin(&exec, &web1, StepName::Exec, now)
        .await
        .unwrap();
    store
        .step_append_output(&exec, &web1, StepName::Exec, evil, 0, 65536, None)
        .await
        .unwrap();
    store
        .step_finish(
            &exec,
            &web1,
            StepName::Exec,
            StepState::Failed,
            Some(3),
            Some("exited with 3"),
            now,
        )
        .await
        .unwrap();
    store
        .task_finish(
            &exec,
            &web1,
            TaskState::Failed,
            None,
            Some("exited with 3"),
            now,
        )
        .await
        .unwrap();
    store
        .release_transition(
            &exec,
            &[ReleaseState::Running],
            ReleaseState::Succeeded,
            Some("1 of 1 instances failed"),
            now,
        )
        .await
        .unwrap();
    let page = console.get("/apps/shop/groups/prod").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains(&format!("href=\"/execs/{exec}\"")));
    assert!(page.text.contains("1/1"), "the failed count");
    let page = console.get(&format!("/execs/{exec}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains(&format!("data-instance=\"{web1}\"")));
    assert!(page.text.contains("exit 3"));
    assert!(page.text.contains("1 of 1 instances failed"));
    assert!(page.text.contains(&escape_html(evil)), "output and script");
    assert!(!page.text.contains("<script>alert") && !page.text.contains("<img src=x"));
    assert_eq!(
        console.get("/execs/x-ffffffffffffffff").await.status,
        StatusCode::NOT_FOUND
    );

    // A scaling group bound to shop/prod, suspended by a release, holding an
    // instance, with a failed on-suspend run.
    let page = console.get("/scaling-groups").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("No scaling group yet"));
    assert!(page.text.contains("wharf scaling-group create"));
    let reply = console
        .api(
            Method::POST,
            "/api/v1/scaling-groups",
            json!({"name": "shop-asg", "app": "shop", "group": "prod",
                   "on_suspend": evil, "on_resume": "echo resumed"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let reply = console
        .post("/apps/shop/groups/prod/releases", &[("deployment", "v1")])
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    let release = reply
        .location()
        .strip_prefix("/releases/")
        .unwrap()
        .to_owned();
    assert!(store
        .scaling_group_suspend("shop-asg", &release, now)
        .await
        .unwrap());
    let web2 = console.register_in("web-2", Some("shop-asg")).await;
    store
        .scaling_hook_record(
            "shop-asg",
            &wharf_store::HookRunRecord {
                hook: "suspend".into(),
                release_id: Some(release.clone()),
                attempt: 1,
                started_at: now,
                finished_at: now + chrono::Duration::milliseconds(1500),
                exit_code: Some(7),
                output: format!("drain {evil}"),
                error: Some(format!("exit status 7: {evil}")),
            },
            None,
        )
        .await
        .unwrap();

    let page = console.get("/scaling-groups").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("href=\"/scaling-groups/shop-asg\""));
    assert!(page.text.contains("href=\"/apps/shop/groups/prod\""));
    assert!(page.text.contains("s-suspended"));
    assert!(page.text.contains(&format!("href=\"/releases/{release}\"")));
    assert!(
        page.text.contains("<span class=\"badge s-warn\">1</span>"),
        "one held"
    );
    assert!(
        page.text.contains(&escape_html(evil)),
        "the last hook error"
    );
    assert!(!page.text.contains("<script>alert") && !page.text.contains("<img src=x"));

    let page = console.get("/scaling-groups/shop-asg").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("href=\"/apps/shop/groups/prod\""));
    assert!(page.text.contains(&format!("href=\"/releases/{release}\"")));
    assert!(
        page.text.contains(&format!("data-instance=\"{web2}\"")),
        "held"
    );
    assert!(page.text.contains("echo resumed"));
    assert!(page.text.contains("exit 7"));
    assert!(page.text.contains("on-suspend"));
    assert!(page.text.contains(&format!("drain {}", escape_html(evil))));
    assert!(page.text.contains("held"), "the activity");
    assert!(!page.text.contains("<script>alert") && !page.text.contains("<img src=x"));
    assert_eq!(
        console.get("/scaling-groups/nope").await.status,
        StatusCode::NOT_FOUND
    );

    // The group links to its scaling group, the instance too.
    let page = console.get("/apps/shop/groups/prod").await;
    assert!(page.text.contains("href=\"/scaling-groups/shop-asg\""));
    let page = console.get(&format!("/instances/{web2}")).await;
    assert!(page.text.contains("href=\"/scaling-groups/shop-asg\""));
}

#[tokio::test]
async fn groups_members_and_release_actions_use_the_api_logic() {
    let mut console = Console::new().await;
    console.sign_in().await;
    let web1 = console.register("web-1").await;
    let web2 = console.register("web-2").await;
    console.post("/apps", &[("name", "shop")]).await;
    console.post("/apps/shop/groups", &[("name", "prod")]).await;
    console
        .post(
            "/apps/shop/deployments",
            &[
                ("name", "v1"),
                ("type", "command"),
                ("workdir", "/srv/shop"),
                ("start_script", "echo hi"),
            ],
        )
        .await;

    // Add by ticked box and by typed name; both become members.
    let reply = console
        .post(
            "/apps/shop/groups/prod/instances",
            &[("instances", &web1), ("instances_text", "web-2")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    let page = console.get("/apps/shop/groups/prod").await;
    assert!(page.text.contains(&format!("data-instance=\"{web1}\"")));
    assert!(page.text.contains(&format!("data-instance=\"{web2}\"")));
    assert!(page.text.contains("Scaling group"));

    // Remove one.
    let reply = console
        .post(
            "/apps/shop/groups/prod/instances/remove",
            &[("instances", &web2)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(
        console
            .store
            .group_members("shop", "prod")
            .await
            .unwrap()
            .len(),
        1
    );
    console
        .post("/apps/shop/groups/prod/instances", &[("instances", &web2)])
        .await;

    // A release from the form: redirected to its page.
    let reply = console
        .post(
            "/apps/shop/groups/prod/releases",
            &[
                ("deployment", "v1"),
                ("batches", "2"),
                ("pause", "first"),
                ("batch_interval_secs", "0"),
                ("max_failures", "0"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    let id = reply
        .location()
        .strip_prefix("/releases/")
        .unwrap()
        .to_owned();
    let release = console.store.release_fetch(&id).await.unwrap();
    assert_eq!((release.batch_count, release.pause.as_str()), (2, "first"));
    let page = console.get(&format!("/releases/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Batch 1") && page.text.contains("Batch 2"));
    assert!(page
        .text
        .contains(&format!("data-live=\"/console/releases/{id}/events\"")));

    // A second release on the group: the API's conflict, next to the form.
    let reply = console
        .post(
            "/apps/shop/groups/prod/releases",
            &[("deployment", "v1"), ("batches", "1"), ("pause", "auto")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(
        reply.text.contains(&id),
        "the error names the active release"
    );

    // `continue` on a release that is not paused: the API's message, same status.
    let api = console
        .api(
            Method::POST,
            &format!("/api/v1/releases/{id}/continue"),
            json!({}),
        )
        .await;
    assert_eq!(api.status, StatusCode::CONFLICT);
    let message = api.json()["error"]["message"].as_str().unwrap().to_owned();
    let reply = console.post(&format!("/releases/{id}/continue"), &[]).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(
        reply.text.contains(&escape_html(&message)),
        "{message}: {}",
        reply.text
    );

    // Rollback with nothing to roll back to.
    let reply = console.post("/apps/shop/groups/prod/rollback", &[]).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(reply.text.contains("no earlier deployment to roll back to"));

    // Cancel works once, then says it already ended.
    let reply = console.post(&format!("/releases/{id}/cancel"), &[]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(
        console
            .store
            .release_fetch(&id)
            .await
            .unwrap()
            .state
            .as_str(),
        "cancelled"
    );
    let reply = console.post(&format!("/releases/{id}/cancel"), &[]).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(reply.text.contains("already ended: cancelled"));

    // Unknown things are 404 pages.
    assert_eq!(
        console.get("/releases/r-ffffffffffffffff").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        console.get("/apps/nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        console
            .post("/releases/r-ffffffffffffffff/continue", &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Every page renders.
    for path in [
        "/".to_owned(),
        "/instances".into(),
        format!("/instances/{web1}"),
        "/instances/web-2".into(),
        "/apps".into(),
        "/apps/shop".into(),
        "/apps/shop/groups/prod".into(),
        "/apps/shop/groups/prod/releases/new".into(),
        "/apps/shop/deployments/new".into(),
        "/apps/shop/deployments/v1".into(),
        "/registries".into(),
        "/releases".into(),
        "/releases?app=shop&group=prod".into(),
        "/scaling-groups".into(),
    ] {
        let page = console.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "GET {path}: {}", page.text);
        assert!(page.text.contains("</html>"), "{path}");
    }
}

#[tokio::test]
async fn registration_tokens_are_shown_once_and_registries_hide_passwords() {
    let mut console = Console::new().await;
    console.sign_in().await;
    let reply = console
        .post("/registration-tokens", &[("ttl_secs", "0"), ("uses", "1")])
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text.contains("ttl_secs: must be from 1 second"));
    let reply = console
        .post(
            "/registration-tokens",
            &[("ttl_secs", "600"), ("uses", "3")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(reply.text.contains("wharf_reg_"));
    assert!(reply.text.contains("wharf agent --server http://"));
    assert!(!console.get("/instances").await.text.contains("wharf_reg_"));

    let secret = "p4ss-w0rd-that-must-not-show";
    let created = console
        .api(
            Method::POST,
            "/api/v1/registries",
            json!({"name": "main", "endpoint": "registry.example:5000", "username": "deploy",
                   "password": secret}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    for path in ["/registries", "/registries/main"] {
        let page = console.get(path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text.contains("registry.example:5000"));
        assert!(!page.text.contains(secret), "{path} shows the password");
    }
}

/// Reads server-sent events from a response body until `wanted` arrived.
async fn read_events(body: Body, wanted: &str) -> String {
    let mut body = body.into_data_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    use futures::StreamExt;
    while !text.contains(wanted) {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("no {wanted:?} within 10 s; got {text}"));
        match chunk {
            Some(Ok(bytes)) => text.push_str(&String::from_utf8_lossy(&bytes)),
            _ => break,
        }
    }
    text
}

#[tokio::test]
async fn the_event_stream_sends_the_release_and_ends_with_it() {
    let mut console = Console::new().await;
    console.sign_in().await;
    console.register("web-1").await;
    console.post("/apps", &[("name", "shop")]).await;
    console.post("/apps/shop/groups", &[("name", "prod")]).await;
    console
        .post(
            "/apps/shop/deployments",
            &[
                ("name", "v1"),
                ("type", "command"),
                ("workdir", "/srv/shop"),
                ("start_script", "echo hi"),
            ],
        )
        .await;
    console
        .post(
            "/apps/shop/groups/prod/instances",
            &[("instances_text", "web-1")],
        )
        .await;
    let reply = console
        .post("/apps/shop/groups/prod/releases", &[("deployment", "v1")])
        .await;
    let id = reply
        .location()
        .strip_prefix("/releases/")
        .unwrap()
        .to_owned();

    let response = console
        .router
        .clone()
        .oneshot(
            console
                .request(Method::GET, &format!("/console/releases/{id}/events"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let text = read_events(response.into_body(), "event: release").await;
    let data = text
        .lines()
        .skip_while(|l| *l != "event: release")
        .nth(1)
        .and_then(|l| l.strip_prefix("data: "))
        .expect("a data line");
    let release: wharf_api::Release = serde_json::from_str(data).unwrap();
    assert_eq!(release.id, id);
    assert_eq!(release.batches.len(), 1);

    // Cancelled: the stream says so and ends.
    console.post(&format!("/releases/{id}/cancel"), &[]).await;
    let response = console
        .router
        .clone()
        .oneshot(
            console
                .request(Method::GET, &format!("/console/releases/{id}/events"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let text = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .expect("the stream of a finished release ends")
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("event: end\ndata: cancelled"), "{text}");

    // An unknown release is a 404.
    let reply = console
        .get("/console/releases/r-ffffffffffffffff/events")
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}
