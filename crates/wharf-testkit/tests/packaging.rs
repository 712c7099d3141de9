//! The release artifacts of `scripts/package.sh` on real hosts (fleet tier: needs the
//! Docker Engine, debootstrap and the Debian mirror, and builds the release binary):
//!
//! - `packaging_deb_installs_and_its_units_run_under_systemd`: the `.deb` installed
//!   with dpkg on a fresh Debian host whose PID 1 is systemd (`SYSTEMD_HOST` in
//!   `src/host_image.rs`): the files and their modes, the `wharf` system user,
//!   `systemd-analyze verify` of both units; then `wharf-server.service` started (as
//!   `wharf`, hardened) answers `/readyz`, and `wharf-agent.service` registers, is
//!   stopped while a step runs (the step finishes and is reported; the release
//!   succeeds) and comes back as the same instance.
//! - `packaging_server_image_answers_readyz`: the `FROM scratch` server image started
//!   with `docker run` answers `/readyz` with 200, as a numeric non-root user.
//!
//! Both use one run of `scripts/package.sh` per test process (cargo makes it cheap
//! when the binary is current). Run them one at a time:
//! `cargo test -p wharf-testkit --test packaging -- --test-threads=1`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use wharf_testkit::fleet_server::workspace_root;
use wharf_testkit::fleet_test::Phases;
use wharf_testkit::host_image;

/// How long `scripts/package.sh` may take: a release build from scratch on two cores.
const PACKAGE_TIMEOUT: Duration = Duration::from_secs(45 * 60);

/// The label `scripts/fleet/cleanup.sh` looks for.
const RUN_LABEL: &str = "wharf.fleet.run";

/// A finished command: exit code and lossily decoded output.
#[derive(Debug)]
struct CommandOutput {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl CommandOutput {
    fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `program ARGS` (stdin closed), killed after `timeout`. The variables cargo
/// sets for this test (`CARGO_PKG_*`, `CARGO_MANIFEST_DIR`, ...) are left out, so that
/// a cargo build it runs sees the environment a shell would give it and does not
/// rebuild what one from a shell built.
async fn run_command(
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> anyhow::Result<CommandOutput> {
    let mut command = tokio::process::Command::new(program);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("CARGO_BIN_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&key.as_ref())
        {
            command.env_remove(key.as_ref());
        }
    }
    let child = command
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout, child)
        .await
        .with_context(|| format!("{program} {args:?} did not finish within {timeout:?}"))?
        .with_context(|| format!("running {program}"))?;
    Ok(CommandOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

async fn docker_output(args: &[&str], timeout: Duration) -> anyhow::Result<CommandOutput> {
    run_command("docker", args, timeout).await
}

/// `docker ARGS`, failing unless it exits 0; its trimmed stdout.
async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = docker_output(args, Duration::from_secs(300)).await?;
    ensure!(
        output.success(),
        "docker {} failed ({:?}): {}",
        args.join(" "),
        output.code,
        output.stderr
    );
    Ok(output.stdout.trim().to_owned())
}

/// What `scripts/package.sh` made.
struct Artifacts {
    deb: PathBuf,
    image: String,
}

static ARTIFACTS: tokio::sync::OnceCell<Artifacts> = tokio::sync::OnceCell::const_new();

/// Runs `scripts/package.sh` once for this process.
async fn artifacts() -> anyhow::Result<&'static Artifacts> {
    ARTIFACTS
        .get_or_try_init(|| async {
            let root = workspace_root();
            let script = root.join("scripts/package.sh");
            let output = run_command("bash", &[&script.to_string_lossy()], PACKAGE_TIMEOUT).await?;
            ensure!(
                output.success(),
                "scripts/package.sh failed ({:?}): {}",
                output.code,
                output.stderr
            );
            let version = env!("CARGO_PKG_VERSION");
            let deb = root.join(format!("dist/wharf_{version}-1_amd64.deb"));
            ensure!(deb.is_file(), "{} is missing", deb.display());
            for name in [
                format!("wharf-{version}-x86_64-linux.tar.gz"),
                format!("wharf-server-{version}.image.tar"),
                "SHA256SUMS".to_owned(),
            ] {
                let path = root.join("dist").join(&name);
                ensure!(path.is_file(), "{} is missing", path.display());
            }
            Ok(Artifacts {
                deb,
                image: format!("wharf-server:{version}"),
            })
        })
        .await
}

/// A container removed (with its volumes) when dropped.
struct Container {
    name: String,
}

impl Container {
    /// `docker run -d` with `args` before the image; labelled like the fleet's hosts,
    /// so `scripts/fleet/cleanup.sh` finds it if the test dies.
    async fn run(
        prefix: &str,
        args: &[&str],
        image: &str,
        command: &[&str],
    ) -> anyhow::Result<Self> {
        let name = format!("wharf-fleet-{prefix}-{}", std::process::id());
        let _ = docker_output(&["rm", "-f", "-v", &name], Duration::from_secs(60)).await;
        let label = format!("{RUN_LABEL}={name}");
        let mut all = vec!["run", "-d", "--name", &name, "--label", &label];
        all.extend_from_slice(args);
        all.push(image);
        all.extend_from_slice(command);
        docker(&all).await?;
        Ok(Self { name })
    }

