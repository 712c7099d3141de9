//! `wharf group ...`: application groups and their members.

use super::{deleted_json, CommandContext};
use crate::error::CommandError;
use crate::output::{clean, or_dash, time, Fields, Table};
use clap::Subcommand;
use wharf_api::{Group, GroupCreate, GroupInstances};

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Create a group in an application.
    Create(GroupRef),
    /// List an application's groups.
    List(AppArg),
    /// Show a group: members, current deployment, what each member runs.
    Show(GroupRef),
    /// Delete a group.
    Delete(GroupRef),
    /// Add instances to a group.
    AddInstances(GroupMembersArgs),
    /// Remove instances from a group.
    RemoveInstances(GroupMembersArgs),
    /// Run a shell script on the instances of a group, in batches, and show every
    /// host's result.
    #[command(after_help = super::exec::GROUP_EXEC_HELP)]
    Exec(super::exec::GroupExecArgs),
}

#[derive(clap::Args)]
pub struct AppArg {
    /// The application's name.
    pub app: String,
}

#[derive(clap::Args)]
pub struct GroupRef {
    /// The application's name.
    pub app: String,
    /// The group's name.
    pub group: String,
}

#[derive(clap::Args)]
pub struct GroupMembersArgs {
    /// The application's name.
    pub app: String,
    /// The group's name.
    pub group: String,
    /// Instances by id (i-...) or name.
    #[arg(required = true, value_name = "INSTANCE")]
    pub instances: Vec<String>,
}

pub async fn cmd_group(ctx: &CommandContext, command: GroupCommand) -> Result<(), CommandError> {
    let client = ctx.client()?;
    match command {
        GroupCommand::Exec(args) => super::exec::group_exec(ctx, &client, args).await,
        GroupCommand::Create(args) => {
            let body = GroupCreate { name: args.group };
            let group = client.group_create(&args.app, &body).await?;
            ctx.ui.print(&group, render_group)
        }
        GroupCommand::List(args) => {
            let groups = client.group_list(&args.app).await?;
            ctx.ui.print(&groups, |groups| group_table(groups))
        }
        GroupCommand::Show(args) => {
            let group = client.group_fetch(&args.app, &args.group).await?;
            ctx.ui.print(&group, render_group)
        }
        GroupCommand::Delete(args) => {
            client.group_delete(&args.app, &args.group).await?;
            ctx.ui
                .print(&deleted_json(Some(&args.app), &args.group), |_| {
                    format!(
                        "Deleted group {} of application {}",
                        clean(&args.group),
                        clean(&args.app)
                    )
                })
        }
        GroupCommand::AddInstances(args) => {
            let body = GroupInstances {
                instances: args.instances,
            };
            let group = client
                .group_add_instances(&args.app, &args.group, &body)
                .await?;
            ctx.ui.print(&group, render_group)
        }
        GroupCommand::RemoveInstances(args) => {
            let body = GroupInstances {
                instances: args.instances,
            };
            let group = client
                .group_remove_instances(&args.app, &args.group, &body)
                .await?;
            ctx.ui.print(&group, render_group)
        }
    }
}

fn group_table(groups: &[Group]) -> String {
    let mut table = Table::new(&["APP", "NAME", "INSTANCES", "CURRENT DEPLOYMENT", "CREATED"]);
    for g in groups {
        table.row([
            g.app.clone(),
            g.name.clone(),
            g.instances.len().to_string(),
            or_dash(g.current_deployment.as_deref()).to_owned(),
            time(&g.created_at),
        ]);
    }
    table.render()
}

fn render_group(g: &Group) -> String {
    let mut out = Fields::new()
        .add("Application", &g.app)
        .add("Group", &g.name)
        .add(
            "Current deployment",
            or_dash(g.current_deployment.as_deref()),
        )
        .add(
            "Previous deployment",
            or_dash(g.previous_deployment.as_deref()),
        )
        .add("Created", time(&g.created_at))
        .add("Instances", g.instances.len().to_string())
        .render();
    if !g.instances.is_empty() {
        out.push('\n');
        let mut table = Table::new(&[
            "ID",
            "NAME",
            "STATUS",
            "DEPLOYMENT",
            "IMAGE DIGEST",
            "DRIFT",
        ]);
        for m in &g.instances {
            table.row([
                m.id.as_str(),
                m.name.as_str(),
                m.status.as_str(),
                or_dash(m.deployment.as_deref()),
                or_dash(m.image_digest.as_deref()),
                if m.drift { "DRIFT" } else { "" },
            ]);
        }
        out.push_str(&table.render());
    }
    if !g.releases.is_empty() {
        out.push_str("\nRecent releases:\n");
        let mut table = Table::new(&["ID", "DEPLOYMENT", "KIND", "STATE", "CREATED"]);
        for r in &g.releases {
            table.row([
                r.id.clone(),
                r.deployment.clone(),
                r.kind.clone(),
                r.state.clone(),
                time(&r.created_at),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}
