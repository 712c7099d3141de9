//! The harness shared by the server's HTTP-level tests: a real server on port 0
//! with its SQLite store in a temp dir (or a PostgreSQL database), and simulated agents that speak the agent
//! protocol (register, long-poll, step events) without running anything.

// Each test file uses a different part of the harness.
#![allow(dead_code)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;
use wharf_server::{bind_with, ConnectionLimits, Liveness, ServerConfig};

pub struct Server {
    pub url: String,
    pub admin: String,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(dir: &Path) -> Server {
        Self::start_with(dir, Liveness::default()).await
    }

    pub async fn start_with(dir: &Path, liveness: Liveness) -> Server {
        Self::start_on(dir, None, liveness).await
    }

    /// A server with the given connection bounds (else this process's).
    pub async fn start_with_limits(
        dir: &Path,
        liveness: Liveness,
        limits: Option<ConnectionLimits>,
    ) -> Server {
        Self::start_bound(dir, None, liveness, limits).await
    }

    /// A server whose store is the PostgreSQL database `database` (SQLite in
    /// `dir` without one).
    pub async fn start_on(
        dir: &Path,
        database: Option<wharf_server::DatabaseUrl>,
        liveness: Liveness,
    ) -> Server {
        Self::start_bound(dir, database, liveness, None).await
    }

    async fn start_bound(
        dir: &Path,
        database: Option<wharf_server::DatabaseUrl>,
        liveness: Liveness,
        limits: Option<ConnectionLimits>,
    ) -> Server {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.to_path_buf(),
            database,
        };
        let mut bound = bind_with(config, liveness).await.unwrap();
        if let Some(limits) = limits {
            bound = bound.with_connection_limits(limits);
        }
        let url = format!("http://{}", bound.local_addr());
        let admin = std::fs::read_to_string(bound.admin_token_path()).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            bound
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Server {
            url,
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the server shuts down promptly")
                .unwrap();
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.admin);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    pub async fn release(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/releases/{id}")).await
    }

    /// Waits until the release is in `state` (the driver moves it on its own).
    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let release = self.release(id).await;
            if release["state"] == state {
                return release;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "release never became {state}: {release:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn create_release(&self, group: &str, body: Value) -> String {
        let (status, release) = self
            .post(&format!("/api/v1/apps/shop/groups/{group}/releases"), body)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{release}");
        release["id"].as_str().unwrap().to_owned()
    }
}

/// An agent that speaks the protocol and reports whatever the test tells it to.
pub struct SimAgent {
    pub url: std::sync::Mutex<String>,
    pub id: String,
    pub credential: String,
    pub http: reqwest::Client,
}

impl SimAgent {
    pub async fn register(server: &Server, name: &str) -> SimAgent {
        Self::register_for(server, name, None).await
    }

