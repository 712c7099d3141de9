//! Group execs and the hosts' Docker Engine on a real fleet, through the `wharf` CLI
//! (issue #8). Each test prints its measured durations (`--nocapture`):
//!
//! - `fleet_exec_outputs_batches_failures_and_docker_status` (one 4-host fleet):
//!   1. `wharf group exec` in 2 batches keeps every host's own output, runs batch 2 only
//!      after batch 1 finished, prints each host with its exit code, and leaves the
//!      group's deployment as it was;
//!   2. a command failing on host-2 (`exit 3`) records that exit code and output while
//!      the other hosts succeed, and the CLI exits non-zero;
//!   3. a host whose engine was stopped is shown without Docker, a docker-image release
//!      to it fails at once with the message naming the fix, and with the engine started
//!      again its status comes back (and the same release succeeds).
//! - `fleet_prepare_host_installs_docker_on_a_fresh_debian_host`: `scripts/prepare-host.sh`
//!   run twice through `wharf group exec` on a bare Debian host (no Docker; see
//!   `src/bare_host.rs`) installs and starts the engine, then finds it installed; the host
//!   then reports its engine and runs a docker-image release.
//!
//! The tests run one after another (a lock). Needs what tests/fleet.rs needs (see
//! FLEET.md) and, for the second test, access to the Debian mirror from a container
//! (`apt-get install docker.io` in the bare host).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use wharf_testkit::bare_host::BareHost;
use wharf_testkit::fleet::{Fleet, FleetOptions};
use wharf_testkit::fleet_scenario::{self as scenario, Scenario};
use wharf_testkit::fleet_test::{check, Phases};
use wharf_testkit::sample_image;

/// One test at a time: a 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Heartbeats every second, so a change of a host's engine shows within seconds.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Generous: an `apt-get install` on a loaded 2-core machine must not look offline.
const OFFLINE_AFTER: Duration = Duration::from_secs(30);
/// How long a host's Docker status may take to change on the server (heartbeats 1 s).
const STATUS_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `prepare-host.sh` may take to install Docker from the Debian mirror.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(600);
/// A release to a host without an engine must fail within this (its pull timeout is
/// the default 300 s).
const FAIL_FAST: Duration = Duration::from_secs(20);
/// Per host, a file with a random token only that host has.
const TOKEN_FILE: &str = "/etc/wharf-exec-token";

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

/// `wharf ARGS --output json`, parsed.
async fn wharf_json(fleet: &Fleet, args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.extend_from_slice(&["--output", "json"]);
    parse_json(&check(fleet.wharf_ok(&full).await, fleet))
}

fn write_script(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a script");
    path.to_string_lossy().into_owned()
}

