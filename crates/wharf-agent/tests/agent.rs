//! The agent against a real Wharf server running in-process: registration, state reuse,
//! heartbeats, releases of `command` deployments with the real `BashRunner`, a
//! `docker-image` deployment with a fake container runtime, failures, an agent killed
//! mid-step, and a server restarted mid-step.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wharf_agent::{
    run_with, AgentConfig, AgentError, BashRunner, ContainerRuntime, DockerError, EngineVersion,
    OutputSink, ProcessRunner, RegistryCredentials, RESTARTED_MESSAGE, STOPPED_BEFORE_MESSAGE,
};

/// The longest any wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------ server

struct TestServer {
    addr: SocketAddr,
    data_dir: PathBuf,
    admin: String,
    http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

async fn start_server(data_dir: &Path) -> TestServer {
    start_server_at("127.0.0.1:0".parse().expect("addr"), data_dir).await
}

async fn start_server_at(listen: SocketAddr, data_dir: &Path) -> TestServer {
    let bound = wharf_server::bind(wharf_server::ServerConfig {
        listen,
        data_dir: data_dir.to_owned(),
        database: None,
    })
    .await
    .expect("server binds");
    let addr = bound.local_addr();
    let admin = std::fs::read_to_string(bound.admin_token_path())
        .expect("admin token")
        .trim()
        .to_owned();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        bound
            .serve(async {
                let _ = rx.await;
            })
            .await
            .expect("server serves");
    });
    TestServer {
        addr,
        data_dir: data_dir.to_owned(),
        admin,
        http: reqwest::Client::new(),
        shutdown: Some(tx),
        task: Some(task),
    }
}

impl TestServer {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("server stops in time")
                .expect("server task");
        }
    }

    /// Starts the server again on the same address and data directory.
    async fn restart(&mut self) {
        self.stop().await;
        let again = start_server_at(self.addr, &self.data_dir.clone()).await;
        *self = again;
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.url()))
            .bearer_auth(&self.admin);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("api request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("api body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, value) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!(
            (200..300).contains(&status),
            "POST {path}: {status} {value}"
        );
        value
    }

    async fn get(&self, path: &str) -> Value {
        let (status, value) = self.call(reqwest::Method::GET, path, None).await;
        assert!((200..300).contains(&status), "GET {path}: {status} {value}");
        value
    }

    async fn registration_token(&self, uses: u32) -> String {
        let token = self
            .post("/registration-tokens", json!({ "uses": uses }))
            .await;
        token["token"].as_str().expect("token").to_owned()
    }

    /// The instance with this name, once it is registered.
    async fn wait_instance(&self, name: &str) -> Value {
        wait_for(&format!("instance {name} registered"), || async {
            let list = self.get("/instances").await;
            list.as_array()
                .and_then(|l| l.iter().find(|i| i["name"] == name).cloned())
        })
        .await
    }

    /// App `shop`, group `prod` with the instance in it.
    async fn app_with_group(&self, instance: &str) {
        self.post("/apps", json!({ "name": "shop" })).await;
        self.post("/apps/shop/groups", json!({ "name": "prod" }))
            .await;
        self.post(
            "/apps/shop/groups/prod/instances",
            json!({ "instances": [instance] }),
        )
        .await;
    }

    async fn command_deployment(&self, name: &str, workdir: &Path, start: &str, stop: &str) {
        self.post(
            "/apps/shop/deployments",
            json!({
                "name": name,
                "type": "command",
                "workdir": workdir,
                "start_script": start,
                "stop_script": stop,
                "timeouts": { "script_secs": 30, "verify_secs": 10 },
            }),
        )
        .await;
    }

    async fn release(&self, deployment: &str) -> String {
        let release = self
            .post(
                "/apps/shop/groups/prod/releases",
                json!({ "deployment": deployment }),
            )
            .await;
        release["id"].as_str().expect("release id").to_owned()
    }

    async fn wait_release_done(&self, id: &str) -> Value {
        wait_for(&format!("release {id} finished"), || async {
            let release = self.get(&format!("/releases/{id}")).await;
            let state = release["state"].as_str().unwrap_or_default();
            matches!(state, "succeeded" | "failed" | "cancelled").then_some(release)
        })
        .await
    }

    /// Waits until `step` of the release's (only) instance is running.
    async fn wait_step_running(&self, id: &str, step: &str) {
        wait_for(&format!("step {step} of {id} running"), || async {
            let release = self.get(&format!("/releases/{id}")).await;
            steps(&release)
                .iter()
                .any(|s| s["name"] == step && s["state"] == "running")
                .then_some(())
        })
        .await
    }

    async fn log_of(&self, id: &str, step: &str) -> Value {
        let logs = self.get(&format!("/releases/{id}/logs")).await;
        logs.as_array()
            .and_then(|l| l.iter().find(|s| s["step"] == step).cloned())
            .unwrap_or(Value::Null)
    }
}