    async fn exec(&self, script: &str) -> anyhow::Result<CommandOutput> {
        docker_output(
            &["exec", &self.name, "bash", "-c", script],
            Duration::from_secs(120),
        )
        .await
    }

    /// Runs `script` with bash in the container; fails unless it exits 0.
    async fn sh(&self, script: &str) -> anyhow::Result<String> {
        let output = self.exec(script).await?;
        ensure!(
            output.success(),
            "`{script}` failed in {} ({:?}): {}{}",
            self.name,
            output.code,
            output.stdout,
            output.stderr
        );
        Ok(output.stdout.trim().to_owned())
    }

    /// Runs `script` until it exits 0, for at most `timeout`; returns its stdout.
    async fn wait_for(&self, script: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let output = self.exec(script).await?;
            if output.success() {
                return Ok(output.stdout.trim().to_owned());
            }
            if Instant::now() > deadline {
                bail!(
                    "`{script}` did not succeed within {timeout:?}: {}{}",
                    output.stdout,
                    output.stderr
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::env::var_os("WHARF_FLEET_KEEP").is_some() {
            eprintln!("packaging: kept container {}", self.name);
            return;
        }
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Starts the systemd host: the flags that let systemd run as PID 1 in a container
/// here (see the machine notes; `--privileged` is refused on some machines).
async fn systemd_host(image: &str) -> anyhow::Result<Container> {
    let host = Container::run(
        "systemd",
        &[
            "--cap-add=ALL",
            "--cap-drop=SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--security-opt",
            "systempaths=unconfined",
            "--cgroupns=private",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp",
        ],
        image,
        &[],
    )
    .await?;
    // `degraded` (some unit of the minimal image failed) is good enough for ours.
    host.wait_for(
        "state=$(systemctl is-system-running 2>/dev/null); \
         [ \"$state\" = running ] || [ \"$state\" = degraded ]",
        Duration::from_secs(60),
    )
    .await
    .context("systemd did not come up in the container")?;
    Ok(host)
}

#[tokio::test]
async fn packaging_deb_installs_and_its_units_run_under_systemd() -> anyhow::Result<()> {
    let mut phases = Phases::new("packaging_deb");
    let (artifacts, image) = tokio::try_join!(artifacts(), host_image::ensure_systemd())?;
    phases.done("package.sh + systemd host image");
    let host = systemd_host(&image).await?;
    phases.done("systemd up");

    let deb = artifacts.deb.to_string_lossy();
    docker(&["cp", &deb, &format!("{}:/root/wharf.deb", host.name)]).await?;
    host.sh("dpkg -i /root/wharf.deb").await?;
    phases.done("dpkg -i");

    // The files, their modes and owners.
    let listing = host
        .sh(
            "stat -c '%n %a %U' /usr/bin/wharf /etc/wharf /etc/wharf/server.toml \
             /etc/wharf/server.env /etc/wharf/agent.env \
             /lib/systemd/system/wharf-server.service /lib/systemd/system/wharf-agent.service",
        )
        .await?;
    for expected in [
        "/usr/bin/wharf 755 root",
        "/etc/wharf 755 root",
        "/etc/wharf/server.toml 644 root",
        "/etc/wharf/server.env 600 root",
        "/etc/wharf/agent.env 600 root",
        "/lib/systemd/system/wharf-server.service 644 root",
        "/lib/systemd/system/wharf-agent.service 644 root",
    ] {
        ensure!(
            listing.lines().any(|line| line == expected),
            "{expected:?} not in:\n{listing}"
        );
    }
    let version = host.sh("wharf --version").await?;
    ensure!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    // The user: a system account (uid below 1000) that cannot log in.
    let user = host.sh("getent passwd wharf").await?;
    let fields: Vec<&str> = user.split(':').collect();
    ensure!(fields.len() == 7, "{user}");
    let uid: u32 = fields[2].parse().context("the uid")?;
    ensure!(uid > 0 && uid < 1000, "not a system uid: {user}");
    ensure!(fields[6] == "/usr/sbin/nologin", "{user}");
    // The shipped configuration file is one the server accepts.
    let printed = host
        .sh("wharf server --config /etc/wharf/server.toml --print-config")
        .await?;
    ensure!(printed.contains("listen = \"127.0.0.1:7700\""), "{printed}");
    // Both units pass systemd's own check, with nothing to say.
    let verify = host
        .exec(
            "systemd-analyze verify /lib/systemd/system/wharf-server.service \
             /lib/systemd/system/wharf-agent.service 2>&1",
        )
        .await?;
    ensure!(
        verify.success() && verify.stdout.trim().is_empty(),
        "systemd-analyze verify ({:?}): {}{}",
        verify.code,
        verify.stdout,
        verify.stderr
    );
    // Installing again (an upgrade to the same version) is harmless.
    host.sh("dpkg -i /root/wharf.deb && getent passwd wharf")
        .await?;
    phases.done("files, user, verify");

    // The server unit: runs as wharf with its state in /var/lib/wharf, and is ready.
    host.sh("systemctl start wharf-server").await?;
    let ready = host
        .wait_for(
            "curl -fsS http://127.0.0.1:7700/readyz",
            Duration::from_secs(30),
        )
        .await
        .context("wharf-server.service never answered /readyz")?;
    ensure!(ready.contains("\"ready\""), "{ready}");
    let owner = host
        .sh(
            "stat -c %U /proc/$(systemctl show -p MainPID --value wharf-server); \
             stat -c '%U %a' /var/lib/wharf /var/lib/wharf/admin.token",
        )
        .await?;
    ensure!(
        owner.lines().collect::<Vec<_>>() == ["wharf", "wharf 700", "wharf 600"],
        "{owner}"
    );
    phases.done("server unit");

    // The agent unit: registers with the token from agent.env, is stopped while a
    // step runs (KillMode=mixed: SIGTERM to the agent alone, so the step finishes and
    // is reported before the agent exits), and starts again as the same instance,
    // without the token.
    let cli = "export WHARF_SERVER=http://127.0.0.1:7700 \
               WHARF_TOKEN=$(cat /var/lib/wharf/admin.token);";
    host.sh(&format!(
        "set -e; {cli} token=$(wharf instance token create --uses 1); \
         printf 'WHARF_SERVER=http://127.0.0.1:7700\\nWHARF_REGISTRATION_TOKEN=%s\\n' \"$token\" \
           >/etc/wharf/agent.env; \
         systemctl start wharf-agent"
    ))
    .await?;
    let online = format!(
        "[ -s /var/lib/wharf-agent/state.json ] && {cli} \
         wharf instance list -o json | grep -q '\"online\"'"
    );
    host.wait_for(&online, Duration::from_secs(30))
        .await
        .context("the agent never came online")?;
    let instance_ids = |json: &str| -> anyhow::Result<Vec<String>> {
        let value: serde_json::Value = serde_json::from_str(json).context("instance list")?;
        Ok(value
            .as_array()
            .context("an array")?
            .iter()
            .filter_map(|instance| instance["id"].as_str().map(str::to_owned))
            .collect())
    };
    let list = format!("{cli} wharf instance list -o json");
    let first = instance_ids(&host.sh(&list).await?)?;
    ensure!(first.len() == 1, "{first:?}");
    phases.done("agent unit registered");

    // A release whose start step takes 6 s after it marks that it runs.
    let release = host
        .sh(&format!(
            "set -e; {cli} \
             printf 'touch /root/step-running; sleep 6; echo finished\\n' >/root/start.sh; \
             : >/root/stop.sh; \
             wharf app create app >/dev/null; wharf group create app g >/dev/null; \
             wharf group add-instances app g \"$(hostname)\" >/dev/null; \
             wharf deployment create app v1 --type command --workdir /srv/app \
               --start-script /root/start.sh --stop-script /root/stop.sh >/dev/null; \
             wharf release create app g --deployment v1 --detach -o json"
        ))
        .await?;
    let release: serde_json::Value = serde_json::from_str(&release).context("release JSON")?;
    let release_id = release["id"].as_str().context("release id")?.to_owned();
    host.wait_for("test -e /root/step-running", Duration::from_secs(60))
        .await
        .context("the start step never ran")?;
    let stopping = Instant::now();
    host.sh("systemctl stop wharf-agent").await?;
    let stop_took = stopping.elapsed();
    let stopped = host
        .sh("systemctl show wharf-agent -p ActiveState -p ExecMainStatus -p Result")
        .await?;
    ensure!(
        stopped.contains("ActiveState=inactive")
            && stopped.contains("ExecMainStatus=0")
            && stopped.contains("Result=success"),
        "the agent did not stop cleanly: {stopped}"
    );
    // The stop waited for the step (6 s from its start) instead of killing it.
    ensure!(
        stop_took >= Duration::from_secs(3),
        "stopped in {stop_took:?}"
    );
    let shown = host
        .sh(&format!("{cli} wharf release show {release_id} -o json"))
        .await?;
    let shown: serde_json::Value = serde_json::from_str(&shown).context("release JSON")?;
    ensure!(shown["state"] == "succeeded", "{shown:#}");
    let logs = host
        .sh(&format!(
            "{cli} wharf release logs {release_id} --instance \"$(hostname)\" --step start"
        ))
        .await?;
    ensure!(logs.contains("finished"), "{logs}");
    phases.done("agent unit stopped mid-step");

    // Without a token now: the credential in the state directory is enough.
    host.sh(
        "sed -i '/WHARF_REGISTRATION_TOKEN/d' /etc/wharf/agent.env && systemctl start wharf-agent",
    )
    .await?;
    host.wait_for(
        "systemctl is-active wharf-agent && sleep 2 && systemctl is-active wharf-agent",
        Duration::from_secs(30),
    )
    .await?;
    host.wait_for(&online, Duration::from_secs(30))
        .await
        .context("the agent did not come back online")?;
    let second = instance_ids(&host.sh(&list).await?)?;
    ensure!(first == second, "{first:?} / {second:?}");
    phases.done("agent unit started again");

    // Removal stops the services and keeps the data.
    host.sh(
        "dpkg -r wharf && ! systemctl is-active wharf-server && test -f /var/lib/wharf/wharf.db",
    )
    .await?;
    phases.done("dpkg -r");
    phases.finish();
    Ok(())
}

#[tokio::test]
async fn packaging_server_image_answers_readyz() -> anyhow::Result<()> {
    let mut phases = Phases::new("packaging_image");
    let artifacts = artifacts().await?;
    phases.done("package.sh");
    let user = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}",
        &artifacts.image,
    ])
    .await?;
    let (uid, gid) = user.split_once(':').context("USER is uid:gid")?;
    for id in [uid, gid] {
        let id: u32 = id
            .parse()
            .with_context(|| format!("USER {user} is not numeric"))?;
        ensure!(id != 0, "the image runs as root: {user}");
    }

    // Refused without --insecure-http: it listens on 0.0.0.0 in plain HTTP.
    let refused =
        docker_output(&["run", "--rm", &artifacts.image], Duration::from_secs(60)).await?;
    ensure!(
        refused.code == Some(2) && refused.stderr.contains("--insecure-http"),
        "{refused:?}"
    );

    let server = Container::run(
        "image",
        &["-e", "WHARF_INSECURE_HTTP=1", "-p", "127.0.0.1::7700"],
        &artifacts.image,
        &[],
    )
    .await?;
    let port = docker(&["port", &server.name, "7700/tcp"]).await?;
    let addr = port
        .lines()
        .next()
        .context("no published port")?
        .trim()
        .to_owned();
    let url = format!("http://{addr}/readyz");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        match client.get(&url).send().await {
            Ok(response) if response.status() == reqwest::StatusCode::OK => {
                break response.text().await?;
            }
            other if Instant::now() > deadline => {
                let logs = docker_output(&["logs", &server.name], Duration::from_secs(30)).await?;
                bail!(
                    "{url} never answered 200 ({other:?}); logs: {}",
                    logs.stderr
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    ensure!(body.contains("\"ready\""), "{body}");
    // The data directory is the volume, written by the non-root user.
    let logs = docker_output(&["logs", &server.name], Duration::from_secs(30)).await?;
    ensure!(
        logs.stdout.contains("listening on http://0.0.0.0:7700"),
        "{logs:?}"
    );
    ensure!(logs.stderr.contains("admin.token"), "{logs:?}");
    phases.done("image up and ready");
    phases.finish();
    Ok(())
}