/// The id `x-…` in the summary's last line `Exec x-… STATE: N/M instance(s) succeeded`.
fn exec_id_in_summary(summary: &str) -> String {
    let last = summary.lines().last().unwrap_or_default();
    let id = last
        .strip_prefix("Exec ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default();
    assert!(
        id.starts_with("x-"),
        "no exec id in the summary's last line {last:?}:\n{summary}"
    );
    id.to_owned()
}

/// The summary's block of each instance: its `== NAME (ID): …` line and the lines after.
fn summary_blocks(summary: &str) -> BTreeMap<String, String> {
    let mut blocks = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in summary.lines() {
        if let Some(rest) = line.strip_prefix("== ") {
            if let Some((name, text)) = current.take() {
                blocks.insert(name, text);
            }
            let name = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            current = Some((name, format!("{line}\n")));
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some((name, text)) = current {
        blocks.insert(name, text);
    }
    blocks
}

/// Every instance of an exec or release by name, with its batch number.
fn instances_by_name(release: &Value) -> BTreeMap<String, (u64, Value)> {
    let mut out = BTreeMap::new();
    for batch in release["batches"].as_array().into_iter().flatten() {
        let number = batch["number"].as_u64().unwrap_or(0);
        for instance in batch["instances"].as_array().into_iter().flatten() {
            let name = instance["name"].as_str().unwrap_or_default().to_owned();
            out.insert(name, (number, instance.clone()));
        }
    }
    out
}

/// The step `name` of an instance.
fn step<'a>(instance: &'a Value, name: &str) -> &'a Value {
    instance["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|step| step["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {instance:#}"))
}

/// The `exec` output of each instance from `wharf exec logs ID --output json`.
async fn exec_outputs(fleet: &Fleet, id: &str) -> BTreeMap<String, Value> {
    let logs = wharf_json(fleet, &["exec", "logs", id]).await;
    logs.as_array()
        .unwrap_or_else(|| panic!("exec logs is not a list: {logs:#}"))
        .iter()
        .filter(|log| log["step"] == "exec")
        .map(|log| {
            (
                log["instance_name"].as_str().unwrap_or_default().to_owned(),
                log.clone(),
            )
        })
        .collect()
}

/// The value of `KEY=VALUE` lines in a script's output.
fn field<'a>(output: &'a str, key: &str) -> Option<&'a str> {
    output
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

/// Seconds since the epoch of an RFC 3339 UTC time as the API writes it
/// (`2026-11-27T08:30:01.123456Z`).
fn epoch_seconds(text: &str) -> f64 {
    let bad = || -> ! { panic!("not an RFC 3339 UTC time: {text:?}") };
    let text = text.strip_suffix('Z').unwrap_or_else(|| bad());
    let (date, time) = text.split_once('T').unwrap_or_else(|| bad());
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    seconds as f64 + format!("0.{frac}").parse::<f64>().unwrap()
}

/// What `wharf group show APP GROUP` says about deployments: the group's current and
/// previous deployment, each member's deployment and digest, and its releases.
async fn deployment_state(fleet: &Fleet, group: &str) -> Value {
    let shown = wharf_json(fleet, &["group", "show", scenario::APP, group]).await;
    let members: Vec<Value> = shown["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            serde_json::json!({
                "name": m["name"],
                "deployment": m["deployment"],
                "image_digest": m["image_digest"],
            })
        })
        .collect();
    let releases: Vec<Value> = shown["releases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["id"].clone())
        .collect();
    serde_json::json!({
        "current_deployment": shown["current_deployment"],
        "previous_deployment": shown["previous_deployment"],
        "members": members,
        "releases": releases,
    })
}

/// `wharf instance show NAME --output json`.
async fn instance(fleet: &Fleet, name: &str) -> Value {
    wharf_json(fleet, &["instance", "show", name]).await
}

