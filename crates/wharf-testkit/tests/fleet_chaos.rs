//! The randomized fault run (issue 20): on a 4-host fleet, an operator starts releases
//! of two versions with pauses, continues, cancels, manual rollbacks and
//! `--rollback-on-failure`, while an injector kills and restarts the server, kills
//! agents mid-step, cuts hosts off the network for longer than the offline threshold
//! and stalls the store. Both follow a plan drawn from one seed
//! (`wharf_testkit::chaos`), printed first so that a run can be repeated:
//! `WHARF_CHAOS_SEED=N`. `WHARF_CHAOS_LONG=1` runs the long form.
//!
//! When the faults stop and everything is back, the invariant checker judges the end
//! state (`chaos::check`); then one more release without faults must succeed
//! everywhere and the fleet must have converged. The figures are printed at the end
//! (`--nocapture`). Needs what tests/fleet.rs needs (see FLEET.md).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::SeedableRng as _;
use serde_json::Value;
use wharf_testkit::chaos::{
    self, ChaosSettings, Expected, Fault, FaultKind, HostRecord, OnPause, Round, Verdict, World,
};
use wharf_testkit::fleet::{Fleet, FleetOptions};
use wharf_testkit::fleet_scenario::{self as scenario, Scenario, CONTAINER};
use wharf_testkit::fleet_test::check;
use wharf_testkit::sample_image;

/// The scaling group bound to the group.
const SG: &str = "shop-asg";
/// How long one release may take, faults included, before the run calls it stuck.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the API or the CLI may stay unusable (a server kill, a store stall).
const API_TIMEOUT: Duration = Duration::from_secs(120);
/// The start scripts sleep this long before `docker run`, so faults land mid-step.
const SLEEP_BEFORE_RUN: u32 = 2;

/// How long the operator waits for every host to be online before a release.
const ONLINE_WAIT: Duration = Duration::from_secs(30);
/// How long the injector waits for a host in a step before it kills an agent or cuts
/// a host off (else it takes an idle one).
const BUSY_WAIT: Duration = Duration::from_secs(10);

const TERMINAL: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// The run's clock and its printed log.
struct Run<'a> {
    fleet: &'a Fleet,
    started: Instant,
    /// What the operator did, by action.
    actions: Mutex<BTreeMap<&'static str, usize>>,
}

