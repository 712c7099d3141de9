//! `wharf-bench`: measures Wharf on this machine against baselines run in the same
//! invocation, and prints a table. See BENCHMARKS.md at the repository root.

/// The swarm shares the server's two cores and allocates on every request it
/// makes; with mimalloc it takes about a fifth less CPU than with glibc's malloc,
/// which leaves that much more to the server being measured. (The `wharf` binary
/// uses mimalloc too, set up in its `allocator.rs` to keep the idle agent small;
/// this process's memory is not measured, so it takes mimalloc's defaults.)
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent_http;
mod footprint;
mod overhead;
mod proc;
mod report;
mod server;
mod storm;
mod swarm;

use clap::{Parser, Subcommand};
use report::Table;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Benchmarks of Wharf (see BENCHMARKS.md)")]
struct Cli {
    #[command(subcommand)]
    what: What,
    /// Simulated agents for `swarm` (repeat for several runs; default 1000 and 10000).
    #[arg(long = "agents", global = true)]
    agents: Vec<usize>,
    /// Shorter windows and fewer repetitions.
    #[arg(long, global = true)]
    quick: bool,
    /// The `wharf` binary to measure (default: target/release/wharf).
    #[arg(long, global = true, value_name = "PATH")]
    wharf: Option<PathBuf>,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum What {
    /// Everything below.
    All,
    /// Per-instance overhead of a release against running the same steps directly.
    Overhead,
    /// Control-plane scale with a swarm of simulated agents.
    Swarm,
    /// The real agent's idle footprint and binary size.
    Agent,
    /// A server with a swarm of agents killed and started again: reconnections
    /// and API latency in the 30 s after.
    Restart,
    /// Small, fast swarm and restart runs (200 agents) that only prove the
    /// benchmark works.
    Smoke,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let wharf = match cli.wharf {
        Some(path) => path,
        None => wharf_testkit::fleet_server::workspace_root().join("target/release/wharf"),
    };
    anyhow::ensure!(
        wharf.exists(),
        "{} is missing: build it first (scripts/bench.sh does)",
        wharf.display()
    );
    proc::raise_nofile_limit();
    let mut table = Table::default();
    if matches!(cli.what, What::All | What::Overhead) {
        overhead::run(&wharf, cli.quick, &mut table).await?;
    }
    if matches!(cli.what, What::All | What::Swarm) {
        let sizes = if cli.agents.is_empty() {
            vec![1000, 10_000]
        } else {
            cli.agents.clone()
        };
        for agents in sizes {
            swarm::run(&wharf, agents, cli.quick, &mut table).await?;
        }
    }
    if matches!(cli.what, What::All | What::Restart) {
        let agents = cli.agents.last().copied().unwrap_or(10_000);
        storm::run(&wharf, agents, cli.quick, &mut table).await?;
    }
    if matches!(cli.what, What::All | What::Agent) {
        footprint::run(&wharf, cli.quick, &mut table).await?;
    }
    if cli.what == What::Smoke {
        let agents = cli.agents.first().copied().unwrap_or(200);
        swarm::run(&wharf, agents, true, &mut table).await?;
        storm::run(&wharf, agents, true, &mut table).await?;
    }
    table.print();
    Ok(())
}
