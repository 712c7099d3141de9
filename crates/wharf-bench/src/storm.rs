//! A reconnect storm: a server with thousands of connected agents is killed and
//! started again after a while, and the agents come back as the real agent does
//! (wharf-agent's backoff.rs: full jitter, heartbeats retried within their
//! interval, `Retry-After` honoured). Measured: how the reconnections spread over
//! time, and the latency of an operator's API reads in the first 30 s after the
//! restart.

use crate::agent_http::{Answer, Client};
use crate::report::{median, quantile, Table};
use crate::server::Running;
use crate::swarm::{
    register_all, Agent, HEARTBEAT_BODY, MAX_IDLE_CONNECTIONS, POLL_WAIT_SECS, REQUEST_TIMEOUT,
};
use anyhow::Context as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use wharf_agent::backoff::{heartbeat_delay, Backoff};

/// Pause between two reads of the probe.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// What the agents saw after the restart.
#[derive(Default)]
struct AfterRestart {
    /// When the restart happened; `None` before it.
    at: Option<Instant>,
    /// Each agent's first delivered heartbeat after the restart, in seconds.
    reconnected: Vec<f64>,
    /// Agents already counted.
    counted: std::collections::HashSet<String>,
    /// Heartbeat answers other than 200 after the restart, by status (0: no
    /// answer).
    refused: std::collections::BTreeMap<u16, usize>,
}

