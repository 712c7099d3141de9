//! A fresh Debian host beside a [`Fleet`]: a container of the bare host image
//! ([`crate::host_image::BARE_HOST`]: debootstrap's bookworm minbase with bash, curl,
//! iproute2 and certificates, *no Docker*) on the fleet's network, with the rights a
//! fleet host has (so an engine installed later can run), the fleet's `wharf` binary
//! and a `wharf agent` joined to the fleet's server. It is what `scripts/prepare-host.sh`
//! is for: a host an operator just installed.
//!
//! ```no_run
//! # async fn demo(fleet: &wharf_testkit::fleet::Fleet) -> anyhow::Result<()> {
//! use wharf_testkit::bare_host::BareHost;
//! let bare = BareHost::start(fleet, "bare-1").await?;   // agent online as `bare-1`
//! bare.exec_ok(&["apt-get", "--version"]).await?;
//! # Ok(()) }
//! ```
//!
//! Only the fleet's public API is used. The container and its `/var/lib/docker` volume
//! carry the fleet run's labels (so a later run reaps them if this process dies) and are
//! removed when the [`BareHost`] is dropped (the fleet's own clean-up also removes the
//! container, by label).
//!
//! Differences from a fleet host: no engine until something installs one; PID 1 is the
//! engine's `--init` (tini) running `sleep infinity`, so services started by init
//! scripts are reaped; the address is picked by Docker on the fleet network.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::fleet::{ExecOutput, Fleet, AGENT_LOG, AGENT_PID_FILE, AGENT_STATE_DIR, HOST_WHARF_BIN};
use crate::fleet_docker::{
    docker, docker_output, docker_quietly, docker_stdout_sync, owner_id, run_command,
    DEFAULT_DOCKER_TIMEOUT, OWNER_LABEL, RUN_LABEL,
};
use crate::host_image;

/// The label naming a bare host (its name) on its container.
pub const BARE_HOST_LABEL: &str = "wharf.fleet.bare-host";

/// How long the agent may take to register and come online.
const ONLINE_TIMEOUT: Duration = Duration::from_secs(60);

/// A bare host; its container and volume go away when it is dropped.
#[derive(Debug)]
pub struct BareHost {
    name: String,
    container: String,
    volume: String,
    ip: Ipv4Addr,
    server_url: String,
    registration_token: String,
}

