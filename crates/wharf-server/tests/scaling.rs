//! Scaling groups end to end over real HTTP, with the simulated agents of
//! `releases.rs` (copied here, small): the lease a release holds on the scaling
//! group bound to its group, held registrations and their catch-up release, the
//! on-suspend and on-resume commands, resuming after a restart, and the automatic
//! rollback of a failed release.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;
use wharf_server::{bind_with, Liveness, ServerConfig};
use wharf_store::Store;

struct Server {
    url: String,
    admin: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start(dir: &Path) -> Server {
        Self::start_with(dir, Liveness::default()).await
    }

    async fn start_with(dir: &Path, liveness: Liveness) -> Server {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.to_path_buf(),
        };
        let bound = bind_with(config, liveness).await.unwrap();
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

    async fn stop(mut self) {
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

    async fn call(
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

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    async fn release(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/releases/{id}")).await
    }

    /// Waits until the release is in `state` (the driver moves it on its own).
    async fn wait_state(&self, id: &str, state: &str) -> Value {
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

    async fn create_release(&self, group: &str, body: Value) -> String {
        let (status, release) = self
            .post(&format!("/api/v1/apps/shop/groups/{group}/releases"), body)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{release}");
        release["id"].as_str().unwrap().to_owned()
    }
}

/// An agent that speaks the protocol and reports whatever the test tells it to.
struct SimAgent {
    url: std::sync::Mutex<String>,
    id: String,
    credential: String,
    http: reqwest::Client,
}

impl SimAgent {
    async fn register(server: &Server, name: &str) -> SimAgent {
        Self::register_for(server, name, None).await
    }

    async fn register_for(server: &Server, name: &str, scaling_group: Option<&str>) -> SimAgent {
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

    fn url(&self) -> String {
        self.url.lock().unwrap().clone()
    }

    /// Points the agent at a restarted server (which listens on a new port).
    fn retarget(&self, server: &Server) {
        *self.url.lock().unwrap() = server.url.clone();
    }

    #[allow(dead_code)]
    async fn heartbeat(&self) {
        let status = self
            .http
            .post(format!("{}/agent/v1/heartbeat", self.url()))
            .header("x-wharf-agent-protocol", "1")
            .bearer_auth(&self.credential)
            .json(&json!({"agent_version": "test"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK);
    }

    /// One long poll; the assignment, or None when no work came within `wait_secs`.
    async fn poll(&self, wait_secs: u64) -> Option<Value> {
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

    async fn work(&self) -> Value {
        self.poll(10)
            .await
            .expect("work was dispatched to this agent")
    }

    async fn event(&self, release: &str, event: Value) -> (StatusCode, Value) {
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

    /// Runs every step of an assignment, failing at `fail_at` if given.
    async fn run(&self, work: &Value, fail_at: Option<&str>) {
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
async fn fleet(server: &Server, n: usize) -> Vec<SimAgent> {
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

fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    (dir, path)
}

/// Creates scaling group `asg` on shop/prod whose hooks append `suspend RELEASE`
/// and `resume RELEASE` to `log`; `on_resume` replaces the resume command.
async fn scaling_group(server: &Server, log: &Path, on_resume: Option<&str>) -> Value {
    let log = log.display();
    let resume = on_resume
        .map(str::to_owned)
        .unwrap_or_else(|| format!("echo resume $WHARF_RELEASE >> {log}"));
    let (status, body) = server
        .post(
            "/api/v1/scaling-groups",
            json!({"name": "asg", "app": "shop", "group": "prod",
                   "on_suspend": format!("echo suspend $WHARF_RELEASE >> {log}"),
                   "on_resume": resume}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// Waits until `asg` satisfies `ok`, and returns it.
async fn wait_asg(server: &Server, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let sg = server.get("/api/v1/scaling-groups/asg").await;
        if ok(&sg) {
            return sg;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "scaling group never became {what}: {sg:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the hook log has `n` lines, and returns them.
async fn hook_lines(log: &Path, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hook log never reached {n} lines: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes v1 to every agent and waits for success.
async fn publish_v1(server: &Server, agents: &[SimAgent]) {
    let id = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    for agent in agents {
        let work = agent.work().await;
        agent.run(&work, None).await;
    }
    server.wait_state(&id, "succeeded").await;
}

fn members(group: &Value) -> Vec<(String, Option<String>)> {
    group["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["deployment"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_host_registering_during_a_release_is_held_then_caught_up() {
    let (tmp, dir) = data_dir();
    let log = tmp.path().join("hooks.log");
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 2).await;
    publish_v1(&server, &agents).await;
    scaling_group(&server, &log, None).await;
    // Before any release, a registration joins at once.
    let early = SimAgent::register_for(&server, "early", Some("asg")).await;
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert!(members(&group).contains(&("early".to_owned(), None)));
    // (It has no deployment yet; it is left out of the v2 release below by
    // removing it again, to keep the two batches to the original hosts.)
    let (status, _) = server
        .post(
            "/api/v1/apps/shop/groups/prod/instances/remove",
            json!({"instances": [early.id]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let id = server
        .create_release("prod", json!({"deployment": "v2", "batches": 2}))
        .await;
    let suspended = wait_asg(&server, "suspended", |sg| sg["state"] == "suspended").await;
    assert_eq!(suspended["suspended_by"], id.as_str());
    let release = server.release(&id).await;
    let first = release["batches"][0]["instances"][0]["id"]
        .as_str()
        .unwrap();
    let agent = agents.iter().find(|a| a.id == first).unwrap();
    let work = agent.work().await;
    agent.run(&work, None).await;

    // A host registering now is held: not in the group, not in the release.
    let late = SimAgent::register_for(&server, "late", Some("asg")).await;
    let sg = server.get("/api/v1/scaling-groups/asg").await;
    assert_eq!(sg["pending"][0]["instance_name"], "late");
    assert_eq!(sg["pending"][0]["state"], "held");
    let instance = server.get("/api/v1/instances/late").await;
    assert_eq!(instance["groups"], json!([]));
    assert_eq!(instance["scaling_pending"], true);
    assert_eq!(server.release(&id).await["counts"]["total"], 2);

    let second = agents.iter().find(|a| a.id != first).unwrap();
    let work = second.work().await;
    second.run(&work, None).await;
    server.wait_state(&id, "succeeded").await;

    // On resume the held host joins and a catch-up release brings it to v2.
    let sg = wait_asg(&server, "resumed and caught up", |sg| {
        sg["state"] == "active" && sg["pending"] == json!([])
    })
    .await;
    let kinds: Vec<&str> = sg["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["join", "held", "join"]);
    let releases = server.get("/api/v1/releases?app=shop&group=prod").await;
    let catch_up = &releases[0];
    assert_eq!(catch_up["kind"], "catch-up");
    assert_eq!(catch_up["deployment"], "v2");
    assert_eq!(catch_up["counts"]["total"], 1);
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    let late_member = group["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "late")
        .unwrap()
        .clone();
    assert_eq!(late_member["drift"], true, "not on v2 yet: {group:#}");
    assert_eq!(group["releases"][0]["kind"], "catch-up");
    assert_eq!(group["releases"][1]["id"], id.as_str());
    let work = late.work().await;
    assert_eq!(work["deployment"], "v2");
    late.run(&work, None).await;
    server
        .wait_state(catch_up["id"].as_str().unwrap(), "succeeded")
        .await;
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert!(members(&group).contains(&("late".to_owned(), Some("v2".to_owned()))));
    let late_member = group["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "late")
        .unwrap()
        .clone();
    assert_eq!(late_member["drift"], false);
    assert_eq!(late_member["image_digest"], "sha256:feedface");

    // The hooks ran once each, in order; the catch-up took no lease.
    assert_eq!(
        hook_lines(&log, 2).await,
        [format!("suspend {id}"), format!("resume {id}")]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook_lines(&log, 2).await.len(), 2);
    let sg = server.get("/api/v1/scaling-groups/asg").await;
    assert_eq!(sg["hook_runs"].as_array().unwrap().len(), 2);
    assert_eq!(sg["hook_runs"][0]["exit_code"], 0);
    server.stop().await;
}

#[tokio::test]
async fn failed_and_cancelled_releases_resume_the_group() {
    let (tmp, dir) = data_dir();
    let log = tmp.path().join("hooks.log");
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 1).await;
    scaling_group(&server, &log, None).await;

    let failed = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    let work = agents[0].work().await;
    agents[0].run(&work, Some("start")).await;
    server.wait_state(&failed, "failed").await;
    wait_asg(&server, "resumed", |sg| sg["state"] == "active").await;
    hook_lines(&log, 2).await;

    let cancelled = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    wait_asg(&server, "suspended", |sg| sg["state"] == "suspended").await;
    let (status, body) = server
        .post(&format!("/api/v1/releases/{cancelled}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_asg(&server, "resumed", |sg| sg["state"] == "active").await;
    assert_eq!(
        hook_lines(&log, 4).await,
        [
            format!("suspend {failed}"),
            format!("resume {failed}"),
            format!("suspend {cancelled}"),
            format!("resume {cancelled}"),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_restarted_server_resumes_a_group_whose_release_ended() {
    let (tmp, dir) = data_dir();
    let log = tmp.path().join("hooks.log");
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 1).await;
    scaling_group(&server, &log, None).await;
    let id = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    wait_asg(&server, "suspended", |sg| sg["state"] == "suspended").await;
    hook_lines(&log, 1).await;
    server.stop().await;

    // While the server is down the release ends without it (as if it had crashed
    // between ending the release and resuming the group).
    {
        let store = wharf_store::SqliteStore::open(&dir.join("wharf.db"))
            .await
            .unwrap();
        assert!(store
            .release_transition(
                &id,
                &[wharf_domain::release::ReleaseState::Running],
                wharf_domain::release::ReleaseState::Cancelled,
                Some("ended while the server was down"),
                chrono::Utc::now(),
            )
            .await
            .unwrap());
        assert_eq!(
            store.scaling_group_fetch("asg").await.unwrap().held_by,
            Some(id.clone())
        );
        store.close().await;
    }

    let server = Server::start(&dir).await;
    agents[0].retarget(&server);
    wait_asg(&server, "resumed", |sg| sg["state"] == "active").await;
    assert_eq!(
        hook_lines(&log, 2).await,
        [format!("suspend {id}"), format!("resume {id}")]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_failing_on_resume_command_is_retried_and_shown() {
    let (tmp, dir) = data_dir();
    let log = tmp.path().join("hooks.log");
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 1).await;
    scaling_group(
        &server,
        &log,
        Some("echo autoscaler unreachable >&2; exit 7"),
    )
    .await;
    publish_v1(&server, &agents).await;
    let sg = wait_asg(&server, "retrying its on-resume command", |sg| {
        sg["resume_attempts"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(
        sg["state"], "active",
        "a failing hook never keeps it suspended"
    );
    assert!(
        sg["status"]
            .as_str()
            .unwrap()
            .starts_with("resumed (on-resume failing: exited with status 7"),
        "{sg:#}"
    );
    assert_eq!(sg["last_error"], "exited with status 7");
    let runs = sg["hook_runs"].as_array().unwrap();
    let resume = runs.iter().find(|r| r["hook"] == "resume").unwrap();
    assert_eq!(resume["exit_code"], 7);
    assert_eq!(resume["output"], "autoscaler unreachable\n");
    // Registrations join at once meanwhile.
    let new = SimAgent::register_for(&server, "new", Some("asg")).await;
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert!(members(&group).iter().any(|(name, _)| name == "new"));

    // An agent deregistering itself leaves the group: activity `leave`.
    let response = new
        .http
        .post(format!("{}/agent/v1/deregister", new.url()))
        .header("x-wharf-agent-protocol", "1")
        .bearer_auth(&new.credential)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert!(!members(&group).iter().any(|(name, _)| name == "new"));
    let sg = server.get("/api/v1/scaling-groups/asg").await;
    let last = sg["activities"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["kind"].as_str(), last["instance_name"].as_str()),
        (Some("leave"), Some("new"))
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_scaling_group_requests_name_the_field() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    fleet(&server, 1).await;
    for (body, field) in [
        (
            json!({"name": "Bad", "app": "shop", "group": "prod"}),
            "name",
        ),
        (
            json!({"name": "asg", "app": "nope", "group": "prod"}),
            "app",
        ),
        (
            json!({"name": "asg", "app": "shop", "group": "nope"}),
            "group",
        ),
        (
            json!({"name": "asg", "app": "shop", "group": "prod", "on_resume": " "}),
            "on_resume",
        ),
    ] {
        let (status, reply) = server.post("/api/v1/scaling-groups", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert_eq!(reply["error"]["field"], field, "{reply}");
    }
    assert_eq!(server.get("/api/v1/scaling-groups").await, json!([]));

    let (_, token) = server.post("/api/v1/registration-tokens", json!({})).await;
    let response = reqwest::Client::new()
        .post(format!("{}/agent/v1/register", server.url))
        .header("x-wharf-agent-protocol", "1")
        .json(
            &json!({"registration_token": token["token"], "name": "h", "hostname": "h",
                      "os": "linux", "arch": "x86_64", "agent_version": "test",
                      "scaling_group": "nope"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["error"]["field"], "scaling_group");
    let instances = server.get("/api/v1/instances").await;
    assert_eq!(
        instances.as_array().unwrap().len(),
        1,
        "nothing half-written"
    );
    server.stop().await;
}

#[tokio::test]
async fn rollback_on_failure_puts_touched_hosts_back_and_links_both_releases() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 2).await;
    publish_v1(&server, &agents).await;
    let id = server
        .create_release(
            "prod",
            json!({"deployment": "v2", "batches": 2, "rollback_on_failure": true}),
        )
        .await;
    let release = server.release(&id).await;
    let first = release["batches"][0]["instances"][0]["id"]
        .as_str()
        .unwrap();
    let one = agents.iter().find(|a| a.id == first).unwrap();
    let two = agents.iter().find(|a| a.id != first).unwrap();
    let work = one.work().await;
    assert_eq!(work["deployment"], "v2");
    one.run(&work, None).await;
    let work = two.work().await;
    two.run(&work, Some("start")).await;
    let failed = server.wait_state(&id, "failed").await;
    let rollback_id = failed["rolled_back_by"]
        .as_str()
        .expect("linked")
        .to_owned();
    let rollback = server.release(&rollback_id).await;
    assert_eq!(rollback["rollback_of"], id.as_str());
    assert_eq!(rollback["kind"], "rollback");
    assert_eq!(rollback["deployment"], "v1");
    assert_eq!(rollback["counts"]["total"], 2, "both hosts were touched");
    // What the simulated agents are asked to run: v1 again.
    for agent in [one, two] {
        let work = agent.work().await;
        assert_eq!(work["deployment"], "v1");
        agent.run(&work, None).await;
    }
    server.wait_state(&rollback_id, "succeeded").await;
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert_eq!(group["current_deployment"], "v1");
    for (name, deployment) in members(&group) {
        assert_eq!(deployment.as_deref(), Some("v1"), "{name}");
    }
    server.stop().await;
}
