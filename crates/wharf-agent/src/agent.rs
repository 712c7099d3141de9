//! The agent: registration, heartbeats, the long-poll loop, and running one assignment
//! at a time while reporting its steps.
//!
//! Lifecycle of [`run`] / [`run_with`]:
//!
//! 1. Refuse anything but Linux. Create the state directory (0700).
//! 2. Reuse `state.json` if it was written for the same server; otherwise register with
//!    the registration token (required then) and write `state.json` (0600). Connection
//!    errors and 5xx answers during registration are retried with backoff; refusals
//!    (bad token, name taken, invalid field) end the agent with the server's message.
//! 3. Start the heartbeat task: one heartbeat at once (which also checks a reused
//!    credential), then one per server-given interval, independent of step execution.
//! 4. If `journal.json` shows that an earlier run was killed inside a step, report that
//!    step's end (a failure, "the agent restarted while this step was running", unless
//!    the step had ended and only its report was missing) and clear the journal.
//! 5. Long-poll for work (`wait_secs=25`, 40 s HTTP timeout). Errors back off from 1 s,
//!    doubling to 15 s. A task runs to its end, and every report of it is delivered,
//!    before the next poll (the server fails a task whose agent polls mid-task).
//!
//! Reports (`Begin`, `Output`, `End`) are delivered in order; the `End` of a step that
//! succeeded carries the next step's begin (`then_begin`), so only a task's first step
//! has a `Begin` of its own. Connection errors and 5xx
//! answers are retried with backoff until the server is back. 4xx answers are logged and
//! not retried (a refused `Begin` or `End` ends the task on this side too). A 401
//! anywhere means the instance was deleted or its credential revoked: the agent logs it
//! and returns [`AgentError::CredentialRejected`] instead of spinning.
//!
//! Shutdown: while idle or long-polling the agent stops at once. In the middle of a task
//! it lets the running step finish (a script is not killed halfway, which could leave the
//! application stopped), delivers that step's reports, runs no further step, and stops.
//! While shutting down, report delivery is retried for at most
//! [`SHUTDOWN_REPORT_GRACE`]; what is not delivered by then stays in the journal and is
//! reported by the next start. The server fails the rest of the task when the agent
//! polls again (or when the instance goes offline or the task passes its deadline).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wharf_api::agent::{AgentRegister, DockerStatus};
use wharf_api::{StepEvent, WorkAssignment};

use crate::backoff::{heartbeat_delay, Backoff};
use crate::docker::{ContainerRuntime, DockerError, DockerRuntime, DEFAULT_DOCKER_SOCKET};
use crate::link::{normalize_server_url, Link, LinkError, POLL_WAIT_SECS};
use crate::output::OutputSink;
use crate::process::{BashRunner, ProcessRunner};
use crate::state::{
    load_state, prepare_state_dir, save_state, AgentState, Journal, JournalEntry, JournaledEnd,
    StateFileError, STATE_FILE,
};
use crate::steps::{Executor, StepResult};

/// The agent's version (for `--version`, registration and heartbeats).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The state directory the binary should default to.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/wharf-agent";

/// The heartbeat interval used until the server names one.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

pub use crate::backoff::{MAX_BACKOFF, MIN_BACKOFF};

/// How long reports are still retried once shutdown was requested.
pub const SHUTDOWN_REPORT_GRACE: Duration = Duration::from_secs(10);

/// The most output sent in one `Output` report. JSON escaping can grow text up to six
/// times (control characters), and the server accepts bodies up to 1 MiB.
const MAX_OUTPUT_CHUNK: usize = 128 * 1024;
/// The shortest time between two `Output` reports of a step.
const OUTPUT_INTERVAL: Duration = Duration::from_millis(500);

/// The message of a step that was running when the agent was killed.
pub const RESTARTED_MESSAGE: &str = "the agent restarted while this step was running";
/// Why a step the server was told had begun did not run: the agent was stopped
/// between the report that began it and the step.
pub const STOPPED_BEFORE_MESSAGE: &str = "the agent was stopped before this step ran";