/// The steps of the first instance of a release.
fn steps(release: &Value) -> Vec<Value> {
    release["batches"]
        .as_array()
        .and_then(|b| b.first())
        .and_then(|b| b["instances"].as_array())
        .and_then(|i| i.first())
        .and_then(|i| i["steps"].as_array())
        .cloned()
        .unwrap_or_default()
}

fn step_names(release: &Value) -> Vec<String> {
    steps(release)
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn step<'a>(steps: &'a [Value], name: &str) -> &'a Value {
    steps
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
}

async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ------------------------------------------------------------------ agent

struct TestAgent {
    task: JoinHandle<Result<(), AgentError>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestAgent {
    /// Requests shutdown and returns how the agent ended and how long it took.
    async fn stop(mut self) -> (Result<(), AgentError>, Duration) {
        let started = Instant::now();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = tokio::time::timeout(DEADLINE, &mut self.task)
            .await
            .expect("agent stops in time")
            .expect("agent task");
        (result, started.elapsed())
    }

    /// Kills the agent where it stands (like SIGKILL: no reports, the journal stays).
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn config(server: &TestServer, state_dir: &Path, token: Option<String>) -> AgentConfig {
    AgentConfig {
        server: server.url(),
        registration_token: token,
        state_dir: state_dir.to_owned(),
        name: Some("web-1".to_owned()),
        labels: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
        scaling_group: None,
        docker_socket: None,
        trust: Default::default(),
    }
}

fn spawn_agent(config: AgentConfig, runtime: Arc<dyn ContainerRuntime>) -> TestAgent {
    let runner: Arc<dyn ProcessRunner> = Arc::new(
        BashRunner::new(config.state_dir.join("run")).with_kill_grace(Duration::from_millis(500)),
    );
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(run_with(config, runtime, runner, async {
        let _ = rx.await;
    }));
    TestAgent {
        task,
        shutdown: Some(tx),
    }
}

/// A server in `root/server`, and an agent (its state in `root/agent`, no
/// Docker) registered as `web-1` and put into group `prod` of application `shop`.
async fn server_and_agent_in_group(root: &Path) -> (TestServer, PathBuf, TestAgent) {
    let server = start_server(&root.join("server")).await;
    let state_dir = root.join("agent");
    let token = server.registration_token(1).await;
    let agent = spawn_agent(config(&server, &state_dir, Some(token)), no_docker());
    let instance = server.wait_instance("web-1").await;
    server
        .app_with_group(instance["id"].as_str().expect("id"))
        .await;
    (server, state_dir, agent)
}

/// A container runtime without Docker: records what it was asked to pull.
#[derive(Default)]
struct FakeRuntime {
    pulls: Mutex<Vec<(String, Option<RegistryCredentials>)>>,
}

const FAKE_DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn ping(&self) -> Result<EngineVersion, DockerError> {
        Ok(EngineVersion {
            version: "fake".into(),
            api_version: "1.41".into(),
        })
    }

    async fn pull(
        &self,
        image_ref: &str,
        credentials: Option<&RegistryCredentials>,
        _timeout: Duration,
        output: &OutputSink,
    ) -> Result<String, DockerError> {
        self.pulls
            .lock()
            .expect("lock")
            .push((image_ref.to_owned(), credentials.cloned()));
        output.push_line(format!("fake: pulled {image_ref}").as_bytes());
        Ok(FAKE_DIGEST.to_owned())
    }

    async fn image_digest(&self, _image_ref: &str) -> Result<Option<String>, DockerError> {
        Ok(Some(FAKE_DIGEST.to_owned()))
    }
}

fn no_docker() -> Arc<dyn ContainerRuntime> {
    Arc::new(FakeRuntime::default())
}

/// A start script that prints a line and waits (up to 60 s) until `file` exists.
fn wait_for_file_script(file: &Path) -> String {
    format!(
        "echo waiting for the go-ahead\nfor i in $(seq 600); do [ -e '{}' ] && break; sleep 0.1; done\necho go-ahead received\n",
        file.display()
    )
}

/// Everything logged (at every level, by the agent and the server) on this test's thread.
/// `#[tokio::test]` runs every task of a test on its own thread, so a thread-local
/// subscriber sees all of them.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    /// Asserts that no secret appears in the logs (and that logging was captured at all).
    fn assert_free_of(&self, secrets: &[&str]) {
        let text = self.text();
        assert!(text.contains("registered"), "no logs captured: {text}");
        for secret in secrets {
            assert!(!secret.is_empty());
            assert!(!text.contains(secret), "a secret was logged:\n{text}");
        }
    }
}

