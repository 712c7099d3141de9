//! `wharf server`: runs the control plane (the `wharf-server` library) until Ctrl-C
//! or SIGTERM, logging to stderr. Its settings are layered in `server_config`.

use super::server_config::{self, LogFormat, TlsSetting};
use super::CommandContext;
use crate::error::CommandError;
use crate::output::clean;
use anyhow::Context as _;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use wharf_server::tls::ServerTls;

const SERVER_HELP: &str = "\
Every setting comes from its flag, else its WHARF_* variable, else the --config file
(TOML; its keys are the flags' names, e.g. data-dir = \"/var/lib/wharf\"), else its
default. --print-config shows the result, secrets redacted, as such a file.

TLS: --tls-cert FILE --tls-key FILE (PEM; the chain may follow the certificate; the
key PKCS#8, SEC1 or RSA), re-read on SIGHUP; or --tls auto, which makes a private CA
and a server certificate in DATA_DIR/tls on first start (names: --tls-san, the listen
address, localhost, 127.0.0.1, the hostname) and prints the CA's fingerprint; give
clients DATA_DIR/tls/ca.pem (wharf --ca-cert FILE). Without TLS the server listens
only on loopback addresses unless --insecure-http is given: every token would
otherwise cross the network in clear text.

Exit codes: 0 after SIGINT/SIGTERM or --print-config; 2 usage error (bad flag,
variable or configuration file, a refused address); 1 when the server cannot start.";

/// The flags of `wharf server`. Each is optional here, so that a value that was not
/// given can come from the configuration file (see `server_config`); clap merges
/// each flag with its `WHARF_*` variable.
#[derive(clap::Args)]
#[command(after_help = SERVER_HELP)]
pub struct ServerArgs {
    /// Back up or restore instead of serving.
    #[command(subcommand)]
    pub action: Option<super::server_backup::ServerAction>,
    /// A TOML configuration file holding any of these settings.
    #[arg(long, env = "WHARF_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the resulting configuration (TOML, secrets redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:7700].
    #[arg(long, env = "WHARF_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory for the database and the admin token [default: wharf-data].
    #[arg(long, env = "WHARF_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// How log lines on stderr are written [default: text].
    #[arg(long, env = "WHARF_LOG_FORMAT", value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Which log lines are written: a level (error, warn, info, debug, trace) or a
    /// filter such as warn,wharf_server=debug [default: RUST_LOG, else info].
    #[arg(long, env = "WHARF_LOG_LEVEL", value_name = "LEVEL", value_parser = server_config::parse_log_level)]
    pub log_level: Option<String>,
    /// `auto`: a private CA and server certificate in DATA_DIR/tls, made on first start.
    #[arg(long, env = "WHARF_TLS", value_enum, value_name = "MODE")]
    pub tls: Option<server_config::TlsMode>,
    /// The server's certificate chain (PEM), re-read on SIGHUP.
    #[arg(long, env = "WHARF_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, SEC1 or RSA), re-read on SIGHUP.
    #[arg(long, env = "WHARF_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// A name (DNS name or IP address) for the --tls auto certificate; repeatable.
    #[arg(
        long,
        env = "WHARF_TLS_SAN",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub tls_san: Vec<String>,
    /// Keep the store in this PostgreSQL database (postgres://USER:PASSWORD@HOST:PORT/DB)
    /// instead of SQLite in the data directory. Prefer WHARF_DATABASE_URL (or the
    /// configuration file) for a URL with a password: command lines are visible to
    /// other users.
    #[arg(
        long,
        env = "WHARF_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database: Option<String>,
    /// How often agents send heartbeats (for tests; default 10s).
    #[arg(long, hide = true, env = "WHARF_HEARTBEAT_INTERVAL", value_name = "DURATION", value_parser = super::parse_duration)]
    pub heartbeat_interval: Option<std::time::Duration>,
    /// An instance is offline when no heartbeat came for this long (for tests; default
    /// 30s). Must be longer than the heartbeat interval.
    #[arg(long, hide = true, env = "WHARF_OFFLINE_AFTER", value_name = "DURATION", value_parser = super::parse_duration)]
    pub offline_after: Option<std::time::Duration>,
}

pub async fn cmd_server(ctx: &CommandContext, mut args: ServerArgs) -> Result<(), CommandError> {
    if let Some(action) = args.action.take() {
        return super::server_backup::run(ctx, action);
    }
    let file = match &args.config {
        Some(path) => server_config::load_file(path)?,
        None => server_config::FileConfig::default(),
    };
    let settings = server_config::resolve(&args, ctx.global.insecure_http, file)?;
    if args.print_config {
        return ctx.ui.stdout(settings.to_toml()?.trim_end());
    }
    let tls_on = settings.tls != TlsSetting::Off;
    server_config::check_listen(settings.server.listen, settings.insecure_http || tls_on)?;
    init_logging_with(settings.log_format, &settings.effective_log_level());
    let tls = start_tls(ctx, &settings)?;
    if !tls_on && settings.insecure_http && !server_config::is_loopback(settings.server.listen.ip())
    {
        tracing::warn!(
            listen = %settings.server.listen,
            "serving plain HTTP on a non-loopback address (--insecure-http): tokens, agent credentials and registry passwords cross the network in clear text"
        );
    }
    // Signal handlers go in before the address is announced, so that a SIGTERM sent
    // as soon as the line is read already means a graceful shutdown.
    let shutdown = shutdown_signal().context("cannot install signal handlers")?;
    let mut server = wharf_server::bind_with(settings.server, settings.liveness)
        .await
        .context("cannot start the server")?;
    // Always installed: SIGHUP's default action would end the process, and an
    // operator (or a certificate renewal hook) may send it whether or not TLS is on.
    reload_on_sighup(tls.clone()).context("cannot install the SIGHUP handler")?;
    if let Some(tls) = tls {
        server = server.with_tls(tls);
    }
    if server.admin_token_created() {
        ctx.ui.note(&format!(
            "Created an admin token in {} (readable only by this user).",
            clean(&server.admin_token_path().display().to_string())
        ))?;
    }
    // Exactly one line on stdout: tests and scripts read it to learn the address.
    ctx.ui.stdout(&format!(
        "wharf server listening on {}://{}",
        if tls_on { "https" } else { "http" },
        server.local_addr()
    ))?;
    server
        .serve(shutdown)
        .await
        .context("the server stopped with an error")?;
    tracing::info!("server stopped");
    Ok(())
}

/// Reads (or, for `--tls auto`, makes) the certificate; `None` without TLS. A bad
/// file stops the start with exit code 1 and a message naming it.
fn start_tls(
    ctx: &CommandContext,
    settings: &server_config::Resolved,
) -> Result<Option<ServerTls>, CommandError> {
    let files = match &settings.tls {
        TlsSetting::Off => return Ok(None),
        TlsSetting::Files(files) => files.clone(),
        TlsSetting::Auto { sans } => {
            let names = wharf_server::tls_auto::default_names(settings.server.listen, sans);
            let auto = wharf_server::tls_auto::ensure(&settings.server.data_dir, &names)
                .map_err(|err| CommandError::Internal(anyhow::Error::new(err)))?;
            if auto.ca_created {
                ctx.ui.note(&format!(
                    "Created a private CA in {}: give this file to clients (wharf --ca-cert FILE).",
                    clean(&auto.ca_cert.display().to_string())
                ))?;
            }
            if auto.server_issued {
                tracing::info!(names = ?names, "issued the server certificate");
            }
            ctx.ui.note(&format!(
                "TLS CA {} fingerprint {}",
                clean(&auto.ca_cert.display().to_string()),
                auto.ca_fingerprint
            ))?;
            auto.files
        }
    };
    let tls = ServerTls::from_files(files)
        .map_err(|err| CommandError::Internal(anyhow::Error::new(err)))?;
    Ok(Some(tls))
}

/// Re-reads the certificate and key on every SIGHUP; a failed read logs why and
/// keeps the current pair. Without TLS there is nothing to re-read.
#[cfg(unix)]
fn reload_on_sighup(tls: Option<ServerTls>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let Some(tls) = &tls else {
                tracing::info!("SIGHUP: no TLS certificate to reload");
                continue;
            };
            match tls.reload() {
                Ok(()) => tracing::info!(
                    cert = %tls.files().cert.display(),
                    "SIGHUP: reloaded the TLS certificate"
                ),
                Err(err) => tracing::error!(
                    error = %err,
                    "SIGHUP: cannot reload the TLS certificate; serving the previous one"
                ),
            }
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn reload_on_sighup(_tls: Option<ServerTls>) -> std::io::Result<()> {
    Ok(())
}

/// Logs to stderr as text; `RUST_LOG` filters, `info` by default.
pub(super) fn init_logging() {
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    init_logging_with(LogFormat::Text, &level);
}

/// Logs to stderr in `format`, filtered by `level` (an `EnvFilter` directive; `info`
/// if it does not parse).
fn init_logging_with(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Only fails if a subscriber is already set, which leaves logging working.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
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
