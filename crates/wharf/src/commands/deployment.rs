//! `wharf deployment ...`: immutable revisions of an application. Scripts are read
//! from files (`-` for standard input) so they can be kept and reviewed as files.

use super::{deleted_json, parse_duration, CommandContext};
use crate::error::CommandError;
use crate::output::{clean, or_dash, text_block, time, Fields, Table};
use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wharf_api::{Deployment, DeploymentCreate, ImageFields, TimeoutsInput, VerifyCheck};
use wharf_domain::deployment::MAX_SCRIPT_BYTES;

#[derive(Subcommand)]
pub enum DeploymentCommand {
    /// Create a deployment of an application.
    Create(Box<DeploymentCreateArgs>),
    /// List an application's deployments.
    List(AppArg),
    /// Show a deployment, with the address its image is pulled from.
    Show(DeploymentRef),
    /// Delete a deployment.
    Delete(DeploymentRef),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeploymentType {
    /// Pull an image, then run the scripts.
    DockerImage,
    /// Only run the scripts.
    Command,
}

impl DeploymentType {
    fn as_str(self) -> &'static str {
        match self {
            Self::DockerImage => "docker-image",
            Self::Command => "command",
        }
    }
}

#[derive(clap::Args)]
pub struct DeploymentCreateArgs {
    /// The application's name.
    pub app: String,
    /// The deployment's name, e.g. v1 or 2024-05-01.
    pub name: String,
    /// What the deployment runs.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: DeploymentType,
    /// The registry to pull from (docker-image).
    #[arg(long, value_name = "REGISTRY")]
    pub registry: Option<String>,
    /// The image's namespace (docker-image).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// The image's repository (docker-image).
    #[arg(long, value_name = "REPO")]
    pub repository: Option<String>,
    /// The image's tag (docker-image).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Pull through the registry's private endpoint (docker-image).
    #[arg(long)]
    pub private_network: bool,
    /// Absolute working directory on the hosts; created if missing.
    #[arg(long, value_name = "DIR")]
    pub workdir: String,
    /// File with the start script, run with bash after the stop script; the agent
    /// has pulled the image already, so it needs no `docker pull`; `-` reads
    /// standard input.
    #[arg(long, value_name = "FILE")]
    pub start_script: PathBuf,
    /// File with the stop script, run with bash before every start: it must stop
    /// the current and earlier versions and succeed when nothing runs yet (a first
    /// release, a new host); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub stop_script: PathBuf,
    /// URL fetched from each host after the start script.
    #[arg(long, value_name = "URL")]
    pub verify_url: Option<String>,
    /// Text the verify answer must contain.
    #[arg(long, value_name = "TEXT", requires = "verify_url")]
    pub verify_expect: Option<String>,
    /// HTTP status the verify answer must have (server default 200).
    #[arg(long, value_name = "N", requires = "verify_url")]
    pub verify_status: Option<u16>,
    /// Timeout of each script step (server default 600s).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub step_timeout: Option<Duration>,
    /// Timeout of the image pull (server default 300s).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub pull_timeout: Option<Duration>,
    /// Timeout of the verify check (server default 60s).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub verify_timeout: Option<Duration>,
    /// Refuse the deployment when a script check warns, not only when a script
    /// has a syntax error. The checks: no `docker pull` in the start script (the
    /// agent pulls the image before the stop step), a stop script that succeeds
    /// when nothing runs yet and is not empty (it must stop the current and
    /// earlier versions), and shellcheck's warnings where the server has it.
    #[arg(long)]
    pub strict: bool,
}

#[derive(clap::Args)]
pub struct AppArg {
    /// The application's name.
    pub app: String,
}

#[derive(clap::Args)]
pub struct DeploymentRef {
    /// The application's name.
    pub app: String,
    /// The deployment's name.
    pub name: String,
}

pub async fn cmd_deployment(
    ctx: &CommandContext,
    command: DeploymentCommand,
) -> Result<(), CommandError> {
    match command {
        DeploymentCommand::Create(args) => {
            let app = args.app.clone();
            // Everything local (flags, script files) is checked before the client is
            // built, so that these mistakes are reported even without a server.
            let body = build_create(*args)?;
            let deployment = ctx.client()?.deployment_create(&app, &body).await?;
            ctx.ui.print(&deployment, render_deployment)?;
            // In JSON they are part of the answer; for people, notes on stderr.
            if ctx.ui.is_table() {
                for warning in &deployment.warnings {
                    ctx.ui.note(&format!("warning: {warning}"))?;
                }
            }
            Ok(())
        }
        DeploymentCommand::List(args) => {
            let deployments = ctx.client()?.deployment_list(&args.app).await?;
            ctx.ui.print(&deployments, |d| deployment_table(d))
        }
        DeploymentCommand::Show(args) => {
            let deployment = ctx
                .client()?
                .deployment_fetch(&args.app, &args.name)
                .await?;
            ctx.ui.print(&deployment, render_deployment)
        }
        DeploymentCommand::Delete(args) => {
            ctx.client()?
                .deployment_delete(&args.app, &args.name)
                .await?;
            ctx.ui
                .print(&deleted_json(Some(&args.app), &args.name), |_| {
                    format!(
                        "Deleted deployment {} of application {}",
                        clean(&args.name),
                        clean(&args.app)
                    )
                })
        }
    }
}

