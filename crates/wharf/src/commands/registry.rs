//! `wharf registry ...`: container registries. The password is read only from
//! standard input, never from a flag, so it stays out of shell history and `ps`.

use super::{deleted_json, CommandContext};
use crate::error::CommandError;
use crate::output::{clean, or_dash, time, yes_no, Fields, Table};
use anyhow::Context as _;
use clap::Subcommand;
use std::io::Read;
use wharf_api::{Registry, RegistryCreate, RegistryUpdate};
use wharf_domain::registry::MAX_PASSWORD_LEN;

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Add a registry.
    Create(RegistryCreateArgs),
    /// List registries.
    List,
    /// Show one registry.
    Show(RegistryRef),
    /// Delete a registry.
    Delete(RegistryRef),
    /// Change a registry's endpoints, credentials or plain-HTTP flag (a rotated
    /// password, a moved registry). Every release's next pull uses what is stored
    /// then, running releases' included.
    Update(RegistryUpdateArgs),
}

#[derive(clap::Args)]
pub struct RegistryUpdateArgs {
    /// The registry's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// HOST[:PORT] the hosts pull from.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub endpoint: Option<String>,
    /// HOST[:PORT] on the hosts' private network; '' removes it.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub private_endpoint: Option<String>,
    /// A new user name; the password then comes from --password-stdin.
    #[arg(long, value_name = "USER", requires = "password_stdin")]
    pub username: Option<String>,
    /// Read a new password from standard input (one trailing newline is
    /// removed); without --username the registry's user name stays.
    #[arg(long)]
    pub password_stdin: bool,
    /// Pull over plain HTTP from now on.
    #[arg(long, conflicts_with = "secure")]
    pub insecure: bool,
    /// Pull over HTTPS from now on.
    #[arg(long)]
    pub secure: bool,
}

#[derive(clap::Args)]
pub struct RegistryCreateArgs {
    /// Lowercase letters, digits and '-'.
    pub name: String,
    /// HOST[:PORT] the hosts pull from.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub endpoint: String,
    /// HOST[:PORT] on the hosts' private network, for deployments with --private-network.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub private_endpoint: Option<String>,
    /// User name for the registry; the password then comes from --password-stdin.
    #[arg(long, value_name = "USER", requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password from standard input (one trailing newline is removed).
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Pull over plain HTTP.
    #[arg(long)]
    pub insecure: bool,
}

#[derive(clap::Args)]
pub struct RegistryRef {
    /// The registry's name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

pub async fn cmd_registry(
    ctx: &CommandContext,
    command: RegistryCommand,
) -> Result<(), CommandError> {
    match command {
        RegistryCommand::Create(args) => {
            // Read the password before anything else so that a usage problem with
            // it is reported without a round trip to the server.
            let password = if args.password_stdin {
                Some(read_password(std::io::stdin().lock())?)
            } else {
                None
            };
            let client = ctx.client()?;
            let body = RegistryCreate {
                name: args.name,
                endpoint: args.endpoint,
                private_endpoint: args.private_endpoint,
                username: args.username,
                password,
                insecure: args.insecure,
            };
            let registry = client.registry_create(&body).await?;
            ctx.ui.print(&registry, render_registry)
        }
        RegistryCommand::Update(args) => {
            let password = if args.password_stdin {
                Some(read_password(std::io::stdin().lock())?)
            } else {
                None
            };
            let body = RegistryUpdate {
                endpoint: args.endpoint,
                private_endpoint: args.private_endpoint,
                username: args.username,
                password,
                insecure: match (args.insecure, args.secure) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
            };
            if body == RegistryUpdate::default() {
                return Err(CommandError::usage(
                    "nothing to update: give --endpoint, --private-endpoint, --username, --password-stdin, --insecure or --secure",
                ));
            }
            let registry = ctx.client()?.registry_update(&args.name, &body).await?;
            ctx.ui.print(&registry, render_registry)
        }
        RegistryCommand::List => {
            let registries = ctx.client()?.registry_list().await?;
            ctx.ui.print(&registries, |r| registry_table(r))
        }
        RegistryCommand::Show(args) => {
            let registry = ctx.client()?.registry_fetch(&args.name).await?;
            ctx.ui.print(&registry, render_registry)
        }
        RegistryCommand::Delete(args) => {
            ctx.client()?.registry_delete(&args.name).await?;
            ctx.ui.print(&deleted_json(None, &args.name), |_| {
                format!("Deleted registry {}", clean(&args.name))
            })
        }
    }
}

/// Reads the password: all of `input`, less one trailing newline (`\n` or `\r\n`).
/// Input longer than any accepted password is refused rather than read without end.
fn read_password(input: impl Read) -> Result<String, CommandError> {
    let limit = MAX_PASSWORD_LEN + 2;
    let mut bytes = Vec::new();
    input
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .context("cannot read the password from standard input")?;
    if bytes.len() > limit {
        return Err(CommandError::usage(format!(
            "the password on standard input is longer than {MAX_PASSWORD_LEN} bytes"
        )));
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(CommandError::usage(
            "--password-stdin: no password on standard input",
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| CommandError::usage("--password-stdin: the password is not valid UTF-8"))
}

fn registry_table(registries: &[Registry]) -> String {
    let mut table = Table::new(&[
        "NAME",
        "ENDPOINT",
        "PRIVATE ENDPOINT",
        "USERNAME",
        "PASSWORD",
        "INSECURE",
        "CREATED",
    ]);
    for r in registries {
        table.row([
            r.name.as_str(),
            r.endpoint.as_str(),
            or_dash(r.private_endpoint.as_deref()),
            or_dash(r.username.as_deref()),
            if r.has_password { "set" } else { "-" },
            yes_no(r.insecure),
            time(&r.created_at).as_str(),
        ]);
    }
    table.render()
}

fn render_registry(r: &Registry) -> String {
    Fields::new()
        .add("Name", &r.name)
        .add("Endpoint", &r.endpoint)
        .add("Private endpoint", or_dash(r.private_endpoint.as_deref()))
        .add("Username", or_dash(r.username.as_deref()))
        .add("Password", if r.has_password { "set" } else { "not set" })
        .add("Insecure (HTTP)", yes_no(r.insecure))
        .add("Created", time(&r.created_at))
        .render()
}

#[cfg(test)]
mod tests {
    use super::read_password;

    #[test]
    fn one_trailing_newline_is_removed() {
        assert_eq!(read_password(&b"pw\n"[..]).unwrap(), "pw");
        assert_eq!(read_password(&b"pw\r\n"[..]).unwrap(), "pw");
        assert_eq!(read_password(&b"pw\n\n"[..]).unwrap(), "pw\n");
        assert_eq!(read_password(&b" p w "[..]).unwrap(), " p w ");
    }

    #[test]
    fn empty_long_and_binary_passwords_are_refused() {
        assert!(read_password(&b""[..]).is_err());
        assert!(read_password(&b"\n"[..]).is_err());
        assert!(read_password(&vec![b'x'; 10_000][..]).is_err());
        assert!(read_password(&b"\xff\xfe"[..]).is_err());
    }
}