    pub async fn register_for(
        server: &Server,
        name: &str,
        scaling_group: Option<&str>,
    ) -> SimAgent {
        let (_, token) = server.post("/api/v1/registration-tokens", json!({})).await;
        let http = reqwest::Client::new();
        let reply: Value = http
            .post(format!("{}/agent/v1/register", server.url))
            .header("x-wharf-agent-protocol", "1")
            .json(
                &json!({"registration_token": token["token"], "name": name, "hostname": name,
                          "os": "linux", "arch": "x86_64", "agent_version": "test",
                          "scaling_group": scaling_group}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        SimAgent {
            url: std::sync::Mutex::new(server.url.clone()),
            id: reply["instance_id"].as_str().unwrap().to_owned(),
            credential: reply["credential"].as_str().unwrap().to_owned(),
            http,
        }
    }

    pub fn url(&self) -> String {
        self.url.lock().unwrap().clone()
    }

    /// Points the agent at a restarted server (which listens on a new port).
    pub fn retarget(&self, server: &Server) {
        *self.url.lock().unwrap() = server.url.clone();
    }

    pub async fn heartbeat(&self) {
        assert_eq!(self.try_heartbeat().await, StatusCode::OK);
    }

    /// One heartbeat; the status it got.
    pub async fn try_heartbeat(&self) -> StatusCode {
        self.http
            .post(format!("{}/agent/v1/heartbeat", self.url()))
            .header("x-wharf-agent-protocol", "1")
            .bearer_auth(&self.credential)
            .json(&json!({"agent_version": "test"}))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// One long poll; the assignment, or None when no work came within `wait_secs`.
    pub async fn poll(&self, wait_secs: u64) -> Option<Value> {
        let response = self
            .http
            .get(format!(
                "{}/agent/v1/work?wait_secs={wait_secs}",
                self.url()
            ))
            .header("x-wharf-agent-protocol", "1")
            .bearer_auth(&self.credential)
            .send()
            .await
            .unwrap();
        match response.status() {
            StatusCode::OK => Some(response.json().await.unwrap()),
            StatusCode::NO_CONTENT => None,
            other => panic!("poll answered {other}: {}", response.text().await.unwrap()),
        }
    }

    pub async fn work(&self) -> Value {
        self.poll(10)
            .await
            .expect("work was dispatched to this agent")
    }

    pub async fn event(&self, release: &str, event: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/agent/v1/releases/{release}/events", self.url()))
            .header("x-wharf-agent-protocol", "1")
            .bearer_auth(&self.credential)
            .json(&event)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Ends the first step of `work` (begun earlier) and runs every later one, as
    /// an agent does that was mid-task while the server could not hear it.
    pub async fn finish(&self, work: &Value) {
        let release = work["release_id"].as_str().unwrap();
        let steps: Vec<&str> = work["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        for (index, step) in steps.iter().enumerate() {
            if index > 0 {
                let (status, _) = self
                    .event(release, json!({"event": "begin", "step": step}))
                    .await;
                assert_eq!(status, StatusCode::OK);
            }
            let digest = (*step == "pull").then_some("sha256:feedface");
            let (status, ack) = self
                .event(
                    release,
                    json!({"event": "end", "step": step, "succeeded": true,
                                       "exit_code": 0, "image_digest": digest}),
                )
                .await;
            assert_eq!(
                (status, &ack["proceed"]),
                (StatusCode::OK, &json!(true)),
                "{ack}"
            );
        }
    }

    /// Runs every step of an assignment, failing at `fail_at` if given.
    pub async fn run(&self, work: &Value, fail_at: Option<&str>) {
        let release = work["release_id"].as_str().unwrap();
        for step in work["steps"].as_array().unwrap() {
            let step = step.as_str().unwrap();
            let (status, _) = self
                .event(release, json!({"event": "begin", "step": step}))
                .await;
            assert_eq!(status, StatusCode::OK);
            self.event(
                release,
                json!({"event": "output", "step": step, "chunk": format!("{step} says hello\n")}),
            )
            .await;
            let failed = fail_at == Some(step);
            let digest = (step == "pull").then_some("sha256:feedface");
            let (status, ack) = self
                .event(release, json!({"event": "end", "step": step, "succeeded": !failed,
                                       "exit_code": if failed { 3 } else { 0 }, "image_digest": digest}))
                .await;
            assert_eq!(status, StatusCode::OK, "{ack}");
            if failed {
                return;
            }
        }
    }
}

/// An application `shop` with a registry, a group `prod` of `n` simulated agents,
/// and docker-image deployments v1 and v2.
pub async fn fleet(server: &Server, n: usize) -> Vec<SimAgent> {
    assert_eq!(
        server.post("/api/v1/apps", json!({"name": "shop"})).await.0,
        StatusCode::CREATED
    );
    let registry = json!({"name": "main", "endpoint": "127.0.0.1:5000", "username": "u", "password": "p?a>s/s+w=o\"r' d"});
    assert_eq!(
        server.post("/api/v1/registries", registry).await.0,
        StatusCode::CREATED
    );
    for version in ["v1", "v2"] {
        let deployment = json!({"name": version, "type": "docker-image",
            "image": {"registry": "main", "namespace": "shop", "repository": "web", "tag": version},
            "workdir": "/srv/shop", "start_script": "docker run ...", "stop_script": "docker rm -f web || true"});
        assert_eq!(
            server
                .post("/api/v1/apps/shop/deployments", deployment)
                .await
                .0,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        server
            .post("/api/v1/apps/shop/groups", json!({"name": "prod"}))
            .await
            .0,
        StatusCode::CREATED
    );
    let mut agents = Vec::new();
    for i in 1..=n {
        agents.push(SimAgent::register(server, &format!("web-{i}")).await);
    }
    let ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    let (status, body) = server
        .post(
            "/api/v1/apps/shop/groups/prod/instances",
            json!({"instances": ids}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    agents
}

pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    (dir, path)
}