/// Turns the flags into the request body, reading the scripts.
fn build_create(args: DeploymentCreateArgs) -> Result<DeploymentCreate, CommandError> {
    let image = image_fields(&args)?;
    if args.start_script == Path::new("-") && args.stop_script == Path::new("-") {
        return Err(CommandError::usage(
            "only one of --start-script and --stop-script can be `-` (standard input)",
        ));
    }
    let start_script = read_script("start script", &args.start_script)?;
    let stop_script = read_script("stop script", &args.stop_script)?;
    let verify = args.verify_url.map(|url| VerifyCheck {
        url,
        expect_status: args.verify_status,
        expect_body: args.verify_expect,
    });
    let timeouts = TimeoutsInput {
        pull_secs: seconds("--pull-timeout", args.pull_timeout)?,
        script_secs: seconds("--step-timeout", args.step_timeout)?,
        verify_secs: seconds("--verify-timeout", args.verify_timeout)?,
    };
    let timeouts = (timeouts != TimeoutsInput::default()).then_some(timeouts);
    Ok(DeploymentCreate {
        name: args.name,
        kind: args.kind.as_str().to_owned(),
        image,
        workdir: args.workdir,
        start_script,
        stop_script,
        verify,
        timeouts,
        strict: args.strict,
    })
}

/// The image fields: all four for `docker-image`, none for `command`.
fn image_fields(args: &DeploymentCreateArgs) -> Result<Option<ImageFields>, CommandError> {
    let given = [
        ("--registry", &args.registry),
        ("--namespace", &args.namespace),
        ("--repository", &args.repository),
        ("--tag", &args.tag),
    ];
    match args.kind {
        DeploymentType::Command => {
            let mut extra: Vec<&str> = given
                .iter()
                .filter(|(_, v)| v.is_some())
                .map(|(flag, _)| *flag)
                .collect();
            if args.private_network {
                extra.push("--private-network");
            }
            if !extra.is_empty() {
                return Err(CommandError::usage(format!(
                    "a deployment of --type command has no image: remove {}",
                    extra.join(", ")
                )));
            }
            Ok(None)
        }
        DeploymentType::DockerImage => {
            let missing: Vec<&str> = given
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(flag, _)| *flag)
                .collect();
            if !missing.is_empty() {
                return Err(CommandError::usage(format!(
                    "a deployment of --type docker-image needs {}",
                    missing.join(", ")
                )));
            }
            let value = |v: &Option<String>| v.clone().unwrap_or_default();
            Ok(Some(ImageFields {
                registry: value(&args.registry),
                namespace: value(&args.namespace),
                repository: value(&args.repository),
                tag: value(&args.tag),
                private_network: args.private_network,
            }))
        }
    }
}

fn seconds(flag: &str, duration: Option<Duration>) -> Result<Option<u32>, CommandError> {
    duration
        .map(|d| {
            u32::try_from(d.as_secs())
                .map_err(|_| CommandError::usage(format!("{flag} is far too long")))
        })
        .transpose()
}

/// Reads a script from a file, or from standard input for `-`. Reading stops just
/// past the largest size the server accepts, so a huge file (or `/dev/zero`) is
/// refused instead of read into memory.
fn read_script(what: &str, path: &Path) -> Result<String, CommandError> {
    let shown = if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    };
    let mut bytes = Vec::new();
    let limit = MAX_SCRIPT_BYTES as u64 + 1;
    let read = if path == Path::new("-") {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|file| file.take(limit).read_to_end(&mut bytes))
    };
    read.with_context(|| format!("cannot read the {what} {shown}"))?;
    if bytes.len() > MAX_SCRIPT_BYTES {
        return Err(anyhow::anyhow!(
            "the {what} {shown} is larger than {} KiB, the most a script may have",
            MAX_SCRIPT_BYTES / 1024
        )
        .into());
    }
    String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the {what} {shown} is not valid UTF-8 text").into())
}

fn deployment_table(deployments: &[Deployment]) -> String {
    let mut table = Table::new(&["NAME", "TYPE", "IMAGE", "WORKDIR", "CREATED"]);
    for d in deployments {
        table.row([
            d.name.as_str(),
            d.kind.as_str(),
            or_dash(d.registry_address.as_deref()),
            d.workdir.as_str(),
            time(&d.created_at).as_str(),
        ]);
    }
    table.render()
}

fn render_deployment(d: &Deployment) -> String {
    let mut fields = Fields::new();
    fields
        .add("Application", &d.app)
        .add("Deployment", &d.name)
        .add("Type", &d.kind);
    if let Some(image) = &d.image {
        fields.add("Registry", &image.registry).add(
            "Private network",
            if image.private_network { "yes" } else { "no" },
        );
    }
    fields
        .add("Working directory", &d.workdir)
        .add("Created", time(&d.created_at));
    match &d.verify {
        Some(verify) => {
            fields
                .add("Verify URL", &verify.url)
                .add(
                    "Verify status",
                    verify.expect_status.unwrap_or(200).to_string(),
                )
                .add("Verify expects", or_dash(verify.expect_body.as_deref()));
        }
        None => {
            fields.add("Verify", "-");
        }
    }
    fields.add(
        "Timeouts",
        format!(
            "pull {}s, scripts {}s, verify {}s",
            d.timeouts.pull_secs, d.timeouts.script_secs, d.timeouts.verify_secs
        ),
    );
    let mut out = String::new();
    // The registry address is what operators look for first: it leads the output.
    if let Some(address) = &d.registry_address {
        out.push_str(&format!("Registry address: {}\n\n", clean(address)));
    }
    out.push_str(&fields.render());
    out.push('\n');
    out.push_str(&text_block("Start script", &d.start_script));
    out.push_str(&text_block("Stop script", &d.stop_script));
    out
}
