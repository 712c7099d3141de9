//! The `wharf` binary of this checkout, and a real `wharf server` process around it.
//!
//! [`wharf_binary`] builds the binary with cargo (once per process) and returns its path;
//! `WHARF_BIN` overrides it. [`WharfServer`] runs `wharf server` on a data directory and
//! can be killed, stopped and started again on the same data directory and port, as a
//! fault test needs. The server process gets `SIGKILL` when the thread that started it
//! ends (`setpriv --pdeathsig`), so a test binary killed mid-run leaves no server behind.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::fleet_docker::run_command;

/// How long a cargo build of the binary may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How long the server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a stopped server may take to exit after `SIGTERM` before it gets `SIGKILL`.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The line `wharf server` prints on stdout once it listens.
const LISTENING_PREFIX: &str = "wharf server listening on http://";

/// The path of the built binary, once per process.
static BINARY: tokio::sync::Mutex<Option<PathBuf>> = tokio::sync::Mutex::const_new(None);

/// The workspace root of this checkout.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `wharf` binary built from this checkout:
/// 1. `WHARF_BIN` if set;
/// 2. else the `wharf` next to the running test's own build directory (e.g.
///    `target/debug/wharf`, which `cargo test --workspace` builds) if it is newer than
///    every file of the workspace's crates, `Cargo.toml` and `Cargo.lock`;
/// 3. else the result of `cargo build -p wharf --bin wharf`.
///
/// Step 2 matters for time: `cargo build -p wharf` resolves features for `wharf` alone,
/// which can differ from the whole workspace's, so after `cargo test --workspace` it may
/// compile several crates again although the binary there is current.
pub async fn wharf_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("WHARF_BIN").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        anyhow::ensure!(path.is_file(), "WHARF_BIN={} is not a file", path.display());
        return Ok(path);
    }
    let mut cached = BINARY.lock().await;
    if let Some(path) = cached.as_ref() {
        return Ok(path.clone());
    }
    if let Some(path) = current_prebuilt_binary() {
        eprintln!(
            "wharf-testkit: using {} (newer than every source file)",
            path.display()
        );
        *cached = Some(path.clone());
        return Ok(path);
    }
    let building = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = workspace_root();
    let manifest = root.join("Cargo.toml");
    let manifest = manifest.to_string_lossy();
    let output = run_command(
        Path::new(&cargo),
        &[
            "build",
            "--manifest-path",
            &manifest,
            "-p",
            "wharf",
            "--bin",
            "wharf",
            "--message-format=json-render-diagnostics",
        ],
        &[],
        None,
        BUILD_TIMEOUT,
    )
    .await
    .context("building the wharf binary")?;
    if !output.success() {
        bail!(
            "cargo build -p wharf failed (exit {:?}):\n{}",
            output.code,
            output.stderr.trim()
        );
    }
    let path = executable_from_messages(&output.stdout)
        .context("cargo build -p wharf reported no executable for the wharf binary")?;
    eprintln!(
        "wharf-testkit: cargo build -p wharf took {:.1}s",
        building.elapsed().as_secs_f64()
    );
    *cached = Some(path.clone());
    Ok(path)
}

/// `wharf` in the build directory of the running executable (`…/target/debug/deps/x` →
/// `…/target/debug/wharf`), if it is newer than every source file of the workspace.
fn current_prebuilt_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let binary = profile_dir.join("wharf");
    let built = std::fs::metadata(&binary).ok()?.modified().ok()?;
    let root = workspace_root();
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for file in [root.join("Cargo.toml"), root.join("Cargo.lock")] {
        newest = newest.max(std::fs::metadata(file).ok()?.modified().ok()?);
    }
    newest = newest.max(newest_mtime(&root.join("crates"), 0)?);
    (built > newest).then_some(binary)
}

/// The newest modification time of `dir` and everything below it (skipping `target` and
/// hidden directories); `None` if something cannot be read.
fn newest_mtime(dir: &Path, depth: usize) -> Option<std::time::SystemTime> {
    // The directory's own time changes when a file in it is removed or renamed.
    let mut newest = std::fs::metadata(dir).ok()?.modified().ok()?;
    if depth > 16 {
        return Some(newest);
    }
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type().ok()?;
        if kind.is_dir() {
            if name == "target" || name.starts_with('.') {
                continue;
            }
            newest = newest.max(newest_mtime(&entry.path(), depth + 1)?);
        } else {
            newest = newest.max(entry.metadata().ok()?.modified().ok()?);
        }
    }
    Some(newest)
}

/// Picks the `wharf` executable out of cargo's JSON messages.
fn executable_from_messages(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| message["target"]["name"] == "wharf")
        .filter_map(|message| message["executable"].as_str().map(PathBuf::from))
        .next_back()
}

/// A running (or stopped) `wharf server` process with its data directory.
#[derive(Debug)]
pub struct WharfServer {
    binary: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    stdout_path: PathBuf,
    listen_ip: IpAddr,
    port: u16,
    child: Option<Child>,
    starts: u32,
    extra_args: Vec<String>,
}

impl WharfServer {
    /// Starts `BINARY server --listen LISTEN --data-dir DATA_DIR --insecure-http`, with
    /// its stderr appended to `log_dir/server.log`, and waits until it prints its
    /// address and answers `/healthz`. Port 0 in `listen` picks a free port, kept for
    /// restarts.
    pub async fn start(
        binary: &Path,
        data_dir: &Path,
        log_dir: &Path,
        listen: SocketAddr,
    ) -> anyhow::Result<Self> {
        Self::start_with_args(binary, data_dir, log_dir, listen, &[]).await
    }

