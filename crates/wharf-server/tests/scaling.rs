//! Scaling groups end to end over real HTTP, with the simulated agents of
//! `common/mod.rs`: the lease a release holds on the scaling
//! group bound to its group, held registrations and their catch-up release, the
//! on-suspend and on-resume commands, resuming after a restart, and the automatic
//! rollback of a failed release.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use wharf_store::Store;

mod common;

use common::{data_dir, fleet, Server, SimAgent};

/// Creates scaling group `asg` on shop/prod whose hooks append `suspend RELEASE`
/// and `resume RELEASE` to `log`; `on_resume` replaces the resume command.
async fn scaling_group(server: &Server, log: &Path, on_resume: Option<&str>) -> Value {
    let log = log.display();
    let resume = on_resume
        .map(str::to_owned)
        .unwrap_or_else(|| format!("echo resume $WHARF_RELEASE >> {log}"));
    let (status, body) = server
        .post(
            "/api/v1/scaling-groups",
            json!({"name": "asg", "app": "shop", "group": "prod",
                   "on_suspend": format!("echo suspend $WHARF_RELEASE >> {log}"),
                   "on_resume": resume}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// Waits until `asg` satisfies `ok`, and returns it.
async fn wait_asg(server: &Server, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let sg = server.get("/api/v1/scaling-groups/asg").await;
        if ok(&sg) {
            return sg;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "scaling group never became {what}: {sg:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the hook log has `n` lines, and returns them.
async fn hook_lines(log: &Path, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hook log never reached {n} lines: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes v1 to every agent and waits for success.
async fn publish_v1(server: &Server, agents: &[SimAgent]) {
    let id = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    for agent in agents {
        let work = agent.work().await;
        agent.run(&work, None).await;
    }
    server.wait_state(&id, "succeeded").await;
}

fn members(group: &Value) -> Vec<(String, Option<String>)> {
    group["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["deployment"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_host_registering_during_a_release_is_held_then_caught_up() {
    let (tmp, dir) = data_dir();
    let log = tmp.path().join("hooks.log");
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 2).await;
    publish_v1(&server, &agents).await;
    scaling_group(&server, &log, None).await;
    // Before any release, a registration joins at once.
    let early = SimAgent::register_for(&server, "early", Some("asg")).await;
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert!(members(&group).contains(&("early".to_owned(), None)));
    // (It has no deployment yet; it is left out of the v2 release below by
    // removing it again, to keep the two batches to the original hosts.)
    let (status, _) = server
        .post(
            "/api/v1/apps/shop/groups/prod/instances/remove",
            json!({"instances": [early.id]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let id = server
        .create_release("prod", json!({"deployment": "v2", "batches": 2}))
        .await;
    let suspended = wait_asg(&server, "suspended", |sg| sg["state"] == "suspended").await;
    assert_eq!(suspended["suspended_by"], id.as_str());
    let release = server.release(&id).await;
    let first = release["batches"][0]["instances"][0]["id"]
        .as_str()
        .unwrap();
    let agent = agents.iter().find(|a| a.id == first).unwrap();
    let work = agent.work().await;
    agent.run(&work, None).await;

    // A host registering now is held: not in the group, not in the release.
    let late = SimAgent::register_for(&server, "late", Some("asg")).await;
    let sg = server.get("/api/v1/scaling-groups/asg").await;
    assert_eq!(sg["pending"][0]["instance_name"], "late");
    assert_eq!(sg["pending"][0]["state"], "held");
    let instance = server.get("/api/v1/instances/late").await;
    assert_eq!(instance["groups"], json!([]));
    assert_eq!(instance["scaling_pending"], true);
    assert_eq!(server.release(&id).await["counts"]["total"], 2);

    let second = agents.iter().find(|a| a.id != first).unwrap();
    let work = second.work().await;
    second.run(&work, None).await;
    server.wait_state(&id, "succeeded").await;

    // On resume the held host joins and a catch-up release brings it to v2.
    let sg = wait_asg(&server, "resumed and caught up", |sg| {
        sg["state"] == "active" && sg["pending"] == json!([])
    })
    .await;
    let kinds: Vec<&str> = sg["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["join", "held", "join"]);
    let releases = server.get("/api/v1/releases?app=shop&group=prod").await;
    let catch_up = &releases[0];
    assert_eq!(catch_up["kind"], "catch-up");
    assert_eq!(catch_up["deployment"], "v2");
    assert_eq!(catch_up["counts"]["total"], 1);
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    let late_member = group["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "late")
        .unwrap()
        .clone();
    assert_eq!(late_member["drift"], true, "not on v2 yet: {group:#}");
    assert_eq!(group["releases"][0]["kind"], "catch-up");
    assert_eq!(group["releases"][1]["id"], id.as_str());
    let work = late.work().await;
    assert_eq!(work["deployment"], "v2");
    late.run(&work, None).await;
    server
        .wait_state(catch_up["id"].as_str().unwrap(), "succeeded")
        .await;
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert!(members(&group).contains(&("late".to_owned(), Some("v2".to_owned()))));
    let late_member = group["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "late")
        .unwrap()
        .clone();
    assert_eq!(late_member["drift"], false);
    assert_eq!(late_member["image_digest"], "sha256:feedface");

    // The hooks ran once each, in order; the catch-up took no lease.
    assert_eq!(
        hook_lines(&log, 2).await,
        [format!("suspend {id}"), format!("resume {id}")]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook_lines(&log, 2).await.len(), 2);
    let sg = server.get("/api/v1/scaling-groups/asg").await;
    assert_eq!(sg["hook_runs"].as_array().unwrap().len(), 2);
    assert_eq!(sg["hook_runs"][0]["exit_code"], 0);
    server.stop().await;
}

#[tokio::test]
async fn failed_and_cancelled_releases_resume_the_group() {
    let (tmp, dir) = data_dir();
    let log = tmp.path().join("hooks.log");
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 1).await;
    scaling_group(&server, &log, None).await;

    let failed = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    let work = agents[0].work().await;
    agents[0].run(&work, Some("start")).await;
    server.wait_state(&failed, "failed").await;
    wait_asg(&server, "resumed", |sg| sg["state"] == "active").await;
    hook_lines(&log, 2).await;

    let cancelled = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    wait_asg(&server, "suspended", |sg| sg["state"] == "suspended").await;
    let (status, body) = server
        .post(&format!("/api/v1/releases/{cancelled}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_asg(&server, "resumed", |sg| sg["state"] == "active").await;
    assert_eq!(
        hook_lines(&log, 4).await,
        [
            format!("suspend {failed}"),
            format!("resume {failed}"),
            format!("suspend {cancelled}"),
            format!("resume {cancelled}"),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_restarted_server_resumes_a_group_whose_release_ended() {
    let (tmp, dir) = data_dir();
    let log = tmp.path().join("hooks.log");
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 1).await;
    scaling_group(&server, &log, None).await;
    let id = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    wait_asg(&server, "suspended", |sg| sg["state"] == "suspended").await;
    hook_lines(&log, 1).await;
    server.stop().await;

    // While the server is down the release ends without it (as if it had crashed
    // between ending the release and resuming the group).
    {
        let store = wharf_store::SqliteStore::open(&dir.join("wharf.db"))
            .await
            .unwrap();
        assert!(store
            .release_transition(
                &id,
                &[wharf_domain::release::ReleaseState::Running],
                wharf_domain::release::ReleaseState::Cancelled,
                Some("ended while the server was down"),
                chrono::Utc::now(),
            )
            .await
            .unwrap());
        assert_eq!(
            store.scaling_group_fetch("asg").await.unwrap().held_by,
            Some(id.clone())
        );
        store.close().await;
    }

    let server = Server::start(&dir).await;
    agents[0].retarget(&server);
    wait_asg(&server, "resumed", |sg| sg["state"] == "active").await;
    assert_eq!(
        hook_lines(&log, 2).await,
        [format!("suspend {id}"), format!("resume {id}")]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_failing_on_resume_command_is_retried_and_shown() {
    let (tmp, dir) = data_dir();
    let log = tmp.path().join("hooks.log");
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 1).await;
    scaling_group(
        &server,
        &log,
        Some("echo autoscaler unreachable >&2; exit 7"),
    )
    .await;
    publish_v1(&server, &agents).await;
    let sg = wait_asg(&server, "retrying its on-resume command", |sg| {
        sg["resume_attempts"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(
        sg["state"], "active",
        "a failing hook never keeps it suspended"
    );
    assert!(
        sg["status"]
            .as_str()
            .unwrap()
            .starts_with("resumed (on-resume failing: exited with status 7"),
        "{sg:#}"
    );
    assert_eq!(sg["last_error"], "exited with status 7");
    let runs = sg["hook_runs"].as_array().unwrap();
    let resume = runs.iter().find(|r| r["hook"] == "resume").unwrap();
    assert_eq!(resume["exit_code"], 7);
    assert_eq!(resume["output"], "autoscaler unreachable\n");
    // Registrations join at once meanwhile.
    let new = SimAgent::register_for(&server, "new", Some("asg")).await;
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert!(members(&group).iter().any(|(name, _)| name == "new"));

    // An agent deregistering itself leaves the group: activity `leave`.
    let response = new
        .http
        .post(format!("{}/agent/v1/deregister", new.url()))
        .header("x-wharf-agent-protocol", "1")
        .bearer_auth(&new.credential)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert!(!members(&group).iter().any(|(name, _)| name == "new"));
    let sg = server.get("/api/v1/scaling-groups/asg").await;
    let last = sg["activities"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["kind"].as_str(), last["instance_name"].as_str()),
        (Some("leave"), Some("new"))
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_scaling_group_requests_name_the_field() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    fleet(&server, 1).await;
    for (body, field) in [
        (
            json!({"name": "Bad", "app": "shop", "group": "prod"}),
            "name",
        ),
        (
            json!({"name": "asg", "app": "nope", "group": "prod"}),
            "app",
        ),
        (
            json!({"name": "asg", "app": "shop", "group": "nope"}),
            "group",
        ),
        (
            json!({"name": "asg", "app": "shop", "group": "prod", "on_resume": " "}),
            "on_resume",
        ),
    ] {
        let (status, reply) = server.post("/api/v1/scaling-groups", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert_eq!(reply["error"]["field"], field, "{reply}");
    }
    assert_eq!(server.get("/api/v1/scaling-groups").await, json!([]));

    let (_, token) = server.post("/api/v1/registration-tokens", json!({})).await;
    let response = reqwest::Client::new()
        .post(format!("{}/agent/v1/register", server.url))
        .header("x-wharf-agent-protocol", "1")
        .json(
            &json!({"registration_token": token["token"], "name": "h", "hostname": "h",
                      "os": "linux", "arch": "x86_64", "agent_version": "test",
                      "scaling_group": "nope"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["error"]["field"], "scaling_group");
    let instances = server.get("/api/v1/instances").await;
    assert_eq!(
        instances.as_array().unwrap().len(),
        1,
        "nothing half-written"
    );
    server.stop().await;
}

#[tokio::test]
async fn rollback_on_failure_puts_touched_hosts_back_and_links_both_releases() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 2).await;
    publish_v1(&server, &agents).await;
    let id = server
        .create_release(
            "prod",
            json!({"deployment": "v2", "batches": 2, "rollback_on_failure": true}),
        )
        .await;
    let release = server.release(&id).await;
    let first = release["batches"][0]["instances"][0]["id"]
        .as_str()
        .unwrap();
    let one = agents.iter().find(|a| a.id == first).unwrap();
    let two = agents.iter().find(|a| a.id != first).unwrap();
    let work = one.work().await;
    assert_eq!(work["deployment"], "v2");
    one.run(&work, None).await;
    let work = two.work().await;
    two.run(&work, Some("start")).await;
    let failed = server.wait_state(&id, "failed").await;
    let rollback_id = failed["rolled_back_by"]
        .as_str()
        .expect("linked")
        .to_owned();
    let rollback = server.release(&rollback_id).await;
    assert_eq!(rollback["rollback_of"], id.as_str());
    assert_eq!(rollback["kind"], "rollback");
    assert_eq!(rollback["deployment"], "v1");
    assert_eq!(rollback["counts"]["total"], 2, "both hosts were touched");
    // What the simulated agents are asked to run: v1 again.
    for agent in [one, two] {
        let work = agent.work().await;
        assert_eq!(work["deployment"], "v1");
        agent.run(&work, None).await;
    }
    server.wait_state(&rollback_id, "succeeded").await;
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert_eq!(group["current_deployment"], "v1");
    for (name, deployment) in members(&group) {
        assert_eq!(deployment.as_deref(), Some("v1"), "{name}");
    }
    server.stop().await;
}