/// Captures this test's logs (its thread's: the tests run on current-thread
/// runtimes).
///
/// `tracing` decides once per log statement, for the whole process, whether
/// anyone listens to it, asking the subscriber of the thread that reaches it
/// first. A sibling test running the agent without a capture would answer "no
/// one" and silence that statement here too (seen: the agent's "registered" line
/// went missing). So every thread gets a subscriber that listens to everything and
/// keeps nothing (a bare registry, installed once as the global default), and this
/// thread's capture comes on top of it.
fn capture_logs() -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    static LISTEN_EVERYWHERE: std::sync::Once = std::sync::Once::new();
    LISTEN_EVERYWHERE.call_once(|| {
        // Fails only if a global subscriber exists already, which then listens.
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    });
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    (logs, guard)
}

fn credential_in(state_dir: &Path) -> String {
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(state_dir.join("state.json")).expect("state"),
    )
    .expect("json");
    state["credential"].as_str().expect("credential").to_owned()
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn registers_once_then_reuses_its_state_without_a_token() {
    let (logs, _guard) = capture_logs();
    let root = tempfile::tempdir().expect("tempdir");
    let server = start_server(&root.path().join("server")).await;
    let state_dir = root.path().join("agent");
    let token = server.registration_token(1).await;

    let agent = spawn_agent(
        config(&server, &state_dir, Some(token.clone())),
        no_docker(),
    );
    let instance = server.wait_instance("web-1").await;
    assert_eq!(instance["status"], "online");
    assert_eq!(instance["os"], "linux");
    assert_eq!(instance["labels"]["zone"], "a");
    let instance_id = instance["id"].as_str().expect("id").to_owned();

    let state_file = state_dir.join("state.json");
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).expect("meta").permissions())
            & 0o777
    };
    assert_eq!(mode(&state_dir), 0o700);
    assert_eq!(mode(&state_file), 0o600);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).expect("state")).expect("json");
    assert_eq!(state["instance_id"], instance_id.as_str());
    assert_eq!(state["server"], server.url().as_str());

    // Stopping while long-polling is prompt.
    let (result, took) = agent.stop().await;
    result.expect("clean stop");
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");

    // A journal of a release this instance never had is reported, refused and dropped.
    std::fs::write(
        state_dir.join("journal.json"),
        r#"{"release_id":"r-0000000000000000","step":"start"}"#,
    )
    .expect("journal");

    // The second start needs no token (the token had one use, already spent).
    let agent = spawn_agent(config(&server, &state_dir, None), no_docker());
    server.app_with_group(&instance_id).await;
    let workdir = root.path().join("srv/shop");
    server
        .command_deployment("v1", &workdir, "echo hello from $WHARF_APP", "")
        .await;
    let id = server.release("v1").await;
    let release = server.wait_release_done(&id).await;
    assert_eq!(release["state"], "succeeded", "{release}");
    assert!(!state_dir.join("journal.json").exists());

    let list = server.get("/instances").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let (result, _) = agent.stop().await;
    result.expect("clean stop");

    // The token was single-use: another agent cannot register with it.
    let other = spawn_agent(
        AgentConfig {
            name: Some("web-2".into()),
            ..config(&server, &root.path().join("agent-2"), Some(token.clone()))
        },
        no_docker(),
    );
    let err = tokio::time::timeout(DEADLINE, other.task)
        .await
        .expect("in time")
        .expect("task")
        .expect_err("token already used");
    assert!(
        matches!(err, AgentError::RegistrationRefused { .. }),
        "{err}"
    );
    logs.assert_free_of(&[&token, &credential_in(&state_dir)]);
}

