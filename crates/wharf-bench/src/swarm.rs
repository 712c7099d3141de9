//! Control-plane scale: one process, many tokio tasks, each a simulated agent that
//! speaks the real agent protocol over real HTTP to a real `wharf server` on
//! 127.0.0.1. A simulated agent heartbeats at the server's interval (spread out),
//! long-polls for work and "runs" each step by reporting its begin and end.

use crate::agent_http::{Client, Conn};
use crate::proc;
use crate::report::{median, quantile, Table};
use crate::server::{millis_between, Running};
use anyhow::{bail, Context as _};
use futures::StreamExt as _;
use rand::Rng as _;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The wait a simulated agent asks for on each poll, as the real agent does.
pub(crate) const POLL_WAIT_SECS: u64 = 25;
/// The longest one agent request may take (a poll waits up to `POLL_WAIT_SECS`).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(POLL_WAIT_SECS + 15);
/// How often a simulated agent tries to report one step event.
const REPORT_ATTEMPTS: usize = 20;
/// Free connections the agents' client keeps for heartbeats and reports: enough
/// for a batch reporting at once, few enough that bursts do not leave thousands
/// of extra sockets open in both processes.
pub(crate) const MAX_IDLE_CONNECTIONS: usize = 1024;
/// Registrations in flight at once.
const REGISTER_CONCURRENCY: usize = 32;
/// The batches of the release.
const BATCHES: usize = 10;
/// Pause between two reads of the release by the side task that times the API.
const API_PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// The probe's buffer: room for the view of 10,000 instances (8–9 MB) and more.
const PROBE_BUFFER_BYTES: usize = 16 << 20;
/// The longest the release may take before the run counts as failed.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(300);
/// The most requests any one loop of a simulated agent makes.
const MAX_REQUESTS_PER_LOOP: usize = 10_000;

/// What the simulated agents saw: when each instance got its work and when the
/// server acknowledged its last step.
#[derive(Default)]
struct Seen {
    /// When the agent had its work, on this process's clock and on the wall
    /// clock (which the server's `dispatched_at` is on too).
    received: HashMap<String, (Instant, chrono::DateTime<chrono::Utc>)>,
    /// When the answer that brought the work had been read, before it was
    /// parsed, on the wall clock.
    answered: HashMap<String, chrono::DateTime<chrono::Utc>>,
    done: HashMap<String, Instant>,
    errors: Vec<String>,
}

/// One simulated agent's identity, with what every request of it sends made
/// once: the swarm shares the server's two cores, so its own work per request is
/// kept small.
#[derive(Clone)]
pub(crate) struct Agent {
    pub(crate) id: String,
    /// `Bearer <credential>`.
    pub(crate) authorization: String,
}

/// The protocol header every agent request carries, and the version it names:
/// version 2, in which a step's end carries the next step's begin.
pub(crate) const PROTOCOL_HEADER: &str = "x-wharf-agent-protocol";
pub(crate) const PROTOCOL_VERSION: &str = "2";

/// The body of every heartbeat.
pub(crate) const HEARTBEAT_BODY: &str = r#"{"agent_version":"bench"}"#;

/// What the swarm reads of an assignment.
#[derive(serde::Deserialize)]
struct Assignment {
    release_id: String,
    steps: Vec<String>,
}

/// What the swarm reads of a step event's answer.
#[derive(serde::Deserialize)]
struct Ack {
    proceed: bool,
}

