//! `wharf server`: runs the control plane (the `wharf-server` library) until Ctrl-C
//! or SIGTERM, logging to stderr.

use super::CommandContext;
use crate::error::CommandError;
use crate::output::clean;
use anyhow::Context as _;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7700", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Directory for the database and the admin token.
    #[arg(long, default_value = "wharf-data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Keep the store in this PostgreSQL database (postgres://USER:PASSWORD@HOST:PORT/DB)
    /// instead of SQLite in the data directory. Prefer WHARF_DATABASE_URL for a URL
    /// with a password: command lines are visible to other users.
    #[arg(
        long,
        env = "WHARF_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database: Option<String>,
    /// How often agents send heartbeats (for tests; default 10s).
    #[arg(long, hide = true, value_name = "DURATION", value_parser = super::parse_duration)]
    pub heartbeat_interval: Option<std::time::Duration>,
    /// An instance is offline when no heartbeat came for this long (for tests; default
    /// 30s). Must be longer than the heartbeat interval.
    #[arg(long, hide = true, value_name = "DURATION", value_parser = super::parse_duration)]
    pub offline_after: Option<std::time::Duration>,
}

pub async fn cmd_server(ctx: &CommandContext, args: ServerArgs) -> Result<(), CommandError> {
    init_logging();
    // Signal handlers go in before the address is announced, so that a SIGTERM sent
    // as soon as the line is read already means a graceful shutdown.
    let shutdown = shutdown_signal().context("cannot install signal handlers")?;
    let defaults = wharf_server::Liveness::default();
    let liveness = wharf_server::Liveness {
        heartbeat_interval: args
            .heartbeat_interval
            .unwrap_or(defaults.heartbeat_interval),
        offline_after: args.offline_after.unwrap_or(defaults.offline_after),
    };
    if liveness.heartbeat_interval.is_zero()
        || liveness.offline_after <= liveness.heartbeat_interval
    {
        return Err(anyhow::anyhow!(
            "--offline-after ({:?}) must be longer than --heartbeat-interval ({:?}), which must not be 0",
            liveness.offline_after,
            liveness.heartbeat_interval
        )
        .into());
    }
    let config = wharf_server::ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        database: args.database.map(wharf_server::DatabaseUrl),
    };
    let server = wharf_server::bind_with(config, liveness)
        .await
        .context("cannot start the server")?;
    if server.admin_token_created() {
        ctx.ui.note(&format!(
            "Created an admin token in {} (readable only by this user).",
            clean(&server.admin_token_path().display().to_string())
        ))?;
    }
    // Exactly one line on stdout: tests and scripts read it to learn the address.
    ctx.ui.stdout(&format!(
        "wharf server listening on http://{}",
        server.local_addr()
    ))?;
    server
        .serve(shutdown)
        .await
        .context("the server stopped with an error")?;
    tracing::info!("server stopped");
    Ok(())
}

/// Logs to stderr; `RUST_LOG` filters, `info` by default.
pub(super) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Only fails if a subscriber is already set, which leaves logging working.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A future that completes on the first Ctrl-C (SIGINT) or SIGTERM. The handlers
/// are installed when this function returns, not when the future is first polled.
#[cfg(unix)]
pub(super) fn shutdown_signal(
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutting down");
    })
}

#[cfg(not(unix))]
pub(super) fn shutdown_signal(
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}