#[tokio::test]
async fn a_bad_registration_token_fails_clearly() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = start_server(&root.path().join("server")).await;
    let state_dir = root.path().join("agent");
    let agent = spawn_agent(
        config(&server, &state_dir, Some("wrt_not-a-real-token".into())),
        no_docker(),
    );
    let err = tokio::time::timeout(DEADLINE, agent.task)
        .await
        .expect("in time")
        .expect("task")
        .expect_err("bad token");
    let AgentError::RegistrationRefused { code, message } = &err else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(code, "registration_refused", "{message}");
    let text = err.to_string();
    assert!(text.contains("refused the registration"), "{text}");
    assert!(!text.contains("not-a-real-token"), "{text}");
    assert!(!state_dir.join("state.json").exists());
}

#[tokio::test]
async fn a_command_release_succeeds_with_every_step_and_its_output() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = start_server(&root.path().join("server")).await;
    let state_dir = root.path().join("agent");
    let token = server.registration_token(1).await;
    let agent = spawn_agent(config(&server, &state_dir, Some(token)), no_docker());
    let instance = server.wait_instance("web-1").await;
    let instance_id = instance["id"].as_str().expect("id").to_owned();
    server.app_with_group(&instance_id).await;

    let workdir = root.path().join("srv/shop");
    server
        .post(
            "/apps/shop/deployments",
            json!({
                "name": "v1",
                "type": "command",
                "workdir": workdir,
                "start_script": "echo \"start $WHARF_APP $WHARF_GROUP $WHARF_DEPLOYMENT $WHARF_STEP $WHARF_RELEASE $WHARF_INSTANCE\"\npwd\necho to-stderr >&2\n",
                "stop_script": "echo stopping old version",
                "verify": { "url": format!("{}/healthz", server.url()), "expect_body": "ok" },
                "timeouts": { "script_secs": 30, "verify_secs": 10 },
            }),
        )
        .await;
    let id = server.release("v1").await;
    let release = server.wait_release_done(&id).await;
    assert_eq!(release["state"], "succeeded", "{release}");
    assert_eq!(
        step_names(&release),
        ["fetch", "prepare", "stop", "start", "verify"]
    );
    let all = steps(&release);
    assert!(all.iter().all(|s| s["state"] == "succeeded"), "{all:?}");
    assert_eq!(step(&all, "start")["exit_code"], 0);
    assert!(workdir.is_dir(), "prepare creates the working directory");

    let start = server.log_of(&id, "start").await;
    let output = start["output"].as_str().unwrap_or_default();
    assert!(
        output.contains(&format!("start shop prod v1 start {id} {instance_id}\n")),
        "{output}"
    );
    assert!(
        output.contains(&format!("{}\n", workdir.display())),
        "{output}"
    );
    assert!(output.contains("to-stderr\n"), "{output}");
    let stop = server.log_of(&id, "stop").await;
    assert_eq!(stop["output"], "stopping old version\n");
    let verify = server.log_of(&id, "verify").await;
    assert!(
        verify["output"]
            .as_str()
            .unwrap_or_default()
            .contains("/healthz: status 200"),
        "{verify}"
    );
    assert!(!state_dir.join("journal.json").exists());

    let group = server.get("/apps/shop/groups/prod").await;
    assert_eq!(group["current_deployment"], "v1", "{group}");
    let (result, _) = agent.stop().await;
    result.expect("clean stop");
}