/// Waits until the instance's Docker status is reported as working (`Some(version)`,
/// returned) or as missing (`None`, with a `docker_error`).
async fn wait_docker_status(fleet: &Fleet, name: &str, working: bool) -> Value {
    let deadline = Instant::now() + STATUS_TIMEOUT;
    loop {
        let shown = instance(fleet, name).await;
        let version = shown["docker_version"].as_str().unwrap_or_default();
        let error = shown["docker_error"].as_str().unwrap_or_default();
        if working && !version.is_empty() && error.is_empty() {
            return shown;
        }
        if !working && version.is_empty() && !error.is_empty() {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not report Docker {} within {STATUS_TIMEOUT:?}: {shown:#}",
            if working { "working" } else { "missing" }
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn start_fleet(hosts: usize, phases: &mut Phases) -> Fleet {
    let options = FleetOptions::with_hosts(hosts).liveness(HEARTBEAT, OFFLINE_AFTER);
    let fleet = Fleet::start(options)
        .await
        .unwrap_or_else(|error| panic!("start a {hosts}-host fleet: {error:#}"));
    phases.done(&format!("fleet start ({hosts} hosts)"));
    fleet
}

/// The script of part 1: who it runs on, that host's own token, and when it began and
/// ended by the host's clock (every host shares this machine's kernel clock).
const WHO_SCRIPT: &str = "\
set -e
echo \"host=$(hostname)\"
echo \"token=$(cat /etc/wharf-exec-token)\"
echo \"instance=$WHARF_INSTANCE\"
echo \"began=$(date +%s.%N)\"
sleep 2
echo \"ended=$(date +%s.%N)\"
";

/// The command of part 2 (after `--`): prints, then fails with 3 on host-2 only.
const FAIL_ON_HOST_2: &str = "echo \"hello from $(hostname)\"; \
if [ \"$(hostname)\" = host-2 ]; then echo 'host-2 fails on purpose' >&2; exit 3; fi; \
echo \"done on $(hostname)\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_exec_outputs_batches_failures_and_docker_status() {
    let _serial = SERIAL.lock().await;
    let mut phases = Phases::new("fleet_exec_outputs_batches_failures_and_docker_status");
    let fleet = start_fleet(4, &mut phases).await;
    let names: Vec<String> = fleet.hosts().iter().map(|h| h.name.clone()).collect();

    // Resources: v1 in the registry, app `shop`, group `prod` of all four, and a current
    // deployment for the group (a `command` deployment, published) that execs must keep.
    let scenario = {
        let mut scenario = check(Scenario::new(&fleet, false), &fleet);
        check(scenario.push_versions(&["v1"]).await, &fleet);
        check(scenario.create_basics().await, &fleet);
        scenario
    };
    let scripts = tempfile::tempdir().unwrap();
    let base_start = write_script(
        scripts.path(),
        "base-start.sh",
        "echo base > /var/tmp/base\n",
    );
    let base_stop = write_script(scripts.path(), "base-stop.sh", "rm -f /var/tmp/base\n");
    check(
        fleet
            .wharf_ok(&[
                "deployment",
                "create",
                scenario::APP,
                "base",
                "--type",
                "command",
                "--workdir",
                "/srv/base",
                "--start-script",
                &base_start,
                "--stop-script",
                &base_stop,
            ])
            .await,
        &fleet,
    );
    check(
        fleet
            .wharf_ok(&[
                "release",
                "create",
                scenario::APP,
                scenario::GROUP,
                "--deployment",
                "base",
            ])
            .await,
        &fleet,
    );
    let before = deployment_state(&fleet, scenario::GROUP).await;
    assert_eq!(before["current_deployment"], "base", "{before:#}");
    assert!(
        before["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["deployment"] == "base"),
        "{before:#}"
    );
    // A token per host that only that host has, so "its own output" is checkable.
    let mut tokens = BTreeMap::new();
    for name in &names {
        let token = format!("{name}-{:016x}", rand::random::<u64>());
        check(
            fleet
                .exec_ok(name, &["sh", "-c", &format!("echo {token} > {TOKEN_FILE}")])
                .await,
            &fleet,
        );
        tokens.insert(name.clone(), token);
    }
    phases.done("resources created, base published");

    // ----- 1. every host's output, 2 batches in order, the summary, no deployment change
    let who = write_script(scripts.path(), "who.sh", WHO_SCRIPT);
    let run = check(
        fleet
            .wharf(&[
                "group",
                "exec",
                scenario::APP,
                scenario::GROUP,
                "--script",
                &who,
                "--batches",
                "2",
            ])
            .await,
        &fleet,
    );
    assert!(
        run.success(),
        "group exec failed ({:?}):\n{}\n{}\n{}",
        run.code,
        run.stdout,
        run.stderr,
        fleet.diagnostics()
    );
    let id = exec_id_in_summary(run.stdout.trim_end());
    assert!(
        run.stdout
            .trim_end()
            .ends_with("succeeded: 4/4 instance(s) succeeded"),
        "{}",
        run.stdout
    );
    // The summary: one block per host with its state, exit code and its own output.
    let blocks = summary_blocks(&run.stdout);
    assert_eq!(
        blocks.keys().cloned().collect::<Vec<_>>(),
        names,
        "{}",
        run.stdout
    );
    for (name, block) in &blocks {
        let head = block.lines().next().unwrap();
        assert!(
            head.contains(": succeeded, exit 0, "),
            "summary line of {name}: {head:?}"
        );
        assert!(block.contains(&format!("host={name}\n")), "{block}");
        assert!(
            block.contains(&format!("token={}\n", tokens[name])),
            "{block}"
        );
    }

    let exec = wharf_json(&fleet, &["exec", "show", &id]).await;
    assert_eq!(exec["state"], "succeeded", "{exec:#}");
    assert_eq!(exec["batch_count"], 2, "{exec:#}");
    assert_eq!(
        (
            exec["counts"]["total"].as_u64(),
            exec["counts"]["succeeded"].as_u64()
        ),
        (Some(4), Some(4)),
        "{exec:#}"
    );
    let by_name = instances_by_name(&exec);
    assert_eq!(by_name.keys().cloned().collect::<Vec<_>>(), names);
    let outputs = exec_outputs(&fleet, &id).await;
    assert_eq!(outputs.keys().cloned().collect::<Vec<_>>(), names);
    let mut host_times: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
    let mut server_times: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
    for name in &names {
        let (batch, inst) = &by_name[name];
        let exec_step = step(inst, "exec");
        assert_eq!(inst["state"], "succeeded", "{inst:#}");
        assert_eq!(exec_step["exit_code"], 0, "{inst:#}");
        let log = &outputs[name];
        let output = log["output"].as_str().unwrap_or_default();
        assert_eq!(log["exit_code"], 0, "{log:#}");
        // Its own hostname, token and instance id; nobody else's token.
        assert_eq!(field(output, "host"), Some(name.as_str()), "{output}");
        assert_eq!(
            field(output, "token"),
            Some(tokens[name].as_str()),
            "{output}"
        );
        assert_eq!(field(output, "instance"), inst["id"].as_str(), "{output}");
        for (other, token) in &tokens {
            assert!(
                other == name || !output.contains(token.as_str()),
                "{name}'s output has {other}'s token: {output}"
            );
        }
        let began: f64 = field(output, "began").unwrap().parse().unwrap();
        let ended: f64 = field(output, "ended").unwrap().parse().unwrap();
        host_times.entry(*batch).or_default().push((began, ended));
        let started = epoch_seconds(inst["started_at"].as_str().unwrap());
        let finished = epoch_seconds(inst["finished_at"].as_str().unwrap());
        server_times
            .entry(*batch)
            .or_default()
            .push((started, finished));
    }
    // Two batches of two, and batch 2 began (by the hosts' clock and by the server's)
    // only after every script of batch 1 had ended.
    assert_eq!(host_times.keys().copied().collect::<Vec<_>>(), [1, 2]);
    assert!(
        host_times.values().all(|times| times.len() == 2),
        "{host_times:?}"
    );
    for (what, times) in [("host clock", &host_times), ("server", &server_times)] {
        let batch1_end = times[&1].iter().map(|t| t.1).fold(f64::MIN, f64::max);
        let batch2_begin = times[&2].iter().map(|t| t.0).fold(f64::MAX, f64::min);
        assert!(
            batch1_end <= batch2_begin,
            "by the {what}, batch 2 began at {batch2_begin} before batch 1 ended at \
             {batch1_end}: {times:?}"
        );
    }
    // The text forms show each host's own output too.
    let logs_text = check(fleet.wharf_ok(&["exec", "logs", &id]).await, &fleet);
    for name in &names {
        assert!(
            logs_text.contains(&format!("== {name} (")) && logs_text.contains(&tokens[name]),
            "{logs_text}"
        );
    }
    let show_text = check(fleet.wharf_ok(&["exec", "show", &id]).await, &fleet);
    assert!(show_text.contains("succeeded"), "{show_text}");
    let listed = wharf_json(&fleet, &["exec", "list", "--app", scenario::APP]).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == id.as_str()),
        "{listed:#}"
    );
    // The group's deployment is what it was.
    let after = deployment_state(&fleet, scenario::GROUP).await;
    assert_eq!(
        before, after,
        "a group exec changed the group's deployment state"
    );
    phases.done("1: exec in 2 batches");

    // ----- 2. a command failing on host-2 only
    let run = check(
        fleet
            .wharf(&[
                "group",
                "exec",
                scenario::APP,
                scenario::GROUP,
                "--",
                "sh",
                "-c",
                FAIL_ON_HOST_2,
            ])
            .await,
        &fleet,
    );
    assert_eq!(
        run.code,
        Some(1),
        "the CLI must exit 1 when the command failed on a host:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains("3/4 instance(s) succeeded"),
        "{}",
        run.stderr
    );
    let id = exec_id_in_summary(run.stdout.trim_end());
    let blocks = summary_blocks(&run.stdout);
    for name in &names {
        let head = blocks[name].lines().next().unwrap();
        let expected = if name == "host-2" {
            ": failed, exit 3, "
        } else {
            ": succeeded, exit 0, "
        };
        assert!(head.contains(expected), "summary line of {name}: {head:?}");
    }
    let exec = wharf_json(&fleet, &["exec", "show", &id]).await;
    assert_eq!(
        (
            exec["counts"]["total"].as_u64(),
            exec["counts"]["succeeded"].as_u64(),
            exec["counts"]["failed"].as_u64()
        ),
        (Some(4), Some(3), Some(1)),
        "{exec:#}"
    );
    // Every instance ran: the exec itself completed, counting the failure.
    assert_eq!(exec["state"], "succeeded", "{exec:#}");
    let by_name = instances_by_name(&exec);
    let outputs = exec_outputs(&fleet, &id).await;
    for name in &names {
        let (_, inst) = &by_name[name];
        let output = outputs[name]["output"].as_str().unwrap_or_default();
        assert!(
            output.contains(&format!("hello from {name}")),
            "{name}: {output}"
        );
        if name == "host-2" {
            assert_eq!(inst["state"], "failed", "{inst:#}");
            assert_eq!(step(inst, "exec")["exit_code"], 3, "{inst:#}");
            assert_eq!(outputs[name]["exit_code"], 3, "{:#}", outputs[name]);
            assert!(output.contains("host-2 fails on purpose"), "{output}");
            assert!(!output.contains("done on"), "{output}");
        } else {
            assert_eq!(inst["state"], "succeeded", "{inst:#}");
            assert_eq!(step(inst, "exec")["exit_code"], 0, "{inst:#}");
            assert!(output.contains(&format!("done on {name}")), "{output}");
        }
    }
    assert_eq!(
        before,
        deployment_state(&fleet, scenario::GROUP).await,
        "a failing group exec changed the group's deployment state"
    );
    phases.done("2: exec failing on host-2");

    // ----- 3. a host without a working engine
    let victim = "host-3";
    let listed = wharf_json(&fleet, &["instance", "list"]).await;
    let mut version = String::new();
    for inst in listed.as_array().unwrap() {
        let v = inst["docker_version"].as_str().unwrap_or_default();
        assert!(!v.is_empty(), "no Docker version reported: {inst:#}");
        version = v.to_owned();
    }
    check(fleet.stop_docker_in_host(victim).await, &fleet);
    let shown = wait_docker_status(&fleet, victim, false).await;
    phases.done("3: engine stopped, status shows it");
    let error = shown["docker_error"].as_str().unwrap();
    let text = check(fleet.wharf_ok(&["instance", "show", victim]).await, &fleet);
    let docker_line = text
        .lines()
        .find(|line| line.trim_start().starts_with("Docker"))
        .unwrap_or_else(|| panic!("no Docker line in `instance show`:\n{text}"));
    assert!(
        docker_line.contains("none: ") && docker_line.contains("scripts/prepare-host.sh"),
        "{docker_line}"
    );
    let table = check(fleet.wharf_ok(&["instance", "list"]).await, &fleet);
    for name in &names {
        let row = table
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some(name.as_str()))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        let expected = if name == victim {
            "none"
        } else {
            version.as_str()
        };
        assert!(
            cells.contains(&expected),
            "{name}'s row lacks {expected:?}: {row}"
        );
    }

    // A docker-image release to it (a group of its own) fails at its pull step at once.
    check(
        fleet
            .wharf_ok(&["group", "create", scenario::APP, "solo"])
            .await,
        &fleet,
    );
    check(
        fleet
            .wharf_ok(&["group", "add-instances", scenario::APP, "solo", victim])
            .await,
        &fleet,
    );
    let start = scenario::start_script(&scenario.image("v1"), 0);
    check(
        scenario.create_deployment("v1", "v1", &start, &[]).await,
        &fleet,
    );
    let created = Instant::now();
    let release = check(
        fleet
            .wharf(&[
                "release",
                "create",
                scenario::APP,
                "solo",
                "--deployment",
                "v1",
            ])
            .await,
        &fleet,
    );
    let took = created.elapsed();
    assert_eq!(
        release.code,
        Some(1),
        "a release to a host without an engine must fail:\n{}\n{}",
        release.stdout,
        release.stderr
    );
    assert!(
        took < FAIL_FAST,
        "the release took {took:?} to fail (pull timeout 300 s)"
    );
    let releases = wharf_json(&fleet, &["release", "list", scenario::APP, "solo"]).await;
    let release_id = releases[0]["id"].as_str().unwrap().to_owned();
    let shown_release = wharf_json(&fleet, &["release", "show", &release_id]).await;
    assert_eq!(shown_release["state"], "failed", "{shown_release:#}");
    let (_, inst) = &instances_by_name(&shown_release)[victim];
    assert_eq!(inst["state"], "failed", "{inst:#}");
    let names_of_steps: Vec<&str> = inst["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names_of_steps, ["fetch", "prepare", "pull"], "{inst:#}");
    let pull = step(inst, "pull");
    assert_eq!(pull["state"], "failed", "{inst:#}");
    let message = pull["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Docker Engine not reachable")
            && message.contains("wharf group exec shop solo --script scripts/prepare-host.sh"),
        "the pull step's message does not say what is wrong and how to fix it: {message:?}"
    );
    let pull_took = epoch_seconds(pull["finished_at"].as_str().unwrap())
        - epoch_seconds(pull["started_at"].as_str().unwrap());
    assert!(
        pull_took < 5.0,
        "the pull step took {pull_took} s: {inst:#}"
    );
    phases.done(&format!(
        "3: release to it failed in {:.1}s (pull step {pull_took:.2}s)",
        took.as_secs_f64()
    ));

    // The engine back: the status comes back, and the same release now succeeds.
    check(fleet.start_docker_in_host(victim).await, &fleet);
    let shown = wait_docker_status(&fleet, victim, true).await;
    assert_eq!(shown["docker_version"], version.as_str(), "{shown:#}");
    let text = check(fleet.wharf_ok(&["instance", "show", victim]).await, &fleet);
    assert!(
        text.contains(&format!("Docker Engine {version}")),
        "{text}\n(the error was {error:?})"
    );
    let again = check(
        fleet
            .wharf(&[
                "release",
                "create",
                scenario::APP,
                "solo",
                "--deployment",
                "v1",
            ])
            .await,
        &fleet,
    );
    assert!(
        again.success(),
        "with the engine back the release must succeed:\n{}\n{}",
        again.stdout,
        again.stderr
    );
    check(
        fleet
            .wait_http_body(
                victim,
                sample_image::CONTAINER_PORT,
                "/hello",
                &sample_image::hello_text("v1"),
                Duration::from_secs(30),
            )
            .await,
        &fleet,
    );
    phases.done("3: engine started, status back, release succeeded");
    drop(scenario);
    drop(fleet);
    phases.done("clean-up");
    phases.finish();
}

/// `scripts/prepare-host.sh` of this checkout.
fn prepare_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/prepare-host.sh")
}

/// Test-bed configuration an operator could have written before preparing the host
/// (`/etc/docker/daemon.json`): the nested engine puts its containers' cgroups below its
/// own (inside the bare host's container, so removing the host leaves none behind, as
/// for the fleet hosts), and trusts the fleet's plain-HTTP registry.
fn daemon_json(fleet: &Fleet) -> String {
    serde_json::json!({
        "cgroup-parent": "wharf-nested",
        "insecure-registries": [fleet.registry_for_hosts()],
    })
    .to_string()
}

/// Test-bed configuration for Debian's `/etc/init.d/docker`, which sources
/// `/etc/default/docker`: the init script raises the open-files limit to 1048576 and the
/// process limit to unlimited (`ulimit -n`, `ulimit -p`) under `set -e`. A container
/// without `CAP_SYS_RESOURCE` (this machine refuses `--privileged`, and its engine's own
/// hard limit is 20000) cannot raise a hard limit, so the unmodified script stops there
/// and no engine starts — only in such a container: a real host runs the script as root
/// with every capability (or runs systemd). Here a failing `ulimit` keeps the current
/// limits instead (a shell function shadows the builtin in the script's shell).
const DEFAULT_DOCKER: &str = "\
# Wharf test bed: this host is a container that cannot raise its hard limits.
ulimit() { command ulimit \"$@\" 2>/dev/null || echo \"docker init: ulimit $* not permitted here; limits unchanged\" >&2; }
";

/// Test-bed configuration: a line in `/etc/fstab` naming the cgroup file system, which
/// makes Debian's `/etc/init.d/docker` leave `/sys/fs/cgroup` alone. Without it the
/// script creates and mounts the cgroup v1 hierarchies it finds unmounted, and this
/// container's `/sys/fs/cgroup` is this machine's (bind-mounted read-write, as for the
/// fleet hosts): the directories would stay behind on the test machine.
const FSTAB_CGROUP_LINE: &str =
    "cgroup /sys/fs/cgroup cgroup noauto 0 0 # Wharf test bed: provided by the container runtime\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_prepare_host_installs_docker_on_a_fresh_debian_host() {
    let _serial = SERIAL.lock().await;
    let mut phases = Phases::new("fleet_prepare_host_installs_docker_on_a_fresh_debian_host");
    let fleet = start_fleet(1, &mut phases).await;
    let bare = check(BareHost::start(&fleet, "bare-1").await, &fleet);
    phases.done("bare host image ready, host started, agent online");
    let on_bare = |result: anyhow::Result<String>| {
        result.unwrap_or_else(|error| panic!("{error:#}\n{}", bare.diagnostics()))
    };

    // A fresh host: no docker.io, no engine, and its agent says so.
    let probe = check(
        bare.sh("command -v docker || echo no-docker-cli; dpkg-query -W -f='${Status}' docker.io 2>&1 || true")
            .await,
        &fleet,
    );
    assert!(
        probe.stdout.contains("no-docker-cli") && !probe.stdout.contains("install ok installed"),
        "the bare host is not bare: {}",
        probe.stdout
    );
    let shown = wait_docker_status(&fleet, bare.name(), false).await;
    assert!(
        shown["docker_error"]
            .as_str()
            .unwrap()
            .contains("/var/run/docker.sock"),
        "{shown:#}"
    );

    // The operator's configuration, then the group of the bare host.
    on_bare(bare.exec_ok(&["mkdir", "-p", "/etc/docker"]).await);
    let written = check(
        bare.exec_with_stdin(
            &["sh", "-c", "cat > /etc/docker/daemon.json"],
            daemon_json(&fleet).as_bytes(),
        )
        .await,
        &fleet,
    );
    assert!(written.success(), "{}", written.stderr);
    let written = check(
        bare.exec_with_stdin(
            &["sh", "-c", "cat > /etc/default/docker"],
            DEFAULT_DOCKER.as_bytes(),
        )
        .await,
        &fleet,
    );
    assert!(written.success(), "{}", written.stderr);
    let written = check(
        bare.exec_with_stdin(
            &["sh", "-c", "cat >> /etc/fstab"],
            FSTAB_CGROUP_LINE.as_bytes(),
        )
        .await,
        &fleet,
    );
    assert!(written.success(), "{}", written.stderr);
    let scenario = {
        let mut scenario = check(Scenario::new(&fleet, false), &fleet);
        check(scenario.push_versions(&["v1"]).await, &fleet);
        check(scenario.create_basics().await, &fleet);
        scenario
    };
    check(
        fleet
            .wharf_ok(&["group", "create", scenario::APP, "fresh"])
            .await,
        &fleet,
    );
    check(
        fleet
            .wharf_ok(&[
                "group",
                "add-instances",
                scenario::APP,
                "fresh",
                bare.name(),
            ])
            .await,
        &fleet,
    );
    phases.done("fresh host checked, configured, resources created");

    // First run: installs docker.io from the Debian mirror and starts the engine. It may
    // take longer than the CLI helper's 2 minutes, so it is followed through the API.
    let script = prepare_script();
    let script = script.to_str().unwrap();
    let id = check(
        fleet
            .wharf_ok(&[
                "group",
                "exec",
                scenario::APP,
                "fresh",
                "--script",
                script,
                "--timeout",
                "10m",
                "--detach",
            ])
            .await,
        &fleet,
    );
    assert!(id.starts_with("x-"), "not an exec id: {id:?}");
    let deadline = Instant::now() + PREPARE_TIMEOUT;
    let exec = loop {
        let exec = wharf_json(&fleet, &["exec", "show", &id]).await;
        if ["succeeded", "failed", "cancelled"].contains(&exec["state"].as_str().unwrap_or("")) {
            break exec;
        }
        assert!(
            Instant::now() < deadline,
            "prepare-host.sh did not finish within {PREPARE_TIMEOUT:?}: {exec:#}\n{}",
            bare.diagnostics()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let outputs = exec_outputs(&fleet, &id).await;
    let first = outputs[bare.name()]["output"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        exec["counts"]["succeeded"],
        1,
        "the first prepare-host.sh run failed: {exec:#}\noutput:\n{first}\n{}",
        bare.diagnostics()
    );
    assert!(
        first.contains("prepare-host: installing docker.io"),
        "{first}"
    );
    assert!(!first.contains("already installed"), "{first}");
    assert!(first.contains("is running"), "{first}");
    phases.done("prepare-host.sh, first run (install)");

    // Second run, followed by the CLI: finds everything in place.
    let run = check(
        fleet
            .wharf(&["group", "exec", scenario::APP, "fresh", "--script", script])
            .await,
        &fleet,
    );
    assert!(
        run.success(),
        "the second prepare-host.sh run failed:\n{}\n{}\n{}",
        run.stdout,
        run.stderr,
        bare.diagnostics()
    );
    let id = exec_id_in_summary(run.stdout.trim_end());
    let outputs = exec_outputs(&fleet, &id).await;
    let second = outputs[bare.name()]["output"].as_str().unwrap_or_default();
    assert!(
        second.contains("prepare-host: docker.io is already installed"),
        "{second}"
    );
    assert!(!second.contains("installing docker.io"), "{second}");
    assert!(second.contains("is running"), "{second}");
    phases.done("prepare-host.sh, second run (already installed)");

    // The engine works in the host, and its agent reports it.
    let version = on_bare(
        bare.exec_ok(&["docker", "version", "--format", "{{.Server.Version}}"])
            .await,
    );
    let info = on_bare(
        bare.exec_ok(&[
            "docker",
            "info",
            "--format",
            "{{.ServerVersion}} {{.CgroupDriver}}",
        ])
        .await,
    );
    assert!(info.starts_with(&version), "{info}");
    let shown = wait_docker_status(&fleet, bare.name(), true).await;
    assert_eq!(shown["docker_version"], version.as_str(), "{shown:#}");
    let text = check(
        fleet.wharf_ok(&["instance", "show", bare.name()]).await,
        &fleet,
    );
    assert!(text.contains(&format!("Docker Engine {version}")), "{text}");

    // And runs an image: a docker-image release (pull through the engine's API from the
    // fleet registry, `docker run` in the start script) answers from the host.
    let start = scenario::start_script(&scenario.image("v1"), 0);
    check(
        scenario.create_deployment("v1", "v1", &start, &[]).await,
        &fleet,
    );
    let release = check(
        fleet
            .wharf(&[
                "release",
                "create",
                scenario::APP,
                "fresh",
                "--deployment",
                "v1",
            ])
            .await,
        &fleet,
    );
    assert!(
        release.success(),
        "a docker-image release to the prepared host failed:\n{}\n{}\n{}",
        release.stdout,
        release.stderr,
        bare.diagnostics()
    );
    let url = format!(
        "http://{}:{}/hello",
        bare.ip(),
        sample_image::CONTAINER_PORT
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected = sample_image::hello_text("v1");
    loop {
        let body = match reqwest::get(&url).await {
            Ok(response) if response.status().is_success() => {
                response.text().await.unwrap_or_default()
            }
            Ok(response) => format!("status {}", response.status()),
            Err(error) => format!("{error}"),
        };
        if body == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer {expected:?} (last: {body:?})\n{}",
            bare.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    phases.done("engine reported, docker-image release to the prepared host");
    drop(scenario);
    drop(bare);
    drop(fleet);
    phases.done("clean-up");
    phases.finish();
}
