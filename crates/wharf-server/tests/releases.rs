//! The release engine end to end over real HTTP: a real server on port 0 with its
//! SQLite store in a temp dir, and simulated agents that speak the agent protocol
//! (register, long-poll, step events) without running anything (the harness is in
//! `common/mod.rs`). This tier covers
//! the state machine's edges quickly; the real agent is tested in wharf-agent and
//! the CLI tests.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use wharf_server::Liveness;

mod common;

use common::{data_dir, fleet, Server, SimAgent};

#[tokio::test]
async fn a_first_pause_release_waits_for_continue_then_succeeds() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 4).await;
    let id = server
        .create_release(
            "prod",
            json!({"deployment": "v1", "batches": 2, "pause": "first"}),
        )
        .await;
    let release = server.release(&id).await;
    assert_eq!(release["batch_count"], 2);
    let batch = |n: usize| -> Vec<String> {
        release["batches"][n]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (first, second) = (batch(0), batch(1));
    assert_eq!((first.len(), second.len()), (2, 2));
    let agent = |id: &str| agents.iter().find(|a| a.id == id).unwrap();

    // Only batch 1 gets work; the assignment carries the pull spec.
    for id in &first {
        let work = agent(id).work().await;
        assert_eq!(work["steps"], json!(["prepare", "pull", "stop", "start"]));
        assert_eq!(work["image"]["address"], "127.0.0.1:5000/shop/web:v1");
        assert_eq!(work["image"]["password"], "p?a>s/s+w=o\"r' d");
        agent(id).run(&work, None).await;
    }
    assert!(
        agent(&second[0]).poll(1).await.is_none(),
        "batch 2 started before batch 1 ended"
    );
    let paused = server.wait_state(&id, "paused").await;
    assert_eq!(paused["counts"]["succeeded"], 2);
    assert_eq!(paused["batches"][0]["state"], "succeeded");
    assert!(
        agent(&second[1]).poll(1).await.is_none(),
        "a paused release dispatched work"
    );

    let (status, _) = server
        .post(&format!("/api/v1/releases/{id}/continue"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    for id in &second {
        let work = agent(id).work().await;
        agent(id).run(&work, None).await;
    }
    let done = server.wait_state(&id, "succeeded").await;
    assert_eq!(done["counts"]["succeeded"], 4);
    let steps: Vec<&str> = done["batches"][0]["instances"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["fetch", "prepare", "pull", "stop", "start"]);
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert_eq!(group["current_deployment"], "v1");
    for member in group["instances"].as_array().unwrap() {
        assert_eq!(member["deployment"], "v1");
        assert_eq!(member["image_digest"], "sha256:feedface");
    }
    // Continue on a finished release is refused.
    let (status, body) = server
        .post(&format!("/api/v1/releases/{id}/continue"), json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_paused"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_failed_step_fails_the_release_and_nothing_more_is_dispatched() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 2).await;
    let id = server
        .create_release("prod", json!({"deployment": "v1", "batches": 2}))
        .await;
    let release = server.release(&id).await;
    let first = release["batches"][0]["instances"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = release["batches"][1]["instances"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = |id: &str| agents.iter().find(|a| a.id == id).unwrap();
    let work = agent(&first).work().await;
    agent(&first).run(&work, Some("start")).await;
    let failed = server.wait_state(&id, "failed").await;
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("1 instance(s) failed"),
        "{failed}"
    );
    let instance = &failed["batches"][0]["instances"][0];
    assert_eq!(instance["state"], "failed");
    assert!(
        instance["message"]
            .as_str()
            .unwrap()
            .contains("step start failed with exit code 3"),
        "{instance}"
    );
    assert_eq!(failed["batches"][1]["instances"][0]["state"], "cancelled");
    assert!(agent(&second).poll(1).await.is_none());
    let logs = server
        .get(&format!(
            "/api/v1/releases/{id}/logs?instance=web-1&step=start"
        ))
        .await;
    let logs = if logs.as_array().unwrap().is_empty() {
        server
            .get(&format!(
                "/api/v1/releases/{id}/logs?instance=web-2&step=start"
            ))
            .await
    } else {
        logs
    };
    assert_eq!(logs[0]["output"], "start says hello\n");
    assert_eq!(logs[0]["exit_code"], 3);
    // The group's deployment did not change.
    assert_eq!(
        server.get("/api/v1/apps/shop/groups/prod").await["current_deployment"],
        Value::Null
    );
    server.stop().await;
}

#[tokio::test]
async fn max_failures_tolerates_failed_instances() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 2).await;
    let id = server
        .create_release("prod", json!({"deployment": "v1", "max_failures": 1}))
        .await;
    let w0 = agents[0].work().await;
    agents[0].run(&w0, Some("pull")).await;
    let w1 = agents[1].work().await;
    agents[1].run(&w1, None).await;
    let done = server.wait_state(&id, "succeeded").await;
    assert_eq!(
        (
            done["counts"]["succeeded"].as_u64(),
            done["counts"]["failed"].as_u64()
        ),
        (Some(1), Some(1))
    );
    server.stop().await;
}

#[tokio::test]
async fn one_active_release_per_group_and_cancel_dispatches_nothing_more() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 2).await;
    let id = server
        .create_release(
            "prod",
            json!({"deployment": "v1", "batches": 2, "pause": "first"}),
        )
        .await;
    let (status, body) = server
        .post(
            "/api/v1/apps/shop/groups/prod/releases",
            json!({"deployment": "v2"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "active_release");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&id),
        "{body}"
    );

    let first = server.release(&id).await["batches"][0]["instances"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = agents.iter().find(|a| a.id == first).unwrap();
    let other = agents.iter().find(|a| a.id != first).unwrap();
    let work = agent.work().await;
    agent.run(&work, None).await;
    server.wait_state(&id, "paused").await;
    let (status, body) = server
        .post(&format!("/api/v1/releases/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "cancelled");
    assert_eq!(body["batches"][1]["instances"][0]["state"], "cancelled");
    assert!(other.poll(1).await.is_none());
    let (status, body) = server
        .post(&format!("/api/v1/releases/{id}/cancel"), json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_finished"))
    );
    // With the release ended, the group takes a new one.
    server
        .create_release("prod", json!({"deployment": "v2"}))
        .await;
    server.stop().await;
}

#[tokio::test]
async fn bad_release_requests_are_refused_and_create_nothing() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    fleet(&server, 1).await;
    assert_eq!(
        server
            .post("/api/v1/apps/shop/groups", json!({"name": "empty"}))
            .await
            .0,
        StatusCode::CREATED
    );
    let cases = [
        (
            "prod",
            json!({"deployment": "v9"}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "prod",
            json!({"deployment": "v1", "batches": 0}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "prod",
            json!({"deployment": "v1", "batches": 101}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "prod",
            json!({"deployment": "v1", "pause": "never"}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "prod",
            json!({"deployment": "v1", "batch_interval_secs": 90000}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "prod",
            json!({"deployment": "v1", "batches": -1}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "prod",
            json!({"deployment": "v1", "turbo": true}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "empty",
            json!({"deployment": "v1"}),
            StatusCode::CONFLICT,
            "empty_group",
        ),
        (
            "nope",
            json!({"deployment": "v1"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (group, body, status, code) in cases {
        let (got, reply) = server
            .post(
                &format!("/api/v1/apps/shop/groups/{group}/releases"),
                body.clone(),
            )
            .await;
        assert_eq!(
            (got, reply["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {reply}"
        );
    }
    assert_eq!(server.get("/api/v1/releases").await, json!([]));
    let (status, reply) = server
        .post("/api/v1/apps/shop/groups/prod/rollback", json!({}))
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("nothing_to_roll_back"))
    );
    server.stop().await;
}

#[tokio::test]
async fn agents_cannot_touch_other_instances_work() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 2).await;
    // Only web-1 is in the release.
    server
        .post(
            "/api/v1/apps/shop/groups/prod/instances/remove",
            json!({"instances": [agents[1].id]}),
        )
        .await;
    let id = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    assert!(agents[1].poll(1).await.is_none());
    let (status, body) = agents[1]
        .event(&id, json!({"event": "begin", "step": "prepare"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The end of a last step is checked the same way, also for a release that
    // does not exist (working out whether it ends a task reads the release).
    for release in [id.as_str(), "r-0000000000000000"] {
        let (status, body) = agents[1]
            .event(
                release,
                json!({"event": "end", "step": "start", "succeeded": true}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(
            body["error"]["message"],
            format!(
                "release {release} has no work for instance {}",
                agents[1].id
            ),
            "{body}"
        );
    }
    let work = agents[0].work().await;
    let (status, body) = agents[0]
        .event(&id, json!({"event": "begin", "step": "fetch"}))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("step"))
    );
    let (status, _) = agents[0]
        .event(&id, json!({"event": "begin", "step": "reboot"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    agents[0].run(&work, None).await;
    server.wait_state(&id, "succeeded").await;
    server.stop().await;
}

#[tokio::test]
async fn a_waiting_poll_gets_the_work_its_batch_dispatches() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 2).await;
    // Both agents wait before the release exists, so the one in batch 1 gets its
    // work from the driver's wake-up, not from a first look.
    let (first_poll, second_poll, id) = tokio::join!(agents[0].poll(2), agents[1].poll(2), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        server
            .create_release("prod", json!({"deployment": "v1", "batches": 2}))
            .await
    });
    let (first, work) = match (first_poll, second_poll) {
        (Some(work), None) => (0, work),
        (None, Some(work)) => (1, work),
        other => panic!("one batch of one is dispatched first: {other:?}"),
    };
    assert_eq!(
        (&work["release_id"], &work["instance_id"]),
        (&json!(id), &json!(agents[first].id))
    );
    // The other waits while batch 1 runs, and is woken when batch 2 starts.
    let second = 1 - first;
    let (next, ()) = tokio::join!(agents[second].poll(10), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        agents[first].run(&work, None).await;
    });
    let next = next.expect("batch 2's work");
    assert_eq!(
        (&next["release_id"], &next["instance_id"]),
        (&json!(id), &json!(agents[second].id))
    );
    agents[second].run(&next, None).await;
    server.wait_state(&id, "succeeded").await;
    server.stop().await;
}

#[tokio::test]
async fn work_is_handed_out_again_until_the_agents_first_report_claims_it() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 1).await;
    let id = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    let work = agents[0].work().await;
    let instance = |view: &Value| view["batches"][0]["instances"][0].clone();
    // Handed out, not yet claimed: the agent may never have got the answer.
    let handed_out = instance(&server.release(&id).await);
    assert_eq!(handed_out["state"], "dispatched", "{handed_out:#}");
    assert_eq!(handed_out["steps"], json!([]));
    // The answer was lost (say): the next poll gets the same work again rather
    // than failing the task as abandoned.
    let again = agents[0].poll(1).await.expect("the same work again");
    assert_eq!(again, work);
    assert_eq!(server.release(&id).await["state"], "running");
    // The first report claims the task and records its fetch step.
    let (status, ack) = agents[0]
        .event(&id, json!({"event": "begin", "step": "prepare"}))
        .await;
    assert_eq!(
        (status, ack["proceed"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let claimed = instance(&server.release(&id).await);
    assert_eq!(claimed["state"], "running", "{claimed:#}");
    let steps: Vec<(&str, &str)> = claimed["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(steps, vec![("fetch", "succeeded"), ("prepare", "running")]);
    agents[0].run(&work, None).await;
    server.wait_state(&id, "succeeded").await;
    server.stop().await;
}

/// The names and states of the steps of a one-instance release's instance.
fn step_states(view: &Value) -> Vec<(String, String)> {
    view["batches"][0]["instances"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_step_end_begins_the_next_step_and_bad_ones_are_refused_whole() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 1).await;
    let id = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    let work = agents[0].work().await;
    assert_eq!(work["steps"], json!(["prepare", "pull", "stop", "start"]));
    // The simulated agents send protocol 1's header: the server checks the
    // version at registration and heartbeats only, and takes then_begin from
    // any agent (one of protocol 1 never sends it).
    let agent = &agents[0];
    let (status, _) = agent
        .event(&id, json!({"event": "begin", "step": "prepare"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let prepare_running = step_states(&server.release(&id).await);

    let end = |step: &str, succeeded: bool, next: &str| json!({"event": "end", "step": step, "succeeded": succeeded, "then_begin": next});
    for (event, message) in [
        (
            end("prepare", false, "pull"),
            "then_begin: no step begins after a failed one",
        ),
        (
            end("prepare", true, "fetch"),
            "then_begin: fetch is recorded by the server",
        ),
        (
            end("prepare", true, "launch"),
            "then_begin: \"launch\" is not a step",
        ),
        (
            end("prepare", true, "prepare"),
            "then_begin: step prepare cannot begin as it ends",
        ),
    ] {
        let (status, body) = agent.event(&id, event.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{event}: {body}");
        assert_eq!(body["error"]["field"], "then_begin", "{body}");
        assert_eq!(body["error"]["message"], message, "{body}");
    }
    // Nothing of the refused reports was written.
    assert_eq!(step_states(&server.release(&id).await), prepare_running);

    for (step, next) in [("prepare", "pull"), ("pull", "stop"), ("stop", "start")] {
        let (status, ack) = agent.event(&id, end(step, true, next)).await;
        assert_eq!(
            (status, ack["proceed"].as_bool()),
            (StatusCode::OK, Some(true)),
            "{ack}"
        );
        let states = step_states(&server.release(&id).await);
        let of = |name: &str| {
            states
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.as_str())
        };
        assert_eq!(
            (of(step), of(next)),
            (Some("succeeded"), Some("running")),
            "{states:?}"
        );
    }
    // start is the last step: nothing may begin after it, and the refused
    // report leaves the task running.
    let (status, body) = agent.event(&id, end("start", true, "verify")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["message"],
        "then_begin: step start is the last step of this task; step verify cannot begin after it"
    );
    assert_eq!(server.release(&id).await["state"], "running");
    let (status, ack) = agent
        .event(
            &id,
            json!({"event": "end", "step": "start", "succeeded": true}),
        )
        .await;
    assert_eq!(
        (status, ack["proceed"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let done = server.wait_state(&id, "succeeded").await;
    assert!(
        step_states(&done)
            .iter()
            .all(|(_, state)| state == "succeeded"),
        "{done:#}"
    );
    // A report that comes after the task ended tells the agent to stop.
    let (status, ack) = agent.event(&id, end("stop", true, "start")).await;
    assert_eq!(
        (status, ack["proceed"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    server.stop().await;
}

/// The step called `name` of an instance in a release view.
fn step_named<'a>(instance: &'a Value, name: &str) -> &'a Value {
    instance["steps"]
        .as_array()
        .expect("the instance's steps")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {instance:#}"))
}

/// A server with one agent whose release of `v1` (one batch) it has taken and
/// whose prepare step it has begun; and the release's id.
async fn one_agent_in_prepare(dir: &Path) -> (Server, Vec<SimAgent>, String) {
    let server = Server::start(dir).await;
    let agents = fleet(&server, 1).await;
    let id = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    let work = agents[0].work().await;
    assert_eq!(work["release_id"], id.as_str());
    agents[0]
        .event(&id, json!({"event": "begin", "step": "prepare"}))
        .await;
    (server, agents, id)
}

#[tokio::test]
async fn an_agent_that_restarts_mid_step_fails_that_step_precisely() {
    let (_tmp, dir) = data_dir();
    let (server, agents, id) = one_agent_in_prepare(&dir).await;
    let release_id = id.as_str();
    agents[0]
        .event(
            release_id,
            json!({"event": "end", "step": "prepare", "succeeded": true}),
        )
        .await;
    agents[0]
        .event(release_id, json!({"event": "begin", "step": "pull"}))
        .await;
    // The agent comes back and polls: the pull it was running is lost.
    assert!(agents[0].poll(1).await.is_none());
    let failed = server.wait_state(&id, "failed").await;
    let instance = &failed["batches"][0]["instances"][0];
    assert_eq!(
        instance["message"],
        "the agent restarted while step pull was running"
    );
    let pull = step_named(instance, "pull");
    assert_eq!(pull["state"], "failed");
    // A late report changes nothing and tells the agent to stop.
    let (status, ack) = agents[0]
        .event(
            release_id,
            json!({"event": "end", "step": "pull", "succeeded": true}),
        )
        .await;
    assert_eq!(
        (status, ack["proceed"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    assert_eq!(server.release(&id).await["state"], "failed");
    server.stop().await;
}

#[tokio::test]
async fn an_output_report_sent_again_is_stored_once() {
    let (_tmp, dir) = data_dir();
    let (server, agents, id) = one_agent_in_prepare(&dir).await;
    let release_id = id.as_str();
    let output = |chunk: &str, offset: Option<u64>| {
        let mut event = json!({"event": "output", "step": "prepare", "chunk": chunk});
        if let Some(offset) = offset {
            event["offset"] = json!(offset);
        }
        event
    };
    // The agent lost the first answer and sent the same report again.
    for _ in 0..2 {
        let (status, ack) = agents[0]
            .event(release_id, output("mkdir -p /srv\n", Some(0)))
            .await;
        assert_eq!(
            (status, ack["proceed"].as_bool()),
            (StatusCode::OK, Some(true))
        );
    }
    agents[0]
        .event(release_id, output("done\n", Some(14)))
        .await;
    // An agent of protocol 2 sends no offset, and its chunks are stored as
    // they come.
    agents[0].event(release_id, output("old\n", None)).await;
    let logs = server
        .get(&format!("/api/v1/releases/{id}/logs?step=prepare"))
        .await;
    assert_eq!(logs[0]["output"], "mkdir -p /srv\ndone\nold\n", "{logs:#}");
    server.stop().await;
}

#[tokio::test]
async fn an_offline_instance_fails_its_task() {
    let (_tmp, dir) = data_dir();
    let liveness = Liveness {
        heartbeat_interval: Duration::from_secs(1),
        offline_after: Duration::from_secs(2),
    };
    let server = Server::start_with(&dir, liveness).await;
    let agents = fleet(&server, 2).await;
    let id = server
        .create_release("prod", json!({"deployment": "v1", "max_failures": 1}))
        .await;
    let w0 = agents[0].work().await;
    let w1 = agents[1].work().await;
    // web-1 keeps its heartbeats going and finishes; web-2 goes silent in the
    // middle of its prepare step.
    agents[0].run(&w0, None).await;
    agents[1]
        .event(
            w1["release_id"].as_str().unwrap(),
            json!({"event": "begin", "step": "prepare"}),
        )
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let release = loop {
        agents[0].heartbeat().await;
        let release = server.release(&id).await;
        if release["state"] == "succeeded" || tokio::time::Instant::now() > deadline {
            break release;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(release["state"], "succeeded", "{release:#}");
    let silent = release["batches"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == agents[1].id.as_str())
        .unwrap()
        .clone();
    assert_eq!(silent["state"], "failed");
    assert!(
        silent["message"].as_str().unwrap().contains("offline"),
        "{silent}"
    );
    // The step it stopped in is closed with the same reason.
    let prepare = step_named(&silent, "prepare");
    assert_eq!(
        (&prepare["state"], &prepare["message"]),
        (&json!("failed"), &silent["message"]),
        "{silent:#}"
    );
    let instance = server
        .get(&format!("/api/v1/instances/{}", agents[1].id))
        .await;
    assert_eq!(instance["status"], "offline");
    server.stop().await;
}

#[tokio::test]
async fn a_release_survives_a_server_restart_without_rerunning_finished_work() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 2).await;
    let id = server
        .create_release("prod", json!({"deployment": "v1", "batches": 2}))
        .await;
    let release = server.release(&id).await;
    let first = release["batches"][0]["instances"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = |id: &str| agents.iter().find(|a| a.id == id).unwrap();
    let second = agents.iter().find(|a| a.id != first).unwrap();
    let work = agent(&first).work().await;
    agent(&first).run(&work, None).await;
    server.stop().await;

    let server = Server::start(&dir).await;
    agents.iter().for_each(|a| a.retarget(&server));
    let work = second.work().await;
    assert_eq!(work["release_id"], id.as_str());
    assert!(
        agent(&first).poll(1).await.is_none(),
        "a finished instance got its work again"
    );
    second.run(&work, None).await;
    let done = server.wait_state(&id, "succeeded").await;
    assert_eq!(done["counts"]["succeeded"], 2);
    server.stop().await;
}

/// A server that was down longer than the offline threshold gives every instance
/// one threshold from its start to be heard from: an agent that was mid-task
/// through the outage (its heartbeats could not land) reports its steps after the
/// restart and its task succeeds instead of failing as offline. The grace ends:
/// an instance still silent after it is offline.
#[tokio::test]
async fn an_outage_longer_than_the_offline_threshold_fails_no_instance_as_offline() {
    let (_tmp, dir) = data_dir();
    let liveness = Liveness {
        heartbeat_interval: Duration::from_secs(1),
        offline_after: Duration::from_secs(3),
    };
    let server = Server::start_with(&dir, liveness).await;
    let agents = fleet(&server, 2).await;
    let id = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    let works = [agents[0].work().await, agents[1].work().await];
    agents[0]
        .event(
            works[0]["release_id"].as_str().unwrap(),
            json!({"event": "begin", "step": "prepare"}),
        )
        .await;
    server.stop().await;
    // Down for longer than the offline threshold: every last heartbeat is stale.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let server = Server::start_with(&dir, liveness).await;
    agents.iter().for_each(|a| a.retarget(&server));
    // Several driver passes run before the agents are heard from again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let release = server.release(&id).await;
    assert_eq!(release["counts"]["failed"], 0, "{release:#}");
    // The agents deliver what they did meanwhile: web-2 runs its work, web-1
    // ends the step it was in and goes on, each heard from for the first time.
    agents[1].run(&works[1], None).await;
    agents[0].finish(&works[0]).await;
    let done = server.wait_state(&id, "succeeded").await;
    assert_eq!(done["counts"]["succeeded"], 2, "{done:#}");
    // Without heartbeats the grace runs out: the instance is offline.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let instance = server
        .get(&format!("/api/v1/instances/{}", agents[0].id))
        .await;
    assert_eq!(instance["status"], "offline", "{instance:#}");
    server.stop().await;
}

/// A store that takes no write for longer than the offline threshold (another
/// process holds SQLite's write lock) judges nobody offline by heartbeats that
/// could not be stored: agents heartbeat all along, their heartbeats wait, and
/// once the store takes writes again every instance has a grace to be heard from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_stall_longer_than_the_offline_threshold_fails_no_instance_as_offline() {
    let (_tmp, dir) = data_dir();
    let liveness = Liveness {
        heartbeat_interval: Duration::from_secs(1),
        offline_after: Duration::from_secs(3),
    };
    let server = Server::start_with(&dir, liveness).await;
    let agents = fleet(&server, 2).await;
    let id = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    let works = [agents[0].work().await, agents[1].work().await];
    let release_id = works[0]["release_id"].as_str().unwrap();
    agents[0]
        .event(release_id, json!({"event": "begin", "step": "prepare"}))
        .await;
    // Shorter than the store's busy timeout (5 s), so waiting writes go through
    // afterwards rather than fail; longer than the offline threshold.
    let db = dir.join("wharf.db");
    let stall = tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        std::thread::sleep(Duration::from_millis(4500));
        conn.execute_batch("ROLLBACK").unwrap();
    });
    let stalled_at = tokio::time::Instant::now();
    let mut statuses = Vec::new();
    while stalled_at.elapsed() < Duration::from_secs(6) {
        let (a, b) = tokio::join!(agents[0].try_heartbeat(), agents[1].try_heartbeat());
        statuses.extend([a, b]);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stall.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "heartbeats waited out the stall: {statuses:?}"
    );
    let release = server.release(&id).await;
    assert_eq!(release["counts"]["failed"], 0, "{release:#}");
    // It ends the step it was in and goes on, heard from for the first time.
    agents[0].finish(&works[0]).await;
    agents[1].run(&works[1], None).await;
    let done = server.wait_state(&id, "succeeded").await;
    assert_eq!(done["counts"]["succeeded"], 2, "{done:#}");
    server.stop().await;
}

#[tokio::test]
async fn rollback_publishes_the_previous_deployment() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 1).await;
    for version in ["v1", "v2"] {
        let id = server
            .create_release("prod", json!({"deployment": version}))
            .await;
        let work = agents[0].work().await;
        agents[0].run(&work, None).await;
        server.wait_state(&id, "succeeded").await;
    }
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert_eq!(
        (
            group["current_deployment"].as_str(),
            group["previous_deployment"].as_str()
        ),
        (Some("v2"), Some("v1"))
    );
    let (status, rollback) = server
        .post("/api/v1/apps/shop/groups/prod/rollback", json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rollback}");
    assert_eq!(
        (rollback["deployment"].as_str(), rollback["kind"].as_str()),
        (Some("v1"), Some("rollback"))
    );
    let work = agents[0].work().await;
    assert_eq!(work["image"]["address"], "127.0.0.1:5000/shop/web:v1");
    agents[0].run(&work, None).await;
    server
        .wait_state(rollback["id"].as_str().unwrap(), "succeeded")
        .await;
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert_eq!(
        (
            group["current_deployment"].as_str(),
            group["previous_deployment"].as_str()
        ),
        (Some("v1"), Some("v2"))
    );
    let releases = server.get("/api/v1/releases?app=shop&group=prod").await;
    assert_eq!(releases.as_array().unwrap().len(), 3);
    assert_eq!(releases[0]["kind"], "rollback");
    server.stop().await;
}

#[tokio::test]
async fn rollback_on_failure_starts_a_linked_rollback_of_touched_instances() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 2).await;
    let id = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    for agent in &agents {
        let work = agent.work().await;
        agent.run(&work, None).await;
    }
    server.wait_state(&id, "succeeded").await;
    let id = server
        .create_release(
            "prod",
            json!({"deployment": "v2", "batches": 2, "rollback_on_failure": true}),
        )
        .await;
    let release = server.release(&id).await;
    let first = release["batches"][0]["instances"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = agents.iter().find(|a| a.id == first).unwrap();
    let work = agent.work().await;
    agent.run(&work, Some("start")).await;
    server.wait_state(&id, "failed").await;
    let releases = server.get("/api/v1/releases?app=shop&group=prod").await;
    let rollback = &releases[0];
    assert_eq!(
        (rollback["kind"].as_str(), rollback["rollback_of"].as_str()),
        (Some("rollback"), Some(id.as_str()))
    );
    assert_eq!(rollback["deployment"], "v1");
    assert_eq!(
        rollback["counts"]["total"], 1,
        "only the touched instance is rolled back"
    );
    let work = agent.work().await;
    assert_eq!(work["deployment"], "v1");
    agent.run(&work, None).await;
    server
        .wait_state(rollback["id"].as_str().unwrap(), "succeeded")
        .await;
    server.stop().await;
}

// ------------------------------------------------------------------ group execs

#[tokio::test]
async fn an_exec_runs_in_batches_and_a_failing_instance_does_not_stop_the_others() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 3).await;
    let (status, exec) = server
        .post(
            "/api/v1/apps/shop/groups/prod/execs",
            json!({"script": "apt-get install -y docker.io\n", "batches": 2, "timeout_secs": 30}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{exec}");
    let id = exec["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("x-") && id.len() == 18, "{id}");
    assert_eq!(exec["batch_count"], 2);
    assert_eq!(exec["timeout_secs"], 30);
    let batch = |n: usize| -> Vec<String> {
        exec["batches"][n]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (first, second) = (batch(0), batch(1));
    assert_eq!((first.len(), second.len()), (2, 1));
    let agent = |id: &str| agents.iter().find(|a| a.id == id).unwrap();

    // The first instance of batch 1 fails; the second still runs, and so does
    // batch 2.
    for (n, id) in first.iter().enumerate() {
        let work = agent(id).work().await;
        assert_eq!(work["kind"], "exec");
        assert_eq!(work["steps"], json!(["exec"]));
        assert_eq!(work["start_script"], "apt-get install -y docker.io\n");
        assert_eq!(work["timeouts"]["script_secs"], 30);
        assert_eq!(work["image"], Value::Null);
        assert_eq!(work["as_user"], Value::Null);
        agent(id).run(&work, (n == 0).then_some("exec")).await;
    }
    let work = agent(&second[0]).work().await;
    agent(&second[0]).run(&work, None).await;

    let done = loop {
        let (status, exec) = server
            .call(reqwest::Method::GET, &format!("/api/v1/execs/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        if exec["state"] == "succeeded" {
            break exec;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["counts"]["succeeded"], 2, "{done:#}");
    assert_eq!(done["counts"]["failed"], 1, "{done:#}");
    assert_eq!(done["message"], "1 instance(s) failed");
    let failed = &done["batches"][0]["instances"][0];
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["steps"][1]["name"], "exec");
    assert_eq!(failed["steps"][1]["exit_code"], 3);

    // Every host's output is kept.
    let logs = server.get(&format!("/api/v1/execs/{id}/logs")).await;
    let exec_logs: Vec<&Value> = logs
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["step"] == "exec")
        .collect();
    assert_eq!(exec_logs.len(), 3, "{logs:#}");
    assert!(exec_logs.iter().all(|l| l["output"] == "exec says hello\n"));

    // The exec is listed as an exec, not as a release, and the group's
    // deployment did not change.
    let execs = server.get("/api/v1/execs?app=shop&group=prod").await;
    assert_eq!(execs.as_array().unwrap().len(), 1);
    assert_eq!(execs[0]["script"], "apt-get install -y docker.io\n");
    let releases = server.get("/api/v1/releases").await;
    assert!(releases.as_array().unwrap().is_empty(), "{releases:#}");
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert_eq!(group["current_deployment"], Value::Null, "{group:#}");
    let (status, _) = server
        .call(
            reqwest::Method::GET,
            "/api/v1/execs/r-0000000000000000",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn one_release_or_exec_runs_on_a_group_at_a_time() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 1).await;
    let release = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    let (status, body) = server
        .post(
            "/api/v1/apps/shop/groups/prod/execs",
            json!({"script": "true"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "active_release");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&release), "{message}");
    assert!(message.contains("only one release or exec"), "{message}");
    let work = agents[0].work().await;
    agents[0].run(&work, None).await;
    server.wait_state(&release, "succeeded").await;

    // An active exec keeps releases off the group in turn.
    let (status, exec) = server
        .post(
            "/api/v1/apps/shop/groups/prod/execs",
            json!({"script": "true", "instances": ["web-1"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{exec}");
    let (status, body) = server
        .post(
            "/api/v1/apps/shop/groups/prod/releases",
            json!({"deployment": "v2"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "active_release");
    let work = agents[0].work().await;
    agents[0].run(&work, None).await;
    let id = exec["id"].as_str().unwrap();
    server.wait_state(id, "succeeded").await;
    // The exec changed nothing about the deployment the release recorded.
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert_eq!(group["current_deployment"], "v1", "{group:#}");
    server.stop().await;
}

#[tokio::test]
async fn exec_requests_are_checked_field_by_field() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let _agents = fleet(&server, 3).await;
    let path = "/api/v1/apps/shop/groups/prod/execs";
    for (body, field) in [
        (json!({"script": "  \n"}), "script"),
        (json!({"script": "true", "timeout_secs": 0}), "timeout_secs"),
        (
            json!({"script": "true", "timeout_secs": 86_401}),
            "timeout_secs",
        ),
        (json!({"script": "true", "batches": 0}), "batches"),
        (json!({"script": "true", "concurrency": 0}), "concurrency"),
        (
            json!({"script": "true", "instances": ["web-9"]}),
            "instances",
        ),
        (json!({"script": "true", "instances": []}), "instances"),
        (json!({"script": "true", "as_user": "Bad User"}), "as_user"),
    ] {
        let (status, reply) = server.post(path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert_eq!(reply["error"]["field"], field, "{body}: {reply}");
    }
    let (status, _) = server
        .post(
            "/api/v1/apps/shop/groups/nope/execs",
            json!({"script": "true"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Concurrency adds batches; instances pick members by name or id.
    let (status, exec) = server
        .post(path, json!({"script": "true", "concurrency": 1}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{exec}");
    assert_eq!(exec["batch_count"], 3);
    let id = exec["id"].as_str().unwrap();
    let (status, cancelled) = server
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/execs/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    let (status, exec) = server
        .post(
            path,
            json!({"script": "true", "instances": ["web-2"], "as_user": "nobody"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{exec}");
    assert_eq!(exec["counts"]["total"], 1);
    assert_eq!(exec["as_user"], "nobody");
    assert_eq!(exec["batches"][0]["instances"][0]["name"], "web-2");
    server.stop().await;
}

/// The view of a release of 1,000 instances or more is kept for about a second
/// (`release_views.rs`): its state must still show at once, and per-instance
/// progress within a few seconds.
#[tokio::test]
async fn a_large_release_view_shows_state_at_once_and_progress_soon() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 1000).await;
    let id = server
        .create_release(
            "prod",
            json!({"deployment": "v1", "batches": 2, "pause": "first"}),
        )
        .await;
    let release = server.wait_state(&id, "running").await;
    assert_eq!(release["counts"]["total"], 1000);
    let first = release["batches"][0]["instances"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Read it again so that a kept copy exists, then move one instance on.
    server.release(&id).await;
    let agent = agents.iter().find(|a| a.id == first).unwrap();
    let work = agent.work().await;
    agent.run(&work, None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let view = server.release(&id).await;
        let instance = &view["batches"][0]["instances"][0];
        if instance["state"] == "succeeded" {
            assert_eq!(view["counts"]["succeeded"], 1);
            assert_eq!(instance["steps"].as_array().unwrap().len(), 5);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the view never showed the instance's progress: {instance:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A change of the release's state shows on the very next read.
    let (status, _) = server
        .post(&format!("/api/v1/releases/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.release(&id).await["state"], "cancelled");
    server.stop().await;
}

/// `GET /api/v1/releases/{id}?after=VERSION&wait_secs=N` answers as soon as the
/// release changes (how the CLI follows a release), and after N seconds when it
/// does not; the version is the answer's `ETag`.
#[tokio::test]
async fn a_release_read_can_wait_for_the_next_change() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 1).await;
    let id = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    let work = agents[0].work().await;
    // The agent's first report claims its task (dispatched -> running, a change
    // of version), so that the next change below is the task's end.
    let (status, _) = agents[0]
        .event(&id, json!({"event": "begin", "step": "prepare"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let get = |query: String| {
        let url = format!("{}/api/v1/releases/{id}{query}", server.url);
        let admin = server.admin.clone();
        async move {
            let started = tokio::time::Instant::now();
            let response = reqwest::Client::new()
                .get(url)
                .bearer_auth(admin)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let etag = response
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().trim_matches('"').to_owned());
            let body: Value = response.json().await.unwrap();
            (status, etag, body, started.elapsed())
        }
    };
    let (status, etag, running, _) = get(String::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(running["state"], "running");
    let version = etag.expect("an answer carries the release's version");

    // Nothing changes: the read answers after the wait, with the same version.
    let (_, same, _, waited) = get(format!("?after={version}&wait_secs=1")).await;
    assert_eq!(same.as_deref(), Some(version.as_str()));
    assert!(
        waited >= Duration::from_millis(900),
        "answered after {waited:?}"
    );

    // The instance ends while a read waits: it answers at once with the change.
    let waiting = tokio::spawn(get(format!("?after={version}&wait_secs=20")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    agents[0].run(&work, None).await;
    let (status, changed, body, waited) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_ne!(changed.as_deref(), Some(version.as_str()));
    assert!(
        waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
    assert!(
        body["counts"]["succeeded"] == 1 || body["state"] == "succeeded",
        "{body:#}"
    );

    // A bad wait is refused with the API's error body, naming the parameter.
    let (status, _, body, _) = get("?after=x&wait_secs=soon".to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_query", "{body:#}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wait_secs"),
        "{body:#}"
    );
    server.stop().await;
}