    /// [`start`](Self::start) with more arguments after `server` (kept for restarts),
    /// e.g. `--heartbeat-interval 1s --offline-after 4s`.
    pub async fn start_with_args(
        binary: &Path,
        data_dir: &Path,
        log_dir: &Path,
        listen: SocketAddr,
        extra_args: &[String],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let mut server = Self {
            binary: binary.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            log_path: log_dir.join("server.log"),
            stdout_path: log_dir.join("server.stdout"),
            listen_ip: listen.ip(),
            port: listen.port(),
            child: None,
            starts: 0,
            extra_args: extra_args.to_vec(),
        };
        server.start_again().await?;
        Ok(server)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address it was told to listen on (e.g. `0.0.0.0`).
    pub fn listen_ip(&self) -> IpAddr {
        self.listen_ip
    }

    /// `http://127.0.0.1:PORT`: the URL this machine uses.
    pub fn local_url(&self) -> String {
        self.url_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// `http://IP:PORT`, e.g. with a Docker network's gateway for the fleet's hosts.
    pub fn url_on(&self, ip: IpAddr) -> String {
        format!("http://{}", SocketAddr::new(ip, self.port))
    }

    /// The data directory (database, secret key, admin token).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The admin token the server wrote on its first start.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        let path = self.data_dir.join("admin.token");
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(token.trim().to_owned())
    }

    /// The file receiving the server's stderr (its log), across restarts.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The server's log so far, lossily decoded.
    pub fn log_contents(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How many times the process was started (1 after [`start`](Self::start)).
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Whether the process is running (it may have exited on its own).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Kills the process with `SIGKILL` (a crash) and reaps it. No-op when stopped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process with `SIGTERM` (a graceful shutdown), waits for it to exit,
    /// and kills it if it takes longer than 15 seconds. No-op when stopped.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdin(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if child
                .try_wait()
                .context("waiting for the server")?
                .is_some()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed it");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the process again on the same data directory and port (after
    /// [`kill`](Self::kill) or [`stop`](Self::stop)); fails if it is running.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.is_running(), "the server is already running");
        // Right after a kill the port may still be held for a moment: retry a few times.
        let mut last_error = None;
        for _ in 0..10 {
            match self.spawn_and_wait().await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    let in_use = self.port != 0 && format!("{error:#}").contains("in use");
                    last_error = Some(error);
                    if !in_use {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("the server did not start")))
    }

    /// Kills the process and starts it again on the same data directory and port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.start_again().await
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let listen = SocketAddr::new(self.listen_ip, self.port).to_string();
        let stdout = File::create(&self.stdout_path)
            .with_context(|| format!("creating {}", self.stdout_path.display()))?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let log_offset = log.metadata().map(|meta| meta.len()).unwrap_or(0);
        let mut command = pdeathsig_command(&self.binary);
        command
            .arg("server")
            .arg("--listen")
            .arg(&listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            // The fleet's server listens on the Docker network's gateway, in plain
            // HTTP (there is no TLS in the test bed), which the server refuses
            // without this flag.
            .arg("--insecure-http")
            .args(&self.extra_args)
            .env_remove("WHARF_TOKEN")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {} server", self.binary.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        let port = loop {
            let printed = std::fs::read_to_string(&self.stdout_path).unwrap_or_default();
            if let Some(port) = printed
                .lines()
                .find_map(|line| line.trim().strip_prefix(LISTENING_PREFIX))
                .and_then(|addr| addr.parse::<SocketAddr>().ok())
                .map(|addr| addr.port())
            {
                break port;
            }
            if let Some(status) = child.try_wait().context("waiting for the server")? {
                let log = self.log_contents();
                let new_log = log.get(log_offset as usize..).unwrap_or(&log).trim();
                bail!(
                    "wharf server --listen {listen} exited during start-up ({status}): {new_log}"
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("wharf server --listen {listen} printed no address within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.port = port;
        self.child = Some(child);
        self.starts += 1;
        self.wait_healthy(deadline).await
    }

    async fn wait_healthy(&mut self, deadline: Instant) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building an HTTP client")?;
        let url = format!("{}/healthz", self.local_url());
        loop {
            let last = match http.get(&url).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => format!("status {}", response.status()),
                Err(error) => error.to_string(),
            };
            if !self.is_running() {
                bail!("the server exited before {url} answered");
            }
            if Instant::now() >= deadline {
                bail!("GET {url} did not answer 200 in time (last: {last})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for WharfServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A command for `program` that the kernel kills when the starting thread ends, through
/// util-linux's `setpriv --pdeathsig KILL` (same pid: setpriv execs the program). Falls
/// back to the plain program where setpriv is missing.
fn pdeathsig_command(program: &Path) -> Command {
    const SETPRIV: &str = "/usr/bin/setpriv";
    if Path::new(SETPRIV).exists() {
        let mut command = Command::new(SETPRIV);
        command.args(["--pdeathsig", "KILL"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_comes_from_the_wharf_artifact() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"wharf_api"},"executable":null}
{"reason":"compiler-artifact","target":{"name":"wharf"},"executable":"/w/target/debug/wharf"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_from_messages(messages),
            Some(PathBuf::from("/w/target/debug/wharf"))
        );
        assert_eq!(executable_from_messages("not json\n"), None);
    }

    #[test]
    fn newest_mtime_sees_new_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let before = newest_mtime(dir.path(), 0).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.path().join("sub/file.rs"), "x").unwrap();
        assert!(newest_mtime(dir.path(), 0).unwrap() > before);
    }

    #[test]
    fn the_workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("crates/wharf").is_dir());
    }
}
