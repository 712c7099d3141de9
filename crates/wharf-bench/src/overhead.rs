//! Per-instance overhead: releases to one real `wharf agent`, timed as the CLI sees
//! them (`wharf release create ...` follows until success), against running the same
//! steps directly on this host.

use crate::report::{median, Table};
use crate::server::{millis_between, Api, Running};
use anyhow::{bail, Context as _};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use wharf_testkit::registry::RegistryHarness;
use wharf_testkit::sample_image;

/// The longest the agent may take to come online.
const ONLINE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one timed command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// The registry user of the docker-image measurement.
const REGISTRY_USER: &str = "bench";

/// A real `wharf agent` process, killed on drop.
pub struct RealAgent {
    pub child: Child,
    pub id: String,
}

impl RealAgent {
    /// Starts `wharf agent` against the server and waits until it is online.
    pub async fn start(wharf: &Path, running: &Running, name: &str) -> anyhow::Result<RealAgent> {
        let token = running.api.registration_token(1).await?;
        let log = std::fs::File::create(running.dir().join(format!("{name}.log")))?;
        let child = Command::new(wharf)
            .args([
                "agent",
                "--server",
                &running.api.url,
                "--name",
                name,
                "--state-dir",
            ])
            .arg(running.dir().join(name))
            .env("WHARF_REGISTRATION_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting wharf agent")?;
        let deadline = Instant::now() + ONLINE_TIMEOUT;
        while Instant::now() < deadline {
            let instances = running.api.get("/api/v1/instances").await?;
            let found = instances
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["name"] == name && i["status"] == "online");
            if let Some(instance) = found {
                let id = instance["id"].as_str().context("instance id")?.to_owned();
                return Ok(RealAgent { child, id });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the agent {name} did not come online within {ONLINE_TIMEOUT:?}")
    }

    /// The agent's process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the agent has exited")
    }
}

/// Runs both overhead measurements and adds their figures to `table`.
pub async fn run(wharf: &Path, quick: bool, table: &mut Table) -> anyhow::Result<()> {
    println!("overhead: one real agent");
    let running = Running::start(wharf).await?;
    let agent = RealAgent::start(wharf, &running, "bench-agent").await?;
    running
        .api
        .app_with_group("bench", "one", std::slice::from_ref(&agent.id))
        .await?;
    let work = running.dir().join("work");
    std::fs::create_dir_all(&work)?;
    noop(wharf, &running, &work, if quick { 5 } else { 20 }, table).await?;
    docker_image(
        wharf,
        &running,
        &agent,
        &work,
        if quick { 2 } else { 5 },
        table,
    )
    .await
}