impl Run<'_> {
    fn log(&self, message: &str) {
        eprintln!(
            "[chaos +{:7.1}s] {message}",
            self.started.elapsed().as_secs_f64()
        );
    }

    fn count(&self, action: &'static str) {
        if let Ok(mut actions) = self.actions.lock() {
            *actions.entry(action).or_default() += 1;
        }
    }

    /// `wharf ARGS`: its trimmed stdout, or what it said when it failed.
    async fn cli(&self, args: &[&str]) -> Result<String, String> {
        match self.fleet.wharf(args).await {
            Ok(output) if output.success() => Ok(output.stdout.trim().to_owned()),
            Ok(output) => Err(format!(
                "exit {:?}: {} {}",
                output.code,
                output.stderr.trim(),
                output.stdout.trim()
            )),
            Err(error) => Err(format!("{error:#}")),
        }
    }

    /// `GET /api/v1/PATH`, retried while the server is down or its store stalls.
    async fn api(&self, path: &str) -> Value {
        let deadline = Instant::now() + API_TIMEOUT;
        loop {
            match self.fleet.api_get(path).await {
                Ok(value) => return value,
                Err(error) if Instant::now() >= deadline => panic!(
                    "GET {path} failed for {API_TIMEOUT:?}: {error:#}\n{}",
                    self.fleet.diagnostics()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// The group's releases (with counts, no batches), newest first.
    async fn releases(&self) -> Vec<Value> {
        let path = format!(
            "releases?app={}&group={}&limit=1000",
            scenario::APP,
            scenario::GROUP
        );
        self.api(&path)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until none of the group's releases is active (an automatic rollback
    /// included).
    async fn wait_no_active(&self) {
        let deadline = Instant::now() + RELEASE_TIMEOUT;
        loop {
            let releases = self.releases().await;
            let active: Vec<String> = releases
                .iter()
                .filter(|r| !TERMINAL.contains(&r["state"].as_str().unwrap_or_default()))
                .map(|r| format!("{} {}", r["id"], r["state"]))
                .collect();
            if active.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "invariant 1: releases still active after {RELEASE_TIMEOUT:?}: {active:?}\n{}",
                self.fleet.diagnostics()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until no task of any release is still under way. Cancelling a release
    /// dispatches no further work but lets a step under way finish and report (as
    /// the product says), so an ended release may have a task that ends a little
    /// later: after a store stall, when its agent's reports were held back.
    async fn wait_tasks_ended(&self) {
        let deadline = Instant::now() + RELEASE_TIMEOUT;
        loop {
            let releases = self.releases().await;
            let under_way: Vec<String> = releases
                .iter()
                .filter(|r| r["counts"]["running"].as_u64().unwrap_or(0) > 0)
                .map(|r| format!("{} {} {}", r["id"], r["state"], r["counts"]))
                .collect();
            if under_way.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                // Left for the judge to report as a violation of invariant 1.
                self.log(&format!(
                    "tasks still under way after {RELEASE_TIMEOUT:?}: {under_way:?}"
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Runs `wharf ARGS` (a `--detach`ed create or rollback) until a new release
    /// exists: a call whose answer was lost to a fault may still have created it, so
    /// after each failure the group's releases are looked at before trying again.
    /// `None` when there is nothing to roll back to.
    async fn create(&self, args: &[&str]) -> Option<String> {
        let known: BTreeSet<String> = self
            .releases()
            .await
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect();
        let deadline = Instant::now() + API_TIMEOUT;
        loop {
            let error = match self.cli(args).await {
                Ok(out) => return out.lines().last().map(str::to_owned),
                Err(error) if error.contains("nothing_to_roll_back") => return None,
                Err(error) => error,
            };
            let adopted = self
                .releases()
                .await
                .iter()
                .filter_map(|r| r["id"].as_str())
                .find(|id| !known.contains(*id))
                .map(str::to_owned);
            if let Some(id) = adopted {
                self.log(&format!("created {id} although the CLI said: {error}"));
                return Some(id);
            }
            assert!(
                Instant::now() < deadline,
                "wharf {} kept failing: {error}\n{}",
                args.join(" "),
                self.fleet.diagnostics()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// `wharf release continue|cancel ID`, retried until the release left `from` (a
    /// state) or ended; `from` `None`: until the command went through or it ended.
    async fn act(&self, action: &'static str, id: &str, from: Option<&str>) {
        let deadline = Instant::now() + API_TIMEOUT;
        loop {
            let done = self.cli(&["release", action, id]).await;
            let release = self.api(&format!("releases/{id}")).await;
            let state = release["state"].as_str().unwrap_or_default();
            let moved = from.is_some_and(|from| state != from);
            if TERMINAL.contains(&state) || moved || (from.is_none() && done.is_ok()) {
                // The CLI prints the whole release; its outcome is enough here.
                let said = match &done {
                    Ok(_) => "ok".to_owned(),
                    Err(error) => error.clone(),
                };
                self.log(&format!("{action} {id}: {said}, now {state}"));
                self.count(action);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "wharf release {action} {id} did not take: {done:?}, {state}\n{}",
                self.fleet.diagnostics()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The operator: round after round, waits until the group is idle, starts the
/// round's release and handles it (pauses, a cancel) until it ends.
async fn operator(run: &Run<'_>, settings: &ChaosSettings, faults_done: &AtomicBool) -> usize {
    let mut index = 0;
    while index < settings.min_rounds
        || (!faults_done.load(Ordering::SeqCst) && index < settings.max_rounds)
    {
        run.wait_no_active().await;
        // As an operator would, wait for hosts that are away (a fault) to come back
        // before the next release, rather than fail it at once for an offline host.
        if let Err(error) = run.fleet.wait_all_online(ONLINE_WAIT).await {
            run.log(&format!("starting the next round anyway: {error:#}"));
        }
        let round = Round::plan(settings.seed, index);
        index += 1;
        let plan = match round {
            Round::Rollback => {
                let args = [
                    "release",
                    "rollback",
                    scenario::APP,
                    scenario::GROUP,
                    "--detach",
                ];
                match run.create(&args).await {
                    Some(id) => {
                        run.log(&format!("round {index}: wharf release rollback: {id}"));
                        run.count("rollback");
                        follow(run, &id, None).await;
                    }
                    None => run.log(&format!("round {index}: nothing to roll back to")),
                }
                continue;
            }
            Round::Release(plan) => plan,
        };
        let batches = plan.batches.to_string();
        let max_failures = plan.max_failures.map(|n| n.to_string());
        let mut args = vec![
            "release",
            "create",
            scenario::APP,
            scenario::GROUP,
            "--deployment",
            plan.deployment,
            "--batches",
            &batches,
            "--pause",
            plan.pause.as_arg(),
            "--detach",
        ];
        if let Some(n) = &max_failures {
            args.extend(["--max-failures", n]);
        }
        if plan.rollback_on_failure {
            args.push("--rollback-on-failure");
        }
        let Some(id) = run.create(&args).await else {
            panic!("wharf release create answered nothing to roll back")
        };
        run.log(&format!("round {index}: {id}: wharf {}", args.join(" ")));
        run.count("create");
        follow(run, &id, Some(&plan)).await;
    }
    run.wait_no_active().await;
    index
}

/// Follows release `id` until it ends, answering its pauses and cancelling it as
/// `plan` says.
async fn follow(run: &Run<'_>, id: &str, plan: Option<&chaos::ReleasePlan>) {
    let started = Instant::now();
    let deadline = started + RELEASE_TIMEOUT;
    let mut pauses = 0;
    let mut cancel_at = plan
        .and_then(|p| p.cancel_after)
        .map(|after| started + after);
    loop {
        let release = run.api(&format!("releases/{id}")).await;
        let state = release["state"].as_str().unwrap_or_default().to_owned();
        if TERMINAL.contains(&state.as_str()) {
            let rollback = release["rolled_back_by"]
                .as_str()
                .map(|by| format!("; rolled back by {by}"))
                .unwrap_or_default();
            run.log(&format!(
                "{id} ({} {}) ended {state}: {} {}{rollback}",
                release["kind"].as_str().unwrap_or_default(),
                release["deployment"].as_str().unwrap_or_default(),
                release["counts"],
                release["message"].as_str().unwrap_or_default()
            ));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "invariant 1: {id} did not end within {RELEASE_TIMEOUT:?}: {release:#}\n{}",
            run.fleet.diagnostics()
        );
        if state == "paused" {
            // Every pause is answered: a release left paused would never end.
            let answers = plan.map(|p| p.on_pause.as_slice()).unwrap_or_default();
            let answer = answers
                .get(pauses.min(answers.len().saturating_sub(1)))
                .copied()
                .unwrap_or(OnPause::Continue(Duration::ZERO));
            pauses += 1;
            match answer {
                OnPause::Continue(after) => {
                    tokio::time::sleep(after).await;
                    run.act("continue", id, Some("paused")).await;
                }
                OnPause::Cancel(after) => {
                    tokio::time::sleep(after).await;
                    run.act("cancel", id, Some("paused")).await;
                }
            }
            continue;
        }
        if cancel_at.is_some_and(|at| Instant::now() >= at) {
            cancel_at = None;
            run.act("cancel", id, None).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The hosts running a step of the group's active release, waiting up to
/// [`BUSY_WAIT`] for one.
async fn busy_hosts(run: &Run<'_>) -> Vec<String> {
    let deadline = Instant::now() + BUSY_WAIT;
    loop {
        let busy = busy_hosts_now(run).await;
        if !busy.is_empty() || Instant::now() >= deadline {
            return busy;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The hosts running a step of the group's active release now, if any.
async fn busy_hosts_now(run: &Run<'_>) -> Vec<String> {
    let Ok(releases) = run
        .fleet
        .api_get(&format!(
            "releases?app={}&group={}&limit=5",
            scenario::APP,
            scenario::GROUP
        ))
        .await
    else {
        return Vec::new();
    };
    let Some(active) = releases
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["state"] == "running")
        .and_then(|r| r["id"].as_str())
    else {
        return Vec::new();
    };
    let Ok(release) = run.fleet.release(active).await else {
        return Vec::new();
    };
    release["batches"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|batch| batch["instances"].as_array().cloned().unwrap_or_default())
        .filter(|instance| {
            instance["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|step| step["state"] == "running")
        })
        .filter_map(|instance| instance["name"].as_str().map(str::to_owned))
        .collect()
}

/// A host in a step if there is one (where a fault matters), else the plan's.
fn pick(rng: &mut StdRng, planned: usize, busy: Vec<String>) -> (String, &'static str) {
    busy.choose(rng)
        .cloned()
        .map(|host| (host, " (in a step)"))
        .unwrap_or_else(|| (format!("host-{}", planned + 1), " (idle)"))
}

/// The injector: each planned fault after its gap, undone before the next.
async fn injector(
    run: &Run<'_>,
    settings: &ChaosSettings,
    faults: &[Fault],
    done: &AtomicBool,
) -> BTreeMap<&'static str, usize> {
    let mut rng = StdRng::seed_from_u64(settings.seed.rotate_left(17));
    let mut injected: BTreeMap<&'static str, usize> = BTreeMap::new();
    let fleet = run.fleet;
    for (number, fault) in faults.iter().enumerate() {
        tokio::time::sleep(fault.gap).await;
        let label = format!("fault {}/{}", number + 1, faults.len());
        match fault.kind {
            FaultKind::KillServer { down } => {
                run.log(&format!("{label}: SIGKILL to the server, down {down:?}"));
                fleet.kill_server().await;
                tokio::time::sleep(down).await;
                check(fleet.start_server().await, fleet);
                run.log(&format!("{label}: server started again"));
            }
            FaultKind::KillAgent { host, down } => {
                let (host, how) = pick(&mut rng, host, busy_hosts(run).await);
                run.log(&format!(
                    "{label}: SIGKILL to the agent of {host}{how}, down {down:?}"
                ));
                check(fleet.kill_agent(&host).await, fleet);
                tokio::time::sleep(down).await;
                check(fleet.start_agent(&host).await, fleet);
                run.log(&format!("{label}: agent of {host} started again"));
            }
            FaultKind::Disconnect { host, off } => {
                let (host, how) = pick(&mut rng, host, busy_hosts(run).await);
                run.log(&format!(
                    "{label}: {host}{how} disconnected from the network for {off:?}"
                ));
                check(fleet.disconnect_host(&host).await, fleet);
                tokio::time::sleep(off).await;
                check(fleet.reconnect_host(&host).await, fleet);
                run.log(&format!("{label}: {host} reconnected"));
            }
            FaultKind::StallStore { stall } => {
                let db = fleet.server_data_dir().await.join("wharf.db");
                run.log(&format!(
                    "{label}: store stalled (write lock held) for {stall:?}"
                ));
                let holder = check(
                    wharf_testkit::store_stall::hold_write_lock(&db, stall).await,
                    fleet,
                );
                match holder.await {
                    Ok(result) => check(result, fleet),
                    Err(error) => panic!("the lock holder panicked: {error}"),
                }
                run.log(&format!("{label}: store released"));
            }
        }
        *injected.entry(fault.kind.name()).or_default() += 1;
    }
    done.store(true, Ordering::SeqCst);
    run.log("faults done");
    injected
}

/// What every host holds: its script records, its container's image and digests
/// and the app's answer.
async fn host_records(fleet: &Fleet) -> Vec<HostRecord> {
    let script = format!(
        "cat {starts} 2>/dev/null; echo '--'; cat {stops} 2>/dev/null; echo '--'; \
         if [ \"$(docker inspect -f '{{{{.State.Status}}}}' {c} 2>/dev/null)\" = running ]; then \
           docker inspect -f '{{{{.Config.Image}}}}' {c}; \
           docker image inspect -f '{{{{join .RepoDigests \" \"}}}}' \
             \"$(docker inspect -f '{{{{.Image}}}}' {c})\"; \
         fi",
        starts = scenario::STARTS_FILE,
        stops = scenario::STOPS_FILE,
        c = CONTAINER,
    );
    let mut records = Vec::new();
    for host in fleet.hosts() {
        let output = check(fleet.sh(&host.name, &script).await, fleet);
        assert!(output.success(), "{}: {output:?}", host.name);
        let mut parts = output.stdout.split("--\n");
        let lines = |part: Option<&str>| -> Vec<String> {
            part.unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let starts = lines(parts.next());
        let stops = lines(parts.next());
        let container = lines(parts.next());
        let image_digests = container
            .get(1)
            .map(|line| {
                line.split_whitespace()
                    .filter_map(|d| d.split_once('@').map(|(_, digest)| digest.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let answer = match fleet
            .http_get(&host.name, sample_image::CONTAINER_PORT, "/hello")
            .await
        {
            Ok(response) if response.status == 200 => Some(response.body),
            _ => None,
        };
        records.push(HostRecord {
            name: host.name.clone(),
            starts,
            stops,
            container_image: container.first().cloned(),
            image_digests,
            answer,
        });
    }
    records
}

/// Collects the end state and runs the checker on it.
async fn judge(run: &Run<'_>, expected: &BTreeMap<String, Expected>, converged: bool) -> Verdict {
    let mut releases = Vec::new();
    for listed in run.releases().await.iter().rev() {
        let id = listed["id"].as_str().unwrap_or_default();
        releases.push(run.api(&format!("releases/{id}")).await);
    }
    let group = run
        .api(&format!(
            "apps/{}/groups/{}",
            scenario::APP,
            scenario::GROUP
        ))
        .await;
    let scaling_group = run.api(&format!("scaling-groups/{SG}")).await;
    let hosts = host_records(run.fleet).await;
    for host in &hosts {
        run.log(&format!(
            "{}: starts {:?}, stops {:?}, runs {:?}, answers {:?}",
            host.name, host.starts, host.stops, host.container_image, host.answer
        ));
    }
    chaos::check(
        &World {
            releases: &releases,
            group: &group,
            hosts: &hosts,
            expected,
            scaling_group: Some(&scaling_group),
        },
        converged,
    )
}

/// Waits until the scaling group is active with nothing pending (or the timeout).
async fn wait_scaling_group_settled(run: &Run<'_>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let sg = run.api(&format!("scaling-groups/{SG}")).await;
        if sg["state"] == "active"
            && sg["resume_hook_pending"] == false
            && sg["pending"].as_array().is_some_and(Vec::is_empty)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_chaos_randomized_fault_run() {
    let settings = ChaosSettings::from_env().unwrap_or_else(|error| panic!("{error:#}"));
    eprintln!(
        "chaos seed: {seed}; rerun with {var}={seed}{long}",
        seed = settings.seed,
        var = chaos::SEED_VAR,
        long = if settings.long {
            format!(" {}=1", chaos::LONG_VAR)
        } else {
            String::new()
        }
    );
    let faults = chaos::plan_faults(&settings);
    eprintln!(
        "chaos plan: {} hosts, {}..{} releases, {} faults: {}",
        settings.hosts,
        settings.min_rounds,
        settings.max_rounds,
        faults.len(),
        faults
            .iter()
            .map(|f| format!("+{:.1}s {:?}", f.gap.as_secs_f64(), f.kind))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let fleet = Fleet::start(
        FleetOptions::with_hosts(settings.hosts)
            .liveness(settings.heartbeat, settings.offline_after),
    )
    .await
    .unwrap_or_else(|error| panic!("start the fleet: {error:#}"));
    let mut scenario = check(Scenario::new(&fleet, false), &fleet);
    check(scenario.push_versions(&["v1", "v2"]).await, &fleet);
    check(scenario.create_basics().await, &fleet);
    let stop = scenario::recording_stop_script();
    let mut expected = BTreeMap::new();
    for version in ["v1", "v2"] {
        let image = scenario.image(version);
        let start = scenario::start_script(&image, SLEEP_BEFORE_RUN);
        check(
            scenario
                .create_deployment_with_stop(
                    version,
                    version,
                    &start,
                    &stop,
                    &["--step-timeout", "60s"],
                )
                .await,
            &fleet,
        );
        expected.insert(
            version.to_owned(),
            Expected {
                image,
                answer: sample_image::hello_text(version),
            },
        );
    }
    let hooks = fleet.run_dir().join("hooks.log");
    let hooks_word = scenario::shell_word(&hooks.to_string_lossy());
    let on_suspend = format!("echo \"suspend $WHARF_RELEASE\" >> {hooks_word}");
    let on_resume = format!("echo \"resume $WHARF_RELEASE\" >> {hooks_word}");
    check(
        fleet
            .wharf_ok(&[
                "scaling-group",
                "create",
                SG,
                "--app",
                scenario::APP,
                "--group",
                scenario::GROUP,
                "--on-suspend",
                &on_suspend,
                "--on-resume",
                &on_resume,
            ])
            .await,
        &fleet,
    );

    let run = Run {
        fleet: &fleet,
        started: Instant::now(),
        actions: Mutex::new(BTreeMap::new()),
    };
    run.log("fleet ready: v1 and v2 pushed, group shop/prod of every host, scaling group bound");
    let faults_done = AtomicBool::new(false);
    let (rounds, injected) = tokio::join!(
        operator(&run, &settings, &faults_done),
        injector(&run, &settings, &faults, &faults_done)
    );
    let chaos_took = run.started.elapsed();

    // Settle: everything is back (the injector undid each fault); give the agents
    // time to come online and the scaling group to resume.
    if !fleet.server_running().await {
        check(fleet.start_server().await, &fleet);
    }
    for host in fleet.hosts() {
        if !check(fleet.agent_running(&host.name).await, &fleet) {
            check(fleet.start_agent(&host.name).await, &fleet);
        }
    }
    check(fleet.wait_all_online(Duration::from_secs(90)).await, &fleet);
    run.wait_no_active().await;
    run.wait_tasks_ended().await;
    wait_scaling_group_settled(&run).await;
    let verdict = judge(&run, &expected, false).await;
    run.log(&format!("after the faults: {verdict}"));

    // Convergence: one more release of the current deployment, without faults, must
    // succeed on every host and leave every member on it.
    let group = run
        .api(&format!(
            "apps/{}/groups/{}",
            scenario::APP,
            scenario::GROUP
        ))
        .await;
    let current = group["current_deployment"]
        .as_str()
        .unwrap_or("v1")
        .to_owned();
    let final_args = [
        "release",
        "create",
        scenario::APP,
        scenario::GROUP,
        "--deployment",
        &current,
        "--detach",
    ];
    let final_id = check(fleet.wharf_ok(&final_args).await, &fleet);
    follow(&run, &final_id, None).await;
    let final_release = run.api(&format!("releases/{final_id}")).await;
    wait_scaling_group_settled(&run).await;
    let converged = judge(&run, &expected, true).await;
    run.log(&format!("after convergence: {converged}"));

    // Figures.
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for release in run.releases().await {
        let key = format!(
            "{} {}",
            release["kind"].as_str().unwrap_or_default(),
            release["state"].as_str().unwrap_or_default()
        );
        *outcomes.entry(key).or_default() += 1;
    }
    let hook_lines = std::fs::read_to_string(&hooks).unwrap_or_default();
    let actions = run.actions.lock().map(|a| a.clone()).unwrap_or_default();
    eprintln!(
        "chaos figures (seed {seed}{long}): {rounds} operator rounds; faults {injected:?} \
         ({total} in all); releases {outcomes:?}; operator actions {actions:?}; scaling hooks \
         {hooks} lines; invariant checks {checked} after the faults + {conv} after convergence, \
         {undetermined} host(s) not determined after the faults; faults phase {chaos:.0}s, \
         total {all:.0}s",
        seed = settings.seed,
        long = if settings.long { ", long" } else { "" },
        total = injected.values().sum::<usize>(),
        hooks = hook_lines.lines().count(),
        checked = verdict.checked,
        conv = converged.checked,
        undetermined = verdict.undetermined.len(),
        chaos = chaos_took.as_secs_f64(),
        all = run.started.elapsed().as_secs_f64(),
    );
    let failures = [&verdict, &converged]
        .iter()
        .flat_map(|v| v.violations.iter().cloned())
        .collect::<Vec<_>>();
    assert!(
        failures.is_empty() && final_release["state"] == "succeeded",
        "chaos seed {}: invariants violated: {failures:#?}\nfinal release: {final_release:#}\n{}",
        settings.seed,
        fleet.diagnostics()
    );
    drop(scenario);
    drop(fleet);
}
