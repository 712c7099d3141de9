//! `wharf instance ...`: registered hosts, and the registration tokens agents use
//! to join.

use super::{deleted_json, parse_duration, CommandContext};
use crate::error::CommandError;
use crate::output::{clean, list, or_dash, time, Fields, OutputFormat, Table};
use clap::Subcommand;
use std::time::Duration;
use wharf_api::{Instance, RegistrationToken, RegistrationTokenCreate};

#[derive(Subcommand)]
pub enum InstanceCommand {
    /// Registration tokens for `wharf agent --registration-token`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// List instances.
    List,
    /// Show one instance.
    Show(InstanceRef),
    /// Deregister an instance.
    Delete(InstanceRef),
}

#[derive(clap::Args)]
pub struct InstanceRef {
    /// The instance's id (i-...) or name.
    #[arg(value_name = "ID|NAME")]
    pub instance: String,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a registration token and print it.
    Create(TokenCreateArgs),
    /// List registration tokens (never the tokens themselves).
    List,
    /// Delete a registration token.
    Delete(TokenDeleteArgs),
}

#[derive(clap::Args)]
pub struct TokenCreateArgs {
    /// How long the token stays valid, e.g. 30m, 1h, 7days (server default: one day).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Option<Duration>,
    /// How many agents may register with it (server default: 1).
    #[arg(long, value_name = "N")]
    pub uses: Option<u32>,
}

#[derive(clap::Args)]
pub struct TokenDeleteArgs {
    /// The token's id, as `wharf instance token list` shows it.
    pub id: String,
}

pub async fn cmd_instance(
    ctx: &CommandContext,
    command: InstanceCommand,
) -> Result<(), CommandError> {
    let client = ctx.client()?;
    match command {
        InstanceCommand::Token(TokenCommand::Create(args)) => {
            let body = RegistrationTokenCreate {
                ttl_secs: args.ttl.map(|ttl| ttl.as_secs()),
                uses: args.uses,
            };
            let token = client.registration_token_create(&body).await?;
            if ctx.ui.format == OutputFormat::Json {
                return ctx.ui.json(&token);
            }
            let Some(secret) = token.token.as_deref() else {
                return Err(anyhow::anyhow!("the server did not return the new token").into());
            };
            // The token alone on stdout, so that `T=$(wharf instance token create)`
            // works; what people want to know about it goes to stderr.
            ctx.ui.stdout(&clean(secret))?;
            ctx.ui.note(&format!(
                "Registration token {} expires {}; {} use(s).",
                clean(&token.id),
                time(&token.expires_at),
                token.uses
            ))
        }
        InstanceCommand::Token(TokenCommand::List) => {
            let tokens = client.registration_token_list().await?;
            ctx.ui.print(&tokens, |tokens| token_table(tokens))
        }
        InstanceCommand::Token(TokenCommand::Delete(args)) => {
            client.registration_token_delete(&args.id).await?;
            ctx.ui.print(&deleted_json(None, &args.id), |_| {
                format!("Deleted registration token {}", clean(&args.id))
            })
        }
        InstanceCommand::List => {
            let instances = client.instance_list().await?;
            ctx.ui
                .print(&instances, |instances| instance_table(instances))
        }
        InstanceCommand::Show(args) => {
            let instance = client.instance_fetch(&args.instance).await?;
            ctx.ui.print(&instance, render_instance)
        }
        InstanceCommand::Delete(args) => {
            client.instance_delete(&args.instance).await?;
            ctx.ui.print(&deleted_json(None, &args.instance), |_| {
                format!("Deleted instance {}", clean(&args.instance))
            })
        }
    }
}

fn token_table(tokens: &[RegistrationToken]) -> String {
    let mut table = Table::new(&["ID", "CREATED", "EXPIRES", "USES", "USES LEFT"]);
    for t in tokens {
        table.row([
            t.id.clone(),
            time(&t.created_at),
            time(&t.expires_at),
            t.uses.to_string(),
            t.uses_left.to_string(),
        ]);
    }
    table.render()
}

fn instance_table(instances: &[Instance]) -> String {
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "STATUS",
        "ADDRESS",
        "OS/ARCH",
        "AGENT",
        "DOCKER",
        "LAST HEARTBEAT",
    ]);
    for i in instances {
        table.row([
            i.id.clone(),
            i.name.clone(),
            i.status.clone(),
            i.address.clone(),
            format!("{}/{}", i.os, i.arch),
            i.agent_version.clone(),
            docker_short(i),
            i.last_heartbeat_at.as_ref().map_or("-".to_owned(), time),
        ]);
    }
    table.render()
}

/// The host's Docker Engine in a table cell: its version, `none` when the agent
/// found none working, `-` when not reported.
fn docker_short(i: &Instance) -> String {
    match (&i.docker_version, &i.docker_error) {
        (Some(version), _) => clean(version).into_owned(),
        (None, Some(_)) => "none".to_owned(),
        (None, None) => "-".to_owned(),
    }
}

/// The host's Docker Engine for `show`, with why it does not work and the fix.
fn docker_long(i: &Instance) -> String {
    match (&i.docker_version, &i.docker_error) {
        (Some(version), _) => format!("Docker Engine {}", clean(version)),
        (None, Some(error)) => format!(
            "none: {} (prepare the host with `wharf group exec APP GROUP --script scripts/prepare-host.sh`)",
            clean(error)
        ),
        (None, None) => "- (not reported by the agent)".to_owned(),
    }
}

fn render_instance(i: &Instance) -> String {
    let labels: Vec<String> = i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut fields = Fields::new();
    fields
        .add("ID", &i.id)
        .add("Name", &i.name)
        .add("Status", &i.status)
        .add("Hostname", &i.hostname)
        .add("Address", &i.address)
        .add("OS/arch", format!("{}/{}", i.os, i.arch))
        .add("Agent version", &i.agent_version)
        .add("Docker", docker_long(i))
        .add("Labels", list(&labels))
        .add(
            "Scaling group",
            match (&i.scaling_group, i.scaling_pending) {
                (Some(name), true) => format!("{name} (pending: joins when the release ends)"),
                (name, _) => or_dash(name.as_deref()).to_owned(),
            },
        )
        .add("Registered", time(&i.registered_at))
        .add(
            "Last heartbeat",
            i.last_heartbeat_at.as_ref().map_or("-".to_owned(), time),
        );
    let mut out = fields.render();
    out.push('\n');
    if i.groups.is_empty() {
        out.push_str("Groups: none\n");
    } else {
        let mut table = Table::new(&["APP", "GROUP", "DEPLOYMENT", "IMAGE DIGEST"]);
        for m in &i.groups {
            table.row([
                m.app.as_str(),
                m.group.as_str(),
                or_dash(m.deployment.as_deref()),
                or_dash(m.image_digest.as_deref()),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}
