//! The seed scenario on a real fleet, through the `wharf` CLI: four hosts, a docker-image
//! deployment published in two batches with a pause after the first, continued, then a
//! second version over it, then a rollback. Each phase prints its measured duration.
//!
//! Needs what tests/fleet.rs needs (see FLEET.md).

use std::path::Path;
use std::time::Duration;

use wharf_testkit::docker::{unique_name, ImageGuard};
use wharf_testkit::fleet::{Fleet, FleetOptions};
use wharf_testkit::fleet_test::Phases;
use wharf_testkit::sample_image;

const APP: &str = "shop";
const GROUP: &str = "prod";
const REGISTRY: &str = "fleet-registry";
const NAMESPACE: &str = "fleet";
const REPOSITORY: &str = "hello";

/// How long one release phase may take on a 2-core machine.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(180);

/// Removes `my-container` if it exists; exits 0 when there is none.
const STOP_SCRIPT: &str = "\
if docker container inspect my-container >/dev/null 2>&1; then
  docker rm -f my-container
else
  echo 'nothing to stop: my-container does not exist'
fi
";

/// Runs `wharf ARGS` against the fleet's server and returns its stdout; panics with the
/// command's stderr when it fails.
async fn wharf(fleet: &Fleet, args: &[&str]) -> String {
    fleet
        .wharf_ok(args)
        .await
        .unwrap_or_else(|error| panic!("{error:#}"))
}

/// Which hosts answer `GET /hello` on port 8080, and with what.
async fn hello_bodies(fleet: &Fleet) -> Vec<(String, Option<String>)> {
    fleet
        .http_bodies(sample_image::CONTAINER_PORT, "/hello")
        .await
        .into_iter()
        .collect()
}

/// Waits until every host answers `hello from VERSION`.
async fn wait_all_answer(fleet: &Fleet, version: &str) {
    let expected = sample_image::hello_text(version);
    for host in fleet.hosts() {
        fleet
            .wait_http_body(
                &host.name,
                sample_image::CONTAINER_PORT,
                "/hello",
                &expected,
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|error| panic!("{error:#}"));
    }
}

