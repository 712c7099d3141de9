//! `wharf agent`: runs the host agent (the `wharf-agent` library) until Ctrl-C or
//! SIGTERM, logging to stderr. The server URL is the global `--server` (or
//! `WHARF_SERVER`); the saved `wharf login` is never used, nor `--token`: an agent
//! has its own credential, kept in its state directory.

use super::server::{init_logging, shutdown_signal};
use super::CommandContext;
use crate::error::CommandError;
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::path::PathBuf;
use wharf_domain::names::{validate_instance_name, validate_label};

/// The variable the registration token is read from when `--registration-token`
/// is not given.
const TOKEN_ENV: &str = "WHARF_REGISTRATION_TOKEN";

pub const AGENT_HELP: &str = "\
The agent registers once, with the registration token, and keeps its own credential
in the state directory (state.json, mode 0600); later starts need no token, and
--name, --label and --scaling-group only count at registration. Prefer passing the
token in WHARF_REGISTRATION_TOKEN: a command line can be read by every user of the
host. The agent logs to stderr (RUST_LOG filters, default info). On SIGINT or SIGTERM
it lets a running step finish, reports it and stops.

A plain http:// server that is not on this host is refused unless --insecure-http
(WHARF_INSECURE_HTTP=1) is given: the agent's credential, the registry passwords and
the scripts it runs as root would cross the network in clear text. For an https://
server whose certificate comes from a company or private CA (such as `wharf server
--tls auto`'s DATA_DIR/tls/ca.pem), pass --ca-cert FILE (WHARF_CA_CERT): that CA is
then the only one trusted, and a server not signed by it is refused (exit 1).

Exit codes: 0 after a signal; 2 usage error (bad flags, no --server, a refused
plain-HTTP server); 1 when the agent cannot start or stops on its own (registration
refused, credential revoked).";

#[derive(clap::Args)]
pub struct AgentArgs {
    /// A registration token from `wharf instance token create`, needed for the first
    /// start only. Prefer the WHARF_REGISTRATION_TOKEN variable.
    #[arg(
        long,
        env = TOKEN_ENV,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub registration_token: Option<String>,
    /// Where the agent keeps its credential and its journal (created, mode 0700).
    #[arg(long, default_value = wharf_agent::DEFAULT_STATE_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The instance name to register with (default: the hostname).
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub name: Option<String>,
    /// A label to register with, as KEY=VALUE; repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// On shutdown (SIGTERM/SIGINT), deregister: the server deletes this instance,
    /// which leaves its groups and scaling group, and the state file is removed.
    #[arg(long)]
    pub deregister: bool,
    /// The scaling group to join when registering.
    #[arg(long, value_name = "NAME")]
    pub scaling_group: Option<String>,
    /// The Docker Engine's socket (default /var/run/docker.sock); `command`
    /// deployments run without one.
    #[arg(long, value_name = "PATH")]
    pub docker_socket: Option<PathBuf>,
}

/// A clap value parser for `--label KEY=VALUE`, so a bad label is a usage error.
fn parse_label(value: &str) -> Result<(String, String), String> {
    let (key, val) = value
        .split_once('=')
        .ok_or_else(|| format!("{value:?} is not KEY=VALUE"))?;
    validate_label(key, val).map_err(|err| err.message)?;
    Ok((key.to_owned(), val.to_owned()))
}

fn parse_name(value: &str) -> Result<String, String> {
    validate_instance_name(value).map_err(|err| err.message)?;
    Ok(value.to_owned())
}

/// The labels as a map; a key given twice is a usage error.
fn label_map(labels: Vec<(String, String)>) -> Result<BTreeMap<String, String>, CommandError> {
    let mut map = BTreeMap::new();
    for (key, value) in labels {
        if map.insert(key.clone(), value).is_some() {
            return Err(CommandError::usage(format!(
                "--label {key}=... is given more than once"
            )));
        }
    }
    Ok(map)
}

pub async fn cmd_agent(ctx: &CommandContext, args: AgentArgs) -> Result<(), CommandError> {
    let Some(server) = ctx.global.server.clone() else {
        return Err(CommandError::usage(
            "wharf agent needs the server's URL: pass --server URL or set WHARF_SERVER",
        ));
    };
    crate::config::check_transport(&server, ctx.insecure_http())?;
    let labels = label_map(args.labels)?;
    let trust = ctx.ca_trust()?.unwrap_or_default();
    init_logging();
    if args.registration_token.is_some() && std::env::var_os(TOKEN_ENV).is_none() {
        tracing::warn!(
            "the registration token is on the command line, where other users of this host can read it; prefer {TOKEN_ENV}"
        );
    }
    let shutdown = shutdown_signal().context("cannot install signal handlers")?;
    let config = wharf_agent::AgentConfig {
        server,
        registration_token: args.registration_token,
        state_dir: args.state_dir,
        name: args.name,
        labels,
        scaling_group: args.scaling_group,
        docker_socket: args.docker_socket,
        trust,
    };
    let deregister = args.deregister.then(|| config.clone());
    // The error becomes the `error: ...` line on stderr, after the log.
    let failed = |err: wharf_agent::AgentError| {
        CommandError::Internal(anyhow::anyhow!(wharf_agent::error_chain(&err)))
    };
    wharf_agent::run(config, shutdown).await.map_err(failed)?;
    if let Some(config) = deregister {
        wharf_agent::deregister(&config).await.map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_key_value_pairs() {
        assert_eq!(
            parse_label("zone=eu-1").unwrap(),
            ("zone".to_owned(), "eu-1".to_owned())
        );
        assert_eq!(
            parse_label("empty=").unwrap(),
            ("empty".to_owned(), String::new())
        );
        assert_eq!(parse_label("a=b=c").unwrap().1, "b=c");
        for bad in ["zone", "=x", "bad key=x", "k=\u{7}"] {
            assert!(parse_label(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_label_key_given_twice_is_a_usage_error() {
        let twice = vec![("a".into(), "1".into()), ("a".into(), "2".into())];
        assert!(matches!(label_map(twice), Err(CommandError::Usage(_))));
    }
}
