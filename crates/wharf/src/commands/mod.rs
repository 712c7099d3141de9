//! The command line: global flags, the `Command` enum with one variant per
//! subcommand group (one file each), and the context every command runs with.

pub mod agent;
pub mod app;
pub mod deployment;
pub mod exec;
pub mod group;
pub mod instance;
pub mod login;
pub mod registry;
pub mod release;
pub mod scaling_group;
pub mod server;
pub mod server_backup;
pub mod server_config;

use crate::config;
use crate::error::CommandError;
use crate::output::{OutputFormat, Ui};
use clap::{Parser, Subcommand};
use std::time::Duration;
use wharf_client::{Client, ServerTrust};

const AFTER_HELP: &str = "\
Server and token come from --server/--token, else WHARF_SERVER/WHARF_TOKEN, else the
file written by `wharf login` (in $XDG_CONFIG_HOME/wharf/config.json).

Exit codes: 0 success; 2 usage error or missing server/token configuration;
1 any other failure (the server refused the request or cannot be reached, a followed
release failed or was cancelled); 130 when Ctrl-C stopped following a release.";

/// Wharf publishes Docker images onto fleets of Linux hosts.
#[derive(Parser)]
#[command(name = "wharf", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every client command accepts, before or after the subcommand.
///
/// Not `Debug`: it holds the token.
#[derive(clap::Args)]
pub struct GlobalArgs {
    /// The Wharf server's URL, e.g. http://127.0.0.1:7700.
    #[arg(long, env = "WHARF_SERVER", global = true, value_name = "URL")]
    pub server: Option<String>,
    /// An API token (the admin token from the server's data directory).
    #[arg(
        long,
        env = "WHARF_TOKEN",
        global = true,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// How results are printed on stdout.
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        default_value_t = OutputFormat::Table,
        value_name = "FORMAT"
    )]
    pub output: OutputFormat,
    /// Allow plain HTTP to a server that is not on this host (the agent and client
    /// commands), or on an address other hosts reach (`wharf server`): tokens then
    /// cross the network in clear text. `--insecure-http=false` turns it off.
    #[arg(
        long,
        env = "WHARF_INSECURE_HTTP",
        global = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub insecure_http: Option<bool>,
    /// Trust only this CA (PEM) for the server's certificate, not the web PKI; `wharf
    /// login` saves it for later commands.
    #[arg(long, env = "WHARF_CA_CERT", global = true, value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check a server and token and save them for later commands.
    Login(login::LoginArgs),
    /// Hosts running `wharf agent`, and the tokens they register with.
    #[command(subcommand)]
    Instance(instance::InstanceCommand),
    /// Applications.
    #[command(subcommand)]
    App(app::AppCommand),
    /// Application groups: named sets of instances of one application.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Container registries the hosts pull images from.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Deployments: immutable revisions of an application.
    #[command(subcommand)]
    Deployment(deployment::DeploymentCommand),
    /// Releases: publishing a deployment to a group, in batches.
    #[command(subcommand)]
    Release(release::ReleaseCommand),
    /// Group execs: scripts run on the instances of a group (`wharf group exec`).
    #[command(subcommand)]
    Exec(exec::ExecCommand),
    /// Scaling groups: agents that join an application group as they come, held
    /// while a release runs on it.
    #[command(subcommand)]
    ScalingGroup(scaling_group::ScalingGroupCommand),
    /// Run the control-plane server.
    Server(server::ServerArgs),
    /// Run the host agent (Linux only), which registers this host with a server and
    /// runs the steps of releases on it.
    #[command(version = wharf_agent::VERSION, after_help = agent::AGENT_HELP)]
    Agent(agent::AgentArgs),
}

/// What a command runs with: the global flags and the output.
pub struct CommandContext {
    pub global: GlobalArgs,
    pub ui: Ui,
}

impl CommandContext {
    /// A client for the configured server and token (see [`config::resolve`]).
    pub fn client(&self) -> Result<Client, CommandError> {
        let path = config::config_path()?;
        let connection = config::resolve(
            self.global.server.as_deref(),
            self.global.token.as_deref(),
            &path,
        )?;
        config::check_transport(&connection.server, self.insecure_http())?;
        let trust = match (self.ca_trust()?, connection.saved_ca) {
            (Some(given), _) => given,
            (None, Some((file, pem))) => ServerTrust::ca_pem(file, pem.into_bytes())
                .map_err(|err| CommandError::Config(format!("{err}; run `wharf login` again")))?,
            (None, None) => ServerTrust::WebPki,
        };
        Ok(Client::builder(&connection.server)
            .token(connection.token)
            .trust(trust)
            .build()?)
    }

    /// The CA of `--ca-cert` (or WHARF_CA_CERT), read; `None` when not given.
    pub fn ca_trust(&self) -> Result<Option<ServerTrust>, CommandError> {
        match &self.global.ca_cert {
            None => Ok(None),
            Some(path) => ServerTrust::ca_file(path)
                .map(Some)
                .map_err(|err| CommandError::usage(format!("--ca-cert: {err}"))),
        }
    }

    /// Whether `--insecure-http` (or `WHARF_INSECURE_HTTP`) allows plain HTTP to a
    /// server on another host.
    pub fn insecure_http(&self) -> bool {
        self.global.insecure_http.unwrap_or(false)
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), CommandError> {
    let ctx = CommandContext {
        ui: Ui::new(cli.global.output),
        global: cli.global,
    };
    match cli.command {
        Command::Login(args) => login::cmd_login(&ctx, args).await,
        Command::Instance(command) => instance::cmd_instance(&ctx, command).await,
        Command::App(command) => app::cmd_app(&ctx, command).await,
        Command::Group(command) => group::cmd_group(&ctx, command).await,
        Command::Registry(command) => registry::cmd_registry(&ctx, command).await,
        Command::Deployment(command) => deployment::cmd_deployment(&ctx, command).await,
        Command::Release(command) => release::cmd_release(&ctx, command).await,
        Command::Exec(command) => exec::cmd_exec(&ctx, command).await,
        Command::ScalingGroup(command) => scaling_group::cmd_scaling_group(&ctx, command).await,
        Command::Server(args) => server::cmd_server(&ctx, args).await,
        Command::Agent(args) => agent::cmd_agent(&ctx, args).await,
    }
}

/// Parses a duration such as `90s`, `30m` or `1h 30m` into whole seconds; a clap
/// value parser, so a bad value is a usage error.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value)
        .map_err(|err| format!("{err} (write a duration such as 90s, 30m or 1h)"))?;
    if duration.subsec_nanos() != 0 {
        return Err("must be a whole number of seconds".to_owned());
    }
    Ok(duration)
}

/// The JSON printed by `delete` commands: `{"deleted": "NAME"}`, with the
/// application for resources that belong to one.
pub fn deleted_json(app: Option<&str>, name: &str) -> serde_json::Value {
    match app {
        Some(app) => serde_json::json!({ "app": app, "deleted": name }),
        None => serde_json::json!({ "deleted": name }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_are_whole_seconds() {
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("1500ms").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }
}
