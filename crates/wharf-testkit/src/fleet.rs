//! A real fleet for tests: N Linux hosts, each a container with its own Docker Engine and
//! a `wharf agent` of this checkout, a real registry with a bcrypt password, and a real
//! `wharf server` — all on this machine, on a private Docker network of the run's own.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use wharf_testkit::fleet::{Fleet, FleetOptions};
//! let fleet = Fleet::start(FleetOptions::with_hosts(2)).await?;
//! for host in fleet.hosts() {
//!     println!("{} is {} at {}", host.name, host.container, host.ip);
//! }
//! fleet.kill_host("host-2").await?;
//! # Ok(()) }
//! ```
//!
//! What [`Fleet::start`] does, in order:
//! 1. removes resources of earlier runs whose test process died before cleaning up;
//! 2. makes sure the host image exists ([`crate::host_image::ensure`], cached by a hash of
//!    its recipe) and builds `wharf` with cargo ([`crate::fleet_server::wharf_binary`]);
//! 3. creates the network `RUN-net` with a pinned subnet (so a host keeps its address
//!    across `disconnect`/`reconnect` and `kill`/`start`);
//! 4. starts the registry on `0.0.0.0:PORT` (the hosts use `GATEWAY:PORT`, this machine
//!    `127.0.0.1:PORT`) and `wharf server` on `0.0.0.0:PORT` with a fresh data directory;
//! 5. starts the hosts in parallel (`--privileged` where the machine allows it, else the
//!    capability flags of the machine notes), each with a fresh volume for
//!    `/var/lib/docker` and `dockerd --insecure-registry GATEWAY:PORT`;
//! 6. waits for every host's engine, starts `wharf agent --name host-N` in each and waits
//!    until the server lists every instance `online`.
//!
//! Every container, volume and network is named after the run id and labelled with it and
//! with the owning process; [`Fleet`]'s `Drop` removes all of them, kills the server and
//! the registry and removes the run's temporary directory, also when the test panics (then
//! it first prints each host's agent and engine logs). `WHARF_FLEET_KEEP=1` keeps
//! everything for a post-mortem instead.
//!
//! Network rule: every request this module makes goes to 127.0.0.1 or to the fleet's own
//! hosts on the run's own network; nothing else is ever contacted.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rand::Rng as _;

use crate::docker::unique_name;
use crate::fleet_docker::{
    docker, docker_output, docker_quietly, docker_stdout_sync, owner_id, owner_is_gone, reap_stale,
    run_command, CommandOutput, DEFAULT_DOCKER_TIMEOUT,
};
use crate::fleet_server::{wharf_binary, WharfServer};
use crate::host_image;
use crate::registry::RegistryHarness;

pub use crate::fleet_docker::CommandOutput as ExecOutput;
pub use crate::fleet_docker::{OWNER_LABEL, RUN_LABEL};

/// Where the agent keeps its state inside a host.
pub const AGENT_STATE_DIR: &str = "/var/lib/wharf-agent";
/// Where the agent's stdout and stderr go inside a host.
pub const AGENT_LOG: &str = "/var/log/wharf-agent.log";
/// Where the host engine's output goes inside a host.
pub const DOCKERD_LOG: &str = "/var/log/dockerd.log";
/// The agent's pid file inside a host.
pub const AGENT_PID_FILE: &str = "/run/wharf/agent.pid";
/// Where the `wharf` binary is mounted (read-only) inside every host.
pub const HOST_WHARF_BIN: &str = "/usr/local/bin/wharf";

/// Labels on the hosts' containers naming the fleet host (`host-N`).
const HOST_LABEL: &str = "wharf.fleet.host";

/// The offset of the first host's address in the network's subnet (`.10`, `.11`, ...).
const FIRST_HOST_OFFSET: u32 = 10;

/// Most hosts one fleet may have; a 2-core machine has no room for more anyway.
pub const MAX_HOSTS: usize = 32;

/// What to start.
#[derive(Clone)]
pub struct FleetOptions {
    /// How many hosts (1..=[`MAX_HOSTS`]).
    pub hosts: usize,
    /// Registry users `(user, password)`. Empty: one user `fleet` with a random password
    /// containing `?` and `>` (the characters that break naive base64 headers).
    pub registry_users: Vec<(String, String)>,
    /// Start `wharf agent` in every host and wait until all are `online` (default true).
    /// Without, the test starts each agent itself ([`Fleet::start_agent`], or
    /// [`Fleet::start_agent_with`] for flags such as `--scaling-group`).
    pub start_agents: bool,
    /// How long the hosts may take to become ready, after the image and binary exist.
    pub ready_timeout: Duration,
    /// More arguments for `wharf server`, e.g. [`FleetOptions::quick_liveness`].
    pub server_args: Vec<String>,
}

impl FleetOptions {
    /// `hosts` hosts with agents and the default registry user.
    pub fn with_hosts(hosts: usize) -> Self {
        Self {
            hosts,
            ..Self::default()
        }
    }

    /// Heartbeats every `heartbeat` and `offline` after `offline_after` without one,
    /// instead of the server's 10 s / 30 s, so fault tests see hosts go offline quickly.
    pub fn liveness(mut self, heartbeat: Duration, offline_after: Duration) -> Self {
        self.server_args.extend([
            "--heartbeat-interval".to_owned(),
            format!("{}s", heartbeat.as_secs().max(1)),
            "--offline-after".to_owned(),
            format!("{}s", offline_after.as_secs().max(2)),
        ]);
        self
    }
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            hosts: 2,
            registry_users: Vec::new(),
            start_agents: true,
            ready_timeout: Duration::from_secs(180),
            server_args: Vec::new(),
        }
    }
}

impl fmt::Debug for FleetOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<&str> = self
            .registry_users
            .iter()
            .map(|(u, _)| u.as_str())
            .collect();
        f.debug_struct("FleetOptions")
            .field("hosts", &self.hosts)
            .field("registry_users", &users)
            .field("start_agents", &self.start_agents)
            .field("ready_timeout", &self.ready_timeout)
            .field("server_args", &self.server_args)
            .finish()
    }
}