impl BareHost {
    /// Builds the bare host image if needed (about a minute, once; cached by the hash of
    /// its recipe), starts the host on the fleet's network as `name` (its hostname and
    /// its agent's name), starts `wharf agent` in it and waits until the server lists it
    /// `online`.
    pub async fn start(fleet: &Fleet, name: &str) -> anyhow::Result<BareHost> {
        anyhow::ensure!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "a bare host name is lowercase letters, digits and dashes, not {name:?}"
        );
        let image = host_image::ensure_bare().await?;
        let run_label = format!("{RUN_LABEL}={}", fleet.run_id());
        let owner_label = format!("{OWNER_LABEL}={}", owner_id());
        let host_label = format!("{BARE_HOST_LABEL}={name}");
        let container = format!("{}-{name}", fleet.run_id());
        let volume = format!("{container}-docker");
        docker(&[
            "volume",
            "create",
            "--label",
            &run_label,
            "--label",
            &owner_label,
            &volume,
        ])
        .await?;
        // From here on, Drop removes what exists.
        let mut host = BareHost {
            name: name.to_owned(),
            container,
            volume,
            ip: Ipv4Addr::UNSPECIFIED,
            server_url: fleet.server_url_for_hosts(),
            registration_token: fleet.registration_token().to_owned(),
        };
        let bin_mount = format!("{}:{HOST_WHARF_BIN}:ro", fleet.wharf_bin().display());
        let docker_mount = format!("{}:/var/lib/docker", host.volume);
        let mut args = vec![
            "run",
            "-d",
            "--init",
            "--name",
            &host.container,
            "--hostname",
            name,
            "--network",
            fleet.network(),
            "--label",
            &run_label,
            "--label",
            &owner_label,
            "--label",
            &host_label,
        ];
        args.extend_from_slice(fleet.privilege().docker_flags());
        args.extend_from_slice(&["--tmpfs", "/run", "-v", &docker_mount, "-v", &bin_mount]);
        args.push(&image);
        docker(&args)
            .await
            .with_context(|| format!("starting the bare host {name}"))?;
        let format = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            fleet.network()
        );
        let ip = docker(&["inspect", "--format", &format, &host.container]).await?;
        host.ip = ip
            .parse()
            .with_context(|| format!("the address {ip:?} of the bare host {name}"))?;
        host.start_agent().await?;
        host.wait_online(fleet, ONLINE_TIMEOUT).await?;
        Ok(host)
    }

    /// The host's name: its hostname and its instance's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The container's name: `RUN-NAME`.
    pub fn container(&self) -> &str {
        &self.container
    }

    /// The host's address on the fleet network.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Runs `args` in the host (`docker exec`), whatever its exit code.
    pub async fn exec(&self, args: &[&str]) -> anyhow::Result<ExecOutput> {
        let mut full = vec!["exec", self.container.as_str()];
        full.extend_from_slice(args);
        docker_output(&full, DEFAULT_DOCKER_TIMEOUT).await
    }

    /// [`exec`](Self::exec), failing unless the command exits 0; returns trimmed stdout.
    pub async fn exec_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.exec(args).await?;
        if !output.success() {
            bail!(
                "{}: {} failed (exit {:?}): {}\nstdout: {}",
                self.name,
                args.join(" "),
                output.code,
                output.stderr.trim(),
                output.stdout.trim()
            );
        }
        Ok(output.stdout.trim().to_owned())
    }

    /// Runs `sh -c SCRIPT` in the host, whatever its exit code.
    pub async fn sh(&self, script: &str) -> anyhow::Result<ExecOutput> {
        self.exec(&["sh", "-c", script]).await
    }

    /// Runs `args` in the host with `stdin` on its standard input (`docker exec -i`),
    /// e.g. `docker load` of an image saved on this machine.
    pub async fn exec_with_stdin(&self, args: &[&str], stdin: &[u8]) -> anyhow::Result<ExecOutput> {
        let mut full = vec!["exec", "-i", self.container.as_str()];
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

    /// The agent's log.
    pub async fn agent_log(&self) -> anyhow::Result<String> {
        Ok(self.exec(&["cat", AGENT_LOG]).await?.stdout)
    }

    /// Starts `wharf agent --insecure-http --server GATEWAY_URL --state-dir
    /// /var/lib/wharf-agent --name NAME` in the background (output appended to
    /// `/var/log/wharf-agent.log`; plain HTTP to the gateway needs the flag). The
    /// registration token travels in the environment (`docker exec -e NAME` without a
    /// value takes it from this process's child environment), never on a command line.
    pub async fn start_agent(&self) -> anyhow::Result<()> {
        let script = format!(
            "mkdir -p /run/wharf && echo $$ > {AGENT_PID_FILE} && \
             exec {HOST_WHARF_BIN} agent --insecure-http --server \"$0\" --state-dir {AGENT_STATE_DIR} \
             --name \"$1\" >> {AGENT_LOG} 2>&1"
        );
        let output = run_command(
            Path::new("docker"),
            &[
                "exec",
                "-d",
                "-e",
                "WHARF_REGISTRATION_TOKEN",
                &self.container,
                "sh",
                "-c",
                &script,
                &self.server_url,
                &self.name,
            ],
            &[("WHARF_REGISTRATION_TOKEN", &self.registration_token)],
            None,
            DEFAULT_DOCKER_TIMEOUT,
        )
        .await?;
        if !output.success() {
            bail!(
                "starting the agent in {} failed: {}",
                self.name,
                output.stderr.trim()
            );
        }
        Ok(())
    }

    /// Waits until the server lists this host's instance `online`.
    pub async fn wait_online(&self, fleet: &Fleet, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match fleet.instance_statuses().await {
                Ok(statuses) => match statuses.get(&self.name) {
                    Some(status) if status == "online" => return Ok(()),
                    Some(status) => status.clone(),
                    None => "not registered".to_owned(),
                },
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() >= deadline {
                let log = self.agent_log().await.unwrap_or_default();
                bail!(
                    "the agent of the bare host {} was not online within {timeout:?} \
                     (last: {last}); its log:\n{log}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The host's state, agent log, engine log (if any) and containers, for a failure.
    pub fn diagnostics(&self) -> String {
        let state =
            docker_stdout_sync(&["inspect", "--format", "{{.State.Status}}", &self.container]);
        let agent = docker_stdout_sync(&["exec", &self.container, "tail", "-n", "40", AGENT_LOG]);
        let engine = docker_stdout_sync(&[
            "exec",
            &self.container,
            "sh",
            "-c",
            "tail -n 30 /var/log/docker.log 2>/dev/null; docker ps -a 2>&1",
        ]);
        format!(
            "--- bare host {} ({}, {}): {}--- agent log (end):\n{agent}\n\
             --- engine log (end) and containers:\n{engine}\n",
            self.name, self.container, self.ip, state
        )
    }
}

impl Drop for BareHost {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
        if std::env::var("WHARF_FLEET_KEEP").is_ok_and(|v| !v.is_empty() && v != "0") {
            return;
        }
        docker_quietly(&["rm", "-f", "-v", &self.container]);
        docker_quietly(&["volume", "rm", "-f", &self.volume]);
    }
}