#[tokio::test]
async fn each_step_after_the_first_begins_in_the_previous_steps_end_report() {
    let root = tempfile::tempdir().expect("tempdir");
    let (server, state_dir, agent) = server_and_agent_in_group(root.path()).await;
    // Scripts without output, so that only begins and ends are reported.
    let workdir = root.path().join("srv/shop");
    server
        .command_deployment("v1", &workdir, "true", "true")
        .await;
    let id = server.release("v1").await;
    let release = server.wait_release_done(&id).await;
    assert_eq!(release["state"], "succeeded", "{release}");
    assert_eq!(step_names(&release), ["fetch", "prepare", "stop", "start"]);
    assert!(steps(&release).iter().all(|s| s["state"] == "succeeded"));

    // prepare's begin, then the ends of prepare (with stop's begin), stop (with
    // start's) and start: four reports for three steps. A request is counted
    // once it is answered, which may come just after the release is seen done.
    let reports = "wharf_http_requests_total{method=\"POST\",route=\"/agent/v1/releases/{id}/events\",status=\"200\"} ";
    let count = wait_for("the step reports to be counted", || async {
        let metrics = server
            .http
            .get(format!("{}/metrics", server.url()))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let count: u32 = metrics
            .lines()
            .find_map(|line| line.strip_prefix(reports))?
            .parse()
            .ok()?;
        (count >= 4).then_some(count)
    })
    .await;
    assert_eq!(count, 4);
    assert!(!state_dir.join("journal.json").exists());
    let (result, _) = agent.stop().await;
    result.expect("clean stop");
}

#[tokio::test]
async fn a_failing_start_script_fails_the_release_on_start_and_keeps_its_output() {
    let root = tempfile::tempdir().expect("tempdir");
    let (server, _, agent) = server_and_agent_in_group(root.path()).await;
    server
        .command_deployment(
            "v1",
            &root.path().join("srv"),
            "echo before the failure\necho oops >&2\nexit 3\n",
            "true",
        )
        .await;
    let id = server.release("v1").await;
    let release = server.wait_release_done(&id).await;
    assert_eq!(release["state"], "failed", "{release}");
    assert_eq!(step_names(&release), ["fetch", "prepare", "stop", "start"]);
    let all = steps(&release);
    let start = step(&all, "start");
    assert_eq!(start["state"], "failed");
    assert_eq!(start["exit_code"], 3);
    let log = server.log_of(&id, "start").await;
    assert_eq!(log["output"], "before the failure\noops\n", "{log}");

    // A step that times out is stopped and says so.
    server
        .post(
            "/apps/shop/deployments",
            json!({
                "name": "v2",
                "type": "command",
                "workdir": root.path().join("srv"),
                "start_script": "echo sleeping\nsleep 30\n",
                "stop_script": "",
                "timeouts": { "script_secs": 1 },
            }),
        )
        .await;
    let id = server.release("v2").await;
    let release = server.wait_release_done(&id).await;
    assert_eq!(release["state"], "failed", "{release}");
    let all = steps(&release);
    assert_eq!(
        step(&all, "stop")["state"],
        "succeeded",
        "empty stop script"
    );
    let start = step(&all, "start");
    assert_eq!(start["state"], "failed");
    assert_eq!(
        start["message"],
        "timed out after 1 s; the process group was killed"
    );
    let (result, _) = agent.stop().await;
    result.expect("clean stop");
}

