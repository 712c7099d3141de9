//! Faults on a real fleet during a release, each checking the end state of the release,
//! of every instance and of every container, and printing its measured durations
//! (`--nocapture`):
//!
//! - a host killed during its start script, with `--max-failures 0` then 1;
//! - a host disconnected from the network mid-step and reconnected;
//! - the server killed (`SIGKILL`) mid-release and kept down for twice the offline
//!   window, then restarted on the same data and port;
//! - the store stalled (its write lock held by another process) for as long;
//! - an agent killed (`SIGKILL`) mid-step and restarted.
//!
//! The server runs with short liveness timings (`--heartbeat-interval`,
//! `--offline-after`), so a lost host fails its task within seconds. The tests of this
//! file run one after another (a lock), to keep a 2-core machine responsive.
//!
//! Needs what tests/fleet.rs needs (see FLEET.md).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use wharf_testkit::fleet::{Fleet, FleetOptions};
use wharf_testkit::fleet_scenario::{self as scenario, Scenario, CONTAINER};
use wharf_testkit::fleet_test::{check, Phases};
use wharf_testkit::sample_image;

/// One fault test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a release may take on a 2-core machine.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for a step to begin, or for a host or agent to come back.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
/// The start scripts sleep this long before `docker run`, so a fault lands mid-step.
const SLEEP_BEFORE_RUN: u32 = 4;
/// The agent's journal in a host.
const JOURNAL: &str = "/var/lib/wharf-agent/journal.json";

/// A fleet of `hosts` with the given liveness, `v1` pushed, the registry, app and group
/// created, and a deployment `slow` of v1 whose start script sleeps before `docker run`.
async fn prepare<'a>(fleet: &'a Fleet, phases: &mut Phases) -> Scenario<'a> {
    let mut scenario = check(Scenario::new(fleet, false), fleet);
    check(scenario.push_versions(&["v1"]).await, fleet);
    check(scenario.create_basics().await, fleet);
    let start = scenario::start_script(&scenario.image("v1"), SLEEP_BEFORE_RUN);
    check(
        scenario
            .create_deployment("slow", "v1", &start, &["--step-timeout", "60s"])
            .await,
        fleet,
    );
    phases.done("image pushed, resources created");
    scenario
}

async fn start_fleet(
    hosts: usize,
    heartbeat: u64,
    offline_after: u64,
    phases: &mut Phases,
) -> Fleet {
    let options = FleetOptions::with_hosts(hosts).liveness(
        Duration::from_secs(heartbeat),
        Duration::from_secs(offline_after),
    );
    let fleet = Fleet::start(options)
        .await
        .unwrap_or_else(|error| panic!("start a {hosts}-host fleet: {error:#}"));
    phases.done(&format!("fleet start ({hosts} hosts)"));
    fleet
}

/// `wharf release create shop prod --deployment slow --detach EXTRA…`: the release id.
async fn create_release(fleet: &Fleet, extra: &[&str]) -> String {
    let mut args = vec![
        "release",
        "create",
        scenario::APP,
        scenario::GROUP,
        "--deployment",
        "slow",
        "--detach",
    ];
    args.extend_from_slice(extra);
    let id = check(fleet.wharf_ok(&args).await, fleet);
    assert!(id.starts_with("r-"), "not a release id: {id:?}");
    id
}

