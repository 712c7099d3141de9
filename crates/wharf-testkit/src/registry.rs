//! A real Distribution registry (Debian's `docker-registry`) with htpasswd auth, for tests.
//!
//! [`RegistryHarness::start`] writes a config and a bcrypt htpasswd file into a fresh
//! temporary directory, starts `/usr/bin/docker-registry serve` on a free port and returns
//! once the registry answers `GET /v2/` with 401. Dropping the harness kills the process
//! and removes the directory, also when the test panics. The registry's own output goes to
//! a log file in that directory, readable with [`RegistryHarness::log_contents`], so tests
//! can check that no secret ever reached it.

use std::fs::File;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rand::Rng as _;

/// Where Debian's `docker-registry` package installs the registry.
pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// bcrypt cost of the htpasswd entries. The registry checks the hash on every request, so
/// a low cost keeps pushes fast; these are throwaway test passwords, not stored secrets.
const BCRYPT_COST: u32 = 5;

/// How many ports to try when another process takes the chosen one before the registry
/// binds it.
const PORT_ATTEMPTS: usize = 5;

/// How long one start attempt may take before the registry counts as failed.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// How often readiness is checked while waiting for the registry.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The registry's message, logged once its listener is bound, that tells our process apart
/// from another one that may answer on the same port.
const LISTENING_MESSAGE: &str = "listening on";

/// A running `docker-registry` with htpasswd auth, stopped and removed on drop.
#[derive(Debug)]
pub struct RegistryHarness {
    // Fields drop in declaration order: the process is killed before its directory goes.
    process: RegistryProcess,
    bind_ip: IpAddr,
    port: u16,
    log_path: PathBuf,
    dir: tempfile::TempDir,
}

impl RegistryHarness {
    /// Starts a registry listening on 127.0.0.1 only, with one htpasswd entry per
    /// `(user, password)` pair. Async: it polls the registry until it is ready.
    pub async fn start(users: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), users).await
    }

    /// Starts a registry listening on `bind_ip` (e.g. `0.0.0.0`, so containers can reach it
    /// through a Docker network's gateway address). [`addr`](Self::addr) is still the
    /// loopback endpoint, which the local engine may use over plain HTTP.
    pub async fn start_on(bind_ip: IpAddr, users: &[(&str, &str)]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            Path::new(REGISTRY_BINARY).exists(),
            "{REGISTRY_BINARY} is missing: install Debian's docker-registry package"
        );
        let dir = tempfile::Builder::new()
            .prefix("wharf-registry-")
            .tempdir()
            .context("creating the registry's temporary directory")?;
        let htpasswd_path = dir.path().join("htpasswd");
        write_htpasswd(&htpasswd_path, users)?;
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).with_context(|| format!("creating {}", storage.display()))?;
        let config_path = dir.path().join("config.yml");
        let log_path = dir.path().join("registry.log");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building the readiness-check HTTP client")?;

        for _ in 0..PORT_ATTEMPTS {
            let port = free_port(bind_ip)?;
            let config = config_yaml(bind_ip, port, &storage, &htpasswd_path)?;
            std::fs::write(&config_path, config)
                .with_context(|| format!("writing {}", config_path.display()))?;
            // Earlier attempts' lines stay in the log; only what this attempt adds counts.
            let log_offset = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
            let mut process = RegistryProcess::spawn(&config_path, &log_path)?;
            let url = format!("http://127.0.0.1:{port}/v2/");
            match wait_ready(&mut process, &http, &url, &log_path, log_offset).await {
                Ok(()) => {
                    return Ok(RegistryHarness {
                        process,
                        bind_ip,
                        port,
                        log_path,
                        dir,
                    })
                }
                // The dropped process is killed; try again on another port.
                Err(StartError::PortTaken) => continue,
                Err(StartError::Failed(error)) => return Err(error),
            }
        }
        bail!("the registry could not bind a free port on {bind_ip} in {PORT_ATTEMPTS} attempts")
    }

    /// The endpoint to put in image references: `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port the registry listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the registry is bound to (127.0.0.1 unless started with
    /// [`start_on`](Self::start_on)).
    pub fn bind_ip(&self) -> IpAddr {
        self.bind_ip
    }

    /// The registry's base URL on the loopback interface: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The temporary directory holding the config, htpasswd file, storage and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file that receives the registry's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the registry has logged so far (its access log included).
    pub fn log_contents(&self) -> anyhow::Result<String> {
        read_log(&self.log_path, 0)
    }

    /// The registry's process id, e.g. to check that it is gone after drop.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

/// The registry process, killed and reaped on drop (also while a start attempt is pending).
#[derive(Debug)]
struct RegistryProcess {
    child: Child,
}