/// How to run the agent.
#[derive(Clone)]
pub struct AgentConfig {
    /// The server's URL, `http[s]://host[:port][/prefix]`.
    pub server: String,
    /// Needed only for the first start (when there is no `state.json` for this server).
    pub registration_token: Option<String>,
    /// Where `state.json` and `journal.json` live; created with mode 0700.
    pub state_dir: PathBuf,
    /// The instance name to register with (default: the hostname).
    pub name: Option<String>,
    /// Labels to register with.
    pub labels: BTreeMap<String, String>,
    /// The scaling group to join when registering.
    pub scaling_group: Option<String>,
    /// The Docker Engine socket (default [`DEFAULT_DOCKER_SOCKET`]); used by [`run`].
    pub docker_socket: Option<PathBuf>,
    /// The roots the server's certificate must chain to (`--ca-cert`).
    pub trust: wharf_client::ServerTrust,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("server", &self.server)
            .field(
                "registration_token",
                &self.registration_token.as_ref().map(|_| "<redacted>"),
            )
            .field("state_dir", &self.state_dir)
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("scaling_group", &self.scaling_group)
            .field("docker_socket", &self.docker_socket)
            .field("trust", &self.trust)
            .finish()
    }
}

/// Why the agent stopped (or could not start). Like the other errors of this crate,
/// sources are kept out of the message: print with [`crate::error_chain`].
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent runs on Linux only.
    #[error("the Wharf agent runs on Linux only; this is {os}")]
    UnsupportedOs { os: &'static str },
    /// The server URL cannot be used.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidServer { url: String, reason: String },
    /// The HTTP client could not be set up.
    #[error("{0}")]
    HttpClient(String),
    /// The state directory could not be created.
    #[error("cannot prepare the state directory {}", path.display())]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `state.json` exists but cannot be used.
    #[error("cannot use the agent state; remove the file to register again")]
    State(#[source] StateFileError),
    /// Registration succeeded but its credential could not be saved.
    #[error("registered as instance {instance_id} but cannot save the credential to {}; delete that instance on the server and fix the state directory", path.display())]
    SaveState {
        instance_id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not registered with this server yet, and no registration token to do so.
    #[error("this agent is not registered with {server} yet (no {}); start it with a registration token (create one with `wharf instance token create`)", state_file.display())]
    RegistrationTokenRequired { server: String, state_file: PathBuf },
    /// The server refused the registration.
    #[error("the server refused the registration ({code}): {message}")]
    RegistrationRefused { code: String, message: String },
    /// The server's TLS certificate is not trusted (not signed by the CA given).
    #[error("{0}")]
    Untrusted(String),
    /// The server rejected the agent's credential: the instance was deleted or its
    /// credential revoked.
    #[error("the server rejected this agent's credential (instance {instance_id}): {message}; if the instance was deleted, remove {} and start the agent with a new registration token", state_file.display())]
    CredentialRejected {
        instance_id: String,
        state_file: PathBuf,
        message: String,
    },
    /// The Docker Engine client could not be set up.
    #[error("cannot set up the Docker Engine client")]
    Docker(#[source] DockerError),
    /// `--deregister`: the server did not take the deregistration.
    #[error("cannot deregister from {server}: {message}")]
    Deregister { server: String, message: String },
}

/// Deregisters this agent (`wharf agent --deregister`, on shutdown): asks the
/// server to delete the instance, which leaves its groups and its scaling group,
/// then removes `state.json`, so that a next start registers afresh. Returns
/// whether there was a registration with this server to end.
pub async fn deregister(config: &AgentConfig) -> Result<bool, AgentError> {
    let server =
        normalize_server_url(&config.server).map_err(|reason| AgentError::InvalidServer {
            url: config.server.clone(),
            reason,
        })?;
    let state_file = config.state_dir.join(STATE_FILE);
    let Some(state) = load_state(&state_file)
        .map_err(AgentError::State)?
        .filter(|state| state.server == server)
    else {
        return Ok(false);
    };
    let failed = |message: String| AgentError::Deregister {
        server: server.clone(),
        message,
    };
    let link = Link::with_trust(
        &server,
        &format!("wharf-agent/{VERSION}"),
        config.trust.clone(),
    )
    .and_then(|link| link.with_credential(&state.credential))
    .map_err(|err| AgentError::HttpClient(err.to_string()))?;
    link.deregister()
        .await
        .map_err(|err| failed(err.to_string()))?;
    std::fs::remove_file(&state_file).map_err(|err| {
        failed(format!(
            "deregistered, but cannot remove {}: {err}",
            state_file.display()
        ))
    })?;
    tracing::info!(instance = %state.instance_id, "deregistered from the server");
    Ok(true)
}

/// Runs the agent with the real Docker Engine (at `config.docker_socket`) and `bash`,
/// until `shutdown` completes (then `Ok(())`) or a fatal error. See the module docs.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    ensure_linux()?;
    let socket = config
        .docker_socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DOCKER_SOCKET));
    let runtime = DockerRuntime::new(&socket).map_err(AgentError::Docker)?;
    // A missing engine is not fatal: `command` deployments do not need one.
    match tokio::time::timeout(Duration::from_secs(5), runtime.ping()).await {
        Ok(Ok(version)) => tracing::info!(
            socket = %socket.display(),
            version = %version.version,
            api = %version.api_version,
            "Docker Engine found"
        ),
        Ok(Err(err)) => tracing::warn!(
            error = %crate::error_chain(&err),
            "Docker Engine not available; docker-image deployments will fail until it is"
        ),
        Err(_) => tracing::warn!(
            socket = %socket.display(),
            "Docker Engine did not answer within 5 s; docker-image deployments may fail"
        ),
    }
    let run_root = config.state_dir.join("run");
    remove_stale_run_dirs(&run_root);
    let runner = BashRunner::new(run_root);
    run_with(config, Arc::new(runtime), Arc::new(runner), shutdown).await
}

