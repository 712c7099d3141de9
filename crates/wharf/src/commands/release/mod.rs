//! `wharf release ...`: publishing a deployment to a group, following it until it
//! ends, the `continue`, `cancel` and `rollback` actions, and the steps' output.
//!
//! Following polls `GET /releases/{id}`. On a terminal (stderr is a tty) it draws
//! progress bars; otherwise it prints one plain line per change, so that CI logs
//! read well. Either way the progress goes to stderr: stdout gets one summary line,
//! or the final release as JSON with `--output json`.

use super::{parse_duration, CommandContext};
use crate::error::CommandError;
use crate::output::{clean, clean_block, or_dash, time, yes_no, Fields, OutputFormat, Table};
use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::pin::Pin;
use std::time::{Duration, Instant};
use wharf_api::{Release, ReleaseBatch, ReleaseCreate, ReleaseInstance, ReleaseStep, StepLog};
use wharf_client::{Client, ClientError};
use wharf_domain::release::{ReleaseState, MAX_BATCHES};

mod bars;
mod follow;
mod lines;
mod logs;
mod show;
#[cfg(test)]
mod tests;

use bars::*;
pub(crate) use follow::follow_progress;
use follow::*;
use lines::*;
use logs::*;
use show::*;

/// How often a followed release is fetched once it has run for a while.
const POLL_INTERVAL: Duration = Duration::from_millis(400);
/// The first wait between fetches; it doubles up to [`POLL_INTERVAL`]. A short
/// release (a no-op takes the server ~25 ms) is then seen to end within tens of
/// milliseconds, while a long one costs the server no more than before.
const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The longest wait between fetches of a release of at most
/// [`SMALL_RELEASE_INSTANCES`] instances: reading such a release costs the server
/// about a millisecond, and following it closely shows its end (a pull and a start
/// script take well under a second on a small fleet) without a noticeable delay.
const SMALL_RELEASE_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// See [`SMALL_RELEASE_POLL_INTERVAL`]; the view of a larger release grows with
/// its instances and steps, so it is read less often.
const SMALL_RELEASE_INSTANCES: u32 = 100;
/// How long one fetch of a followed release may wait on the server for a change;
/// short, so that step-level progress (which does not change the version) still
/// shows every couple of seconds.
const FOLLOW_WAIT_SECS: u64 = 2;
/// How long the server may stay unreachable while following before giving up.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(30);
/// How long `logs --follow` waits, after the release ended, for steps still
/// running (a cancelled release lets running instances finish).
const RUNNING_STEPS_GRACE: Duration = Duration::from_secs(120);

#[derive(Subcommand)]
pub enum ReleaseCommand {
    /// Publish a deployment to a group, and follow the release until it ends.
    #[command(after_help = FOLLOW_HELP)]
    Create(ReleaseCreateArgs),
    /// List releases, newest first.
    List(ListArgs),
    /// Show a release: its batches, instances and steps.
    Show(ShowArgs),
    /// Resume a paused release with its next batch.
    Continue(IdArg),
    /// Cancel a release: no further instance is started; running ones finish.
    Cancel(IdArg),
    /// Publish the deployment that was current before the group's current one, and
    /// follow it.
    #[command(after_help = FOLLOW_HELP)]
    Rollback(RollbackArgs),
    /// Print the output of a release's steps.
    Logs(LogsArgs),
}

const FOLLOW_HELP: &str = "\
Without --detach the command follows the release until it ends: progress bars on a
terminal, one line per change otherwise (both on stderr). It exits 0 only if the
release succeeded, 1 if it failed or was cancelled. Ctrl-C stops following, not the
release: `wharf release show ID --follow` picks it up again.";

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PauseArg {
    /// Never pause.
    Auto,
    /// Pause after the first batch until `wharf release continue`.
    First,
    /// Pause after every batch but the last.
    Each,
}

impl PauseArg {
    fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::First => "first",
            Self::Each => "each",
        }
    }
}

#[derive(clap::Args)]
pub struct ReleaseCreateArgs {
    /// The application's name.
    pub app: String,
    /// The group to publish to: every instance in it when the release is created.
    pub group: String,
    /// The deployment to publish.
    #[arg(long, value_name = "NAME")]
    pub deployment: String,
    /// How many batches to split the instances into (capped at their number);
    /// the instances of one batch run in parallel.
    #[arg(long, default_value_t = 1, value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BATCHES)))]
    pub batches: u32,
    /// When to wait for `wharf release continue`.
    #[arg(long, value_enum, default_value_t = PauseArg::Auto, value_name = "MODE")]
    pub pause: PauseArg,
    /// With `--pause auto`, how long to wait between batches, e.g. 30s or 5m.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub batch_interval: Option<Duration>,
    /// Failed instances tolerated before the release fails (default 0).
    #[arg(long, value_name = "N")]
    pub max_failures: Option<u32>,
    /// If the release fails, publish the group's previous deployment to the
    /// instances it touched.
    #[arg(long)]
    pub rollback_on_failure: bool,
    /// Print the release id and return at once instead of following the release.
    #[arg(long)]
    pub detach: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Only releases of this application.
    pub app: Option<String>,
    /// Only releases of this group of the application.
    pub group: Option<String>,
    /// How many releases to list at most (server default 50).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// The release's id (r-...).
    pub id: String,
    /// Follow the release until it ends, as `release create` does, and exit 0 only
    /// if it succeeded.
    #[arg(long)]
    pub follow: bool,
}

