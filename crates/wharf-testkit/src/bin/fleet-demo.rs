//! `cargo run -q -p wharf-testkit --bin fleet-demo [-- --keep] [-- --hosts N]`
//!
//! The seed scenario on a small real fleet, as a walkthrough: starts 2 Docker-in-Docker
//! hosts running `wharf agent`, a registry with a password holding the sample image v1
//! and v2, and `wharf server`; creates the registry, app, group and deployments with the
//! `wharf` CLI (printing each command); publishes v1 in 2 batches (the CLI's progress
//! output), shows every host answering `hello from v1`, then v2 over it; prints where to
//! look. With `--keep` it stays up until Ctrl-C; otherwise it cleans up and exits.
//!
//! Needs what the fleet tests need (crates/wharf-testkit/FLEET.md): root, a Docker
//! Engine, `debootstrap`, `docker-registry`, `busybox-static`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use wharf_testkit::fleet::{Fleet, FleetOptions, AGENT_LOG};
use wharf_testkit::fleet_scenario::{self as scenario, shell_word, Scenario};
use wharf_testkit::sample_image;

const USAGE: &str = "usage: fleet-demo [--keep] [--hosts N]

Runs the seed scenario on a small real fleet (Docker-in-Docker hosts), printing each
wharf command. --keep: stay up until Ctrl-C so you can look around.";

struct Args {
    keep: bool,
    hosts: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        keep: false,
        hosts: 2,
    };
    let mut rest = std::env::args().skip(1);
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--keep" => args.keep = true,
            "--hosts" => {
                let value = rest.next().context("--hosts needs a number")?;
                args.hosts = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=8).contains(n))
                    .with_context(|| format!("--hosts {value}: write a number from 1 to 8"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(args)
}

fn heading(text: &str) {
    println!("\n== {text}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("fleet-demo: {error:#}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    heading(&format!(
        "Starting a fleet of {} hosts, a registry and wharf server",
        args.hosts
    ));
    println!("(the first run builds the host image with debootstrap: about a minute)");
    let fleet = tokio::select! {
        fleet = Fleet::start(FleetOptions::with_hosts(args.hosts)) => fleet,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("fleet-demo: interrupted");
            std::process::exit(130);
        }
    };
    let fleet = match fleet {
        Ok(fleet) => fleet,
        Err(error) => {
            eprintln!("fleet-demo: cannot start the fleet: {error:#}");
            std::process::exit(1);
        }
    };
    // The fleet is removed when `fleet` is dropped, also on errors and Ctrl-C.
    let outcome = tokio::select! {
        outcome = walkthrough(&fleet) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(error) = outcome {
        eprintln!("fleet-demo: {error:#}");
        eprintln!("{}", fleet.diagnostics());
        drop(fleet);
        std::process::exit(1);
    }
    where_to_look(&fleet, args.keep);
    println!("\nThe demo took {:.0}s.", started.elapsed().as_secs_f64());
    if args.keep {
        println!("Staying up; press Ctrl-C to stop and clean up.");
        let _ = tokio::signal::ctrl_c().await;
        println!("\nCleaning up…");
    }
    drop(fleet);
    println!("Cleaned up.");
}

async fn walkthrough(fleet: &Fleet) -> anyhow::Result<()> {
    heading("The sample image v1 and v2, pushed to the fleet's registry");
    let mut demo = Scenario::new(fleet, true)?;
    demo.push_versions(&["v1", "v2"]).await?;

    heading("Registry, app and group of every host, with the wharf CLI");
    println!("export WHARF_SERVER={}", fleet.server_url());
    println!(
        "export WHARF_TOKEN=$(cat {})",
        admin_token_path(fleet).display()
    );
    demo.create_basics().await?;

    heading("Two docker-image deployments");
    for version in ["v1", "v2"] {
        let start = scenario::start_script(&demo.image(version), 0);
        demo.create_deployment(version, version, &start, &[])
            .await?;
    }

    for version in ["v1", "v2"] {
        heading(&format!("Publishing {version} in 2 batches"));
        follow(
            fleet,
            &[
                "release",
                "create",
                scenario::APP,
                scenario::GROUP,
                "--deployment",
                version,
                "--batches",
                "2",
            ],
        )
        .await?;
        show_answers(fleet, version).await?;
    }
    heading("The group now");
    demo.wharf(&["group", "show", scenario::APP, scenario::GROUP], None)
        .await?;
    Ok(())
}

/// Runs `wharf ARGS` with its output on this terminal (the CLI's progress display).
async fn follow(fleet: &Fleet, args: &[&str]) -> anyhow::Result<()> {
    let shown: Vec<String> = args.iter().map(|arg| shell_word(arg)).collect();
    println!("$ wharf {}", shown.join(" "));
    let token =
        std::fs::read_to_string(admin_token_path(fleet)).context("reading the admin token")?;
    let status = tokio::process::Command::new(fleet.wharf_bin())
        .args(args)
        .env("WHARF_SERVER", fleet.server_url())
        .env("WHARF_TOKEN", token.trim())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .context("running wharf")?;
    if !status.success() {
        bail!("wharf {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Waits until every host answers `hello from VERSION` and prints the answers.
async fn show_answers(fleet: &Fleet, version: &str) -> anyhow::Result<()> {
    let expected = sample_image::hello_text(version);
    for host in fleet.hosts() {
        let url = format!("http://{}:{}/hello", host.ip, sample_image::CONTAINER_PORT);
        fleet
            .wait_http_body(
                &host.name,
                sample_image::CONTAINER_PORT,
                "/hello",
                &expected,
                Duration::from_secs(30),
            )
            .await?;
        println!("$ curl {url}   # {}\n{}", host.name, expected.trim_end());
    }
    Ok(())
}

fn admin_token_path(fleet: &Fleet) -> std::path::PathBuf {
    fleet.run_dir().join("server-data").join("admin.token")
}

fn where_to_look(fleet: &Fleet, keep: bool) {
    heading("Where to look");
    let run_dir = fleet.run_dir();
    println!("server         {}", fleet.server_url());
    println!("console        {}/", fleet.server_url());
    println!("admin token    {}", admin_token_path(fleet).display());
    println!(
        "CLI            WHARF_SERVER={} WHARF_TOKEN=$(cat {}) {} release list {} {}",
        fleet.server_url(),
        admin_token_path(fleet).display(),
        fleet.wharf_bin().display(),
        scenario::APP,
        scenario::GROUP
    );
    println!("server log     {}", run_dir.join("server.log").display());
    println!(
        "registry       {} (user {})",
        fleet.registry_local(),
        fleet.registry_credentials().0
    );
    for host in fleet.hosts() {
        println!(
            "{:<14} http://{}:{}/hello   agent log: docker exec {} cat {AGENT_LOG}   shell: docker exec -it {} bash",
            host.name,
            host.ip,
            sample_image::CONTAINER_PORT,
            host.container,
            host.container
        );
    }
    println!(
        "fleet run      {} (FLEET.md: debugging a run)",
        fleet.run_id()
    );
    if !keep {
        println!("(without --keep all of this is removed now; run with --keep to look around)");
    }
}
