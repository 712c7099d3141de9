//! The real agent's footprint: idle RSS and CPU while connected to a server with
//! nothing to do, and the size of the binary.

use crate::overhead::RealAgent;
use crate::proc;
use crate::report::Table;
use crate::server::Running;
use anyhow::Context as _;
use std::path::Path;
use std::time::Duration;

/// Measures the agent over one minute (ten seconds with `quick`).
pub async fn run(wharf: &Path, quick: bool, table: &mut Table) -> anyhow::Result<()> {
    println!("agent: idle footprint");
    let running = Running::start(wharf).await?;
    let agent = RealAgent::start(wharf, &running, "idle-agent").await?;
    // Let start-up settle (first heartbeat, first poll) before the window opens.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let window = Duration::from_secs(if quick { 10 } else { 60 });
    let usage = proc::usage_over(agent.pid()?, window).await?;
    let peak = proc::status_kb(agent.pid()?, "VmHWM")? as f64 / 1024.0;
    let size = std::fs::metadata(wharf)
        .with_context(|| format!("reading {}", wharf.display()))?
        .len() as f64
        / (1024.0 * 1024.0);
    table.add(
        format!("agent idle RSS ({}s window)", window.as_secs()),
        format!("{:.1} MiB (peak {peak:.1} MiB)", usage.rss_mib),
        "≤ 15 MB",
    );
    table.add(
        format!("agent idle CPU ({}s window)", window.as_secs()),
        format!("{:.3}% of a core", usage.cpu_percent),
        "≈ 0",
    );
    table.add(
        "wharf binary size (release, stripped)",
        format!("{size:.1} MiB"),
        "-",
    );
    Ok(())
}