#[tokio::test]
async fn a_docker_image_release_pulls_with_the_registry_credentials() {
    let (logs, _guard) = capture_logs();
    let root = tempfile::tempdir().expect("tempdir");
    let server = start_server(&root.path().join("server")).await;
    let state_dir = root.path().join("agent");
    let token = server.registration_token(1).await;
    let runtime = Arc::new(FakeRuntime::default());
    let agent = spawn_agent(
        config(&server, &state_dir, Some(token.clone())),
        runtime.clone(),
    );
    let instance = server.wait_instance("web-1").await;
    server
        .app_with_group(instance["id"].as_str().expect("id"))
        .await;
    let password = "pa?ss>wo/rd+secret";
    server
        .post(
            "/registries",
            json!({
                "name": "main",
                "endpoint": "registry.example:5000",
                "username": "deployer",
                "password": password,
            }),
        )
        .await;
    server
        .post(
            "/apps/shop/deployments",
            json!({
                "name": "v1",
                "type": "docker-image",
                "image": { "registry": "main", "namespace": "team", "repository": "shop", "tag": "1.0" },
                "workdir": root.path().join("srv"),
                "start_script": "echo \"image=$WHARF_IMAGE digest=$WHARF_IMAGE_DIGEST\"",
                "stop_script": "",
            }),
        )
        .await;
    let id = server.release("v1").await;
    let release = server.wait_release_done(&id).await;
    assert_eq!(release["state"], "succeeded", "{release}");
    assert_eq!(
        step_names(&release),
        ["fetch", "prepare", "pull", "stop", "start"]
    );
    let instance = &release["batches"][0]["instances"][0];
    assert_eq!(instance["image_digest"], FAKE_DIGEST, "{instance}");

    let pulls = runtime.pulls.lock().expect("lock").clone();
    assert_eq!(pulls.len(), 1);
    let (image, credentials) = &pulls[0];
    assert_eq!(image, "registry.example:5000/team/shop:1.0");
    let credentials = credentials.as_ref().expect("credentials");
    assert_eq!(credentials.server_address, "registry.example:5000");
    assert_eq!(credentials.username, "deployer");
    assert_eq!(credentials.password, password);

    let start = server.log_of(&id, "start").await;
    assert_eq!(
        start["output"],
        format!("image=registry.example:5000/team/shop:1.0 digest={FAKE_DIGEST}\n")
    );
    let pull = server.log_of(&id, "pull").await;
    assert!(
        pull["output"]
            .as_str()
            .unwrap_or_default()
            .contains("fake: pulled registry.example:5000/team/shop:1.0"),
        "{pull}"
    );
    // The password appears in no log and no file of the agent.
    let step_logs = server.get(&format!("/releases/{id}/logs")).await;
    assert!(!step_logs.to_string().contains("secret"), "{step_logs}");
    for entry in std::fs::read_dir(&state_dir).expect("state dir").flatten() {
        if entry.path().is_file() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            assert!(!text.contains(password), "{}", entry.path().display());
        }
    }
    let (result, _) = agent.stop().await;
    result.expect("clean stop");
    logs.assert_free_of(&[password, &token, &credential_in(&state_dir)]);
}

#[tokio::test]
async fn heartbeats_and_output_continue_during_a_long_step() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = start_server(&root.path().join("server")).await;
    let state_dir = root.path().join("agent");
    let token = server.registration_token(1).await;
    let agent = spawn_agent(config(&server, &state_dir, Some(token)), no_docker());
    let instance = server.wait_instance("web-1").await;
    let instance_id = instance["id"].as_str().expect("id").to_owned();
    server.app_with_group(&instance_id).await;
    let go = root.path().join("go");
    server
        .command_deployment(
            "v1",
            &root.path().join("srv"),
            &wait_for_file_script(&go),
            "",
        )
        .await;
    let id = server.release("v1").await;
    server.wait_step_running(&id, "start").await;

    // Output of the running step reaches the server while it runs.
    wait_for("streamed output", || async {
        let log = server.log_of(&id, "start").await;
        (log["output"] == "waiting for the go-ahead\n").then_some(())
    })
    .await;
    // A heartbeat arrives while the step runs (the server asks for one every 10 s).
    let release = server.get(&format!("/releases/{id}")).await;
    let all = steps(&release);
    let step_started = step(&all, "start")["started_at"]
        .as_str()
        .expect("started_at")
        .to_owned();
    let heartbeat = wait_for("a heartbeat during the step", || async {
        let instance = server.get(&format!("/instances/{instance_id}")).await;
        let last = instance["last_heartbeat_at"].as_str()?.to_owned();
        let after = chrono_like_after(&last, &step_started);
        after.then_some(instance)
    })
    .await;
    assert_eq!(heartbeat["status"], "online");

    std::fs::write(&go, b"").expect("go");
    let release = server.wait_release_done(&id).await;
    assert_eq!(release["state"], "succeeded", "{release}");
    let log = server.log_of(&id, "start").await;
    assert_eq!(
        log["output"],
        "waiting for the go-ahead\ngo-ahead received\n"
    );
    let (result, _) = agent.stop().await;
    result.expect("clean stop");
}

