//! `wharf group exec` and `wharf exec ...`: running a shell script on the
//! instances of a group (a group exec), following it like a release, and its
//! per-instance results and output.
//!
//! Following reuses the release follower (an exec is a release row on the server):
//! progress on stderr, then on stdout a per-instance summary (state, exit code,
//! duration, last lines of output), or with `--output json` the exec and every
//! instance's output.

use super::release::follow_progress;
use super::{parse_duration, CommandContext};
use crate::error::CommandError;
use crate::output::{clean, clean_block, or_dash, text_block, time, Fields, Table};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use wharf_api::{Exec, ExecCreate, ReleaseInstance, StepLog};
use wharf_client::Client;
use wharf_domain::release::MAX_BATCHES;

/// Lines of output shown per instance in the summary.
const SUMMARY_LINES: usize = 5;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["script", "command"])))]
pub struct GroupExecArgs {
    /// The application's name.
    pub app: String,
    /// The group's name.
    pub group: String,
    /// A script file to run with bash on each instance.
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// Only these instances (ids or names) of the group.
    #[arg(long, num_args = 1.., value_name = "INSTANCE")]
    pub instances: Vec<String>,
    /// Split the instances into this many batches, run one after the other.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BATCHES)))]
    pub batches: u32,
    /// Run on at most this many instances at once (adds batches if needed).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// How long the script may run on each instance (default 10m).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Run the script as this user (the agent must run as root).
    #[arg(long, value_name = "USER")]
    pub as_user: Option<String>,
    /// Print the exec's id and return at once instead of following it.
    #[arg(long)]
    pub detach: bool,
    /// A command to run instead of a script file, after `--`; its words are
    /// quoted for bash.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub const GROUP_EXEC_HELP: &str = "\
Runs the script with bash on each instance, through its agent, with the rules of
deployment steps: its own process group, the timeout, output streamed and bounded.
An instance that fails does not stop the others, and the group's deployment does
not change. Only one release or exec runs on a group at a time.

Without --detach the command follows the exec (progress on stderr) and then prints
each instance's state, exit code, duration and last lines of output; --output json
prints the exec and every instance's whole retained output. It exits 0 only if the
script succeeded on every instance.

Examples:
  wharf group exec shop web --script scripts/prepare-host.sh --batches 2
  wharf group exec shop web --instances web-1 -- systemctl status docker";

#[derive(clap::Subcommand)]
pub enum ExecCommand {
    /// List group execs, newest first.
    List(ListArgs),
    /// Show an exec: its batches and instances.
    Show(IdArg),
    /// Print the output of an exec on each instance.
    Logs(LogsArgs),
    /// Cancel an exec: instances not yet started are not run on.
    Cancel(IdArg),
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Only execs of this application.
    #[arg(long)]
    pub app: Option<String>,
    /// Only execs of this group (needs --app).
    #[arg(long, requires = "app")]
    pub group: Option<String>,
    /// At most this many (default 50).
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(clap::Args)]
pub struct IdArg {
    /// The exec's id (x-...).
    pub id: String,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// The exec's id (x-...).
    pub id: String,
    /// Only this instance (id or name).
    #[arg(long)]
    pub instance: Option<String>,
}

/// What `--output json` prints for a followed exec: the exec and its output.
#[derive(Serialize)]
struct ExecReport<'a> {
    exec: &'a Exec,
    outputs: &'a [StepLog],
}

/// The script to send: the file's text, or the command's words quoted for bash.
fn script_of(args: &GroupExecArgs) -> Result<String, CommandError> {
    if let Some(path) = &args.script {
        return std::fs::read_to_string(path).map_err(|err| {
            CommandError::usage(format!("cannot read --script {}: {err}", path.display()))
        });
    }
    if args.command.is_empty() {
        return Err(CommandError::usage(
            "give a script with --script FILE or a command after `--`",
        ));
    }
    Ok(args
        .command
        .iter()
        .map(|word| shell_quote(word))
        .collect::<Vec<_>>()
        .join(" "))
}

/// Quotes a word for bash unless it is plainly safe.
fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