impl RegistryProcess {
    /// Starts `docker-registry serve CONFIG` with both output streams appended to `log_path`.
    fn spawn(config_path: &Path, log_path: &Path) -> anyhow::Result<Self> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let log_for_stderr = log
            .try_clone()
            .with_context(|| format!("duplicating the handle of {}", log_path.display()))?;
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            .spawn()
            .with_context(|| {
                format!("starting {REGISTRY_BINARY} serve {}", config_path.display())
            })?;
        Ok(Self { child })
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        // Both calls fail harmlessly if the process already exited and was reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the log from byte `offset` on, lossily decoded.
fn read_log(path: &Path, offset: u64) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    Ok(String::from_utf8_lossy(&bytes[start..]).into_owned())
}

/// Polls until this process has bound its port and `GET /v2/` answers 401.
async fn wait_ready(
    process: &mut RegistryProcess,
    http: &reqwest::Client,
    url: &str,
    log_path: &Path,
    log_offset: u64,
) -> Result<(), StartError> {
    let deadline = Instant::now() + START_DEADLINE;
    let mut last_seen = String::from("no answer yet");
    loop {
        let exited = process
            .child
            .try_wait()
            .context("checking the registry process")?;
        let log = read_log(log_path, log_offset)?;
        if let Some(status) = exited {
            if log.contains("address already in use") {
                return Err(StartError::PortTaken);
            }
            return Err(StartError::Failed(anyhow::anyhow!(
                "the registry exited during start-up ({status}); its log:\n{log}"
            )));
        }
        // A 401 counts only after our process logged its bound listener: another registry
        // that already holds the port would answer 401 as well.
        if log.contains(LISTENING_MESSAGE) {
            match http.get(url).send().await {
                Ok(response) if response.status() == reqwest::StatusCode::UNAUTHORIZED => {
                    return Ok(());
                }
                Ok(response) => last_seen = format!("status {}", response.status()),
                Err(error) => last_seen = error.to_string(),
            }
        }
        if Instant::now() >= deadline {
            return Err(StartError::Failed(anyhow::anyhow!(
                "the registry did not answer GET {url} with 401 within {START_DEADLINE:?} \
                 (last: {last_seen}); its log:\n{log}"
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Why one start attempt did not give a ready registry.
enum StartError {
    /// Another process bound the port between our check and the registry's bind.
    PortTaken,
    /// Anything else; not worth retrying.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(error: anyhow::Error) -> Self {
        StartError::Failed(error)
    }
}

/// Asks the kernel for a port that is free on `bind_ip` right now. Another process may take
/// it before the registry binds it; [`RegistryHarness::start_on`] retries in that case.
fn free_port(bind_ip: IpAddr) -> anyhow::Result<u16> {
    let listener = TcpListener::bind((bind_ip, 0))
        .with_context(|| format!("finding a free port on {bind_ip}"))?;
    Ok(listener
        .local_addr()
        .context("reading the free port")?
        .port())
}

/// Writes one bcrypt htpasswd line per user; the registry refuses MD5 entries.
fn write_htpasswd(path: &Path, users: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    for (user, password) in users {
        anyhow::ensure!(
            !user.is_empty() && !user.contains([':', '\n', '\r']),
            "invalid registry user name {user:?}: it must be non-empty without ':' or newlines"
        );
        let hash = bcrypt::hash(password, BCRYPT_COST)
            .with_context(|| format!("hashing the password of registry user {user:?}"))?;
        writeln!(file, "{user}:{hash}").with_context(|| format!("writing {}", path.display()))?;
    }
    file.sync_all()
        .with_context(|| format!("flushing {}", path.display()))
}

/// The registry's config. Strings are written as JSON strings, which YAML reads verbatim.
fn config_yaml(
    bind_ip: IpAddr,
    port: u16,
    storage: &Path,
    htpasswd: &Path,
) -> anyhow::Result<String> {
    let quote = |path: &Path| -> anyhow::Result<String> {
        let text = path
            .to_str()
            .with_context(|| format!("{} is not UTF-8", path.display()))?;
        Ok(serde_json::Value::from(text).to_string())
    };
    // A fixed secret makes the registry warn that several instances would disagree; a
    // random one per harness keeps the log free of that noise.
    let secret: u128 = rand::thread_rng().gen();
    let listen = if bind_ip.is_ipv6() {
        format!("[{bind_ip}]:{port}")
    } else {
        format!("{bind_ip}:{port}")
    };
    Ok(format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
         http:\n  addr: \"{listen}\"\n  secret: \"{secret:032x}\"\n\
         auth:\n  htpasswd:\n    realm: \"wharf-testkit\"\n    path: {htpasswd}\n",
        storage = quote(storage)?,
        htpasswd = quote(htpasswd)?,
    ))
}