/// How the hosts' containers get the rights to run a Docker Engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPrivilege {
    /// `--privileged`.
    Privileged,
    /// The machine refuses `--privileged` ("unable to apply caps"): all capabilities but
    /// `SYS_RESOURCE`, no seccomp/AppArmor confinement, the host's cgroup namespace and
    /// `/sys/fs/cgroup` mounted read-write.
    Capabilities,
}

impl HostPrivilege {
    /// The `docker run` flags of this mode.
    pub fn docker_flags(self) -> &'static [&'static str] {
        match self {
            HostPrivilege::Privileged => &["--privileged"],
            HostPrivilege::Capabilities => &[
                "--cap-add=ALL",
                "--cap-drop=SYS_RESOURCE",
                "--security-opt",
                "seccomp=unconfined",
                "--security-opt",
                "apparmor=unconfined",
                "--security-opt",
                "systempaths=unconfined",
                "--cgroupns=host",
                "-v",
                "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            ],
        }
    }
}

/// The mode found for this process (the probe costs a container start).
static PRIVILEGE: tokio::sync::OnceCell<HostPrivilege> = tokio::sync::OnceCell::const_new();

/// Finds out whether this machine lets a container run `--privileged`; falls back to
/// [`HostPrivilege::Capabilities`]. `WHARF_FLEET_PRIVILEGE=privileged|capabilities`
/// skips the probe.
pub async fn detect_privilege(image: &str) -> anyhow::Result<HostPrivilege> {
    PRIVILEGE
        .get_or_try_init(|| async {
            match std::env::var("WHARF_FLEET_PRIVILEGE").as_deref() {
                Ok("privileged") => return Ok(HostPrivilege::Privileged),
                Ok("capabilities") => return Ok(HostPrivilege::Capabilities),
                _ => {}
            }
            let name = unique_name("wharf-fleet-probe");
            let owner = format!("{OWNER_LABEL}={}", owner_id());
            let run_label = format!("{RUN_LABEL}={name}");
            let probe = docker_output(
                &[
                    "run",
                    "--rm",
                    "--name",
                    &name,
                    "--label",
                    &run_label,
                    "--label",
                    &owner,
                    "--privileged",
                    "--network",
                    "none",
                    "--entrypoint",
                    "/bin/true",
                    image,
                ],
                Duration::from_secs(60),
            )
            .await?;
            docker_quietly(&["rm", "-f", &name]);
            if probe.success() {
                Ok(HostPrivilege::Privileged)
            } else {
                eprintln!(
                    "wharf-testkit: --privileged is refused here ({}); fleet hosts use \
                     capability flags instead",
                    probe
                        .stderr
                        .lines()
                        .find(|line| !line.trim().is_empty())
                        .unwrap_or("no message")
                        .trim()
                );
                Ok(HostPrivilege::Capabilities)
            }
        })
        .await
        .copied()
}

/// One host of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetHost {
    /// 1-based position in the fleet.
    pub index: usize,
    /// `host-N`: the host's hostname and the name its agent registers with.
    pub name: String,
    /// The container's name: `RUN-host-N`.
    pub container: String,
    /// The host's address on the fleet network (kept across disconnects and restarts).
    pub ip: Ipv4Addr,
    /// The volume holding the host's `/var/lib/docker`.
    pub volume: String,
}

/// An HTTP answer from a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body, lossily decoded.
    pub body: String,
}

