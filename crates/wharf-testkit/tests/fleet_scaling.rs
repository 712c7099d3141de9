//! Scaling groups and `--rollback-on-failure` on a real fleet (issue #5), through the
//! `wharf` CLI, with each phase's measured duration printed (`--nocapture`). One
//! 3-host fleet whose `host-3` has no agent at first: `host-1` and `host-2` form group
//! `shop/prod`, bound to scaling group `asg`, whose `--on-suspend` / `--on-resume`
//! commands (run by the server, on this machine) append `suspend|resume $WHARF_SCALING_GROUP
//! $WHARF_RELEASE` to `hooks.log` in the run directory. Then, in order:
//!
//! 1. a release that succeeds, then one that fails (its image tag does not exist, so
//!    nothing on the hosts changes): each suspends and resumes the group once, in order;
//! 2. a release in 2 batches with `--rollback-on-failure` whose start script fails on the
//!    batch-2 host alone (a marker file): both touched hosts answer v1 again, and
//!    `wharf release show` links the failed release and its rollback;
//! 3. a release of v2 in 2 batches during which `host-3`'s agent starts with
//!    `--scaling-group asg`: it is held (not in the group, not in the release); the server
//!    is killed (`SIGKILL`) while the group is suspended and started again; the release
//!    succeeds, the group resumes once, and a catch-up release brings `host-3` to v2;
//! 4. a release cancelled while paused: the group resumes once;
//! 5. `host-3`'s agent stopped (stays), then run with `--deregister` and stopped: it
//!    leaves the group and the scaling group (activity `leave`).
//!
//! The hook log is compared in full after each release, so a hook that runs twice, too
//! early or with the wrong release id fails the test. Needs what tests/fleet.rs needs
//! (see FLEET.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use wharf_testkit::fleet::{Fleet, FleetOptions, AGENT_STATE_DIR};
use wharf_testkit::fleet_scenario::{self as scenario, shell_word, Scenario, APP, GROUP};
use wharf_testkit::fleet_test::{check, Phases};
use wharf_testkit::sample_image;

/// One fleet test of this file at a time, to keep a 2-core machine responsive.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The scaling group.
const SG: &str = "asg";
/// The host whose agent starts during a release, for the scaling group.
const LATE_HOST: &str = "host-3";
/// How long a release may take on a 2-core machine.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for a step, a hook, a host or the scaling group.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
/// The start script of `v2-slow` sleeps this long, so the late host registers and the
/// server is killed while batch 1 runs.
const SLEEP_BEFORE_RUN: u32 = 4;
/// With this file in a host, the start script of `v2-marked` fails.
const FAIL_MARKER: &str = "/var/tmp/fail-v2";

async fn wharf(fleet: &Fleet, args: &[&str]) -> String {
    check(fleet.wharf_ok(args).await, fleet)
}

async fn wharf_json(fleet: &Fleet, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let text = wharf(fleet, &all).await;
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

/// `wharf release create shop prod --deployment DEPLOYMENT --detach EXTRA…`: the id.
async fn create_release(fleet: &Fleet, deployment: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "release",
        "create",
        APP,
        GROUP,
        "--deployment",
        deployment,
        "--detach",
    ];
    args.extend_from_slice(extra);
    let id = wharf(fleet, &args).await;
    assert!(id.starts_with("r-"), "not a release id: {id:?}");
    id
}

