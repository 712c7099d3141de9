//! Running a step's script: the [`ProcessRunner`] seam and the real [`BashRunner`], plus
//! [`prepare_workdir`] for the step that creates the working directory.
//!
//! How the script reaches bash: it is written to `script.sh` in a fresh private run
//! directory (mode 0700, file mode 0600) and run as `bash <path>`; the directory is
//! removed afterwards. Not `bash -c`, because the whole script would then sit on the
//! command line, readable by every local user through `ps` and `/proc/*/cmdline`, and
//! bash's error messages would say `bash: line 3` instead of naming the script. Not
//! stdin, because the script's own commands would read (and eat) the rest of the script
//! from it; the script's stdin is `/dev/null` instead. The run directory is deliberately
//! not the working directory, which belongs to the application.
//!
//! Running as another user ([`ScriptSpec::user`], group execs' `--as-user`): that
//! user cannot enter the agent's private run root, so the run directory is made
//! under the system's temporary directory instead, still mode 0700 with the file
//! 0600, and both are handed to the user (chown) before the script runs as
//! `setpriv --reuid U --regid G --init-groups bash <path>`. setpriv execs bash, so
//! the process group, the exit status and the timeout handling are bash's as
//! usual. Only an agent running as root can do this; otherwise the run is refused.
//!
//! Process lifetime: the script runs in its own process group. When it times out the whole
//! group gets SIGTERM and, after a grace period, SIGKILL. When the main process exits, the
//! group gets the same treatment, because a background child left behind (`sleep 1000 &`)
//! would otherwise hold the output pipes open and the step would never end; a start script
//! that uses `docker run -d` leaves nothing in the group, since the container belongs to
//! the Docker daemon.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::output::OutputSink;

/// Default time between SIGTERM and SIGKILL when a process group is stopped.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

/// How long to wait for the output pipes to close after SIGKILL before giving up on them.
/// Only a process that left the group (for example with `setsid`) can keep them open then.
const PIPE_WAIT_AFTER_KILL: Duration = Duration::from_secs(1);

/// Variables copied from the agent's own environment into every script's environment.
/// Everything else is left out, so that the agent's secrets (such as its server token)
/// never reach a script.
pub const DEFAULT_PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CONTEXT",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// `PATH` for scripts when the agent itself has none.
const FALLBACK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One script to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptSpec {
    /// The script's text, run by bash.
    pub script: String,
    /// The current directory of the script; it must exist (see [`prepare_workdir`]).
    pub workdir: PathBuf,
    /// Environment variables set for the script (`WHARF_APP`, `WHARF_STEP`, ...), on top
    /// of the few passed through from the agent's environment.
    pub env: BTreeMap<String, String>,
    /// How long the script may run before its process group is stopped.
    pub timeout: Duration,
    /// Run the script as this user instead of the agent's (needs an agent running
    /// as root).
    pub user: Option<String>,
}

/// How the script's main process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptExit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl fmt::Display for ScriptExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScriptExit::Code(code) => write!(f, "exit code {code}"),
            ScriptExit::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// The result of a script that was started; its output went to the sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptOutcome {
    /// How the main process ended.
    pub exit: ScriptExit,
    /// Whether the main process was still running at the timeout and had to be stopped.
    pub timed_out: bool,
    /// From start until the process group was gone and the output read.
    pub duration: Duration,
    /// Whether reading output was abandoned because a process outside the script's process
    /// group still held the output pipes open; output after that point is lost.
    pub output_abandoned: bool,
}

impl ScriptOutcome {
    /// Whether the step succeeded: exit code 0 within the timeout.
    pub fn success(&self) -> bool {
        !self.timed_out && self.exit == ScriptExit::Code(0)
    }
}

