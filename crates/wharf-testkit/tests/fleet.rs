//! The fleet harness against the real thing: hosts with their own Docker Engine, real
//! `wharf agent`s registering with a real `wharf server`, a real registry with a password.
//!
//! Needs root, a Docker Engine, `debootstrap` (the first run builds the host image, about a
//! minute; later runs reuse it) and Debian's `docker-registry`. See FLEET.md.

use std::time::{Duration, Instant};

use wharf_testkit::docker::{unique_name, ImageGuard};
use wharf_testkit::fleet::{Fleet, FleetOptions};
use wharf_testkit::sample_image;

/// Everything carrying the run id that Docker still has: containers, volumes, networks.
fn leftovers(run_id: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (what, args) in [
        ("container", vec!["ps", "-a", "--format", "{{.Names}}"]),
        ("volume", vec!["volume", "ls", "--format", "{{.Name}}"]),
        ("network", vec!["network", "ls", "--format", "{{.Name}}"]),
    ] {
        let output = std::process::Command::new("docker")
            .args(&args)
            .output()
            .expect("run docker");
        assert!(output.status.success(), "docker {args:?} failed");
        for name in String::from_utf8_lossy(&output.stdout).lines() {
            if name.contains(run_id) {
                found.push(format!("{what} {name}"));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_two_hosts_pull_register_die_and_clean_up() {
    let started = Instant::now();
    let fleet = Fleet::start(FleetOptions::with_hosts(2))
        .await
        .expect("start a 2-host fleet");
    let start_took = started.elapsed();
    let run_id = fleet.run_id().to_owned();
    let run_dir = fleet.run_dir().to_path_buf();
    assert!(run_dir.join("server.log").is_file());
    assert_eq!(fleet.hosts().len(), 2);
    assert!(!leftovers(&run_id).is_empty());

    // Every host runs its own engine, with the registry allowed over plain HTTP.
    for host in fleet.hosts() {
        assert!(host.container.starts_with(&run_id), "{host:?}");
        let version = fleet
            .exec_ok(
                &host.name,
                &["docker", "info", "--format", "{{.ServerVersion}}"],
            )
            .await
            .expect("docker info in a host");
        assert!(!version.is_empty());
        let insecure = fleet
            .exec_ok(
                &host.name,
                &[
                    "docker",
                    "info",
                    "--format",
                    "{{json .RegistryConfig.IndexConfigs}}",
                ],
            )
            .await
            .expect("the host engine's registry config");
        assert!(
            insecure.contains(&fleet.registry_for_hosts()),
            "{} does not treat {} as insecure: {insecure}",
            host.name,
            fleet.registry_for_hosts()
        );
        let hostname = fleet.exec_ok(&host.name, &["hostname"]).await.unwrap();
        assert_eq!(hostname, host.name);
    }
    let hosts: Vec<String> = fleet.hosts().iter().map(|h| h.name.clone()).collect();

    // The registry answers the hosts at the gateway: 401 without credentials, 200 with
    // them (given to curl on stdin, never on a command line).
    let (user, password) = fleet.registry_credentials();
    let v2 = format!("http://{}/v2/", fleet.registry_for_hosts());
    for host in &hosts {
        let anonymous = fleet
            .exec_ok(
                host,
                &["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", &v2],
            )
            .await
            .expect("curl /v2/ from a host");
        assert_eq!(anonymous, "401", "{host}: GET {v2} without credentials");
        let config = format!("user = \"{user}:{password}\"\n");
        let output = fleet
            .exec_with_stdin(
                host,
                &[
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-K",
                    "-",
                    &v2,
                ],
                config.as_bytes(),
            )
            .await
            .expect("curl /v2/ with credentials from a host");
        assert_eq!(
            output.stdout.trim(),
            "200",
            "{host}: GET {v2} with credentials"
        );
    }

    // A real pull through host-1's engine with credentials, and the app answering on the
    // host's own address from this machine.
    let mut images = ImageGuard::new();
    let local_tag = images.add(format!("{}:v1", unique_name("wharf-fleet-sample")));
    sample_image::build("v1", &local_tag)
        .await
        .expect("build the sample image");
    let pushed = sample_image::push(
        &local_tag,
        fleet.registry(),
        "fleet",
        "hello",
        "v1",
        (user, password),
    )
    .await
    .expect("push the sample image");
    let remote = format!("{}/fleet/hello:v1", fleet.registry_for_hosts());
    let unauthenticated = fleet
        .exec(&hosts[0], &["docker", "pull", &remote])
        .await
        .unwrap();
    assert!(
        !unauthenticated.success(),
        "a pull without credentials worked"
    );
    let login = fleet
        .exec_with_stdin(
            &hosts[0],
            &[
                "docker",
                "login",
                "--username",
                user,
                "--password-stdin",
                &fleet.registry_for_hosts(),
            ],
            password.as_bytes(),
        )
        .await
        .unwrap();
    assert!(login.success(), "docker login in host-1: {}", login.stderr);
    let pull = fleet
        .exec(&hosts[0], &["docker", "pull", &remote])
        .await
        .unwrap();
    fleet
        .exec_ok(
            &hosts[0],
            &["docker", "logout", &fleet.registry_for_hosts()],
        )
        .await
        .expect("docker logout");
    assert!(pull.success(), "pull in host-1: {}", pull.stderr);
    assert!(
        pull.stdout.contains(&pushed.digest),
        "pulled another digest than {}: {}",
        pushed.digest,
        pull.stdout
    );
    fleet
        .exec_ok(
            &hosts[0],
            &[
                "docker",
                "run",
                "-d",
                "--name",
                "my-container",
                "-p",
                "8080:8080",
                &remote,
            ],
        )
        .await
        .expect("run the app in host-1");
    fleet
        .wait_http_body(
            &hosts[0],
            8080,
            "/hello",
            &sample_image::hello_text("v1"),
            Duration::from_secs(20),
        )
        .await
        .expect("the app answers on host-1's address");
    // Nothing answers on host-2, which runs no app: each host is a host of its own.
    assert!(fleet.http_get(&hosts[1], 8080, "/hello").await.is_err());

    // Both agents registered, from their own addresses, and are online.
    let instances = fleet.instances().await.expect("list instances");
    assert_eq!(instances.len(), 2, "{instances:#?}");
    for host in fleet.hosts() {
        let instance = instances
            .iter()
            .find(|i| i["name"] == host.name.as_str())
            .unwrap_or_else(|| panic!("{} is not registered: {instances:#?}", host.name));
        assert_eq!(instance["status"], "online", "{instance:#}");
        assert_eq!(instance["hostname"], host.name.as_str(), "{instance:#}");
        let address = instance["address"].as_str().unwrap_or_default();
        assert!(
            address.contains(&host.ip.to_string()),
            "{} registered from {address}, not {}",
            host.name,
            host.ip
        );
    }
    let listed = fleet
        .wharf_ok(&["instance", "list", "--output", "json"])
        .await
        .expect("wharf instance list");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.len(), 2);

    // A killed host goes away: its container stops, its app and agent with it, and the
    // server marks it offline once its heartbeats stop.
    let killed_at = Instant::now();
    fleet.kill_host(&hosts[0]).await.expect("kill host-1");
    assert_eq!(fleet.host_state(&hosts[0]).await.unwrap(), "exited");
    assert!(!fleet.exec(&hosts[0], &["true"]).await.unwrap().success());
    assert!(fleet.http_get(&hosts[0], 8080, "/hello").await.is_err());
    fleet
        .wait_instance_status(&hosts[0], "offline", Duration::from_secs(90))
        .await
        .expect("the killed host goes offline");
    let offline_after = killed_at.elapsed();
    assert_eq!(
        fleet.instance_statuses().await.unwrap()[&hosts[1]],
        "online",
        "host-2 must stay online"
    );

    drop(fleet);
    assert_eq!(leftovers(&run_id), Vec::<String>::new(), "left behind");
    assert!(!run_dir.exists(), "{} was not removed", run_dir.display());
    eprintln!(
        "fleet_two_hosts_pull_register_die_and_clean_up: start {:.1}s, offline after kill {:.1}s, \
         total {:.1}s",
        start_took.as_secs_f64(),
        offline_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// Every fault operation the scenarios build on, on one host, each undone again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_fault_operations_work_and_undo() {
    let started = Instant::now();
    let fleet = Fleet::start(FleetOptions::with_hosts(1))
        .await
        .expect("start a 1-host fleet");
    let host = fleet.hosts()[0].name.clone();
    let server_from_host = format!("{}/healthz", fleet.server_url_for_hosts());
    let reach_server = [
        "curl",
        "-s",
        "-m",
        "2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ];
    let server_status = |out: wharf_testkit::fleet::ExecOutput| out.stdout.trim().to_owned();
    let curl_server = || {
        let mut args = reach_server.to_vec();
        args.push(&server_from_host);
        args
    };
    assert_eq!(
        server_status(fleet.exec(&host, &curl_server()).await.unwrap()),
        "200"
    );

    // Pause and unpause.
    fleet.pause_host(&host).await.expect("pause");
    assert_eq!(fleet.host_state(&host).await.unwrap(), "paused");
    assert!(!fleet.exec(&host, &["true"]).await.unwrap().success());
    fleet.unpause_host(&host).await.expect("unpause");
    assert_eq!(fleet.host_state(&host).await.unwrap(), "running");

    // Disconnect and reconnect: the host reaches nothing, then the same address again.
    fleet.disconnect_host(&host).await.expect("disconnect");
    assert_ne!(
        server_status(fleet.exec(&host, &curl_server()).await.unwrap()),
        "200"
    );
    fleet.reconnect_host(&host).await.expect("reconnect");
    let ip = fleet
        .exec_ok(&host, &["ip", "-4", "-o", "addr", "show"])
        .await
        .unwrap();
    assert!(ip.contains(&fleet.hosts()[0].ip.to_string()), "{ip}");
    assert_eq!(
        server_status(fleet.exec(&host, &curl_server()).await.unwrap()),
        "200"
    );

    // The host's engine stops and starts.
    fleet
        .stop_docker_in_host(&host)
        .await
        .expect("stop dockerd");
    assert!(!fleet
        .exec(&host, &["docker", "info"])
        .await
        .unwrap()
        .success());
    fleet
        .start_docker_in_host(&host)
        .await
        .expect("start dockerd");
    fleet.exec_ok(&host, &["docker", "info"]).await.unwrap();

    // The agent is killed, started, restarted, and comes back as the same instance.
    let id_before = fleet.instances().await.unwrap()[0]["id"].clone();
    fleet.kill_agent(&host).await.expect("kill the agent");
    assert!(!fleet.agent_running(&host).await.unwrap());
    fleet.start_agent(&host).await.expect("start the agent");
    fleet.restart_agent(&host).await.expect("restart the agent");
    assert!(fleet.agent_running(&host).await.unwrap());
    fleet
        .wait_all_online(Duration::from_secs(30))
        .await
        .expect("online after the agent restarts");
    let instances = fleet.instances().await.unwrap();
    assert_eq!(instances.len(), 1, "{instances:#?}");
    assert_eq!(instances[0]["id"], id_before);

    // The server is killed and comes back on the same port and data.
    fleet.kill_server().await;
    assert!(!fleet.server_running().await);
    assert_ne!(
        server_status(fleet.exec(&host, &curl_server()).await.unwrap()),
        "200"
    );
    fleet.start_server().await.expect("start the server again");
    assert_eq!(
        server_status(fleet.exec(&host, &curl_server()).await.unwrap()),
        "200"
    );
    fleet.restart_server().await.expect("restart the server");
    fleet
        .wait_all_online(Duration::from_secs(30))
        .await
        .expect("online after the server restarts");
    assert_eq!(fleet.instances().await.unwrap()[0]["id"], id_before);

    // A killed host starts again with its address, engine and agent.
    fleet.kill_host(&host).await.expect("kill the host");
    fleet.start_host(&host).await.expect("start the host again");
    assert!(fleet.agent_running(&host).await.unwrap());
    assert_eq!(
        server_status(fleet.exec(&host, &curl_server()).await.unwrap()),
        "200"
    );
    fleet
        .wait_all_online(Duration::from_secs(30))
        .await
        .expect("online after the host restarts");

    let run_id = fleet.run_id().to_owned();
    drop(fleet);
    assert_eq!(leftovers(&run_id), Vec::<String>::new(), "left behind");
    eprintln!(
        "fleet_fault_operations_work_and_undo: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// A test that panics still leaves nothing behind, and a new fleet removes what a dead
/// run left (here: a volume whose owner process cannot exist).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_cleans_up_after_a_panic_and_reaps_dead_runs() {
    use wharf_testkit::fleet::{OWNER_LABEL, RUN_LABEL};
    let started = Instant::now();
    let dead_run = unique_name("wharf-fleet");
    let dead_volume = format!("{dead_run}-host-1-docker");
    let status = std::process::Command::new("docker")
        .args([
            "volume",
            "create",
            "--label",
            &format!("{RUN_LABEL}={dead_run}"),
            "--label",
            // pid_max is at most 2^22: this owner cannot be alive.
            &format!("{OWNER_LABEL}=4294967290:1"),
            &dead_volume,
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("docker volume create");
    assert!(status.success());

    let (sender, receiver) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let fleet = Fleet::start(FleetOptions::with_hosts(1))
            .await
            .expect("start a 1-host fleet");
        let server_url = fleet.server_url();
        let _ = sender.send((
            fleet.run_id().to_owned(),
            fleet.run_dir().to_path_buf(),
            server_url,
        ));
        panic!("a failing fleet test (on purpose)");
    });
    let outcome = task.await;
    assert!(outcome.is_err_and(|error| error.is_panic()));
    let (run_id, run_dir, server_url) = receiver.await.expect("the fleet started");
    assert_eq!(
        leftovers(&dead_run),
        Vec::<String>::new(),
        "the dead run was not reaped"
    );
    assert_eq!(
        leftovers(&run_id),
        Vec::<String>::new(),
        "left behind after a panic"
    );
    assert!(!run_dir.exists(), "{} was not removed", run_dir.display());
    let server_gone = reqwest::Client::new()
        .get(format!("{server_url}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_err();
    assert!(server_gone, "the server still answers at {server_url}");
    eprintln!(
        "fleet_cleans_up_after_a_panic_and_reaps_dead_runs: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
