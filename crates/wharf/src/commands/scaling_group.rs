//! `wharf scaling-group ...`: scaling groups, which agents join with
//! `wharf agent --scaling-group NAME`, and their suspension during releases.

use super::{deleted_json, CommandContext};
use crate::error::CommandError;
use crate::output::{clean, or_dash, text_block, time, Fields, Table};
use clap::Subcommand;
use wharf_api::{ScalingGroup, ScalingGroupCreate};

#[derive(Subcommand)]
pub enum ScalingGroupCommand {
    /// Create a scaling group bound to one application group.
    Create(CreateArgs),
    /// List scaling groups.
    List,
    /// Show a scaling group: state, held instances, activities, hook runs.
    Show(NameArg),
    /// Delete a scaling group (refused while it is suspended).
    Delete(NameArg),
}

#[derive(clap::Args)]
pub struct NameArg {
    /// The scaling group's name.
    pub name: String,
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The scaling group's name.
    pub name: String,
    /// The application of the bound group.
    #[arg(long)]
    pub app: String,
    /// The application group instances join.
    #[arg(long)]
    pub group: String,
    /// A command the server runs (`bash -c`) when a release suspends the group;
    /// it sees WHARF_SCALING_GROUP and WHARF_RELEASE.
    #[arg(long, value_name = "CMD")]
    pub on_suspend: Option<String>,
    /// A command the server runs when the release ends; retried when it fails.
    #[arg(long, value_name = "CMD")]
    pub on_resume: Option<String>,
}

pub async fn cmd_scaling_group(
    ctx: &CommandContext,
    command: ScalingGroupCommand,
) -> Result<(), CommandError> {
    let client = ctx.client()?;
    match command {
        ScalingGroupCommand::Create(args) => {
            let body = ScalingGroupCreate {
                name: args.name,
                app: args.app,
                group: args.group,
                on_suspend: args.on_suspend,
                on_resume: args.on_resume,
            };
            let sg = client.scaling_group_create(&body).await?;
            ctx.ui.print(&sg, render)
        }
        ScalingGroupCommand::List => {
            let groups = client.scaling_group_list().await?;
            ctx.ui.print(&groups, |groups| table(groups))
        }
        ScalingGroupCommand::Show(args) => {
            let sg = client.scaling_group_fetch(&args.name).await?;
            ctx.ui.print(&sg, render)
        }
        ScalingGroupCommand::Delete(args) => {
            client.scaling_group_delete(&args.name).await?;
            ctx.ui.print(&deleted_json(None, &args.name), |_| {
                format!("Deleted scaling group {}", clean(&args.name))
            })
        }
    }
}

fn table(groups: &[ScalingGroup]) -> String {
    let mut table = Table::new(&["NAME", "APP", "GROUP", "STATUS", "PENDING", "CREATED"]);
    for g in groups {
        table.row([
            clean(&g.name).into_owned(),
            clean(&g.app).into_owned(),
            clean(&g.group).into_owned(),
            clean(&g.status).into_owned(),
            g.pending.len().to_string(),
            time(&g.created_at),
        ]);
    }
    table.render()
}

fn render(g: &ScalingGroup) -> String {
    let mut fields = Fields::new();
    fields
        .add("Name", clean(&g.name))
        .add("Application", clean(&g.app))
        .add("Group", clean(&g.group))
        .add("Status", clean(&g.status))
        .add("On suspend", clean(or_dash(g.on_suspend.as_deref())))
        .add("On resume", clean(or_dash(g.on_resume.as_deref())));
    if let Some(at) = &g.suspended_at {
        fields.add("Suspended at", time(at));
    }
    if g.resume_attempts > 0 {
        fields.add("Resume attempts", g.resume_attempts.to_string());
    }
    if let Some(error) = &g.last_error {
        fields.add("Last error", clean(error));
    }
    fields.add("Created", time(&g.created_at));
    let mut out = fields.render();
    if !g.pending.is_empty() {
        out.push_str("\nPending instances:\n");
        let mut table = Table::new(&["ID", "NAME", "STATE", "SINCE"]);
        for p in &g.pending {
            table.row([
                p.instance_id.clone(),
                clean(&p.instance_name).into_owned(),
                p.state.clone(),
                time(&p.held_at),
            ]);
        }
        out.push_str(&table.render());
    }
    if !g.activities.is_empty() {
        out.push_str("\nActivities:\n");
        let mut table = Table::new(&["WHEN", "ACTIVITY", "INSTANCE"]);
        for a in &g.activities {
            table.row([
                time(&a.at),
                a.kind.clone(),
                clean(&a.instance_name).into_owned(),
            ]);
        }
        out.push_str(&table.render());
    }
    if !g.hook_runs.is_empty() {
        out.push_str("\nHook runs:\n");
        let mut table = Table::new(&["WHEN", "HOOK", "RELEASE", "ATTEMPT", "EXIT", "RESULT"]);
        for r in &g.hook_runs {
            table.row([
                time(&r.started_at),
                r.hook.clone(),
                or_dash(r.release_id.as_deref()).to_owned(),
                r.attempt.to_string(),
                r.exit_code
                    .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                clean(r.error.as_deref().unwrap_or("ok")).into_owned(),
            ]);
        }
        out.push_str(&table.render());
        if let Some(last) = g.hook_runs.last().filter(|r| !r.output.is_empty()) {
            out.push('\n');
            out.push_str(&text_block(
                &format!("Output of the last {} hook", last.hook),
                &last.output,
            ));
        }
    }
    out
}
