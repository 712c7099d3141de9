//! Small helpers behind the fleet harness: running the docker CLI with a deadline, the
//! labels every fleet resource carries, and the owner check that lets a new run remove
//! what a crashed earlier run left behind (never what a live parallel run still uses).

use std::path::Path;
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// The label naming the run a container, volume or network belongs to.
pub const RUN_LABEL: &str = "wharf.fleet.run";

/// The label naming the process that created a resource: `PID:STARTTIME` (see
/// [`owner_id`]); a resource whose owner is gone is fair game for [`reap_stale`].
pub const OWNER_LABEL: &str = "wharf.fleet.owner";

/// How long one docker CLI call may take unless the caller says otherwise.
pub const DEFAULT_DOCKER_TIMEOUT: Duration = Duration::from_secs(120);

/// The output of a finished command.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The exit code; `None` if a signal ended the process.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl CommandOutput {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    fn from_output(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `program args` with `envs` added, `stdin` written to its standard input (or
/// `/dev/null`), and waits at most `timeout`; the process is killed on timeout.
pub async fn run_command(
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> anyhow::Result<CommandOutput> {
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    let describe = || format!("{} {}", program.display(), args.join(" "));
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", describe()))?;
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().context("the child has no stdin pipe")?;
        pipe.write_all(bytes)
            .await
            .with_context(|| format!("writing the standard input of {}", describe()))?;
        // Dropping the pipe closes it, so the child sees the end of its input.
        drop(pipe);
    }
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(output) => Ok(CommandOutput::from_output(
            output.with_context(|| format!("waiting for {}", describe()))?,
        )),
        Err(_) => bail!("{} did not finish within {timeout:?}", describe()),
    }
}

/// Runs the docker CLI and returns its output whatever the exit code.
pub async fn docker_output(args: &[&str], timeout: Duration) -> anyhow::Result<CommandOutput> {
    run_command(Path::new("docker"), args, &[], None, timeout).await
}

/// Runs the docker CLI and returns its trimmed stdout; fails with its stderr.
pub async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = docker_output(args, DEFAULT_DOCKER_TIMEOUT).await?;
    if !output.success() {
        bail!(
            "docker {} failed (exit {:?}): {}",
            args.join(" "),
            output.code,
            output.stderr.trim()
        );
    }
    Ok(output.stdout.trim().to_owned())
}

/// Runs the docker CLI synchronously with its output discarded (for `Drop`, where no
/// runtime may be available); returns whether it exited 0.
pub fn docker_quietly(args: &[&str]) -> bool {
    StdCommand::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs the docker CLI synchronously and returns its stdout (empty on any failure).
pub fn docker_stdout_sync(args: &[&str]) -> String {
    StdCommand::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}

/// This process as an owner label value: `PID:STARTTIME`, the start time (in clock
/// ticks since boot, from `/proc/self/stat`) telling a reused pid apart.
pub fn owner_id() -> String {
    let pid = std::process::id();
    format!("{pid}:{}", start_time(pid).unwrap_or(0))
}

/// The start time of process `pid` from `/proc/PID/stat`, if it exists.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after the
    // last ')' start with field 3 (state); the start time is field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the owner named by an [`owner_id`] value has ended. Values that do not parse
/// count as alive: nothing is removed unless it surely belongs to a dead process.
pub fn owner_is_gone(owner: &str) -> bool {
    let Some((pid, started)) = owner.trim().split_once(':') else {
        return false;
    };
    let (Ok(pid), Ok(started)) = (pid.parse::<u32>(), started.parse::<u64>()) else {
        return false;
    };
    match start_time(pid) {
        None => true,
        Some(now) => now != started,
    }
}

/// Removes containers, volumes and networks of earlier fleet runs whose owning process
/// has ended (a test binary killed before its `Drop` ran), and returns what it removed.
/// Resources of live runs, parallel ones included, are never touched.
pub async fn reap_stale() -> Vec<String> {
    let mut removed = Vec::new();
    let format = format!("{{{{.Names}}}}\t{{{{.Label \"{OWNER_LABEL}\"}}}}");
    let filter = format!("label={RUN_LABEL}");
    if let Ok(out) = docker(&["ps", "-a", "--filter", &filter, "--format", &format]).await {
        for name in stale_names(&out) {
            if docker(&["rm", "-f", "-v", &name]).await.is_ok() {
                removed.push(format!("container {name}"));
            }
        }
    }
    let format = format!("{{{{.Name}}}}\t{{{{.Label \"{OWNER_LABEL}\"}}}}");
    if let Ok(out) = docker(&["volume", "ls", "--filter", &filter, "--format", &format]).await {
        for name in stale_names(&out) {
            if docker(&["volume", "rm", "-f", &name]).await.is_ok() {
                removed.push(format!("volume {name}"));
            }
        }
    }
    if let Ok(out) = docker(&["network", "ls", "--filter", &filter, "--format", &format]).await {
        for name in stale_names(&out) {
            if docker(&["network", "rm", &name]).await.is_ok() {
                removed.push(format!("network {name}"));
            }
        }
    }
    removed
}

/// The names in `NAME\tOWNER` lines whose owner is gone.
fn stale_names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, owner)| owner_is_gone(owner))
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_its_own_live_owner() {
        let me = owner_id();
        assert!(!me.ends_with(":0"), "no start time in {me}");
        assert!(!owner_is_gone(&me));
    }

    #[test]
    fn owners_that_do_not_parse_count_as_alive() {
        assert!(!owner_is_gone(""));
        assert!(!owner_is_gone("garbage"));
        assert!(!owner_is_gone("12:x"));
    }

    #[test]
    fn a_reused_pid_is_a_different_owner() {
        let pid = std::process::id();
        let started = start_time(pid).expect("own start time");
        assert!(owner_is_gone(&format!("{pid}:{}", started + 1)));
        // pid_max on Linux is at most 2^22, so this pid cannot exist.
        assert!(owner_is_gone("4294967290:1"));
    }

    #[test]
    fn stale_names_are_picked_by_owner() {
        let me = owner_id();
        let listing = format!("alive\t{me}\ndead\t4294967290:1\nunlabelled\t\n");
        assert_eq!(stale_names(&listing), vec!["dead".to_owned()]);
    }
}