#[tokio::test]
async fn output_after_a_cut_line_still_reaches_the_server() {
    let root = tempfile::tempdir().expect("tempdir");
    let (server, _state_dir, agent) = server_and_agent_in_group(root.path()).await;
    let go = root.path().join("go");
    // A line longer than the agent keeps (16 KiB): the agent cuts it and counts
    // the cut bytes as dropped, in the report that carries the line. The output
    // after it, reported later, starts where the agent counted those bytes too.
    let long_line = 20_000;
    let script = format!(
        "head -c {long_line} /dev/zero | tr '\\0' x; echo\n{}echo after the long line\n",
        wait_for_file_script(&go)
    );
    server
        .command_deployment("v1", &root.path().join("srv"), &script, "")
        .await;
    let id = server.release("v1").await;
    wait_for("the long line streamed", || async {
        let log = server.log_of(&id, "start").await;
        log["output"]
            .as_str()?
            .contains("waiting for the go-ahead")
            .then_some(())
    })
    .await;
    std::fs::write(&go, b"").expect("go");
    let release = server.wait_release_done(&id).await;
    assert_eq!(release["state"], "succeeded", "{release}");
    let log = server.log_of(&id, "start").await;
    let output = log["output"].as_str().expect("output");
    assert!(
        output.ends_with("go-ahead received\nafter the long line\n"),
        "{output:?}"
    );
    let kept_of_the_line = output.find('\n').expect("a line");
    assert_eq!(
        log["dropped_bytes"].as_u64(),
        Some((long_line - kept_of_the_line) as u64),
        "{log:#}"
    );
    let (result, _) = agent.stop().await;
    result.expect("clean stop");
}

/// Whether RFC 3339 timestamp `a` is later than `b` (both as the server writes them, in
/// UTC with the same format, so that they compare as text once normalised).
fn chrono_like_after(a: &str, b: &str) -> bool {
    fn key(t: &str) -> String {
        // "2024-01-02T03:04:05.678Z" / "...05.678+00:00": keep the digits in order and
        // pad the fraction so that the texts compare like the times.
        let t = t.trim_end_matches('Z').trim_end_matches("+00:00");
        let (main, fraction) = t.split_once('.').unwrap_or((t, ""));
        format!("{main}.{fraction:0<9}")
    }
    key(a) > key(b)
}

#[tokio::test]
async fn an_agent_killed_mid_step_reports_that_step_when_it_restarts() {
    let root = tempfile::tempdir().expect("tempdir");
    let (server, state_dir, agent) = server_and_agent_in_group(root.path()).await;
    let never = root.path().join("never");
    server
        .command_deployment(
            "v1",
            &root.path().join("srv"),
            &wait_for_file_script(&never),
            "",
        )
        .await;
    let id = server.release("v1").await;
    server.wait_step_running(&id, "start").await;
    agent.kill().await;

    let journal: Value = serde_json::from_str(
        &std::fs::read_to_string(state_dir.join("journal.json")).expect("journal left behind"),
    )
    .expect("journal json");
    assert_eq!(journal["release_id"], id.as_str());
    assert_eq!(journal["step"], "start");

    let agent = spawn_agent(config(&server, &state_dir, None), no_docker());
    let release = server.wait_release_done(&id).await;
    assert_eq!(release["state"], "failed", "{release}");
    let all = steps(&release);
    let start = step(&all, "start");
    assert_eq!(start["state"], "failed");
    assert_eq!(start["message"], RESTARTED_MESSAGE, "{start}");
    wait_for("journal cleared", || async {
        (!state_dir.join("journal.json").exists()).then_some(())
    })
    .await;
    let (result, _) = agent.stop().await;
    result.expect("clean stop");
}

#[tokio::test]
async fn reports_survive_a_server_restart_mid_step() {
    let root = tempfile::tempdir().expect("tempdir");
    let (mut server, _, agent) = server_and_agent_in_group(root.path()).await;
    let go = root.path().join("go");
    server
        .command_deployment(
            "v1",
            &root.path().join("srv"),
            &wait_for_file_script(&go),
            "",
        )
        .await;
    let id = server.release("v1").await;
    server.wait_step_running(&id, "start").await;

    // The server goes away; the step ends while it is down.
    server.stop().await;
    std::fs::write(&go, b"").expect("go");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.restart().await;

    let release = server.wait_release_done(&id).await;
    assert_eq!(release["state"], "succeeded", "{release}");
    let log = server.log_of(&id, "start").await;
    let output = log["output"].as_str().unwrap_or_default();
    assert!(output.contains("go-ahead received\n"), "{output}");
    let (result, _) = agent.stop().await;
    result.expect("clean stop");
}

