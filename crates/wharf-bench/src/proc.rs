//! Reading a process's memory and CPU time from /proc, and raising this process's
//! file descriptor limit (which the processes it starts inherit).

use anyhow::Context as _;
use std::time::{Duration, Instant};

/// Raises RLIMIT_NOFILE of this process with prlimit(1) (util-linux), so that
/// 10,000 connections fit; children started later inherit it. As root, soft and
/// hard go to `WANTED_NOFILE`; otherwise the soft limit goes to the hard one.
/// Failing to raise it is reported, not fatal: small runs do not need it.
pub fn raise_nofile_limit() {
    let hard = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(4).map(str::to_owned))
        });
    let Some(hard) = hard else {
        eprintln!("cannot read the open-files limit; leaving it as it is");
        return;
    };
    let pid = std::process::id().to_string();
    let wanted = format!("--nofile={WANTED_NOFILE}:{WANTED_NOFILE}");
    let raised = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &wanted])
        .stderr(std::process::Stdio::null())
        .status();
    if matches!(raised, Ok(s) if s.success()) {
        return;
    }
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={hard}:{hard}")])
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("cannot raise the open-files limit to {hard}; large swarms may fail");
    }
}

/// The open-files limit wanted for the largest swarm: 10,000 agents hold 10,000
/// long polls plus the connections of heartbeats and reports in flight.
const WANTED_NOFILE: u64 = 65_536;

/// Clock ticks per second, the unit of utime and stime in /proc/PID/stat. Asked
/// of getconf(1) once: the CPU time is read as a release starts, and starting a
/// process then took the cores its first batch was dispatched on.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(100.0)
    })
}

/// A field of /proc/PID/status in kB, e.g. `VmRSS` or `VmHWM`.
pub fn status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// The CPU time (user + system) the process has used so far, in seconds.
pub fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are counted from the ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the ')'.
    let utime: f64 = fields
        .get(11)
        .and_then(|v| v.parse().ok())
        .context("utime")?;
    let stime: f64 = fields
        .get(12)
        .and_then(|v| v.parse().ok())
        .context("stime")?;
    Ok((utime + stime) / clock_ticks())
}

/// Memory and CPU of a process over a window.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Resident set at the end of the window, in MiB.
    pub rss_mib: f64,
    /// CPU used during the window, as a percentage of one core.
    pub cpu_percent: f64,
}

/// Samples `pid` over `window`: CPU time at both ends, RSS at the end.
pub async fn usage_over(pid: u32, window: Duration) -> anyhow::Result<Usage> {
    let started = Instant::now();
    let cpu_before = cpu_secs(pid)?;
    tokio::time::sleep(window).await;
    let cpu_after = cpu_secs(pid)?;
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Usage {
        rss_mib: status_kb(pid, "VmRSS")? as f64 / 1024.0,
        cpu_percent: (cpu_after - cpu_before) / elapsed * 100.0,
    })
}