pub async fn group_exec(
    ctx: &CommandContext,
    client: &Client,
    args: GroupExecArgs,
) -> Result<(), CommandError> {
    let timeout_secs = match args.timeout {
        None => None,
        Some(timeout) => Some(u32::try_from(timeout.as_secs()).map_err(|_| {
            CommandError::usage("--timeout is too long (the server takes at most 1 day)")
        })?),
    };
    let body = ExecCreate {
        script: script_of(&args)?,
        instances: (!args.instances.is_empty()).then(|| args.instances.clone()),
        batches: Some(args.batches),
        concurrency: args.concurrency,
        timeout_secs,
        as_user: args.as_user.clone(),
    };
    let exec = client.exec_create(&args.app, &args.group, &body).await?;
    if args.detach {
        return ctx.ui.print(&exec, |e| {
            // The id alone on stdout, so that `ID=$(wharf group exec ... --detach)` works.
            clean(&e.id).into_owned()
        });
    }
    let release = client.release_fetch(&exec.id).await?;
    follow_progress(ctx, client, release).await?;
    let exec = client.exec_fetch(&exec.id).await?;
    let outputs = client.exec_logs(&exec.id, None).await?;
    match ctx.ui.format {
        crate::output::OutputFormat::Json => ctx.ui.json(&ExecReport {
            exec: &exec,
            outputs: &outputs,
        })?,
        crate::output::OutputFormat::Table => {
            ctx.ui
                .stdout(&render_summary(&exec, &outputs, Utc::now()))?
        }
    }
    exit_status(&exec)
}

/// Success only if the script succeeded on every instance.
fn exit_status(exec: &Exec) -> Result<(), CommandError> {
    let c = &exec.counts;
    if exec.state == "succeeded" && c.succeeded == c.total {
        return Ok(());
    }
    let mut message = format!(
        "exec {} {}: {}/{} instance(s) succeeded",
        exec.id, exec.state, c.succeeded, c.total
    );
    if let Some(why) = &exec.message {
        let _ = write!(message, " ({why})");
    }
    Err(CommandError::Failed(message))
}

pub async fn cmd_exec(ctx: &CommandContext, command: ExecCommand) -> Result<(), CommandError> {
    let client = ctx.client()?;
    match command {
        ExecCommand::List(args) => {
            let execs = client
                .exec_list(args.app.as_deref(), args.group.as_deref(), args.limit)
                .await?;
            ctx.ui.print(&execs, |execs| exec_table(execs))
        }
        ExecCommand::Show(args) => {
            let exec = client.exec_fetch(&args.id).await?;
            ctx.ui.print(&exec, |e| render_exec(e, Utc::now()))
        }
        ExecCommand::Cancel(args) => {
            let exec = client.exec_cancel(&args.id).await?;
            ctx.ui.print(&exec, |e| render_exec(e, Utc::now()))
        }
        ExecCommand::Logs(args) => {
            let logs = client.exec_logs(&args.id, args.instance.as_deref()).await?;
            ctx.ui.print(&logs, |logs| render_logs(logs))
        }
    }
}

fn exec_table(execs: &[Exec]) -> String {
    let mut table = Table::new(&[
        "ID",
        "APP",
        "GROUP",
        "STATE",
        "INSTANCES",
        "FAILED",
        "CREATED",
        "SCRIPT",
    ]);
    for e in execs {
        table.row([
            clean(&e.id).into_owned(),
            clean(&e.app).into_owned(),
            clean(&e.group).into_owned(),
            clean(&e.state).into_owned(),
            e.counts.total.to_string(),
            e.counts.failed.to_string(),
            time(&e.created_at),
            clean(&first_line(&e.script)).into_owned(),
        ]);
    }
    table.render()
}

fn first_line(script: &str) -> String {
    let line = script.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut short: String = line.chars().take(40).collect();
    if line.chars().count() > 40 || script.lines().filter(|l| !l.trim().is_empty()).count() > 1 {
        short.push('…');
    }
    short
}

fn instances(exec: &Exec) -> impl Iterator<Item = &ReleaseInstance> {
    exec.batches.iter().flat_map(|b| &b.instances)
}

fn exit_code(instance: &ReleaseInstance) -> Option<i32> {
    instance
        .steps
        .iter()
        .find(|s| s.name == "exec")
        .and_then(|s| s.exit_code)
}

fn duration(instance: &ReleaseInstance, now: DateTime<Utc>) -> String {
    match instance.started_at {
        None => "-".to_owned(),
        Some(start) => {
            let end = instance.finished_at.unwrap_or(now);
            let millis = (end - start).num_milliseconds().max(0);
            format!("{:.1}s", millis as f64 / 1000.0)
        }
    }
}