/// `wharf release show ID --output json`.
async fn show_release(fleet: &Fleet, id: &str) -> Value {
    let text = check(
        fleet
            .wharf_ok(&["release", "show", id, "--output", "json"])
            .await,
        fleet,
    );
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
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

/// The names of the instances of batch `number` (1-based).
fn batch_names(release: &Value, number: usize) -> Vec<String> {
    release["batches"][number - 1]["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|instance| instance["name"].as_str().map(str::to_owned))
        .collect()
}

/// The names of the only instance of batch 1 and of batch 2 (a 2-host release in 2
/// batches): the fault hits batch 1, whose host then runs alone, so every end state is
/// determined.
fn one_by_one(release: &Value) -> (String, String) {
    let batch1 = batch_names(release, 1);
    let batch2 = batch_names(release, 2);
    assert_eq!((batch1.len(), batch2.len()), (1, 1), "{release:#}");
    (batch1[0].clone(), batch2[0].clone())
}

/// The names of an instance's steps, in order.
fn step_names(instance: &Value) -> Vec<String> {
    instance["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|step| step["name"].as_str().map(str::to_owned))
        .collect()
}

fn counts(release: &Value) -> (u64, u64, u64, u64, u64) {
    let c = &release["counts"];
    let n = |key: &str| c[key].as_u64().unwrap_or(u64::MAX);
    (
        n("total"),
        n("succeeded"),
        n("failed"),
        n("cancelled"),
        n("pending") + n("running"),
    )
}

/// Waits until `host` runs step `start` of release `id` (its start script began).
async fn wait_start_running(fleet: &Fleet, id: &str, host: &str) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let release = check(fleet.release(id).await, fleet);
        let instances = release_instances(&release);
        let running = instances.get(host).is_some_and(|instance| {
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

/// Waits until a shell condition holds in `host`.
async fn wait_in_host(fleet: &Fleet, host: &str, condition: &str, what: &str) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let output = fleet.sh(host, condition).await;
        if output.as_ref().is_ok_and(|output| output.success()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host}: {what} not within {EVENT_TIMEOUT:?} ({condition}): {output:?}\n{}",
            fleet.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The state of `my-container` in `host`: `None` if there is none, else its status
/// (`running`, `exited`, …).
async fn container_state(fleet: &Fleet, host: &str) -> Option<String> {
    let output = check(
        fleet
            .exec(
                host,
                &[
                    "docker",
                    "container",
                    "inspect",
                    "-f",
                    "{{.State.Status}}",
                    CONTAINER,
                ],
            )
            .await,
        fleet,
    );
    output.success().then(|| output.stdout.trim().to_owned())
}

/// `host` runs `my-container`, which answers `hello from v1` on port 8080.
async fn assert_serves_v1(fleet: &Fleet, host: &str) {
    assert_eq!(
        container_state(fleet, host).await.as_deref(),
        Some("running"),
        "{host} must run {CONTAINER}"
    );
    check(
        fleet
            .wait_http_body(
                host,
                sample_image::CONTAINER_PORT,
                "/hello",
                &sample_image::hello_text("v1"),
                Duration::from_secs(30),
            )
            .await,
        fleet,
    );
}

/// The instance in `instances` named `host` is in `state`.
fn assert_instance_state(instances: &BTreeMap<String, Value>, host: &str, state: &str) {
    let instance = instances
        .get(host)
        .unwrap_or_else(|| panic!("{host} is not in the release: {instances:#?}"));
    assert_eq!(instance["state"], state, "{host}: {instance:#}");
}

/// Every step of `instance` ran once, in order, and succeeded.
fn assert_all_steps_succeeded_once(host: &str, instance: &Value) {
    assert_eq!(
        step_names(instance),
        ["fetch", "prepare", "pull", "stop", "start"],
        "{host}: each step once, in order: {instance:#}"
    );
    for step in instance["steps"].as_array().into_iter().flatten() {
        assert_eq!(step["state"], "succeeded", "{host}: {step:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_host_killed_during_start_script() {
    let _serial = SERIAL.lock().await;
    let mut phases = Phases::new("fleet_host_killed_during_start_script");
    const OFFLINE_AFTER: u64 = 5;
    let fleet = start_fleet(2, 1, OFFLINE_AFTER, &mut phases).await;
    let _scenario = prepare(&fleet, &mut phases).await;

    // --max-failures 0: the host of batch 1 dies mid-script; the release fails within
    // the offline window and batch 2 never starts.
    let id = create_release(&fleet, &["--batches", "2", "--max-failures", "0"]).await;
    let first = check(fleet.release(&id).await, &fleet);
    let (victim, spared) = one_by_one(&first);
    wait_start_running(&fleet, &id, &victim).await;
    phases.done("release 1: victim in step start");
    check(fleet.kill_host(&victim).await, &fleet);
    let ended = wait_release_end(&fleet, &id).await;
    let took = phases.done("release 1 (--max-failures 0): kill to end");
    assert!(
        took < Duration::from_secs(OFFLINE_AFTER + 10),
        "the release took {took:?} to end after the kill (offline after {OFFLINE_AFTER}s)"
    );
    assert_eq!(ended["state"], "failed", "{ended:#}");
    assert_eq!(counts(&ended), (2, 0, 1, 1, 0), "{ended:#}");
    let instances = release_instances(&ended);
    assert_instance_state(&instances, &victim, "failed");
    assert_eq!(
        step_names(&instances[&victim]),
        ["fetch", "prepare", "pull", "stop", "start"],
        "{ended:#}"
    );
    assert_instance_state(&instances, &spared, "cancelled");
    assert!(
        step_names(&instances[&spared]).is_empty(),
        "batch 2 must not run: {ended:#}"
    );
    // Containers: batch 2 never ran; the victim's host comes back without the
    // container (the kill landed before `docker run`).
    assert_eq!(container_state(&fleet, &spared).await, None);
    assert!(file_lines(&fleet, &spared, scenario::STARTS_FILE)
        .await
        .is_empty());
    check(fleet.start_host(&victim).await, &fleet);
    check(
        fleet
            .wait_instance_status(&victim, "online", EVENT_TIMEOUT)
            .await,
        &fleet,
    );
    assert_eq!(container_state(&fleet, &victim).await, None);
    assert_eq!(
        file_lines(&fleet, &victim, scenario::STARTS_FILE).await,
        [id.as_str()]
    );
    assert!(file_lines(&fleet, &victim, scenario::STARTED_FILE)
        .await
        .is_empty());
    phases.done("release 1: end state checked, victim back online");

    // --max-failures 1: the host of batch 1 dies mid-script; the release goes on and
    // succeeds on the other host.
    let id = create_release(&fleet, &["--batches", "2", "--max-failures", "1"]).await;
    let first = check(fleet.release(&id).await, &fleet);
    let (victim, other) = one_by_one(&first);
    wait_start_running(&fleet, &id, &victim).await;
    check(fleet.kill_host(&victim).await, &fleet);
    let ended = wait_release_end(&fleet, &id).await;
    phases.done("release 2 (--max-failures 1): kill to end");
    assert_eq!(ended["state"], "succeeded", "{ended:#}");
    assert_eq!(counts(&ended), (2, 1, 1, 0, 0), "{ended:#}");
    let instances = release_instances(&ended);
    assert_instance_state(&instances, &victim, "failed");
    assert_instance_state(&instances, &other, "succeeded");
    assert_all_steps_succeeded_once(&other, &instances[&other]);
    assert_serves_v1(&fleet, &other).await;
    assert_eq!(
        file_lines(&fleet, &other, scenario::STARTS_FILE).await,
        [id.as_str()]
    );
    check(fleet.start_host(&victim).await, &fleet);
    check(
        fleet
            .wait_instance_status(&victim, "online", EVENT_TIMEOUT)
            .await,
        &fleet,
    );
    assert_eq!(
        container_state(&fleet, &victim).await,
        None,
        "the victim never reached `docker run`"
    );
    phases.done("release 2: end state checked, victim back online");
    drop(fleet);
    phases.done("clean-up");
    phases.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_host_disconnected_and_reconnected() {
    let _serial = SERIAL.lock().await;
    let mut phases = Phases::new("fleet_host_disconnected_and_reconnected");
    let fleet = start_fleet(2, 1, 5, &mut phases).await;
    let _scenario = prepare(&fleet, &mut phases).await;

    let id = create_release(&fleet, &["--batches", "2", "--max-failures", "0"]).await;
    let (victim, other) = one_by_one(&check(fleet.release(&id).await, &fleet));
    wait_start_running(&fleet, &id, &victim).await;
    check(fleet.disconnect_host(&victim).await, &fleet);
    phases.done("victim in step start, disconnected");

    // It goes offline, its task fails, and the release fails (batch 2 is cancelled).
    check(
        fleet
            .wait_instance_status(&victim, "offline", EVENT_TIMEOUT)
            .await,
        &fleet,
    );
    let ended = wait_release_end(&fleet, &id).await;
    phases.done("victim offline, release ended");
    assert_eq!(ended["state"], "failed", "{ended:#}");
    assert_eq!(counts(&ended), (2, 0, 1, 1, 0), "{ended:#}");
    let instances = release_instances(&ended);
    assert_instance_state(&instances, &victim, "failed");
    assert!(
        instances[&victim]["message"]
            .as_str()
            .is_some_and(|message| message.contains("offline")),
        "{ended:#}"
    );
    assert_instance_state(&instances, &other, "cancelled");

    // Cut off, the victim's script still finishes (it started the container), and its
    // agent keeps the report. Reconnected, the host comes back online and the agent
    // delivers (or has refused) its late report: the journal is gone.
    wait_in_host(
        &fleet,
        &victim,
        &format!("grep -qx '{id}' {}", scenario::STARTED_FILE),
        "the start script finished",
    )
    .await;
    check(fleet.reconnect_host(&victim).await, &fleet);
    check(
        fleet
            .wait_instance_status(&victim, "online", EVENT_TIMEOUT)
            .await,
        &fleet,
    );
    wait_in_host(
        &fleet,
        &victim,
        &format!("! test -e {JOURNAL}"),
        "the agent delivered its late report",
    )
    .await;
    phases.done("reconnected, online, late report delivered");

    // The late report changed nothing in the finished release.
    let after = check(fleet.release(&id).await, &fleet);
    for key in ["state", "counts", "message", "finished_at"] {
        assert_eq!(after[key], ended[key], "{key} changed: {after:#}");
    }
    let instances_after = release_instances(&after);
    for (name, instance) in &instances {
        for key in ["state", "message", "finished_at"] {
            assert_eq!(
                instances_after[name][key], instance[key],
                "{name}: {key} changed by the late report: {after:#}"
            );
        }
    }
    // Containers: the victim runs v1 (its script completed while it was cut off);
    // the cancelled host never ran anything.
    assert_serves_v1(&fleet, &victim).await;
    assert_eq!(
        file_lines(&fleet, &victim, scenario::STARTS_FILE).await,
        [id.as_str()]
    );
    assert_eq!(container_state(&fleet, &other).await, None);
    assert!(file_lines(&fleet, &other, scenario::STARTS_FILE)
        .await
        .is_empty());
    drop(fleet);
    phases.done("clean-up");
    phases.finish();
}

/// How long the server stays down, and the store stalls, in the outage tests: twice
/// the server's usual offline window (30 s), so every agent's last heartbeat is
/// stale when the server can look again.
const OUTAGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_server_down_longer_than_the_offline_window_mid_release() {
    let _serial = SERIAL.lock().await;
    let mut phases = Phases::new("fleet_server_down_longer_than_the_offline_window_mid_release");
    // The server's usual offline window (30 s), shorter than the outage: only the
    // grace a started server gives every instance keeps the hosts from being
    // failed as offline before their journaled reports arrive.
    let fleet = start_fleet(2, 10, 30, &mut phases).await;
    let _scenario = prepare(&fleet, &mut phases).await;

    let id = create_release(&fleet, &["--batches", "2"]).await;
    let first = check(fleet.release(&id).await, &fleet);
    let batch1 = batch_names(&first, 1);
    let batch2 = batch_names(&first, 2);
    assert_eq!((batch1.len(), batch2.len()), (1, 1), "{first:#}");
    wait_start_running(&fleet, &id, &batch1[0]).await;
    fleet.kill_server().await;
    let killed = Instant::now();
    // The start script finishes while the server is down: its report must wait.
    wait_in_host(
        &fleet,
        &batch1[0],
        &format!("grep -qx '{id}' {}", scenario::STARTED_FILE),
        "the start script finished",
    )
    .await;
    tokio::time::sleep(OUTAGE.saturating_sub(killed.elapsed())).await;
    check(fleet.start_server().await, &fleet);
    phases.done(&format!(
        "server killed mid-step, down {:.1}s, restarted",
        killed.elapsed().as_secs_f64()
    ));
    assert_release_succeeded_once_everywhere(&fleet, &id, &mut phases).await;
    assert!(
        !fleet.server_log().await.contains("went offline"),
        "no instance may be failed as offline"
    );
    drop(fleet);
    phases.done("clean-up");
    phases.finish();
}

/// The store takes no write for twice the offline window (another process holds
/// SQLite's write lock) while batch 1 runs: heartbeats and reports fail and are
/// retried, nobody is judged offline by heartbeats that could not be stored, and
/// the release succeeds once the store takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_store_stalled_longer_than_the_offline_window_mid_release() {
    let _serial = SERIAL.lock().await;
    let mut phases = Phases::new("fleet_store_stalled_longer_than_the_offline_window_mid_release");
    let fleet = start_fleet(2, 10, 30, &mut phases).await;
    let _scenario = prepare(&fleet, &mut phases).await;

    let id = create_release(&fleet, &["--batches", "2"]).await;
    let first = check(fleet.release(&id).await, &fleet);
    let batch1 = batch_names(&first, 1);
    wait_start_running(&fleet, &id, &batch1[0]).await;
    let db = fleet.server_data_dir().await.join("wharf.db");
    let stall = check(
        wharf_testkit::store_stall::hold_write_lock(&db, OUTAGE).await,
        &fleet,
    );
    let stalled = Instant::now();
    wait_in_host(
        &fleet,
        &batch1[0],
        &format!("grep -qx '{id}' {}", scenario::STARTED_FILE),
        "the start script finished",
    )
    .await;
    // The API still reads while the store takes no write.
    let during = check(fleet.release(&id).await, &fleet);
    assert_eq!(during["state"], "running", "{during:#}");
    check(stall.await.expect("the lock holder ran"), &fleet);
    phases.done(&format!(
        "store stalled mid-step for {:.1}s",
        stalled.elapsed().as_secs_f64()
    ));
    assert_release_succeeded_once_everywhere(&fleet, &id, &mut phases).await;
    assert!(
        !fleet.server_log().await.contains("went offline"),
        "no instance may be failed as offline"
    );
    drop(fleet);
    phases.done("clean-up");
    phases.finish();
}

/// The release ends succeeded on every host, each step of each host succeeded
/// once, the start script ran once per host and each host serves v1.
async fn assert_release_succeeded_once_everywhere(fleet: &Fleet, id: &str, phases: &mut Phases) {
    let ended = wait_release_end(fleet, id).await;
    phases.done("release ended");
    assert_eq!(ended["state"], "succeeded", "{ended:#}");
    assert_eq!(counts(&ended), (2, 2, 0, 0, 0), "{ended:#}");
    let shown = show_release(fleet, id).await;
    let instances = release_instances(&shown);
    for host in fleet.hosts() {
        assert_instance_state(&instances, &host.name, "succeeded");
        assert_all_steps_succeeded_once(&host.name, &instances[&host.name]);
        // The start script ran exactly once on each host.
        assert_eq!(
            file_lines(fleet, &host.name, scenario::STARTS_FILE).await,
            [id],
            "{}: start ran more than once",
            host.name
        );
        assert_eq!(
            file_lines(fleet, &host.name, scenario::STARTED_FILE).await,
            [id]
        );
        assert_serves_v1(fleet, &host.name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_agent_killed_and_restarted_mid_step() {
    let _serial = SERIAL.lock().await;
    let mut phases = Phases::new("fleet_agent_killed_and_restarted_mid_step");
    // Offline only after 30 s: the agent is back long before.
    let fleet = start_fleet(2, 1, 30, &mut phases).await;
    let _scenario = prepare(&fleet, &mut phases).await;

    let id = create_release(&fleet, &["--batches", "2", "--max-failures", "0"]).await;
    let (victim, other) = one_by_one(&check(fleet.release(&id).await, &fleet));
    wait_start_running(&fleet, &id, &victim).await;
    check(fleet.kill_agent(&victim).await, &fleet);
    assert!(
        file_lines(&fleet, &victim, scenario::STARTED_FILE)
            .await
            .is_empty(),
        "the kill must land while the start script sleeps"
    );
    check(fleet.start_agent(&victim).await, &fleet);
    phases.done("agent killed mid-step and started again");

    let ended = wait_release_end(&fleet, &id).await;
    phases.done("release ended");
    assert_eq!(ended["state"], "failed", "{ended:#}");
    assert_eq!(counts(&ended), (2, 0, 1, 1, 0), "{ended:#}");
    let instances = release_instances(&ended);
    assert_instance_state(&instances, &other, "cancelled");
    assert_instance_state(&instances, &victim, "failed");
    let victim_instance = &instances[&victim];
    assert_eq!(
        step_names(victim_instance),
        ["fetch", "prepare", "pull", "stop", "start"],
        "{victim_instance:#}"
    );
    let start = &victim_instance["steps"][4];
    assert_eq!(start["state"], "failed", "{start:#}");
    let message = format!("{} {}", start["message"], victim_instance["message"]);
    assert!(
        message.contains(wharf_agent::RESTARTED_MESSAGE),
        "the failure must say the agent restarted during step start: {victim_instance:#}"
    );
    assert!(message.contains("start"), "{victim_instance:#}");
    check(
        fleet
            .wait_instance_status(&victim, "online", EVENT_TIMEOUT)
            .await,
        &fleet,
    );

    // Containers: the orphaned script went on without its agent and started the
    // container; the cancelled host never ran anything.
    wait_in_host(
        &fleet,
        &victim,
        &format!("grep -qx '{id}' {}", scenario::STARTED_FILE),
        "the orphaned start script finished",
    )
    .await;
    assert_serves_v1(&fleet, &victim).await;
    assert_eq!(container_state(&fleet, &other).await, None);
    assert_eq!(
        file_lines(&fleet, &victim, scenario::STARTS_FILE).await,
        [id.as_str()]
    );
    phases.done("end state checked");
    drop(fleet);
    phases.done("clean-up");
    phases.finish();
}