#[tokio::test]
async fn shutdown_mid_step_finishes_and_reports_the_step_first() {
    let root = tempfile::tempdir().expect("tempdir");
    let (server, state_dir, agent) = server_and_agent_in_group(root.path()).await;
    let go = root.path().join("go");
    server
        .command_deployment(
            "v1",
            &root.path().join("srv"),
            &wait_for_file_script(&go),
            "",
        )
        .await;
    let id = server.release("v1").await;
    server.wait_step_running(&id, "start").await;

    let stopping = tokio::spawn(agent.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "the agent waits for its step");
    std::fs::write(&go, b"").expect("go");
    let (result, _) = stopping.await.expect("stop task");
    result.expect("clean stop");

    let release = server.wait_release_done(&id).await;
    assert_eq!(release["state"], "succeeded", "{release}");
    assert!(!state_dir.join("journal.json").exists());
}

#[tokio::test]
async fn a_step_begun_in_the_report_that_shutdown_overtook_is_reported_as_not_run() {
    let root = tempfile::tempdir().expect("tempdir");
    let (mut server, state_dir, agent) = server_and_agent_in_group(root.path()).await;
    // A silent stop script (output would be reported while the server is
    // down) that waits for the go-ahead, and a start script that leaves a mark.
    let (go, stop_done, started) = (
        root.path().join("go"),
        root.path().join("stop-done"),
        root.path().join("started"),
    );
    let stop_script = format!(
        "for i in $(seq 600); do [ -e '{}' ] && break; sleep 0.05; done\ntouch '{}'\n",
        go.display(),
        stop_done.display()
    );
    let start_script = format!("touch '{}'\n", started.display());
    server
        .command_deployment("v1", &root.path().join("srv"), &start_script, &stop_script)
        .await;
    let id = server.release("v1").await;
    server.wait_step_running(&id, "stop").await;

    // The server goes away and stop ends: its end, which begins start, cannot
    // be delivered. Shutdown is requested while the agent retries it; the
    // server comes back and takes the report.
    server.stop().await;
    std::fs::write(&go, b"").expect("go");
    wait_for("the stop script to end", || async {
        stop_done.exists().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(agent.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.restart().await;
    let (result, _) = stopping.await.expect("stop task");
    result.expect("clean stop");

    // start was begun with stop's end, but did not run: it is reported as such
    // at once, and the task fails.
    let release = server.wait_release_done(&id).await;
    assert_eq!(release["state"], "failed", "{release}");
    let all = steps(&release);
    assert_eq!(step(&all, "stop")["state"], "succeeded", "{all:?}");
    let start = step(&all, "start");
    assert_eq!(start["state"], "failed", "{all:?}");
    assert_eq!(start["message"], STOPPED_BEFORE_MESSAGE, "{all:?}");
    assert!(!started.exists(), "the start script did not run");
    assert!(!state_dir.join("journal.json").exists());
}

#[tokio::test]
async fn a_deleted_instance_stops_the_agent_with_a_clear_error() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = start_server(&root.path().join("server")).await;
    let state_dir = root.path().join("agent");
    let token = server.registration_token(1).await;
    let agent = spawn_agent(config(&server, &state_dir, Some(token)), no_docker());
    let instance = server.wait_instance("web-1").await;
    let instance_id = instance["id"].as_str().expect("id").to_owned();
    let (status, body) = server
        .call(
            reqwest::Method::DELETE,
            &format!("/instances/{instance_id}"),
            None,
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");

    // A restart with the old credential is rejected at its first heartbeat or poll.
    agent.kill().await;
    let agent = spawn_agent(config(&server, &state_dir, None), no_docker());
    let err = tokio::time::timeout(DEADLINE, agent.task)
        .await
        .expect("in time")
        .expect("task")
        .expect_err("credential rejected");
    assert!(
        matches!(err, AgentError::CredentialRejected { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&instance_id) && text.contains("state.json"),
        "{text}"
    );
}