/// A running fleet; everything it started goes away when it is dropped.
pub struct Fleet {
    // Fields drop in declaration order: containers, volumes and the network first, then
    // the server and the registry, then the directory holding the binary and logs.
    resources: FleetResources,
    server: tokio::sync::Mutex<WharfServer>,
    registry: RegistryHarness,
    run_dir: tempfile::TempDir,
    run_id: String,
    network: String,
    subnet: String,
    gateway: Ipv4Addr,
    hosts: Vec<FleetHost>,
    image: String,
    privilege: HostPrivilege,
    registry_users: Vec<(String, String)>,
    server_port: u16,
    admin_token: String,
    registration_token: String,
    wharf_bin: PathBuf,
    agents: bool,
    http: reqwest::Client,
    timings: Vec<(String, Duration)>,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("run_id", &self.run_id)
            .field("network", &self.network)
            .field("subnet", &self.subnet)
            .field("gateway", &self.gateway)
            .field("hosts", &self.hosts)
            .field("image", &self.image)
            .field("privilege", &self.privilege)
            .field("server_port", &self.server_port)
            .field("registry_port", &self.registry.port())
            .field("run_dir", &self.run_dir.path())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Starts a fleet (see the module docs) and returns once every host's engine answers
    /// and, with `start_agents`, every agent is `online`.
    pub async fn start(options: FleetOptions) -> anyhow::Result<Fleet> {
        anyhow::ensure!(
            (1..=MAX_HOSTS).contains(&options.hosts),
            "a fleet has 1 to {MAX_HOSTS} hosts, not {}",
            options.hosts
        );
        let started = Instant::now();
        let mut timings = Vec::new();
        let mut phase = Instant::now();
        let mut lap = |name: &str, phase: &mut Instant| {
            timings.push((name.to_owned(), phase.elapsed()));
            *phase = Instant::now();
        };

        host_image::check_engine().await?;
        let reaped = reap_stale().await;
        reap_stale_run_dirs();
        if !reaped.is_empty() {
            eprintln!(
                "wharf-testkit: removed leftovers of dead fleet runs: {}",
                reaped.join(", ")
            );
        }
        let (image, built_bin) = tokio::try_join!(host_image::ensure(), wharf_binary())?;
        lap("image+binary", &mut phase);

        let run_id = unique_name("wharf-fleet");
        let owner = owner_id();
        let run_dir = tempfile::Builder::new()
            .prefix(&format!("{run_id}-"))
            .tempdir()
            .context("creating the run's temporary directory")?;
        std::fs::write(run_dir.path().join("owner"), &owner).context("writing the owner file")?;
        // A private copy: a concurrent cargo build cannot swap the binary mid-run.
        let wharf_bin = run_dir.path().join("wharf");
        std::fs::copy(&built_bin, &wharf_bin)
            .with_context(|| format!("copying {} into the run", built_bin.display()))?;

        let mut resources = FleetResources::new(&run_id);
        let network = format!("{run_id}-net");
        let labels = Labels::new(&run_id, &owner);
        let (subnet, gateway) = create_network(&network, &labels, &mut resources).await?;
        lap("network", &mut phase);

        let registry_users = if options.registry_users.is_empty() {
            let secret: u64 = rand::thread_rng().gen();
            vec![("fleet".to_owned(), format!("fl?{secret:016x}>pw"))]
        } else {
            options.registry_users.clone()
        };
        let user_refs: Vec<(&str, &str)> = registry_users
            .iter()
            .map(|(user, password)| (user.as_str(), password.as_str()))
            .collect();
        let registry = RegistryHarness::start_on(IpAddr::V4(Ipv4Addr::UNSPECIFIED), &user_refs)
            .await
            .context("starting the registry")?;
        let server = WharfServer::start_with_args(
            &wharf_bin,
            &run_dir.path().join("server-data"),
            run_dir.path(),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            &options.server_args,
        )
        .await
        .context("starting wharf server")?;
        let admin_token = server.admin_token()?;
        let server_port = server.port();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        let registration_token = create_registration_token(
            &http,
            &server.local_url(),
            &admin_token,
            (options.hosts * 4).max(8),
        )
        .await?;
        lap("registry+server", &mut phase);

        let privilege = detect_privilege(&image).await?;
        let hosts = plan_hosts(&run_id, options.hosts, &subnet)?;
        for host in &hosts {
            resources.containers.push(host.container.clone());
            resources.volumes.push(host.volume.clone());
        }
        let mut fleet = Fleet {
            resources,
            server: tokio::sync::Mutex::new(server),
            registry,
            run_dir,
            run_id,
            network,
            subnet,
            gateway,
            hosts,
            image,
            privilege,
            registry_users,
            server_port,
            admin_token,
            registration_token,
            wharf_bin,
            agents: options.start_agents,
            http,
            timings: Vec::new(),
        };
        let deadline = Instant::now() + options.ready_timeout;
        match fleet.bring_up(&labels, deadline).await {
            Ok(phases) => timings.extend(phases),
            Err(error) => {
                eprintln!(
                    "wharf-testkit: fleet {} did not come up: {error:#}\n{}",
                    fleet.run_id,
                    fleet.diagnostics()
                );
                return Err(error);
            }
        }
        timings.push(("total".to_owned(), started.elapsed()));
        eprintln!(
            "wharf-testkit: fleet {} ready: {} host(s) on {} ({:?}), {}",
            fleet.run_id,
            fleet.hosts.len(),
            fleet.subnet,
            fleet.privilege,
            timings
                .iter()
                .map(|(name, took)| format!("{name} {:.1}s", took.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        fleet.timings = timings;
        Ok(fleet)
    }

    // ----- what the fleet is -------------------------------------------------------

    /// The run id every resource name starts with (`wharf-fleet-` + 12 hex digits).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The Docker network's name.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The network's subnet, e.g. `172.18.0.0/16`.
    pub fn subnet(&self) -> &str {
        &self.subnet
    }

    /// The network's gateway: this machine's address as the hosts see it.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The hosts, in order.
    pub fn hosts(&self) -> &[FleetHost] {
        &self.hosts
    }

    /// The host named `host-N` (or whose container is called `name`).
    pub fn host(&self, name: &str) -> anyhow::Result<&FleetHost> {
        self.hosts
            .iter()
            .find(|host| host.name == name || host.container == name)
            .with_context(|| format!("the fleet {} has no host {name:?}", self.run_id))
    }

    /// The host image reference the hosts run.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// How the hosts got the rights to run their engines on this machine.
    pub fn privilege(&self) -> HostPrivilege {
        self.privilege
    }

    /// Phase durations of [`start`](Self::start), for reports.
    pub fn startup_timings(&self) -> &[(String, Duration)] {
        &self.timings
    }

    /// The run's temporary directory (server data, server log, the binary).
    pub fn run_dir(&self) -> &Path {
        self.run_dir.path()
    }

    /// The private copy of `wharf` the server, the agents and [`wharf`](Self::wharf) use.
    pub fn wharf_bin(&self) -> &Path {
        &self.wharf_bin
    }

    // ----- registry ----------------------------------------------------------------

    /// The registry harness (its log, its port, ...).
    pub fn registry(&self) -> &RegistryHarness {
        &self.registry
    }

    /// The registry as the hosts reach it: `GATEWAY:PORT` (their engines treat it as
    /// insecure, i.e. plain HTTP).
    pub fn registry_for_hosts(&self) -> String {
        format!("{}:{}", self.gateway, self.registry.port())
    }

    /// The registry as this machine reaches it: `127.0.0.1:PORT` (push here).
    pub fn registry_local(&self) -> String {
        self.registry.addr()
    }

    /// The first registry user and password.
    pub fn registry_credentials(&self) -> (&str, &str) {
        let (user, password) = &self.registry_users[0];
        (user, password)
    }

    /// All registry users and passwords.
    pub fn registry_users(&self) -> &[(String, String)] {
        &self.registry_users
    }

    // ----- server ------------------------------------------------------------------

    /// The server's URL from this machine: `http://127.0.0.1:PORT`.
    pub fn server_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server_port)
    }

    /// The server's URL from the hosts: `http://GATEWAY:PORT`.
    pub fn server_url_for_hosts(&self) -> String {
        format!("http://{}:{}", self.gateway, self.server_port)
    }

    /// The admin token from the server's data directory.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The registration token the agents were started with (several uses left).
    pub fn registration_token(&self) -> &str {
        &self.registration_token
    }

    /// Kills the server with `SIGKILL`, as a crash would.
    pub async fn kill_server(&self) {
        self.server.lock().await.kill();
    }

    /// Stops the server with `SIGTERM` and waits for it to exit.
    pub async fn stop_server(&self) -> anyhow::Result<()> {
        self.server.lock().await.stop().await
    }

    /// Starts the stopped server again on the same data directory and port.
    pub async fn start_server(&self) -> anyhow::Result<()> {
        self.server.lock().await.start_again().await
    }

    /// Kills the server and starts it again on the same data directory and port.
    pub async fn restart_server(&self) -> anyhow::Result<()> {
        self.server.lock().await.restart().await
    }

    /// The server's data directory (its SQLite database is `wharf.db` there).
    pub async fn server_data_dir(&self) -> std::path::PathBuf {
        self.server.lock().await.data_dir().to_path_buf()
    }

    /// Whether the server process is running.
    pub async fn server_running(&self) -> bool {
        self.server.lock().await.is_running()
    }

    /// The server's log (all its starts).
    pub async fn server_log(&self) -> String {
        self.server.lock().await.log_contents()
    }

    /// Runs the fleet's `wharf` binary as a client (`WHARF_SERVER` and `WHARF_TOKEN` are
    /// set in its environment, so no token is on a command line); 2 minutes at most.
    pub async fn wharf(&self, args: &[&str]) -> anyhow::Result<CommandOutput> {
        self.wharf_with_stdin(args, None).await
    }

    /// [`wharf`](Self::wharf) with `stdin` written to the command's standard input
    /// (e.g. `registry create --password-stdin`).
    pub async fn wharf_with_stdin(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> anyhow::Result<CommandOutput> {
        let server = self.server_url();
        run_command(
            &self.wharf_bin,
            args,
            &[
                ("WHARF_SERVER", &server),
                ("WHARF_TOKEN", &self.admin_token),
                ("NO_COLOR", "1"),
            ],
            stdin,
            Duration::from_secs(120),
        )
        .await
    }

    /// [`wharf`](Self::wharf), failing unless it exits 0; returns its trimmed stdout.
    pub async fn wharf_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.wharf(args).await?;
        ensure_success(&format!("wharf {}", args.join(" ")), &output)?;
        Ok(output.stdout.trim().to_owned())
    }

    /// The instances as the server lists them (`GET /api/v1/instances`).
    pub async fn instances(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let url = format!("{}/api/v1/instances", self.server_url());
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        anyhow::ensure!(status.is_success(), "GET {url} answered {status}: {body}");
        serde_json::from_str(&body).with_context(|| format!("parsing the answer of GET {url}"))
    }

    /// `GET /api/v1/PATH` with the admin token, as JSON; fails on a non-2xx status.
    pub async fn api_get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!(
            "{}/api/v1/{}",
            self.server_url(),
            path.trim_start_matches('/')
        );
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        anyhow::ensure!(status.is_success(), "GET {url} answered {status}: {body}");
        serde_json::from_str(&body).with_context(|| format!("parsing the answer of GET {url}"))
    }