/// Runs the swarm with `agents` simulated agents and adds its figures to `table`.
pub async fn run(
    wharf: &Path,
    agents: usize,
    quick: bool,
    table: &mut Table,
) -> anyhow::Result<()> {
    println!("swarm: {agents} simulated agents");
    let running = Running::start(wharf).await?;
    let pid = running.pid()?;
    let api = running.api.clone();
    let url = api.url.clone();

    // Registration (not measured beyond its rate).
    let started = Instant::now();
    let (swarm, interval_secs) = register_all(&api, agents).await?;
    let register_secs = started.elapsed().as_secs_f64();
    println!(
        "  registered {agents} agents in {register_secs:.1} s ({:.0}/s)",
        agents as f64 / register_secs
    );
    let ids: Vec<String> = swarm.iter().map(|a| a.id.clone()).collect();
    api.app_with_group("swarm", "all", &ids).await?;
    api.post(
        "/api/v1/apps/swarm/deployments",
        json!({"name": "noop", "type": "command", "workdir": running.dir().join("work").to_string_lossy(),
               "start_script": "true", "stop_script": "true"}),
    )
    .await?;

    // The swarm connects: every agent long-polls and heartbeats, spread over the interval.
    let agent_client = Arc::new(Client::new(&url, MAX_IDLE_CONNECTIONS, REQUEST_TIMEOUT)?);
    agent_client
        .warm(agents.min(MAX_IDLE_CONNECTIONS))
        .await
        .context("opening the agents' connections")?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let interval = Duration::from_secs(interval_secs);
    let mut tasks = Vec::with_capacity(agents * 2);
    for agent in &swarm {
        let offset = interval.mul_f64(rand::thread_rng().gen_range(0.0..1.0));
        tasks.push(tokio::spawn(heartbeat_loop(
            agent_client.clone(),
            agent.clone(),
            interval,
            offset,
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(work_loop(
            agent_client.clone(),
            agent.clone(),
            seen.clone(),
            stop_rx.clone(),
        )));
    }
    // One full heartbeat interval so that every agent is connected and has beaten once.
    tokio::time::sleep(interval + Duration::from_secs(2)).await;
    let window = if quick {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(30)
    };
    let idle = proc::usage_over(pid, window).await?;
    println!(
        "  idle-connected over {window:?}: RSS {:.1} MiB, CPU {:.1}% of a core",
        idle.rss_mib, idle.cpu_percent
    );

    // The release, with a side task timing GET /api/v1/releases/{id} meanwhile.
    // The probe stands for an operator's `wharf release show` from elsewhere: it
    // runs on a thread and runtime of its own, with its own client, so that its
    // reads do not queue behind the swarm's 20,000 tasks in this process. It is
    // set up before the release is created and given its id after, so that
    // starting a thread, a runtime and a client does not fall in the first
    // batch's dispatch.
    let (id_tx, id_rx) = std::sync::mpsc::channel::<String>();
    let probe = {
        let (url, token) = (api.url.clone(), api.token.clone());
        // The buffer the probe reads into, its memory touched now rather than by
        // the first reads, beside the first batches (see `Api::get_into`). It is
        // filled with ones: zeroed memory may come from the OS untouched.
        let mut body = vec![1u8; PROBE_BUFFER_BYTES];
        body.clear();
        std::thread::spawn(move || -> anyhow::Result<(Vec<f64>, Instant)> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("the probe's runtime")?;
            let api = crate::server::Api::new(url, token)?;
            let id = id_rx.recv().context("the release was not created")?;
            runtime.block_on(probe_api(api, id, &mut body))
        })
    };
    let created_at = Instant::now();
    // The answer is the release's full view (1.7 MB at 10,000 instances); only
    // its id is parsed, so that this process does not spend the first batch's
    // milliseconds on the rest.
    let created = api
        .post_bytes(
            "/api/v1/apps/swarm/groups/all/releases",
            json!({"deployment": "noop", "batches": BATCHES}),
        )
        .await?;
    let release: Value = serde_json::from_slice(release_header(created.as_ref()).as_ref())
        .context("the created release")?;
    let id = release["id"].as_str().context("release id")?.to_owned();
    let cpu_before = proc::cpu_secs(pid)?;
    let swarm_cpu_before = proc::cpu_secs(std::process::id())?;
    let _ = id_tx.send(id.clone());
    let (api_latencies, seen_done_at) = tokio::task::spawn_blocking(move || probe.join())
        .await
        .context("waiting for the API probe")?
        .map_err(|_| anyhow::anyhow!("the API probe panicked"))??;
    let observed_ms = seen_done_at.duration_since(created_at).as_secs_f64() * 1000.0;
    let release_cpu = proc::cpu_secs(pid)? - cpu_before;
    let swarm_cpu = proc::cpu_secs(std::process::id())? - swarm_cpu_before;
    let view = api.get(&format!("/api/v1/releases/{id}")).await?;
    let _ = stop_tx.send(true);
    for task in tasks {
        task.abort();
    }
    if view["state"] != "succeeded" {
        bail!(
            "the swarm release ended {}: {}",
            view["state"],
            view["message"]
        );
    }
    let peak_rss_mib = proc::status_kb(pid, "VmHWM")? as f64 / 1024.0;
    let server_ms = millis_between(&view["created_at"], &view["finished_at"]).unwrap_or(0.0);

    // Dispatch latency, as the issue defines it: from the batch's start (the
    // server's `dispatched_at` of the instance, in ms) to the agent holding the
    // work (the wall clock here, on the same machine). Hand-off, a stricter
    // figure: from the moment the previous batch's last report was acknowledged
    // (batch 1: from sending the create request) to the agent holding the work;
    // it adds the driver's reaction and, for batch 1, the release's creation.
    let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    if let Some(error) = seen.errors.first() {
        bail!(
            "{} simulated agent(s) failed, first: {error}",
            seen.errors.len()
        );
    }
    let mut dispatch = Vec::with_capacity(agents);
    let mut hand_off = Vec::with_capacity(agents);
    // The part of dispatch until the answer was read here: all of it but the
    // parse of the assignment.
    let mut answered = Vec::with_capacity(agents);
    let mut batch_start = created_at;
    let batches = view["batches"].as_array().context("batches")?;
    for batch in batches {
        let members = batch["instances"].as_array().context("batch instances")?;
        let mut ids = Vec::with_capacity(members.len());
        for member in members {
            let id = member["id"].as_str().context("instance id")?;
            let dispatched_at: chrono::DateTime<chrono::Utc> = member["dispatched_at"]
                .as_str()
                .context("dispatched_at")?
                .parse()
                .context("dispatched_at")?;
            if let Some(answered_at) = seen.answered.get(id) {
                answered.push(
                    (*answered_at - dispatched_at)
                        .num_microseconds()
                        .unwrap_or(0) as f64
                        / 1000.0,
                );
            }
            let (received, received_at) = seen.received.get(id).context("an agent got no work")?;
            dispatch.push(
                (*received_at - dispatched_at)
                    .num_microseconds()
                    .unwrap_or(0) as f64
                    / 1000.0,
            );
            hand_off.push(received.duration_since(batch_start).as_secs_f64() * 1000.0);
            ids.push(id);
        }
        batch_start = ids
            .iter()
            .filter_map(|m| seen.done.get(*m))
            .max()
            .copied()
            .context("a batch with no finished agent")?;
    }
    let mut api_latencies = api_latencies;
    if std::env::var_os("WHARF_BENCH_DEBUG").is_some() {
        let by_batch = |latencies: &[f64]| -> String {
            latencies
                .chunks(agents.div_ceil(BATCHES).max(1))
                .map(|c| {
                    let mut c = c.to_vec();
                    format!(
                        "{:.0}/{:.0}",
                        median(&mut c.clone()),
                        quantile(&mut c, 0.99)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        eprintln!("  dispatch p50/p99 by batch: {}", by_batch(&dispatch));
        eprintln!(
            "  of which until the answer is read p50/p99 by batch: {}",
            by_batch(&answered)
        );
        eprintln!("  hand-off p50/p99 by batch: {}", by_batch(&hand_off));

        eprintln!(
            "  API reads (ms): {:?}",
            api_latencies.iter().map(|l| *l as u64).collect::<Vec<_>>()
        );
    }
    let label = format!("{agents} agents");
    println!(
        "  release: {server_ms:.0} ms (server), {observed_ms:.0} ms (observed); server CPU {release_cpu:.2} s, swarm CPU {swarm_cpu:.2} s"
    );
    table.add(
        format!("{label}: server RSS idle-connected"),
        format!("{:.1} MiB (peak {peak_rss_mib:.1} MiB)", idle.rss_mib),
        "≤ 1 GiB",
    );
    table.add(
        format!(
            "{label}: server CPU idle-connected ({}s window)",
            window.as_secs()
        ),
        format!("{:.1}% of a core", idle.cpu_percent),
        "-",
    );
    table.add(
        format!("{label}: release creation → succeeded ({BATCHES} batches)"),
        format!("{server_ms:.0} ms (server clock), {observed_ms:.0} ms observed"),
        "≤ 10 s",
    );
    table.add(
        format!("{label}: dispatch latency p50 / p99 (batch start → agent has the work)"),
        format!(
            "{:.1} ms / {:.1} ms",
            median(&mut dispatch.clone()),
            quantile(&mut dispatch, 0.99)
        ),
        "p99 ≤ 100 ms",
    );
    table.add(
        format!("{label}: of which batch start → the answer read (not yet parsed) p50 / p99"),
        format!(
            "{:.1} ms / {:.1} ms",
            median(&mut answered.clone()),
            quantile(&mut answered, 0.99)
        ),
        "-",
    );
    table.add(
        format!("{label}: hand-off p50 / p99 (previous batch acknowledged → agent has the work)"),
        format!(
            "{:.1} ms / {:.1} ms",
            median(&mut hand_off.clone()),
            quantile(&mut hand_off, 0.99)
        ),
        "-",
    );
    table.add(
        format!(
            "{label}: GET /api/v1/releases/{{id}} p50 / p99 ({} reads)",
            api_latencies.len()
        ),
        format!(
            "{:.1} ms / {:.1} ms",
            median(&mut api_latencies.clone()),
            quantile(&mut api_latencies, 0.99)
        ),
        "p99 ≤ 100 ms",
    );
    table.add(
        format!("{label}: registration rate"),
        format!("{:.0} agents/s", agents as f64 / register_secs),
        "-",
    );
    Ok(())
}

/// Registers one simulated agent; returns it and the heartbeat interval.
async fn register(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    i: usize,
) -> anyhow::Result<(Agent, u64)> {
    let name = format!("sim-{i:05}");
    let response = http
        .post(format!("{url}/agent/v1/register"))
        .header(PROTOCOL_HEADER, PROTOCOL_VERSION)
        .json(
            &json!({"registration_token": token, "name": name, "hostname": name,
                      "os": "linux", "arch": "x86_64", "agent_version": "bench"}),
        )
        .send()
        .await
        .context("registering")?;
    if !response.status().is_success() {
        bail!("registration answered {}", response.status());
    }
    let reply: Value = response.json().await.context("registration answer")?;
    let credential = reply["credential"].as_str().context("credential")?;
    let authorization = format!("Bearer {credential}");
    Ok((
        Agent {
            id: reply["instance_id"]
                .as_str()
                .context("instance_id")?
                .to_owned(),
            authorization,
        },
        reply["heartbeat_interval_secs"].as_u64().unwrap_or(10),
    ))
}

/// Registers `agents` agents with one registration token: the agents and the
/// heartbeat interval (in seconds) the server gave. Registration goes through
/// reqwest, as the real agent's does; the agents' heartbeats, polls and reports
/// through `agent_http` (see there why).
pub(crate) async fn register_all(
    api: &crate::server::Api,
    agents: usize,
) -> anyhow::Result<(Vec<Agent>, u64)> {
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the swarm's HTTP client")?;
    let token = api.registration_token(agents).await?;
    let registered: Vec<anyhow::Result<(Agent, u64)>> = futures::stream::iter(0..agents)
        .map(|i| register(&http, &api.url, &token, i))
        .buffer_unordered(REGISTER_CONCURRENCY)
        .collect()
        .await;
    let mut swarm = Vec::with_capacity(agents);
    let mut interval_secs = 10;
    for result in registered {
        let (agent, interval) = result?;
        interval_secs = interval;
        swarm.push(agent);
    }
    Ok((swarm, interval_secs))
}

/// Heartbeats every `interval`, first after `offset`, until told to stop.
async fn heartbeat_loop(
    client: Arc<Client>,
    agent: Agent,
    interval: Duration,
    offset: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = Instant::now() + offset;
    let heartbeat = client.request(
        "POST",
        "/agent/v1/heartbeat",
        &agent.authorization,
        Some(HEARTBEAT_BODY),
    );
    for _ in 0..MAX_REQUESTS_PER_LOOP {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        next += interval;
        // A failed heartbeat is like a lost one: the next one comes on time.
        let _ = client.send(&heartbeat).await;
    }
}

/// Long-polls for work and reports every step as begun and succeeded.
async fn work_loop(
    client: Arc<Client>,
    agent: Agent,
    seen: Arc<Mutex<Seen>>,
    mut stop: watch::Receiver<bool>,
) {
    let poll = client.request(
        "GET",
        &format!("/agent/v1/work?wait_secs={POLL_WAIT_SECS}"),
        &agent.authorization,
        None,
    );
    // The agent's polls have a connection of their own, as a real agent's
    // long poll holds one while its heartbeats and reports use others.
    let mut poll_connection = None;
    for _ in 0..MAX_REQUESTS_PER_LOOP {
        let outcome = tokio::select! {
            outcome = work_once(&client, &mut poll_connection, &poll, &agent, &seen) => outcome,
            _ = stop.changed() => return,
        };
        if let Err(err) = outcome {
            if let Ok(mut seen) = seen.lock() {
                seen.errors.push(format!("{}: {err:#}", agent.id));
            }
            // Back off as the real agent does, without hammering the server.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// One poll and, if it brought work, the steps of that work.
async fn work_once(
    client: &Client,
    poll_connection: &mut Option<Conn>,
    poll: &[u8],
    agent: &Agent,
    seen: &Mutex<Seen>,
) -> anyhow::Result<()> {
    let answer = client
        .send_on(poll_connection, poll)
        .await
        .context("polling")?;
    let answered_at = chrono::Utc::now();
    match answer.status {
        204 => return Ok(()),
        200 => {}
        other => bail!("the poll answered {other}"),
    }
    let work: Assignment = serde_json::from_slice(&answer.body).context("the assignment")?;
    let received = (Instant::now(), chrono::Utc::now());
    if let Ok(mut seen) = seen.lock() {
        seen.received.insert(agent.id.clone(), received);
        seen.answered.insert(agent.id.clone(), answered_at);
    }
    let events_path = format!("/agent/v1/releases/{}/events", work.release_id);
    for event in step_events(&work.steps)? {
        let ack = report(client, &events_path, agent, &event).await?;
        if !ack.proceed {
            bail!("the server said not to proceed");
        }
    }
    if let Ok(mut seen) = seen.lock() {
        seen.done.insert(agent.id.clone(), Instant::now());
    }
    Ok(())
}

/// The reports of a task whose steps all succeed at once, as the real agent
/// sends them: the first step's begin, then each step's end carrying the next
/// step's begin.
fn step_events(steps: &[String]) -> anyhow::Result<Vec<String>> {
    let names = steps
        .iter()
        .map(|step| serde_json::to_string(step).context("a step name"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut events = Vec::with_capacity(names.len() + 1);
    if let Some(first) = names.first() {
        events.push(format!(r#"{{"event":"begin","step":{first}}}"#));
    }
    for (index, step) in names.iter().enumerate() {
        let then_begin = match names.get(index + 1) {
            Some(next) => format!(r#","then_begin":{next}"#),
            None => String::new(),
        };
        events.push(format!(
            r#"{{"event":"end","step":{step},"succeeded":true,"exit_code":0{then_begin}}}"#
        ));
    }
    Ok(events)
}

/// Reports one step event, retrying a report that did not get through (as the real
/// agent does) rather than polling again, which would abandon the task.
async fn report(
    client: &Client,
    events_path: &str,
    agent: &Agent,
    event: &str,
) -> anyhow::Result<Ack> {
    let request = client.request("POST", events_path, &agent.authorization, Some(event));
    let mut last_error = None;
    for _ in 0..REPORT_ATTEMPTS {
        match client.send(&request).await {
            Ok(answer) if (200..300).contains(&answer.status) => {
                return serde_json::from_slice(&answer.body).context("the event ack");
            }
            Ok(answer) if (400..500).contains(&answer.status) => {
                bail!("a step event answered {}", answer.status);
            }
            Ok(answer) => last_error = Some(anyhow::anyhow!("answered {}", answer.status)),
            Err(err) => last_error = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last_error
        .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
        .context(format!("reporting a step failed {REPORT_ATTEMPTS} times")))
}

/// The release's own fields of a release view, without its batches: the view
/// ends with the batches (8–9 MB at 10,000 instances), and the probe parses
/// only what it needs, ten times a second, on the cores the server and the
/// swarm share. The whole view when it has no batches field.
fn release_header(view: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const BATCHES: &[u8] = b",\"batches\":";
    match view.windows(BATCHES.len()).position(|w| w == BATCHES) {
        Some(at) => {
            let mut header = view[..at].to_vec();
            header.push(b'}');
            std::borrow::Cow::Owned(header)
        }
        None => std::borrow::Cow::Borrowed(view),
    }
}

/// Reads the release every `API_PROBE_INTERVAL` until it ends; returns the latencies
/// in ms and when the end was first seen. A read's latency runs from sending the
/// request to having the whole answer (about 9 MB at 10,000 instances); only the
/// release's state is then parsed out of it, outside the timing, so that this
/// process's own parsing neither counts as the server's time nor takes the CPU
/// the server and the swarm share.
async fn probe_api(
    api: crate::server::Api,
    id: String,
    body: &mut Vec<u8>,
) -> anyhow::Result<(Vec<f64>, Instant)> {
    /// The one field of the release view the probe needs.
    #[derive(serde::Deserialize)]
    struct ReleaseState {
        state: String,
    }
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let started = Instant::now();
        let read = api.get_into(&format!("/api/v1/releases/{id}"), body).await;
        if let Err(err) = read {
            // A failed read is a finding, not the end of the run: it is counted
            // and shown, and the release goes on.
            eprintln!("  GET /api/v1/releases/{id} failed: {err:#}");
            tokio::time::sleep(API_PROBE_INTERVAL).await;
            continue;
        }
        let now = Instant::now();
        latencies.push(now.duration_since(started).as_secs_f64() * 1000.0);
        let release: ReleaseState =
            serde_json::from_slice(release_header(body).as_ref()).context("the release view")?;
        if matches!(release.state.as_str(), "succeeded" | "failed" | "cancelled") {
            return Ok((latencies, now));
        }
        tokio::time::sleep(API_PROBE_INTERVAL).await;
    }
    bail!("the release did not end within {RELEASE_TIMEOUT:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_header_is_the_view_without_its_batches() {
        // As the server writes it: the batches last.
        let view = br#"{"id":"r-1","state":"running","message":"a \",\"batches\": b","batches":[{"number":1,"state":"succeeded","instances":[]}]}"#;
        let header: Value = serde_json::from_slice(&release_header(view)).unwrap();
        assert_eq!(
            header,
            json!({"id": "r-1", "state": "running", "message": "a \",\"batches\": b"})
        );
        let bare = br#"{"state":"failed"}"#;
        assert_eq!(release_header(bare).as_ref(), bare);
    }

    #[test]
    fn each_end_but_the_last_begins_the_next_step() {
        let steps = ["prepare", "stop", "start"].map(String::from);
        let events: Vec<Value> = step_events(&steps)
            .unwrap()
            .iter()
            .map(|event| serde_json::from_str(event).unwrap())
            .collect();
        let end =
            |step: &str| json!({"event": "end", "step": step, "succeeded": true, "exit_code": 0});
        let mut ends_and_begins = [end("prepare"), end("stop")];
        ends_and_begins[0]["then_begin"] = json!("stop");
        ends_and_begins[1]["then_begin"] = json!("start");
        assert_eq!(
            events,
            [
                json!({"event": "begin", "step": "prepare"}),
                ends_and_begins[0].clone(),
                ends_and_begins[1].clone(),
                end("start"),
            ]
        );
        assert!(step_events(&[]).unwrap().is_empty());
    }
}