fn render_exec(e: &Exec, now: DateTime<Utc>) -> String {
    let mut fields = Fields::new();
    fields
        .add("Exec", clean(&e.id))
        .add("Application", clean(&e.app))
        .add("Group", clean(&e.group))
        .add("State", clean(&e.state))
        .add("Batches", e.batch_count.to_string())
        .add(
            "Instances",
            format!(
                "{} total, {} succeeded, {} failed, {} running, {} pending",
                e.counts.total,
                e.counts.succeeded,
                e.counts.failed,
                e.counts.running,
                e.counts.pending
            ),
        )
        .add("Timeout", format!("{} s", e.timeout_secs))
        .add("As user", or_dash(e.as_user.as_deref()))
        .add("Created", time(&e.created_at))
        .add(
            "Finished",
            e.finished_at
                .as_ref()
                .map(time)
                .unwrap_or_else(|| "-".into()),
        )
        .add("Message", clean(or_dash(e.message.as_deref())));
    let mut out = fields.render();
    out.push('\n');
    out.push_str(&text_block("Script", &clean_block(&e.script)));
    let mut table = Table::new(&["BATCH", "INSTANCE", "STATE", "EXIT", "DURATION", "MESSAGE"]);
    for batch in &e.batches {
        for i in &batch.instances {
            table.row([
                batch.number.to_string(),
                clean(&i.name).into_owned(),
                clean(&i.state).into_owned(),
                exit_code(i).map_or("-".to_owned(), |c| c.to_string()),
                duration(i, now),
                clean(or_dash(i.message.as_deref())).into_owned(),
            ]);
        }
    }
    out.push('\n');
    out.push_str(&table.render());
    out
}

/// The summary after following: one block per instance with its last lines.
fn render_summary(e: &Exec, outputs: &[StepLog], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    for i in instances(e) {
        let code = exit_code(i).map_or("-".to_owned(), |c| c.to_string());
        let _ = writeln!(
            out,
            "== {} ({}): {}, exit {}, {}",
            clean(&i.name),
            clean(&i.id),
            clean(&i.state),
            code,
            duration(i, now)
        );
        if let Some(message) = &i.message {
            let _ = writeln!(out, "   {}", clean(message));
        }
        let output = outputs
            .iter()
            .find(|l| l.instance_id == i.id && l.step == "exec")
            .map(|l| l.output.as_str())
            .unwrap_or("");
        let lines: Vec<&str> = output.lines().collect();
        let start = lines.len().saturating_sub(SUMMARY_LINES);
        if start > 0 {
            let _ = writeln!(
                out,
                "   ... ({start} earlier line(s); see `wharf exec logs {}`)",
                clean(&e.id)
            );
        }
        for line in &lines[start..] {
            let _ = writeln!(out, "   {}", clean(line));
        }
    }
    let c = &e.counts;
    let _ = write!(
        out,
        "Exec {} {}: {}/{} instance(s) succeeded",
        clean(&e.id),
        clean(&e.state),
        c.succeeded,
        c.total
    );
    out
}

fn render_logs(logs: &[StepLog]) -> String {
    let mut out = String::new();
    for log in logs.iter().filter(|l| l.step == "exec") {
        let code = log.exit_code.map_or("-".to_owned(), |c| c.to_string());
        let _ = writeln!(
            out,
            "== {} ({}): {}, exit {}",
            clean(&log.instance_name),
            clean(&log.instance_id),
            clean(&log.state),
            code
        );
        if log.dropped_bytes > 0 {
            let _ = writeln!(out, "... ({} earlier byte(s) dropped)", log.dropped_bytes);
        }
        out.push_str(&clean_block(&log.output));
        if !log.output.is_empty() && !log.output.ends_with('\n') {
            out.push('\n');
        }
        if let Some(message) = &log.message {
            let _ = writeln!(out, "({})", clean(message));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_words_are_quoted_for_bash() {
        assert_eq!(shell_quote("echo"), "echo");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn first_lines_are_short() {
        assert_eq!(first_line("\necho hi\n"), "echo hi");
        assert_eq!(first_line("a\nb\n"), "a…");
    }
}