/// Errors that prevent a script from being run at all.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The working directory does not exist or cannot be inspected.
    #[error("working directory {} is not usable", path.display())]
    Workdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The working directory path names something that is not a directory.
    #[error("working directory {} is not a directory", path.display())]
    WorkdirNotADirectory { path: PathBuf },
    /// The private run directory or the script file in it could not be written.
    #[error("cannot write the script to a run directory under {}", run_root.display())]
    WriteScript {
        run_root: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The script was to run as another user, but this agent cannot switch users.
    #[error("running a script as user {user:?} needs the agent to run as root")]
    NotRoot { user: String },
    /// The user to run the script as is unknown on this host.
    #[error("user {user:?} does not exist on this host")]
    UnknownUser { user: String },
    /// bash could not be started.
    #[error("cannot start {}", bash.display())]
    Spawn {
        bash: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Waiting for the script's main process failed.
    #[error("cannot wait for the script's process {pid}")]
    Wait {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

/// Runs step scripts. The agent uses [`BashRunner`]; tests of higher tiers can use a fake.
#[async_trait]
pub trait ProcessRunner: Send + Sync {
    /// Runs `spec` to completion (or its timeout), streaming its output into `output`,
    /// which the runner does not close. An `Err` means the script never ran; a script that
    /// ran and failed is an `Ok` whose outcome is not [`ScriptOutcome::success`].
    async fn run(
        &self,
        spec: &ScriptSpec,
        output: &OutputSink,
    ) -> Result<ScriptOutcome, ProcessError>;
}

/// Runs scripts with the system's `bash` (see the module documentation).
#[derive(Clone, Debug)]
pub struct BashRunner {
    bash: PathBuf,
    run_root: PathBuf,
    kill_grace: Duration,
    passed_env: Vec<String>,
}

impl BashRunner {
    /// A runner that creates its private per-run directories under `run_root` (created
    /// with mode 0700 if missing), for example the agent's state directory.
    pub fn new(run_root: impl Into<PathBuf>) -> Self {
        Self {
            bash: PathBuf::from("bash"),
            run_root: run_root.into(),
            kill_grace: DEFAULT_KILL_GRACE,
            passed_env: DEFAULT_PASSED_ENV.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Sets the time between SIGTERM and SIGKILL (default [`DEFAULT_KILL_GRACE`]).
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// Sets the bash executable (default: `bash` found through `PATH`).
    pub fn with_bash(mut self, bash: impl Into<PathBuf>) -> Self {
        self.bash = bash.into();
        self
    }

    /// Replaces the names of variables copied from the agent's environment
    /// (default [`DEFAULT_PASSED_ENV`]).
    pub fn with_passed_env(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.passed_env = names.into_iter().map(Into::into).collect();
        self
    }

    /// Writes the script into a fresh private run directory, removed when the returned
    /// guard drops. The directory calls are synchronous; they are a few small metadata
    /// operations on a local disk.
    /// With `owner` (uid, gid), the directory is made under the system's temporary
    /// directory and it and the file are given to that owner.
    async fn write_script(
        &self,
        script: &str,
        owner: Option<(u32, u32)>,
    ) -> Result<(tempfile::TempDir, PathBuf), io::Error> {
        let root = match owner {
            Some(_) => std::env::temp_dir(),
            None => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.run_root)?;
                self.run_root.clone()
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("wharf-run-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&root)?;
        let path = dir.path().join("script.sh");
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .await?;
        file.write_all(script.as_bytes()).await?;
        file.flush().await?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        }
        Ok((dir, path))
    }

    fn command(&self, spec: &ScriptSpec, script_path: &Path, owner: Option<(u32, u32)>) -> Command {
        let mut cmd = match (&spec.user, owner) {
            (Some(user), Some((_, gid))) => {
                let mut cmd = Command::new("setpriv");
                cmd.args(["--reuid", user.as_str(), "--regid", &gid.to_string()])
                    .arg("--init-groups")
                    .arg(&self.bash);
                cmd
            }
            _ => Command::new(&self.bash),
        };
        cmd.arg(script_path)
            .current_dir(&spec.workdir)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // If the run is cancelled (the future dropped), the group guard kills the
            // group; this makes sure the main process is reaped as well.
            .kill_on_drop(true);
        for name in &self.passed_env {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        if std::env::var_os("PATH").is_none() {
            cmd.env("PATH", FALLBACK_PATH);
        }
        cmd.envs(&spec.env);
        cmd
    }

    /// Stops whatever is left in the group once the main process is gone, and waits for
    /// the output readers. Returns whether the readers had to be abandoned.
    async fn finish_group(&self, group: &GroupGuard, readers: &mut [AbortOnDrop]) -> bool {
        // ESRCH (nothing left) is the common case and needs no further signal.
        let leftovers = group.signal(Signal::TERM);
        let drained = async {
            for reader in readers.iter_mut() {
                reader.join().await;
            }
        };
        tokio::pin!(drained);
        if tokio::time::timeout(self.kill_grace, &mut drained)
            .await
            .is_ok()
        {
            return false;
        }
        if leftovers {
            group.signal(Signal::KILL);
        }
        if tokio::time::timeout(PIPE_WAIT_AFTER_KILL, &mut drained)
            .await
            .is_ok()
        {
            return false;
        }
        tracing::warn!(
            pgid = group.pgid,
            "a process outside the script's process group holds its output open; output reading abandoned"
        );
        true
    }
}

#[async_trait]
impl ProcessRunner for BashRunner {
    async fn run(
        &self,
        spec: &ScriptSpec,
        output: &OutputSink,
    ) -> Result<ScriptOutcome, ProcessError> {
        check_workdir(&spec.workdir).await?;
        let owner = match &spec.user {
            None => None,
            Some(user) => Some(lookup_user(user).await?),
        };
        let (run_dir, script_path) =
            self.write_script(&spec.script, owner)
                .await
                .map_err(|source| ProcessError::WriteScript {
                    run_root: self.run_root.clone(),
                    source,
                })?;

        let started = Instant::now();
        let mut child = self
            .command(spec, &script_path, owner)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                bash: self.bash.clone(),
                source,
            })?;
        // A spawned child that has not been waited for always has an id.
        let pid = child.id().unwrap_or_default();
        let group = GroupGuard::new(pid);
        let mut readers = Vec::with_capacity(2);
        if let Some(stdout) = child.stdout.take() {
            readers.push(AbortOnDrop::spawn(read_lines(stdout, output.clone())));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(AbortOnDrop::spawn(read_lines(stderr, output.clone())));
        }

        let wait_error = |source| ProcessError::Wait { pid, source };
        let (status, timed_out) = match tokio::time::timeout(spec.timeout, child.wait()).await {
            Ok(status) => (status.map_err(wait_error)?, false),
            Err(_elapsed) => {
                tracing::info!(pid, timeout = ?spec.timeout, "script timed out; stopping its process group");
                group.signal(Signal::TERM);
                let status = match tokio::time::timeout(self.kill_grace, child.wait()).await {
                    Ok(status) => status,
                    Err(_elapsed) => {
                        group.signal(Signal::KILL);
                        child.wait().await
                    }
                };
                (status.map_err(wait_error)?, true)
            }
        };
        let output_abandoned = self.finish_group(&group, &mut readers).await;
        group.disarm();
        drop(readers);
        drop(run_dir);

        let exit = match (status.code(), status.signal()) {
            (Some(code), _) => ScriptExit::Code(code),
            (None, Some(signal)) => ScriptExit::Signal(signal),
            // A process reaped by wait() has either exited or been killed; this arm only
            // satisfies the types.
            (None, None) => ScriptExit::Code(-1),
        };
        Ok(ScriptOutcome {
            exit,
            timed_out,
            duration: started.elapsed(),
            output_abandoned,
        })
    }
}

/// The uid and primary gid of `user` (through `getent`, so that every name
/// service the host uses counts). Refused unless the agent runs as root.
async fn lookup_user(user: &str) -> Result<(u32, u32), ProcessError> {
    if !rustix::process::geteuid().is_root() {
        return Err(ProcessError::NotRoot {
            user: user.to_owned(),
        });
    }
    let unknown = || ProcessError::UnknownUser {
        user: user.to_owned(),
    };
    let out = Command::new("getent")
        .args(["passwd", user])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|_| unknown())?;
    let line = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = line.trim().split(':').collect();
    match (out.status.success(), fields.get(2), fields.get(3)) {
        (true, Some(uid), Some(gid)) => match (uid.parse(), gid.parse()) {
            (Ok(uid), Ok(gid)) => Ok((uid, gid)),
            _ => Err(unknown()),
        },
        _ => Err(unknown()),
    }
}

/// Errors of [`prepare_workdir`].
#[derive(Debug, thiserror::Error)]
pub enum WorkdirError {
    /// The directory (or one of its parents) could not be created.
    #[error("cannot create working directory {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The path exists but is not a directory.
    #[error("working directory {} exists but is not a directory", path.display())]
    NotADirectory { path: PathBuf },
}

/// Creates the working directory with its parents if missing (the "prepare" step). An
/// existing directory is left as it is.
pub async fn prepare_workdir(path: &Path) -> Result<(), WorkdirError> {
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(WorkdirError::NotADirectory {
                path: path.to_owned(),
            })
        }
        Err(_) => {}
    }
    tokio::fs::create_dir_all(path)
        .await
        .map_err(|source| WorkdirError::Create {
            path: path.to_owned(),
            source,
        })
}

async fn check_workdir(path: &Path) -> Result<(), ProcessError> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|source| ProcessError::Workdir {
            path: path.to_owned(),
            source,
        })?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(ProcessError::WorkdirNotADirectory {
            path: path.to_owned(),
        })
    }
}