/// Waits until release `id` has ended (succeeded, failed or cancelled) and returns it.
async fn wait_release_end(fleet: &Fleet, id: &str) -> Value {
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    loop {
        let release = fleet.release(id).await;
        if let Ok(release) = &release {
            let state = release["state"].as_str().unwrap_or_default();
            if ["succeeded", "failed", "cancelled"].contains(&state) {
                return release.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "release {id} did not end within {RELEASE_TIMEOUT:?}: {release:?}\n{}",
            fleet.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every instance of a release by name.
fn release_instances(release: &Value) -> BTreeMap<String, Value> {
    release["batches"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|batch| batch["instances"].as_array().cloned().unwrap_or_default())
        .map(|instance| {
            (
                instance["name"].as_str().unwrap_or_default().to_owned(),
                instance,
            )
        })
        .collect()
}

/// The names of the only instance of batch 1 and of batch 2 of a 2-host release.
fn one_by_one(release: &Value) -> (String, String) {
    let names = |number: usize| -> Vec<String> {
        release["batches"][number - 1]["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|instance| instance["name"].as_str().map(str::to_owned))
            .collect()
    };
    let (batch1, batch2) = (names(1), names(2));
    assert_eq!((batch1.len(), batch2.len()), (1, 1), "{release:#}");
    (batch1[0].clone(), batch2[0].clone())
}

/// `(total, succeeded, failed, cancelled)` of a release.
fn counts(release: &Value) -> (u64, u64, u64, u64) {
    let c = &release["counts"];
    let n = |key: &str| c[key].as_u64().unwrap_or(u64::MAX);
    (n("total"), n("succeeded"), n("failed"), n("cancelled"))
}

/// Waits until `host` runs step `start` of release `id` (its start script began).
async fn wait_start_running(fleet: &Fleet, id: &str, host: &str) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let release = check(fleet.release(id).await, fleet);
        let running = release_instances(&release)
            .get(host)
            .is_some_and(|instance| {
                instance["steps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|step| step["name"] == "start" && step["state"] == "running")
            });
        if running {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host} did not begin step start of {id} within {EVENT_TIMEOUT:?}: {release:#}\n{}",
            fleet.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /api/v1/scaling-groups/asg`.
async fn scaling_group(fleet: &Fleet) -> Value {
    check(fleet.api_get(&format!("scaling-groups/{SG}")).await, fleet)
}

/// Waits until the scaling group satisfies `ok`, and returns it.
async fn wait_scaling_group(fleet: &Fleet, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let sg = fleet.api_get(&format!("scaling-groups/{SG}")).await;
        if let Ok(sg) = &sg {
            if ok(sg) {
                return sg.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "scaling group {SG} never became {what} within {EVENT_TIMEOUT:?}: {sg:?}\n{}",
            fleet.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The group is active, nothing is pending and no on-resume command is left to run.
fn settled(sg: &Value) -> bool {
    sg["state"] == "active"
        && sg["resume_hook_pending"] == false
        && sg["pending"].as_array().is_some_and(Vec::is_empty)
}

/// The hook log's lines.
fn hook_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The lines the hooks write for a suspend by `suspended` and a resume by `resumed`.
fn hook_pair(suspended: &str, resumed: &str) -> [String; 2] {
    [
        format!("suspend {SG} {suspended}"),
        format!("resume {SG} {resumed}"),
    ]
}

/// Waits until the hook log has as many lines as `expected` (and a moment more, so
/// that a duplicate would show), then checks it is exactly `expected`.
async fn assert_hooks(fleet: &Fleet, log: &Path, expected: &[String]) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while hook_lines(log).len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "the hook log never reached {} lines: {:#?}\n{}",
            expected.len(),
            hook_lines(log),
            fleet.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The driver passes every second: a second run of a hook would be here by then.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        hook_lines(log),
        expected,
        "each hook once, in order, with its release"
    );
    // The server recorded the same runs, all successful.
    let sg = scaling_group(fleet).await;
    let runs: Vec<String> = sg["hook_runs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|run| {
            assert_eq!(run["exit_code"], 0, "{run:#}");
            format!(
                "{} {SG} {}",
                run["hook"].as_str().unwrap_or("?"),
                run["release_id"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(runs, expected, "hook runs as the server shows them: {sg:#}");
}

/// The lines of `file` in `host` (none when it does not exist).
async fn file_lines(fleet: &Fleet, host: &str, file: &str) -> Vec<String> {
    let output = check(
        fleet
            .sh(host, &format!("cat {file} 2>/dev/null || true"))
            .await,
        fleet,
    );
    output.stdout.lines().map(str::to_owned).collect()
}

/// Waits until `host` answers `hello from VERSION` on port 8080.
async fn assert_answers(fleet: &Fleet, host: &str, version: &str) {
    check(
        fleet
            .wait_http_body(
                host,
                sample_image::CONTAINER_PORT,
                "/hello",
                &sample_image::hello_text(version),
                Duration::from_secs(30),
            )
            .await,
        fleet,
    );
}

/// `wharf group show shop prod --output json`: each member's name and deployment.
async fn group_members(fleet: &Fleet) -> (Value, BTreeMap<String, Option<String>>) {
    let group = wharf_json(fleet, &["group", "show", APP, GROUP]).await;
    let members = group["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|member| {
            (
                member["name"].as_str().unwrap_or_default().to_owned(),
                member["deployment"].as_str().map(str::to_owned),
            )
        })
        .collect();
    (group, members)
}

/// The value of field `name` in `wharf … show` text (`Name:  value`).
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.trim_start().strip_prefix(':'))
            .map(str::trim)
    })
}

/// The fleet with agents on host-1 and host-2 only, v1 and v2 pushed, the registry, app,
/// group (host-1, host-2), scaling group and deployments created; returns the hook log.
async fn prepare<'a>(fleet: &'a Fleet, phases: &mut Phases) -> (Scenario<'a>, PathBuf) {
    for host in ["host-1", "host-2"] {
        check(fleet.start_agent(host).await, fleet);
    }
    for host in ["host-1", "host-2"] {
        check(
            fleet
                .wait_instance_status(host, "online", EVENT_TIMEOUT)
                .await,
            fleet,
        );
    }
    phases.done("agents of host-1 and host-2 online");

    let mut scenario = check(Scenario::new(fleet, false), fleet);
    check(scenario.push_versions(&["v1", "v2"]).await, fleet);
    phases.done("v1 and v2 pushed");

    let (user, password) = fleet.registry_credentials();
    let endpoint = fleet.registry_for_hosts();
    check(
        scenario
            .wharf(
                &[
                    "registry",
                    "create",
                    scenario::REGISTRY,
                    "--endpoint",
                    &endpoint,
                    "--username",
                    user,
                    "--password-stdin",
                    "--insecure",
                ],
                Some(password.as_bytes()),
            )
            .await,
        fleet,
    );
    wharf(fleet, &["app", "create", APP]).await;
    wharf(fleet, &["group", "create", APP, GROUP]).await;
    wharf(
        fleet,
        &["group", "add-instances", APP, GROUP, "host-1", "host-2"],
    )
    .await;

    let log = fleet.run_dir().join("hooks.log");
    let log_word = shell_word(&log.to_string_lossy());
    let on_suspend = format!("echo \"suspend $WHARF_SCALING_GROUP $WHARF_RELEASE\" >> {log_word}");
    let on_resume = format!("echo \"resume $WHARF_SCALING_GROUP $WHARF_RELEASE\" >> {log_word}");
    wharf(
        fleet,
        &[
            "scaling-group",
            "create",
            SG,
            "--app",
            APP,
            "--group",
            GROUP,
            "--on-suspend",
            &on_suspend,
            "--on-resume",
            &on_resume,
        ],
    )
    .await;

    let timeout = ["--step-timeout", "60s"];
    let v1 = scenario::start_script(&scenario.image("v1"), 0);
    check(
        scenario.create_deployment("v1", "v1", &v1, &timeout).await,
        fleet,
    );
    // Tag v9 was never pushed: the pull fails, before the stop script, so the hosts
    // keep what they run.
    check(
        scenario
            .create_deployment("broken", "v9", &v1, &timeout)
            .await,
        fleet,
    );
    let marked = format!(
        "if [ -e {FAIL_MARKER} ]; then echo 'found {FAIL_MARKER}: failing' >&2; exit 3; fi\n{}",
        scenario::start_script(&scenario.image("v2"), 0)
    );
    check(
        scenario
            .create_deployment("v2-marked", "v2", &marked, &timeout)
            .await,
        fleet,
    );
    let slow = scenario::start_script(&scenario.image("v2"), SLEEP_BEFORE_RUN);
    check(
        scenario
            .create_deployment("v2-slow", "v2", &slow, &timeout)
            .await,
        fleet,
    );
    phases.done("resources created");
    (scenario, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_scaling_group_hooks_join_catch_up_and_rollback() {
    let _serial = SERIAL.lock().await;
    let mut phases = Phases::new("fleet_scaling_group_hooks_join_catch_up_and_rollback");
    // Heartbeats every second; offline only after 30 s, far longer than the server's
    // downtime below plus the agents' retry back-off.
    let options = FleetOptions {
        start_agents: false,
        ..FleetOptions::with_hosts(3)
    }
    .liveness(Duration::from_secs(1), Duration::from_secs(30));
    let fleet = Fleet::start(options)
        .await
        .unwrap_or_else(|error| panic!("start a 3-host fleet: {error:#}"));
    phases.done("fleet start (3 hosts, no agents)");
    let (_scenario, log) = prepare(&fleet, &mut phases).await;
    let mut hooks: Vec<String> = Vec::new();

    // ----- 1. a release that succeeds, one that fails: one suspend and one resume each.
    let succeeded = create_release(&fleet, "v1", &[]).await;
    let ended = wait_release_end(&fleet, &succeeded).await;
    assert_eq!(ended["state"], "succeeded", "{ended:#}");
    wait_scaling_group(&fleet, "resumed", settled).await;
    hooks.extend(hook_pair(&succeeded, &succeeded));
    assert_hooks(&fleet, &log, &hooks).await;
    for host in ["host-1", "host-2"] {
        assert_answers(&fleet, host, "v1").await;
    }
    phases.done("release of v1 succeeded, hooks ran");

    let failed = create_release(&fleet, "broken", &[]).await;
    let ended = wait_release_end(&fleet, &failed).await;
    assert_eq!(ended["state"], "failed", "{ended:#}");
    // Both hosts are in the one batch: the release fails with the first failed pull,
    // the other may still be pulling then.
    let (total, ok, bad, _) = counts(&ended);
    assert!(total == 2 && ok == 0 && bad >= 1, "{ended:#}");
    wait_scaling_group(&fleet, "resumed", settled).await;
    hooks.extend(hook_pair(&failed, &failed));
    assert_hooks(&fleet, &log, &hooks).await;
    phases.done("release of a missing tag failed, hooks ran");

    // ----- 2. --rollback-on-failure: batch 1 gets v2, batch 2 fails; both go back to v1.
    let broken = create_release(
        &fleet,
        "v2-marked",
        &[
            "--batches",
            "2",
            "--pause",
            "first",
            "--rollback-on-failure",
        ],
    )
    .await;
    let (first, second) = one_by_one(&check(fleet.release(&broken).await, &fleet));
    check(
        fleet
            .wait_release_state(&broken, "paused", RELEASE_TIMEOUT)
            .await,
        &fleet,
    );
    // Batch 1 really moved its host to v2 (so the rollback has something to undo).
    assert_answers(&fleet, &first, "v2").await;
    assert_answers(&fleet, &second, "v1").await;
    check(
        fleet
            .exec_ok(&second, &["touch", FAIL_MARKER])
            .await
            .map(drop),
        &fleet,
    );
    wharf(&fleet, &["release", "continue", &broken]).await;
    let ended = wait_release_end(&fleet, &broken).await;
    assert_eq!(ended["state"], "failed", "{ended:#}");
    assert_eq!(counts(&ended), (2, 1, 1, 0), "{ended:#}");
    let instances = release_instances(&ended);
    assert_eq!(instances[&first]["state"], "succeeded", "{ended:#}");
    assert_eq!(instances[&second]["state"], "failed", "{ended:#}");
    // It failed where the marker makes it fail: its start script, exit 3.
    let last_step = instances[&second]["steps"]
        .as_array()
        .and_then(|steps| steps.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (
            &last_step["name"],
            &last_step["state"],
            &last_step["exit_code"]
        ),
        (
            &Value::from("start"),
            &Value::from("failed"),
            &Value::from(3)
        ),
        "{ended:#}"
    );
    let rollback = ended["rolled_back_by"]
        .as_str()
        .unwrap_or_else(|| panic!("the failed release names no rollback: {ended:#}"))
        .to_owned();
    let rolled = wait_release_end(&fleet, &rollback).await;
    assert_eq!(rolled["state"], "succeeded", "{rolled:#}");
    assert_eq!(rolled["kind"], "rollback", "{rolled:#}");
    assert_eq!(rolled["deployment"], "v1", "{rolled:#}");
    assert_eq!(rolled["rollback_of"], broken.as_str(), "{rolled:#}");
    assert_eq!(
        counts(&rolled),
        (2, 2, 0, 0),
        "both hosts were touched: {rolled:#}"
    );
    // Every touched host answers v1 again, started by the rollback release.
    for host in [&first, &second] {
        assert_answers(&fleet, host, "v1").await;
        let starts = file_lines(&fleet, host, scenario::STARTED_FILE).await;
        assert_eq!(
            starts.last().map(String::as_str),
            Some(rollback.as_str()),
            "{host}: the last start must be the rollback's: {starts:?}"
        );
    }
    // `wharf release show` links both ways.
    let shown = wharf(&fleet, &["release", "show", &broken]).await;
    assert_eq!(
        field(&shown, "Rolled back by"),
        Some(rollback.as_str()),
        "{shown}"
    );
    let shown = wharf(&fleet, &["release", "show", &rollback]).await;
    assert_eq!(
        field(&shown, "Rollback of"),
        Some(broken.as_str()),
        "{shown}"
    );
    assert_eq!(field(&shown, "Kind"), Some("rollback"), "{shown}");
    let (group, members) = group_members(&fleet).await;
    assert_eq!(group["current_deployment"], "v1", "{group:#}");
    assert!(
        members.values().all(|d| d.as_deref() == Some("v1")),
        "{members:?}"
    );
    // The lease passed from the failed release to its rollback: the group stayed
    // suspended in between and resumed once, after the rollback.
    wait_scaling_group(&fleet, "resumed", settled).await;
    hooks.extend(hook_pair(&broken, &rollback));
    assert_hooks(&fleet, &log, &hooks).await;
    check(
        fleet
            .exec_ok(&second, &["rm", "-f", FAIL_MARKER])
            .await
            .map(drop),
        &fleet,
    );
    phases.done("release failed in batch 2, rolled back to v1, hooks ran");

    // ----- 3. host-3 registers for the scaling group while v2 is released.
    let upgrade = create_release(&fleet, "v2-slow", &["--batches", "2"]).await;
    let (first, _second) = one_by_one(&check(fleet.release(&upgrade).await, &fleet));
    wait_start_running(&fleet, &upgrade, &first).await;
    check(
        fleet
            .start_agent_with(LATE_HOST, &["--scaling-group", SG])
            .await,
        &fleet,
    );
    let sg = wait_scaling_group(&fleet, "holding host-3", |sg| {
        sg["pending"]
            .as_array()
            .is_some_and(|pending| pending.iter().any(|p| p["instance_name"] == LATE_HOST))
    })
    .await;
    phases.done("host-3's agent started mid-release, registered");
    // Held: suspended by the release, host-3 pending, in no group, not in the release.
    assert_eq!(sg["state"], "suspended", "{sg:#}");
    assert_eq!(sg["suspended_by"], upgrade.as_str(), "{sg:#}");
    assert_eq!(sg["pending"].as_array().map(Vec::len), Some(1), "{sg:#}");
    assert_eq!(sg["pending"][0]["state"], "held", "{sg:#}");
    let shown = wharf(&fleet, &["scaling-group", "show", SG]).await;
    assert_eq!(
        field(&shown, "Status"),
        Some(format!("suspended by {upgrade}").as_str()),
        "{shown}"
    );
    let pending_row = shown
        .split_once("Pending instances:")
        .and_then(|(_, rest)| rest.lines().find(|line| line.contains(LATE_HOST)))
        .unwrap_or_else(|| panic!("no pending row for {LATE_HOST}: {shown}"));
    assert!(pending_row.contains("held"), "{shown}");
    let instance = wharf_json(&fleet, &["instance", "show", LATE_HOST]).await;
    assert_eq!(instance["scaling_group"], SG, "{instance:#}");
    assert_eq!(instance["scaling_pending"], true, "{instance:#}");
    assert_eq!(instance["groups"], serde_json::json!([]), "{instance:#}");
    let (_, members) = group_members(&fleet).await;
    assert!(!members.contains_key(LATE_HOST), "{members:?}");
    let running = check(fleet.release(&upgrade).await, &fleet);
    assert!(
        ["running", "pending"].contains(&running["state"].as_str().unwrap_or_default()),
        "the release must still run: {running:#}"
    );
    assert_eq!(running["counts"]["total"], 2, "{running:#}");
    assert!(!release_instances(&running).contains_key(LATE_HOST));

    // ----- 3b. the server dies while the group is suspended (its suspend hook recorded).
    let suspend = format!("suspend {SG} {upgrade}");
    wait_scaling_group(&fleet, "done with its suspend hook", |sg| {
        sg["hook_runs"].as_array().is_some_and(|runs| {
            runs.iter()
                .any(|r| r["hook"] == "suspend" && r["release_id"] == upgrade.as_str())
        })
    })
    .await;
    assert_eq!(hook_lines(&log).last(), Some(&suspend));
    fleet.kill_server().await;
    let killed = Instant::now();
    check(fleet.start_server().await, &fleet);
    // The restarted server still holds the lease (batch 1's script is still asleep):
    // it neither resumed the group nor let host-3 in.
    let sg = scaling_group(&fleet).await;
    let release = check(fleet.release(&upgrade).await, &fleet);
    assert!(
        ["running", "pending"].contains(&release["state"].as_str().unwrap_or_default()),
        "the server came back after the release ended; the check below proves nothing: \
         {release:#}"
    );
    assert_eq!(sg["state"], "suspended", "{sg:#}");
    assert_eq!(sg["suspended_by"], upgrade.as_str(), "{sg:#}");
    assert_eq!(sg["pending"][0]["instance_name"], LATE_HOST, "{sg:#}");
    assert_eq!(sg["pending"][0]["state"], "held", "{sg:#}");
    phases.done(&format!(
        "host-3 held; server killed while suspended, back after {:.1}s",
        killed.elapsed().as_secs_f64()
    ));
    let ended = wait_release_end(&fleet, &upgrade).await;
    assert_eq!(ended["state"], "succeeded", "{ended:#}");
    assert_eq!(counts(&ended), (2, 2, 0, 0), "{ended:#}");
    assert!(!release_instances(&ended).contains_key(LATE_HOST));
    wait_scaling_group(&fleet, "resumed after the restart", settled).await;
    let shown = wharf(&fleet, &["scaling-group", "show", SG]).await;
    assert_eq!(field(&shown, "Status"), Some("active"), "{shown}");
    hooks.extend(hook_pair(&upgrade, &upgrade));
    assert_hooks(&fleet, &log, &hooks).await;
    phases.done("release succeeded after the restart, group resumed");

    // ----- 3c. on resume host-3 joined; a catch-up release brings it to v2.
    let listed = wharf_json(&fleet, &["release", "list", APP, GROUP]).await;
    let catch_up = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["kind"] == "catch-up")
        .unwrap_or_else(|| panic!("no catch-up release in `wharf release list`: {listed:#}"))
        .clone();
    let catch_up_id = catch_up["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        listed[0]["id"],
        catch_up_id.as_str(),
        "the newest release: {listed:#}"
    );
    assert_eq!(catch_up["deployment"], "v2-slow", "{catch_up:#}");
    let table = wharf(&fleet, &["release", "list", APP, GROUP]).await;
    assert!(
        table
            .lines()
            .any(|line| line.contains(&catch_up_id) && line.contains("catch-up")),
        "{table}"
    );
    let caught_up = wait_release_end(&fleet, &catch_up_id).await;
    assert_eq!(caught_up["state"], "succeeded", "{caught_up:#}");
    assert_eq!(
        release_instances(&caught_up)
            .into_keys()
            .collect::<Vec<_>>(),
        [LATE_HOST],
        "{caught_up:#}"
    );
    for host in fleet.hosts() {
        assert_answers(&fleet, &host.name, "v2").await;
    }
    // host-3 ran one start script: the catch-up's (it was never part of the upgrade).
    assert_eq!(
        file_lines(&fleet, LATE_HOST, scenario::STARTS_FILE).await,
        [catch_up_id.as_str()]
    );
    let (group, members) = group_members(&fleet).await;
    assert_eq!(group["current_deployment"], "v2-slow", "{group:#}");
    assert_eq!(
        members.get(LATE_HOST),
        Some(&Some("v2-slow".to_owned())),
        "{group:#}"
    );
    let sg = scaling_group(&fleet).await;
    let activities: Vec<(String, String)> = sg["activities"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["kind"].as_str().unwrap_or_default().to_owned(),
                a["instance_name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        activities,
        [
            ("held".to_owned(), LATE_HOST.to_owned()),
            ("join".to_owned(), LATE_HOST.to_owned())
        ],
        "{sg:#}"
    );
    // The catch-up took no lease: no hook ran for it.
    assert_hooks(&fleet, &log, &hooks).await;
    phases.done("catch-up release brought host-3 to v2");

    // ----- 4. a release cancelled while paused resumes the group once.
    let cancelled = create_release(&fleet, "v1", &["--batches", "2", "--pause", "first"]).await;
    check(
        fleet
            .wait_release_state(&cancelled, "paused", RELEASE_TIMEOUT)
            .await,
        &fleet,
    );
    let sg = scaling_group(&fleet).await;
    assert_eq!(sg["state"], "suspended", "{sg:#}");
    assert_eq!(sg["suspended_by"], cancelled.as_str(), "{sg:#}");
    wharf(&fleet, &["release", "cancel", &cancelled]).await;
    let ended = wait_release_end(&fleet, &cancelled).await;
    assert_eq!(ended["state"], "cancelled", "{ended:#}");
    wait_scaling_group(&fleet, "resumed", settled).await;
    hooks.extend(hook_pair(&cancelled, &cancelled));
    assert_hooks(&fleet, &log, &hooks).await;
    phases.done("release cancelled while paused, hooks ran");

    // ----- 5. host-3 leaves: a plain stop keeps it; `--deregister` on shutdown removes it.
    check(fleet.stop_agent(LATE_HOST).await, &fleet);
    let (_, members) = group_members(&fleet).await;
    assert!(members.contains_key(LATE_HOST), "{members:?}");
    check(
        fleet.start_agent_with(LATE_HOST, &["--deregister"]).await,
        &fleet,
    );
    check(
        fleet
            .wait_instance_status(LATE_HOST, "online", EVENT_TIMEOUT)
            .await,
        &fleet,
    );
    check(fleet.stop_agent(LATE_HOST).await, &fleet);
    let statuses = check(fleet.instance_statuses().await, &fleet);
    assert!(!statuses.contains_key(LATE_HOST), "{statuses:?}");
    let (_, members) = group_members(&fleet).await;
    assert!(!members.contains_key(LATE_HOST), "{members:?}");
    let sg = scaling_group(&fleet).await;
    let last = sg["activities"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&last["kind"], &last["instance_name"]),
        (&Value::from("leave"), &Value::from(LATE_HOST)),
        "{sg:#}"
    );
    let state_file = format!("{AGENT_STATE_DIR}/state.json");
    check(
        fleet
            .exec_ok(LATE_HOST, &["sh", "-c", &format!("! test -e {state_file}")])
            .await
            .map(drop),
        &fleet,
    );
    phases.done("host-3 deregistered on shutdown, left the group");

    // Every on-resume command above succeeded at its first attempt, so no failed
    // attempt is counted (`resume_attempts` once counted the successful one too).
    let sg = scaling_group(&fleet).await;
    let shown = wharf(&fleet, &["scaling-group", "show", SG]).await;
    assert_eq!(
        (
            sg["resume_attempts"].as_u64(),
            field(&shown, "Resume attempts")
        ),
        (Some(0), None),
        "a successful on-resume counted as a failed attempt: {sg:#}\n{shown}"
    );

    drop(fleet);
    phases.done("clean-up");
    phases.finish();
}