#[derive(clap::Args)]
pub struct IdArg {
    /// The release's id (r-...).
    pub id: String,
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// The application's name.
    pub app: String,
    /// The group's name.
    pub group: String,
    /// Print the release id and return at once instead of following the release.
    #[arg(long)]
    pub detach: bool,
}

#[derive(clap::Args)]
#[command(after_help = LOGS_HELP)]
pub struct LogsArgs {
    /// The release's id (r-...).
    pub id: String,
    /// Only this instance (id or name).
    #[arg(long, value_name = "ID|NAME")]
    pub instance: Option<String>,
    /// Only this step: fetch, prepare, pull, stop, start or verify.
    #[arg(long, value_name = "STEP")]
    pub step: Option<String>,
    /// Keep printing new output until the release has ended.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

const LOGS_HELP: &str = "\
Each step's output follows a header line such as `== web-1 start (exit 0)`. The
server keeps the last 1 MiB or so of each step; a `==` line says how much was dropped
before it. Output goes to stdout as the scripts wrote it, except that on a terminal
control characters other than newline and tab (escape sequences, carriage returns)
are shown escaped, as \\u{1b}.

With --output json, prints the logs as a JSON array; with --follow, one JSON object
per line instead, each with the new output of one step and its absolute byte
`offset` in that step's output.";

pub async fn cmd_release(
    ctx: &CommandContext,
    command: ReleaseCommand,
) -> Result<(), CommandError> {
    match command {
        ReleaseCommand::Create(args) => {
            let body = build_create(&args)?;
            let client = ctx.client()?;
            let release = client.release_create(&args.app, &args.group, &body).await?;
            started(ctx, &client, release, args.detach).await
        }
        ReleaseCommand::Rollback(args) => {
            let client = ctx.client()?;
            let release = client.release_rollback(&args.app, &args.group).await?;
            started(ctx, &client, release, args.detach).await
        }
        ReleaseCommand::List(args) => {
            let client = ctx.client()?;
            let releases = client
                .release_list(args.app.as_deref(), args.group.as_deref(), args.limit)
                .await?;
            ctx.ui.print(&releases, |releases| release_table(releases))
        }
        ReleaseCommand::Show(args) => {
            let client = ctx.client()?;
            let release = client.release_fetch(&args.id).await?;
            if args.follow {
                follow(ctx, &client, release).await
            } else {
                ctx.ui.print(&release, |r| render_release(r, Utc::now()))
            }
        }
        ReleaseCommand::Continue(args) => {
            let client = ctx.client()?;
            let release = client.release_continue(&args.id).await?;
            ctx.ui.print(&release, |r| render_release(r, Utc::now()))?;
            if ctx.ui.format == OutputFormat::Table {
                ctx.ui.note(&format!(
                    "Release {id} continues; follow it with `wharf release show {id} --follow`.",
                    id = clean(&release.id)
                ))?;
            }
            Ok(())
        }
        ReleaseCommand::Cancel(args) => {
            let client = ctx.client()?;
            let release = client.release_cancel(&args.id).await?;
            ctx.ui.print(&release, |r| render_release(r, Utc::now()))
        }
        ReleaseCommand::Logs(args) => logs(ctx, args).await,
    }
}

fn build_create(args: &ReleaseCreateArgs) -> Result<ReleaseCreate, CommandError> {
    let batch_interval_secs = match args.batch_interval {
        None => None,
        Some(_) if args.pause != PauseArg::Auto => {
            return Err(CommandError::usage(
                "--batch-interval applies only with --pause auto: the other modes wait for `wharf release continue`",
            ))
        }
        Some(interval) => Some(u32::try_from(interval.as_secs()).map_err(|_| {
            CommandError::usage("--batch-interval is too long (the server takes at most 1 day)")
        })?),
    };
    Ok(ReleaseCreate {
        deployment: args.deployment.clone(),
        batches: Some(args.batches),
        pause: Some(args.pause.as_str().to_owned()),
        batch_interval_secs,
        max_failures: args.max_failures,
        rollback_on_failure: args.rollback_on_failure,
    })
}

/// After a release was created: print its id (`--detach`) or follow it.
async fn started(
    ctx: &CommandContext,
    client: &Client,
    release: Release,
    detach: bool,
) -> Result<(), CommandError> {
    if !detach {
        return follow(ctx, client, release).await;
    }
    if ctx.ui.format == OutputFormat::Json {
        return ctx.ui.json(&release);
    }
    // The id alone on stdout, so that `ID=$(wharf release create ... --detach)` works.
    ctx.ui.stdout(&clean(&release.id))?;
    ctx.ui.note(&format!(
        "{}. Follow it with `wharf release show {id} --follow`.",
        intro(&release),
        id = clean(&release.id)
    ))
}