/// Reads lines from a pipe into the sink, holding at most `max_line_bytes` of a line in
/// memory; the rest of a longer line is discarded and counted.
async fn read_lines(pipe: impl AsyncRead + Unpin, output: OutputSink) {
    let max = output.limits().max_line_bytes;
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    let mut discarded: u64 = 0;
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(err) => {
                tracing::warn!(error = %err, "reading script output failed");
                break;
            }
        };
        if buf.is_empty() {
            break;
        }
        let (part, consumed, line_ends) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = max.saturating_sub(line.len());
        let take = part.len().min(room);
        line.extend_from_slice(&part[..take]);
        discarded += (part.len() - take) as u64;
        reader.consume(consumed);
        if line_ends {
            output.push_cut_line(&line, discarded);
            line.clear();
            discarded = 0;
        }
    }
    // Output that does not end with a newline still forms a last line.
    if !line.is_empty() || discarded > 0 {
        output.push_cut_line(&line, discarded);
    }
}

/// The script's process group. Dropping an armed guard (the run was cancelled) kills the
/// whole group, so that no script outlives a cancelled step.
struct GroupGuard {
    pgid: u32,
    armed: bool,
}

impl GroupGuard {
    fn new(pgid: u32) -> Self {
        Self { pgid, armed: true }
    }

    /// Sends `signal` to every process in the group; returns whether any received it.
    fn signal(&self, signal: Signal) -> bool {
        // Pid 0 and 1 would mean "our own group" and "every process": never signal those.
        let Some(pid) = i32::try_from(self.pgid)
            .ok()
            .filter(|pgid| *pgid > 1)
            .and_then(Pid::from_raw)
        else {
            return false;
        };
        match rustix::process::kill_process_group(pid, signal) {
            Ok(()) => true,
            Err(rustix::io::Errno::SRCH) => false,
            Err(err) => {
                tracing::warn!(pgid = self.pgid, ?signal, error = %err, "cannot signal process group");
                false
            }
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            self.signal(Signal::KILL);
        }
    }
}

/// A spawned task that is aborted when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(task))
    }

    /// Waits for the task; a task that has already finished returns at once.
    async fn join(&mut self) {
        if !self.0.is_finished() {
            // The task's own result is `()`; a panic in it only loses output.
            let _ = (&mut self.0).await;
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
