//! `wharf app ...`: applications.

use super::{deleted_json, CommandContext};
use crate::error::CommandError;
use crate::output::{clean, list, or_dash, time, Fields, Table};
use clap::Subcommand;
use wharf_api::{App, AppCreate};

#[derive(Subcommand)]
pub enum AppCommand {
    /// Create an application.
    Create(AppCreateArgs),
    /// List applications.
    List,
    /// Show one application.
    Show(AppRef),
    /// Delete an application.
    Delete(AppRef),
}

#[derive(clap::Args)]
pub struct AppCreateArgs {
    /// Lowercase letters, digits and '-', at most 63 characters.
    pub name: String,
    /// A sentence about the application.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
}

#[derive(clap::Args)]
pub struct AppRef {
    /// The application's name.
    #[arg(value_name = "APP")]
    pub name: String,
}

pub async fn cmd_app(ctx: &CommandContext, command: AppCommand) -> Result<(), CommandError> {
    let client = ctx.client()?;
    match command {
        AppCommand::Create(args) => {
            let body = AppCreate {
                name: args.name,
                description: args.description,
            };
            let app = client.app_create(&body).await?;
            ctx.ui.print(&app, render_app)
        }
        AppCommand::List => {
            let apps = client.app_list().await?;
            ctx.ui.print(&apps, |apps| app_table(apps))
        }
        AppCommand::Show(args) => {
            let app = client.app_fetch(&args.name).await?;
            ctx.ui.print(&app, render_app)
        }
        AppCommand::Delete(args) => {
            client.app_delete(&args.name).await?;
            ctx.ui.print(&deleted_json(None, &args.name), |_| {
                format!("Deleted application {}", clean(&args.name))
            })
        }
    }
}

fn app_table(apps: &[App]) -> String {
    let mut table = Table::new(&["NAME", "GROUPS", "DEPLOYMENTS", "CREATED", "DESCRIPTION"]);
    for app in apps {
        table.row([
            app.name.clone(),
            list(&app.groups),
            app.deployments.len().to_string(),
            time(&app.created_at),
            app.description.clone(),
        ]);
    }
    table.render()
}

fn render_app(app: &App) -> String {
    Fields::new()
        .add("Name", &app.name)
        .add("Description", or_dash(Some(&app.description)))
        .add("Created", time(&app.created_at))
        .add("Groups", list(&app.groups))
        .add("Deployments", list(&app.deployments))
        .render()
}
