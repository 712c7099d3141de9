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

// ------------------------------------------------------------------ following

fn state_of(release: &Release) -> Option<ReleaseState> {
    ReleaseState::parse(&release.state)
}

fn is_terminal(release: &Release) -> bool {
    state_of(release).is_some_and(ReleaseState::is_terminal)
}

/// Follows a release until it ends, then prints the outcome; an error unless it
/// succeeded.
async fn follow(
    ctx: &CommandContext,
    client: &Client,
    release: Release,
) -> Result<(), CommandError> {
    let release = follow_progress(ctx, client, release).await?;
    outcome(ctx, client, &release).await
}

/// Shows the progress of a release (or of a group exec, which is a release row
/// too) on stderr until it ends, and returns it as it ended. Ctrl-C stops
/// following with [`CommandError::Interrupted`].
pub(crate) async fn follow_progress(
    ctx: &CommandContext,
    client: &Client,
    mut release: Release,
) -> Result<Release, CommandError> {
    let mut view = if std::io::stderr().is_terminal() {
        Progress::Bars(Bars::new(&release))
    } else {
        Progress::Lines(Lines::default())
    };
    let mut interrupt = ctrl_c();
    view.show(ctx, &release)?;
    let release_id = release.id.clone();
    let longest_wait = if release.counts.total <= SMALL_RELEASE_INSTANCES {
        SMALL_RELEASE_POLL_INTERVAL
    } else {
        POLL_INTERVAL
    };
    let mut poller = Poller::new(client, &release_id).longest_wait(longest_wait);
    // The release's version from the last answer: the server answers the next
    // fetch only once the release has changed (or after FOLLOW_WAIT_SECS), so the
    // end of a release shows as soon as the server records it.
    let mut version: Option<String> = None;
    while !is_terminal(&release) {
        let after = version.clone();
        let fetch = move |c: &'_ Client, id: &'_ str| {
            let after = after.clone();
            let id = id.to_owned();
            let c = c.clone();
            async move {
                c.release_follow(&id, after.as_deref(), FOLLOW_WAIT_SECS)
                    .await
            }
        };
        let next = tokio::select! {
            () = &mut interrupt => None,
            next = poller.next(fetch) => Some(next?),
        };
        let Some(next) = next else {
            view.abandon();
            let id = clean(&release.id);
            ctx.ui.note(&format!(
                "\nStopped following; release {id} goes on without this command. \
                 Follow it again with `wharf release show {id} --follow`, \
                 or cancel it with `wharf release cancel {id}`."
            ))?;
            return Err(CommandError::Interrupted);
        };
        let (next, next_version) = next;
        if next_version.is_some() {
            // The server waits for changes itself; a server that gives no
            // version is polled at the intervals above instead.
            poller.no_pause();
        }
        release = next;
        version = next_version;
        view.show(ctx, &release)?;
    }
    view.finish(&release);
    Ok(release)
}