/// Runs the agent with the given container runtime and script runner (tests use fakes).
pub async fn run_with(
    config: AgentConfig,
    runtime: Arc<dyn ContainerRuntime>,
    runner: Arc<dyn ProcessRunner>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    ensure_linux()?;
    let (stop_tx, stop_rx) = watch::channel(StopCause::Running);
    let stop_tx = Arc::new(stop_tx);
    let signal = {
        let stop_tx = Arc::clone(&stop_tx);
        async move {
            shutdown.await;
            tracing::info!("shutdown requested");
            stop_tx.send_if_modified(|cause| {
                let running = *cause == StopCause::Running;
                if running {
                    *cause = StopCause::Shutdown;
                }
                running
            });
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = agent_main(config, runtime, runner, stop_tx, Stop { rx: stop_rx }) => result,
        () = signal => Ok(()),
    }
}

fn ensure_linux() -> Result<(), AgentError> {
    if cfg!(target_os = "linux") {
        Ok(())
    } else {
        Err(AgentError::UnsupportedOs {
            os: std::env::consts::OS,
        })
    }
}

/// Why the agent is stopping.
#[derive(Clone, Debug, PartialEq, Eq)]
enum StopCause {
    Running,
    Shutdown,
    /// The server answered 401; the server's message.
    Revoked(String),
}

#[derive(Clone)]
struct Stop {
    rx: watch::Receiver<StopCause>,
}

impl Stop {
    fn cause(&self) -> StopCause {
        self.rx.borrow().clone()
    }

    fn requested(&self) -> bool {
        self.cause() != StopCause::Running
    }

    /// Completes once a stop is requested.
    async fn wait(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|c| *c != StopCause::Running).await.is_err() {
            // The sender lives as long as the agent; without it nothing can stop us.
            std::future::pending::<()>().await;
        }
    }
}

/// Aborts a spawned task when dropped (the heartbeat task must not outlive the agent).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The outcome of delivering one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Acknowledged; whether the server wants further steps.
    Acked { proceed: bool },
    /// Refused with a 4xx (logged); not retried.
    Refused,
    /// Not delivered: shutdown was requested and the server stayed unreachable.
    Abandoned,
}

struct Agent {
    link: Link,
    executor: Executor,
    journal: Journal,
    stop: Stop,
    stop_tx: Arc<watch::Sender<StopCause>>,
    instance_id: String,
    state_file: PathBuf,
}