fn write_script(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a script");
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_seed_batches_pause_continue_upgrade_rollback() {
    let mut phases = Phases::new("fleet_seed");
    let fleet = Fleet::start(FleetOptions::with_hosts(4))
        .await
        .expect("start a 4-host fleet");
    phases.done("fleet start (4 hosts)");

    // The release commands must exist in this checkout's binary.
    let help = fleet.wharf(&["release", "--help"]).await.unwrap();
    assert!(
        help.success() && help.stdout.contains("continue") && help.stdout.contains("rollback"),
        "`wharf release --help` does not offer continue/rollback: {}{}",
        help.stdout,
        help.stderr
    );

    // Two versions of the sample app in the fleet's registry.
    let (user, password) = fleet.registry_credentials();
    let mut images = ImageGuard::new();
    for version in ["v1", "v2"] {
        let local = images.add(format!("{}:{version}", unique_name("wharf-fleet-seed")));
        sample_image::build(version, &local)
            .await
            .expect("build the sample image");
        sample_image::push(
            &local,
            fleet.registry(),
            NAMESPACE,
            REPOSITORY,
            version,
            (user, password),
        )
        .await
        .expect("push the sample image");
    }
    phases.done("images built and pushed");

    // The registry (password on stdin), the app, the group of four, two deployments.
    let endpoint = fleet.registry_for_hosts();
    let created = fleet
        .wharf_with_stdin(
            &[
                "registry",
                "create",
                REGISTRY,
                "--endpoint",
                &endpoint,
                "--username",
                user,
                "--password-stdin",
                "--insecure",
            ],
            Some(password.as_bytes()),
        )
        .await
        .unwrap();
    assert!(created.success(), "registry create: {}", created.stderr);
    wharf(&fleet, &["app", "create", APP]).await;
    wharf(&fleet, &["group", "create", APP, GROUP]).await;
    let mut add = vec!["group", "add-instances", APP, GROUP];
    let names: Vec<String> = fleet.hosts().iter().map(|h| h.name.clone()).collect();
    add.extend(names.iter().map(String::as_str));
    wharf(&fleet, &add).await;

    let scripts = tempfile::tempdir().unwrap();
    let stop = write_script(scripts.path(), "stop.sh", STOP_SCRIPT);
    for version in ["v1", "v2"] {
        let address = format!("{endpoint}/{NAMESPACE}/{REPOSITORY}:{version}");
        let start_text = format!("docker run -d -p 8080:8080 --name my-container {address}\n");
        let start = write_script(scripts.path(), &format!("start-{version}.sh"), &start_text);
        let shown = wharf(
            &fleet,
            &[
                "deployment",
                "create",
                APP,
                version,
                "--type",
                "docker-image",
                "--registry",
                REGISTRY,
                "--namespace",
                NAMESPACE,
                "--repository",
                REPOSITORY,
                "--tag",
                version,
                "--workdir",
                "/srv/shop",
                "--start-script",
                &start,
                "--stop-script",
                &stop,
                "--output",
                "json",
            ],
        )
        .await;
        assert!(
            shown.contains(&address),
            "the deployment does not show its registry address {address}: {shown}"
        );
    }
    phases.done("resources created");

    // v1 in two batches, pausing after the first: exactly two hosts answer.
    let id = wharf(
        &fleet,
        &[
            "release",
            "create",
            APP,
            GROUP,
            "--deployment",
            "v1",
            "--batches",
            "2",
            "--pause",
            "first",
            "--detach",
        ],
    )
    .await;
    assert!(id.starts_with("r-"), "not a release id: {id:?}");
    let paused = fleet
        .wait_release_state(&id, "paused", RELEASE_TIMEOUT)
        .await
        .unwrap_or_else(|error| panic!("{error:#}\n{}", fleet.diagnostics()));
    phases.done("v1 batch 1 (paused)");
    let v1 = sample_image::hello_text("v1");
    let answers = hello_bodies(&fleet).await;
    let answering: Vec<&str> = answers
        .iter()
        .filter(|(_, body)| body.as_deref() == Some(v1.as_str()))
        .map(|(host, _)| host.as_str())
        .collect();
    assert_eq!(
        answering.len(),
        2,
        "exactly two hosts must answer v1 while paused: {answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|(_, body)| body.is_none() || body.as_deref() == Some(v1.as_str())),
        "{answers:?}"
    );
    // They are the instances of batch 1.
    let batch1: Vec<&str> = paused["batches"][0]["instances"]
        .as_array()
        .expect("batch 1 instances")
        .iter()
        .filter_map(|instance| instance["name"].as_str())
        .collect();
    let mut sorted_batch1 = batch1.clone();
    sorted_batch1.sort_unstable();
    assert_eq!(sorted_batch1, answering, "{paused:#}");

    // Continue: all four answer v1.
    wharf(&fleet, &["release", "continue", &id]).await;
    fleet
        .wait_release_state(&id, "succeeded", RELEASE_TIMEOUT)
        .await
        .unwrap_or_else(|error| panic!("{error:#}\n{}", fleet.diagnostics()));
    wait_all_answer(&fleet, "v1").await;
    phases.done("v1 batch 2 (continued)");

    // v2 over v1, followed by the CLI until it succeeds.
    let upgrade = fleet
        .wharf(&[
            "release",
            "create",
            APP,
            GROUP,
            "--deployment",
            "v2",
            "--batches",
            "2",
        ])
        .await
        .unwrap();
    assert!(
        upgrade.success(),
        "release of v2 failed: {}\n{}",
        upgrade.stderr,
        fleet.diagnostics()
    );
    wait_all_answer(&fleet, "v2").await;
    phases.done("v2 over v1");

    // Rollback publishes v1 again.
    let rollback = fleet
        .wharf(&["release", "rollback", APP, GROUP])
        .await
        .unwrap();
    assert!(
        rollback.success(),
        "rollback failed: {}\n{}",
        rollback.stderr,
        fleet.diagnostics()
    );
    wait_all_answer(&fleet, "v1").await;
    phases.done("rollback to v1");

    let group = fleet
        .api_get(&format!("apps/{APP}/groups/{GROUP}"))
        .await
        .expect("show the group");
    assert!(
        group.to_string().contains("\"v1\""),
        "the group does not record v1 as current: {group:#}"
    );
    drop(fleet);
    phases.done("clean-up");
    phases.finish();
}
