//! The server with its store in a real PostgreSQL database (the harness of
//! `wharf-store/tests/support/postgres.rs`): a release with simulated agents runs
//! through the API and the agent protocol as on SQLite, and everything is still
//! there after the server restarts on the same database.

mod common;
#[path = "../../wharf-store/tests/support/postgres.rs"]
mod pg_server;

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use wharf_server::{DatabaseUrl, Liveness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_runs_on_postgresql_and_survives_a_restart() {
    let (_tmp, dir) = data_dir();
    let url = pg_server::fresh_database().await;
    let database = || Some(DatabaseUrl(url.clone()));
    let server = Server::start_on(&dir, database(), Liveness::default()).await;
    let agents = fleet(&server, 4).await;
    let id = server
        .create_release(
            "prod",
            json!({"deployment": "v1", "batches": 2, "pause": "first"}),
        )
        .await;
    let release = server.release(&id).await;
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
    for id in &first {
        let work = agent(id).work().await;
        agent(id).run(&work, None).await;
    }
    let paused = server.wait_state(&id, "paused").await;
    assert_eq!(paused["counts"]["succeeded"], 2);

    // A restart on the same database: the paused release, its steps and the
    // agents' credentials are all there.
    server.stop().await;
    let server = Server::start_on(&dir, database(), Liveness::default()).await;
    for agent in &agents {
        agent.retarget(&server);
    }
    let again = server.release(&id).await;
    assert_eq!(again["state"], "paused");
    assert_eq!(again["counts"]["succeeded"], 2);
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
    let steps: Vec<&str> = done["batches"][1]["instances"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["fetch", "prepare", "pull", "stop", "start"]);
    let group = server.get("/api/v1/apps/shop/groups/prod").await;
    assert_eq!(group["current_deployment"], "v1");
    server.stop().await;
}