async fn agent_main(
    config: AgentConfig,
    runtime: Arc<dyn ContainerRuntime>,
    runner: Arc<dyn ProcessRunner>,
    stop_tx: Arc<watch::Sender<StopCause>>,
    stop: Stop,
) -> Result<(), AgentError> {
    let server =
        normalize_server_url(&config.server).map_err(|reason| AgentError::InvalidServer {
            url: config.server.clone(),
            reason,
        })?;
    prepare_state_dir(&config.state_dir).map_err(|source| AgentError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;
    let link = Link::with_trust(
        &server,
        &format!("wharf-agent/{VERSION}"),
        config.trust.clone(),
    )
    .map_err(|err| AgentError::HttpClient(err.to_string()))?;
    let state_file = config.state_dir.join(STATE_FILE);

    let Some((state, interval)) = registration(&config, &server, &link, &state_file, &stop).await?
    else {
        return Ok(());
    };
    tracing::info!(
        instance = %state.instance_id,
        name = %state.name,
        server = %server,
        version = VERSION,
        "agent running"
    );
    let link = link
        .with_credential(&state.credential)
        .map_err(|err| AgentError::HttpClient(err.to_string()))?;

    let _heartbeat = AbortOnDrop(tokio::spawn(heartbeat_loop(
        link.clone(),
        interval,
        Arc::clone(&stop_tx),
        Arc::clone(&runtime),
    )));

    let agent = Agent {
        executor: Executor::new(runtime, runner, link.probe_http().clone()),
        link,
        journal: Journal::new(&config.state_dir),
        stop,
        stop_tx,
        instance_id: state.instance_id,
        state_file,
    };
    let result = agent.serve().await;
    match (result, agent.stop.cause()) {
        (Err(err), _) => Err(err),
        (Ok(()), StopCause::Revoked(message)) => Err(agent.rejected(message)),
        (Ok(()), _) => {
            tracing::info!("agent stopped");
            Ok(())
        }
    }
}

/// Loads `state.json` for this server, or registers. `None` if shutdown came first.
async fn registration(
    config: &AgentConfig,
    server: &str,
    link: &Link,
    state_file: &Path,
    stop: &Stop,
) -> Result<Option<(AgentState, Duration)>, AgentError> {
    match load_state(state_file).map_err(AgentError::State)? {
        Some(state) if state.server == server => {
            if let Some(name) = config.name.as_deref().filter(|n| *n != state.name) {
                tracing::warn!(
                    registered = %state.name,
                    requested = name,
                    "this agent is already registered under another name; keeping it (remove the state file to register again)"
                );
            }
            if config.registration_token.is_some() {
                tracing::info!(
                    "already registered; the registration token is not needed and not used"
                );
            }
            return Ok(Some((state, DEFAULT_HEARTBEAT_INTERVAL)));
        }
        Some(state) => tracing::warn!(
            registered_with = %state.server,
            server,
            "the agent state belongs to another server; registering with this one"
        ),
        None => {}
    }
    let Some(token) = config.registration_token.clone() else {
        return Err(AgentError::RegistrationTokenRequired {
            server: server.to_owned(),
            state_file: state_file.to_owned(),
        });
    };
    let body = AgentRegister {
        registration_token: token,
        name: config.name.clone(),
        hostname: hostname(),
        os: "linux".to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        agent_version: VERSION.to_owned(),
        labels: config.labels.clone(),
        scaling_group: config.scaling_group.clone(),
    };
    let mut backoff = Backoff::new();
    let registered = loop {
        if stop.requested() {
            return Ok(None);
        }
        let attempt = tokio::select! {
            result = link.register(&body) => result,
            () = stop.wait() => return Ok(None),
        };
        match attempt {
            Ok(registered) => break registered,
            Err(LinkError::Refused { code, message, .. }) => {
                return Err(AgentError::RegistrationRefused { code, message })
            }
            // Retrying cannot make the certificate trusted; a server impersonated
            // must not get the registration token.
            Err(err @ LinkError::Untrusted { .. }) => {
                return Err(AgentError::Untrusted(err.to_string()))
            }
            Err(err @ LinkError::Unexpected(_)) => {
                return Err(AgentError::RegistrationRefused {
                    code: "unexpected_answer".to_owned(),
                    message: err.to_string(),
                })
            }
            Err(err) => {
                let delay = backoff.next_delay_after(err.retry_after());
                tracing::warn!(error = %err, retry_in = ?delay, "registration failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.wait() => return Ok(None),
                }
            }
        }
    };
    let state = AgentState {
        server: server.to_owned(),
        instance_id: registered.instance_id,
        name: registered.name,
        credential: registered.credential,
    };
    save_state(state_file, &state).map_err(|source| AgentError::SaveState {
        instance_id: state.instance_id.clone(),
        path: state_file.to_owned(),
        source,
    })?;
    tracing::info!(instance = %state.instance_id, name = %state.name, "registered");
    Ok(Some((
        state,
        heartbeat_interval(registered.heartbeat_interval_secs),
    )))
}

fn heartbeat_interval(secs: u64) -> Duration {
    Duration::from_secs(secs.clamp(1, 300))
}

/// The host's name, as the kernel knows it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Heartbeats at the server's interval until the credential is rejected.
async fn heartbeat_loop(
    link: Link,
    mut interval: Duration,
    stop_tx: Arc<watch::Sender<StopCause>>,
    runtime: Arc<dyn ContainerRuntime>,
) {
    let mut failures = 0u32;
    let mut backoff = Backoff::up_to(interval);
    loop {
        let started = Instant::now();
        let docker = docker_status(runtime.as_ref()).await;
        let next = match link.heartbeat(VERSION, Some(docker)).await {
            Ok(ack) => {
                if failures > 0 {
                    tracing::info!(after_failures = failures, "heartbeats are delivered again");
                }
                failures = 0;
                interval = heartbeat_interval(ack.heartbeat_interval_secs);
                backoff = Backoff::up_to(interval);
                started + heartbeat_delay(interval)
            }
            Err(err) if err.is_unauthorized() => {
                tracing::error!(error = %err, "the server rejected the agent's credential; stopping");
                stop_tx.send_replace(StopCause::Revoked(err.server_message()));
                return;
            }
            Err(err) => {
                failures += 1;
                // The first failure, then about once a minute.
                if failures == 1 || failures.is_multiple_of(6) {
                    tracing::warn!(error = %err, failures, "heartbeat failed");
                }
                // Tried again within the interval (with jitter, so that a fleet
                // does not come back to a restarted server at one moment), so
                // that the server hears from the agent soon after it is back.
                Instant::now() + backoff.next_delay_after(err.retry_after())
            }
        };
        tokio::time::sleep_until(next).await;
    }
}

/// Asks the Docker Engine for its version, for the heartbeat: the server shows it
/// with the instance, and an operator sees which hosts still need Docker.
async fn docker_status(runtime: &dyn ContainerRuntime) -> DockerStatus {
    match tokio::time::timeout(DOCKER_PING_TIMEOUT, runtime.ping()).await {
        Ok(Ok(engine)) => DockerStatus {
            version: Some(engine.version),
            error: None,
        },
        Ok(Err(err)) => DockerStatus {
            version: None,
            error: Some(crate::error_chain(&err)),
        },
        Err(_elapsed) => DockerStatus {
            version: None,
            error: Some(format!(
                "Docker Engine did not answer within {} s",
                DOCKER_PING_TIMEOUT.as_secs()
            )),
        },
    }
}

/// The longest the heartbeat waits for the Docker Engine's answer.
const DOCKER_PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Leftover private run directories of scripts of an agent that was killed.
fn remove_stale_run_dirs(run_root: &Path) {
    let Ok(entries) = std::fs::read_dir(run_root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("wharf-run-")
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Agent {
    fn rejected(&self, message: String) -> AgentError {
        AgentError::CredentialRejected {
            instance_id: self.instance_id.clone(),
            state_file: self.state_file.clone(),
            message,
        }
    }

    /// Records a 401 so that the heartbeat task and the loop stop, and returns the error.
    fn revoked(&self, err: &LinkError) -> AgentError {
        tracing::error!(error = %err, "the server rejected the agent's credential; stopping");
        self.stop_tx
            .send_replace(StopCause::Revoked(err.server_message()));
        self.rejected(err.server_message())
    }

    /// Recovers the journal, then polls and runs tasks until stopped.
    async fn serve(&self) -> Result<(), AgentError> {
        self.recover_journal().await?;
        let mut backoff = Backoff::new();
        let mut failures = 0u32;
        loop {
            if self.stop.requested() {
                return Ok(());
            }
            let polled = tokio::select! {
                result = self.link.poll(POLL_WAIT_SECS) => result,
                () = self.stop.wait() => return Ok(()),
            };
            if polled.is_ok() && failures > 0 {
                tracing::info!(after_failures = failures, "polling for work works again");
                failures = 0;
            }
            match polled {
                Ok(Some(assignment)) => {
                    backoff.reset();
                    self.run_task(assignment).await?;
                }
                Ok(None) => backoff.reset(),
                Err(err) if err.is_unauthorized() => return Err(self.revoked(&err)),
                Err(err) => {
                    failures += 1;
                    let delay = backoff.next_delay_after(err.retry_after());
                    // The first failures, then about once a minute.
                    if failures <= 3 || failures.is_multiple_of(4) {
                        tracing::warn!(error = %err, failures, retry_in = ?delay, "polling for work failed; retrying");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.stop.wait() => return Ok(()),
                    }
                }
            }
        }
    }

    /// Reports the step an earlier run of the agent was in when it died.
    async fn recover_journal(&self) -> Result<(), AgentError> {
        let Some(entry) = self.journal.read() else {
            return Ok(());
        };
        let end = entry.end.clone().unwrap_or_else(|| JournaledEnd {
            succeeded: false,
            exit_code: None,
            message: Some(RESTARTED_MESSAGE.to_owned()),
            image_digest: None,
        });
        tracing::warn!(
            release = %entry.release_id,
            step = %entry.step,
            succeeded = end.succeeded,
            "reporting the step the agent was in when it stopped"
        );
        let event = end_report(&entry.step, end, None);
        match self.deliver(&entry.release_id, &event).await? {
            Delivery::Abandoned => {
                // Shutting down with the server away: keep the journal for the next start.
                return Ok(());
            }
            Delivery::Acked { .. } | Delivery::Refused => {}
        }
        self.journal.clear();
        Ok(())
    }

    /// Runs one assignment's steps in order, reporting each; stops at the first failed
    /// step, when the server says not to proceed, or when shutdown is requested.
    async fn run_task(&self, assignment: WorkAssignment) -> Result<(), AgentError> {
        let release = assignment.release_id.clone();
        tracing::info!(
            release = %release,
            app = %assignment.app,
            group = %assignment.group,
            deployment = %assignment.deployment,
            steps = ?assignment.steps,
            "task received"
        );
        if assignment.instance_id != self.instance_id {
            tracing::warn!(
                assigned = %assignment.instance_id,
                this = %self.instance_id,
                "the task names another instance id; running it as the server sent it"
            );
        }
        let mut image_digest: Option<String> = None;
        let mut delivered = true;
        let mut outcome = "succeeded";
        // Whether the step's begin went with the previous step's end.
        let mut begun = false;
        for (index, step) in assignment.steps.iter().enumerate() {
            if self.stop.requested() {
                tracing::info!(release = %release, step = %step, "stopping before this step");
                outcome = "stopped";
                if begun && !self.report_not_run(&release, step).await? {
                    delivered = false;
                }
                break;
            }
            if !begun {
                self.journal.write(&JournalEntry {
                    release_id: release.clone(),
                    step: step.clone(),
                    end: None,
                });
                match self.deliver(&release, &begin(step)).await? {
                    Delivery::Acked { proceed: true } => {}
                    Delivery::Acked { proceed: false } | Delivery::Refused => {
                        tracing::info!(release = %release, step = %step, "the server ended this task; running no further steps");
                        outcome = "ended by the server";
                        break;
                    }
                    Delivery::Abandoned => {
                        // The step did not run; nothing for the next start to report.
                        outcome = "stopped";
                        break;
                    }
                }
            }
            tracing::info!(release = %release, step = %step, "step begins");
            let (result, streamed) = self
                .run_step_streaming(&assignment, step, image_digest.as_deref())
                .await;
            let streamed = streamed?;
            tracing::info!(
                release = %release,
                step = %step,
                succeeded = result.succeeded,
                exit_code = ?result.exit_code,
                detail = result.message.as_deref().unwrap_or(""),
                "step ended"
            );
            if step == "pull" {
                image_digest.clone_from(&result.image_digest);
            }
            // Until the end is acknowledged, a restart reports it as it is; the
            // next step has not run whether or not its begin got through.
            let ended = JournaledEnd {
                succeeded: result.succeeded,
                exit_code: result.exit_code,
                message: result.message.clone(),
                image_digest: result.image_digest.clone(),
            };
            self.journal.write(&JournalEntry {
                release_id: release.clone(),
                step: step.clone(),
                end: Some(ended.clone()),
            });
            // The next step begins in the same report when nothing stops it
            // here: a step that failed, a server that said to stop, a shutdown.
            let then_begin = assignment
                .steps
                .get(index + 1)
                .filter(|_| result.succeeded && streamed.proceed && !self.stop.requested())
                .cloned();
            let end = end_report(step, ended, then_begin.clone());
            match self.deliver(&release, &end).await? {
                Delivery::Acked { proceed: true } => {}
                Delivery::Acked { proceed: false } | Delivery::Refused => {
                    outcome = "ended by the server";
                    break;
                }
                Delivery::Abandoned => {
                    delivered = false;
                    outcome = "stopped";
                    break;
                }
            }
            if !result.succeeded {
                outcome = "failed";
                break;
            }
            if !streamed.proceed {
                outcome = "ended by the server";
                break;
            }
            begun = then_begin.is_some();
            if let Some(next) = then_begin {
                self.journal.write(&JournalEntry {
                    release_id: release.clone(),
                    step: next,
                    end: None,
                });
            }
        }
        if delivered {
            self.journal.clear();
        }
        tracing::info!(release = %release, outcome, "task done");
        Ok(())
    }

    /// Reports as failed a step whose begin went with the previous step's end but
    /// which will not run, because shutdown was requested while that report was
    /// under way: the server ends the task now rather than when the agent polls
    /// again. False if the report is left in the journal for the next start.
    async fn report_not_run(&self, release: &str, step: &str) -> Result<bool, AgentError> {
        let end = JournaledEnd {
            succeeded: false,
            exit_code: None,
            message: Some(STOPPED_BEFORE_MESSAGE.to_owned()),
            image_digest: None,
        };
        self.journal.write(&JournalEntry {
            release_id: release.to_owned(),
            step: step.to_owned(),
            end: Some(end.clone()),
        });
        let report = end_report(step, end, None);
        Ok(!matches!(
            self.deliver(release, &report).await?,
            Delivery::Abandoned
        ))
    }

    /// Runs a step while streaming its output: an `Output` report whenever there is new
    /// output, at most every [`OUTPUT_INTERVAL`], and a last one before returning.
    async fn run_step_streaming(
        &self,
        assignment: &WorkAssignment,
        step: &str,
        image_digest: Option<&str>,
    ) -> (StepResult, Result<Streamed, AgentError>) {
        let output = OutputSink::default();
        let (finished_tx, finished_rx) = watch::channel(false);
        let run = async {
            let result = self
                .executor
                .run_step(assignment, step, image_digest, &output)
                .await;
            output.close();
            let _ = finished_tx.send(true);
            result
        };
        let stream = self.stream_output(&assignment.release_id, step, &output, finished_rx);
        tokio::join!(run, stream)
    }

    async fn stream_output(
        &self,
        release: &str,
        step: &str,
        output: &OutputSink,
        mut finished: watch::Receiver<bool>,
    ) -> Result<Streamed, AgentError> {
        let mut streamed = Streamed { proceed: true };
        let mut sending = true;
        let mut cut_reported = 0u64;
        // How many bytes of the step's output were reported (sent or counted as
        // dropped): each report says where it starts, so that the server stores a
        // report retried after a lost answer only once.
        let mut reported = 0u64;
        loop {
            let chunk = output.next_chunk(MAX_OUTPUT_CHUNK).await;
            let cut = output.cut_bytes();
            let (text, skipped) = match chunk {
                Some(chunk) => (chunk.text, chunk.skipped_bytes),
                // Bytes lost without a line (rare) still get counted, once.
                None if cut > cut_reported && sending => (String::new(), 0),
                None => break,
            };
            if !sending {
                continue;
            }
            let dropped_bytes = skipped + (cut - cut_reported);
            let offset = reported;
            reported += dropped_bytes + text.len() as u64;
            let event = StepEvent::Output {
                step: step.to_owned(),
                chunk: text,
                dropped_bytes,
                offset: Some(offset),
            };
            cut_reported = cut;
            match self.deliver(release, &event).await? {
                Delivery::Acked { proceed: true } | Delivery::Refused => {}
                Delivery::Acked { proceed: false } => {
                    // The server ended the task; the step still runs to its end (killing
                    // it halfway could leave the application stopped), but its output is
                    // of no use to the server any more.
                    streamed.proceed = false;
                    sending = false;
                }
                Delivery::Abandoned => sending = false,
            }
            if sending && !*finished.borrow() {
                tokio::select! {
                    () = tokio::time::sleep(OUTPUT_INTERVAL) => {}
                    _ = finished.wait_for(|done| *done) => {}
                }
            }
        }
        Ok(streamed)
    }

    /// Delivers one report, retrying connection errors and 5xx answers with backoff.
    async fn deliver(&self, release: &str, event: &StepEvent) -> Result<Delivery, AgentError> {
        let mut backoff = Backoff::new();
        let mut give_up_at: Option<Instant> = None;
        let mut failures = 0u32;
        loop {
            let err = match self.link.event(release, event).await {
                Ok(ack) => {
                    if failures > 0 {
                        tracing::info!(release, after_failures = failures, "report delivered");
                    }
                    return Ok(Delivery::Acked {
                        proceed: ack.proceed,
                    });
                }
                Err(err) => err,
            };
            if err.is_unauthorized() {
                return Err(self.revoked(&err));
            }
            if !err.is_retryable() {
                tracing::warn!(release, event = event_kind(event), error = %err, "the server refused a report; not retrying it");
                return Ok(Delivery::Refused);
            }
            failures += 1;
            let now = Instant::now();
            let retry_after = err.retry_after();
            if self.stop.requested() {
                let give_up = *give_up_at.get_or_insert(now + SHUTDOWN_REPORT_GRACE);
                if now >= give_up {
                    tracing::warn!(release, event = event_kind(event), error = %err, "shutting down with a report undelivered; the next start reports it");
                    return Ok(Delivery::Abandoned);
                }
            }
            let delay = backoff.next_delay_after(retry_after);
            if failures == 1 || failures.is_multiple_of(4) {
                tracing::warn!(release, event = event_kind(event), error = %err, failures, retry_in = ?delay, "cannot deliver a report; retrying");
            }
            let wake = give_up_at.map_or(now + delay, |at| (now + delay).min(at));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                // Shutdown starts the grace period at once.
                () = self.stop.wait(), if give_up_at.is_none() => {}
            }
        }
    }
}

/// What streaming a step's output learned.
#[derive(Debug, Clone, Copy)]
struct Streamed {
    /// False if the server answered an `Output` report with `proceed: false`.
    proceed: bool,
}

/// The `End` report of `step` as it ended (`end`, as the journal keeps it),
/// beginning `then_begin` with it.
fn end_report(step: &str, end: JournaledEnd, then_begin: Option<String>) -> StepEvent {
    StepEvent::End {
        step: step.to_owned(),
        succeeded: end.succeeded,
        exit_code: end.exit_code,
        message: end.message,
        image_digest: end.image_digest,
        then_begin,
    }
}

fn begin(step: &str) -> StepEvent {
    StepEvent::Begin {
        step: step.to_owned(),
    }
}

fn event_kind(event: &StepEvent) -> &'static str {
    match event {
        StepEvent::Begin { .. } => "begin",
        StepEvent::Output { .. } => "output",
        StepEvent::End { .. } => "end",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_hides_the_registration_token() {
        let config = AgentConfig {
            server: "http://127.0.0.1:7700".into(),
            registration_token: Some("wrt_top-secret".into()),
            state_dir: "/tmp/x".into(),
            name: None,
            labels: BTreeMap::new(),
            scaling_group: None,
            docker_socket: None,
            trust: Default::default(),
        };
        let text = format!("{config:?}");
        assert!(!text.contains("top-secret"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    #[test]
    fn the_hostname_is_never_empty() {
        assert!(!hostname().is_empty());
    }

    #[test]
    fn heartbeat_intervals_are_clamped() {
        assert_eq!(heartbeat_interval(0), Duration::from_secs(1));
        assert_eq!(heartbeat_interval(10), Duration::from_secs(10));
        assert_eq!(heartbeat_interval(100_000), Duration::from_secs(300));
    }

    #[tokio::test]
    async fn a_missing_token_without_state_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AgentConfig {
            // Never contacted: the token check comes first.
            server: "http://127.0.0.1:1".into(),
            registration_token: None,
            state_dir: dir.path().join("state"),
            name: None,
            labels: BTreeMap::new(),
            scaling_group: None,
            docker_socket: None,
            trust: Default::default(),
        };
        let runtime: Arc<dyn ContainerRuntime> =
            Arc::new(DockerRuntime::new("/nonexistent.sock").expect("runtime"));
        let runner: Arc<dyn ProcessRunner> = Arc::new(BashRunner::new(dir.path().join("run")));
        let err = run_with(config, runtime, runner, std::future::pending())
            .await
            .expect_err("no token");
        assert!(
            matches!(err, AgentError::RegistrationTokenRequired { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("registration token"), "{err}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("state"))
                .expect("state dir")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o700);
    }

    #[tokio::test]
    async fn shutdown_during_registration_retries_returns_promptly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AgentConfig {
            server: "http://127.0.0.1:1".into(),
            registration_token: Some("wrt_x".into()),
            state_dir: dir.path().join("state"),
            name: None,
            labels: BTreeMap::new(),
            scaling_group: None,
            docker_socket: None,
            trust: Default::default(),
        };
        let runtime: Arc<dyn ContainerRuntime> =
            Arc::new(DockerRuntime::new("/nonexistent.sock").expect("runtime"));
        let runner: Arc<dyn ProcessRunner> = Arc::new(BashRunner::new(dir.path().join("run")));
        let started = std::time::Instant::now();
        let shutdown = tokio::time::sleep(Duration::from_millis(1500));
        run_with(config, runtime, runner, shutdown)
            .await
            .expect("clean stop");
        assert!(started.elapsed() < Duration::from_secs(4));
        assert!(!dir.path().join("state").join(STATE_FILE).exists());
    }
}