/// The CLI's environment: the server, the admin token and a throwaway HOME.
fn cli(wharf: &Path, api: &Api, home: &Path) -> Command {
    let mut command = Command::new(wharf);
    command
        .env("WHARF_SERVER", &api.url)
        .env("WHARF_TOKEN", &api.token)
        .env("HOME", home)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs a command to its end, failing on a non-zero exit or after `COMMAND_TIMEOUT`.
async fn run_ok(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let output = tokio::time::timeout(COMMAND_TIMEOUT, command.output())
        .await
        .with_context(|| format!("{what} took longer than {COMMAND_TIMEOUT:?}"))?
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Times `wharf release create` of `deployment` once; returns the CLI's time and the
/// server's (creation to finish) in ms.
async fn timed_release(
    wharf: &Path,
    running: &Running,
    deployment: &str,
) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    run_ok(
        cli(wharf, &running.api, running.dir()).args([
            "release",
            "create",
            "bench",
            "one",
            "--deployment",
            deployment,
        ]),
        "wharf release create",
    )
    .await?;
    let cli_ms = started.elapsed().as_secs_f64() * 1000.0;
    let releases = running
        .api
        .get("/api/v1/releases?app=bench&group=one")
        .await;
    let server_ms = releases
        .ok()
        .and_then(|list| {
            let list = list.as_array()?.clone();
            let last = list
                .iter()
                .max_by_key(|r| r["created_at"].as_str().map(str::to_owned))?
                .clone();
            millis_between(&last["created_at"], &last["finished_at"])
        })
        .unwrap_or(0.0);
    Ok((cli_ms, server_ms))
}

/// A `command` deployment whose scripts are `true`, against `bash -c true` twice.
async fn noop(
    wharf: &Path,
    running: &Running,
    work: &Path,
    rounds: usize,
    table: &mut Table,
) -> anyhow::Result<()> {
    running
        .api
        .post(
            "/api/v1/apps/bench/deployments",
            json!({"name": "noop", "type": "command", "workdir": work.to_string_lossy(),
                   "start_script": "true", "stop_script": "true"}),
        )
        .await?;
    let (mut cli_ms, mut server_ms, mut direct_ms) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (cli, server) = timed_release(wharf, running, "noop").await?;
        cli_ms.push(cli);
        server_ms.push(server);
        let started = Instant::now();
        for _ in 0..2 {
            run_ok(Command::new("bash").args(["-c", "true"]), "bash -c true").await?;
        }
        direct_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let direct = median(&mut direct_ms);
    table.add_ratio(
        format!("no-op release, CLI end to end (median of {rounds})"),
        median(&mut cli_ms),
        direct,
        "≤ 100 ms",
    );
    table.add_ratio(
        format!("no-op release, server creation → finished (median of {rounds})"),
        median(&mut server_ms),
        direct,
        "-",
    );
    Ok(())
}

/// The sample image as a `docker-image` release, against pull + stop + start by hand.
async fn docker_image(
    wharf: &Path,
    running: &Running,
    agent: &RealAgent,
    work: &Path,
    rounds: usize,
    table: &mut Table,
) -> anyhow::Result<()> {
    let password = format!("pw-{}", rand::random::<u64>());
    let registry = RegistryHarness::start(&[(REGISTRY_USER, &password)]).await?;
    let local_tag = format!("wharf-bench-sample:{}", std::process::id());
    sample_image::build("v1", &local_tag).await?;
    let pushed = sample_image::push(
        &local_tag,
        &registry,
        "bench",
        "hello",
        "v1",
        (REGISTRY_USER, &password),
    )
    .await;
    // The build tag goes too, so that every pull below fetches the layers.
    sample_image::remove_local(&local_tag).await?;
    let reference = pushed?.reference;

    // The deployment's scripts, with a random host port (several runs on one machine).
    let repo = wharf_testkit::fleet_server::workspace_root();
    let start = std::fs::read_to_string(repo.join("sample-app/deploy/start.sh"))?
        .lines()
        .map(|l| {
            if l.starts_with("port=") {
                "port=random"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let stop = std::fs::read_to_string(repo.join("sample-app/deploy/stop.sh"))?;
    let scripts = running.dir().join("scripts");
    std::fs::create_dir_all(&scripts)?;
    std::fs::write(scripts.join("start.sh"), &start)?;
    std::fs::write(scripts.join("stop.sh"), &stop)?;
    running
        .api
        .post(
            "/api/v1/registries",
            json!({"name": "local", "endpoint": registry.addr(), "username": REGISTRY_USER, "password": password}),
        )
        .await?;
    running
        .api
        .post(
            "/api/v1/apps/bench/deployments",
            json!({"name": "sample", "type": "docker-image",
                   "image": {"registry": "local", "namespace": "bench", "repository": "hello", "tag": "v1"},
                   "workdir": work.to_string_lossy(), "start_script": start, "stop_script": stop}),
        )
        .await?;

    let containers = [
        format!("wharf-sample-{}", agent.id),
        "wharf-sample-bench-direct".to_owned(),
    ];
    let docker_config = running.dir().join("docker-config");
    std::fs::create_dir_all(&docker_config)?;
    let (mut cli_ms, mut server_ms, mut direct_ms) = (Vec::new(), Vec::new(), Vec::new());
    let outcome: anyhow::Result<()> = async {
        for _ in 0..rounds {
            reset(&containers, &reference).await?;
            let (cli, server) = timed_release(wharf, running, "sample").await?;
            cli_ms.push(cli);
            server_ms.push(server);

            reset(&containers, &reference).await?;
            let started = Instant::now();
            direct_steps(
                &docker_config,
                &registry.addr(),
                &password,
                &reference,
                &scripts,
                work,
            )
            .await?;
            direct_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(())
    }
    .await;
    // Whatever happened, the containers and the pulled image go.
    let cleaned = reset(&containers, &reference).await;
    outcome?;
    cleaned?;
    let direct = median(&mut direct_ms);
    table.add_ratio(
        format!("docker-image release, CLI end to end (median of {rounds})"),
        median(&mut cli_ms),
        direct,
        "≤ 1.05x direct",
    );
    table.add_ratio(
        format!("docker-image release, server creation → finished (median of {rounds})"),
        median(&mut server_ms),
        direct,
        "-",
    );
    Ok(())
}

/// Removes the sample containers and the pulled image, so the next round starts clean.
async fn reset(containers: &[String], reference: &str) -> anyhow::Result<()> {
    for name in containers {
        // A container that does not exist is fine.
        let _ = Command::new("docker")
            .args(["rm", "-f", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    sample_image::remove_local(reference).await
}

/// The same steps by hand: log in (private DOCKER_CONFIG, password on stdin), pull,
/// stop script, start script.
async fn direct_steps(
    docker_config: &Path,
    registry: &str,
    password: &str,
    reference: &str,
    scripts: &Path,
    work: &Path,
) -> anyhow::Result<()> {
    let mut login = Command::new("docker")
        .env("DOCKER_CONFIG", docker_config)
        .args([
            "login",
            "--username",
            REGISTRY_USER,
            "--password-stdin",
            registry,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("docker login")?;
    if let Some(mut stdin) = login.stdin.take() {
        stdin.write_all(password.as_bytes()).await?;
    }
    let output = tokio::time::timeout(COMMAND_TIMEOUT, login.wait_with_output())
        .await
        .context("docker login timed out")??;
    if !output.status.success() {
        bail!(
            "docker login failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    run_ok(
        Command::new("docker")
            .env("DOCKER_CONFIG", docker_config)
            .args(["pull", "--quiet", reference]),
        "docker pull",
    )
    .await?;
    for script in ["stop.sh", "start.sh"] {
        let path: PathBuf = scripts.join(script);
        run_ok(
            Command::new("bash")
                .arg(&path)
                .current_dir(work)
                .env("WHARF_INSTANCE", "bench-direct")
                .env("WHARF_IMAGE", reference)
                .env("WHARF_RELEASE", "direct"),
            script,
        )
        .await?;
    }
    Ok(())
}