    /// The release `id` as the API shows it (state, batches, instances, steps).
    pub async fn release(&self, id: &str) -> anyhow::Result<serde_json::Value> {
        self.api_get(&format!("releases/{id}")).await
    }

    /// Waits until release `id` is in state `wanted` and returns it; fails at once if it
    /// ends in another state (`succeeded`, `failed`, `cancelled`), and after `timeout`.
    pub async fn wait_release_state(
        &self,
        id: &str,
        wanted: &str,
        timeout: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        const TERMINAL: [&str; 3] = ["succeeded", "failed", "cancelled"];
        let deadline = Instant::now() + timeout;
        loop {
            let release = self.release(id).await;
            if let Ok(release) = &release {
                let state = release["state"].as_str().unwrap_or_default();
                if state == wanted {
                    return Ok(release.clone());
                }
                if TERMINAL.contains(&state) {
                    bail!("release {id} ended {state}, not {wanted}: {release:#}");
                }
            }
            if Instant::now() >= deadline {
                let last = match release {
                    Ok(release) => format!("{release:#}"),
                    Err(error) => format!("{error:#}"),
                };
                bail!("release {id} was not {wanted} within {timeout:?}; last: {last}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `GET http://HOST_IP:PORT/PATH` on every host at once: each host's name with the
    /// body of a 200 answer, or `None` (no answer, or another status).
    pub async fn http_bodies(&self, port: u16, path: &str) -> BTreeMap<String, Option<String>> {
        let answers = futures::future::join_all(self.hosts.iter().map(|host| async move {
            let body = match self.http_get(&host.name, port, path).await {
                Ok(response) if response.status == 200 => Some(response.body),
                _ => None,
            };
            (host.name.clone(), body)
        }))
        .await;
        answers.into_iter().collect()
    }

    /// Each instance name with its status (`online`/`offline`).
    pub async fn instance_statuses(&self) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(self
            .instances()
            .await?
            .iter()
            .filter_map(|instance| {
                Some((
                    instance["name"].as_str()?.to_owned(),
                    instance["status"].as_str()?.to_owned(),
                ))
            })
            .collect())
    }

    /// Waits until the instance registered as `host` has `status`.
    pub async fn wait_instance_status(
        &self,
        host: &str,
        status: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let name = self.host(host)?.name.clone();
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.instance_statuses().await {
                Ok(statuses) => match statuses.get(&name) {
                    Some(now) if now == status => return Ok(()),
                    Some(now) => now.clone(),
                    None => "not registered".to_owned(),
                },
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() >= deadline {
                bail!("instance {name} did not become {status} within {timeout:?} (last: {last})");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until every host's instance is `online`.
    pub async fn wait_all_online(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.instance_statuses().await {
                Ok(statuses) => {
                    let missing: Vec<String> = self
                        .hosts
                        .iter()
                        .filter(|host| {
                            statuses.get(&host.name).map(String::as_str) != Some("online")
                        })
                        .map(|host| {
                            let status = statuses.get(&host.name).map_or("absent", String::as_str);
                            format!("{} {status}", host.name)
                        })
                        .collect();
                    if missing.is_empty() {
                        return Ok(());
                    }
                    missing.join(", ")
                }
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() >= deadline {
                let mut logs = String::new();
                for host in &self.hosts {
                    let log = self.agent_log(&host.name).await.unwrap_or_default();
                    logs.push_str(&format!(
                        "\n--- {} agent log:\n{}",
                        host.name,
                        tail(&log, 20)
                    ));
                }
                bail!("not every agent came online within {timeout:?} (still: {last}){logs}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // ----- inside a host -----------------------------------------------------------

    /// Runs `args` in the host (`docker exec CONTAINER ARGS...`), whatever its exit code.
    pub async fn exec(&self, host: &str, args: &[&str]) -> anyhow::Result<ExecOutput> {
        let container = self.host(host)?.container.clone();
        let mut full = vec!["exec", container.as_str()];
        full.extend_from_slice(args);
        docker_output(&full, DEFAULT_DOCKER_TIMEOUT).await
    }

    /// [`exec`](Self::exec), failing unless the command exits 0; returns trimmed stdout.
    pub async fn exec_ok(&self, host: &str, args: &[&str]) -> anyhow::Result<String> {
        let output = self.exec(host, args).await?;
        ensure_success(&format!("{host}: {}", args.join(" ")), &output)?;
        Ok(output.stdout.trim().to_owned())
    }

    /// Runs `args` in the host with `stdin` on its standard input (`docker exec -i`):
    /// the way to hand a secret to a command without putting it on a command line.
    pub async fn exec_with_stdin(
        &self,
        host: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> anyhow::Result<ExecOutput> {
        let container = self.host(host)?.container.clone();
        let mut full = vec!["exec", "-i", container.as_str()];
        full.extend_from_slice(args);
        run_command(
            Path::new("docker"),
            &full,
            &[],
            Some(stdin),
            DEFAULT_DOCKER_TIMEOUT,
        )
        .await
    }

    /// Runs a `sh -c SCRIPT` in the host, whatever its exit code.
    pub async fn sh(&self, host: &str, script: &str) -> anyhow::Result<ExecOutput> {
        self.exec(host, &["sh", "-c", script]).await
    }

    /// The host container's state as Docker reports it: `running`, `paused`, `exited`...
    pub async fn host_state(&self, host: &str) -> anyhow::Result<String> {
        let container = &self.host(host)?.container;
        docker(&["inspect", "--format", "{{.State.Status}}", container]).await
    }

    /// Waits until the host's own engine answers `docker info`.
    pub async fn wait_docker_ready(&self, host: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let output = self
                .exec(host, &["docker", "info", "--format", "{{.ServerVersion}}"])
                .await?;
            if output.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = self
                    .exec(host, &["tail", "-n", "30", DOCKERD_LOG])
                    .await
                    .map(|out| out.stdout)
                    .unwrap_or_default();
                bail!(
                    "the engine in {host} did not answer within {timeout:?} ({}); its log:\n{log}",
                    output.stderr.trim()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // ----- faults: hosts -----------------------------------------------------------

    /// Kills the host's container (`docker kill`): its engine, agent and apps die at once,
    /// as on a power loss. The container stays (stopped) until the fleet is dropped; see
    /// [`start_host`](Self::start_host).
    pub async fn kill_host(&self, host: &str) -> anyhow::Result<()> {
        let container = &self.host(host)?.container;
        docker(&["kill", container]).await.map(drop)
    }

    /// Starts a killed host again (same address, same `/var/lib/docker`, same agent state),
    /// waits for its engine and, if the fleet runs agents, starts its agent.
    pub async fn start_host(&self, host: &str) -> anyhow::Result<()> {
        let container = self.host(host)?.container.clone();
        docker(&["start", &container]).await?;
        self.wait_docker_ready(host, Duration::from_secs(60))
            .await?;
        if self.agents {
            self.start_agent(host).await?;
        }
        Ok(())
    }

    /// Freezes every process of the host, its apps included (`docker pause`).
    pub async fn pause_host(&self, host: &str) -> anyhow::Result<()> {
        let container = &self.host(host)?.container;
        docker(&["pause", container]).await.map(drop)
    }

    /// Thaws a paused host.
    pub async fn unpause_host(&self, host: &str) -> anyhow::Result<()> {
        let container = &self.host(host)?.container;
        docker(&["unpause", container]).await.map(drop)
    }

    /// Takes the host off the fleet network (`docker network disconnect`): it reaches
    /// nothing and nothing reaches it, while all its processes go on.
    pub async fn disconnect_host(&self, host: &str) -> anyhow::Result<()> {
        let container = &self.host(host)?.container;
        docker(&["network", "disconnect", &self.network, container])
            .await
            .map(drop)
    }

    /// Puts a disconnected host back on the network with its old address.
    pub async fn reconnect_host(&self, host: &str) -> anyhow::Result<()> {
        let host = self.host(host)?;
        let ip = host.ip.to_string();
        docker(&[
            "network",
            "connect",
            "--ip",
            &ip,
            &self.network,
            &host.container,
        ])
        .await
        .map(drop)
    }

    /// Stops the host's engine (`SIGTERM` to dockerd; its containers stop with it) and
    /// waits until it is gone; `SIGKILL` after 30 seconds.
    pub async fn stop_docker_in_host(&self, host: &str) -> anyhow::Result<()> {
        self.signal_pid_file(host, "/run/docker.pid", "TERM", 300)
            .await
    }

    /// Kills the host's engine with `SIGKILL` (its containers keep running orphaned
    /// until the engine comes back and cleans up).
    pub async fn kill_docker_in_host(&self, host: &str) -> anyhow::Result<()> {
        self.signal_pid_file(host, "/run/docker.pid", "KILL", 100)
            .await
    }

    /// Starts the host's engine again with its original arguments and waits for it.
    pub async fn start_docker_in_host(&self, host: &str) -> anyhow::Result<()> {
        let container = self.host(host)?.container.clone();
        docker(&["exec", &container, host_image::HOST_DOCKERD_PATH]).await?;
        self.wait_docker_ready(host, Duration::from_secs(60)).await
    }

    // ----- faults: agents ----------------------------------------------------------

    /// Starts `wharf agent --insecure-http --server GATEWAY_URL --state-dir
    /// /var/lib/wharf-agent --name host-N` in the host, in the background, with its
    /// output appended to `/var/log/wharf-agent.log` (plain HTTP to the gateway needs
    /// the flag). The registration token travels in the environment.
    pub async fn start_agent(&self, host: &str) -> anyhow::Result<()> {
        self.start_agent_with(host, &[]).await
    }

    /// [`start_agent`](Self::start_agent) with more arguments for `wharf agent`, e.g.
    /// `["--scaling-group", "asg"]` or `["--deregister"]` (passed as separate words, never
    /// through a shell). Registration-time flags only count when the agent has no state
    /// yet.
    pub async fn start_agent_with(&self, host: &str, extra_args: &[&str]) -> anyhow::Result<()> {
        let host = self.host(host)?;
        let server = self.server_url_for_hosts();
        // `$0` is the server URL, `$1` the name, the rest go to the agent as they are.
        let script = format!(
            "mkdir -p /run/wharf && echo $$ > {AGENT_PID_FILE} && \
             url=\"$0\" name=\"$1\" && shift && \
             exec {HOST_WHARF_BIN} agent --insecure-http --server \"$url\" --state-dir {AGENT_STATE_DIR} \
             --name \"$name\" \"$@\" >> {AGENT_LOG} 2>&1"
        );
        let mut args = vec![
            "exec",
            "-d",
            "-e",
            "WHARF_REGISTRATION_TOKEN",
            &host.container,
            "sh",
            "-c",
            &script,
            &server,
            &host.name,
        ];
        args.extend_from_slice(extra_args);
        let output = run_command(
            Path::new("docker"),
            &args,
            &[("WHARF_REGISTRATION_TOKEN", &self.registration_token)],
            None,
            DEFAULT_DOCKER_TIMEOUT,
        )
        .await?;
        ensure_success(&format!("starting the agent in {}", host.name), &output)?;
        // `exec -d` returns before the shell wrote the pid file; wait for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.agent_running(&host.name).await? {
            if Instant::now() >= deadline {
                let log = self.agent_log(&host.name).await.unwrap_or_default();
                bail!(
                    "the agent in {} did not start; its log:\n{}",
                    host.name,
                    tail(&log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Stops the host's agent with `SIGTERM` and waits until it exits (`SIGKILL` after
    /// 10 seconds). No-op when it does not run.
    pub async fn stop_agent(&self, host: &str) -> anyhow::Result<()> {
        self.stop_agent_within(host, Duration::from_secs(10)).await
    }

    /// [`stop_agent`](Self::stop_agent) with another grace period: on `SIGTERM` the agent
    /// lets a running step finish, which may take longer than 10 seconds.
    pub async fn stop_agent_within(&self, host: &str, grace: Duration) -> anyhow::Result<()> {
        // At most an hour: a bound for the wait loop.
        let tenths =
            u32::try_from(grace.min(Duration::from_secs(3600)).as_millis() / 100).unwrap_or(36_000);
        self.signal_pid_file(host, AGENT_PID_FILE, "TERM", tenths.max(1))
            .await
    }

    /// Kills the host's agent with `SIGKILL`, as a crash would; scripts it started go on.
    pub async fn kill_agent(&self, host: &str) -> anyhow::Result<()> {
        self.signal_pid_file(host, AGENT_PID_FILE, "KILL", 100)
            .await
    }

    /// Stops (`SIGTERM`) and starts the host's agent; it keeps its state directory, so
    /// it comes back as the same instance.
    pub async fn restart_agent(&self, host: &str) -> anyhow::Result<()> {
        self.stop_agent(host).await?;
        self.start_agent(host).await
    }

    /// Whether the host's agent process runs.
    pub async fn agent_running(&self, host: &str) -> anyhow::Result<bool> {
        let output = self
            .sh(
                host,
                &format!("pid=$(cat {AGENT_PID_FILE} 2>/dev/null) && kill -0 \"$pid\" 2>/dev/null"),
            )
            .await?;
        Ok(output.success())
    }

    /// The host's agent log.
    pub async fn agent_log(&self, host: &str) -> anyhow::Result<String> {
        Ok(self.exec(host, &["cat", AGENT_LOG]).await?.stdout)
    }

    /// The host engine's log.
    pub async fn dockerd_log(&self, host: &str) -> anyhow::Result<String> {
        Ok(self.exec(host, &["cat", DOCKERD_LOG]).await?.stdout)
    }

    /// Sends `signal` to the pid in `pid_file` inside the host and waits until the process
    /// is gone (`SIGKILL` after `tenths` tenths of a second). No-op without a process.
    async fn signal_pid_file(
        &self,
        host: &str,
        pid_file: &str,
        signal: &str,
        tenths: u32,
    ) -> anyhow::Result<()> {
        let script = format!(
            "pid=$(cat {pid_file} 2>/dev/null) || exit 0
             kill -0 \"$pid\" 2>/dev/null || exit 0
             kill -{signal} \"$pid\"
             i=0
             while kill -0 \"$pid\" 2>/dev/null; do
               i=$((i+1))
               if [ $i -ge {tenths} ]; then kill -KILL \"$pid\" 2>/dev/null; fi
               if [ $i -ge $(({tenths}+50)) ]; then echo \"pid $pid does not exit\" >&2; exit 1; fi
               sleep 0.1
             done"
        );
        let container = self.host(host)?.container.clone();
        // The loop sleeps 0.1 s a round (plus the shell's own time): leave room.
        let timeout = Duration::from_millis(u64::from(tenths) * 150) + Duration::from_secs(30);
        let output = docker_output(&["exec", &container, "sh", "-c", &script], timeout).await?;
        ensure_success(
            &format!("sending SIG{signal} to {pid_file} in {host}"),
            &output,
        )
    }

    // ----- from this machine to a host ---------------------------------------------

    /// `GET http://HOST_IP:PORT/PATH` from this machine (an app published on the host's
    /// port answers on the host's own address). Fails when nothing answers.
    pub async fn http_get(
        &self,
        host: &str,
        port: u16,
        path: &str,
    ) -> anyhow::Result<HttpResponse> {
        let url = format!(
            "http://{}:{port}/{}",
            self.host(host)?.ip,
            path.trim_start_matches('/')
        );
        let response = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .with_context(|| format!("reading the body of GET {url}"))?;
        Ok(HttpResponse { status, body })
    }

    /// Polls [`http_get`](Self::http_get) until it answers 200 with exactly `body`.
    pub async fn wait_http_body(
        &self,
        host: &str,
        port: u16,
        path: &str,
        body: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.http_get(host, port, path).await {
                Ok(response) if response.status == 200 && response.body == body => return Ok(()),
                Ok(response) => format!("{} {:?}", response.status, response.body),
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{host}:{port}{path} did not answer {body:?} within {timeout:?} (last: {last})"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // ----- debugging ---------------------------------------------------------------

    /// The end of every host's agent and engine logs and of the server log.
    pub fn diagnostics(&self) -> String {
        let mut out = format!("=== fleet {} ({:?})\n", self.run_id, self);
        let server_log = std::fs::read(self.run_dir.path().join("server.log"))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        out.push_str(&format!(
            "--- server log (end):\n{}\n",
            tail(&server_log, 40)
        ));
        for host in &self.hosts {
            let state =
                docker_stdout_sync(&["inspect", "--format", "{{.State.Status}}", &host.container]);
            out.push_str(&format!(
                "--- {} ({}, {}): {}",
                host.name, host.container, host.ip, state
            ));
            let agent =
                docker_stdout_sync(&["exec", &host.container, "tail", "-n", "40", AGENT_LOG]);
            out.push_str(&format!("--- {} agent log (end):\n{agent}\n", host.name));
            let containers = docker_stdout_sync(&["exec", &host.container, "docker", "ps", "-a"]);
            out.push_str(&format!("--- {} containers:\n{containers}\n", host.name));
            let dockerd =
                docker_stdout_sync(&["exec", &host.container, "tail", "-n", "15", DOCKERD_LOG]);
            out.push_str(&format!("--- {} engine log (end):\n{dockerd}\n", host.name));
        }
        out
    }

    // ----- internals ---------------------------------------------------------------

    /// Starts the hosts in parallel, waits for their engines, starts the agents and waits
    /// until all are online; returns the time each phase took.
    async fn bring_up(
        &self,
        labels: &Labels,
        deadline: Instant,
    ) -> anyhow::Result<Vec<(String, Duration)>> {
        let mut phases = Vec::new();
        let mut phase = Instant::now();
        futures::future::try_join_all(self.hosts.iter().map(|h| self.create_host(h, labels)))
            .await?;
        phases.push(("hosts created".to_owned(), phase.elapsed()));
        phase = Instant::now();
        futures::future::try_join_all(
            self.hosts
                .iter()
                .map(|h| self.wait_docker_ready(&h.name, remaining(deadline))),
        )
        .await?;
        phases.push(("engines ready".to_owned(), phase.elapsed()));
        phase = Instant::now();
        if self.agents {
            futures::future::try_join_all(self.hosts.iter().map(|h| self.start_agent(&h.name)))
                .await?;
            self.wait_all_online(remaining(deadline)).await?;
            phases.push(("agents online".to_owned(), phase.elapsed()));
        }
        Ok(phases)
    }

    async fn create_host(&self, host: &FleetHost, labels: &Labels) -> anyhow::Result<()> {
        let host_label = format!("{HOST_LABEL}={}", host.name);
        let mut volume_args = vec!["volume", "create"];
        volume_args.extend(labels.args());
        volume_args.push(&host.volume);
        docker(&volume_args).await?;

        let ip = host.ip.to_string();
        let bin_mount = format!("{}:{HOST_WHARF_BIN}:ro", self.wharf_bin.display());
        let docker_mount = format!("{}:/var/lib/docker", host.volume);
        let insecure = self.registry_for_hosts();
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &host.container,
            "--hostname",
            &host.name,
            "--network",
            &self.network,
            "--ip",
            &ip,
            "--label",
            &host_label,
        ];
        args.extend(labels.args());
        args.extend_from_slice(self.privilege.docker_flags());
        args.extend_from_slice(&["--tmpfs", "/run", "-v", &docker_mount, "-v", &bin_mount]);
        args.extend_from_slice(&[&self.image, "--insecure-registry", &insecure]);
        docker(&args)
            .await
            .with_context(|| format!("starting host {}", host.name))?;
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let keep = std::env::var("WHARF_FLEET_KEEP").is_ok_and(|v| !v.is_empty() && v != "0");
        if std::thread::panicking() || std::env::var("WHARF_FLEET_LOGS").is_ok_and(|v| v == "1") {
            eprintln!("{}", self.diagnostics());
        }
        if keep {
            self.resources.keep = true;
            self.run_dir.disable_cleanup(true);
            eprintln!(
                "wharf-testkit: WHARF_FLEET_KEEP is set: kept fleet {} (hosts {}; run dir {}); \
                 remove it with scripts/fleet/cleanup.sh {}",
                self.run_id,
                self.hosts
                    .iter()
                    .map(|host| host.container.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                self.run_dir.path().display(),
                self.run_id
            );
        }
    }
}

/// Containers, volumes and the network of one run, removed on drop (also when a start
/// fails half-way: each is recorded before it is created).
#[derive(Debug)]
struct FleetResources {
    run_id: String,
    containers: Vec<String>,
    volumes: Vec<String>,
    network: Option<String>,
    keep: bool,
}

impl FleetResources {
    fn new(run_id: &str) -> Self {
        Self {
            run_id: run_id.to_owned(),
            containers: Vec::new(),
            volumes: Vec::new(),
            network: None,
            keep: false,
        }
    }
}

impl Drop for FleetResources {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(self.containers.iter().map(String::as_str));
            docker_quietly(&args);
        }
        // Whatever else carries the run's label (e.g. a container a test added itself).
        let filter = format!("label={RUN_LABEL}={}", self.run_id);
        for name in docker_stdout_sync(&["ps", "-aq", "--filter", &filter]).lines() {
            docker_quietly(&["rm", "-f", "-v", name]);
        }
        for volume in &self.volumes {
            docker_quietly(&["volume", "rm", "-f", volume]);
        }
        if let Some(network) = &self.network {
            // An endpoint may linger for a moment after its container is gone.
            for _ in 0..20 {
                if docker_quietly(&["network", "rm", network]) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}

/// The labels of the run's resources as `--label K=V` arguments.
struct Labels {
    run: String,
    owner: String,
}

impl Labels {
    fn new(run_id: &str, owner: &str) -> Self {
        Self {
            run: format!("{RUN_LABEL}={run_id}"),
            owner: format!("{OWNER_LABEL}={owner}"),
        }
    }

    fn args(&self) -> [&str; 4] {
        ["--label", &self.run, "--label", &self.owner]
    }
}

/// Creates the network with a subnet Docker picks, then pins it: the network is created
/// again with that subnet given explicitly, which is what lets hosts have fixed
/// addresses (`--ip`). Retried when a parallel run takes the subnet in between.
async fn create_network(
    name: &str,
    labels: &Labels,
    resources: &mut FleetResources,
) -> anyhow::Result<(String, Ipv4Addr)> {
    resources.network = Some(name.to_owned());
    let mut last_error = None;
    for _ in 0..5 {
        let mut args = vec!["network", "create", "--driver", "bridge"];
        args.extend(labels.args());
        args.push(name);
        docker(&args).await?;
        let config = docker(&[
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
            name,
        ])
        .await?;
        docker(&["network", "rm", name]).await?;
        let (subnet, gateway) = config
            .split_once(' ')
            .with_context(|| format!("no IPv4 subnet in the IPAM config {config:?} of {name}"))?;
        let gateway: Ipv4Addr = gateway
            .parse()
            .with_context(|| format!("the gateway {gateway:?} of {name}"))?;
        let subnet_arg = format!("--subnet={subnet}");
        let gateway_arg = format!("--gateway={gateway}");
        let mut args = vec![
            "network",
            "create",
            "--driver",
            "bridge",
            &subnet_arg,
            &gateway_arg,
        ];
        args.extend(labels.args());
        args.push(name);
        match docker(&args).await {
            Ok(_) => return Ok((subnet.to_owned(), gateway)),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error
        .unwrap_or_else(|| anyhow::anyhow!("no subnet"))
        .context(format!("creating the network {name}")))
}

/// Names and addresses of the hosts: `host-N` at the subnet's address `.10 + N - 1`.
fn plan_hosts(run_id: &str, count: usize, subnet: &str) -> anyhow::Result<Vec<FleetHost>> {
    let (base, prefix) = subnet
        .split_once('/')
        .with_context(|| format!("the subnet {subnet:?} has no prefix length"))?;
    let base: Ipv4Addr = base
        .parse()
        .with_context(|| format!("the subnet {subnet:?}"))?;
    let prefix: u32 = prefix
        .parse()
        .with_context(|| format!("the prefix length of {subnet:?}"))?;
    let size = 1u64 << (32 - prefix.min(32));
    anyhow::ensure!(
        u64::from(FIRST_HOST_OFFSET) + count as u64 + 1 < size,
        "the subnet {subnet} is too small for {count} hosts"
    );
    Ok((1..=count)
        .map(|index| {
            let ip = Ipv4Addr::from(u32::from(base) + FIRST_HOST_OFFSET + index as u32 - 1);
            let name = format!("host-{index}");
            FleetHost {
                index,
                container: format!("{run_id}-{name}"),
                volume: format!("{run_id}-{name}-docker"),
                name,
                ip,
            }
        })
        .collect())
}

/// Creates a registration token with `uses` uses through the API.
async fn create_registration_token(
    http: &reqwest::Client,
    server: &str,
    admin_token: &str,
    uses: usize,
) -> anyhow::Result<String> {
    let url = format!("{server}/api/v1/registration-tokens");
    let response = http
        .post(&url)
        .bearer_auth(admin_token)
        .json(&serde_json::json!({ "uses": uses, "ttl_secs": 86_400 }))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("reading the answer of POST {url}"))?;
    anyhow::ensure!(status.is_success(), "POST {url} answered {status}: {body}");
    body["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("POST {url} returned no token"))
}

/// Removes temporary directories of earlier runs whose owner process has ended.
fn reap_stale_run_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("wharf-fleet-") {
            continue;
        }
        let owner = entry.path().join("owner");
        if let Ok(owner) = std::fs::read_to_string(owner) {
            if owner_is_gone(&owner) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn ensure_success(what: &str, output: &CommandOutput) -> anyhow::Result<()> {
    if !output.success() {
        bail!(
            "{what} failed (exit {:?}): {}{}",
            output.code,
            output.stderr.trim(),
            if output.stdout.trim().is_empty() {
                String::new()
            } else {
                format!("\nstdout: {}", output.stdout.trim())
            }
        );
    }
    Ok(())
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_get_names_and_fixed_addresses() {
        let hosts = plan_hosts("wharf-fleet-abc", 3, "172.18.0.0/16").unwrap();
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts[0].name, "host-1");
        assert_eq!(hosts[0].container, "wharf-fleet-abc-host-1");
        assert_eq!(hosts[0].volume, "wharf-fleet-abc-host-1-docker");
        assert_eq!(hosts[0].ip, Ipv4Addr::new(172, 18, 0, 10));
        assert_eq!(hosts[2].ip, Ipv4Addr::new(172, 18, 0, 12));
        assert!(plan_hosts("r", 3, "10.0.0.0/29").is_err());
        assert!(plan_hosts("r", 3, "nonsense").is_err());
    }

    #[test]
    fn privilege_flags_follow_the_machine_notes() {
        assert_eq!(HostPrivilege::Privileged.docker_flags(), ["--privileged"]);
        let flags = HostPrivilege::Capabilities.docker_flags().join(" ");
        assert!(flags.contains("--cap-drop=SYS_RESOURCE"));
        assert!(flags.contains("--cgroupns=host"));
        assert!(flags.contains("systempaths=unconfined"));
    }

    #[test]
    fn options_do_not_print_passwords() {
        let options = FleetOptions {
            registry_users: vec![("u".into(), "hunter2".into())],
            ..FleetOptions::default()
        };
        assert!(!format!("{options:?}").contains("hunter2"));
    }
}
