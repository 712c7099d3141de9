//! `wharf login`: checks that a server accepts a token, then saves both for later
//! commands in a file only the user can read.

use super::CommandContext;
use crate::config::{self, SavedLogin};
use crate::error::CommandError;
use crate::output::clean;
use wharf_client::{Client, ServerTrust};

/// Takes the global `--server` and `--token` (or WHARF_SERVER and WHARF_TOKEN).
#[derive(clap::Args)]
pub struct LoginArgs {}

pub async fn cmd_login(ctx: &CommandContext, _args: LoginArgs) -> Result<(), CommandError> {
    let (Some(server), Some(token)) = (given(&ctx.global.server), given(&ctx.global.token)) else {
        return Err(CommandError::usage(
            "`wharf login` needs --server URL and --token TOKEN (or WHARF_SERVER and WHARF_TOKEN)",
        ));
    };
    config::check_transport(server, ctx.insecure_http())?;
    let trust = ctx.ca_trust()?;
    let client = Client::builder(server)
        .token(token)
        .trust(trust.clone().unwrap_or_default())
        .build()?;
    // Listing applications needs a valid token and changes nothing.
    client.app_list().await?;

    let path = config::config_path()?;
    config::save(
        &path,
        &SavedLogin {
            server: client.base_url().to_owned(),
            token: token.to_owned(),
            ca_cert: trust
                .as_ref()
                .and_then(|trust| trust.pem())
                .map(|pem| String::from_utf8_lossy(pem).into_owned()),
            // Absolute, so that messages of later commands name the file wherever
            // they run.
            ca_cert_file: ctx.global.ca_cert.as_ref().map(|path| {
                std::fs::canonicalize(path)
                    .unwrap_or_else(|_| path.clone())
                    .display()
                    .to_string()
            }),
        },
    )?;
    let fingerprint = trust.as_ref().and_then(ServerTrust::fingerprint);
    let summary = serde_json::json!({
        "server": client.base_url(),
        "config_file": path.display().to_string(),
        "ca_fingerprint": fingerprint,
    });
    ctx.ui.print(&summary, |_| {
        let ca = fingerprint
            .as_ref()
            .map(|fingerprint| format!(" (trusting only the CA {fingerprint})"))
            .unwrap_or_default();
        format!(
            "Logged in to {}{ca}; saved in {}",
            clean(client.base_url()),
            clean(&path.display().to_string())
        )
    })
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}