/// A future that resolves on Ctrl-C (SIGINT). On Unix the handler is in place when
/// this returns, before anything is printed; if it cannot be installed the future
/// never resolves and Ctrl-C keeps its default effect.
fn ctrl_c() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::interrupt()) {
            Ok(mut sigint) => Box::pin(async move {
                if sigint.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
            }),
            Err(_) => Box::pin(std::future::pending()),
        }
    }
    #[cfg(not(unix))]
    {
        Box::pin(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Fetches something at an interval that grows from [`FIRST_POLL_INTERVAL`] to
/// [`POLL_INTERVAL`] (or a shorter longest wait), riding out a server that is
/// briefly unreachable (restarting, say) for up to [`UNREACHABLE_GRACE`].
struct Poller<'a> {
    client: &'a Client,
    id: &'a str,
    first: bool,
    interval: Duration,
    longest: Duration,
}

impl<'a> Poller<'a> {
    fn new(client: &'a Client, id: &'a str) -> Self {
        Self {
            client,
            id,
            first: true,
            interval: FIRST_POLL_INTERVAL,
            longest: POLL_INTERVAL,
        }
    }

    /// Fetches again at once: for fetches that wait on the server.
    fn no_pause(&mut self) {
        self.interval = Duration::ZERO;
        self.longest = Duration::ZERO;
    }

    /// Waits at most `longest` between fetches.
    fn longest_wait(mut self, longest: Duration) -> Self {
        self.longest = longest;
        self
    }

    async fn next<T, F, Fut>(&mut self, fetch: F) -> Result<T, CommandError>
    where
        F: Fn(&'a Client, &'a str) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        if !std::mem::take(&mut self.first) {
            tokio::time::sleep(self.interval).await;
            self.interval = (self.interval * 2).min(self.longest);
        }
        let mut failing_since: Option<Instant> = None;
        loop {
            match fetch(self.client, self.id).await {
                Ok(value) => return Ok(value),
                Err(err) if err.is_transient() => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= UNREACHABLE_GRACE {
                        return Err(err.into());
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
}

/// Prints how a followed release ended and turns anything but success into an
/// error (exit code 1).
async fn outcome(
    ctx: &CommandContext,
    client: &Client,
    release: &Release,
) -> Result<(), CommandError> {
    match ctx.ui.format {
        OutputFormat::Json => ctx.ui.json(release)?,
        OutputFormat::Table => ctx.ui.stdout(&summary(release))?,
    }
    if state_of(release) == Some(ReleaseState::Succeeded) {
        return Ok(());
    }
    let id = clean(&release.id);
    let mut notes = String::new();
    let mut hint = None;
    for instance in release.batches.iter().flat_map(|b| &b.instances) {
        if instance.state != "failed" {
            continue;
        }
        let step = instance
            .steps
            .iter()
            .rev()
            .find(|s| s.state == "failed")
            .or(instance.steps.last());
        let mut line = format!("  {} failed", clean(&instance.name));
        if let Some(step) = step {
            let _ = write!(line, " in step {}", clean(&step.name));
            if let Some(code) = step.exit_code {
                let _ = write!(line, " (exit {code})");
            }
        }
        if let Some(message) = &instance.message {
            let _ = write!(line, ": {}", clean(message));
        }
        let _ = writeln!(notes, "{line}");
        if hint.is_none() {
            hint = Some(match step {
                Some(step) => format!(
                    "wharf release logs {id} --instance {} --step {}",
                    clean(&instance.name),
                    clean(&step.name)
                ),
                None => format!(
                    "wharf release logs {id} --instance {}",
                    clean(&instance.name)
                ),
            });
        }
    }
    if let Some(hint) = hint {
        let _ = writeln!(notes, "See what a step printed with `{hint}`.");
    }
    if release.rollback_on_failure && state_of(release) == Some(ReleaseState::Failed) {
        // The server starts the rollback itself; point at it when it is there.
        if let Ok(recent) = client
            .release_list(Some(&release.app), Some(&release.group), Some(10))
            .await
        {
            if let Some(rollback) = recent
                .iter()
                .find(|r| r.rollback_of.as_deref() == Some(&release.id))
            {
                let _ = writeln!(
                    notes,
                    "Rollback release {rid} publishes {dep} again; follow it with `wharf release show {rid} --follow`.",
                    rid = clean(&rollback.id),
                    dep = clean(&rollback.deployment)
                );
            }
        }
    }
    if !notes.is_empty() {
        ctx.ui.note(&notes)?;
    }
    let mut message = format!("release {} {}", release.id, release.state);
    if let Some(why) = &release.message {
        let _ = write!(message, ": {why}");
    }
    Err(CommandError::Failed(message))
}

/// One line about how a release ended, for stdout in table mode.
fn summary(release: &Release) -> String {
    let c = &release.counts;
    let mut line = format!(
        "Release {} {}: {}/{} instance(s) succeeded",
        clean(&release.id),
        clean(&release.state),
        c.succeeded,
        c.total
    );
    if c.failed > 0 {
        let _ = write!(line, ", {} failed", c.failed);
    }
    if c.cancelled > 0 {
        let _ = write!(line, ", {} cancelled", c.cancelled);
    }
    if let Some(took) = span(release.started_at.as_ref(), release.finished_at.as_ref()) {
        let _ = write!(line, " in {took}");
    }
    line
}

/// What a new release is, in one line.
fn intro(release: &Release) -> String {
    let what = match release.kind.as_str() {
        "rollback" => "Rollback release",
        "catch-up" => "Catch-up release",
        _ => "Release",
    };
    format!(
        "{what} {} publishes {} to {}/{}: {} instance(s) in {} batch(es){}",
        clean(&release.id),
        clean(&release.deployment),
        clean(&release.app),
        clean(&release.group),
        release.counts.total,
        release.batch_count,
        match release.pause.as_str() {
            "first" => ", pausing after the first",
            "each" => ", pausing after each",
            _ => "",
        }
    )
}

/// The last batch that has ended, the one a paused release paused after.
fn paused_after(release: &Release) -> Option<u32> {
    release
        .batches
        .iter()
        .filter(|b| matches!(b.state.as_str(), "succeeded" | "failed" | "cancelled"))
        .map(|b| b.number)
        .max()
}

fn pause_note(release: &Release) -> String {
    let id = clean(&release.id);
    let after = match paused_after(release) {
        Some(n) => format!(" after batch {n}/{}", release.batch_count),
        None => String::new(),
    };
    format!(
        "release {id} paused{after}: run 'wharf release continue {id}' to go on \
         (or 'wharf release cancel {id}')"
    )
}

enum Progress {
    Bars(Bars),
    Lines(Lines),
}

impl Progress {
    fn show(&mut self, ctx: &CommandContext, release: &Release) -> Result<(), CommandError> {
        match self {
            Self::Bars(bars) => {
                bars.update(release, Utc::now());
                Ok(())
            }
            Self::Lines(lines) => {
                let text = lines.update(release, Utc::now());
                if text.is_empty() {
                    Ok(())
                } else {
                    ctx.ui.note(&text)
                }
            }
        }
    }

    fn finish(&mut self, release: &Release) {
        if let Self::Bars(bars) = self {
            bars.update(release, Utc::now());
            bars.finish();
        }
    }

    fn abandon(&mut self) {
        if let Self::Bars(bars) = self {
            bars.abandon();
        }
    }
}

// ------------------------------------------------------------------ plain lines

/// The plain-lines view: compares each snapshot with the previous one and says
/// what changed, one line per change.
#[derive(Default)]
struct Lines {
    previous: Option<Box<Release>>,
}

impl Lines {
    fn update(&mut self, release: &Release, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        let id = clean(&release.id);
        let previous = self.previous.take();
        let old_state = previous.as_ref().map(|p| p.state.as_str());
        if previous.is_none() {
            let _ = writeln!(out, "{}", intro(release));
        }
        let state_changed = old_state != Some(release.state.as_str());
        if state_changed && release.state == "running" {
            let verb = if old_state == Some("paused") {
                "continues"
            } else {
                "running"
            };
            let _ = writeln!(out, "release {id} {verb}");
        }
        let total = release.batch_count;
        for batch in &release.batches {
            let old_batch = previous
                .as_ref()
                .and_then(|p| p.batches.iter().find(|b| b.number == batch.number));
            let batch_changed = old_batch.map(|b| b.state.as_str()) != Some(batch.state.as_str());
            let batch_ended = matches!(batch.state.as_str(), "succeeded" | "failed" | "cancelled");
            let prefix = format!("batch {}/{total}", batch.number);
            if batch_changed && batch.state == "running" {
                let names: Vec<String> = batch
                    .instances
                    .iter()
                    .map(|i| clean(&i.name).into_owned())
                    .collect();
                let _ = writeln!(out, "{prefix} running on {}", names.join(", "));
            }
            for instance in &batch.instances {
                let old = old_batch.and_then(|b| b.instances.iter().find(|i| i.id == instance.id));
                instance_lines(&mut out, &prefix, instance, old, now);
            }
            if batch_changed && batch_ended {
                let _ = writeln!(out, "{prefix} {}", clean(&batch.state));
            }
        }
        if state_changed {
            match release.state.as_str() {
                "paused" => {
                    let _ = writeln!(out, "{}", pause_note(release));
                }
                "succeeded" | "failed" | "cancelled" => {
                    let mut line = format!("release {id} {}", clean(&release.state));
                    if let Some(took) =
                        span(release.started_at.as_ref(), release.finished_at.as_ref())
                    {
                        let _ = write!(line, " in {took}");
                    }
                    if let Some(message) = &release.message {
                        let _ = write!(line, ": {}", clean(message));
                    }
                    let _ = writeln!(out, "{line}");
                }
                _ => {}
            }
        }
        self.previous = Some(Box::new(release.clone()));
        out
    }
}

fn instance_lines(
    out: &mut String,
    prefix: &str,
    instance: &ReleaseInstance,
    old: Option<&ReleaseInstance>,
    now: DateTime<Utc>,
) {
    let name = clean(&instance.name);
    for step in &instance.steps {
        let old_step = old.and_then(|i| i.steps.iter().find(|s| s.name == step.name));
        if old_step.map(|s| s.state.as_str()) == Some(step.state.as_str()) {
            continue;
        }
        let step_name = clean(&step.name);
        if step.state == "running" {
            let _ = writeln!(out, "{prefix} {name}: {step_name} running");
            continue;
        }
        let mut line = format!("{prefix} {name}: {step_name} {}", clean(&step.state));
        if let Some(code) = step.exit_code {
            let _ = write!(line, " (exit {code})");
        }
        let _ = write!(line, " in {}", step_duration(step, now));
        if let Some(message) = &step.message {
            let _ = write!(line, ": {}", clean(message));
        }
        let _ = writeln!(out, "{line}");
    }
    let old_state = old.map(|i| i.state.as_str());
    if old_state == Some(instance.state.as_str()) {
        return;
    }
    match instance.state.as_str() {
        "succeeded" | "failed" | "cancelled" => {
            let mut line = format!("{name} {}", clean(&instance.state));
            if let Some(took) = span(instance.started_at.as_ref(), instance.finished_at.as_ref()) {
                let _ = write!(line, " in {took}");
            }
            if let Some(message) = &instance.message {
                let _ = write!(line, ": {}", clean(message));
            }
            let _ = writeln!(out, "{line}");
        }
        _ => {}
    }
}

// ------------------------------------------------------------------ progress bars

/// The terminal view: a status line and one bar per batch (instances done out of
/// the batch's instances, its state, what runs now and for how long).
struct Bars {
    // Kept so the bars stay drawn together for the whole follow.
    _multi: MultiProgress,
    header: ProgressBar,
    batches: Vec<ProgressBar>,
}

impl Bars {
    fn new(release: &Release) -> Self {
        let multi = MultiProgress::new();
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        header.enable_steady_tick(Duration::from_millis(120));
        let style = ProgressStyle::with_template("  {prefix} [{bar:24}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let batches = release
            .batches
            .iter()
            .map(|batch| {
                let bar = multi.add(ProgressBar::new(batch.instances.len() as u64));
                bar.set_style(style.clone());
                bar.set_prefix(format!("batch {}/{}", batch.number, release.batch_count));
                bar
            })
            .collect();
        Self {
            _multi: multi,
            header,
            batches,
        }
    }

    fn update(&mut self, release: &Release, now: DateTime<Utc>) {
        let mut status = format!("{}: {}", intro(release), clean(&release.state));
        if release.state == "paused" {
            status = pause_note(release);
        } else if let Some(message) = &release.message {
            let _ = write!(status, ": {}", clean(message));
        }
        self.header.set_message(status);
        for (bar, batch) in self.batches.iter().zip(&release.batches) {
            bar.set_length(batch.instances.len() as u64);
            let done = batch
                .instances
                .iter()
                .filter(|i| matches!(i.state.as_str(), "succeeded" | "failed" | "cancelled"))
                .count();
            bar.set_position(done as u64);
            bar.set_message(batch_message(batch, now));
        }
    }

    /// Leaves the bars on the screen in their last state.
    fn finish(&mut self) {
        self.header.finish();
        for bar in &self.batches {
            bar.finish();
        }
        // indicatif leaves the cursor at the end of the last bar; what is printed
        // next belongs on a line of its own.
        let _ = writeln!(std::io::stderr());
    }

    fn abandon(&mut self) {
        for bar in &self.batches {
            bar.abandon();
        }
        self.header.abandon();
    }
}

/// A batch's state, elapsed time, failures and the steps running on its instances.
fn batch_message(batch: &ReleaseBatch, now: DateTime<Utc>) -> String {
    let mut message = clean(&batch.state).into_owned();
    let started = batch.instances.iter().filter_map(|i| i.started_at).min();
    let ended = matches!(batch.state.as_str(), "succeeded" | "failed" | "cancelled");
    let finished = if ended {
        batch.instances.iter().filter_map(|i| i.finished_at).max()
    } else {
        Some(now)
    };
    if let Some(took) = span(started.as_ref(), finished.as_ref()) {
        let _ = write!(message, " {took}");
    }
    let failed = batch
        .instances
        .iter()
        .filter(|i| i.state == "failed")
        .count();
    if failed > 0 {
        let _ = write!(message, ", {failed} failed");
    }
    let running: Vec<String> = batch
        .instances
        .iter()
        .filter_map(|i| {
            let step = i.steps.iter().rev().find(|s| s.state == "running")?;
            Some(format!("{}: {}", clean(&i.name), clean(&step.name)))
        })
        .collect();
    if !running.is_empty() {
        let _ = write!(message, "  {}", running.join(", "));
    }
    message
}

// ------------------------------------------------------------------ show and list

fn release_table(releases: &[Release]) -> String {
    let mut table = Table::new(&[
        "ID",
        "APP",
        "GROUP",
        "DEPLOYMENT",
        "KIND",
        "STATE",
        "INSTANCES",
        "CREATED",
        "DURATION",
    ]);
    for r in releases {
        table.row([
            r.id.clone(),
            r.app.clone(),
            r.group.clone(),
            r.deployment.clone(),
            r.kind.clone(),
            r.state.clone(),
            counts_short(r),
            time(&r.created_at),
            span(r.started_at.as_ref(), r.finished_at.as_ref()).unwrap_or_else(|| "-".into()),
        ]);
    }
    table.render()
}

/// `2/3 ok, 1 failed`: succeeded out of total, then what else is not zero.
fn counts_short(release: &Release) -> String {
    let c = &release.counts;
    let mut text = format!("{}/{} ok", c.succeeded, c.total);
    for (n, what) in [
        (c.running, "running"),
        (c.failed, "failed"),
        (c.cancelled, "cancelled"),
    ] {
        if n > 0 {
            let _ = write!(text, ", {n} {what}");
        }
    }
    text
}

fn render_release(r: &Release, now: DateTime<Utc>) -> String {
    let c = &r.counts;
    let mut fields = Fields::new();
    fields
        .add("ID", &r.id)
        .add("Application", &r.app)
        .add("Group", &r.group)
        .add("Deployment", &r.deployment)
        .add("Kind", &r.kind);
    if let Some(of) = &r.rollback_of {
        fields.add("Rollback of", of);
    }
    if let Some(by) = &r.rolled_back_by {
        fields.add("Rolled back by", by);
    }
    fields.add("State", &r.state);
    if let Some(message) = &r.message {
        fields.add("Message", message);
    }
    let interval = if r.batch_interval_secs > 0 {
        format!(", {}s between batches", r.batch_interval_secs)
    } else {
        String::new()
    };
    fields
        .add(
            "Batches",
            format!("{}, pause {}{interval}", r.batch_count, r.pause),
        )
        .add("Max failures", r.max_failures.to_string())
        .add("Rollback on failure", yes_no(r.rollback_on_failure))
        .add("Created", time(&r.created_at))
        .add(
            "Started",
            r.started_at.as_ref().map_or("-".to_owned(), time),
        )
        .add(
            "Finished",
            r.finished_at.as_ref().map_or("-".to_owned(), time),
        );
    let end = r.finished_at.or(r.started_at.map(|_| now));
    if let Some(took) = span(r.started_at.as_ref(), end.as_ref()) {
        fields.add("Duration", took);
    }
    fields.add(
        "Instances",
        format!(
            "{} total: {} succeeded, {} failed, {} running, {} pending, {} cancelled",
            c.total, c.succeeded, c.failed, c.running, c.pending, c.cancelled
        ),
    );
    let mut out = fields.render();
    for batch in &r.batches {
        let _ = writeln!(
            out,
            "\nBatch {}/{}: {}",
            batch.number,
            r.batch_count,
            clean(&batch.state)
        );
        for instance in &batch.instances {
            out.push_str(&render_instance(instance, now));
        }
    }
    out
}

fn render_instance(i: &ReleaseInstance, now: DateTime<Utc>) -> String {
    let mut line = format!(
        "  {} ({}): {}",
        clean(&i.name),
        clean(&i.id),
        clean(&i.state)
    );
    let end = i.finished_at.or(i.started_at.map(|_| now));
    if let Some(took) = span(i.started_at.as_ref(), end.as_ref()) {
        let _ = write!(line, " in {took}");
    }
    if let Some(digest) = &i.image_digest {
        let _ = write!(line, ", image {}", clean(digest));
    }
    if let Some(message) = &i.message {
        let _ = write!(line, ": {}", clean(message));
    }
    let mut out = format!("{line}\n");
    if i.steps.is_empty() {
        return out;
    }
    let mut table = Table::new(&["STEP", "STATE", "EXIT", "DURATION", "MESSAGE"]);
    for step in &i.steps {
        let mut message = step.message.clone().unwrap_or_default();
        if step.dropped_bytes > 0 {
            if !message.is_empty() {
                message.push_str("; ");
            }
            let _ = write!(message, "{} bytes of output dropped", step.dropped_bytes);
        }
        table.row([
            step.name.clone(),
            step.state.clone(),
            step.exit_code.map_or("-".to_owned(), |c| c.to_string()),
            step_duration(step, now),
            or_dash(Some(message.as_str())).to_owned(),
        ]);
    }
    for row in table.render().lines() {
        let _ = writeln!(out, "    {row}");
    }
    out
}

fn step_duration(step: &ReleaseStep, now: DateTime<Utc>) -> String {
    let end = step.finished_at.unwrap_or(now);
    span(Some(&step.started_at), Some(&end)).unwrap_or_else(|| "-".into())
}

/// The time from `start` to `end` as people read it: `3.2s`, `2m05s`, `1h02m`.
fn span(start: Option<&DateTime<Utc>>, end: Option<&DateTime<Utc>>) -> Option<String> {
    let (start, end) = (start?, end?);
    let millis = (*end - *start).num_milliseconds().max(0);
    Some(human_millis(millis as u64))
}

fn human_millis(millis: u64) -> String {
    let secs = millis / 1000;
    if secs < 60 {
        format!("{}.{}s", secs, (millis % 1000) / 100)
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

// ------------------------------------------------------------------ logs

async fn logs(ctx: &CommandContext, args: LogsArgs) -> Result<(), CommandError> {
    let client = ctx.client()?;
    let fetch_logs = |c: &Client, id: &str| {
        let (c, id) = (c.clone(), id.to_owned());
        let (instance, step) = (args.instance.clone(), args.step.clone());
        async move {
            c.release_logs(&id, instance.as_deref(), step.as_deref())
                .await
        }
    };
    let escape = std::io::stdout().is_terminal();
    if !args.follow {
        let logs = fetch_logs(&client, &args.id).await?;
        if ctx.ui.format == OutputFormat::Json {
            return ctx.ui.json(&logs);
        }
        let mut printer = LogPrinter::new(escape);
        let mut text = printer.update(&logs);
        printer.line_start(&mut text);
        return write_stdout(&text);
    }
    let mut printer = LogPrinter::new(escape);
    let mut poller = Poller::new(&client, &args.id);
    let mut ended_at: Option<Instant> = None;
    loop {
        // The release first: if it had ended, the logs fetched after it are final.
        let release = poller.next(|c, id| c.release_fetch(id)).await?;
        let logs = Poller::new(&client, &args.id).next(fetch_logs).await?;
        match ctx.ui.format {
            OutputFormat::Json => {
                for chunk in printer.chunks(&logs) {
                    let line = serde_json::to_string(&chunk)
                        .map_err(|err| CommandError::Internal(err.into()))?;
                    ctx.ui.stdout(&line)?;
                }
            }
            OutputFormat::Table => {
                write_stdout(&printer.update(&logs))?;
            }
        }
        if is_terminal(&release) {
            let running = logs.iter().any(|l| l.state == "running");
            let since = *ended_at.get_or_insert_with(Instant::now);
            if !running {
                break;
            }
            if since.elapsed() >= RUNNING_STEPS_GRACE {
                ctx.ui.note(&format!(
                    "release {} ended but some steps still show as running; stopped following",
                    clean(&release.id)
                ))?;
                break;
            }
        }
    }
    if ctx.ui.format == OutputFormat::Table && !printer.at_line_start {
        write_stdout("\n")?;
    }
    Ok(())
}

/// Writes log text on stdout as it is (no newline added).
fn write_stdout(text: &str) -> Result<(), CommandError> {
    if text.is_empty() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CommandError::output)
}

/// What `logs --follow --output json` prints, one per line: the new output of one
/// step since the previous object about it.
#[derive(Debug, Serialize, PartialEq)]
struct LogChunk {
    instance_id: String,
    instance_name: String,
    step: String,
    state: String,
    exit_code: Option<i32>,
    message: Option<String>,
    /// The byte offset of `output` in everything the step printed.
    offset: u64,
    /// Bytes the server dropped (kept no more) between the previous chunk and this one.
    skipped_bytes: u64,
    output: String,
}

/// Where printing of one step's output has got to.
#[derive(Default)]
struct Cursor {
    /// The absolute offset printed up to: `dropped_bytes` plus the bytes of
    /// `output` already printed.
    printed_to: u64,
    /// Whether the step's end has been reported.
    ended: bool,
}

/// Turns successive fetches of a release's logs into the new text to print.
struct LogPrinter {
    escape: bool,
    cursors: HashMap<(String, String), Cursor>,
    /// The step whose output was printed last, to repeat its header when another
    /// step's output comes in between.
    last: Option<(String, String)>,
    at_line_start: bool,
}

impl LogPrinter {
    fn new(escape: bool) -> Self {
        Self {
            escape,
            cursors: HashMap::new(),
            last: None,
            at_line_start: true,
        }
    }

    /// The new part of `log` since the last call: bytes skipped because the
    /// server dropped them, the new text, and its absolute offset. Moves the cursor.
    fn advance<'a>(cursor: &mut Cursor, log: &'a StepLog) -> (u64, u64, &'a str) {
        let start = log.dropped_bytes;
        let end = start + log.output.len() as u64;
        if cursor.printed_to >= end {
            return (0, cursor.printed_to, "");
        }
        let (skipped, mut from) = if cursor.printed_to < start {
            (start - cursor.printed_to, 0)
        } else {
            (0, (cursor.printed_to - start) as usize)
        };
        while !log.output.is_char_boundary(from) {
            from += 1;
        }
        cursor.printed_to = end;
        (skipped, start + from as u64, &log.output[from..])
    }

    /// The text to print for what is new in `logs`.
    fn update(&mut self, logs: &[StepLog]) -> String {
        let mut out = String::new();
        for log in logs {
            let key = (log.instance_id.clone(), log.step.clone());
            let is_new = !self.cursors.contains_key(&key);
            let cursor = self.cursors.entry(key.clone()).or_default();
            let (skipped, offset, text) = Self::advance(cursor, log);
            let running = log.state == "running";
            let ends_now = !running && !cursor.ended;
            if !is_new && text.is_empty() && skipped == 0 && !ends_now {
                continue;
            }
            cursor.ended = !running;
            if is_new {
                // A step seen for the first time: its header says how it stands.
                self.line_start(&mut out);
                let _ = writeln!(out, "{}", log_header(log));
            } else if self.last.as_ref() != Some(&key) {
                // More output of a step after another step's: name it again.
                self.line_start(&mut out);
                let status = if running { " (running)" } else { "" };
                let _ = writeln!(
                    out,
                    "== {} {}{status}",
                    clean(&log.instance_name),
                    clean(&log.step)
                );
            }
            if skipped > 0 {
                self.line_start(&mut out);
                let earlier = if offset == skipped { " earlier" } else { "" };
                let _ = writeln!(out, "== ({skipped} bytes of{earlier} output dropped)");
            }
            if !text.is_empty() {
                if self.escape {
                    out.push_str(&clean_block(text));
                } else {
                    out.push_str(text);
                }
                self.at_line_start = text.ends_with('\n');
            }
            // A step that ended after its header was printed gets its result below
            // its output.
            if ends_now && !is_new {
                self.line_start(&mut out);
                let _ = writeln!(out, "{}", log_header(log));
            }
            self.last = Some(key);
        }
        out
    }

    /// The JSON chunks for what is new in `logs`.
    fn chunks(&mut self, logs: &[StepLog]) -> Vec<LogChunk> {
        let mut chunks = Vec::new();
        for log in logs {
            let key = (log.instance_id.clone(), log.step.clone());
            let is_new = !self.cursors.contains_key(&key);
            let cursor = self.cursors.entry(key).or_default();
            let (skipped, offset, text) = Self::advance(cursor, log);
            let running = log.state == "running";
            let ends_now = !running && !cursor.ended;
            if !is_new && text.is_empty() && skipped == 0 && !ends_now {
                continue;
            }
            cursor.ended = !running;
            chunks.push(LogChunk {
                instance_id: log.instance_id.clone(),
                instance_name: log.instance_name.clone(),
                step: log.step.clone(),
                state: log.state.clone(),
                exit_code: log.exit_code,
                message: log.message.clone(),
                offset,
                skipped_bytes: skipped,
                output: text.to_owned(),
            });
        }
        chunks
    }

    fn line_start(&mut self, out: &mut String) {
        if !self.at_line_start {
            out.push('\n');
            self.at_line_start = true;
        }
    }
}

/// `== web-1 start (exit 0)`: instance, step, and how the step stands.
fn log_header(log: &StepLog) -> String {
    let mut status = Vec::new();
    if log.state == "running" {
        status.push("running".to_owned());
    } else if let Some(code) = log.exit_code {
        status.push(format!("exit {code}"));
    } else {
        status.push(clean(&log.state).into_owned());
    }
    if let Some(message) = &log.message {
        status.push(clean(message).into_owned());
    }
    format!(
        "== {} {} ({})",
        clean(&log.instance_name),
        clean(&log.step),
        status.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_api::InstanceCounts;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn step(
        name: &str,
        state: &str,
        start: i64,
        end: Option<i64>,
        exit: Option<i32>,
    ) -> ReleaseStep {
        ReleaseStep {
            name: name.into(),
            state: state.into(),
            started_at: at(start),
            finished_at: end.map(at),
            exit_code: exit,
            dropped_bytes: 0,
            message: None,
        }
    }

    fn instance(name: &str, state: &str, steps: Vec<ReleaseStep>) -> ReleaseInstance {
        ReleaseInstance {
            id: format!("i-{name}"),
            name: name.into(),
            state: state.into(),
            dispatched_at: steps.first().map(|s| s.started_at),
            started_at: steps.first().map(|s| s.started_at),
            finished_at: if matches!(state, "succeeded" | "failed") {
                steps.last().and_then(|s| s.finished_at)
            } else {
                None
            },
            image_digest: None,
            message: (state == "failed").then(|| "start exited with 3".to_owned()),
            steps,
        }
    }

    fn release(state: &str, batches: Vec<ReleaseBatch>) -> Release {
        Release {
            id: "r-1".into(),
            app: "web".into(),
            group: "prod".into(),
            deployment: "v1".into(),
            state: state.into(),
            kind: "release".into(),
            pause: "first".into(),
            batch_count: batches.len() as u32,
            batch_interval_secs: 0,
            max_failures: 0,
            rollback_on_failure: false,
            rollback_of: None,
            rolled_back_by: None,
            message: None,
            created_at: at(0),
            started_at: Some(at(0)),
            finished_at: None,
            counts: InstanceCounts::default(),
            batches,
        }
    }

    fn batch(number: u32, state: &str, instances: Vec<ReleaseInstance>) -> ReleaseBatch {
        ReleaseBatch {
            number,
            state: state.into(),
            instances,
        }
    }

    #[test]
    fn plain_lines_say_what_changed() {
        let mut lines = Lines::default();
        let pending = release(
            "running",
            vec![
                batch(1, "running", vec![instance("web-1", "running", vec![])]),
                batch(2, "pending", vec![instance("web-2", "pending", vec![])]),
            ],
        );
        let text = lines.update(&pending, at(1));
        assert!(
            text.contains("publishes v1 to web/prod: 0 instance(s) in 2 batch(es)"),
            "{text}"
        );
        assert!(text.contains("release r-1 running\n"), "{text}");
        assert!(text.contains("batch 1/2 running on web-1\n"), "{text}");
        assert!(!text.contains("batch 2/2"), "{text}");

        let starting = release(
            "running",
            vec![
                batch(
                    1,
                    "running",
                    vec![instance(
                        "web-1",
                        "running",
                        vec![
                            step("fetch", "succeeded", 1, Some(1), None),
                            step("start", "running", 1, None, None),
                        ],
                    )],
                ),
                batch(2, "pending", vec![instance("web-2", "pending", vec![])]),
            ],
        );
        let text = lines.update(&starting, at(2));
        assert_eq!(
            text,
            "batch 1/2 web-1: fetch succeeded in 0.0s\nbatch 1/2 web-1: start running\n"
        );
        // Nothing changed, nothing printed.
        assert_eq!(lines.update(&starting, at(3)), "");

        let paused = release(
            "paused",
            vec![
                batch(
                    1,
                    "succeeded",
                    vec![instance(
                        "web-1",
                        "succeeded",
                        vec![
                            step("fetch", "succeeded", 1, Some(1), None),
                            step("start", "succeeded", 1, Some(4), Some(0)),
                        ],
                    )],
                ),
                batch(2, "pending", vec![instance("web-2", "pending", vec![])]),
            ],
        );
        let text = lines.update(&paused, at(5));
        assert_eq!(
            text,
            "batch 1/2 web-1: start succeeded (exit 0) in 3.0s\n\
             web-1 succeeded in 3.0s\n\
             batch 1/2 succeeded\n\
             release r-1 paused after batch 1/2: run 'wharf release continue r-1' to go on \
             (or 'wharf release cancel r-1')\n"
        );
    }

    #[test]
    fn failures_name_the_step_and_message() {
        let mut lines = Lines::default();
        let mut failed = release(
            "failed",
            vec![batch(
                1,
                "failed",
                vec![instance(
                    "web-\u{1b}1",
                    "failed",
                    vec![step("start", "failed", 0, Some(2), Some(3))],
                )],
            )],
        );
        failed.finished_at = Some(at(2));
        failed.message = Some("1 instance(s) failed".into());
        let text = lines.update(&failed, at(3));
        assert!(
            text.contains("batch 1/1 web-\\u{1b}1: start failed (exit 3) in 2.0s\n"),
            "{text}"
        );
        assert!(
            text.contains("web-\\u{1b}1 failed in 2.0s: start exited with 3\n"),
            "{text}"
        );
        assert!(
            text.ends_with("release r-1 failed in 2.0s: 1 instance(s) failed\n"),
            "{text}"
        );
    }

    #[test]
    fn show_renders_batches_instances_and_steps() {
        let r = release(
            "succeeded",
            vec![batch(
                1,
                "succeeded",
                vec![instance(
                    "web-1",
                    "succeeded",
                    vec![
                        step("fetch", "succeeded", 0, Some(0), None),
                        step("start", "succeeded", 0, Some(65), Some(0)),
                    ],
                )],
            )],
        );
        let text = render_release(&r, at(100));
        assert!(text.contains("Batch 1/1: succeeded\n"), "{text}");
        assert!(
            text.contains("  web-1 (i-web-1): succeeded in 1m05s\n"),
            "{text}"
        );
        assert!(
            text.contains("    STEP   STATE      EXIT  DURATION  MESSAGE\n"),
            "{text}"
        );
        assert!(
            text.contains("    start  succeeded  0     1m05s     -\n"),
            "{text}"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_millis(3_249), "3.2s");
        assert_eq!(human_millis(125_000), "2m05s");
        assert_eq!(human_millis(3_720_000), "1h02m");
    }

    fn log(step: &str, state: &str, output: &str, dropped: u64) -> StepLog {
        StepLog {
            instance_id: "i-1".into(),
            instance_name: "web-1".into(),
            step: step.into(),
            state: state.into(),
            exit_code: (state != "running").then_some(0),
            output: output.into(),
            dropped_bytes: dropped,
            message: None,
        }
    }

    #[test]
    fn logs_print_headers_and_only_new_output() {
        let mut printer = LogPrinter::new(false);
        assert_eq!(
            printer.update(&[log("start", "running", "one\n", 0)]),
            "== web-1 start (running)\none\n"
        );
        assert_eq!(printer.update(&[log("start", "running", "one\n", 0)]), "");
        assert_eq!(
            printer.update(&[log("start", "running", "one\ntwo\n", 0)]),
            "two\n"
        );
        // The server dropped "one\n" and kept a tail that moved forward.
        assert_eq!(
            printer.update(&[log("start", "running", "two\nthree", 4)]),
            "three"
        );
        // The tail moved past what was printed: the gap is said, then the tail.
        assert_eq!(
            printer.update(&[log("start", "running", "five\n", 20)]),
            "\n== (7 bytes of output dropped)\nfive\n"
        );
        assert_eq!(
            printer.update(&[
                log("start", "succeeded", "five\nsix\n", 20),
                log("verify", "running", "", 0)
            ]),
            "six\n== web-1 start (exit 0)\n== web-1 verify (running)\n"
        );
    }

    #[test]
    fn interleaved_output_names_its_step_again() {
        let mut printer = LogPrinter::new(false);
        let mut other = log("start", "running", "a1\n", 0);
        other.instance_id = "i-2".into();
        other.instance_name = "web-2".into();
        printer.update(&[log("start", "running", "b1\n", 0), other.clone()]);
        other.output.push_str("a2\n");
        assert_eq!(
            printer.update(&[log("start", "succeeded", "b1\nb2\n", 0), other]),
            "== web-1 start\nb2\n== web-1 start (exit 0)\n== web-2 start (running)\na2\n"
        );
    }

    #[test]
    fn logs_of_ended_steps_print_once_with_their_result() {
        let mut printer = LogPrinter::new(true);
        let mut fetch = log("fetch", "succeeded", "", 0);
        fetch.exit_code = None;
        let mut failed = log("start", "failed", "boom\n\u{1b}[2J", 10);
        failed.exit_code = Some(3);
        assert_eq!(
            printer.update(&[fetch, failed.clone()]),
            "== web-1 fetch (succeeded)\n\
             == web-1 start (exit 3)\n\
             == (10 bytes of earlier output dropped)\n\
             boom\n\\u{1b}[2J"
        );
        assert_eq!(printer.update(&[failed]), "");
    }

    #[test]
    fn log_chunks_carry_absolute_offsets() {
        let mut printer = LogPrinter::new(false);
        let chunks = printer.chunks(&[log("start", "running", "ab\n", 5)]);
        assert_eq!((chunks[0].offset, chunks[0].skipped_bytes), (5, 5));
        let chunks = printer.chunks(&[log("start", "succeeded", "ab\ncd\n", 5)]);
        assert_eq!(chunks[0].offset, 8);
        assert_eq!(chunks[0].output, "cd\n");
        assert!(printer
            .chunks(&[log("start", "succeeded", "ab\ncd\n", 5)])
            .is_empty());
    }

    #[test]
    fn batch_interval_needs_auto() {
        let args = ReleaseCreateArgs {
            app: "web".into(),
            group: "prod".into(),
            deployment: "v1".into(),
            batches: 2,
            pause: PauseArg::First,
            batch_interval: Some(Duration::from_secs(30)),
            max_failures: None,
            rollback_on_failure: false,
            detach: false,
        };
        assert!(matches!(build_create(&args), Err(CommandError::Usage(_))));
        let body = build_create(&ReleaseCreateArgs {
            pause: PauseArg::Auto,
            ..args
        })
        .unwrap();
        assert_eq!(body.batch_interval_secs, Some(30));
        assert_eq!(body.pause.as_deref(), Some("auto"));
    }
}