/// Runs the storm with `agents` agents and adds its figures to `table`.
pub async fn run(
    wharf: &Path,
    agents: usize,
    quick: bool,
    table: &mut Table,
) -> anyhow::Result<()> {
    let downtime = if quick {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(20)
    };
    let window = if quick {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(30)
    };
    println!("storm: {agents} agents, server down {downtime:?}, API read for {window:?} after");
    let mut running = Running::start(wharf).await?;
    let api = running.api.clone();
    let url = api.url.clone();
    let (swarm, interval_secs) = register_all(&api, agents).await?;
    let interval = Duration::from_secs(interval_secs);
    let ids: Vec<String> = swarm.iter().map(|a| a.id.clone()).collect();
    api.app_with_group("storm", "all", &ids).await?;

    let client = Arc::new(Client::new(&url, MAX_IDLE_CONNECTIONS, REQUEST_TIMEOUT)?);
    let seen = Arc::new(Mutex::new(AfterRestart::default()));
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::with_capacity(agents * 2);
    for agent in &swarm {
        tasks.push(tokio::spawn(heartbeat_loop(
            client.clone(),
            agent.clone(),
            interval,
            seen.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(poll_loop(
            client.clone(),
            agent.clone(),
            stop.clone(),
        )));
    }
    // Every agent connected and heartbeating.
    tokio::time::sleep(interval + Duration::from_secs(2)).await;

    running.server.kill();
    tokio::time::sleep(downtime).await;
    running
        .server
        .start_again()
        .await
        .context("starting the server again")?;
    let restarted = Instant::now();
    if let Ok(mut seen) = seen.lock() {
        seen.at = Some(restarted);
    }

    // The operator's reads, on a thread and runtime of their own so that they do
    // not queue behind the agents' tasks in this process.
    let probe = {
        let (url, token, id) = (api.url.clone(), api.token.clone(), ids[0].clone());
        std::thread::spawn(move || -> anyhow::Result<(Vec<f64>, usize)> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("the probe's runtime")?;
            let api = crate::server::Api::new(url, token)?;
            runtime.block_on(async {
                let (mut latencies, mut failures) = (Vec::new(), 0);
                let paths = [
                    "/api/v1/releases".to_owned(),
                    format!("/api/v1/instances/{id}"),
                ];
                let mut body = Vec::new();
                let mut n = 0;
                while restarted.elapsed() < window {
                    let started = Instant::now();
                    match api.get_into(&paths[n % 2], &mut body).await {
                        Ok(()) => latencies.push(started.elapsed().as_secs_f64() * 1000.0),
                        Err(_) => failures += 1,
                    }
                    n += 1;
                    tokio::time::sleep(PROBE_INTERVAL).await;
                }
                Ok((latencies, failures))
            })
        })
    };
    let (mut latencies, failures) = tokio::task::spawn_blocking(move || probe.join())
        .await
        .context("waiting for the probe")?
        .map_err(|_| anyhow::anyhow!("the probe panicked"))??;
    // The agents' heartbeats come within an interval of their backoff's ceiling.
    tokio::time::sleep(interval.saturating_sub(window).max(Duration::from_secs(1))).await;
    let _ = stop_tx.send(true);
    for task in tasks {
        task.abort();
    }
    let instances = api.get("/api/v1/instances").await?;
    let offline = instances
        .as_array()
        .map(|all| all.iter().filter(|i| i["status"] != "online").count())
        .unwrap_or(agents);

    let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let mut reconnected = seen.reconnected.clone();
    let mut busiest = std::collections::BTreeMap::<u64, usize>::new();
    for secs in &reconnected {
        *busiest.entry(*secs as u64).or_default() += 1;
    }
    let busiest_second = busiest.values().max().copied().unwrap_or(0);
    println!(
        "  reconnected {} of {agents}: p50 {:.1} s, p99 {:.1} s, max {:.1} s; busiest second {busiest_second}; \
         heartbeats refused after the restart by status {:?}; probe failures {failures}; offline after: {offline}",
        reconnected.len(),
        median(&mut reconnected.clone()),
        quantile(&mut reconnected.clone(), 0.99),
        reconnected.iter().copied().fold(0.0, f64::max),
        seen.refused,
    );
    let label = format!("{agents} agents after a restart");
    table.add(
        format!("{label}: API p99 in the first {}s", window.as_secs()),
        format!(
            "{:.1} ms (p50 {:.1} ms, {} reads, {failures} failed)",
            quantile(&mut latencies.clone(), 0.99),
            median(&mut latencies),
            latencies.len()
        ),
        "≤ 100 ms",
    );
    table.add(
        format!("{label}: reconnections"),
        format!(
            "{} of {agents}, p50 {:.1} s, p99 {:.1} s, busiest second {busiest_second}",
            reconnected.len(),
            median(&mut reconnected.clone()),
            quantile(&mut reconnected, 0.99),
        ),
        "spread out",
    );
    table.add(
        format!("{label}: offline after the grace"),
        offline.to_string(),
        "0",
    );
    Ok(())
}

/// Heartbeats as the real agent does: every interval less a random fifth; after
/// a failure, again within the interval by backoff with full jitter, honouring
/// `Retry-After`.
async fn heartbeat_loop(
    client: Arc<Client>,
    agent: Agent,
    interval: Duration,
    seen: Arc<Mutex<AfterRestart>>,
    mut stop: watch::Receiver<bool>,
) {
    let heartbeat = client.request(
        "POST",
        "/agent/v1/heartbeat",
        &agent.authorization,
        Some(HEARTBEAT_BODY),
    );
    let mut backoff = Backoff::up_to(interval);
    // Spread over the interval at start, as agents started at different times are.
    let mut next = Instant::now() + interval.mul_f64(rand::random::<f64>());
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        let answer = client.send(&heartbeat).await;
        let status = answer.as_ref().map_or(0, |a| a.status);
        if let Ok(mut seen) = seen.lock() {
            if let Some(at) = seen.at {
                if status == 200 {
                    if seen.counted.insert(agent.id.clone()) {
                        seen.reconnected.push(at.elapsed().as_secs_f64());
                    }
                } else {
                    *seen.refused.entry(status).or_default() += 1;
                }
            }
        }
        next = match answer {
            Ok(Answer { status: 200, .. }) => {
                backoff.reset();
                Instant::now() + heartbeat_delay(interval)
            }
            Ok(Answer { retry_after, .. }) => {
                Instant::now() + backoff.next_delay_after(retry_after)
            }
            Err(_) => Instant::now() + backoff.next_delay(),
        };
    }
}

/// Long-polls as the real agent does, backing off after a failure. No release
/// runs, so a poll answers 204 after its wait.
async fn poll_loop(client: Arc<Client>, agent: Agent, mut stop: watch::Receiver<bool>) {
    let poll = client.request(
        "GET",
        &format!("/agent/v1/work?wait_secs={POLL_WAIT_SECS}"),
        &agent.authorization,
        None,
    );
    let mut connection = None;
    let mut backoff = Backoff::new();
    loop {
        let answer = tokio::select! {
            answer = client.send_on(&mut connection, &poll) => answer,
            _ = stop.changed() => return,
        };
        let delay = match answer {
            Ok(Answer {
                status: 200 | 204, ..
            }) => {
                backoff.reset();
                continue;
            }
            Ok(Answer { retry_after, .. }) => backoff.next_delay_after(retry_after),
            Err(_) => backoff.next_delay(),
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}
